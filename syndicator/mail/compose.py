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

:class:`Composer` is the fast path for a batch: thousands of subscribers get the
same new articles in one cycle, so it renders and quoted-printable encodes the
article list (and the Subject) once per set of articles, keeps it in a small LRU,
and per recipient only renders the footer and writes the headers and MIME
structure by hand. :func:`compose` parses its bytes back, so both share one
source of truth.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from functools import lru_cache
from textwrap import TextWrapper
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, Template, select_autoescape
from markupsafe import escape

from syndicator.models import Article, summarize
from syndicator.publish.feeds import Names, article_page_path, plain_title

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
# Unicode line and paragraph separators U+2028 and U+2029: every code point in
# these categories, and only those, matches _UNSAFE_CHARS (the tests check all).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# \s is what str.split() splits at (str.isspace()).
_SPACE_OR_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Breaks the "=?" that opens an RFC 2047 encoded-word, invisibly.
_ENCODED_WORD_START = "=?"
_NEUTRALISED_START = "=\u200b?"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_DOMAIN = re.compile(f"^{_HOST}$")
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
    feed_url: str = ""  # the reader's private Atom feed, when the site serves one
    group_by: str = "region"  # a digest's table of contents: by "region" or by "topic"


@dataclass(frozen=True, slots=True)
class _Item:
    """One article as both templates show it."""

    title: str
    url: str
    meta: str
    summary: str
    number: int = 0  # its place in the message, from 1
    anchor: str = ""  # the id the table of contents links to


@dataclass(frozen=True, slots=True)
class _Group:
    """The articles of one region (or topic), as a digest's table of contents groups them."""

    name: str
    items: list[_Item]


# Gmail clips a message past about 102 KB of HTML: the article list stays under this, and
# whatever does not fit is counted in an "N more articles" line linking to the reader's
# private feed (or to the site, for a reader without one).
SECTION_BUDGET = 80_000
OTHER_GROUP = "Other news"


def _groups(
    articles: Sequence[Article], items: Sequence[_Item], names: Names, group_by: str
) -> list[_Group]:
    """Items grouped by their article's first region (or topic), groups in the order of
    their first article, numbered in the order they are shown."""
    grouped: dict[str, list[_Item]] = {}
    for article, item in zip(articles, items, strict=True):
        slugs = article.topics if group_by == "topic" else article.regions
        name = names.topic(slugs[0]) if group_by == "topic" and slugs else ""
        if group_by != "topic" and slugs:
            name = names.region(slugs[0])
        grouped.setdefault(_one_line(name) or OTHER_GROUP, []).append(item)
    groups = []
    number = 0
    for name, members in grouped.items():
        numbered = []
        for item in members:
            number += 1
            numbered.append(replace(item, number=number, anchor=f"article-{number}"))
        groups.append(_Group(name, numbered))
    return groups


# --- header text ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """``text`` with control characters and line separators turned to spaces, spaces squeezed."""
    return " ".join(_UNSAFE_CHARS.sub(" ", text).split())


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


def _scheme_in(url: str, schemes: tuple[str, ...]) -> bool:
    """Whether ``urlsplit(url).scheme.lower()`` is one of ``schemes`` (lower case).

    For an ASCII URL without brackets, without leading white space or control
    characters (callers check), urlsplit() cannot fail and its scheme is what
    comes before the first ":" when that is one of ours; anything else still
    goes through urlsplit().
    """
    if not url.isascii() or "[" in url or "]" in url:
        return urlsplit(url).scheme.lower() in schemes
    head, colon, _ = url.partition(":")
    return bool(colon) and head.lower() in schemes


