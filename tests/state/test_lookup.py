"""Articles and subscribers read from SQLite with the standard library (``state.lookup``)
are those State reads through SQLAlchemy, in the same order with the same fields; a
database it should not read (not there, another schema version, not SQLite) is left to
State, and so are subscribers when state may not follow the subscribers file."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from syndicator.mail.roster import add_subscriber, sync_subscribers
from syndicator.mail.subscribers import Subscriber, file_signature, load_subscribers_file
from syndicator.state import SCHEMA_VERSION, SUBSCRIBERS_FILE_SYNCED, lookup
from syndicator.state.bounces import record_event
from syndicator.state.db import State, articles_table, get_meta, insert_rows, subscribers_table
from syndicator.state.records import SETTINGS
from syndicator.state.requests import mark_confirmed, store_request
from syndicator.state.subscribers import (
    change_subscriber,
    find_subscriber,
    subscriber_listing,
)

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


# --- subscribers ---------------------------------------------------------------------------

LISTED = [
    Subscriber(email="Desk@Example.org", name="Desk", regions=["europe"], cadence="daily"),
    Subscriber(email="peer@example.org", topics=["aeo"], keywords=["green lane"]),
    Subscriber(email="zed@example.org", cadence="weekly", weekday="fri", group_by="topic"),
]
TOPICS = ("aeo", "rkc")


def _through_state(state: State, since: datetime) -> lookup.SubscriberListing:
    """The listing as read through SQLAlchemy (what `subscribers list` reads elsewhere),
    with the problems the sync recorded."""
    with state.engine.connect() as conn:
        listing = subscriber_listing(conn, requested_since=since)
    return dataclasses.replace(listing, problems=["one problem"])


def _synced(state: State, signature: str, listed: list[Subscriber] = LISTED) -> None:
    with state.transaction() as conn:
        sync_subscribers(conn, listed, now=T0, signature=signature, problems=["one problem"])


@pytest.mark.sqlite_only
def test_subscribers_are_those_state_lists_once_the_file_was_synced(
    state: State, state_url: str
) -> None:
    since = T0 - timedelta(hours=1)
    assert lookup.subscriber_listing(state_url, signature="a", requested_since=since) is None
    _synced(state, "a")
    with state.transaction() as conn:
        suspended = find_subscriber(conn, "peer@example.org")
        assert suspended is not None
        record_event(
            conn,
            message_key=1,
            subscriber_id=suspended.id,
            kind="hard",
            status="5.1.1",
            decision="suspended",
            reason="mailbox unknown",
            evidence="",
            now=T0 + timedelta(microseconds=5),
        )
        # Requests on both sides of the moment, one confirmed, one exactly at it.
        for minutes, email in (
            (-61, "old@example.org"),
            (-60, "edge@example.org"),
            (5, "new@example.org"),
            (0, "done@example.org"),
        ):
            key = store_request(
                conn,
                email=email,
                settings=Subscriber(email=email, topics=["rkc"]).model_dump_json(),
                nonce=f"{minutes:+032d}",
                now=T0 + timedelta(minutes=minutes),
            )
            if email == "done@example.org":
                mark_confirmed(conn, key, now=T0)
        # A decision is not a change of status: the listing still follows the file.
    listing = lookup.subscriber_listing(state_url, signature="a", requested_since=since)
    assert listing == _through_state(state, since)
    assert [record.email for record in listing.subscribers] == [
        "Desk@example.org",
        "peer@example.org",
        "zed@example.org",
    ]
    assert [request.email for request in listing.requests] == [
        "edge@example.org",
        "new@example.org",
    ]
    assert listing.decisions[suspended.id][:2] == ("suspended", "mailbox unknown")
    assert listing.problems == ["one problem"]
    assert {record.email: record.settings for record in listing.subscribers} == {
        record.email: record.settings for record in _through_state(state, since).subscribers
    }


def test_a_subscriber_s_settings_are_its_settings_columns_as_stored(state: State) -> None:
    _synced(state, "a")
    with state.transaction() as conn:
        rows = conn.execute(select(subscribers_table)).all()
        assert rows
        for row in rows:
            record = find_subscriber(conn, row.email)
            assert record is not None
            assert list(record.settings.items()) == [(key, getattr(row, key)) for key in SETTINGS]


@pytest.mark.sqlite_only
def test_subscribers_are_not_read_here_when_state_may_not_follow_the_file(
    state: State, state_url: str
) -> None:
    since = T0
    _synced(state, "a")
    assert lookup.subscriber_listing(state_url, signature="a", requested_since=since)
    # Another file (other bytes, other topics, another version of the code).
    assert lookup.subscriber_listing(state_url, signature="b", requested_since=since) is None
    # Subscribers changed since, whoever changed them.
    with state.transaction() as conn:
        add_subscriber(conn, Subscriber(email="cli@example.org"), now=T0)
    assert lookup.subscriber_listing(state_url, signature="a", requested_since=since) is None
    _synced(state, "a")
    assert lookup.subscriber_listing(state_url, signature="a", requested_since=since)
    with state.transaction() as conn:
        record = find_subscriber(conn, "zed@example.org")
        assert record is not None
        change_subscriber(conn, record.id, {"status": "unsubscribed"})
    assert lookup.subscriber_listing(state_url, signature="a", requested_since=since) is None


def test_only_sqlite_records_the_file_it_follows(state: State, state_url: str) -> None:
    _synced(state, "a")
    with state.engine.connect() as conn:
        recorded = get_meta(conn, SUBSCRIBERS_FILE_SYNCED)
    if state_url.startswith("sqlite:"):
        assert recorded is not None and json.loads(recorded)["signature"] == "a"
    else:
        # PostgreSQL counts changes at commit, and is never listed without State.
        assert recorded is None
        assert lookup.subscriber_listing(state_url, signature="a", requested_since=T0) is None


def test_the_signature_follows_the_bytes_the_path_and_the_topics(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.toml"
    assert file_signature(path, TOPICS) is None  # not there
    path.write_text('[[subscriber]]\nemail = "desk@example.org"\n', encoding="utf-8")
    first = file_signature(path, TOPICS)
    assert first is not None and first == file_signature(path, TOPICS[::-1])
    assert load_subscribers_file(path, TOPICS).signature == first
    assert file_signature(path, ("aeo",)) != first
    other = tmp_path / "other.toml"
    other.write_bytes(path.read_bytes())
    assert file_signature(other, TOPICS) != first
    path.write_text('[[subscriber]]\nemail = "desk@example.org" \n', encoding="utf-8")
    assert file_signature(path, TOPICS) != first
