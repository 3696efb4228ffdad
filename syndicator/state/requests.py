"""Sign-up requests in state: subscriptions asked for on the web and not yet confirmed.

A request becomes (or updates) a subscriber only when its confirmation link is used;
until then it receives nothing but the confirmation mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from syndicator.state.db import inserted_id, subscription_requests_table

_table = subscription_requests_table


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A request as stored: ``settings`` is the subscriber asked for, as JSON."""

    id: int
    email: str
    email_key: str
    settings: str
    nonce: str
    requested_at: datetime
    confirmed_at: datetime | None


def _request(row: Any) -> StoredRequest:
    return StoredRequest(
        id=row.id,
        email=row.email,
        email_key=row.email_key,
        settings=row.settings,
        nonce=row.nonce,
        requested_at=row.requested_at,
        confirmed_at=row.confirmed_at,
    )


def forget_requests_before(conn: Connection, moment: datetime) -> None:
    """Delete every request made before ``moment``, confirmed or not."""
    conn.execute(delete(_table).where(_table.c.requested_at < moment))


def store_request(conn: Connection, *, email: str, settings: str, nonce: str, now: datetime) -> int:
    """Store a new request for ``email``, replacing its open one (whose link then dies);
    the new request's id."""
    key = email.strip().lower()
    conn.execute(delete(_table).where(_table.c.email_key == key, _table.c.confirmed_at.is_(None)))
    return inserted_id(
        conn.execute(
            _table.insert().values(
                email=email, email_key=key, settings=settings, nonce=nonce, requested_at=now
            )
        )
    )


def get_request(conn: Connection, request_id: int) -> StoredRequest | None:
    row = conn.execute(select(_table).where(_table.c.id == request_id)).first()
    return None if row is None else _request(row)


def mark_confirmed(conn: Connection, request_id: int, *, now: datetime) -> None:
    conn.execute(update(_table).where(_table.c.id == request_id).values(confirmed_at=now))


def open_requests_since(conn: Connection, moment: datetime) -> list[StoredRequest]:
    """Requests not confirmed yet made at ``moment`` or later, oldest first."""
    rows = conn.execute(
        select(_table)
        .where(_table.c.confirmed_at.is_(None), _table.c.requested_at >= moment)
        .order_by(_table.c.requested_at)
    ).all()
    return [_request(row) for row in rows]
