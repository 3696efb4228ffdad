"""Atom documents (RFC 4287) written as text, one entry at a time.

A channel feed and its archive pages hold the same articles over and over: an article
in five channels appears in five feeds and five archive pages. Building a document
element by element costs most of a first publish, so each article's ``<entry>`` is
written once per publish (:class:`AtomEntries`) and documents are joined from them.

The bytes are those of the feedgen/lxml writer this replaces for Atom (pretty-printed,
UTF-8, the same element and attribute order), so no published file changes because of
it; a test compares the two on every labelled article.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from syndicator import __version__
from syndicator.models import Article
from syndicator.publish.feeds import (
    CONTENT_TYPES,
    GENERATOR,
    GENERATOR_URI,
    Channel,
    Names,
    Site,
    article_url,
    body_html,
    feed_updated,
    feed_url,
    plain_title,
    split_author,
    tag_uri,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
HISTORY_NS = "http://purl.org/syndication/history/1.0"

_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def _text(value: str) -> str:
    return value.translate(_TEXT)


def _attribute(value: str) -> str:
    return value.translate(_ATTRIBUTE)


def _element(indent: str, name: str, text: str, attributes: str = "") -> str:
    if not text:
        return f"{indent}<{name}{attributes}/>\n"
    return f"{indent}<{name}{attributes}>{_text(text)}</{name}>\n"


def _link(indent: str, href: str, rel: str = "", media_type: str = "") -> str:
    attributes = f' href="{_attribute(href)}"'
    if rel:
        attributes += f' rel="{_attribute(rel)}"'
    if media_type:
        attributes += f' type="{_attribute(media_type)}"'
    return f"{indent}<link{attributes}/>\n"


def entry_xml(site: Site, item: Article, names: Names) -> str:
    """One article's ``<entry>`` element, indented as a child of ``<feed>``."""
    indent = "    "
    parts = [
        "  <entry>\n",
        _element(indent, "id", tag_uri(site, f"articles/{item.id}")),
        _element(indent, "title", plain_title(item.title)),
        _element(indent, "updated", item.updated.isoformat()),
    ]
    if item.author:
        name, address = split_author(item.author)
        if name:
            parts.append(f"{indent}<author>\n")
            parts.append(_element(indent + "  ", "name", name))
            if address:
                parts.append(_element(indent + "  ", "email", address))
            parts.append(f"{indent}</author>\n")
    parts.append(_element(indent, "content", body_html(item, site.base_url), ' type="html"'))
    parts.append(_link(indent, article_url(site, item)))
    if item.summary:
        parts.append(_element(indent, "summary", plain_title(item.summary)))
    for slug in item.regions:
        parts.append(_category(indent, slug, f"{site.base_url}regions/", names.region(slug)))
    for slug in item.topics:
        parts.append(_category(indent, slug, f"{site.base_url}topics/", names.topic(slug)))
    parts.append(_element(indent, "published", item.published.isoformat()))
    parts.append("  </entry>\n")
    return "".join(parts)


def _category(indent: str, term: str, scheme: str, label: str) -> str:
    attributes = f' term="{_attribute(term)}" scheme="{_attribute(scheme)}"'
    if label:
        attributes += f' label="{_attribute(label)}"'
    return f"{indent}<category{attributes}/>\n"


class AtomEntries:
    """Each article's entry, written once for every document of one publish."""

    def __init__(self, site: Site, names: Names) -> None:
        self.site = site
        self.names = names
        self._written: dict[tuple[str, datetime, str], str] = {}

    def __call__(self, item: Article) -> str:
        key = (item.id, item.updated, item.content_hash)
        written = self._written.get(key)
        if written is None:
            written = self._written[key] = entry_xml(self.site, item, self.names)
        return written


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    rel: str = ""
    type: str = ""


