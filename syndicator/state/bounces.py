"""State of deliverability: processed reports, bounce events, the suppression list,
and the sending pause. Every SQL statement of bounces, suppression and data rights.

Tables here are new ones (created with the rest of the schema on first use), so an
existing database gains them without a migration.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from syndicator.state.db import (
    AwareDateTime,
    State,
    matches_table,
    messages_table,
    metadata,
    rate_limits_table,
    subscribers_table,
    subscription_requests_table,
    unsent_messages,
)

# Every report read, by the SHA-256 of its bytes: a report read twice (a crash between
# recording it and moving it aside, or the same message in two mailboxes) counts once.
processed_reports_table = Table(
    "processed_reports",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("processed_at", AwareDateTime, nullable=False),
    Column("outcome", Text, nullable=False),
)

# What each bounce or complaint about one of our messages did.
bounce_events_table = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_key", Integer, nullable=False, index=True),  # messages.id
    Column("subscriber_id", Integer, nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # hard | soft | complaint
    Column("status", String(16), nullable=False, default=""),
    Column("decision", String(32), nullable=False),  # suspended | unsubscribed | counted | none
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("received_at", AwareDateTime, nullable=False, index=True),
)

# Addresses (lower-cased), whole domains (``*@domain``) and, for forgotten addresses, a
# salted hash (``sha256:<hex>``): never mailed, whatever else state says.
suppressions_table = Table(
    "suppressions",
    metadata,
    Column("entry", String(330), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("added_at", AwareDateTime, nullable=False),
)

_PAUSE_KEY = "mail_paused"
_RESUMED_KEY = "mail_resumed_after"


@dataclass(frozen=True, slots=True)
class BouncedMessage:
    """The message a verified return path names."""

    key: int
    subscriber_id: int
    recipient: str
    status: str


@dataclass(frozen=True, slots=True)
class Suppression:
    entry: str
    reason: str
    added_at: datetime


# --- reports and events ----------------------------------------------------------------


def report_seen(conn: Connection, digest: str) -> bool:
    found = conn.execute(
        select(processed_reports_table.c.digest).where(processed_reports_table.c.digest == digest)
    ).first()
    return found is not None


def record_report(conn: Connection, digest: str, *, outcome: str, now: datetime) -> None:
    conn.execute(
        processed_reports_table.insert().values(digest=digest, processed_at=now, outcome=outcome)
    )


def bounced_message(conn: Connection, key: int) -> BouncedMessage | None:
    row = conn.execute(
        select(
            messages_table.c.id,
            messages_table.c.subscriber_id,
            messages_table.c.recipient,
            messages_table.c.status,
        ).where(messages_table.c.id == key)
    ).first()
    if row is None:
        return None
    return BouncedMessage(int(row.id), int(row.subscriber_id), str(row.recipient), str(row.status))


def record_event(
    conn: Connection,
    *,
    message_key: int,
    subscriber_id: int,
    kind: str,
    status: str,
    decision: str,
    reason: str,
    evidence: str,
    now: datetime,
) -> None:
    conn.execute(
        bounce_events_table.insert().values(
            message_key=message_key,
            subscriber_id=subscriber_id,
            kind=kind,
            status=status,
            decision=decision,
            reason=reason,
            evidence=evidence,
            received_at=now,
        )
    )


def soft_bounces_since(
    conn: Connection, subscriber_id: int, since: datetime, *, besides: int | None = None
) -> int:
    """Messages of a subscriber that soft-bounced at ``since`` or later (each counted once),
    leaving out message ``besides``."""
    query = select(func.count(func.distinct(bounce_events_table.c.message_key))).where(
        bounce_events_table.c.subscriber_id == subscriber_id,
        bounce_events_table.c.kind == "soft",
        bounce_events_table.c.received_at >= since,
    )
    if besides is not None:
        query = query.where(bounce_events_table.c.message_key != besides)
    return int(conn.execute(query).scalar() or 0)


def subscriber_status(conn: Connection, subscriber_id: int) -> tuple[str, str] | None:
    """``(email, status)`` of a subscriber, or None."""
    row = conn.execute(
        select(subscribers_table.c.email, subscribers_table.c.status).where(
            subscribers_table.c.id == subscriber_id
        )
    ).first()
    return None if row is None else (str(row.email), str(row.status))


def set_subscriber_status(
    conn: Connection, subscriber_id: int, status: str, *, now: datetime
) -> None:
    values: dict[str, Any] = {"status": status}
    if status == "unsubscribed":
        values["unsubscribed_at"] = now
    conn.execute(
        update(subscribers_table).where(subscribers_table.c.id == subscriber_id).values(**values)
    )


def latest_decisions(conn: Connection) -> dict[int, tuple[str, str, datetime]]:
    """Each subscriber's latest decision that changed something: (decision, reason, when)."""
    rows = conn.execute(
        select(
            bounce_events_table.c.subscriber_id,
            bounce_events_table.c.decision,
            bounce_events_table.c.reason,
            bounce_events_table.c.received_at,
        )
        .where(bounce_events_table.c.decision.in_(("suspended", "unsubscribed")))
        .order_by(bounce_events_table.c.id)
    )
    return {
        int(row.subscriber_id): (str(row.decision), str(row.reason), row.received_at)
        for row in rows
    }


