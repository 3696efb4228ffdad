"""Who is subscribed: the subscribers file synced into state, the command line's
additions and removals, confirmed web requests, unsubscribes.

The rules of who may change whom live here; every statement is in
:mod:`syndicator.state.subscribers`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from syndicator.errors import NotFoundError, SyndicatorError
from syndicator.mail.schedule import next_due
from syndicator.mail.subscribers import Subscriber
from syndicator.state.outbox import cancel_queued
from syndicator.state.records import (
    ACTIVE,
    FROM_CLI,
    FROM_FILE,
    FROM_WEB,
    OPERATOR_SOURCES,
    REMOVED,
    SUSPENDED,
    UNSUBSCRIBED,
    SubscriberRecord,
)
from syndicator.state.subscribers import (
    change_subscriber,
    find_subscriber,
    get_subscriber,
    insert_subscriber,
    list_subscribers,
    mark_removed,
    mark_unsubscribed,
    reactivate_subscriber,
    record_file_synced,
    subscribers_for_sync,
)

__all__ = [
    "ACTIVE",
    "FROM_CLI",
    "FROM_FILE",
    "FROM_WEB",
    "OPERATOR_SOURCES",
    "REMOVED",
    "SUSPENDED",
    "UNSUBSCRIBED",
    "SubscriberRecord",
    "SyncResult",
    "add_subscriber",
    "change_web_subscription",
    "confirm_web_subscription",
    "find_subscriber",
    "get_subscriber",
    "list_subscribers",
    "remove_subscriber",
    "resubscribe",
    "sync_subscribers",
    "unsubscribe",
]

_SCHEDULE = ("cadence", "hour", "weekday", "timezone")


@dataclass(slots=True)
class SyncResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _settings(subscriber: Subscriber) -> dict[str, Any]:
    """A subscriber's settings as the subscribers table stores them."""
    filters = {
        "regions": subscriber.regions,
        "topics": subscriber.topics,
        "keywords": subscriber.keywords,
        "exclude_regions": subscriber.exclude_regions,
        "exclude_topics": subscriber.exclude_topics,
    }
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "filters": json.dumps(filters, sort_keys=True),
        "cadence": subscriber.cadence,
        "hour": subscriber.hour,
        "weekday": subscriber.weekday,
        "timezone": subscriber.timezone,
        "group_by": subscriber.group_by,
    }


def _schedule(subscriber: Subscriber, now: datetime) -> datetime | None:
    return next_due(
        now,
        cadence=subscriber.cadence,
        hour=subscriber.hour,
        weekday=subscriber.weekday,
        timezone=subscriber.timezone,
    )


def _add(conn: Connection, subscriber: Subscriber, *, source: str, now: datetime) -> int:
    return insert_subscriber(
        conn,
        _settings(subscriber),
        source=source,
        now=now,
        next_digest_at=_schedule(subscriber, now),
    )


def _apply(
    conn: Connection, record: SubscriberRecord, subscriber: Subscriber, *, now: datetime
) -> bool:
    """Give a subscriber ``subscriber``'s settings; False if they had them already."""
    values = _settings(subscriber)
    current = {key: record.settings.get(key) for key in values}
    if current == values:
        return False
    if any(current[key] != values[key] for key in _SCHEDULE):
        values["next_digest_at"] = _schedule(subscriber, now)
    change_subscriber(conn, record.id, values)
    return True


def _renew(
    conn: Connection,
    record: SubscriberRecord,
    subscriber: Subscriber,
    *,
    now: datetime,
    **values: Any,
) -> None:
    """A subscription that had ended, active again with ``subscriber``'s settings, as new."""
    reactivate_subscriber(
        conn,
        record.id,
        now=now,
        next_digest_at=_schedule(subscriber, now),
        **values,
        **_settings(subscriber),
    )


def sync_subscribers(
    conn: Connection,
    listed: Sequence[Subscriber],
    *,
    now: datetime,
    held: Collection[str] = (),
    signature: str | None = None,
    problems: Sequence[str] = (),
) -> SyncResult:
    """Make state follow the subscribers file: add, change and remove its entries.

    An address that unsubscribed (or was suspended) stays so while the file still
    lists it, until an operator runs ``subscribers resubscribe``. Entries added
    with the command line or on the web are left alone, even when the file lists the
    same address; so are the addresses in ``held`` (lower-cased): their entries in the
    file are invalid, so they keep the subscription they had until the entry is fixed.
    With the file's ``signature`` (and its ``problems``), state records which file it
    now follows, so ``subscribers list`` need not sync the same file again.
    """
    result = SyncResult()
    records = subscribers_for_sync(conn, {subscriber.email.lower() for subscriber in listed})
    wanted: set[str] = set()
    for subscriber in listed:
        key = subscriber.email.lower()
        wanted.add(key)
        record = records.get(key)
        if record is None:
            _add(conn, subscriber, source=FROM_FILE, now=now)
            result.added.append(subscriber.email)
        elif record.source != FROM_FILE:
            continue
        elif record.status == REMOVED:
            # Listed again: a new subscription, new only to articles seen from now on.
            _renew(conn, record, subscriber, now=now)
            result.added.append(subscriber.email)
        elif _apply(conn, record, subscriber, now=now):
            result.changed.append(subscriber.email)
    for key, record in records.items():
        if (
            record.source == FROM_FILE
            and key not in wanted
            and key not in held
            and record.status != REMOVED
        ):
            # Unsubscribed addresses keep their status, so they stay suppressed if re-listed.
            if record.status != UNSUBSCRIBED:
                mark_removed(conn, record.id)
            result.removed.append(record.email)
    if signature is not None:
        record_file_synced(conn, signature, problems)
    return result


