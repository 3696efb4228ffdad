"""An offline checker of feed documents, after the rules of the W3C Feed Validator.

The W3C Feed Validator cannot be installed from a package index and needs the network,
so tests check what we publish with this module instead. It implements the validator's
rules (errors and warnings, named as the validator names them) that bear on what
syndicator publishes, as the specifications state them:

* Atom 1.0 (RFC 4287): the required, single-valued elements of ``atom:feed`` and
  ``atom:entry``; RFC 3339 dates; authors; absolute IRIs (or an ``xml:base`` to resolve
  against); ``rel="self"``; unique entry ids; text and content types;
* Feed Paging and Archiving (RFC 5005): ``fh:archive`` and ``fh:complete`` and the
  ``current``, ``prev-archive`` and ``next-archive`` links;
* RSS 2.0 (the RSS Advisory Board's specification and best practices profile): channel
  title, link and description; RFC 822 dates; ``guid`` and ``isPermaLink``;
  ``atom:link rel="self"``;
* JSON Feed 1.1 (jsonfeed.org): version, title, items with unique ids, RFC 3339 dates,
  absolute URLs.

Each finding carries its level, the validator's name for the rule, where it was found
and a message saying what is wrong. ``check(data)`` tells the format from the bytes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

ATOM = "http://www.w3.org/2005/Atom"
HISTORY = "http://purl.org/syndication/history/1.0"
XML = "http://www.w3.org/XML/1998/namespace"
XHTML = "http://www.w3.org/1999/xhtml"
JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1.1", "https://jsonfeed.org/version/1")

ERROR = "error"
WARNING = "warning"

# The IANA registry of Atom link relations (RFC 4287 §4.2.7.2 names the first five;
# RFC 5005 adds current, first, last, next, next-archive, prev-archive, previous).
REGISTERED_RELS = frozenset(
    {
        "alternate",
        "related",
        "self",
        "enclosure",
        "via",
        "current",
        "first",
        "last",
        "next",
        "next-archive",
        "prev-archive",
        "previous",
        "payment",
        "license",
        "replies",
        "edit",
        "edit-media",
        "hub",
        "service",
        "search",
    }
)
HISTORY_RELS = frozenset({"current", "prev-archive", "next-archive", "first", "last", "next"})
ARCHIVE_RELS = frozenset({"prev-archive", "next-archive"})
PAGING_RELS = frozenset({"prev-archive", "next-archive", "previous", "next", "first", "last"})
TEXT_TYPES = ("text", "html", "xhtml")
# RFC 3339 §5.6 date-time (a "T", seconds, a zone).
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$"
)
# RFC 822 §5 date-time, with a four-digit year as RFC 1123 asks.
RFC822 = re.compile(
    r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{2}|\d{4}) "
    r"(\d{2}):(\d{2})(?::(\d{2}))? "
    r"(UT|GMT|EST|EDT|CST|CDT|MST|MDT|PST|PDT|[A-IK-Za-ik-z]|[+-]\d{4})$"
)
MILITARY_ZONE = re.compile(r"^[A-IK-Za-ik-z]$")
MIME_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Elements and attributes that a feed reader would have to strip from HTML content.
RISKY_ELEMENTS = frozenset(
    {"script", "iframe", "object", "embed", "applet", "frame", "frameset", "meta", "link"}
)
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "action", "longdesc", "poster"})
# How far a date may lie in the future before the validator calls it implausible.
FUTURE_SLACK = timedelta(days=1)
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error" or "warning"
    rule: str  # the validator's name for the rule, e.g. "MissingSelf"
    where: str  # e.g. "feed/entry[2]/updated"
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.rule} at {self.where}: {self.message}"


class _Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def error(self, rule: str, where: str, message: str) -> None:
        self.findings.append(Finding(ERROR, rule, where, message))

    def warning(self, rule: str, where: str, message: str) -> None:
        self.findings.append(Finding(WARNING, rule, where, message))


# --- shared pieces -------------------------------------------------------------------------


def is_absolute_iri(value: str) -> bool:
    """An IRI with a scheme (RFC 3987), without spaces or control characters."""
    return bool(SCHEME.match(value)) and not re.search(r"[\s\x00-\x1f\x7f<>\"{}|\\^`]", value)


def is_web_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and is_absolute_iri(value)


def _plausible(report: _Report, where: str, when: datetime, now: datetime | None) -> None:
    if now is not None and when > now + FUTURE_SLACK:
        report.warning("ImplausibleDate", where, f"implausible date {when.isoformat()}: future")
    elif when < EARLIEST:
        report.warning("ImplausibleDate", where, f"implausible date {when.isoformat()}: too old")


def _rfc3339(
    report: _Report, where: str, value: str | None, now: datetime | None
) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    if text != value or not RFC3339.match(text):
        report.error("InvalidRFC3339Date", where, f"{value!r} is not an RFC 3339 date-time")
        return None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        report.error("InvalidRFC3339Date", where, f"{value!r} is not a valid date-time")
        return None
    _plausible(report, where, when, now)
    return when


class _Html(HTMLParser):
    """What a piece of escaped HTML holds that a feed reader cannot use."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.risky: list[str] = []
        self.relative: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in RISKY_ELEMENTS:
            self.risky.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.risky.append(f"{name} attribute")
            if name == "style" and value and re.search(r"expression|url\(", value, re.I):
                self.risky.append("style attribute")
            if name in URL_ATTRIBUTES and value is not None:
                if value.strip().lower().startswith(("javascript:", "vbscript:", "data:")):
                    self.risky.append(f"{name}={value[:30]!r}")
                elif not SCHEME.match(value) and not value.startswith("#"):
                    self.relative.append(value)


