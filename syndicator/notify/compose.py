"""Composing notification mail: one subscriber and their new articles in, an ``EmailMessage`` out.

Everything here is pure: no clock (``now`` is handed in), no sockets, no files
beyond the packaged templates. Sending lives in the transports.

The message is ``multipart/alternative`` (RFC 2046 §5.1.4): a text/plain part
first, then text/html, both UTF-8 and quoted-printable, rendered from
``templates/mail/digest.txt`` and ``templates/mail/digest.html``. Only an
article's title, meta line (regions, topics, date) and plain-text summary go
into the mail, never its body HTML.

Headers are built only from sanitised text. Python's ``email`` package decodes
RFC 2047 encoded-words found in a value it is *given*, so a title such as
``=?UTF-8?Q?=0A?=Bcc: x@example.org`` would otherwise become a line break and a
new header; :func:`safe_header_text` removes line breaks and control
characters and breaks the ``=?`` that starts an encoded-word.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from functools import lru_cache
from textwrap import TextWrapper
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, Template, select_autoescape

from syndicator.feeds import Names, article_page_path, plain_title
from syndicator.models import Article, summarize

CADENCES = ("immediate", "daily", "weekly")
SUBJECT_LIMIT = 120
NAME_LIMIT = 100
TITLE_LIMIT = 300  # titles in the message body
SUMMARY_LIMIT = 600
TEXT_WIDTH = 72
ITEM_INDENT = "    "
# RFC 5322 §2.1.1: a line is at most 998 characters; leave room for the header name.
_MAX_URL = 900
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Control characters (C0, DEL, C1 including U+0085), lone surrogates, and the
# Unicode line and paragraph separators U+2028 and U+2029.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Breaks the "=?" that opens an RFC 2047 encoded-word, invisibly.
_ENCODED_WORD_START = "=?"
_NEUTRALISED_START = "=\u200b?"
_DOMAIN = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_MESSAGE_ID = re.compile(r"^<[!-;=?-~]+@[!-;=?-~]+>$")  # printable ASCII, no < > or space
# RFC 2369 §2: URLs in List-* headers are ASCII inside angle brackets; a literal
# comma or angle bracket must be percent-encoded.
_HEADER_URL = re.compile(r"^[!#-+\--;=?-~]+$")
_CADENCE_HEADING = {
    "immediate": "news alert",
    "daily": "your daily digest",
    "weekly": "your weekly digest",
}
_CADENCE_REASON = {
    "immediate": "alerts as articles are published",
    "daily": "daily digest",
    "weekly": "weekly digest",
}


@dataclass(frozen=True, slots=True)
class MailSettings:
    """What every message says about the list it comes from."""

    sender: str  # the From header, e.g. "WCO News <news@example.org>"
    site_title: str
    base_url: str  # absolute, ends with "/"
    list_id: str  # "wco-news.news.example.org" gives List-Id: <wco-news.news.example.org>


@dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber as a message sees them."""

    email: str
    name: str
    filters: str  # human description, see describe_filters()
    cadence: str  # "immediate", "daily" or "weekly"
    unsubscribe_url: str  # https URL that accepts a one-click POST (RFC 8058)
    unsubscribe_mailto: str  # "mailto:news@example.org?subject=unsubscribe%20<token>"
    manage_url: str = ""


@dataclass(frozen=True, slots=True)
class _Item:
    """One article as both templates show it."""

    title: str
    url: str
    meta: str
    summary: str


# --- header text ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """``text`` with control characters and line separators turned to spaces, spaces squeezed."""
    cleaned = "".join(
        " " if unicodedata.category(char) in _UNSAFE_CATEGORIES else char for char in text
    )
    return " ".join(cleaned.split())


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut at a word and ended with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    if not text[limit - 1].isspace() and " " in cut:
        head = cut.rsplit(" ", 1)[0]
        # One very long word: cut inside it rather than lose most of the text.
        if len(head) >= limit // 2:
            cut = head
    return cut.rstrip(" ,;:-\u2013\u2014") + "…"


def safe_header_text(text: str, limit: int = 200) -> str:
    """``text`` made safe for a header value built from data: one line, no encoded-words.

    CR, LF, NUL, U+0085, U+2028, U+2029 and every other control character become
    a space, runs of spaces become one, and "=?" (the start of an RFC 2047
    encoded-word, which Python's email package would decode, line breaks
    included) gets an invisible U+200B between its characters. The result is at
    most ``limit`` characters, cut at a word with an ellipsis.
    """
    neutralised = _one_line(text).replace(_ENCODED_WORD_START, _NEUTRALISED_START)
    return _cut(neutralised, limit)