def _header_url(url: str, schemes: tuple[str, ...], field: str) -> str:
    if len(url) > _MAX_URL or not _HEADER_URL.fullmatch(url):
        raise ValueError(
            f"{field}: {url!r} cannot go in a header; percent-encode spaces, commas, "
            "angle brackets and non-ASCII characters"
        )
    if not _scheme_in(url, schemes):
        raise ValueError(f"{field}: {url!r} must be a {' or '.join(schemes)}: URL")
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
    # No white space or control character: what _one_line() would leave as it is, no space.
    return (
        bool(url)
        and len(url) <= _MAX_URL
        and not _SPACE_OR_UNSAFE.search(url)
        and _scheme_in(url, schemes)
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


PREHEADER_LIMIT = 140


def _preheader(articles: Sequence[Article]) -> str:
    """The line mail clients show next to the subject: the first titles, then a count."""
    titles = [_title(article) for article in articles[:3]]
    line = _cut(" · ".join(titles), PREHEADER_LIMIT)
    if len(articles) > 3:
        line += f" (+{len(articles) - 3} more)"
    return line


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


@lru_cache(maxsize=1024)  # the same filter descriptions come back for many subscribers
def _wrap_cached(text: str, initial: str = "", subsequent: str | None = None) -> str:
    return _wrap(text, initial, subsequent)


@lru_cache(maxsize=1)
def mail_environment() -> Environment:
    """The Jinja environment of every mail template (``templates/mail/``)."""
    environment = Environment(
        loader=PackageLoader("syndicator", "templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    environment.filters["wrap"] = _wrap_cached
    environment.globals["indent"] = ITEM_INDENT
    return environment


@lru_cache(maxsize=1)
def _templates() -> tuple[Template, Template]:
    environment = mail_environment()
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

_SMTP = email.policy.SMTP
# compose() parses Composer's bytes with this policy, so that serialising the
# message again gives the same bytes: "none" keeps every header line as written
# (the stock policy would refold the long List-Unsubscribe URLs into encoded-words).
_PARSED = email.policy.SMTP.clone(refold_source="none")
_FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD stay within 78 characters
_QP_LINE = 76  # RFC 2045 §6.7 rule 5: encoded lines are at most 76 characters
_QP_UNSAFE = re.compile(rb"[^\t !-~]")  # what quoted-printable escapes, once "=" is done
_EQUALS = ord("=")
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ATOM_PHRASE = re.compile(f"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
# An address the fast path may write as it is: a dot-atom without "=" or "?" (so it
# never looks like an encoded-word) at a host name. Anything else goes through
# email.headerregistry.Address, as before.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_SIMPLE_ADDRESS = re.compile(rf"{_LOCAL}(?:\.{_LOCAL})*@{_HOST}")
_MAX_ADDRESS = 254
# RFC 2047 §5(3): what a "Q" encoded-word in a phrase may carry as it is.
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_ENCODED_WORD_PAYLOAD = 62  # "=?utf-8?q?" + 62 + "?=" is 74: "To: " plus one fits 78
_BASE64_BYTES = 45  # 45 bytes are 60 base64 characters
_LIST_TAIL = (
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Auto-Submitted: auto-generated\r\n"  # RFC 3834 §5
    b"MIME-Version: 1.0\r\n"
)
_TEXT_PART = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_HTML_PART = (
    b'Content-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
SECTION_CACHE_SIZE = 256

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class CacheInfo(NamedTuple):
    """Like ``functools.lru_cache``'s: how often a cached article section was reused."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class _LRU(Generic[_K, _V]):
    """A small least-recently-used mapping with hit and miss counters."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a cache needs room for at least one entry")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self._data))

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0


@dataclass(frozen=True, slots=True)
class _Section:
    """What depends only on the articles: Subject, and the article lists, encoded."""

    subject: bytes  # the folded "Subject:" header, CRLF at the end of each line
    text: bytes  # quoted-printable, CRLF line ends, ends at a line break
    html: bytes
    preheader: str  # the line mail clients show next to the subject
    more: int = 0  # articles left out to stay under the size cap


def _escape_byte(match: re.Match[bytes]) -> bytes:
    return b"=%02X" % match[0][0]


def _qp_encode(line: bytes) -> bytes:
    """One line (no line break) as quoted-printable (RFC 2045 §6.7), soft-broken at 76."""
    encoded = line.replace(b"=", b"=3D")
    if _QP_UNSAFE.search(encoded):
        encoded = _QP_UNSAFE.sub(_escape_byte, encoded)
    if encoded[-1:] in {b" ", b"\t"}:  # rule 3: no white space at the end of a line
        encoded = encoded[:-1] + b"=%02X" % encoded[-1]
    if len(encoded) <= _QP_LINE:
        return encoded
    pieces = []
    start = 0
    while len(encoded) - start > _QP_LINE:
        stop = start + _QP_LINE - 1  # room for the "=" of the soft line break
        # Never split an "=XX" escape across lines.
        if encoded[stop - 1] == _EQUALS:
            stop -= 1
        elif encoded[stop - 2] == _EQUALS:
            stop -= 2
        pieces.append(encoded[start:stop])
        start = stop
    pieces.append(encoded[start:])
    return b"=\r\n".join(pieces)


# Lines come back (headings, the lines of a section, "N more"): each encoded once.
_qp_line = lru_cache(maxsize=2048)(_qp_encode)


def _quoted_printable(text: str) -> bytes:
    """``text`` as UTF-8 quoted-printable with CRLF line ends, ending at a line break.

    Quoted-printable works line by line, so chunks that each end at a line break
    are encoded apart and joined: the article list once, each footer on its own.
    As ``set_content()`` does, the text ends with a line break and CR, LF and
    CRLF all end a line.
    """
    if not text:
        return b""
    return b"".join(_qp_line(line) + b"\r\n" for line in text.encode("utf-8").splitlines())


def _fold(name: str, tokens: Sequence[str]) -> bytes:
    """A header from tokens separated by folding white space, lines within 78 where possible."""
    lines: list[str] = []
    line = f"{name}:"
    empty = True
    for token in tokens:
        if not empty and len(line) + 1 + len(token) > _FOLD_AT:
            lines.append(line)
            line = ""
        line = f"{line} {token}"
        empty = False
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _q_char(char: str) -> str:
    if char in _Q_SAFE:
        return char
    if char == " ":
        return "_"
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded-words of at most 74 characters, never splitting a character.

    "Q" unless "B" is shorter by five or more, as ``email._encoded_words`` chooses.
    """
    quoted = [_q_char(char) for char in text]
    q_length = sum(len(chunk) for chunk in quoted)
    if q_length - -(-len(text.encode("utf-8")) // 3) * 4 < 5:
        words, current = [], ""
        for chunk in quoted:
            if current and len(current) + len(chunk) > _ENCODED_WORD_PAYLOAD:
                words.append(current)
                current = ""
            current += chunk
        words.append(current)
        return [f"=?utf-8?q?{word}?=" for word in words]
    pieces: list[bytes] = []
    current_bytes = b""
    for char in text:
        data = char.encode("utf-8")
        if current_bytes and len(current_bytes) + len(data) > _BASE64_BYTES:
            pieces.append(current_bytes)
            current_bytes = b""
        current_bytes += data
    pieces.append(current_bytes)
    return [f"=?utf-8?b?{base64.b64encode(piece).decode('ascii')}?=" for piece in pieces]


@lru_cache(maxsize=4096)
def _phrase(display_name: str) -> tuple[str, ...]:
    """A display name already through ``safe_header_text`` as the words of an RFC 5322 phrase."""
    if not display_name:
        return ()
    if display_name.isascii():
        if _ATOM_PHRASE.fullmatch(display_name):
            return tuple(display_name.split(" "))
        return ('"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"',)
    # ASCII atoms stay as they are, each run of other words becomes encoded-words (with
    # the spaces between its words inside them): "Ana =?utf-8?q?P=C3=A9rez?=".
    words: list[str] = []
    run: list[str] = []
    for word in display_name.split(" "):
        if word.isascii() and _ATOM_PHRASE.fullmatch(word):
            if run:
                words += _encoded_words(" ".join(run))
                run = []
            words.append(word)
        else:
            run.append(word)
    if run:
        words += _encoded_words(" ".join(run))
    return tuple(words)


def _to_header(recipient: Recipient) -> bytes:
    display_name = safe_header_text(recipient.name, limit=NAME_LIMIT)
    address = recipient.email
    if len(address) <= _MAX_ADDRESS and _SIMPLE_ADDRESS.fullmatch(address):
        return _fold("To", [*_phrase(display_name), f"<{address}>" if display_name else address])
    # Unusual addresses: let the email package check and write them, as compose() always did.
    _, header = _SMTP.header_store_parse("To", Address(display_name, addr_spec=address))
    folded: str = header.fold(policy=_SMTP)
    return folded.encode("ascii")


def _header(name: str, value: str) -> bytes:
    """``name: value`` parsed, checked and folded by the email package, as ``message[name]``."""
    header = _SMTP.header_store_parse(name, value)[1]
    folded: str = header.fold(policy=_SMTP)
    return folded.encode("ascii")


def _render(template: Template, block: str, context: dict[str, Any]) -> str:
    """One block of ``template``; ``context`` must hold the environment's globals too.

    A shared context skips copying the globals into every render, a third of its cost.
    """
    return "".join(template.blocks[block](template.new_context(context, shared=True)))


# Stand-ins for each reader's links in a footer rendered for many readers (private-use
# characters: no URL or reason holds them).
_LINK_SLOT = "\ue000unsubscribe\ue000"
_MANAGE_SLOT = "\ue000manage\ue000"
_FEED_SLOT = "\ue000feed\ue000"
_MORE_SLOT = "\ue000more\ue000"
# A footer encoded once for many readers: pieces of quoted-printable lines ready to send,
# and (``True``) single lines holding link slots, to be filled in and encoded per reader.
_Slotted = tuple[tuple[bytes, bool], ...]
_SLOTS = tuple(slot.encode("utf-8") for slot in (_LINK_SLOT, _MANAGE_SLOT, _FEED_SLOT))
_SLOT_MARK = "\ue000".encode()


def _slotted(text: str) -> _Slotted:
    """``text`` encoded as :func:`_quoted_printable` does, but for its lines with a slot."""
    pieces: list[tuple[bytes, bool]] = []
    ready: list[bytes] = []
    for line in text.encode("utf-8").splitlines():
        if _SLOT_MARK in line:
            if ready:
                pieces.append((b"".join(ready), False))
                ready = []
            pieces.append((line, True))
        else:
            ready.append(_qp_encode(line) + b"\r\n")
    if ready:
        pieces.append((b"".join(ready), False))
    return tuple(pieces)


def _fill(pieces: _Slotted, links: Sequence[bytes]) -> bytes:
    """A :func:`_slotted` footer with a reader's links (unsubscribe, manage, feed) put in."""
    out: list[bytes] = []
    for piece, slotted in pieces:
        if slotted:
            line = piece
            for slot, link in zip(_SLOTS, links, strict=True):
                line = line.replace(slot, link)
            out.append(_qp_encode(line) + b"\r\n")  # a reader's own: not worth caching
        else:
            out.append(piece)
    return b"".join(out)


# A link as long as the longest the "N more articles" line may carry, to size it.
_SIZED_LINK = "https://" + "x" * 200


class Composer:
    """Composes messages for many recipients of the same articles, fast.

    ``compose_bytes()`` gives what ``bytes(compose(...))`` gives: the Subject and
    the article lists of both parts are rendered and quoted-printable encoded
    once per set of articles (an LRU of ``cache_size`` entries, keyed by each
    article's id, content hash and every other field the mail shows), the heading
    once per cadence and day; per recipient only the footer is rendered and
    encoded, and the headers and the ``multipart/alternative`` structure are
    written by hand. ``settings`` and ``names`` are read once: make a new
    Composer when they change. Keep one per thread (the caches are not locked).
    """

    def __init__(
        self, settings: MailSettings, names: Names, *, cache_size: int = SECTION_CACHE_SIZE
    ) -> None:
        sender = _SMTP.header_store_parse("From", settings.sender)[1]
        if len(sender.addresses) != 1:
            raise ValueError(f"sender {settings.sender!r} must be exactly one address")
        self.settings = settings
        self.names = names
        self._from: bytes = sender.fold(policy=_SMTP).encode("ascii")
        self._list_id = _list_id(settings).fold(policy=_SMTP).encode("ascii")
        self._site_title = _one_line(plain_title(settings.site_title))
        self._text, self._html = _templates()
        # Every render gets the environment's globals and the site title.
        self._context: dict[str, Any] = {
            **self._text.environment.globals,
            "site_title": self._site_title,
        }
        self._sections: _LRU[tuple[Hashable, ...], _Section] = _LRU(cache_size)
        self._heads: _LRU[tuple[str, str, str], tuple[bytes, bytes]] = _LRU(256)
        self._feet: _LRU[tuple[str, bool, bool], tuple[_Slotted, _Slotted]] = _LRU(cache_size)
        self._mores: _LRU[tuple[int, bool], tuple[str, str]] = _LRU(256)
        self._now: datetime | None = None
        self._date = b""

    def _foot(
        self, reason: str, unsubscribe_url: str, manage_url: str, feed_url: str = ""
    ) -> tuple[bytes, bytes]:
        """The footer of both parts, encoded: rendered and encoded once per reason (many
        readers share their filters); per reader only the lines with its links."""
        if any(slot in reason for slot in (_LINK_SLOT, _MANAGE_SLOT, _FEED_SLOT)):
            footer = {  # cannot happen; never mistake it
                **self._context,
                "reason": reason,
                "unsubscribe_url": unsubscribe_url,
                "manage_url": manage_url,
                "feed_url": feed_url,
            }
            return (
                _quoted_printable(_render(self._text, "foot", footer)),
                _quoted_printable(_render(self._html, "foot", footer)),
            )
        key = (reason, bool(manage_url), bool(feed_url))
        encoded = self._feet.get(key)
        if encoded is None:
            footer = {
                **self._context,
                "reason": reason,
                "unsubscribe_url": _LINK_SLOT,
                "manage_url": _MANAGE_SLOT if manage_url else "",
                "feed_url": _FEED_SLOT if feed_url else "",
            }
            encoded = (
                _slotted(_render(self._text, "foot", footer)),
                _slotted(_render(self._html, "foot", footer)),
            )
            self._feet.put(key, encoded)
        text, html_text = encoded
        links = (unsubscribe_url, manage_url, feed_url)
        return (
            _fill(text, [link.encode("utf-8") for link in links]),
            # What the HTML template's autoescaping would have made of the links.
            _fill(html_text, [str(escape(link)).encode("utf-8") for link in links]),
        )

    def _more(self, count: int, url: str, *, is_feed: bool) -> tuple[bytes, bytes]:
        """The "N more articles" line of both parts, encoded, linking to ``url``: rendered
        once per count, with each reader's link put in."""
        if not count:
            return b"", b""
        key = (count, is_feed)
        rendered = self._mores.get(key)
        if rendered is None:
            context = {
                **self._context,
                "more": count,
                "more_url": _MORE_SLOT,
                "more_is_feed": is_feed,
            }
            rendered = (_render(self._text, "more", context), _render(self._html, "more", context))
            self._mores.put(key, rendered)
        text, html_text = rendered
        return (
            _quoted_printable(text.replace(_MORE_SLOT, url)),
            _quoted_printable(html_text.replace(_MORE_SLOT, str(escape(url)))),
        )

    def cache_info(self) -> CacheInfo:
        """Hits and misses of the article-section cache."""
        return self._sections.info()

    def cache_clear(self) -> None:
        self._sections.clear()
        self._heads.clear()
        self._feet.clear()
        self._mores.clear()

    def compose_bytes(
        self,
        recipient: Recipient,
        articles: Sequence[Article],
        *,
        now: datetime,
        message_id: str,
    ) -> bytes:
        """The message telling ``recipient`` about ``articles`` (newest first), sent at ``now``.

        CRLF line ends, 7-bit, ready for SMTP ``DATA``.
        """
        if not articles:
            raise ValueError("compose() needs at least one article; send nothing instead")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
        cadence = recipient.cadence
        if cadence not in CADENCES:
            raise ValueError(f"unknown cadence {cadence!r}; known: {', '.join(CADENCES)}")
        if len(message_id) > _MAX_URL or not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a Message-ID; use make_message_id()")
        manage_url = recipient.manage_url
        if manage_url and not _body_url(manage_url):
            raise ValueError(f"manage_url: {manage_url!r} must be an http(s) URL")
        feed_url = recipient.feed_url
        if feed_url and not _body_url(feed_url):
            raise ValueError(f"feed_url: {feed_url!r} must be an http(s) URL")
        # RFC 8058 asks for HTTPS; plain HTTP still works for a local or test installation.
        unsubscribe_url = _header_url(
            recipient.unsubscribe_url, ("https", "http"), "unsubscribe_url"
        )
        unsubscribe_mailto = _header_url(
            recipient.unsubscribe_mailto, ("mailto",), "unsubscribe_mailto"
        )
        # The lines "<url>," and "<mailto>" within _MAX_URL, as _VerbatimHeader checks them.
        for line in (f"<{unsubscribe_url}>,", f"<{unsubscribe_mailto}>"):
            if len(line) > _MAX_URL:
                raise ValueError(f"List-Unsubscribe: {line!r} cannot be a header line")
        to = _to_header(recipient)

        section = self._section(articles, recipient.group_by)
        head_text, head_html = self._head(cadence, len(articles), now, section.preheader)
        reason = (
            f"You receive this because you subscribed to {self._site_title}"
            f" ({_CADENCE_REASON[cadence]}) for {_one_line(recipient.filters)}."
        )
        foot_text, foot_html = self._foot(reason, unsubscribe_url, manage_url, feed_url)
        # What did not fit: in the reader's own feed, else on the site.
        more_text, more_html = self._more(
            section.more, feed_url or self.settings.base_url, is_feed=bool(feed_url)
        )
        if now is not self._now:
            self._date = f"Date: {format_datetime(now)}\r\n".encode("ascii")
            self._now = now
        # "=_" never occurs in quoted-printable text, so the boundary cannot either.
        boundary = ("=_" + hashlib.sha256(message_id.encode("ascii")).hexdigest()[:32]).encode()
        return b"".join(
            (
                self._from,
                to,
                self._date,
                b"Message-ID: " + message_id.encode("ascii") + b"\r\n",
                section.subject,
                self._list_id,
                # RFC 2369 §3.2 and RFC 8058 §3.1: one-click HTTPS first, mailto as a fallback.
                b"List-Unsubscribe: <" + unsubscribe_url.encode("ascii") + b">,\r\n <",
                unsubscribe_mailto.encode("ascii") + b">\r\n",
                _LIST_TAIL,
                b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n',
                b"\r\n--" + boundary + b"\r\n",
                _TEXT_PART,
                head_text,
                section.text,
                more_text,
                foot_text,
                b"\r\n--" + boundary + b"\r\n",
                _HTML_PART,
                head_html,
                section.html,
                more_html,
                foot_html,
                b"\r\n--" + boundary + b"--\r\n",
            )
        )

    def _section(self, articles: Sequence[Article], group_by: str = "region") -> _Section:
        # content_hash covers title and body only: the summary, link, classification and
        # date the mail shows are part of the key too.
        key = (
            group_by,
            *(
                (a.id, a.content_hash, a.title, a.summary, a.link, a.regions, a.topics, a.published)
                for a in articles
            ),
        )
        section = self._sections.get(key)
        if section is None:
            items = [_item(article, self.names, self.settings.base_url) for article in articles]

            def render(shown: int) -> tuple[str, str]:
                context = {
                    **self._context,
                    "items": items[:shown],
                    "groups": _groups(articles[:shown], items[:shown], self.names, group_by),
                }
                return _render(self._text, "items", context), _render(self._html, "items", context)

            def size(shown: int) -> int:
                # The "N more" line counts too, with a link as long as a private feed's.
                more = self._more(len(items) - shown, _SIZED_LINK, is_feed=True)[1]
                return len(render(shown)[1].encode("utf-8")) + len(more)

            shown = len(items)
            text, html_text = render(shown)
            if len(html_text.encode("utf-8")) > SECTION_BUDGET:
                # The most articles that fit: a binary search over how many are shown.
                low, high = 1, shown - 1
                while low < high:
                    middle = (low + high + 1) // 2
                    if size(middle) <= SECTION_BUDGET:
                        low = middle
                    else:
                        high = middle - 1
                shown = low
                text, html_text = render(shown)
            section = _Section(
                subject=_header("Subject", _subject(articles)),
                text=_quoted_printable(text),
                html=_quoted_printable(html_text),
                preheader=_preheader(articles),
                more=len(items) - shown,
            )
            self._sections.put(key, section)
        return section

    def _head(
        self, cadence: str, count: int, now: datetime, preheader: str = ""
    ) -> tuple[bytes, bytes]:
        intro = f"{_plural(count, 'new article')} for you, {_date(now)}."
        key = (cadence, intro, preheader)
        head = self._heads.get(key)
        if head is None:
            context = {
                **self._context,
                "heading": f"{self._site_title} — {_CADENCE_HEADING[cadence]}",
                "intro": intro,
                "preheader": preheader,
            }
            head = (
                _quoted_printable(_render(self._text, "head", context)),
                _quoted_printable(_render(self._html, "head", context)),
            )
            self._heads.put(key, head)
        return head


def compose(
    recipient: Recipient,
    articles: Sequence[Article],
    *,
    settings: MailSettings,
    names: Names,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """The message telling ``recipient`` about ``articles`` (newest first), sent at ``now``.

    ``Composer(settings, names).compose_bytes(...)`` parsed back: ``bytes()`` of the
    result gives those bytes again. For many recipients keep one :class:`Composer`.
    """
    data = Composer(settings, names).compose_bytes(
        recipient, articles, now=now, message_id=message_id
    )
    message = email.message_from_bytes(data, policy=_PARSED)
    if not isinstance(message, EmailMessage):  # pragma: no cover - the policy makes one
        raise TypeError("the email package gave no EmailMessage")
    return message