def _html(report: _Report, where: str, markup: str, *, base: str | None) -> None:
    parser = _Html()
    parser.feed(markup)
    parser.close()
    for risk in parser.risky:
        report.warning("SecurityRisk", where, f"HTML content holds {risk}")
    if base is None or not is_absolute_iri(base):
        for reference in parser.relative:
            report.warning(
                "ContainsRelRef", where, f"HTML content links a relative URL {reference!r}"
            )


# --- Atom ----------------------------------------------------------------------------------


def _a(name: str) -> str:
    return f"{{{ATOM}}}{name}"


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return element.findall(_a(name))


def _base(element: ElementTree.Element, inherited: str | None) -> str | None:
    own = element.get(f"{{{XML}}}base")
    if own is None:
        return inherited
    return urljoin(inherited, own) if inherited else own


def _text_construct(report: _Report, element: ElementTree.Element, where: str) -> None:
    kind = element.get("type", "text")
    if kind not in TEXT_TYPES:
        report.error(
            "InvalidTextType", where, f'type must be "text", "html" or "xhtml", not {kind!r}'
        )
    elif kind == "xhtml":
        divs = [child for child in element if child.tag == f"{{{XHTML}}}div"]
        if len(divs) != 1 or len(element) != 1 or (element.text or "").strip():
            report.error("MissingXhtmlDiv", where, "xhtml text must be a single xhtml:div")


def _single(
    report: _Report,
    element: ElementTree.Element,
    name: str,
    where: str,
    *,
    required: bool,
) -> ElementTree.Element | None:
    found = _children(element, name)
    if len(found) > 1:
        report.error("DuplicateElement", f"{where}/{name}", f"{name} appears {len(found)} times")
    if not found:
        if required:
            report.error("MissingElement", where, f"missing the required element {name}")
        return None
    return found[0]


def _persons(report: _Report, element: ElementTree.Element, where: str, base: str | None) -> int:
    persons = _children(element, "author")
    for index, person in enumerate(persons, start=1):
        here = f"{where}/author[{index}]"
        name = _single(report, person, "name", here, required=True)
        if name is not None and not (name.text or "").strip():
            report.error("NotBlank", f"{here}/name", "author name must not be blank")
        uri = _single(report, person, "uri", here, required=False)
        if uri is not None and not is_absolute_iri(urljoin(base or "", uri.text or "")):
            report.error("InvalidIRI", f"{here}/uri", f"{uri.text!r} is not an IRI")
        email = _single(report, person, "email", here, required=False)
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email.text or ""):
            report.error("InvalidAddrSpec", f"{here}/email", f"{email.text!r} is not an address")
    return len(persons)


