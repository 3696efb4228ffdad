"""What digests look like: a table of contents by region or topic with in-message anchors,
summaries, a preheader, a size cap with "N more articles", and a private feed in the
footer. Golden files for each shape; volatile fields are inputs (clock, Message-ID)."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace

import pytest

from syndicator.mail.compose import SECTION_BUDGET, Composer
from tests.conftest import DATA_DIR, T0
from tests.mail.test_compose import NAMES, RECIPIENT, SETTINGS, article, digest, parts, send

GOLDEN = DATA_DIR / "golden"
FEED = "https://news.example.org/feeds/private/7.0.AAAAAAAAAAAAAAAAAAAAAA.atom"

SHAPES = {
    "immediate-one": (replace(RECIPIENT, cadence="immediate"), digest()[:1]),
    "daily-by-region-with-feed": (replace(RECIPIENT, feed_url=FEED), digest()),
    "weekly-by-topic": (replace(RECIPIENT, cadence="weekly", group_by="topic"), digest()),
}


def many(count: int) -> list:  # type: ignore[type-arg]
    regions = ("americas", "europe", "global")
    return [
        article(
            number,
            f"Customs news number {number} about a long and detailed subject",
            summary="A summary of a sentence or two. " * 8,
            regions=(regions[number % 3],),
        )
        for number in range(1, count + 1)
    ]


def golden(name: str, produced: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / name
    if request.config.getoption("--update-golden"):
        path.write_text(produced, encoding="utf-8")
    assert produced == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_golden_shapes(shape: str, request: pytest.FixtureRequest) -> None:
    recipient, articles = SHAPES[shape]
    _, parsed = send(articles, recipient)
    text, html = parts(parsed)
    golden(f"mail-{shape}.txt", text.replace("\r\n", "\n"), request)
    golden(f"mail-{shape}.html", html.replace("\r\n", "\n"), request)


def test_table_of_contents_links_to_anchors_in_the_message() -> None:
    _, parsed = send(digest())
    text, html = parts(parsed)
    targets = re.findall(r'href="#([^"]+)"', html)
    assert targets == ["article-1", "article-2", "article-3"]
    for target in targets:
        assert html.count(f'id="{target}"') == 1
    # Grouped by first region, then the articles with none.
    assert text.index("In this digest:") < text.index("AMERICAS AND CARIBBEAN")
    assert text.index("AMERICAS AND CARIBBEAN") < text.index("EUROPE") < text.index("OTHER NEWS")
    # Summaries, never whole bodies.
    assert "It is never copied into mail" not in text + html
    # The preheader: first text of the body, hidden, with the first titles.
    body = html[html.index("<body") :]
    assert re.search(r'<div style="display:none[^>]*>Colombia Adopts', body)


def test_by_topic_groups_by_first_topic() -> None:
    _, parsed = send(digest(), replace(RECIPIENT, group_by="topic"))
    text = parts(parsed)[0].replace("\r\n", "\n")
    assert "\nAEO\n---\n" in text
    assert "\nOTHER NEWS\n" in text  # article 2 has no topic


def test_a_huge_digest_stays_under_100_kb_and_says_how_many_more() -> None:
    data, parsed = send(many(600), replace(RECIPIENT, feed_url=FEED))
    text, html = parts(parsed)
    assert len(html.encode("utf-8")) < 100_000
    assert len(data) < 200_000  # both parts, encoded
    shown = html.count('<h2 id="article-')
    assert 10 < shown < 600
    more = 600 - shown
    # "N more articles" leads to the reader's own feed, in both parts.
    assert (
        f'<a href="{FEED}" style="color:#0b5cad; text-decoration:underline;">'
        f"{more} more articles</a> did not fit in this message; read on in your own feed."
    ) in html
    assert (
        f"{more} more articles did not fit in this message; read on in your own feed:\n{FEED}\n"
    ) in text.replace("\r\n", "\n")
    # The table of contents lists exactly what is shown.
    assert len(re.findall(r'href="#article-', html)) == shown
    assert SECTION_BUDGET < 100_000


def test_a_capped_digest_without_a_private_feed_links_to_the_site() -> None:
    _, parsed = send(many(600), replace(RECIPIENT, feed_url=""))
    text, html = parts(parsed)
    more = 600 - html.count('<h2 id="article-')
    assert 0 < more < 590
    assert (
        '<a href="https://news.example.org/" style="color:#0b5cad; text-decoration:underline;">'
        f"{more} more articles</a> did not fit in this message."
    ) in html
    assert f"{more} more articles did not fit in this message:\nhttps://news.example.org/\n" in (
        text.replace("\r\n", "\n")
    )
    assert "/feeds/private/" not in text + html


def test_readers_of_the_same_capped_digest_each_get_their_own_feed_link() -> None:
    """The article list is rendered once for both readers; the link is each one's own."""
    other = FEED.replace("/7.0.", "/8.0.")
    composer = Composer(SETTINGS, NAMES)
    articles = many(600)
    first = composer.compose_bytes(
        replace(RECIPIENT, feed_url=FEED), articles, now=T0, message_id="<a@news.example.org>"
    )
    second = composer.compose_bytes(
        replace(RECIPIENT, feed_url=other), articles, now=T0, message_id="<b@news.example.org>"
    )
    assert composer.cache_info().hits >= 1
    for data, mine, theirs in ((first, FEED, other), (second, other, FEED)):
        text, html = parts(email.message_from_bytes(data, policy=email.policy.default))
        assert f'<a href="{mine}" style="color:#0b5cad' in html
        assert f"read on in your own feed:\n{mine}" in text.replace("\r\n", "\n")
        assert theirs not in text + html
