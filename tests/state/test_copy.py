"""``syndicator state copy --to URL``: a SQLite installation moved to PostgreSQL mails
nothing again, keeps its messages and secret, and an occupied target is refused."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from syndicator.config import load_config
from syndicator.mail.unsubscribe import load_secret
from syndicator.state.db import State
from tests import pg
from tests.faults.helpers import add_article, immediate, run, use_smtp, with_sample_store
from tests.smtp_sink import Sink

DESKS = ["americas@example.org", "africa@example.org", "all@example.org"]


@pytest.fixture
def empty_postgresql(postgres: pg.Cluster | None) -> str:
    if postgres is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (initdb, pg_ctl), and CI needs it")
        pytest.skip("PostgreSQL is not installed here (initdb, pg_ctl)")
    return postgres.database()


@pytest.mark.sqlite_only  # from SQLite, to the PostgreSQL database of the fixture
def test_copy_to_postgresql_then_run_there_mails_nothing_again(
    install: Path, empty_postgresql: str
) -> None:
    with Sink() as sink:
        config = use_smtp(install, sink.port, immediate(DESKS))
        store = with_sample_store(install)
        assert run(config, "run", "--once").returncode == 0  # the baseline
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        assert run(config, "run", "--once").returncode == 0
        assert len(sink.received) == 3
        # Queued, not sent yet: goes out from PostgreSQL, once.
        add_article(store, "peru.txt", "Peru Opens Green Lane", "Peru's customs did.")
        assert run(config, "feeds").returncode == 0
        before = State.open(load_config(config).state.url)
        secret = load_secret(before, None)
        before.close()

        copied = run(config, "state", "copy", "--to", empty_postgresql)
        assert copied.returncode == 0, copied.stderr
        assert "messages 6" in copied.stdout
        again = run(config, "state", "copy", "--to", empty_postgresql)
        assert again.returncode == 1
        assert (
            again.stderr.strip()
            .splitlines()[-1]
            .startswith("syndicator: error: the target database is not empty (rows in ")
        ), again.stderr
        assert "Traceback" not in again.stderr

        text = config.read_text().replace(
            'url = "sqlite:///../state/syndicator.db"', f'url = "{empty_postgresql}"'
        )
        config.write_text(text)
        assert load_config(config).state.url == empty_postgresql
        moved = run(config, "run", "--once")
        assert moved.returncode == 0, moved.stderr
        assert run(config, "run", "--once").returncode == 0
        received = sink.received
    subjects = Counter(str(item.message["Subject"]) for item in received)
    assert subjects == {"Chile Launches AEO Programme": 3, "Peru Opens Green Lane": 3}
    assert len({str(item.message["Message-ID"]) for item in received}) == 6
    after = State.open(empty_postgresql)
    try:
        assert load_secret(after, None) == secret
        assert len(after.articles()) == 12
    finally:
        after.close()


@pytest.mark.sqlite_only  # from SQLite, to the PostgreSQL database of the fixture
def test_copy_keeps_digest_grouping_private_feeds_and_archive_pages(
    state_url: str, empty_postgresql: str
) -> None:
    from syndicator.mail import private_feeds, roster
    from syndicator.mail.subscribers import Subscriber
    from syndicator.state.copy import copy_state
    from syndicator.state.readers import archive_entries, save_archive_entries
    from tests.conftest import T0

    source = State.open(state_url)
    target = State.open(empty_postgresql)
    try:
        secret = load_secret(source, None)
        with source.transaction() as conn:
            roster.add_subscriber(
                conn, Subscriber(email="ana@example.org", group_by="topic"), now=T0
            )
            roster.add_subscriber(conn, Subscriber(email="bo@example.org"), now=T0)
            ana = roster.find_subscriber(conn, "ana@example.org")
            save_archive_entries(
                source,
                conn,
                added=[("all", "a1", 1), ("all", "a2", 1), ("europe", "a2", 1)],
                presence=[("all", "a1", False)],
            )
        assert ana is not None
        token = private_feeds.rotate(source, secret, ana.id)
        report = copy_state(source, target)
        assert report.rows["private_feeds"] == 1
        assert report.rows["archive_entries"] == 3
        with target.engine.connect() as conn:
            copied = {
                email: roster.find_subscriber(conn, email)
                for email in ("ana@example.org", "bo@example.org")
            }
            entries = sorted(archive_entries(conn))
        assert {e: r.group_by for e, r in copied.items() if r} == {
            "ana@example.org": "topic",
            "bo@example.org": "region",
        }
        assert entries == [
            ("all", "a1", 1, False),
            ("all", "a2", 1, True),
            ("europe", "a2", 1, True),
        ]
        # The rotated private feed URL still works on the copy; the first one is still gone.
        assert load_secret(target, None) == secret
        assert private_feeds.look_up(target, secret, token).verdict is private_feeds.Verdict.OK
        first = private_feeds.make_token(secret, ana.id, 0)
        assert private_feeds.look_up(target, secret, first).verdict is private_feeds.Verdict.GONE
    finally:
        source.close()
        target.close()