def _links(
    report: _Report,
    element: ElementTree.Element,
    where: str,
    base: str | None,
    *,
    in_entry: bool,
) -> dict[str, list[str]]:
    """Check every atom:link of ``element``; their resolved hrefs by rel."""
    by_rel: dict[str, list[str]] = {}
    alternates: Counter[tuple[str, str]] = Counter()
    for index, link in enumerate(_children(element, "link"), start=1):
        here = f"{where}/link[{index}]"
        href = link.get("href")
        rel = link.get("rel", "alternate")
        if href is None:
            report.error("MissingHref", here, "link without an href attribute")
            continue
        resolved = urljoin(_base(link, base) or "", href)
        if not is_absolute_iri(resolved):
            report.warning(
                "ContainsRelRef",
                here,
                f"href {href!r} is relative and no absolute xml:base resolves it",
            )
        if rel not in REGISTERED_RELS and not is_absolute_iri(rel):
            report.warning("UnregisteredAtomLinkRel", here, f"unregistered link relation {rel!r}")
        kind = link.get("type")
        if kind is not None and not MIME_TYPE.match(kind):
            report.error("InvalidMIMEType", here, f"type {kind!r} is not a media type")
        if in_entry and rel in HISTORY_RELS:
            report.warning(
                "FeedHistoryRelInEntry", here, f"{rel} link inside an entry (RFC 5005: feed only)"
            )
        if rel == "alternate":
            alternates[(kind or "", link.get("hreflang", ""))] += 1
        by_rel.setdefault(rel, []).append(resolved)
    for (kind, language), count in alternates.items():
        if count > 1:
            report.error(
                "DuplicateAtomLink",
                where,
                f"{count} alternate links share type {kind!r} and hreflang {language!r}",
            )
    return by_rel


def _entry(
    report: _Report,
    entry: ElementTree.Element,
    where: str,
    base: str | None,
    now: datetime | None,
) -> tuple[str | None, str | None, int]:
    """Check one entry; its id, its updated text and how many authors it names."""
    base = _base(entry, base)
    for name in ("id", "title", "updated"):
        _single(report, entry, name, where, required=True)
    for name in ("published", "summary", "content", "rights", "source"):
        _single(report, entry, name, where, required=False)
    identifier = entry.find(_a("id"))
    entry_id = None if identifier is None else (identifier.text or "")
    if entry_id is not None and not is_absolute_iri(entry_id):
        report.error("InvalidIRI", f"{where}/id", f"{entry_id!r} is not an absolute IRI")
    for name in ("updated", "published"):
        found = entry.find(_a(name))
        if found is not None:
            _rfc3339(report, f"{where}/{name}", found.text or "", now)
    title = entry.find(_a("title"))
    if title is not None:
        _text_construct(report, title, f"{where}/title")
    summary = entry.find(_a("summary"))
    if summary is not None:
        _text_construct(report, summary, f"{where}/summary")
    content = entry.find(_a("content"))
    links = _links(report, entry, where, base, in_entry=True)
    if content is not None:
        here = f"{where}/content"
        kind = content.get("type", "text")
        if kind not in TEXT_TYPES and not MIME_TYPE.match(kind):
            report.error("InvalidMIMEType", here, f"content type {kind!r} is not a media type")
        if content.get("src") is not None:
            if (content.text or "").strip() or len(content):
                report.error("NotBlank", here, "content with src must be empty")
            if summary is None:
                report.error("MissingSummary", where, "content with src needs a summary")
        elif kind == "xhtml":
            _text_construct(report, content, here)
        elif kind == "html":
            _html(report, here, content.text or "", base=base)
    elif "alternate" not in links:
        report.error(
            "MissingContentOrAlternate", where, "an entry without content needs an alternate link"
        )
    if summary is not None and summary.get("type") == "html":
        _html(report, f"{where}/summary", summary.text or "", base=base)
    empty_title = title is None or not ("".join(title.itertext())).strip()
    empty_text = (content is None or not "".join(content.itertext()).strip()) and (
        summary is None or not "".join(summary.itertext()).strip()
    )
    if empty_title or (empty_text and (content is None or content.get("src") is None)):
        report.warning("MissingTextualContent", where, "entry without textual content")
    authors = _persons(report, entry, where, base)
    source = entry.find(_a("source"))
    if source is not None:
        authors += len(_children(source, "author"))
    updated = entry.find(_a("updated"))
    return entry_id, (None if updated is None else updated.text), authors


