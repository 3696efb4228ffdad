"""Delivery's statements read the messages still to send, never the sent ones.

The outbox keeps every message it ever sent, a message per subscriber and digest, so
the sent ones soon make nearly all of it. Claims, lease renewals, group commits and the
other look-ups of unsent messages go through ``messages_unsent``, a partial index of the
unsent messages alone, or the primary key; the query planner of each database is asked
(``EXPLAIN``) what it would read, on an outbox of a few thousand sent messages and a few
waiting. Delivery also keeps one connection for its claims and commits, and gives it
back when it ends, however it ends. Every test here runs on SQLite and on PostgreSQL
unless marked.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Connection

from syndicator.errors import StateError
from syndicator.mail.deliver import deliver
from syndicator.mail.transport import Delivery, Outcome
from syndicator.state import coordination
from syndicator.state.bounces import suppressed_pending_messages
from syndicator.state.db import State, messages_table
from syndicator.state.outbox import (
    ClaimedMessage,
    NewMessage,
    Outbox,
    Outcomes,
    queue_messages,
    record_outcomes,
    record_sent_at_once,
)
from tests.conftest import T0

SENT = 3_000
WAITING = 20
LEASE = timedelta(seconds=60)


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    opened = State.open(state_url)
    yield opened
    opened.close()


def fill(state: State) -> None:
    """SENT messages sent long ago and WAITING still to send, with fresh statistics."""
    messages = [
        NewMessage(
            subscriber_id=number + 1,
            kind="daily",
            message_id=f"<m{number}@example.org>",
            recipient=f"reader{number:05}@example.org",
            body=b"Subject: s\r\n\r\nBody.\r\n",
        )
        for number in range(SENT + WAITING)
    ]
    with state.transaction() as conn:
        queue_messages(conn, messages, now=T0)
        conn.execute(
            update(messages_table)
            .where(messages_table.c.id <= SENT)
            .values(status="sent", sent_at=T0, attempts=1)
        )
    with state.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("ANALYZE")


class Statements:
    """The SQL a block of code sends, with its parameters as the driver got them."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.seen: list[tuple[str, Any]] = []

    def __enter__(self) -> Statements:
        event.listen(self.state.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.state.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.search(r"\bmessages\b", statement):
            self.seen.append((statement, parameters))


FULL_SCAN = "a full scan"
PRIMARY_KEY = "the primary key"


def ways_in(conn: Connection, statement: str, parameters: Any) -> set[str]:
    """How the planner would read ``messages`` for ``statement``: the indexes it would
    use, ``PRIMARY_KEY``, or ``FULL_SCAN``."""
    found: set[str] = set()
    if conn.dialect.name == "sqlite":
        for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters):
            read = re.match(r"(?:SCAN|SEARCH) messages(?: AS \w+)?(?: USING (.*))?$", row.detail)
            if read is None:
                continue
            how = read[1] or ""
            if not how:
                found.add(FULL_SCAN)
            elif how.startswith("INTEGER PRIMARY KEY"):
                found.add(PRIMARY_KEY)
            else:
                found.add(re.sub(r"^(?:COVERING )?INDEX (\w+).*", r"\1", how))
        return found
    (plan,) = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).one()
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict[str, Any]) -> None:
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == "messages":
            found.add(FULL_SCAN)
        index = node.get("Index Name")
        if index is not None:
            found.add(PRIMARY_KEY if index == "messages_pkey" else index)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def assert_only_unsent_are_read(state: State, statements: Statements) -> None:
    """Each statement reads ``messages`` through ``messages_unsent`` or the primary key
    alone (never all of it, nor an index of every message by status or owner)."""
    assert statements.seen
    with state.engine.connect() as conn:
        for statement, parameters in statements.seen:
            used = ways_in(conn, statement, parameters)
            assert used, statement
            assert used <= {"messages_unsent", PRIMARY_KEY}, (used, statement)


