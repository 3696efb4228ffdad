"""Several processes on one state database: schema creation, one cycle at a time, and no
mail twice. Every test here runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import subprocess
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import feedparser
import pytest
from sqlalchemy import func, select

from syndicator.classify.classifier import Classifier
from syndicator.commands.status import status_report
from syndicator.config import Config, load_config
from syndicator.errors import StateError
from syndicator.pipeline import run_cycle
from syndicator.publish import archives
from syndicator.state import coordination
from syndicator.state.db import State, insert_rows, messages_table
from syndicator.web.app import Health
from tests.faults.helpers import ENV, add_article, command, immediate, run, with_sample_store

ROUNDS = 2
SUBSCRIBERS = 200


def together(config: Path, *args: str, count: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """Start ``count`` copies of a command at once; wait for them all."""
    processes = [
        subprocess.Popen(
            command(config, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(count)
    ]
    finished = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return finished


def maildir_recipients(install: Path) -> Counter[tuple[str, str]]:
    """(recipient, Message-ID) of every message delivered into the Maildir."""
    found: Counter[tuple[str, str]] = Counter()
    for path in (install.parent.parent / "mail" / "new").iterdir():
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[(str(message["To"]), str(message["Message-ID"]))] += 1
    return found


def test_commands_started_together_on_an_empty_database_all_come_up(install: Path) -> None:
    started = together(install, "articles", "--json", count=4)
    for finished in started:
        assert finished.returncode == 0, finished.stderr
        assert finished.stdout.strip() == "[]"
        assert "Traceback" not in finished.stderr


def test_two_run_once_together_mail_every_subscriber_once(install: Path) -> None:
    addresses = [f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)]
    (install.parent / "subscribers.toml").write_text(immediate(addresses))
    store = with_sample_store(install)
    baseline = run(install, "run", "--once")
    assert baseline.returncode == 0, baseline.stderr
    for round_ in range(ROUNDS):
        add_article(
            store, f"chile-{round_}.txt", f"Chile Launches AEO Programme {round_}", "Chile did."
        )
        for finished in together(install, "run", "--once"):
            assert finished.returncode == 0, finished.stderr
            assert "Traceback" not in finished.stderr, finished.stderr
        delivered = maildir_recipients(install)
        recipients = Counter(recipient for recipient, _ in delivered)
        assert set(recipients) == set(addresses)
        # One message per subscriber and round, each stored once.
        assert set(recipients.values()) == {round_ + 1}, round_
        assert set(delivered.values()) == {1}


def test_a_digest_slot_is_queued_once(state_url: str) -> None:
    state = State.open(state_url)
    slot = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def digest(number: int, kind: str = "daily", at: datetime | None = slot) -> dict[str, Any]:
        return {
            "subscriber_id": 7,
            "kind": kind,
            "message_id": f"<d{number}@example.org>",
            "recipient": "daily@example.org",
            "body": b"Subject: digest\r\n\r\nBody.\r\n",
            "status": "pending",
            "attempts": 0,
            "created_at": slot,
            "last_error": "",
            "digest_slot": at,
        }

    try:
        with state.transaction() as conn:
            insert_rows(conn, messages_table, [digest(1)])
            # Other slots, and messages that are no digest, are not held back.
            insert_rows(conn, messages_table, [digest(2, at=slot + timedelta(days=1))])
            insert_rows(conn, messages_table, [digest(3, "immediate", None)])
            insert_rows(conn, messages_table, [digest(4, "immediate", None)])
        with (
            pytest.raises(StateError, match=r"^state database conflict: "),
            state.transaction() as conn,
        ):
            insert_rows(conn, messages_table, [digest(5)])
        with state.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(messages_table)).scalar() == 4
    finally:
        state.close()


def test_status_shows_instances_the_cycle_holder_and_the_outbox(install: Path) -> None:
    config = load_config(install)
    state = State.open(config.state.url)
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    try:
        coordination.register_instance(state, "web-only", ["web"], now=now - timedelta(minutes=5))
        coordination.register_instance(state, "worker", ["cycle", "deliver"], now=now)
        with state.transaction() as conn:
            insert_rows(
                conn,
                messages_table,
                [
                    {
                        "subscriber_id": n,
                        "kind": "immediate",
                        "message_id": f"<s{n}@example.org>",
                        "recipient": f"r{n}@example.org",
                        "body": b"x",
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now - timedelta(minutes=n),
                        "last_error": "",
                    }
                    for n in range(3)
                ],
            )
            coordination.claim_messages(conn, now, 1, owner="worker", lease=timedelta(minutes=1))
        with coordination.exclusive_turn(state, coordination.CYCLE_LOCK):
            report = status_report(state, now=now, heartbeat=timedelta(seconds=10))
    finally:
        state.close()
    assert [(item["id"], item["alive"]) for item in report["instances"]] == [
        ("web-only", False),
        ("worker", True),
    ]
    assert report["cycle_instances"] == 1
    assert report["outbox"] == {"pending": 2, "sending": 1}
    assert report["sending_by_instance"] == {"worker": 1}
    assert report["oldest_pending"] == (now - timedelta(minutes=2)).isoformat(timespec="seconds")
    if report["database"] == "postgresql":
        assert report["cycle_holder"] == state.instance_id
    else:
        assert report["cycle_holder"] is None  # SQLite: writers queue, nobody holds a turn
    shown = run(install, "status")
    assert shown.returncode == 0, shown.stderr
    assert "worker  roles cycle,deliver" in shown.stdout
    assert "outbox: pending 2, sending 1" in shown.stdout


@pytest.mark.postgresql_only
def test_another_database_s_cycle_holder_on_the_same_server_is_not_this_one(
    install: Path, postgres: Any
) -> None:
    """Advisory locks belong to a database: a second syndicator whose state is another
    database of the same server neither blocks this one's cycle nor shows as its holder."""
    state = State.open(load_config(install).state.url)
    other = State.open(str(postgres.database()))
    other.instance_id = "elsewhere:1"
    try:
        with coordination.exclusive_turn(other, coordination.CYCLE_LOCK) as held_there:
            assert held_there
            with state.engine.connect() as conn:
                assert coordination.cycle_holder(conn) is None
            with coordination.exclusive_turn(state, coordination.CYCLE_LOCK) as mine:
                assert mine
                with state.engine.connect() as conn:
                    assert coordination.cycle_holder(conn) == state.instance_id
    finally:
        other.close()
        state.close()


