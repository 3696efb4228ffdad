"""Composing mail: structure, exact headers, wording, safety against hostile text, golden parts."""

from __future__ import annotations

import base64
import copy
import email
import email.policy
import pickle
import quopri
import re
import sys
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from syndicator.mail.compose import (
    _CADENCE_HEADING,
    _CADENCE_REASON,
    _UNSAFE_CATEGORIES,
    _UNSAFE_CHARS,
    CacheInfo,
    Composer,
    MailSettings,
    Recipient,
    _date,
    _groups,
    _item,
    _list_id,
    _one_line,
    _plural,
    _preheader,
    _quoted_printable,
    _subject,
    _templates,
    _VerbatimHeader,
    compose,
    describe_filters,
    make_message_id,
    safe_header_text,
)
from syndicator.models import Article
from syndicator.publish.feeds import Names, plain_title
from tests.conftest import DATA_DIR, T0

GOLDEN = DATA_DIR / "golden"
NAMES = Names(
    regions={"americas": "Americas and Caribbean", "europe": "Europe", "global": "Global"},
    topics={"aeo": "AEO", "risk-management": "Risk management"},
)
SETTINGS = MailSettings(
    sender="WCO News <news@example.org>",
    site_title="WCO News",
    base_url="https://news.example.org/",
    list_id="wco-news.news.example.org",
)
TOKEN = "tok_" + "A1b2C3d4" * 8  # long enough that the stock folder would encode it
RECIPIENT = Recipient(
    email="ana@example.org",
    name="Ana Pérez",
    filters="regions Americas and Caribbean; topics AEO",
    cadence="daily",
    unsubscribe_url=f"https://news.example.org/unsubscribe/{TOKEN}",
    unsubscribe_mailto=f"mailto:news@example.org?subject=unsubscribe%20{TOKEN}",
    manage_url=f"https://news.example.org/manage/{TOKEN}",
)
MESSAGE_ID = make_message_id("ana@example.org/2026-03-02", "news.example.org")
EXPECTED_HEADERS = [
    "From",
    "To",
    "Date",
    "Message-ID",
    "Subject",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]
COLOMBIA = "Colombia Adopts Mexican Expertise in Risk Profiling to Modernise Its Customs Controls"


def article(number: int, title: str, **fields: object) -> Article:
    published = T0 - timedelta(hours=number)
    values: dict[str, object] = {
        "id": f"article-{number}",
        "title": title,
        "body": f"Body of article {number}. It is never copied into mail.",
        "summary": f"Summary of article {number}, in plain text.",
        "link": "",
        "author": "WCO",
        "source": "store.txt",
        "line": number,
        "regions": ("americas",),
        "topics": ("aeo",),
        "published": published,
        "updated": published,
        "first_seen": published,
        "content_hash": f"hash-{number}",
    }
    values.update(fields)
    return Article(**values)  # type: ignore[arg-type]


def digest() -> list[Article]:
    return [
        article(
            1,
            COLOMBIA,
            summary=(
                "Colombia's customs administration (DIAN) has adopted the risk profiling "
                "methodology of Mexico's ANAM after a two-week exchange of experts in Bogotá."
            ),
            regions=("americas",),
            topics=("aeo", "risk-management"),
        ),
        article(
            2,
            "EU & Partners Agree on Single Window Pilot",
            link="https://partners.example.com/news/single-window?id=7&lang=en",
            regions=("europe", "global"),
            topics=(),
        ),
        article(3, "AEO Mutual Recognition: 1 < 2 & 3 > 2", regions=(), topics=("aeo",)),
    ]


def send(
    articles: list[Article], recipient: Recipient = RECIPIENT, settings: MailSettings = SETTINGS
) -> tuple[bytes, EmailMessage]:
    """Compose, serialise and parse back, as a receiving mail client would."""
    message = compose(
        recipient, articles, settings=settings, names=NAMES, now=T0, message_id=MESSAGE_ID
    )
    data = bytes(message)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return data, parsed


def parts(parsed: EmailMessage) -> tuple[str, str]:
    text_part, html_part = parsed.iter_parts()
    assert isinstance(text_part, EmailMessage)
    assert isinstance(html_part, EmailMessage)
    text, html = text_part.get_content(), html_part.get_content()
    assert isinstance(text, str)
    assert isinstance(html, str)
    return text, html


def header_block(data: bytes) -> str:
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii")


# --- structure and headers -----------------------------------------------------------------


