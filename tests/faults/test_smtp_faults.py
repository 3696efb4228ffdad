"""SMTP faults through the whole outbox: each fault's outcome, backoff, and the rest of the batch.

The transport's reading of each reply is proven in ``tests/test_transport.py``; 451, 452 and
550 at RCPT and a server that is down, end to end, in ``tests/test_notify.py``. Here every
fault goes through a real cycle and delivery against a real server, with other subscribers
in the same batch, and the outbox is compared with what the server really accepted.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.mail import roster
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state.db import State, messages_table
from tests.conftest import T0
from tests.faults.helpers import (
    ENV,
    add_article,
    command,
    immediate,
    run,
    use_smtp,
    with_sample_store,
)
from tests.smtp_sink import GreetingRefuser, Sink, SinkHandler, free_port

pytestmark = pytest.mark.faults

A, B, C = "a@example.org", "b@example.org", "c@example.org"


@dataclass
class Outbox:
    status: dict[str, str]
    attempts: dict[str, int]
    errors: dict[str, str]
    retry_at: dict[str, datetime | None] = field(default_factory=dict)


def outbox_of(state: State) -> Outbox:
    with state.engine.connect() as conn:
        rows = list(conn.execute(select(messages_table)))
    return Outbox(
        {row.recipient: row.status for row in rows},
        {row.recipient: row.attempts for row in rows},
        {row.recipient: row.last_error for row in rows},
        {row.recipient: row.next_attempt_at for row in rows},
    )


@pytest.fixture
def opened() -> Iterator[list[State]]:
    states: list[State] = []
    yield states
    for state in states:
        state.close()


def mail_one_article(
    install: Path, port: int, classifier: Classifier, opened: list[State], **smtp: object
) -> State:
    """A baseline cycle, then one new article for A, B and C, queued and delivered once."""
    config = load_config(use_smtp(install, port, immediate([A, B, C]), **smtp))
    store = with_sample_store(install)
    state = State.open(config.state.url)
    opened.append(state)
    run_cycle(config, classifier, state, now=T0)
    add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
    run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
    asyncio.run(deliver_due(config, state, clock=lambda: T0 + timedelta(minutes=1)))
    return state


def redeliver(install: Path, state: State, at: datetime) -> None:
    config = load_config(install)
    asyncio.run(deliver_due(config, state, clock=lambda: at))


def assert_backoff(found: Outbox, address: str) -> None:
    """A temporary failure waits about a minute (with jitter) before the next attempt."""
    retry_at = found.retry_at[address]
    assert retry_at is not None
    assert retry_at >= T0 + timedelta(minutes=1, seconds=47)


def test_421_greeting_retries_everything_later_and_sends_nothing(
    install: Path, classifier: Classifier, opened: list[State]
) -> None:
    with GreetingRefuser() as server:
        state = mail_one_article(install, server.port, classifier, opened)
        found = outbox_of(state)
        assert found.status == {A: "retry", B: "retry", C: "retry"}
        assert all(error.startswith("421 ") for error in found.errors.values()), found.errors
        for address in (A, B, C):
            assert_backoff(found, address)
        tried = server.connections
        assert tried <= 3  # one connection per message, no retry within the run
        # Before the backoff ends, another delivery run does not touch the server.
        redeliver(install, state, T0 + timedelta(minutes=1, seconds=30))
        assert server.connections == tried
        assert outbox_of(state).attempts == {A: 1, B: 1, C: 1}
    with Sink() as sink:
        redeliver_to(install, sink.port)
        redeliver(install, state, T0 + timedelta(hours=1))
        assert sorted(r.recipients[0] for r in sink.received) == [A, B, C]
    assert outbox_of(state).status == {A: "sent", B: "sent", C: "sent"}


def test_no_server_listening_retries_later_and_loses_nothing(
    install: Path, classifier: Classifier, opened: list[State]
) -> None:
    port = free_port()  # nothing listens here
    state = mail_one_article(install, port, classifier, opened)
    found = outbox_of(state)
    assert found.status == {A: "retry", B: "retry", C: "retry"}
    assert all(e.startswith(f"cannot connect to 127.0.0.1:{port}") for e in found.errors.values())
    for address in (A, B, C):
        assert_backoff(found, address)
    redeliver(install, state, T0 + timedelta(minutes=1, seconds=30))
    assert outbox_of(state).attempts == {A: 1, B: 1, C: 1}  # not before the backoff ends
    with Sink() as sink:
        redeliver_to(install, sink.port)
        redeliver(install, state, T0 + timedelta(hours=1))
        assert sorted(r.recipients[0] for r in sink.received) == [A, B, C]
    assert outbox_of(state).status == {A: "sent", B: "sent", C: "sent"}


def redeliver_to(install: Path, port: int) -> None:
    text = install.read_text()
    start = text.index("port = ", text.index("[mail.smtp]"))
    end = text.index("\n", start)
    install.write_text(f"{text[:start]}port = {port}{text[end:]}")


def test_mixed_refusals_in_one_batch(
    install: Path, classifier: Classifier, opened: list[State]
) -> None:
    """A server that accepts some recipients and refuses others, temporarily or for good."""
    handler = SinkHandler(refuse={A: "550 5.1.1 no such user", C: "452 4.2.2 mailbox full"})
    with Sink(handler) as sink:
        state = mail_one_article(install, sink.port, classifier, opened)
        found = outbox_of(state)
        assert found.status == {A: "failed", B: "sent", C: "retry"}
        assert [r.recipients for r in sink.received] == [[B]]
        assert found.errors[A].startswith("550 5.1.1") and found.errors[C].startswith("452 4.2.2")
        assert_backoff(found, C)
        with state.engine.connect() as conn:
            record = roster.find_subscriber(conn, A)
        assert record is not None and record.permanent_failures == 1
        # A refused recipient is never asked again; the temporary one only after its backoff.
        redeliver(install, state, T0 + timedelta(minutes=1, seconds=30))
        assert handler.rcpt_attempts.count(A) == 1 and handler.rcpt_attempts.count(C) == 1
        handler.refuse.clear()
        redeliver(install, state, T0 + timedelta(hours=1))
        assert sorted(r.recipients[0] for r in sink.received) == [B, C]
    assert outbox_of(state).status == {A: "failed", B: "sent", C: "sent"}


def test_554_after_data_fails_that_message_only(
    install: Path, classifier: Classifier, opened: list[State]
) -> None:
    handler = SinkHandler(refuse_data={B: "554 5.6.0 message content rejected"})
    with Sink(handler) as sink:
        state = mail_one_article(install, sink.port, classifier, opened)
        found = outbox_of(state)
        assert found.status == {A: "sent", B: "failed", C: "sent"}
        assert found.errors[B] == "554 5.6.0 message content rejected (DATA)"
        assert sorted(r.recipients[0] for r in sink.received) == [A, C]
        redeliver(install, state, T0 + timedelta(hours=1))
        assert handler.rcpt_attempts.count(B) == 1  # a permanent refusal is not retried


def test_connection_dropped_after_data_is_retried_not_marked_sent(
    install: Path, classifier: Classifier, opened: list[State]
) -> None:
    handler = SinkHandler(drop_after_data={A})
    with Sink(handler) as sink:
        state = mail_one_article(install, sink.port, classifier, opened)
        found = outbox_of(state)
        # The server read the message but never said 250: not sent, as far as we know.
        assert [r.recipients for r in handler.dropped] == [[A]]
        assert found.status == {A: "retry", B: "sent", C: "sent"}
        assert "closed the connection (DATA)" in found.errors[A]
        assert_backoff(found, A)
        handler.drop_after_data.clear()
        redeliver(install, state, T0 + timedelta(hours=1))
        assert sorted(r.recipients[0] for r in sink.received) == [A, B, C]
        resent = next(r for r in sink.received if r.recipients == [A])
        assert resent.message["Message-ID"] == handler.dropped[0].message["Message-ID"]
    assert outbox_of(state).status == {A: "sent", B: "sent", C: "sent"}


def test_server_slower_than_the_timeout_is_retried(
    install: Path, classifier: Classifier, opened: list[State]
) -> None:
    handler = SinkHandler(delay=1.5)
    with Sink(handler) as sink:
        state = mail_one_article(install, sink.port, classifier, opened, timeout=0.4, pool_size=1)
        found = outbox_of(state)
        assert found.status == {A: "retry", B: "retry", C: "retry"}, found.errors
        # The sink answers one client at a time: the first times out after DATA, the
        # others while waiting for its greeting.
        assert all(e.startswith("no reply from") for e in found.errors.values()), found.errors
        assert found.errors[A].endswith("within 0.4 s (DATA); the message may have been delivered")
        for address in (A, B, C):
            assert_backoff(found, address)
        handler.delay = 0
        redeliver(install, state, T0 + timedelta(hours=1))
    assert outbox_of(state).status == {A: "sent", B: "sent", C: "sent"}


def test_the_daemon_backs_off_instead_of_hammering_a_refusing_server(install: Path) -> None:
    """A cycle every second for several seconds: each message is tried once, then waits."""
    with GreetingRefuser() as server:
        config = use_smtp(install, server.port, immediate([A, B]))
        store = with_sample_store(install)
        port = free_port()
        config.write_text(config.read_text() + f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
        baseline = run(config, "run", "--once")
        assert baseline.returncode == 0, baseline.stderr
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        process = subprocess.Popen(
            command(config, "run"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            deadline = time.monotonic() + 60
            while server.connections < 2:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
            time.sleep(5)  # five more cycles at reload_interval = 1
            assert process.poll() is None
            tried = server.connections
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert tried == 2, err  # no tight retry loop: the next attempt is about a minute away
    assert err.count("421 4.3.2 Service not available") == 2, err
