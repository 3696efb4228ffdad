"""Subscribers in state: the rows of ``subscribers``, read and written by name.

Whether a change is allowed (who may add, change or remove whom) is decided in
:mod:`syndicator.mail.roster`; this module only stores what it is told.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from syndicator.state import SUBSCRIBERS_FILE_SYNCED
from syndicator.state.db import (
    articles_table,
    inserted_id,
    set_meta,
    subscribers_revision,
    subscribers_table,
)
from syndicator.state.lookup import PendingRequest, SubscriberListing
from syndicator.state.records import (
    ACTIVE,
    FROM_FILE,
    REMOVED,
    SUSPENDED,
    UNSUBSCRIBED,
    Records,
    SubscriberRecord,
)

_CHUNK = 500  # ids or addresses per IN (...) list


def _one(row: Any) -> SubscriberRecord | None:
    return Records()(row) if row is not None else None


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


# --- reading -------------------------------------------------------------------------------


def list_subscribers(conn: Connection, *, status: str | None = None) -> list[SubscriberRecord]:
    """Every subscriber (of one status, if given) in address order."""
    query = select(subscribers_table).order_by(subscribers_table.c.email_key)
    if status is not None:
        query = query.where(subscribers_table.c.status == status)
    record = Records()
    return [record(row) for row in conn.execute(query)]


def find_subscriber(conn: Connection, email: str) -> SubscriberRecord | None:
    """The subscriber of an address, whatever its case."""
    return _one(
        conn.execute(
            select(subscribers_table).where(subscribers_table.c.email_key == email.strip().lower())
        ).first()
    )


def get_subscriber(conn: Connection, subscriber_id: int) -> SubscriberRecord | None:
    return _one(
        conn.execute(
            select(subscribers_table).where(subscribers_table.c.id == subscriber_id)
        ).first()
    )


def subscriber_address(conn: Connection, subscriber_id: int) -> str | None:
    """The address of a subscriber, whatever their status; None if there is none."""
    value = conn.execute(
        select(subscribers_table.c.email).where(subscribers_table.c.id == subscriber_id)
    ).scalar()
    return None if value is None else str(value)


def subscribers_for_sync(
    conn: Connection, addresses: Collection[str]
) -> dict[str, SubscriberRecord]:
    """The rows a subscribers file sync may touch, by lower-cased address: every row that
    came from the file, and the rows of the ``addresses`` (lower-cased) it lists now.

    Not everyone: there may be a million subscribers from the command line or the web.
    """
    record = Records()
    found = {
        row.email_key: record(row)
        for row in conn.execute(
            select(subscribers_table).where(subscribers_table.c.source == FROM_FILE)
        )
    }
    for chunk in _chunks(sorted(set(addresses) - set(found))):
        found.update(
            (row.email_key, record(row))
            for row in conn.execute(
                select(subscribers_table).where(subscribers_table.c.email_key.in_(chunk))
            )
        )
    return found


def due_digest_ids(conn: Connection, now: datetime) -> list[int]:
    """Active digest subscribers whose next digest is due at ``now``."""
    return list(
        conn.execute(
            select(subscribers_table.c.id).where(
                subscribers_table.c.status == ACTIVE,
                subscribers_table.c.cadence != "immediate",
                subscribers_table.c.next_digest_at <= now,
            )
        ).scalars()
    )


def active_subscribers(conn: Connection, ids: Collection[int]) -> list[SubscriberRecord]:
    """The active subscribers among ``ids`` (in no particular order)."""
    record = Records()
    found: list[SubscriberRecord] = []
    for chunk in _chunks(sorted(ids)):
        found += [
            record(row)
            for row in conn.execute(
                select(subscribers_table).where(
                    subscribers_table.c.id.in_(chunk), subscribers_table.c.status == ACTIVE
                )
            )
        ]
    return found


def active_filters(conn: Connection) -> Iterator[tuple[int, str, int]]:
    """``(id, filters JSON, added_seq)`` of every active subscriber who gets mail, by id
    (feed-only subscribers get none, so nothing is matched for them)."""
    rows = conn.execute(
        select(subscribers_table.c.id, subscribers_table.c.filters, subscribers_table.c.added_seq)
        .where(subscribers_table.c.status == ACTIVE, subscribers_table.c.cadence != "feed")
        .order_by(subscribers_table.c.id)
    )
    return ((subscriber_id, filters, added_seq) for subscriber_id, filters, added_seq in rows)


# --- writing -------------------------------------------------------------------------------


def _max_seq(conn: Connection) -> int:
    """The newest article's sequence number: a subscriber added now is new to later ones."""
    return int(conn.execute(select(func.max(articles_table.c.seq))).scalar() or 0)