@pytest.mark.postgresql_only
def test_feeds_says_so_when_another_instance_runs_the_cycle(install: Path) -> None:
    with_sample_store(install)
    other = State.open(load_config(install).state.url)
    other.instance_id = "other:1"
    try:
        with coordination.exclusive_turn(other, coordination.CYCLE_LOCK) as held:
            assert held
            skipped = run(install, "feeds")
    finally:
        other.close()
    assert skipped.returncode == 0, skipped.stderr
    assert "another instance is running the cycle; skipped this round" in skipped.stdout
    done = run(install, "feeds")
    assert done.returncode == 0, done.stderr
    assert "skipped" not in done.stdout
    assert " 0 articles" not in done.stdout, done.stdout


def test_healthz_is_unhealthy_when_no_live_instance_has_the_cycle_role() -> None:
    health = Health(interval=60)
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    health.record(True, now, articles=3)
    health.cycle_instances = 1
    assert health.status(now)[0] == 200
    health.cycle_instances = 0
    status, body = health.status(now)
    assert status == 503
    assert body["status"] == "no-cycle-instance"
    assert "service.roles" in body["error"]


def test_instances_assigning_archive_pages_at_once_agree_on_every_page(
    install: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One instance assigns archive pages between another's reading of them and its writing:
    the second plans again from the first's, and both publish the same pages."""
    with_sample_store(install)
    text = install.read_text().replace(
        'output_dir = "../feeds"', 'output_dir = "../feeds"\narchive_size = 4'
    )
    install.write_text(text)
    (install.parent / "subscribers.toml").write_text("")
    other = install.with_name("other.toml")
    other.write_text(text.replace('output_dir = "../feeds"', 'output_dir = "../feeds-other"'))
    first, second = load_config(install), load_config(other)
    classifier = Classifier.load(first.classify.regions, first.classify.topics)
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    planned = archives._plan
    calls = 0

    def plan_after_the_other_instance(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the second instance has read the assignments: the first cuts in
            with closing(State.open(first.state.url)) as state:
                run_cycle(first, classifier, state, now=now)
        return planned(*args, **kwargs)

    monkeypatch.setattr(archives, "_plan", plan_after_the_other_instance)
    with closing(State.open(second.state.url)) as state:
        result = run_cycle(second, classifier, state, now=now)
        stored = len(list(state.articles()))
    assert result.publish is not None
    assert calls == 3  # the second instance's plan, the first's, the second's again

    def pages(config: Config) -> dict[str, list[str]]:
        found = {}
        for path in sorted((config.feeds.output_dir / "archive").rglob("*.atom")):
            entries = feedparser.parse(path.read_bytes()).entries
            found[str(path.relative_to(config.feeds.output_dir))] = sorted(e.id for e in entries)
        return found

    assert pages(first) == pages(second)
    everything = [
        i for path, ids in pages(first).items() if path.startswith("archive/all/") for i in ids
    ]
    assert len(everything) == len(set(everything)) == stored > 4