def check_atom(
    data: bytes, *, location: str | None = None, now: datetime | None = None
) -> list[Finding]:
    """Findings about an Atom feed document."""
    report = _Report()
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        report.error("SAXError", "document", f"not well-formed XML: {exc}")
        return report.findings
    if root.tag != _a("feed"):
        report.error("UndefinedElement", "document", f"root element {root.tag} is not atom:feed")
        return report.findings
    where = "feed"
    base = _base(root, location)
    for name in ("id", "title", "updated"):
        _single(report, root, name, where, required=True)
    for name in ("subtitle", "rights", "icon", "logo", "generator"):
        _single(report, root, name, where, required=False)
    identifier = root.find(_a("id"))
    if identifier is not None and not is_absolute_iri(identifier.text or ""):
        report.error("InvalidIRI", f"{where}/id", f"{identifier.text!r} is not an absolute IRI")
    updated = root.find(_a("updated"))
    if updated is not None:
        _rfc3339(report, f"{where}/updated", updated.text or "", now)
    for name in ("title", "subtitle", "rights"):
        found = root.find(_a(name))
        if found is not None:
            _text_construct(report, found, f"{where}/{name}")
    feed_authors = _persons(report, root, where, base)
    links = _links(report, root, where, base, in_entry=False)
    selves = links.get("self", [])
    if not selves:
        report.warning("MissingSelf", where, 'missing atom:link with rel="self"')
    for index, link in enumerate(_children(root, "link"), start=1):
        if link.get("rel") == "self" and not is_absolute_iri(link.get("href") or ""):
            report.warning("RelativeSelf", f"{where}/link[{index}]", "self link is relative")
    if location is not None and selves and location not in selves:
        report.warning(
            "SelfDoesntMatchLocation",
            where,
            f"self link {selves[0]!r} is not where the document was fetched ({location!r})",
        )
    # RFC 5005.
    archive = root.find(f"{{{HISTORY}}}archive") is not None
    complete = root.find(f"{{{HISTORY}}}complete") is not None
    if complete:
        for rel in sorted(PAGING_RELS & set(links)):
            report.error(
                "FeedRelInCompleteFeed", where, f"{rel} link relation found in a complete feed"
            )
        currents = links.get("current", [])
        if currents and set(currents) != set(selves):
            report.error(
                "CurrentNotSelfInCompleteFeed", where, "a complete feed's current link is not self"
            )
        if archive:
            report.error("FeedRelInCompleteFeed", where, "fh:archive in a complete feed")
    if archive:
        if "current" not in links:
            report.warning(
                "MissingCurrentInArchive", where, "current link not found in archive feed"
            )
        if not ARCHIVE_RELS & set(links):
            report.warning(
                "ArchiveIncomplete", where, "fh:archive without prev-archive or next-archive"
            )
        if set(links.get("current", [])) & set(selves):
            report.error(
                "ArchiveIsCurrent",
                where,
                "an archive document's current link names itself (RFC 5005 §4: the "
                "subscription document is another)",
            )
    for rel in sorted(ARCHIVE_RELS & set(links)):
        if len(links[rel]) > 1:
            report.error("DuplicateAtomLink", where, f"more than one {rel} link")
        if set(links[rel]) & set(selves):
            report.error("ArchiveLinksToItself", where, f"{rel} link names the document itself")
    entries = _children(root, "entry")
    ids: Counter[str] = Counter()
    stamps: Counter[str] = Counter()
    entries_without_author = 0
    for index, entry in enumerate(entries, start=1):
        entry_id, stamp, authors = _entry(report, entry, f"{where}/entry[{index}]", base, now)
        if entry_id:
            ids[entry_id] += 1
        if stamp:
            stamps[stamp] += 1
        if not authors:
            entries_without_author += 1
    if not feed_authors and entries_without_author:
        report.error(
            "MissingElement",
            where,
            f"missing author: the feed names none and {entries_without_author} entries name none",
        )
    if len(entries) > 1 and len(ids) == 1 and sum(ids.values()) == len(entries):
        report.error("DuplicateIds", where, "all entries have the same id")
    else:
        for entry_id, count in ids.items():
            if count > 1:
                report.warning(
                    "DuplicateEntries", where, f"{count} entries have the id {entry_id!r}"
                )
    for stamp, count in stamps.items():
        if count > 1:
            report.warning("DuplicateUpdated", where, f"{count} entries have updated {stamp}")
    return report.findings


