"""Composing mail: structure, exact headers, wording, safety against hostile text, golden parts."""

from __future__ import annotations

import base64
import copy
import email
import email.policy
import pickle
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from syndicator.feeds import Names
from syndicator.models import Article
from syndicator.notify import (
    MailSettings,
    Recipient,
    compose,
    describe_filters,
    make_message_id,
    safe_header_text,
)
from tests.conftest import DATA_DIR

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
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
        ("unsubscribe_url", "http://news.example.org/unsubscribe/x"),
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
