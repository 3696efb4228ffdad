"""Several instances on one state database: who runs the cycle, who is alive.

The database is the coordinator; there is no protocol of our own between instances.

* **One cycle at a time.** On PostgreSQL the cycle (scan, classify, reconcile, match,
  queue) runs under a session-level advisory lock taken with ``pg_try_advisory_lock`` on a
  connection of its own: an instance that does not get it skips that round, and a dead
  holder's lock goes with its connection. On SQLite every write transaction already takes
  the database's one write lock (``BEGIN IMMEDIATE``), so a second process on the same
  host queues behind the first instead of racing it.
* **Schema creation and migrations** run under a transaction-level advisory lock, so
  instances started together on an empty database all come up.
* **Instances** record themselves in ``instances`` (id, host, pid, roles) and beat a
  heartbeat there; ``syndicator status``, ``/healthz`` and ``/metrics`` read it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from syndicator.errors import StateError
from syndicator.state.db import (
    State,
    advisory_key,
    instances_table,
    messages_table,
    unsent_messages,
)

log = logging.getLogger(__name__)

CYCLE_LOCK = "cycle"
# An instance whose heartbeat is older than this many heartbeat intervals counts as gone.
HEARTBEAT_MISSES = 3


@contextmanager
def exclusive_turn(state: State, name: str) -> Iterator[bool]:
    """Try to take the lock ``name`` for the body; yields whether this process has it.

    On PostgreSQL: a session-level advisory lock, held by a connection kept open (and out
    of the pool) for the body, released at the end; if this process dies, the server
    releases it with the connection. The connection carries the instance id as its
    ``application_name``, so ``cycle_holder`` can say who holds the lock. Elsewhere:
    always True (SQLite serializes writers).
    """
    engine = state.engine
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = advisory_key(name)
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except DBAPIError as exc:
        raise StateError(f"state database error: {exc.orig}") from exc
    try:
        try:
            conn.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": f"syndicator {state.instance_id}"[:63]},
            )
            held = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            )
        except DBAPIError as exc:
            raise StateError(f"state database error: {exc.orig}") from exc
        try:
            yield held
        finally:
            if held:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except DBAPIError:
                    # The connection is broken: the server dropped the lock with it.
                    conn.invalidate()
    finally:
        conn.close()


def cycle_holder(conn: Connection) -> str | None:
    """The instance running the cycle now (PostgreSQL), or None (nobody, or SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    # pg_locks shows a bigint key as its high (classid) and low (objid) halves.
    unsigned = advisory_key(CYCLE_LOCK) & 0xFFFFFFFFFFFFFFFF
    name = conn.execute(
        text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high "
            "AND l.objid = :low AND l.objsubid = 1 "
            # Advisory locks belong to a database: another database's syndicator on the
            # same server holds a lock of the same key that is not this one.
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF},
    ).scalar()
    return None if name is None else str(name).removeprefix("syndicator ")


# --- instances -----------------------------------------------------------------------------

ROLES = ("cycle", "deliver", "web")


def default_instance_id() -> str:
    """``host:pid``: unique on the machine, and tells an operator where to look."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    id: str
    host: str
    pid: int
    roles: tuple[str, ...]
    started_at: datetime
    heartbeat_at: datetime
    cycle_since: datetime | None

    def alive(self, now: datetime, heartbeat: timedelta) -> bool:
        return now - self.heartbeat_at <= heartbeat * HEARTBEAT_MISSES


def register_instance(
    state: State, instance_id: str, roles: Sequence[str], *, now: datetime
) -> None:
    """Record (or refresh) this instance's row at start."""
    values = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "roles": " ".join(roles),
        "started_at": now,
        "heartbeat_at": now,
        "cycle_since": None,
    }
    with state.transaction() as conn:
        changed = conn.execute(
            update(instances_table).where(instances_table.c.id == instance_id).values(**values)
        ).rowcount
        if not changed:
            conn.execute(instances_table.insert().values(id=instance_id, **values))


