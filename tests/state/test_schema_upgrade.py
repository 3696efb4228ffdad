"""A state database of schema version 2 (before archives, private feeds and the digest
grouping) upgrades in place, on SQLite and on PostgreSQL, and the new tables then work:
private feeds rotate, archive pages are assigned and published. A database already up to
date opens with one read, and one changed since is checked and repaired again.

The old databases are built from SQL dumps of the version 2 schema
(``tests/data/state-v2/<dialect>.sql``), with one article and one subscriber."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import feedparser
import pytest
from sqlalchemy import create_engine, delete, inspect, select, update

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.errors import StateError
from syndicator.mail import private_feeds, roster
from syndicator.mail.private_feeds import Verdict
from syndicator.mail.unsubscribe import load_secret
from syndicator.state import SCHEMA_VERSION
from syndicator.state.db import State, meta_table
from syndicator.state.readers import archive_entries, newest_archive_pages
from syndicator.state.subscribers import change_subscriber
from tests.conftest import DATA_DIR
from tests.web.readers_helpers import T0, Spec, configure, cycle, serving, write_articles

DUMPS = DATA_DIR / "state-v2"
NEW_TABLES = {"archive_entries", "private_feeds", "suppressions", "bounce_events"}


def load_dump(url: str) -> None:
    """Build the version 2 database at ``url`` from its dialect's dump."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path)) as db:
            db.executescript((DUMPS / "sqlite.sql").read_text(encoding="utf-8"))
        return
    engine = create_engine(url)
    try:
        script = (DUMPS / "postgresql.sql").read_text(encoding="utf-8")
        with engine.begin() as conn:
            for statement in script.split(";\n"):
                lines = [line for line in statement.splitlines() if not line.startswith("--")]
                if "".join(lines).strip():
                    conn.exec_driver_sql("\n".join(lines))
    finally:
        engine.dispose()


@pytest.fixture
def old_state(state_url: str) -> Iterator[str]:
    load_dump(state_url)
    yield state_url


