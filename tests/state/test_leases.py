"""Messages being sent are leased: instances sharing the outbox never take each other's
messages, an expired lease is claimed again, and at most 16 messages per instance are
ever sent and not yet recorded. Every test here runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from syndicator.mail import deliver as outbox
from syndicator.mail.transport import SmtpTransport
from syndicator.state import coordination
from syndicator.state.db import State, messages_table
from syndicator.state.outbox import Failed, NewMessage, Outbox, Outcomes, Retry, queue_message
from tests.conftest import T0
from tests.smtp_sink import Sink, SinkHandler

LEASE = timedelta(seconds=60)


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    opened = State.open(state_url)
    yield opened
    opened.close()


def queue(state: State, count: int) -> None:
    with state.transaction() as conn:
        for number in range(count):
            queue_message(
                conn,
                NewMessage(
                    subscriber_id=number + 1,
                    kind="immediate",
                    message_id=f"<m{number}@example.org>",
                    recipient=f"reader{number:04}@example.org",
                    body=f"Subject: {number}\r\n\r\nBody {number}.\r\n".encode(),
                ),
                now=T0,
            )


def claim(state: State, owner: str, now: datetime, limit: int = 10) -> set[int]:
    with state.transaction() as conn:
        rows = coordination.claim_messages(conn, now, limit, owner=owner, lease=LEASE)
    return {row.id for row in rows}


def statuses(state: State) -> dict[tuple[str, str | None], int]:
    with state.engine.connect() as conn:
        rows = conn.execute(
            select(messages_table.c.status, messages_table.c.lease_owner, func.count()).group_by(
                messages_table.c.status, messages_table.c.lease_owner
            )
        ).all()
    return {(status, owner): count for status, owner, count in rows}


def test_a_live_lease_is_never_claimed_and_an_expired_one_is(state: State) -> None:
    queue(state, 30)
    first = claim(state, "alpha", T0)
    second = claim(state, "beta", T0 + timedelta(seconds=1))
    assert len(first) == len(second) == 10
    assert not first & second
    # Alpha is gone; until its lease expires, its messages stay its own.
    third = claim(state, "gamma", T0 + timedelta(seconds=59), limit=30)
    assert len(third) == 10 and not third & (first | second)
    assert claim(state, "gamma", T0 + timedelta(seconds=59)) == set()
    # Past alpha's lease (but within beta's), its messages go to a live instance.
    assert claim(state, "gamma", T0 + timedelta(seconds=60, milliseconds=1), limit=30) == first
    assert statuses(state) == {("sending", "beta"): 10, ("sending", "gamma"): 20}


def test_a_late_outcome_never_overwrites_the_instance_that_took_the_lease_over(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    """An instance too slow to renew its lease: another one claims and sends its messages;
    what the slow one learns afterwards is not recorded over the new holder's outcome."""
    queue(state, 3)
    with (
        Outbox(state, suspend_after=1, owner="slow", lease=LEASE) as slow,
        Outbox(state, suspend_after=1, owner="fast", lease=LEASE) as fast,
    ):
        first, second, third = slow.claim(T0, 10)
        later = T0 + LEASE + timedelta(seconds=1)
        taken = fast.claim(later, 10)
        assert [message.id for message in taken] == [first.id, second.id, third.id]
        fast.record(Outcomes(sent=[taken[0]]), later)
        # The slow instance's outcomes come in now: a temporary failure of the message the
        # other one sent, a refusal of one it is still sending, a success of the third.
        with caplog.at_level(logging.WARNING):
            slow.record(
                Outcomes(
                    retry=[Retry(first, later + timedelta(minutes=1), "451 try later")],
                    failed=[Failed(second, "550 no such user", permanent=True)],
                    sent=[third],
                ),
                later,
            )
        assert "3 outcomes not recorded" in caplog.text
        assert statuses(state) == {("sent", None): 1, ("sending", "fast"): 2}
        # The holder's own outcomes are recorded.
        fast.record(Outcomes(sent=taken[1:]), later)
        assert statuses(state) == {("sent", None): 3}


@pytest.mark.sqlite_only  # PostgreSQL's row locks, below
def test_claims_at_the_same_moment_take_different_messages_sqlite(state: State) -> None:
    queue(state, 20)
    assert not claim(state, "alpha", T0) & claim(state, "beta", T0)


@pytest.mark.postgresql_only  # SQLite runs one write transaction at a time (above)
def test_claims_at_the_same_moment_skip_locked_rows(state: State) -> None:
    queue(state, 20)
    # Alpha's claim is not committed yet: beta neither waits for it nor takes its rows.
    with state.transaction() as held:
        mine = {
            row.id for row in coordination.claim_messages(held, T0, 10, owner="alpha", lease=LEASE)
        }
        other = claim(state, "beta", T0, limit=20)
    assert len(mine) == len(other) == 10
    assert not mine & other


def test_a_starting_instance_takes_back_only_dead_leases(state: State) -> None:
    queue(state, 50)
    host = socket.gethostname()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(finished.stdout)
    owners = [
        f"{host}:{dead_pid}",  # this host, process gone: taken back
        "me",  # this instance's own earlier run: taken back
        f"{host}:{os.getpid()}",  # this host, running: left alone
        "elsewhere:1",  # another host: left alone until the lease expires
        "named-instance",  # unknown: left alone until the lease expires
    ]
    for owner in owners:
        claim(state, owner, T0)
    with state.transaction() as conn:
        released = coordination.release_dead_leases(conn, me="me", host=host)
    assert released == 20
    assert statuses(state) == {
        ("pending", None): 20,
        ("sending", f"{host}:{os.getpid()}"): 10,
        ("sending", "elsewhere:1"): 10,
        ("sending", "named-instance"): 10,
    }


class CountingHandler(SinkHandler):
    """Checks, as each message arrives, how many accepted messages are not yet recorded."""

    def __init__(self, state: State) -> None:
        super().__init__(delay=0.002)
        self.state = state
        self.unrecorded: list[int] = []
        self.check = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.check, self.state.engine.connect() as conn:
            recorded = conn.execute(
                select(func.count()).where(messages_table.c.status == "sent")
            ).scalar()
            self.unrecorded.append(len(self.received) - int(recorded or 0))
        return await super().handle_DATA(server, session, envelope)


def test_at_most_16_messages_are_ever_sent_and_not_recorded(state: State) -> None:
    queue(state, 300)
    handler = CountingHandler(state)
    with Sink(handler) as sink:
        transport = SmtpTransport(
            host="127.0.0.1", port=sink.port, security="none", timeout=5, pool_size=4
        )

        async def run() -> outbox.DeliveryReport:
            try:
                return await outbox.deliver(
                    state, transport, sender="news@example.org", clock=lambda: T0, owner="me"
                )
            finally:
                await transport.close()

        report = asyncio.run(run())
        received = sink.received
    assert report.sent == 300
    assert len(received) == 300
    assert len({item.recipients[0] for item in received}) == 300
    assert max(handler.unrecorded) <= outbox.UNRECORDED_LIMIT == 16
    assert statuses(state) == {("sent", None): 300}