def event_counts(conn: Connection) -> dict[str, int]:
    """Bounce events by kind, for /metrics."""
    return {
        str(kind): int(count)
        for kind, count in conn.execute(
            select(bounce_events_table.c.kind, func.count()).group_by(bounce_events_table.c.kind)
        )
    }


def recent_rates(conn: Connection, window: int, *, after: int = 0) -> tuple[int, float, float]:
    """Over the last ``window`` messages sent (with ids above ``after``): (how many, hard
    bounce rate, complaint rate)."""
    recent = (
        select(messages_table.c.id)
        .where(messages_table.c.status == "sent", messages_table.c.id > after)
        .order_by(messages_table.c.id.desc())
        .limit(window)
        .subquery()
    )
    sent = int(conn.execute(select(func.count()).select_from(recent)).scalar() or 0)
    if not sent:
        return 0, 0.0, 0.0
    counts = {
        str(kind): int(count)
        for kind, count in conn.execute(
            select(
                bounce_events_table.c.kind,
                func.count(func.distinct(bounce_events_table.c.message_key)),
            )
            .where(bounce_events_table.c.message_key.in_(select(recent.c.id)))
            .group_by(bounce_events_table.c.kind)
        )
    }
    return sent, counts.get("hard", 0) / sent, counts.get("complaint", 0) / sent


# --- the sending pause -------------------------------------------------------------------


def paused_reason(state: State, conn: Connection) -> str | None:
    value = state.get_meta(conn, _PAUSE_KEY)
    return value or None


def set_paused(state: State, conn: Connection, reason: str | None) -> None:
    state.set_meta(conn, _PAUSE_KEY, reason or "")
    if reason is None:
        # Resumed: the rates start again from the next message sent.
        last = conn.execute(select(func.max(messages_table.c.id))).scalar()
        state.set_meta(conn, _RESUMED_KEY, str(int(last or 0)))


def resumed_after(state: State, conn: Connection) -> int:
    return int(state.get_meta(conn, _RESUMED_KEY) or 0)


# --- suppression -------------------------------------------------------------------------


def suppressed_entries(conn: Connection, entries: Iterable[str]) -> set[str]:
    """Which of ``entries`` (already normalised) are on the list."""
    wanted = sorted(set(entries))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            conn.execute(
                select(suppressions_table.c.entry).where(
                    suppressions_table.c.entry.in_(wanted[start : start + 500])
                )
            ).scalars()
        )
    return found


def add_suppression(conn: Connection, entry: str, *, reason: str, added_at: datetime) -> bool:
    """Add ``entry``; False if it was there already (its reason and date are kept)."""
    if suppressed_entries(conn, [entry]):
        return False
    conn.execute(suppressions_table.insert().values(entry=entry, reason=reason, added_at=added_at))
    return True


def remove_suppression(conn: Connection, entry: str) -> bool:
    result = conn.execute(delete(suppressions_table).where(suppressions_table.c.entry == entry))
    return bool(result.rowcount)


def suppressions(conn: Connection) -> list[Suppression]:
    return [
        Suppression(str(row.entry), str(row.reason), row.added_at)
        for row in conn.execute(select(suppressions_table).order_by(suppressions_table.c.entry))
    ]


def any_suppression(conn: Connection) -> bool:
    """Whether the suppression list has any entry at all."""
    return conn.execute(select(suppressions_table.c.entry).limit(1)).first() is not None


def suppressed_pending_messages(conn: Connection) -> list[tuple[int, str]]:
    """(id, recipient) of every message not yet sent, to check against the list."""
    return [
        (int(row.id), str(row.recipient))
        for row in conn.execute(
            select(messages_table.c.id, messages_table.c.recipient).where(
                unsent_messages, messages_table.c.status.in_(("pending", "retry"))
            )
        )
    ]