def insert_subscriber(
    conn: Connection,
    settings: Mapping[str, Any],
    *,
    source: str,
    now: datetime,
    next_digest_at: datetime | None,
) -> int:
    """Store a new active subscriber with ``settings`` (the :data:`SETTINGS` columns); the id."""
    result = conn.execute(
        subscribers_table.insert().values(
            **settings,
            email_key=str(settings["email"]).lower(),
            source=source,
            status=ACTIVE,
            added_at=now,
            added_seq=_max_seq(conn),
            permanent_failures=0,
            next_digest_at=next_digest_at,
        )
    )
    return inserted_id(result)


def change_subscriber(conn: Connection, subscriber_id: int, values: Mapping[str, Any]) -> None:
    """Store new settings (or a new next digest time) for a subscriber."""
    conn.execute(
        update(subscribers_table).where(subscribers_table.c.id == subscriber_id).values(**values)
    )


def reactivate_subscriber(
    conn: Connection, subscriber_id: int, *, now: datetime, **values: Any
) -> None:
    """Make a subscription active again, as if new: only articles seen from now on count."""
    conn.execute(
        update(subscribers_table)
        .where(subscribers_table.c.id == subscriber_id)
        .values(
            status=ACTIVE,
            added_at=now,
            added_seq=_max_seq(conn),
            permanent_failures=0,
            **values,
        )
    )


def mark_removed(conn: Connection, subscriber_id: int) -> None:
    change_subscriber(conn, subscriber_id, {"status": REMOVED})


def mark_unsubscribed(conn: Connection, subscriber_id: int, *, now: datetime) -> bool:
    """Record an unsubscribe; False if there is no such subscriber or they already had."""
    updated = conn.execute(
        update(subscribers_table)
        .where(
            subscribers_table.c.id == subscriber_id,
            subscribers_table.c.status != UNSUBSCRIBED,
        )
        .values(status=UNSUBSCRIBED, unsubscribed_at=now)
    ).rowcount
    return bool(updated)


def set_next_digest(conn: Connection, ids: list[int], when: datetime | None) -> None:
    """The next digest of every subscriber of ``ids`` falls due at ``when``."""
    for chunk in _chunks(ids):
        conn.execute(
            update(subscribers_table)
            .where(subscribers_table.c.id.in_(chunk))
            .values(next_digest_at=when)
        )


def count_permanent_failure(conn: Connection, subscriber_id: int, *, suspend_after: int) -> bool:
    """Count a permanent failure; suspend the subscriber once ``suspend_after`` are counted.
    True if this one suspended them."""
    conn.execute(
        update(subscribers_table)
        .where(subscribers_table.c.id == subscriber_id)
        .values(permanent_failures=subscribers_table.c.permanent_failures + 1)
    )
    row = conn.execute(
        select(subscribers_table.c.permanent_failures, subscribers_table.c.status).where(
            subscribers_table.c.id == subscriber_id
        )
    ).first()
    if row is None or row.permanent_failures < suspend_after or row.status != ACTIVE:
        return False
    change_subscriber(conn, subscriber_id, {"status": SUSPENDED})
    return True


def record_file_synced(conn: Connection, signature: str, problems: Sequence[str]) -> None:
    """Note that state now follows the subscribers file of ``signature`` (see
    :func:`syndicator.mail.subscribers.file_signature`), with the file's ``problems``.

    Stored with the subscribers revision this transaction leaves, so a reader can tell
    whether anything changed subscribers since (then it syncs again rather than trust
    this). Only SQLite's count is final inside the transaction (PostgreSQL counts at
    commit), and only SQLite state is listed without syncing (``lookup``), so it is
    recorded there alone.
    """
    if conn.dialect.name != "sqlite":
        return
    value = {
        "signature": signature,
        "revision": subscribers_revision(conn),
        "problems": list(problems),
    }
    set_meta(conn, SUBSCRIBERS_FILE_SYNCED, json.dumps(value))


def subscriber_listing(conn: Connection, *, requested_since: datetime) -> SubscriberListing:
    """What ``subscribers list`` shows, read through the engine: every subscriber in
    address order, the sign-up requests not confirmed yet made at ``requested_since`` or
    later (oldest first), and each subscriber's latest decision that ended a subscription.
    (:func:`syndicator.state.lookup.subscriber_listing` reads the same from SQLite alone.)
    """
    from syndicator.state.bounces import latest_decisions  # noqa: PLC0415
    from syndicator.state.requests import open_requests_since  # noqa: PLC0415

    return SubscriberListing(
        subscribers=list_subscribers(conn),
        requests=[
            PendingRequest(
                email=request.email,
                settings=request.settings,
                requested_at=request.requested_at,
            )
            for request in open_requests_since(conn, requested_since)
        ],
        decisions=latest_decisions(conn),
        problems=[],
    )
