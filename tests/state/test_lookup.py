"""Articles read from SQLite with the standard library (``state.lookup``) are those State
reads through SQLAlchemy, in the same order with the same fields; a database it should not
read (not there, another schema version, not SQLite) is left to State."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.state import SCHEMA_VERSION, lookup
from syndicator.state.db import State, articles_table, insert_rows

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# (id, title, regions, topics, published, removed): ties in publication, no topics, titles
# with capitals, accents and LIKE's wildcards, removed articles among the matches.
ROWS = [
    ("kenya-aeo", "Kenya Opens a Green Lane for AEOs", "east-southern-africa", "aeo", 0, False),
    ("kenya-again", "KENYA, again", "east-southern-africa", "", 0, False),
    ("uzbek", "Uzbekistan Joins the RKC", "europe", "rkc trade-facilitation", -1, False),
    ("uzbek-old", "Uzbekistan Held a Workshop", "europe", "capacity-building", -2, True),
    ("peru", "Perú: 100% digital_clearance", "americas", "digitalisation", 1, False),
    ("global", "WCO Council Meets", "global", "", -3, False),
    ("gone", "Kenya Revisited", "east-southern-africa", "aeo", 2, True),
]


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    with closing(State.open(state_url)) as opened:
        rows = []
        for seq, (id_, title, regions, topics, days, removed) in enumerate(ROWS, start=1):
            published = T0 + timedelta(days=days, microseconds=seq % 2 * 123456)
            rows.append(
                {
                    "id": id_,
                    "seq": seq,
                    "source": f"/store/{id_}.txt",
                    "line": seq,
                    "title": title,
                    "body": f"The body of {title}.",
                    "format": "markdown" if seq % 3 == 0 else "text",
                    "summary": f"About {title}",
                    "link": f"https://example.org/{id_}" if seq % 2 else "",
                    "author": "Desk" if seq % 2 else "",
                    "regions": regions,
                    "topics": topics,
                    "content_hash": f"{seq:064x}",
                    "classified_with": "test",
                    "first_seen": published - timedelta(hours=1),
                    "published": published,
                    "updated": published + timedelta(minutes=seq),
                    "removed_at": T0 if removed else None,
                }
            )
        with opened.transaction() as conn:
            insert_rows(conn, articles_table, rows)
        yield opened


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("region", "topic"),
    [(None, None), ("east-southern-africa", None), (None, "aeo"), ("europe", "rkc"), ("x", None)],
)
def test_articles_are_those_state_lists(
    state: State, state_url: str, region: str | None, topic: str | None
) -> None:
    expected = state.articles(region=region, topic=topic)
    assert lookup.articles(state_url, region=region, topic=topic) == expected
    if region is None and topic is None:
        assert [article.id for article in expected] == [
            "peru",
            "kenya-aeo",
            "kenya-again",
            "uzbek",
            "global",
        ]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "needle", ["uzbek", "kenya", "Kenya", "KENYA, again", "perú", "100%", "_", "%", "nothing"]
)
def test_found_articles_are_those_state_finds(state: State, state_url: str, needle: str) -> None:
    assert lookup.find_articles(state_url, needle) == state.find_articles(needle)


def test_a_database_not_to_read_here_is_left_to_state(
    state: State, state_url: str, tmp_path: Path
) -> None:
    if not state_url.startswith("sqlite:"):
        assert lookup.articles(state_url) is None
        assert lookup.find_articles(state_url, "kenya") is None
        return
    missing = tmp_path / "elsewhere" / "syndicator.db"
    assert lookup.articles(f"sqlite:///{missing}") is None
    assert not missing.exists()  # and not created
    assert lookup.articles(f"{state_url}?timeout=5") is None
    assert lookup.articles("sqlite:///:memory:") is None
    database = state_url.removeprefix("sqlite:///")
    for version in (SCHEMA_VERSION - 1, SCHEMA_VERSION + 1):
        with closing(sqlite3.connect(database)) as conn, conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        assert lookup.articles(state_url) is None
        assert lookup.find_articles(state_url, "kenya") is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert lookup.articles(f"sqlite:///{garbage}") is None