def add_subscriber(conn: Connection, subscriber: Subscriber, *, now: datetime) -> str:
    """Add (or re-add) a subscriber managed from the command line; returns what happened."""
    record = find_subscriber(conn, subscriber.email)
    if record is None:
        _add(conn, subscriber, source=FROM_CLI, now=now)
        return "added"
    if record.status == UNSUBSCRIBED:
        raise SyndicatorError(
            f"{subscriber.email} unsubscribed",
            hint="only they can come back: `syndicator subscribers resubscribe` if they asked",
        )
    if record.source == FROM_FILE and record.status != REMOVED:
        raise SyndicatorError(
            f"{subscriber.email} is listed in the subscribers file", hint="edit it there"
        )
    if record.status == REMOVED:
        _renew(conn, record, subscriber, now=now, source=FROM_CLI)
        return "added"
    _apply(conn, record, subscriber, now=now)
    return "updated"


def confirm_web_subscription(
    conn: Connection, subscriber: Subscriber, *, now: datetime
) -> tuple[str, int]:
    """Apply a confirmed web request; ``(outcome, subscriber id)``.

    ``"subscribed"``: a new subscription, or one that had ended (unsubscribed, removed,
    suspended) made active again with the settings asked for; the owner of the address
    just proved it by following the link, so this also lifts an unsubscribe. As for any new
    subscriber, only articles first seen from now on are mailed. ``"updated"``: an active
    web subscription took the new settings. ``"operator"``: the address is an active
    subscriber of the subscribers file or the command line, whose settings stay the
    operator's; nothing changed.
    """
    record = find_subscriber(conn, subscriber.email)
    if record is None:
        return "subscribed", _add(conn, subscriber, source=FROM_WEB, now=now)
    if record.status in (ACTIVE, SUSPENDED) and record.source in OPERATOR_SOURCES:
        return "operator", record.id
    if record.status == ACTIVE:
        _apply(conn, record, subscriber, now=now)
        return "updated", record.id
    _renew(conn, record, subscriber, now=now, source=FROM_WEB, unsubscribed_at=None)
    return "subscribed", record.id


def change_web_subscription(
    conn: Connection, subscriber_id: int, subscriber: Subscriber, *, now: datetime
) -> bool:
    """New filters and schedule for an active web subscription; False if it is not one."""
    record = get_subscriber(conn, subscriber_id)
    if record is None or record.source != FROM_WEB or record.status != ACTIVE:
        return False
    _apply(
        conn,
        record,
        subscriber.model_copy(update={"email": record.email, "name": record.name}),
        now=now,
    )
    return True


def remove_subscriber(conn: Connection, email: str) -> None:
    record = find_subscriber(conn, email)
    if record is None or record.status == REMOVED:
        raise NotFoundError(f"no subscriber {email!r}", hint="see `syndicator subscribers list`")
    if record.source == FROM_FILE:
        raise SyndicatorError(
            f"{email} is listed in the subscribers file", hint="remove the entry there"
        )
    mark_removed(conn, record.id)


def unsubscribe(conn: Connection, subscriber_id: int, *, now: datetime) -> bool:
    """Unsubscribe at once (idempotent); True if they were subscribed until now."""
    if not mark_unsubscribed(conn, subscriber_id, now=now):
        return False
    # Nothing more goes out to them, not even what was already queued.
    cancel_queued(conn, subscriber_id, reason="unsubscribed")
    return True


def resubscribe(conn: Connection, email: str, *, now: datetime) -> None:
    record = find_subscriber(conn, email)
    if record is None:
        raise NotFoundError(f"no subscriber {email!r}", hint="see `syndicator subscribers list`")
    if record.status not in (UNSUBSCRIBED, SUSPENDED):
        raise SyndicatorError(f"{email} is {record.status}, not unsubscribed or suspended")
    reactivate_subscriber(conn, record.id, now=now, unsubscribed_at=None)