def heartbeat(state: State, instance_id: str, *, now: datetime) -> None:
    with state.transaction() as conn:
        conn.execute(
            update(instances_table)
            .where(instances_table.c.id == instance_id)
            .values(heartbeat_at=now)
        )


def mark_cycle(state: State, instance_id: str, since: datetime | None) -> None:
    """Note that this instance holds the cycle since ``since`` (None: no longer)."""
    with state.transaction() as conn:
        conn.execute(
            update(instances_table)
            .where(instances_table.c.id == instance_id)
            .values(cycle_since=since)
        )


def unregister_instance(state: State, instance_id: str) -> None:
    with state.transaction() as conn:
        conn.execute(delete(instances_table).where(instances_table.c.id == instance_id))


def instances(conn: Connection) -> list[InstanceRecord]:
    return [
        InstanceRecord(
            id=row.id,
            host=row.host,
            pid=row.pid,
            roles=tuple(row.roles.split()),
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            cycle_since=row.cycle_since,
        )
        for row in conn.execute(select(instances_table).order_by(instances_table.c.id))
    ]


def outbox_by_status(conn: Connection) -> dict[str, int]:
    return {
        str(status): int(count)
        for status, count in conn.execute(
            select(messages_table.c.status, func.count()).group_by(messages_table.c.status)
        )
    }


def outbox_by_instance(conn: Connection) -> dict[str, int]:
    """Messages being sent now, by the instance holding their lease."""
    return {
        str(owner): int(count)
        for owner, count in conn.execute(
            select(messages_table.c.lease_owner, func.count())
            .where(
                unsent_messages,
                messages_table.c.status == "sending",
                messages_table.c.lease_owner.is_not(None),
            )
            .group_by(messages_table.c.lease_owner)
        )
    }


def oldest_pending(conn: Connection) -> datetime | None:
    value = conn.execute(
        select(func.min(messages_table.c.created_at)).where(unsent_messages)
    ).scalar()
    return value if isinstance(value, datetime) else None


# --- leases on messages being sent ---------------------------------------------------------

_DEFAULT_ID = re.compile(r"^(?P<host>.+):(?P<pid>\d+)$")


def claim_messages(
    conn: Connection, now: datetime, limit: int, *, owner: str, lease: timedelta
) -> list[Any]:
    """Claim up to ``limit`` messages due at ``now`` for ``owner`` until ``now + lease``;
    the claimed rows (``id``, ``recipient``, ``body``, ``subscriber_id`` and ``attempts``,
    this claim counted), oldest first.

    Due: pending, a retry whose time came, or ``sending`` under a lease that expired (its
    instance died or hung). One statement: on PostgreSQL the rows are picked with ``FOR
    UPDATE SKIP LOCKED``, so instances claiming at the same moment each get other messages
    and never wait for each other; on SQLite the write transaction already holds the
    database.
    """
    rows = conn.execute(
        _claim(), {"now": now, "limit": limit, "owner": owner, "until": now + lease}
    ).all()
    return sorted(rows, key=lambda row: row.id)


@functools.cache
def _claim() -> Any:
    return claim_statement()