def test_structure_is_alternative_text_then_html_in_utf8_with_crlf() -> None:
    data, parsed = send(digest())
    assert parsed.get_content_type() == "multipart/alternative"
    subparts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in subparts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in subparts] == ["utf-8", "utf-8"]
    assert [part["MIME-Version"] for part in subparts] == [None, None]
    assert data.isascii()  # 7-bit clean: quoted-printable bodies, encoded headers
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_every_header_has_its_exact_value() -> None:
    data, parsed = send(digest())
    assert parsed.keys() == EXPECTED_HEADERS
    assert parsed["From"] == "WCO News <news@example.org>"
    assert parsed["To"] == "Ana Pérez <ana@example.org>"
    assert parsed["Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    assert parsed["Date"].datetime == T0
    assert parsed["Message-ID"] == MESSAGE_ID
    assert parsed["Subject"] == f"3 new articles: {COLOMBIA} and 2 more"
    assert parsed["List-Id"] == "WCO News <wco-news.news.example.org>"
    assert parsed["List-Unsubscribe"] == (
        f"<https://news.example.org/unsubscribe/{TOKEN}>, "
        f"<mailto:news@example.org?subject=unsubscribe%20{TOKEN}>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["MIME-Version"] == "1.0"
    # RFC 2369: URLs are never RFC 2047 encoded, even when longer than a folded line.
    headers = header_block(data)
    assert f"List-Unsubscribe: <https://news.example.org/unsubscribe/{TOKEN}>," in headers
    assert f" <mailto:news@example.org?subject=unsubscribe%20{TOKEN}>\r\n" in headers
    assert "List-Id: WCO News <wco-news.news.example.org>\r\n" in headers


def test_message_survives_copy_and_pickle() -> None:
    message = compose(
        RECIPIENT, digest(), settings=SETTINGS, names=NAMES, now=T0, message_id=MESSAGE_ID
    )
    expected = header_block(bytes(message))
    assert header_block(bytes(copy.deepcopy(message))) == expected
    assert header_block(bytes(pickle.loads(pickle.dumps(message)))) == expected


def test_list_id_with_a_non_ascii_or_special_site_title() -> None:
    _, parsed = send(digest(), settings=replace(SETTINGS, site_title="Douanes — Actualités"))
    assert parsed["List-Id"] == "Douanes — Actualités <wco-news.news.example.org>"
    _, parsed = send(digest(), settings=replace(SETTINGS, site_title='WCO "News", Inc.'))
    assert parsed["List-Id"] == '"WCO \\"News\\", Inc." <wco-news.news.example.org>'


def test_message_id_is_deterministic() -> None:
    first = make_message_id("ana@example.org/2026-03-02", "news.example.org")
    assert first == make_message_id("ana@example.org/2026-03-02", "news.example.org")
    assert first != make_message_id("ana@example.org/2026-03-03", "news.example.org")
    assert re.fullmatch(r"<[0-9a-f]{32}@news\.example\.org>", first)
    with pytest.raises(ValueError, match="host name"):
        make_message_id("key", "news.example.org>\r\nBcc: x@example.org")
    with pytest.raises(ValueError, match="host name"):
        make_message_id("key", "news.example.org\n")


# --- subject -------------------------------------------------------------------------------


def test_subject_for_one_article_is_its_title() -> None:
    _, parsed = send([article(1, "Colombia Adopts Mexican Expertise")])
    assert parsed["Subject"] == "Colombia Adopts Mexican Expertise"


def test_subject_for_several_articles_counts_them() -> None:
    articles = [article(1, "Colombia Adopts Mexican Expertise"), *digest()[1:]]
    _, parsed = send(articles)
    assert parsed["Subject"] == "3 new articles: Colombia Adopts Mexican Expertise and 2 more"


@pytest.mark.parametrize("count", [1, 3])
def test_long_first_title_is_cut_at_a_word(count: int) -> None:
    title = " ".join(["Customs"] + ["Modernisation"] * 40)
    articles = [article(1, title), *digest()[1:count]]
    _, parsed = send(articles)
    subject = str(parsed["Subject"])
    assert len(subject) <= 120
    if count == 1:
        shown = subject
    else:
        assert subject.startswith("3 new articles: ")
        assert subject.endswith(" and 2 more")
        shown = subject.removeprefix("3 new articles: ").removesuffix(" and 2 more")
    assert shown.endswith("Modernisation…")
    assert title.startswith(shown.removesuffix("…") + " ")


# --- hostile text --------------------------------------------------------------------------

HOSTILE = [
    "Update\rBcc: evil@example.org",
    "Update\nBcc: evil@example.org",
    "Update\r\nBcc: evil@example.org\r\n\r\nbody",
    "Update\r\n Cc: evil@example.org",
    "Update\u2028Bcc: evil@example.org",
    "Update\u2029Bcc: evil@example.org",
    "Update\x85Bcc: evil@example.org",
    "Update\x00Bcc: evil@example.org",
    "Update\x0bBcc:\x0cevil@example.org\x1b[31m",
    "=?UTF-8?Q?=0A?=Bcc: x@example.org",
    "=?UTF-8?Q?Hi=0D=0ABcc=3A_x=40example=2Eorg?=",
    "=?utf-8?b?" + base64.b64encode(b"Hi\r\nBcc: x@example.org").decode() + "?=",
    "==??utf-8?q?=0A?=Bcc: x@example.org",
    '=?utf-8?q?Eve=0D=0ABcc:_e@example.org?= , "x" <evil@example.org>',
    "Eve <evil@example.org>, Mallory <mallory@example.org>",
    'Eve" <evil@example.org>, "x',
    'Eve\\" <evil@example.org>',
    "x" * 10_000,
    "word " * 2_000,
]


def assert_safe(data: bytes, parsed: EmailMessage) -> None:
    assert parsed.keys() == EXPECTED_HEADERS
    for header in ("Bcc", "Cc", "Resent-To", "Reply-To"):
        assert parsed.get_all(header) is None
    to = parsed.get_all("To")
    assert to is not None
    assert len(to) == 1
    addresses = parsed["To"].addresses
    assert [address.addr_spec for address in addresses] == ["ana@example.org"]
    subject = str(parsed["Subject"])
    assert not re.search(r"[\r\n\x00\x85\u2028\u2029]", subject)
    assert "=?" not in subject
    assert len(subject) <= 120
    # Every raw header line is a known header or a continuation.
    for line in header_block(data).split("\r\n"):
        assert line[:1] in {" ", "\t"} or line.split(":", 1)[0] in EXPECTED_HEADERS, line


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_title_creates_no_header_or_recipient(hostile: str) -> None:
    data, parsed = send([article(1, hostile), *digest()[1:]])
    assert_safe(data, parsed)
    data, parsed = send([article(1, hostile)])
    assert_safe(data, parsed)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_name_creates_no_header_or_recipient(hostile: str) -> None:
    data, parsed = send(digest(), recipient=replace(RECIPIENT, name=hostile))
    assert_safe(data, parsed)
    display_name = parsed["To"].addresses[0].display_name
    assert not re.search(r"[\r\n\x00\x85\u2028\u2029]", display_name)
    assert "=?" not in display_name
    # CPython's parser adds a space between adjacent encoded-words in a phrase (RFC 2047
    # clients join them), so count without spaces.
    assert len("".join(display_name.split())) <= 100


def test_hostile_filters_and_region_names_stay_in_the_body() -> None:
    recipient = replace(RECIPIENT, filters="regions X\r\nBcc: evil@example.org")
    names = Names(regions={"americas": "Americas\r\nBcc: evil@example.org"}, topics={})
    message = compose(
        recipient, digest(), settings=SETTINGS, names=names, now=T0, message_id=MESSAGE_ID
    )
    data = bytes(message)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert_safe(data, parsed)
    text, _ = parts(parsed)
    assert "Americas Bcc: evil@example.org" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unsubscribe_url", "ftp://news.example.org/unsubscribe/x"),
        ("unsubscribe_url", "https://news.example.org/u/x>, <https://evil.example.org/"),
        ("unsubscribe_url", "https://news.example.org/u/x\r\nBcc: evil@example.org"),
        ("unsubscribe_url", "https://news.example.org/u/a b"),
        ("unsubscribe_url", "https://news.example.org/u/x\n"),
        ("unsubscribe_mailto", "https://news.example.org/unsubscribe/x"),
        ("unsubscribe_mailto", "mailto:news@example.org,evil@example.org"),
        ("manage_url", "javascript:alert(1)"),
        ("cadence", "hourly"),
        ("email", "ana@example.org, evil@example.org"),
    ],
)
def test_invalid_recipient_fields_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        send(digest(), recipient=replace(RECIPIENT, **{field: value}))


