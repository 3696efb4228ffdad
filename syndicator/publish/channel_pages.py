"""An HTML page per channel, and per archive page, so the site can be browsed.

``regions/<slug>.html`` and ``topics/<slug>.html`` (``all.html`` for everything) list the
channel's newest articles, as its feed does, with autodiscovery links to its feeds and a
link to older articles; these are the archive pages of :mod:`syndicator.publish.archives`
as HTML (``regions/<slug>/<n>.html``), each linking to the one before it. Pages are
written like every other file: atomically, and only when their bytes change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jinja2 import Environment
from markupsafe import Markup

from syndicator.models import Article
from syndicator.publish.feeds import Channel, Site

_KIND_DIRECTORY = {"region": "regions", "topic": "topics"}
_KIND_LABEL = {"region": "Region", "topic": "Topic", "all": "All news"}


def channel_page_path(channel: Channel) -> str:
    """The channel's own page, relative to the feeds directory."""
    directory = _KIND_DIRECTORY.get(channel.kind)
    return f"{directory}/{channel.slug}.html" if directory else f"{channel.path}.html"


def archive_page_path(channel: Channel, page: int) -> str:
    """The HTML twin of archive page ``page`` of the channel."""
    return f"{channel_page_path(channel).removesuffix('.html')}/{page}.html"


def channel_page_url(site: Site, channel: Channel) -> str:
    return f"{site.base_url}{channel_page_path(channel)}"


class ChannelItems:
    """Each article's list item, written once for every channel page of one publish."""

    def __init__(self, environment: Environment) -> None:
        self._template = environment.get_template("_channel_item.html")
        self._written: dict[tuple[str, datetime, str], Markup] = {}

    def __call__(self, article: Article) -> Markup:
        key = (article.id, article.updated, article.content_hash)
        written = self._written.get(key)
        if written is None:
            # The template escapes every value it shows, as channel.html would.
            html = self._template.render(article=article)
            written = self._written[key] = Markup(html)  # noqa: S704
        return written


def render_channel_page(
    environment: Environment,
    channel: Channel,
    articles: Sequence[Article],
    *,
    site: Site,
    page: int = 0,
    older: int = 0,
    items: ChannelItems | None = None,
) -> bytes:
    """The channel's page (``page`` 0) or one of its archive pages; ``older`` is the archive
    page before it (0: none)."""
    template = environment.get_template("channel.html")
    item = items or ChannelItems(environment)
    return template.render(
        channel=channel,
        items=[item(article) for article in articles],
        page=page,
        kind_label=_KIND_LABEL.get(channel.kind, channel.kind),
        older=f"{site.base_url}{archive_page_path(channel, older)}" if older else "",
        newest_url=channel_page_url(site, channel) if page else "",
    ).encode("utf-8")