def schema_version(state: State) -> str | None:
    with state.engine.connect() as conn:
        return conn.execute(
            select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar()


def test_the_dump_is_the_old_schema(old_state: str) -> None:
    engine = create_engine(old_state)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            tables = set(inspector.get_table_names())
            columns = {c["name"] for c in inspector.get_columns("subscribers")}
            version = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
    finally:
        engine.dispose()
    assert version == "2"
    assert not tables & NEW_TABLES
    assert "group_by" not in columns


def test_a_version_2_database_upgrades_in_place(old_state: str) -> None:
    state = State.open(old_state)
    try:
        assert SCHEMA_VERSION == 3
        assert schema_version(state) == "3"
        with state.engine.connect() as conn:
            inspector = inspect(conn)
            assert set(inspector.get_table_names()) >= NEW_TABLES
            assert "digest_slot" in {c["name"] for c in inspector.get_columns("messages")}
            # The outbox's indexes by status, owner and subscriber give way to one of the
            # messages not sent yet (subscribers are found through the digest key).
            indexes = {index["name"] for index in inspector.get_indexes("messages")}
            record = roster.find_subscriber(conn, "ana@example.org")
        assert {"messages_unsent", "messages_one_digest_per_slot"} <= indexes
        assert not indexes & {
            "ix_messages_status",
            "ix_messages_lease_owner",
            "ix_messages_subscriber_id",
        }
        # What was there is kept; the new setting has its default.
        assert record is not None
        assert (record.id, record.regions, record.cadence) == (
            1,
            ("east-southern-africa",),
            "daily",
        )
        assert record.group_by == "region"
        (article,) = state.articles()
        assert article.title == "Kenya opens a green lane for AEOs"
        assert article.published == datetime(2026, 2, 27, 9, 0, tzinfo=UTC)

        with state.transaction() as conn:
            change_subscriber(conn, record.id, {"group_by": "topic"})
            added = roster.find_subscriber(conn, "ana@example.org")
        assert added is not None and added.group_by == "topic"

        # Private feeds: the first URL works until it is rotated, then answers "gone".
        secret = load_secret(state, None)
        with state.engine.connect() as conn:
            first = private_feeds.current_token(conn, secret, record.id)
        assert private_feeds.look_up(state, secret, first).verdict is Verdict.OK
        second = private_feeds.rotate(state, secret, record.id)
        assert second != first
        assert private_feeds.look_up(state, secret, first).verdict is Verdict.GONE
        assert private_feeds.look_up(state, secret, second).verdict is Verdict.OK
        forged = second.rpartition(".")[0] + "." + "A" * 22
        assert private_feeds.look_up(state, secret, forged).verdict is Verdict.FORGED
    finally:
        state.close()
    # Opening again changes nothing.
    again = State.open(old_state)
    try:
        assert schema_version(again) == "3"
        with again.engine.connect() as conn:
            kept = roster.find_subscriber(conn, "ana@example.org")
        assert kept is not None and kept.group_by == "topic"
    finally:
        again.close()


def test_a_database_newer_than_this_syndicator_is_refused(old_state: str) -> None:
    state = State.open(old_state)
    with state.transaction() as conn:
        state.set_meta(conn, "schema_version", str(SCHEMA_VERSION + 1))
    state.close()
    with pytest.raises(StateError, match="newer than this syndicator understands"):
        State.open(old_state)


@pytest.mark.sqlite_only
def test_an_up_to_date_database_opens_while_another_process_writes(state_url: str) -> None:
    """Opening reads the schema's signature without the write lock, so a command listing
    articles does not queue behind a cycle that is writing."""
    State.open(state_url).close()
    with closing(sqlite3.connect(state_url.removeprefix("sqlite:///"))) as writer:
        writer.isolation_level = None
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
        state = State.open(state_url)  # before, this waited for the lock (and then failed)
        try:
            assert state.articles() == []
        finally:
            state.close()
        writer.execute("COMMIT")


@pytest.mark.parametrize("signature", [None, "of another version"])
def test_a_database_changed_since_it_was_brought_up_to_date_is_repaired(
    state_url: str, signature: str | None
) -> None:
    """Without the signature this code writes (a database last opened by an older or a
    newer syndicator), every table, column and index is checked again."""
    State.open(state_url).close()
    engine = create_engine(state_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_articles_source")
            row = meta_table.c.key == "schema_signature"
            if signature is None:
                conn.execute(delete(meta_table).where(row))
            else:
                conn.execute(update(meta_table).where(row).values(value=signature))
    finally:
        engine.dispose()
    state = State.open(state_url)
    try:
        with state.engine.connect() as conn:
            indexes = {index["name"] for index in inspect(conn).get_indexes("articles")}
            stored = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_signature")
            ).scalar()
    finally:
        state.close()
    assert "ix_articles_source" in indexes
    assert stored not in {None, signature}


@pytest.fixture
def upgraded_install(install: Path, old_state: str) -> Config:
    return configure(install, "archive_size = 2")


async def test_an_upgraded_database_publishes_archives_and_private_feeds(
    upgraded_install: Config, classifier: Classifier
) -> None:
    config = upgraded_install
    state = State.open(config.state.url)
    try:
        specs = [Spec(f"kenya-{n}", ("east-southern-africa",), ("aeo",)) for n in range(5)]
        write_articles(config.store.path, specs, start=T0 - timedelta(days=1))
        cycle(config, classifier, state, T0)
        with state.engine.connect() as conn:
            pages = newest_archive_pages(conn)
            entries = list(archive_entries(conn))
            # The subscriber of the old database, still there and given a private feed.
            record = roster.find_subscriber(conn, "ana@example.org")
        assert record is not None and record.status == "active"
        # The old database's article and the 5 new ones, in pages of 2, oldest first.
        assert pages["all"] == 3
        in_all = sorted((p, a) for c, a, p, present in entries if c == "all" and present)
        assert [p for p, _ in in_all] == [1, 1, 2, 2, 3, 3]
        assert (1, "kenya-green-lane") in in_all  # the oldest, on the first page
        output = config.feeds.output_dir
        assert (output / "archive" / "all" / "1.atom").is_file()
        assert (output / "archive" / "east-southern-africa" / "2.atom").is_file()

        async with serving(config, classifier, state) as served, aiohttp.ClientSession() as http:
            with state.engine.connect() as conn:
                token = private_feeds.current_token(conn, served.secret, record.id)
            url = f"{served.base}feeds/private/{token}.atom"
            async with http.get(url) as response:
                assert response.status == 200
                parsed = feedparser.parse(await response.read())
            assert not parsed.bozo
            assert {e.title for e in parsed.entries} == {
                "Kenya opens a green lane for AEOs",
                *(f"Kenya {n}" for n in range(5)),
            }
            rotated = private_feeds.rotate(state, served.secret, record.id)
            served.clock.tick()
            async with http.get(url) as response:
                assert response.status == 410
            async with http.get(f"{served.base}feeds/private/{rotated}.atom") as response:
                assert response.status == 200
    finally:
        state.close()