def make_message_id(key: str, domain: str) -> str:
    """A Message-ID that depends only on ``key``: a message sent again after a crash keeps it."""
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{domain!r} is not a host name; give the domain of the site")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


class _VerbatimHeader(str):
    """A header value the email package emits exactly as given, folded where we chose.

    Python's folder turns any word longer than a line into RFC 2047
    encoded-words; mail clients do not decode those in List-Unsubscribe or
    List-Id (RFC 2369 §2, RFC 2919 §3), so a long URL would stop working. The
    email policies keep a value that carries a ``name`` and a ``fold()`` method
    as it is, whoever serialises the message later.
    """

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, lines: Sequence[str]) -> _VerbatimHeader:
        for line in lines:
            if len(line) > _MAX_URL or _one_line(line) != line or not line.isascii():
                raise ValueError(f"{name}: {line!r} cannot be a header line")
        value = super().__new__(cls, " ".join(lines))
        value.name = name
        value.lines = tuple(lines)
        return value

    def __getnewargs__(self) -> tuple[str, tuple[str, ...]]:  # type: ignore[override]
        # copy.deepcopy() and pickle rebuild the value through __new__.
        return (self.name, self.lines)

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: " + (policy.linesep + " ").join(self.lines) + policy.linesep


def _header_url(url: str, scheme: str, field: str) -> str:
    if len(url) > _MAX_URL or not _HEADER_URL.fullmatch(url):
        raise ValueError(
            f"{field}: {url!r} cannot go in a header; percent-encode spaces, commas, "
            "angle brackets and non-ASCII characters"
        )
    if urlsplit(url).scheme.lower() != scheme:
        raise ValueError(f"{field}: {url!r} must be a {scheme}: URL")
    return url


def _list_id(settings: MailSettings) -> _VerbatimHeader:
    """List-Id (RFC 2919): the site title as a phrase, then ``<list_id>``."""
    if not _DOMAIN.fullmatch(settings.list_id):
        raise ValueError(
            f"list id {settings.list_id!r} must look like a host name, e.g. news.example.org"
        )
    phrase = safe_header_text(plain_title(settings.site_title), limit=NAME_LIMIT)
    if not phrase:
        lines: list[str] = []
    elif phrase.isascii() and re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+", phrase):
        lines = [phrase]  # atoms only
    elif phrase.isascii():
        lines = ['"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"']
    else:
        lines = [line.strip() for line in Header(phrase, "utf-8").encode(linesep="\n").split("\n")]
    if not lines:
        return _VerbatimHeader("List-Id", [f"<{settings.list_id}>"])
    return _VerbatimHeader("List-Id", [*lines[:-1], f"{lines[-1]} <{settings.list_id}>"])


# --- subject -------------------------------------------------------------------------------


def _title(article: Article) -> str:
    return _one_line(plain_title(article.title)) or "(untitled)"


def _subject(articles: Sequence[Article]) -> str:
    """How many articles, and the first one's title, in at most ``SUBJECT_LIMIT`` characters."""
    first = _title(articles[0])
    if len(articles) == 1:
        return safe_header_text(first, limit=SUBJECT_LIMIT)
    prefix = f"{len(articles)} new articles: "
    suffix = f" and {len(articles) - 1} more"
    budget = SUBJECT_LIMIT - len(prefix) - len(suffix)
    return f"{prefix}{safe_header_text(first, limit=budget)}{suffix}"


# --- body ----------------------------------------------------------------------------------