def drop_messages(conn: Connection, keys: list[int], *, reason: str) -> None:
    """Give up messages to suppressed addresses (they stay, as failed, for the record)."""
    for start in range(0, len(keys), 500):
        conn.execute(
            update(messages_table)
            .where(messages_table.c.id.in_(keys[start : start + 500]))
            .values(status="failed", last_error=reason)
        )


# --- data rights ---------------------------------------------------------------------------


def subscriber_row(conn: Connection, email_key: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.email_key == email_key)
    ).first()
    return None if row is None else dict(row._mapping)


def everything_about(conn: Connection, email_key: str) -> dict[str, Any]:
    """Every row held about an address (lower-cased), as plain data."""
    subscriber = subscriber_row(conn, email_key)
    held: dict[str, Any] = {"subscriber": subscriber}
    messages = conn.execute(
        select(
            messages_table.c.id,
            messages_table.c.kind,
            messages_table.c.message_id,
            messages_table.c.status,
            messages_table.c.attempts,
            messages_table.c.created_at,
            messages_table.c.sent_at,
            messages_table.c.last_error,
        )
        .where(func.lower(messages_table.c.recipient) == email_key)
        .order_by(messages_table.c.id)
    ).all()
    held["messages"] = [dict(row._mapping) for row in messages]
    requests = conn.execute(
        select(
            subscription_requests_table.c.settings,
            subscription_requests_table.c.requested_at,
            subscription_requests_table.c.confirmed_at,
        ).where(subscription_requests_table.c.email_key == email_key)
    ).all()
    held["requests"] = [
        {**dict(row._mapping), "settings": json.loads(row.settings)} for row in requests
    ]
    if subscriber is not None:
        held["matches"] = [
            dict(row._mapping)
            for row in conn.execute(
                select(
                    matches_table.c.article_id, matches_table.c.matched_at, matches_table.c.message
                )
                .where(matches_table.c.subscriber_id == subscriber["id"])
                .order_by(matches_table.c.matched_at, matches_table.c.article_id)
            )
        ]
        held["bounces"] = [
            dict(row._mapping)
            for row in conn.execute(
                select(
                    bounce_events_table.c.message_key,
                    bounce_events_table.c.kind,
                    bounce_events_table.c.status,
                    bounce_events_table.c.decision,
                    bounce_events_table.c.reason,
                    bounce_events_table.c.evidence,
                    bounce_events_table.c.received_at,
                )
                .where(bounce_events_table.c.subscriber_id == subscriber["id"])
                .order_by(bounce_events_table.c.id)
            )
        ]
    else:
        held["matches"] = []
        held["bounces"] = []
    return held


def forget(conn: Connection, email_key: str) -> bool:
    """Delete every row about an address (lower-cased); False if nothing was held."""
    found = False
    subscriber = subscriber_row(conn, email_key)
    if subscriber is not None:
        subscriber_id = subscriber["id"]
        conn.execute(delete(matches_table).where(matches_table.c.subscriber_id == subscriber_id))
        conn.execute(
            delete(bounce_events_table).where(bounce_events_table.c.subscriber_id == subscriber_id)
        )
        conn.execute(delete(subscribers_table).where(subscribers_table.c.id == subscriber_id))
        found = True
    # Bounces of mail to the address that had no subscriber (a confirmation) go too: their
    # evidence may quote the address.
    keys = list(
        conn.execute(
            select(messages_table.c.id).where(func.lower(messages_table.c.recipient) == email_key)
        ).scalars()
    )
    for start in range(0, len(keys), 500):
        conn.execute(
            delete(bounce_events_table).where(
                bounce_events_table.c.message_key.in_(keys[start : start + 500])
            )
        )
    removed = conn.execute(
        delete(messages_table).where(func.lower(messages_table.c.recipient) == email_key)
    ).rowcount
    requests = conn.execute(
        delete(subscription_requests_table).where(
            subscription_requests_table.c.email_key == email_key
        )
    ).rowcount
    entry = conn.execute(
        delete(suppressions_table).where(suppressions_table.c.entry == email_key)
    ).rowcount
    # Rate-limit buckets keyed by the address ("purpose:address").
    conn.execute(
        delete(rate_limits_table).where(
            func.lower(rate_limits_table.c.key).like(f"%:{_like_escaped(email_key)}", escape="\\")
        )
    )
    return found or bool(removed) or bool(requests) or bool(entry)


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