def test_refuses_what_cannot_make_a_message() -> None:
    with pytest.raises(ValueError, match="at least one article"):
        send([])
    with pytest.raises(ValueError, match="exactly one address"):
        send(digest(), settings=replace(SETTINGS, sender="a@example.org, b@example.org"))
    with pytest.raises(ValueError, match="timezone-aware"):
        compose(
            RECIPIENT,
            digest(),
            settings=SETTINGS,
            names=NAMES,
            now=datetime(2026, 3, 2, 9, 0),  # naive: the point of the test
            message_id=MESSAGE_ID,
        )
    with pytest.raises(ValueError, match="Message-ID"):
        compose(
            RECIPIENT,
            digest(),
            settings=SETTINGS,
            names=NAMES,
            now=T0,
            message_id="<a@b>\r\nBcc: evil@example.org",
        )
    with pytest.raises(ValueError, match="list id"):
        send(digest(), settings=replace(SETTINGS, list_id="wco.example.org\n"))


# --- safe_header_text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("  a\r\n\tb\x00c\u2028d\u2029e\x85f\x7fg  ", "a b c d e f g"),
        ("=?UTF-8?Q?=0A?=Bcc", "=\u200b?UTF-8?Q?=0A?=Bcc"),
        ("==??", "==\u200b??"),
    ],
)
def test_safe_header_text_cleans(text: str, expected: str) -> None:
    assert safe_header_text(text) == expected
    assert safe_header_text(expected) == expected