def atom_document(
    *,
    feed_id: str,
    title: str,
    updated: datetime,
    author: str,
    language: str,
    links: Sequence[Link],
    generator: tuple[str, str, str],
    subtitle: str,
    entries: Iterable[str],
    archive: bool = False,
    complete: bool = False,
) -> bytes:
    """A whole ``<feed>``; ``generator`` is (name, version, uri); ``archive`` marks it an
    archive document (RFC 5005 ``fh:archive``), ``complete`` a document holding every
    entry of its feed (``fh:complete``)."""
    namespaces = f' xmlns:fh="{HISTORY_NS}"' if archive or complete else ""
    language_attribute = f' xml:lang="{_attribute(language)}"' if language else ""
    indent = "  "
    name, version, uri = generator
    head = [
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        f'<feed{namespaces} xmlns="{ATOM_NS}"{language_attribute}>\n',
        _element(indent, "id", feed_id),
        _element(indent, "title", title),
        _element(indent, "updated", updated.isoformat()),
    ]
    if author:
        head += [
            f"{indent}<author>\n",
            _element(indent * 2, "name", author),
            f"{indent}</author>\n",
        ]
    head += [_link(indent, link.href, link.rel, link.type) for link in links]
    if name:
        attributes = (f' uri="{_attribute(uri)}"' if uri else "") + (
            f' version="{_attribute(version)}"' if version else ""
        )
        head.append(_element(indent, "generator", name, attributes))
    if subtitle:
        head.append(_element(indent, "subtitle", subtitle))
    if archive:
        head.append(f"{indent}<fh:archive/>\n")
    if complete:
        head.append(f"{indent}<fh:complete/>\n")
    return ("".join(head) + "".join(entries) + "</feed>\n").encode("utf-8")


def _channel_document(
    site: Site,
    channel: Channel,
    items: Sequence[Article],
    entries: Callable[[Article], str],
    *,
    feed_id: str,
    title: str,
    links: Sequence[Link],
    archive: bool = False,
    complete: bool = False,
) -> bytes:
    return atom_document(
        feed_id=feed_id,
        title=title,
        updated=feed_updated(items),
        author=site.title,
        language=site.language,
        links=links,
        generator=(GENERATOR, __version__, GENERATOR_URI),
        subtitle=channel.description,
        entries=map(entries, items),
        archive=archive,
        complete=complete,
    )


def channel_feed_id(site: Site, channel: Channel) -> str:
    query = f"?{channel.query}" if channel.query else ""
    return tag_uri(site, f"feeds/{channel.path}{query}")


def render_channel_atom(
    site: Site,
    channel: Channel,
    items: Sequence[Article],
    names: Names,
    *,
    prev_archive: str = "",
    complete: bool = False,
    entries: Callable[[Article], str] | None = None,
) -> bytes:
    """The channel's Atom feed; ``prev_archive`` links its newest archive document
    (RFC 5005 section 4), ``complete`` says ``items`` are every article of the channel
    (section 2: there is no archive to link yet)."""
    links = [Link(feed_url(site, channel, "atom"), "self", CONTENT_TYPES["atom"])]
    if site.hub:
        links.append(Link(site.hub, "hub"))
    if prev_archive:
        links.append(Link(prev_archive, "prev-archive", CONTENT_TYPES["atom"]))
    links.append(Link(site.index_url, "alternate", "text/html"))
    return _channel_document(
        site,
        channel,
        items,
        entries or AtomEntries(site, names),
        feed_id=channel_feed_id(site, channel),
        title=f"{plain_title(site.title)} — {channel.name}",
        links=links,
        complete=complete,
    )


def render_archive_document(
    site: Site,
    channel: Channel,
    page: int,
    items: Sequence[Article],
    names: Names,
    *,
    self_url: str,
    prev_url: str,
    next_url: str = "",
    entries: Callable[[Article], str] | None = None,
) -> bytes:
    """Archive document ``page`` of the channel (RFC 5005 section 4): ``fh:archive``, linked
    to the channel's feed (``current``), to the page before it (``prev_url``, if any) and
    to the page after it (``next_url``, once there is one)."""
    links = [
        Link(self_url, "self", CONTENT_TYPES["atom"]),
        Link(feed_url(site, channel, "atom"), "current", CONTENT_TYPES["atom"]),
    ]
    if prev_url:
        links.append(Link(prev_url, "prev-archive", CONTENT_TYPES["atom"]))
    if next_url:
        links.append(Link(next_url, "next-archive", CONTENT_TYPES["atom"]))
    links.append(Link(site.index_url, "alternate", "text/html"))
    return _channel_document(
        site,
        channel,
        items,
        entries or AtomEntries(site, names),
        feed_id=f"{channel_feed_id(site, channel)}/archive/{page}",
        title=f"{plain_title(site.title)} — {channel.name} (archive page {page})",
        links=links,
        archive=True,
    )