def test_claims_renewals_and_commits_never_read_the_sent_messages(state: State) -> None:
    fill(state)
    now = T0 + timedelta(minutes=5)
    with Statements(state) as claiming, state.transaction() as conn:
        claimed = coordination.claim_messages(conn, now, 8, owner="a", lease=LEASE)
    assert [row.id for row in claimed] == list(range(SENT + 1, SENT + 9))  # oldest first
    with Statements(state) as renewing, state.transaction() as conn:
        renewed = coordination.renew_leases(
            conn, owner="a", until=now + 2 * LEASE, unless_after=now + LEASE
        )
        assert renewed == 8
    with Statements(state) as recording, state.transaction() as conn:
        if conn.dialect.name == "postgresql":
            recorded, more = record_sent_at_once(
                conn,
                [claimed_message(row) for row in claimed[:4]],
                now=now,
                owner="a",
                renew=(now + LEASE, now + LEASE / 2),
                claim_next=8,
                lease=LEASE,
            )
            assert (recorded, len(more)) == (4, 8)
        else:
            done = record_outcomes(
                conn,
                Outcomes(sent=[claimed_message(row) for row in claimed[:4]]),
                now=now,
                suspend_after=3,
                owner="a",
            )
            assert done.lost_leases == 0
    with Statements(state) as looking, state.engine.connect() as conn:
        assert coordination.oldest_pending(conn) == T0
        assert coordination.outbox_by_instance(conn)
        assert len(suppressed_pending_messages(conn)) == WAITING - 8 - (
            8 if conn.dialect.name == "postgresql" else 0
        )
    with Statements(state) as releasing, state.transaction() as conn:
        assert coordination.release_dead_leases(conn, me="a", host="elsewhere")
    for statements in (claiming, renewing, recording, looking, releasing):
        assert_only_unsent_are_read(state, statements)


def claimed_message(row: Any) -> ClaimedMessage:
    return ClaimedMessage(row.id, row.subscriber_id, row.recipient, row.body, row.attempts)


class Accepting:
    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        return Delivery(Outcome.SENT, 250, "250 OK")

    async def close(self) -> None:
        return None


class Refusing(Accepting):
    """A transport that fails in a way delivery does not expect (a bug)."""

    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        raise RuntimeError("transport bug")


@pytest.mark.parametrize("transport", [Accepting(), Refusing()], ids=["sent", "failed"])
def test_delivery_gives_its_connection_back_however_it_ends(
    state: State, transport: Accepting
) -> None:
    fill(state)
    pool = state.engine.pool

    async def run() -> int:
        report = await deliver(
            state, transport, sender="news@example.org", clock=lambda: T0, owner="a"
        )
        return report.sent

    if isinstance(transport, Refusing):
        with pytest.raises(RuntimeError, match="transport bug"):
            asyncio.run(run())
    else:
        assert asyncio.run(run()) == WAITING
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgresql_only  # a server that drops a connection
def test_a_kept_connection_the_server_dropped_fails_one_claim_and_the_next_opens_another(
    state: State,
) -> None:
    fill(state)
    with Outbox(state, suspend_after=3, owner="a", lease=LEASE) as outbox:
        first = outbox.claim(T0, 4)
        assert len(first) == 4
        with state.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            dropped = conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).all()
        assert dropped
        with pytest.raises(StateError, match="state database error"):
            outbox.claim(T0, 4)
        again = outbox.claim(T0, 4)
        assert [message.id for message in again] == [message.id + 4 for message in first]
    assert state.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgresql_only  # the planner's statistics and its bitmap scans
def test_claims_read_in_index_order_even_before_statistics_know_the_new_messages(
    state: State,
) -> None:
    """Digests just queued for every subscriber, statistics from before: a claim on
    delivery's connection still reads the first unsent messages in id order and stops at
    its limit, where a bitmap scan would read and sort every waiting message first."""
    with state.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("ANALYZE messages")  # an empty outbox, as statistics know it
    with state.transaction() as conn:
        queue_messages(
            conn,
            [
                NewMessage(
                    subscriber_id=number + 1,
                    kind="daily",
                    message_id=f"<m{number}@example.org>",
                    recipient=f"reader{number:05}@example.org",
                    body=b"Subject: s\r\n\r\nBody.\r\n",
                )
                for number in range(5_000)
            ],
            now=T0,
        )
    with Statements(state) as claiming, Outbox(state, suspend_after=3, owner="a") as outbox:
        assert [message.id for message in outbox.claim(T0, 64)] == list(range(1, 65))
    held = state.held(index_order=True)
    try:
        with held.single_statement() as conn:
            for statement, parameters in claiming.seen:
                (plan,) = conn.exec_driver_sql(
                    f"EXPLAIN (FORMAT JSON) {statement}", parameters
                ).one()
                nodes = json.dumps(plan)
                assert '"Bitmap Heap Scan"' not in nodes and '"Sort"' not in nodes, nodes
                assert '"Index Name": "messages_unsent"' in nodes, nodes
    finally:
        held.close()
    # The setting is that connection's own: every pooled connection plans as usual.
    pooled = [state.engine.connect() for _ in range(5)]
    try:
        assert {conn.exec_driver_sql("SHOW enable_bitmapscan").scalar() for conn in pooled} == {
            "on"
        }
    finally:
        for conn in pooled:
            conn.close()
