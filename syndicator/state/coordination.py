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

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from syndicator.errors import StateError
from syndicator.state.db import State, advisory_key, instances_table, messages_table

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
            "AND l.objid = :low AND l.objsubid = 1"
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


def outbox_by_instance(conn: Connection) -> dict[str, int]:
    """Messages being sent now, by the instance holding their lease."""
    return {
        str(owner): int(count)
        for owner, count in conn.execute(
            select(messages_table.c.lease_owner, func.count())
            .where(messages_table.c.status == "sending", messages_table.c.lease_owner.is_not(None))
            .group_by(messages_table.c.lease_owner)
        )
    }


def oldest_pending(conn: Connection) -> datetime | None:
    value = conn.execute(
        select(func.min(messages_table.c.created_at)).where(
            messages_table.c.status.in_(("pending", "retry", "sending"))
        )
    ).scalar()
    return value if isinstance(value, datetime) else None