def test_safe_header_text_cuts_at_a_word() -> None:
    assert safe_header_text("Colombia Adopts Mexican Expertise in Risk", limit=36) == (
        "Colombia Adopts Mexican Expertise…"
    )
    assert safe_header_text("one two", limit=7) == "one two"
    assert safe_header_text("x" * 10_000, limit=50) == "x" * 49 + "…"
    assert len(safe_header_text("word " * 2_000)) <= 200
    assert safe_header_text("a, b, c, d", limit=6) == "a, b…"


# --- bodies --------------------------------------------------------------------------------


def test_html_part_escapes_article_text_and_carries_no_active_content() -> None:
    hostile = [
        article(
            1,
            '<script>alert("t")</script>Customs <img src=x onerror=alert(1)> Update',
            summary=(
                'Summary <img src="x" onerror="alert(2)"> &lt;script&gt;alert(3)&lt;/script&gt;'
            ),
            body="SECRET-BODY <script>alert(4)</script>",
            link="javascript:alert(5)",
        ),
        *digest(),
    ]
    _, parsed = send(hostile)
    text, html = parts(parsed)
    lowered = html.lower()
    for forbidden in ("<script", "onerror", "javascript:", "<img", "<link", "<style", "@import"):
        assert forbidden not in lowered
    assert "AEO Mutual Recognition: 1 &lt; 2 &amp; 3 &gt; 2" in html
    assert "EU &amp; Partners Agree" in html
    assert 'href="https://partners.example.com/news/single-window?id=7&amp;lang=en"' in html
    assert 'href="https://news.example.org/articles/article-1.html"' in html
    assert "SECRET-BODY" not in html
    assert "SECRET-BODY" not in text
    assert "javascript:" not in text


def test_text_part_has_every_title_and_link_on_its_own_line() -> None:
    _, parsed = send(digest())
    text, _ = parts(parsed)
    lines = text.splitlines()
    stripped = [line.strip() for line in lines]
    for url in (
        "https://news.example.org/articles/article-1.html",
        "https://partners.example.com/news/single-window?id=7&lang=en",
        "https://news.example.org/articles/article-3.html",
        RECIPIENT.unsubscribe_url,
        RECIPIENT.manage_url,
    ):
        assert url in stripped
    flowing = " ".join(text.split())
    assert COLOMBIA in flowing
    assert "EU & Partners Agree on Single Window Pilot" in flowing
    assert "AEO Mutual Recognition: 1 < 2 & 3 > 2" in flowing
    assert "Americas and Caribbean · AEO, Risk management · 2 March 2026" in flowing
    assert all(len(line) <= 72 or "://" in line for line in lines)
    assert "-- " in lines  # signature separator: mail readers dim the footer


@pytest.mark.parametrize(
    ("cadence", "heading", "reason"),
    [
        ("immediate", "WCO News — news alert", "(alerts as articles are published)"),
        ("daily", "WCO News — your daily digest", "(daily digest)"),
        ("weekly", "WCO News — your weekly digest", "(weekly digest)"),
    ],
)
def test_footer_says_why_and_how_to_leave(cadence: str, heading: str, reason: str) -> None:
    _, parsed = send(digest(), recipient=replace(RECIPIENT, cadence=cadence, manage_url=""))
    text, html = parts(parsed)
    for part in (" ".join(text.split()), html):
        assert heading in part
        assert (
            f"You receive this because you subscribed to WCO News {reason} for "
            "regions Americas and Caribbean; topics AEO." in part
        )
        assert "Manage your subscription" not in part
    assert f'<a href="{RECIPIENT.unsubscribe_url}"' in html


def test_published_dates_are_shown_in_utc_without_the_locale() -> None:
    late = datetime(2026, 3, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    _, parsed = send([article(1, "Late news", published=late, updated=late)])
    text, html = parts(parsed)
    assert "3 March 2026" in text
    assert "3 March 2026" in html


def test_golden_parts(request: pytest.FixtureRequest) -> None:
    """Nothing here is volatile: the clock and the Message-ID are inputs, not read."""
    _, parsed = send(digest())
    for suffix, content in zip(("txt", "html"), parts(parsed), strict=True):
        produced = content.replace("\r\n", "\n")  # the wire's CRLF is tested above
        golden = GOLDEN / f"mail-digest.{suffix}"
        if request.config.getoption("--update-golden"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(produced, encoding="utf-8")
        assert produced == golden.read_text(encoding="utf-8")


# --- describe_filters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (((), (), (), (), ()), "all articles"),
        (
            (("americas", "europe"), ("aeo",), ("risk profiling",), ("global",), ()),
            "regions Americas and Caribbean, Europe; topic AEO; "
            "keyword 'risk profiling'; except region Global",
        ),
        (((), (), ("a", "b"), (), ()), "keywords 'a', 'b'"),
        (
            ((), (), (), ("global",), ("aeo", "risk-management")),
            "all articles except region Global; except topics AEO, Risk management",
        ),
        ((("unknown",), (), (), (), ()), "region unknown"),
    ],
)
def test_describe_filters(filters: tuple[tuple[str, ...], ...], expected: str) -> None:
    regions, topics, keywords, exclude_regions, exclude_topics = filters
    assert (
        describe_filters(regions, topics, keywords, exclude_regions, exclude_topics, NAMES)
        == expected
    )


