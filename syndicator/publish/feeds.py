"""Feeds: channels of articles rendered as RSS 2.0, Atom 1.0 and JSON Feed 1.1.

Everything here is pure: a channel, its articles and the site's settings go in,
bytes come out. Nothing reads the clock: a feed's ``updated`` (and RSS
``lastBuildDate``) is the newest ``updated`` of its items, so a rebuild with no
change produces the same bytes. Publishing those bytes to disk lives in
:mod:`syndicator.publish.publisher`.

RSS and Atom go through feedgen, with its surprising defaults spelled out:
entries are appended in our own order (``order="append"``), ``updated`` is
always set, and the ``rel="self"`` link is added before the alternate link
(feedgen takes the last link as RSS ``<channel><link>``). JSON Feed is a small
serializer of our own (https://www.jsonfeed.org/version/1.1/).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urljoin, urlsplit
from xml.sax.saxutils import quoteattr

import nh3
from feedgen.feed import FeedGenerator
from markdown_it import MarkdownIt

from syndicator import __version__
from syndicator.models import Article

FORMATS = ("rss", "atom", "json")
CONTENT_TYPES = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}
GENERATOR = "syndicator"
GENERATOR_URI = "https://pypi.org/project/syndicator/"
# Used for a feed with no items at all, so that its bytes still never depend on the clock.
EMPTY_FEED_DATE = datetime(2000, 1, 1, tzinfo=UTC)
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})


class Tagged(Protocol):
    """Anything with region and topic slugs."""

    @property
    def regions(self) -> tuple[str, ...]: ...

    @property
    def topics(self) -> tuple[str, ...]: ...


TaggedT = TypeVar("TaggedT", bound=Tagged)


@dataclass(frozen=True, slots=True)
class Channel:
    """One feed: all articles, or those of one region or one topic."""

    path: str  # "all", "americas", "topics/aeo"
    kind: str  # "all", "region" or "topic"
    slug: str
    name: str
    description: str
    # For a feed served on demand (a filter, a private feed): the query of its URL, or
    # the URL itself when it has no path of its own under feeds/.
    query: str = ""
    url: str = ""

    def includes(self, article: Tagged) -> bool:
        if self.kind == "region":
            return self.slug in article.regions
        if self.kind == "topic":
            return self.slug in article.topics
        return True


@dataclass(frozen=True, slots=True)
class Site:
    """What every feed and page says about the site."""

    title: str
    base_url: str  # absolute, ends with "/"
    language: str
    description: str
    ttl_minutes: int
    tag_authority: str  # the host name in tag: URIs
    tag_date: str  # the date in tag: URIs (YYYY or YYYY-MM-DD); never change it
    hub: str = ""  # WebSub hub URL, or ""
    subscribe_url: str = ""  # the page to subscribe by email, or "" when not offered

    @property
    def index_url(self) -> str:
        return self.base_url


@dataclass(frozen=True, slots=True)
class Names:
    """Display names of region and topic slugs."""

    regions: dict[str, str]
    topics: dict[str, str]

    def region(self, slug: str) -> str:
        return self.regions.get(slug, slug)

    def topic(self, slug: str) -> str:
        return self.topics.get(slug, slug)


def build_channels(
    regions: dict[str, tuple[str, str]], topics: dict[str, tuple[str, str]]
) -> list[Channel]:
    """Every channel: all, one per region, one per topic. Values are (name, description)."""
    channels = [Channel("all", "all", "all", "All news", "Every article, newest first")]
    channels += [
        Channel(slug, "region", slug, name, description or f"News about {name}")
        for slug, (name, description) in regions.items()
    ]
    channels += [
        Channel(f"topics/{slug}", "topic", slug, name, description or f"News about {name}")
        for slug, (name, description) in topics.items()
    ]
    return channels


def feed_url(site: Site, channel: Channel, fmt: str) -> str:
    if channel.url:
        return f"{channel.url}.{fmt}"
    query = f"?{channel.query}" if channel.query else ""
    return f"{site.base_url}feeds/{channel.path}.{fmt}{query}"


def article_page_path(article_id: str) -> str:
    return f"articles/{quote(article_id, safe='')}.html"


def article_url(site: Site, article: Article) -> str:
    """Where an item links: its own ``link``, else the page we publish for it."""
    return article.link or f"{site.base_url}{article_page_path(article.id)}"


def tag_uri(site: Site, name: str) -> str:
    """A tag: URI (RFC 4151) that never changes for the same site settings and name."""
    return f"tag:{site.tag_authority},{site.tag_date}:{quote(name, safe='/._-')}"


def select_items(channel: Channel, articles: Iterable[TaggedT], max_items: int) -> list[TaggedT]:
    """The newest ``max_items`` articles of ``channel``; ``articles`` come newest first."""
    items: list[TaggedT] = []
    for article in articles:
        if channel.includes(article):
            items.append(article)
            if len(items) >= max_items:
                break
    return items


def feed_updated(items: Sequence[Article], fallback: datetime = EMPTY_FEED_DATE) -> datetime:
    """The newest ``updated`` among ``items`` (never "now")."""
    return max((item.updated for item in items), default=fallback)


# --- text and HTML -------------------------------------------------------------------------


def plain_title(title: str) -> str:
    """A title (or summary) as plain text: tags removed, entities decoded, one line.

    Feed titles are text, never HTML; a title that looks like markup is shown as
    its text content.
    """
    for _ in range(3):  # "&lt;b&gt;" decodes to "<b>", which must go too
        if "<" not in title and "&" not in title:
            break
        cleaned = html.unescape(nh3.clean(title, tags=set(), clean_content_tags=set()))
        if cleaned == title:
            break
        title = cleaned
    return " ".join(title.split())


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True, "linkify": False})


def body_html(article: Article, base_url: str) -> str:
    """The article body as sanitised HTML: no script, no event handlers, no unsafe URLs.

    Plain-text bodies become escaped paragraphs; Markdown bodies are rendered,
    then sanitised. Relative links are made absolute against ``base_url``.
    """
    # One article appears in several channels and three formats: render its body once.
    return _body_html(article.content_hash, article.format, base_url, article.body)


@lru_cache(maxsize=4096)
def _body_html(_content_hash: str, body_format: str, base_url: str, body: str) -> str:
    if body_format == "markdown":
        raw = _markdown().render(body)
    else:
        raw = "\n".join(
            "<p>" + html.escape(paragraph).replace("\n", "<br>\n") + "</p>"
            for paragraph in body.split("\n\n")
            if paragraph.strip()
        )
    return sanitize_html(raw, base_url)


def sanitize_html(raw: str, base_url: str) -> str:
    def absolute(element: str, attribute: str, value: str) -> str | None:
        if attribute in {"href", "src", "cite"}:
            joined = urljoin(base_url, value.strip())
            if urlsplit(joined).scheme.lower() not in ALLOWED_URL_SCHEMES:
                return None
            return joined
        return value

    cleaned: str = nh3.clean(
        raw,
        url_schemes=set(ALLOWED_URL_SCHEMES),
        attribute_filter=absolute,
        link_rel="noopener noreferrer nofollow",
    )
    return cleaned


def split_author(author: str) -> tuple[str, str]:
    """("Jane Doe", "jane@example.org") from "Jane Doe <jane@example.org>"; names stay names."""
    name, address = parseaddr(author)
    if not address or "@" not in address:
        return plain_title(author), ""
    return plain_title(name) or address.partition("@")[0], address


def iso_date(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Atom and JSON Feed readers like it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- RSS and Atom --------------------------------------------------------------------------


def _generator(site: Site, channel: Channel, items: Sequence[Article], names: Names) -> Any:
    updated = feed_updated(items)
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    query = f"?{channel.query}" if channel.query else ""
    fg.id(tag_uri(site, f"feeds/{channel.path}{query}"))
    fg.title(f"{plain_title(site.title)} — {channel.name}")
    fg.subtitle(channel.description)
    fg.author({"name": site.title})
    fg.language(site.language)
    fg.updated(updated)
    fg.generator(GENERATOR, version=__version__, uri=GENERATOR_URI)
    fg.ttl(site.ttl_minutes)
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(tag_uri(site, f"articles/{item.id}"))
        entry.title(plain_title(item.title))
        entry.link(href=article_url(site, item), rel="alternate", type="text/html")
        entry.published(item.published)
        entry.updated(item.updated)
        if item.summary:
            entry.summary(plain_title(item.summary))
        entry.content(body_html(item, site.base_url), type="html")
        categories = [
            {
                "term": slug,
                "scheme": f"{site.base_url}regions/",
                "label": names.region(slug),
            }
            for slug in item.regions
        ] + [
            {
                "term": slug,
                "scheme": f"{site.base_url}topics/",
                "label": names.topic(slug),
            }
            for slug in item.topics
        ]
        if categories:
            entry.category(categories)
        if item.author:
            name, address = split_author(item.author)
            if address:
                # RSS gets <author>email (name)</author>; Atom name and email apart.
                entry.author({"name": name, "email": address})
            else:
                # RSS <author> must be an address: a bare name goes in dc:creator.
                entry.author({"name": name})
                entry.dc.dc_creator(name)
    return fg


def _rss_links(fg: Any, site: Site, channel: Channel) -> None:
    # feedgen uses the *last* link as RSS <channel><link>: self first, then alternate.
    fg.link(href=feed_url(site, channel, "rss"), rel="self", type=CONTENT_TYPES["rss"])
    if site.hub:
        fg.link(href=site.hub, rel="hub")
    fg.link(href=site.index_url, rel="alternate", type="text/html")


def render_rss(site: Site, channel: Channel, items: Sequence[Article], names: Names) -> bytes:
    return render_all(site, channel, items, names)["rss"]


def render_atom(site: Site, channel: Channel, items: Sequence[Article], names: Names) -> bytes:
    return render_all(site, channel, items, names)["atom"]


def render_all(
    site: Site,
    channel: Channel,
    items: Sequence[Article],
    names: Names,
    *,
    prev_archive: str = "",
    complete: bool = False,
    entries: Callable[[Article], str] | None = None,
) -> dict[str, bytes]:
    """The channel in every format.

    ``prev_archive`` is the URL of the channel's newest archive document (RFC 5005), linked
    from the Atom feed; ``complete``: ``items`` are the whole channel, which the Atom feed
    says with ``fh:complete``; ``entries`` gives each article's Atom entry (written once
    for every document of a publish).
    """
    # Imported here: the Atom writer builds on this module's helpers.
    from syndicator.publish.atom import render_channel_atom  # noqa: PLC0415

    fg = _generator(site, channel, items, names)
    _rss_links(fg, site, channel)
    rss: bytes = fg.rss_str(pretty=True)
    atom = render_channel_atom(
        site,
        channel,
        items,
        names,
        prev_archive=prev_archive,
        complete=complete,
        entries=entries,
    )
    return {"rss": rss, "atom": atom, "json": render_json(site, channel, items, names)}


# --- JSON Feed 1.1 -------------------------------------------------------------------------


def render_json(site: Site, channel: Channel, items: Sequence[Article], names: Names) -> bytes:
    feed: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"{plain_title(site.title)} — {channel.name}",
        "home_page_url": site.index_url,
        "feed_url": feed_url(site, channel, "json"),
        "description": channel.description,
        "language": site.language,
        "authors": [{"name": site.title}],
    }
    if site.hub:
        feed["hubs"] = [{"type": "WebSub", "url": site.hub}]
    entries = []
    for item in items:
        entry: dict[str, Any] = {
            "id": tag_uri(site, f"articles/{item.id}"),
            "url": article_url(site, item),
            "title": plain_title(item.title),
            "content_html": body_html(item, site.base_url),
            "date_published": iso_date(item.published),
            "date_modified": iso_date(item.updated),
            "tags": [names.region(slug) for slug in item.regions]
            + [names.topic(slug) for slug in item.topics],
        }
        if item.summary:
            entry["summary"] = plain_title(item.summary)
        if item.author:
            entry["authors"] = [{"name": split_author(item.author)[0]}]
        entries.append(entry)
    feed["items"] = entries
    # No indentation: it keeps json on its C encoder, several times faster.
    return (json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


RENDERERS = {"rss": render_rss, "atom": render_atom, "json": render_json}


# --- OPML ----------------------------------------------------------------------------------


def render_opml(site: Site, channels: Sequence[Channel], updated: datetime) -> bytes:
    """OPML 2.0 listing every channel (its Atom feed), grouped as on the index page."""
    groups = (
        ("Everything", [c for c in channels if c.kind == "all"]),
        ("Regions", [c for c in channels if c.kind == "region"]),
        ("Topics", [c for c in channels if c.kind == "topic"]),
    )
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{html.escape(plain_title(site.title), quote=False)} feeds</title>",
        f"    <dateModified>{format_datetime(updated.astimezone(UTC), usegmt=True)}</dateModified>",
        "  </head>",
        "  <body>",
    ]
    for label, members in groups:
        lines.append(f"    <outline text={quoteattr(label)}>")
        for channel in members:
            title = f"{plain_title(site.title)} — {channel.name}"
            lines.append(
                f'      <outline type="rss" text={quoteattr(title)} title={quoteattr(title)}'
                f" description={quoteattr(channel.description)}"
                f" xmlUrl={quoteattr(feed_url(site, channel, 'atom'))}"
                f" htmlUrl={quoteattr(site.index_url)}/>"
            )
        lines.append("    </outline>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines).encode("utf-8")