def claim_statement(leaving: Any = None) -> Any:
    """The ``UPDATE ... RETURNING`` of :func:`claim_messages` (rows in no particular
    order), with the parameters ``now``, ``limit``, ``owner`` and ``until``; ``leaving``,
    a condition on ``messages``, leaves the rows it holds for out.

    Statements here are built once and given their values as parameters: building one
    costs more than running it.
    """
    sending = messages_table.c.status == "sending"
    now: Any = bindparam("now")
    due = unsent_messages & (
        (messages_table.c.status == "pending")
        | ((messages_table.c.status == "retry") & (messages_table.c.next_attempt_at <= now))
        | (
            sending
            & (
                messages_table.c.lease_expires_at.is_(None)
                | (messages_table.c.lease_expires_at < now)
            )
        )
    )
    if leaving is not None:
        due = due & ~leaving
    # Picked once (a materialised CTE: never evaluated again as the update runs), locked
    # as picked, skipping the rows another transaction holds.
    picked = (
        select(messages_table.c.id)
        .where(due)
        .order_by(messages_table.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(messages_table)
        .where(messages_table.c.id.in_(select(picked.c.id)))
        .values(
            status="sending",
            attempts=messages_table.c.attempts + 1,
            lease_owner=bindparam("owner"),
            lease_expires_at=bindparam("until"),
        )
        .returning(
            messages_table.c.id,
            messages_table.c.recipient,
            messages_table.c.body,
            messages_table.c.attempts,
            messages_table.c.subscriber_id,
        )
    )


def renew_leases(
    conn: Connection, *, owner: str, until: datetime, unless_after: datetime | None = None
) -> int:
    """Extend the leases ``owner`` holds to ``until`` (it is alive and still sending); how
    many. With ``unless_after``, leases ending after it are left as they are: a group
    commit every few milliseconds then rewrites each claimed row about once a second, not
    at every commit (on PostgreSQL every update writes a new version of the whole row)."""
    if unless_after is None:
        statement = update(messages_table).where(sending_by(owner)).values(lease_expires_at=until)
        return int(conn.execute(statement).rowcount or 0)
    parameters = {"owner": owner, "renew_until": until, "unless_after": unless_after}
    return int(conn.execute(_renewal(), parameters).rowcount or 0)


@functools.cache
def _renewal() -> Any:
    return renewal_statement()


def renewal_statement() -> Any:
    """The ``UPDATE`` of :func:`renew_leases` with ``unless_after``, with the parameters
    ``owner``, ``renew_until`` and ``unless_after``."""
    return (
        update(messages_table)
        .where(
            unsent_messages,
            messages_table.c.status == "sending",
            messages_table.c.lease_owner == bindparam("owner"),
            messages_table.c.lease_expires_at <= bindparam("unless_after"),
        )
        .values(lease_expires_at=bindparam("renew_until"))
    )


def sending_by(owner: str) -> Any:
    return (
        unsent_messages
        & (messages_table.c.status == "sending")
        & (messages_table.c.lease_owner == owner)
    )


def release_messages(conn: Connection, ids: Sequence[int], *, owner: str) -> int:
    """Give back claimed messages that were never handed to the transport."""
    if not ids:
        return 0
    return int(
        conn.execute(
            update(messages_table)
            .where(messages_table.c.id.in_(list(ids)), sending_by(owner))
            .values(
                status="pending",
                attempts=messages_table.c.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
            )
        ).rowcount
        or 0
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_leases(
    conn: Connection, *, me: str, host: str, alive: Callable[[int], bool] = pid_alive
) -> int:
    """At start: messages left in ``sending`` by an earlier run of this instance, or by an
    instance of this host whose process is gone, go back to the queue at once (they go
    out again with the same Message-ID). Leases of instances that may be alive (on other
    hosts, or running here) are left alone until they expire.
    """
    owners: list[str | None] = list(
        conn.execute(
            select(messages_table.c.lease_owner)
            .where(unsent_messages, messages_table.c.status == "sending")
            .distinct()
        ).scalars()
    )
    if not owners:
        return 0
    known = {
        row.id: (row.host, row.pid)
        for row in conn.execute(
            select(instances_table.c.id, instances_table.c.host, instances_table.c.pid)
        )
    }
    dead: list[str | None] = []
    for owner in owners:
        if owner is None or owner == me:
            dead.append(owner)
            continue
        where = known.get(owner)
        if where is None and (parsed := _DEFAULT_ID.match(owner)) is not None:
            where = (parsed["host"], int(parsed["pid"]))
        if where is not None and where[0] == host and not alive(where[1]):
            dead.append(owner)
    if not dead:
        return 0
    named = [owner for owner in dead if owner is not None]
    condition: Any = messages_table.c.lease_owner.in_(named)
    if None in dead:
        condition = condition | messages_table.c.lease_owner.is_(None)
    return int(
        conn.execute(
            update(messages_table)
            .where(unsent_messages, messages_table.c.status == "sending", condition)
            .values(status="pending", lease_owner=None, lease_expires_at=None)
        ).rowcount
        or 0
    )