def _date(moment: datetime) -> str:
    """ "2 March 2026", never through the locale."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _body_url(url: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    return (
        bool(url)
        and len(url) <= _MAX_URL
        and _one_line(url) == url
        and " " not in url
        and urlsplit(url).scheme.lower() in schemes
    )


def _article_link(article: Article, base_url: str) -> str:
    """Where an item links: its own http(s) ``link``, else the page we publish for it."""
    if _body_url(article.link):
        return article.link
    return f"{base_url}{article_page_path(article.id)}"


def _item(article: Article, names: Names, base_url: str) -> _Item:
    regions = ", ".join(_one_line(names.region(slug)) for slug in article.regions)
    topics = ", ".join(_one_line(names.topic(slug)) for slug in article.topics)
    published = _date(article.published.astimezone(UTC))
    summary = _one_line(plain_title(article.summary))
    return _Item(
        title=_cut(_title(article), TITLE_LIMIT),
        url=_article_link(article, base_url),
        meta=" · ".join(part for part in (regions, topics, published) if part),
        summary=summarize(summary, SUMMARY_LIMIT) if summary else "",
    )


def _wrap(text: str, initial: str = "", subsequent: str | None = None) -> str:
    """``text`` filled to ``TEXT_WIDTH`` columns; long words (URLs) are never broken."""
    wrapper = TextWrapper(
        width=TEXT_WIDTH,
        initial_indent=initial,
        subsequent_indent=initial if subsequent is None else subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapper.fill(text)


@lru_cache(maxsize=1)
def _templates() -> tuple[Template, Template]:
    environment = Environment(
        loader=PackageLoader("syndicator", "templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    environment.filters["wrap"] = _wrap
    environment.globals["indent"] = ITEM_INDENT
    return (
        environment.get_template("mail/digest.txt"),
        environment.get_template("mail/digest.html"),
    )


def describe_filters(  # noqa: PLR0917 - callers pass the subscriber's five lists in order
    regions: Sequence[str],
    topics: Sequence[str],
    keywords: Sequence[str],
    exclude_regions: Sequence[str],
    exclude_topics: Sequence[str],
    names: Names,
) -> str:
    """What a subscriber asked for, in words: "regions Europe, Global; topics AEO; …"."""

    def part(singular: str, values: Sequence[str]) -> str:
        noun = singular if len(values) == 1 else f"{singular}s"
        return f"{noun} {', '.join(values)}"

    included = [
        part(noun, values)
        for noun, values in (
            ("region", [names.region(slug) for slug in regions]),
            ("topic", [names.topic(slug) for slug in topics]),
            ("keyword", [f"'{keyword}'" for keyword in keywords]),
        )
        if values
    ]
    excluded = [
        "except " + part(noun, values)
        for noun, values in (
            ("region", [names.region(slug) for slug in exclude_regions]),
            ("topic", [names.topic(slug) for slug in exclude_topics]),
        )
        if values
    ]
    if not included:
        return " ".join(["all articles", "; ".join(excluded)]).strip()
    return "; ".join(included + excluded)


# --- the message ---------------------------------------------------------------------------


def compose(
    recipient: Recipient,
    articles: Sequence[Article],
    *,
    settings: MailSettings,
    names: Names,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """The message telling ``recipient`` about ``articles`` (newest first), sent at ``now``."""
    if not articles:
        raise ValueError("compose() needs at least one article; send nothing instead")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    if recipient.cadence not in CADENCES:
        raise ValueError(f"unknown cadence {recipient.cadence!r}; known: {', '.join(CADENCES)}")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"{message_id!r} is not a Message-ID; use make_message_id()")
    if recipient.manage_url and not _body_url(recipient.manage_url):
        raise ValueError(f"manage_url: {recipient.manage_url!r} must be an http(s) URL")
    unsubscribe_url = _header_url(recipient.unsubscribe_url, "https", "unsubscribe_url")
    unsubscribe_mailto = _header_url(recipient.unsubscribe_mailto, "mailto", "unsubscribe_mailto")

    site_title = _one_line(plain_title(settings.site_title))
    context = {
        "site_title": site_title,
        "heading": f"{site_title} — {_CADENCE_HEADING[recipient.cadence]}",
        "intro": f"{_plural(len(articles), 'new article')} for you, {_date(now)}.",
        "items": [_item(article, names, settings.base_url) for article in articles],
        "reason": (
            f"You receive this because you subscribed to {site_title}"
            f" ({_CADENCE_REASON[recipient.cadence]}) for {_one_line(recipient.filters)}."
        ),
        "unsubscribe_url": unsubscribe_url,
        "manage_url": recipient.manage_url,
    }
    text_template, html_template = _templates()

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = settings.sender
    if len(message["From"].addresses) != 1:
        raise ValueError(f"sender {settings.sender!r} must be exactly one address")
    message["To"] = Address(
        display_name=safe_header_text(recipient.name, limit=NAME_LIMIT),
        addr_spec=recipient.email,
    )
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Subject"] = _subject(articles)
    message["List-Id"] = _list_id(settings)
    # RFC 2369 §3.2 and RFC 8058 §3.1: one-click HTTPS first, mailto as a fallback.
    message["List-Unsubscribe"] = _VerbatimHeader(
        "List-Unsubscribe", [f"<{unsubscribe_url}>,", f"<{unsubscribe_mailto}>"]
    )
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
    message.set_content(
        text_template.render(context), subtype="plain", charset="utf-8", cte="quoted-printable"
    )
    message.add_alternative(
        html_template.render(context), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    for part in message.iter_parts():
        del part["MIME-Version"]  # set_content() adds it to each part; it belongs on top only
    return message