# --- RSS 2.0 -------------------------------------------------------------------------------


def _rfc822(
    report: _Report, where: str, value: str | None, now: datetime | None
) -> datetime | None:
    if value is None:
        return None
    match = RFC822.match(value)
    if match is None:
        report.error("InvalidRFC2822Date", where, f"{value!r} is not an RFC 822 date-time")
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        report.error("InvalidRFC2822Date", where, f"{value!r} is not a valid date-time")
        return None
    if len(match.group(4)) == 2 or MILITARY_ZONE.match(match.group(8)):
        report.warning(
            "ProblematicalRFC822Date",
            where,
            f"{value!r}: use a four-digit year and a US or numeric zone",
        )
    if match.group(1) and when.strftime("%a") != match.group(1):
        report.error("IncorrectDOW", where, f"{value!r}: wrong day of the week")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    _plausible(report, where, when, now)
    return when


def check_rss(
    data: bytes, *, location: str | None = None, now: datetime | None = None
) -> list[Finding]:
    """Findings about an RSS 2.0 document."""
    report = _Report()
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        report.error("SAXError", "document", f"not well-formed XML: {exc}")
        return report.findings
    if root.tag != "rss":
        report.error("UndefinedElement", "document", f"root element {root.tag} is not rss")
        return report.findings
    if root.get("version") != "2.0":
        report.error("InvalidRSSVersion", "rss", f"version {root.get('version')!r} is not 2.0")
    channels = root.findall("channel")
    if len(channels) != 1:
        report.error("MissingElement", "rss", "rss must hold exactly one channel")
        return report.findings
    channel = channels[0]
    where = "rss/channel"
    for name in ("title", "link", "description"):
        found = channel.findall(name)
        if not found:
            report.error("MissingElement", where, f"missing the required element {name}")
        elif len(found) > 1:
            report.error(
                "DuplicateElement", f"{where}/{name}", f"{name} appears {len(found)} times"
            )
    for name in ("language", "pubDate", "lastBuildDate", "ttl", "generator", "docs", "image"):
        if len(channel.findall(name)) > 1:
            report.error("DuplicateElement", f"{where}/{name}", f"{name} appears more than once")
    link = channel.findtext("link")
    if link is not None and not is_web_url(link.strip()):
        report.error("InvalidURLElement", f"{where}/link", f"{link!r} is not a full URL")
    for name in ("pubDate", "lastBuildDate"):
        value = channel.findtext(name)
        if value is not None:
            _rfc822(report, f"{where}/{name}", value, now)
    ttl = channel.findtext("ttl")
    if ttl is not None and not ttl.strip().isdigit():
        report.error("InvalidInteger", f"{where}/ttl", f"ttl {ttl!r} is not a whole number")
    language = channel.findtext("language")
    if language is not None and not LANGUAGE.match(language):
        report.error("InvalidLanguage", f"{where}/language", f"{language!r} is not a language")
    for name in ("managingEditor", "webMaster"):
        value = channel.findtext(name)
        if value is not None:
            _contact(report, f"{where}/{name}", value)
    selves = [
        element.get("href", "")
        for element in channel.findall(_a("link"))
        if element.get("rel") == "self"
    ]
    for index, element in enumerate(channel.findall(_a("link")), start=1):
        href = element.get("href")
        if href is None:
            report.error("MissingHref", f"{where}/atom:link[{index}]", "atom:link without href")
        elif not is_absolute_iri(href):
            report.warning("ContainsRelRef", f"{where}/atom:link[{index}]", f"{href!r} is relative")
    if not selves:
        report.warning("MissingAtomSelfLink", where, 'missing atom:link with rel="self"')
    elif location is not None and location not in selves:
        report.warning(
            "SelfDoesntMatchLocation",
            where,
            f"self link {selves[0]!r} is not where the document was fetched ({location!r})",
        )
    guids: Counter[str] = Counter()
    for index, item in enumerate(channel.findall("item"), start=1):
        here = f"{where}/item[{index}]"
        for name in ("title", "link", "description", "guid", "pubDate", "author", "source"):
            if len(item.findall(name)) > 1:
                report.error("DuplicateElement", f"{here}/{name}", f"{name} appears more than once")
        if item.find("title") is None and item.find("description") is None:
            report.error(
                "ItemMustContainTitleOrDescription", here, "item needs a title or a description"
            )
        item_link = item.findtext("link")
        if item_link is not None and not is_web_url(item_link.strip()):
            report.error("InvalidURLElement", f"{here}/link", f"{item_link!r} is not a full URL")
        _rfc822(report, f"{here}/pubDate", item.findtext("pubDate"), now)
        guid = item.find("guid")
        if guid is None:
            report.warning("MissingGuid", here, "item should contain a guid element")
        else:
            value = (guid.text or "").strip()
            permalink = guid.get("isPermaLink", "true")
            if permalink not in ("true", "false"):
                report.error(
                    "InvalidBooleanAttribute", f"{here}/guid", f"isPermaLink={permalink!r}"
                )
            elif permalink == "true" and not is_web_url(value):
                report.error(
                    "InvalidHttpGUID",
                    f"{here}/guid",
                    f"guid {value!r} must be a full URL, unless isPermaLink is false",
                )
            if value.isdigit() and len(value) < 8:
                report.warning("NotSufficientlyUnique", f"{here}/guid", f"guid {value!r}")
            guids[value] += 1
        author = item.findtext("author")
        if author is not None:
            _contact(report, f"{here}/author", author)
            if item.find("{http://purl.org/dc/elements/1.1/}creator") is not None:
                report.warning(
                    "DuplicateItemSemantics",
                    here,
                    "an item should not hold both author and dc:creator",
                )
        for name in ("description", "{http://purl.org/rss/1.0/modules/content/}encoded"):
            text = item.findtext(name)
            if text:
                _html(report, f"{here}/{name.rpartition('}')[2]}", text, base=None)
        for position, enclosure in enumerate(item.findall("enclosure"), start=1):
            for attribute in ("url", "length", "type"):
                if enclosure.get(attribute) is None:
                    report.error(
                        "MissingAttribute",
                        f"{here}/enclosure[{position}]",
                        f"enclosure without {attribute}",
                    )
    for value, count in guids.items():
        if count > 1:
            report.error("DuplicateValue", where, f"{count} items have the guid {value!r}")
    return report.findings