# --- Composer: the batch path --------------------------------------------------------------


def five() -> list[Article]:
    return [
        *digest(),
        article(4, "Kenya Launches Single Window", regions=("global",), topics=()),
        article(5, "Zoll \u2013 Neuigkeiten über Risikomanagement", summary=""),
    ]


def legacy_compose(
    recipient: Recipient,
    articles: list[Article],
    *,
    settings: MailSettings = SETTINGS,
    names: Names = NAMES,
) -> EmailMessage:
    """compose() as it was before Composer: the email package builds and folds everything."""
    site_title = _one_line(plain_title(settings.site_title))
    context = {
        "site_title": site_title,
        "heading": f"{site_title} — {_CADENCE_HEADING[recipient.cadence]}",
        "intro": f"{_plural(len(articles), 'new article')} for you, {_date(T0)}.",
        "items": [_item(item, names, settings.base_url) for item in articles],
        "groups": _groups(
            articles,
            [_item(item, names, settings.base_url) for item in articles],
            names,
            recipient.group_by,
        ),
        "more": 0,
        "more_url": settings.base_url,
        "preheader": _preheader(articles),
        "feed_url": recipient.feed_url,
        "reason": (
            f"You receive this because you subscribed to {site_title}"
            f" ({_CADENCE_REASON[recipient.cadence]}) for {_one_line(recipient.filters)}."
        ),
        "unsubscribe_url": recipient.unsubscribe_url,
        "manage_url": recipient.manage_url,
    }
    text_template, html_template = _templates()
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = settings.sender
    message["To"] = Address(
        display_name=safe_header_text(recipient.name, limit=100), addr_spec=recipient.email
    )
    message["Date"] = format_datetime(T0)
    message["Message-ID"] = MESSAGE_ID
    message["Subject"] = _subject(articles)
    message["List-Id"] = _list_id(settings)
    message["List-Unsubscribe"] = _VerbatimHeader(
        "List-Unsubscribe",
        [f"<{recipient.unsubscribe_url}>,", f"<{recipient.unsubscribe_mailto}>"],
    )
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        text_template.render(context), subtype="plain", charset="utf-8", cte="quoted-printable"
    )
    message.add_alternative(
        html_template.render(context), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    for part in message.iter_parts():
        del part["MIME-Version"]
    return message


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_same_message(data: bytes, expected: EmailMessage) -> None:
    """``data`` parses to the headers and decoded parts of ``expected``, whatever the folding."""
    parsed, reference = parse(data), parse(bytes(expected))
    assert parsed.keys() == reference.keys() == EXPECTED_HEADERS
    for name in EXPECTED_HEADERS:
        if name not in {"To", "Content-Type"}:
            assert str(parsed[name]) == str(reference[name]), name
    (address,), (expected_address,) = parsed["To"].addresses, reference["To"].addresses
    assert address.addr_spec == expected_address.addr_spec
    # CPython puts a space between adjacent encoded-words; mail clients join them.
    assert address.display_name.split() == expected_address.display_name.split() or (
        "".join(address.display_name.split()) == "".join(expected_address.display_name.split())
    )
    assert parsed.get_content_type() == reference.get_content_type() == "multipart/alternative"
    for part, expected_part in zip(parsed.iter_parts(), reference.iter_parts(), strict=True):
        assert isinstance(part, EmailMessage)
        assert isinstance(expected_part, EmailMessage)
        assert part.get_content_type() == expected_part.get_content_type()
        assert part.get_content_charset() == expected_part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content() == expected_part.get_content()


def assert_well_formed(data: bytes) -> None:
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    head, body = data.split(b"\r\n\r\n", 1)
    name = b""
    for line in head.split(b"\r\n"):
        if not line.startswith(b" "):
            name = line.split(b":", 1)[0]
        # List-Unsubscribe and List-Id are written verbatim (RFC 2369, RFC 2919): never
        # encoded, so a long URL may make a long line.
        verbatim = name in {b"List-Unsubscribe", b"List-Id"}
        assert len(line) <= (998 if verbatim else 78), line
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # RFC 2045 §6.7


def composed(
    composer: Composer, articles: list[Article], recipient: Recipient = RECIPIENT
) -> bytes:
    return composer.compose_bytes(recipient, articles, now=T0, message_id=MESSAGE_ID)


@pytest.mark.parametrize("count", [1, 3, 5])
def test_compose_bytes_matches_the_email_package(count: int) -> None:
    articles = five()[:count]
    data = composed(Composer(SETTINGS, NAMES), articles)
    assert_well_formed(data)
    assert_same_message(data, legacy_compose(RECIPIENT, articles))


def test_compose_is_compose_bytes_parsed_back() -> None:
    data = composed(Composer(SETTINGS, NAMES), digest())
    message = compose(
        RECIPIENT, digest(), settings=SETTINGS, names=NAMES, now=T0, message_id=MESSAGE_ID
    )
    assert bytes(message) == data
    assert message.as_bytes() == data


@pytest.mark.parametrize("hostile", HOSTILE)
def test_compose_bytes_matches_the_email_package_for_hostile_text(hostile: str) -> None:
    composer = Composer(SETTINGS, NAMES)
    for recipient, articles in (
        (replace(RECIPIENT, name=hostile), five()),
        (replace(RECIPIENT, filters=hostile), five()),
        (RECIPIENT, [article(1, hostile)]),
        (RECIPIENT, [article(1, hostile, summary=hostile), *five()[1:]]),
    ):
        data = composed(composer, articles, recipient)
        assert_well_formed(data)
        assert_safe(data, parse(data))
        assert_same_message(data, legacy_compose(recipient, articles))


def test_compose_bytes_matches_for_hostile_names_and_settings() -> None:
    names = Names(regions={"americas": "Americas\r\nBcc: evil@example.org"}, topics={})
    for settings in (
        SETTINGS,
        replace(SETTINGS, site_title="Douanes — Actualités"),
        replace(SETTINGS, site_title='WCO "News", Inc.'),
        replace(SETTINGS, sender="Zoll Nachrichten \u2013 Aktuell <news@example.org>"),
    ):
        data = Composer(settings, names).compose_bytes(
            RECIPIENT, five(), now=T0, message_id=MESSAGE_ID
        )
        assert_well_formed(data)
        assert_same_message(data, legacy_compose(RECIPIENT, five(), settings=settings, names=names))


@pytest.mark.parametrize(
    ("name", "to"),
    [
        ("Ana Pérez", "To: Ana =?utf-8?q?P=C3=A9rez?= <ana@example.org>"),
        ("Person 7", "To: Person 7 <ana@example.org>"),
        ("J. Smith, Esq.", 'To: "J. Smith, Esq." <ana@example.org>'),
        ('Eve\\" <x>', 'To: "Eve\\\\\\" <x>" <ana@example.org>'),
        ("", "To: ana@example.org"),
        ("  \r\n ", "To: ana@example.org"),
    ],
)
def test_to_header_is_written_as_the_email_package_would(name: str, to: str) -> None:
    recipient = replace(RECIPIENT, name=name)
    data = composed(Composer(SETTINGS, NAMES), digest(), recipient)
    assert header_block(data).split("\r\n")[1] == to
    parsed = parse(data)
    assert parsed["To"].addresses[0].display_name == safe_header_text(name, limit=100)
    assert_same_message(data, legacy_compose(recipient, digest()))


@pytest.mark.parametrize(
    "address", ["ana.p+news@example.org", '"ana p"@example.org', "ana@[192.0.2.1]"]
)
def test_unusual_addresses_go_through_the_email_package(address: str) -> None:
    recipient = replace(RECIPIENT, email=address)
    data = composed(Composer(SETTINGS, NAMES), digest(), recipient)
    assert_same_message(data, legacy_compose(recipient, digest()))


@pytest.mark.parametrize(
    "address",
    [
        "=?utf-8?q?a?=@example.org",
        "ana@example.org, evil@example.org",
        "ana@example.org\r\nBcc: evil@example.org",
    ],
)
def test_addresses_the_email_package_refuses_are_refused(address: str) -> None:
    recipient = replace(RECIPIENT, email=address)
    with pytest.raises(ValueError, match=r"."):
        legacy_compose(recipient, digest())
    with pytest.raises(ValueError, match=r"."):
        composed(Composer(SETTINGS, NAMES), digest(), recipient)


def test_recipients_share_the_cached_articles_but_not_their_own_parts() -> None:
    composer = Composer(SETTINGS, NAMES)
    other = Recipient(
        email="bo@example.org",
        name="Bo Li",
        filters="topic Risk management",
        cadence="weekly",
        unsubscribe_url="https://news.example.org/unsubscribe/tok_bo",
        unsubscribe_mailto="mailto:news@example.org?subject=unsubscribe%20tok_bo",
    )
    other_id = make_message_id("bo@example.org/2026-03-02", "news.example.org")
    first = parse(composed(composer, five()))
    second = parse(composer.compose_bytes(other, five(), now=T0, message_id=other_id))
    assert composer.cache_info().hits == 1
    assert first["Subject"] == second["Subject"]
    assert str(second["To"]) == "Bo Li <bo@example.org>"
    assert second["Message-ID"] == other_id != first["Message-ID"]
    assert second["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/tok_bo>, "
        "<mailto:news@example.org?subject=unsubscribe%20tok_bo>"
    )
    assert second.get_boundary() != first.get_boundary()
    text, html = parts(second)
    for part in (" ".join(text.split()), html):
        assert "WCO News — your weekly digest" in part
        assert "(weekly digest) for topic Risk management." in part
        assert "https://news.example.org/unsubscribe/tok_bo" in part
        assert TOKEN not in part
        assert "Manage your subscription" not in part
        assert "Americas and Caribbean; topics AEO" not in part
    first_text, first_html = parts(first)
    assert TOKEN in first_text
    assert TOKEN in first_html

    # The article lists are the same text, recipient for recipient.
    def articles_of(text: str) -> str:
        return text[text.index("1.  ") : text.index("\r\n-- \r\n")]

    assert articles_of(first_text) == articles_of(text)
    assert_same_message(
        composer.compose_bytes(other, five(), now=T0, message_id=MESSAGE_ID),
        legacy_compose(other, five()),
    )


def test_later_calls_hit_the_section_cache() -> None:
    composer = Composer(SETTINGS, NAMES, cache_size=2)
    assert composer.cache_info() == CacheInfo(hits=0, misses=0, maxsize=2, currsize=0)
    expected = composed(composer, five())
    assert composer.cache_info() == CacheInfo(hits=0, misses=1, maxsize=2, currsize=1)
    for number in range(1, 5):
        assert composed(composer, five()) == expected  # fresh but equal Article objects
        assert composer.cache_info() == CacheInfo(hits=number, misses=1, maxsize=2, currsize=1)
    # A different set or order of articles is a different section; the oldest is evicted.
    composed(composer, five()[:1])
    composed(composer, five()[::-1])
    assert composer.cache_info() == CacheInfo(hits=4, misses=3, maxsize=2, currsize=2)
    assert composed(composer, five()) == expected
    assert composer.cache_info().misses == 4
    composer.cache_clear()
    assert composer.cache_info() == CacheInfo(hits=0, misses=0, maxsize=2, currsize=0)


def test_the_cache_key_covers_what_the_mail_shows() -> None:
    """content_hash covers title and body; the summary, link and classification are shown too."""
    composer = Composer(SETTINGS, NAMES)
    before = composed(composer, [article(1, "Same")])
    for changed in (
        article(1, "Same", summary="A corrected summary."),
        article(1, "Same", link="https://partners.example.com/x"),
        article(1, "Same", regions=("europe",)),
        article(1, "Same", topics=("risk-management",)),
        article(1, "Same", published=T0 - timedelta(days=3)),
        article(1, "Other title"),
    ):
        data = composed(composer, [changed])
        assert data != before
        assert_same_message(data, legacy_compose(RECIPIENT, [changed]))
    assert composer.cache_info().hits == 0


def test_a_new_day_reuses_the_section_and_dates_the_intro() -> None:
    composer = Composer(SETTINGS, NAMES)
    composed(composer, digest())
    later = T0 + timedelta(days=1)
    data = composer.compose_bytes(RECIPIENT, digest(), now=later, message_id=MESSAGE_ID)
    assert composer.cache_info().hits == 1
    parsed = parse(data)
    assert parsed["Date"].datetime == later
    text, html = parts(parsed)
    assert "3 new articles for you, 3 March 2026." in text
    assert "3 new articles for you, 3 March 2026." in html


def test_compose_bytes_refuses_what_compose_refuses() -> None:
    composer = Composer(SETTINGS, NAMES)
    with pytest.raises(ValueError, match="at least one article"):
        composed(composer, [])
    with pytest.raises(ValueError, match="Message-ID"):
        composer.compose_bytes(RECIPIENT, digest(), now=T0, message_id=f"<{'a' * 900}@example.org>")
    with pytest.raises(ValueError, match="header line"):
        long_url = "https://news.example.org/unsubscribe/" + "a" * 862
        composed(composer, digest(), replace(RECIPIENT, unsubscribe_url=long_url))
    with pytest.raises(ValueError, match="exactly one address"):
        Composer(replace(SETTINGS, sender="a@example.org, b@example.org"), NAMES)
    with pytest.raises(ValueError, match="list id"):
        Composer(replace(SETTINGS, list_id="wco.example.org\n"), NAMES)


# --- the pieces Composer builds on ---------------------------------------------------------


def test_template_blocks_make_the_whole_and_end_at_line_breaks() -> None:
    context = {
        "site_title": "WCO News",
        "heading": "WCO News — news alert",
        "intro": "1 new article for you, 2 March 2026.",
        "items": [_item(item, NAMES, SETTINGS.base_url) for item in five()],
        "groups": _groups(
            five(), [_item(item, NAMES, SETTINGS.base_url) for item in five()], NAMES, "region"
        ),
        "more": 0,
        "more_url": SETTINGS.base_url,
        "preheader": "",
        "feed_url": "",
        "reason": "You receive this because…",
        "unsubscribe_url": RECIPIENT.unsubscribe_url,
        "manage_url": RECIPIENT.manage_url,
    }
    for template in _templates():
        for more in (0, 7):
            context = {**context, "more": more, "more_is_feed": bool(more)}
            blocks = [
                "".join(template.blocks[name](template.new_context(context)))
                for name in ("head", "items", "more", "foot")
            ]
            assert "".join(blocks) == template.render(context)
            # "more" says nothing when everything fitted.
            assert (blocks[2] == "") == (more == 0)
            assert all(block.endswith("\n") for block in blocks if block)


def test_one_line_removes_exactly_the_unsafe_categories() -> None:
    unsafe = "".join(
        chr(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in _UNSAFE_CATEGORIES
    )
    assert _UNSAFE_CHARS.sub("", unsafe) == ""
    everything_else = "".join(
        chr(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) not in _UNSAFE_CATEGORIES
    )
    assert _UNSAFE_CHARS.search(everything_else) is None


QP_SAMPLES = [
    "",
    "\n",
    "-- \nsignature\t\n",
    "a" * 74 + "=b\n" + "c" * 73 + "==\n" + "d" * 75 + "é\n",
    "x" * 300 + " \n",
    ".\n..\nFrom here\n",
    "Bogotá · 2 March 2026 — “quoted” …\r\nCR only\rend",
    "\x0b\x0c\x1b\x7f\x85\u2028 control\n",
    '<a href="https://news.example.org/?a=1&amp;b=2" style="color:#5b6670;">x</a>' * 5,
]


@pytest.mark.parametrize("text", QP_SAMPLES)
def test_quoted_printable_decodes_back_and_keeps_lines_short(text: str) -> None:
    encoded = _quoted_printable(text)
    normal = b"".join(line + b"\n" for line in text.encode("utf-8").splitlines())
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")) == normal
    assert encoded.isascii()
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert not re.search(rb"[ \t]\r\n", encoded)
    assert b"=_" not in encoded  # so the "=_..." boundary never occurs in a part


@given(st.lists(st.text(max_size=200), max_size=4))
@hypothesis_settings(max_examples=200, deadline=None)
def test_quoted_printable_chunks_join_like_one_text(chunks: list[str]) -> None:
    """Chunks that end at line breaks encode apart to the encoding of the whole."""
    chunks = [chunk if chunk.endswith("\n") else chunk + "\n" for chunk in chunks]
    whole = "".join(chunks)
    encoded = _quoted_printable(whole)
    assert b"".join(_quoted_printable(chunk) for chunk in chunks) == encoded
    decoded = quopri.decodestring(encoded.replace(b"\r\n", b"\n"))
    assert decoded == b"".join(line + b"\n" for line in whole.encode("utf-8").splitlines())


@given(st.text(min_size=1, max_size=100))
@hypothesis_settings(max_examples=300, deadline=None)
def test_any_display_name_parses_back(name: str) -> None:
    display_name = safe_header_text(name, limit=100)
    data = composed(Composer(SETTINGS, NAMES), digest(), replace(RECIPIENT, name=name))
    assert_well_formed(data)
    (address,) = parse(data)["To"].addresses
    assert address.addr_spec == "ana@example.org"
    assert "".join(address.display_name.split()) == "".join(display_name.split())


def test_readers_sharing_filters_each_get_their_own_links() -> None:
    """The footer is rendered once per set of filters; each reader's links are their own."""
    shared = Composer(SETTINGS, NAMES)
    readers = [
        replace(
            RECIPIENT,
            email=f"reader{n}@example.org",
            unsubscribe_url=f"https://news.example.org/unsubscribe/{n}.{TOKEN}?a=1&b=2",
            manage_url=f"https://news.example.org/manage/{n}.{TOKEN}" if n % 2 else "",
        )
        for n in range(4)
    ]
    for reader in readers:
        data = composed(shared, digest(), reader)
        assert data == composed(Composer(SETTINGS, NAMES), digest(), reader)
        assert_same_message(
            data,
            compose(
                reader, digest(), settings=SETTINGS, names=NAMES, now=T0, message_id=MESSAGE_ID
            ),
        )
        text = parse(data).get_body(("plain",))
        assert text is not None and reader.unsubscribe_url in text.get_content()