def _contact(report: _Report, where: str, value: str) -> None:
    match = re.fullmatch(r"([^@\s()]+@[^@\s()]+\.[^@\s()]+)(?: \((.+)\))?", value.strip())
    if match is None:
        report.error("InvalidContact", where, f"{value!r} is not an email address")
    elif match.group(2) is None:
        report.warning("MissingRealName", where, f"{value!r}: give a real name in parentheses")


# --- JSON Feed 1.1 -------------------------------------------------------------------------


def _url(report: _Report, where: str, value: Any) -> None:
    if not isinstance(value, str) or not is_web_url(value):
        report.error("InvalidURL", where, f"{value!r} is not an absolute http(s) URL")


def _authors(report: _Report, where: str, value: Any) -> None:
    if not isinstance(value, list):
        report.error("InvalidValue", where, "authors must be an array")
        return
    for index, author in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(author, dict) or not any(k in author for k in ("name", "url", "avatar")):
            report.error("MissingElement", here, "an author needs a name, url or avatar")
            continue
        for key in ("url", "avatar"):
            if key in author:
                _url(report, f"{here}.{key}", author[key])


def check_json_feed(
    data: bytes, *, location: str | None = None, now: datetime | None = None
) -> list[Finding]:
    """Findings about a JSON Feed document."""
    report = _Report()
    try:
        feed = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        report.error("InvalidJSON", "document", f"not JSON: {exc}")
        return report.findings
    if not isinstance(feed, dict):
        report.error("InvalidJSON", "document", "a JSON Feed is an object")
        return report.findings
    version = feed.get("version")
    if version is None:
        report.error("MissingElement", "feed", "missing the required key version")
    elif version not in JSON_FEED_VERSIONS:
        report.error("InvalidValue", "feed.version", f"unknown version {version!r}")
    title = feed.get("title")
    if not isinstance(title, str):
        report.error("MissingElement", "feed", "missing the required string title")
    elif not title.strip():
        report.error("NotBlank", "feed.title", "title must not be blank")
    for key in ("home_page_url", "feed_url", "next_url", "icon", "favicon"):
        if key in feed:
            _url(report, f"feed.{key}", feed[key])
    if "home_page_url" not in feed:
        report.warning("MissingElement", "feed", "home_page_url is strongly recommended")
    if "feed_url" not in feed:
        report.warning("MissingSelf", "feed", "feed_url is strongly recommended")
    elif location is not None and feed["feed_url"] != location:
        report.warning(
            "SelfDoesntMatchLocation",
            "feed.feed_url",
            f"feed_url {feed['feed_url']!r} is not where the document was fetched",
        )
    if "author" in feed:
        report.warning("Deprecated", "feed.author", "author is deprecated in 1.1; use authors")
    if "authors" in feed:
        _authors(report, "feed.authors", feed["authors"])
    language = feed.get("language")
    if language is not None and (not isinstance(language, str) or not LANGUAGE.match(language)):
        report.error("InvalidLanguage", "feed.language", f"{language!r} is not a language tag")
    if "expired" in feed and not isinstance(feed["expired"], bool):
        report.error("InvalidValue", "feed.expired", "expired must be true or false")
    items = feed.get("items")
    if not isinstance(items, list):
        report.error("MissingElement", "feed", "missing the required array items")
        return report.findings
    ids: Counter[str] = Counter()
    for index, item in enumerate(items):
        here = f"items[{index}]"
        if not isinstance(item, dict):
            report.error("InvalidValue", here, "an item is an object")
            continue
        identifier = item.get("id")
        if identifier is None:
            report.error("MissingElement", here, "missing the required key id")
        elif not isinstance(identifier, str):
            report.warning("InvalidValue", f"{here}.id", "id should be a string")
            ids[str(identifier)] += 1
        elif not identifier.strip():
            report.error("NotBlank", f"{here}.id", "id must not be blank")
        else:
            ids[identifier] += 1
        if not any(isinstance(item.get(key), str) for key in ("content_html", "content_text")):
            report.error("MissingElement", here, "an item needs content_html or content_text")
        for key in ("url", "external_url", "image", "banner_image"):
            if key in item:
                _url(report, f"{here}.{key}", item[key])
        for key in ("date_published", "date_modified"):
            if key in item:
                value = item[key]
                if isinstance(value, str):
                    _rfc3339(report, f"{here}.{key}", value, now)
                else:
                    report.error("InvalidRFC3339Date", f"{here}.{key}", f"{value!r} is no date")
        for key in ("title", "summary", "content_text", "content_html", "language"):
            if key in item and not isinstance(item[key], str):
                report.error("InvalidValue", f"{here}.{key}", f"{key} must be a string")
        if "content_html" in item and isinstance(item["content_html"], str):
            _html(report, f"{here}.content_html", item["content_html"], base=None)
        if "tags" in item and (
            not isinstance(item["tags"], list)
            or not all(isinstance(tag, str) for tag in item["tags"])
        ):
            report.error("InvalidValue", f"{here}.tags", "tags must be an array of strings")
        if "author" in item:
            report.warning("Deprecated", f"{here}.author", "author is deprecated; use authors")
        if "authors" in item:
            _authors(report, f"{here}.authors", item["authors"])
    for identifier, count in ids.items():
        if count > 1:
            report.error("DuplicateIds", "items", f"{count} items have the id {identifier!r}")
    return report.findings


# --- any document --------------------------------------------------------------------------


def check(
    data: bytes, *, location: str | None = None, now: datetime | None = None
) -> list[Finding]:
    """Findings about a feed document of any of the three formats (told from its bytes)."""
    start = data.lstrip()[:1]
    if start == b"{":
        return check_json_feed(data, location=location, now=now)
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        return [Finding(ERROR, "SAXError", "document", f"not well-formed XML: {exc}")]
    if root.tag == "rss":
        return check_rss(data, location=location, now=now)
    return check_atom(data, location=location, now=now)


def problems(findings: Iterable[Finding]) -> list[str]:
    """The findings as lines, for an assertion's message."""
    return [str(finding) for finding in findings]
