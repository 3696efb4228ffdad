"""The durable outbox: subscribers in state, their matches, their messages and delivery.

The order of things is the promise to subscribers:

1. matches are recorded in the transaction that records the new articles, before
   anything is composed or sent (``record_matches``);
2. a message is composed and stored, with its ``Message-ID``, before it is sent
   (``queue_due``), and the matches it carries point at it;
3. a message is marked ``sending`` before the SMTP conversation and ``sent`` only
   after the server accepted it for its recipient (``deliver``).

A crash anywhere loses nothing: on restart ``recover_inflight`` puts messages
left in ``sending`` back in the queue, and they go out again with the same bytes
and the same ``Message-ID`` — the only duplicates possible are those in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection, Engine

from syndicator.errors import NotFoundError, SyndicatorError
from syndicator.mail.match import Candidate, Filter, FilterIndex
from syndicator.mail.schedule import next_due
from syndicator.mail.subscribers import Subscriber
from syndicator.mail.transport import Delivery, Outcome, Transport
from syndicator.models import Article
from syndicator.state.db import (
    State,
    article_from_row,
    articles_table,
    insert_rows,
    inserted_id,
    matches_table,
    messages_table,
    subscribers_revision,
    subscribers_table,
)

log = logging.getLogger(__name__)

SUSPEND_AFTER = 3  # permanent failures before a subscriber is suspended
MAX_ATTEMPTS = 8  # temporary failures before a message is given up
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_LIMIT = timedelta(hours=6)
BATCH_SIZE = 64

ACTIVE = "active"
SUSPENDED = "suspended"
UNSUBSCRIBED = "unsubscribed"
REMOVED = "removed"

# Where a subscription comes from: the operator's subscribers file or command line, or the
# subscriber's own confirmed request on the web pages.
FROM_FILE = "file"
FROM_CLI = "cli"
FROM_WEB = "web"
OPERATOR_SOURCES = (FROM_FILE, FROM_CLI)
NO_SUBSCRIBER = 0  # messages.subscriber_id of a confirmation mail


@dataclass(frozen=True, slots=True)
class SubscriberRecord:
    """A subscriber as state knows them."""

    id: int
    email: str
    name: str
    regions: tuple[str, ...]
    topics: tuple[str, ...]
    keywords: tuple[str, ...]
    exclude_regions: tuple[str, ...]
    exclude_topics: tuple[str, ...]
    cadence: str
    hour: int
    weekday: str
    timezone: str
    source: str
    status: str
    added_at: datetime
    added_seq: int
    permanent_failures: int
    next_digest_at: datetime | None


@lru_cache(maxsize=4096)
def _filters(text: str) -> dict[str, tuple[str, ...]]:
    """Parsed filter JSON; many subscribers share the same filters."""
    return {key: tuple(value) for key, value in json.loads(text).items()}


def _record(row: Any) -> SubscriberRecord:
    filters = _filters(row.filters)
    return SubscriberRecord(
        id=row.id,
        email=row.email,
        name=row.name,
        regions=filters.get("regions", ()),
        topics=filters.get("topics", ()),
        keywords=filters.get("keywords", ()),
        exclude_regions=filters.get("exclude_regions", ()),
        exclude_topics=filters.get("exclude_topics", ()),
        cadence=row.cadence,
        hour=row.hour,
        weekday=row.weekday,
        timezone=row.timezone,
        source=row.source,
        status=row.status,
        added_at=row.added_at,
        added_seq=row.added_seq,
        permanent_failures=row.permanent_failures,
        next_digest_at=row.next_digest_at,
    )


def _filters_json(subscriber: Subscriber) -> str:
    return json.dumps(
        {
            "regions": subscriber.regions,
            "topics": subscriber.topics,
            "keywords": subscriber.keywords,
            "exclude_regions": subscriber.exclude_regions,
            "exclude_topics": subscriber.exclude_topics,
        },
        sort_keys=True,
    )


def _max_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.max(articles_table.c.seq))).scalar() or 0)


def _schedule(subscriber: Subscriber, now: datetime) -> datetime | None:
    return next_due(
        now,
        cadence=subscriber.cadence,
        hour=subscriber.hour,
        weekday=subscriber.weekday,
        timezone=subscriber.timezone,
    )


# --- subscribers ---------------------------------------------------------------------------


@dataclass(slots=True)
class SyncResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def subscribers(conn: Connection, *, status: str | None = None) -> list[SubscriberRecord]:
    query = select(subscribers_table).order_by(subscribers_table.c.email_key)
    if status is not None:
        query = query.where(subscribers_table.c.status == status)
    return [_record(row) for row in conn.execute(query)]


def find_subscriber(conn: Connection, email: str) -> SubscriberRecord | None:
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.email_key == email.strip().lower())
    ).first()
    return _record(row) if row is not None else None


def get_subscriber(conn: Connection, subscriber_id: int) -> SubscriberRecord | None:
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.id == subscriber_id)
    ).first()
    return _record(row) if row is not None else None


def _insert(conn: Connection, subscriber: Subscriber, *, source: str, now: datetime) -> int:
    result = conn.execute(
        subscribers_table.insert().values(
            email=subscriber.email,
            email_key=subscriber.email.lower(),
            name=subscriber.name,
            filters=_filters_json(subscriber),
            cadence=subscriber.cadence,
            hour=subscriber.hour,
            weekday=subscriber.weekday,
            timezone=subscriber.timezone,
            source=source,
            status=ACTIVE,
            added_at=now,
            added_seq=_max_seq(conn),
            permanent_failures=0,
            next_digest_at=_schedule(subscriber, now),
        )
    )
    return inserted_id(result)


def _settings(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "filters": _filters_json(subscriber),
        "cadence": subscriber.cadence,
        "hour": subscriber.hour,
        "weekday": subscriber.weekday,
        "timezone": subscriber.timezone,
    }


def _update(conn: Connection, row: Any, subscriber: Subscriber, *, now: datetime) -> bool:
    values = _settings(subscriber)
    current = {key: getattr(row, key) for key in values}
    if current == values:
        return False
    schedule_changed = any(
        current[key] != values[key] for key in ("cadence", "hour", "weekday", "timezone")
    )
    if schedule_changed:
        values["next_digest_at"] = _schedule(subscriber, now)
    conn.execute(update(subscribers_table).where(subscribers_table.c.id == row.id).values(**values))
    return True


def _reactivate(conn: Connection, subscriber_id: int, *, now: datetime, **values: Any) -> None:
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


def sync_subscribers(
    conn: Connection,
    listed: Sequence[Subscriber],
    *,
    now: datetime,
    held: Collection[str] = (),
) -> SyncResult:
    """Make state follow the subscribers file: add, change and remove its entries.

    An address that unsubscribed (or was suspended) stays so while the file still
    lists it, until an operator runs ``subscribers resubscribe``. Entries added
    with the command line or on the web are left alone, even when the file lists the
    same address; so are the addresses in ``held`` (lower-cased): their entries in the
    file are invalid, so they keep the subscription they had until the entry is fixed.
    """
    result = SyncResult()
    # The file's rows and the rows of the addresses it lists; not everyone (there may be
    # a million subscribers from the command line or the web).
    rows = {
        row.email_key: row
        for row in conn.execute(
            select(subscribers_table).where(subscribers_table.c.source == FROM_FILE)
        )
    }
    listed_keys = sorted({subscriber.email.lower() for subscriber in listed} - set(rows))
    for start in range(0, len(listed_keys), 500):
        rows.update(
            (row.email_key, row)
            for row in conn.execute(
                select(subscribers_table).where(
                    subscribers_table.c.email_key.in_(listed_keys[start : start + 500])
                )
            )
        )
    wanted: set[str] = set()
    for subscriber in listed:
        key = subscriber.email.lower()
        wanted.add(key)
        row = rows.get(key)
        if row is None:
            _insert(conn, subscriber, source=FROM_FILE, now=now)
            result.added.append(subscriber.email)
        elif row.source != FROM_FILE:
            continue
        elif row.status == REMOVED:
            # Listed again: a new subscription, new only to articles seen from now on.
            _reactivate(
                conn,
                row.id,
                now=now,
                next_digest_at=_schedule(subscriber, now),
                **_settings(subscriber),
            )
            result.added.append(subscriber.email)
        elif _update(conn, row, subscriber, now=now):
            result.changed.append(subscriber.email)
    for key, row in rows.items():
        if (
            row.source == FROM_FILE
            and key not in wanted
            and key not in held
            and row.status != REMOVED
        ):
            # Unsubscribed addresses keep their status, so they stay suppressed if re-listed.
            if row.status != UNSUBSCRIBED:
                conn.execute(
                    update(subscribers_table)
                    .where(subscribers_table.c.id == row.id)
                    .values(status=REMOVED)
                )
            result.removed.append(row.email)
    return result


def add_subscriber(conn: Connection, subscriber: Subscriber, *, now: datetime) -> str:
    """Add (or re-add) a subscriber managed from the command line; returns what happened."""
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.email_key == subscriber.email.lower())
    ).first()
    if row is None:
        _insert(conn, subscriber, source=FROM_CLI, now=now)
        return "added"
    if row.status == UNSUBSCRIBED:
        raise SyndicatorError(
            f"{subscriber.email} unsubscribed",
            hint="only they can come back: `syndicator subscribers resubscribe` if they asked",
        )
    if row.source == FROM_FILE and row.status != REMOVED:
        raise SyndicatorError(
            f"{subscriber.email} is listed in the subscribers file", hint="edit it there"
        )
    if row.status == REMOVED:
        _reactivate(
            conn,
            row.id,
            now=now,
            source=FROM_CLI,
            next_digest_at=_schedule(subscriber, now),
            **_settings(subscriber),
        )
        return "added"
    _update(conn, row, subscriber, now=now)
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
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.email_key == subscriber.email.lower())
    ).first()
    if row is None:
        return "subscribed", _insert(conn, subscriber, source=FROM_WEB, now=now)
    if row.status in (ACTIVE, SUSPENDED) and row.source in OPERATOR_SOURCES:
        return "operator", int(row.id)
    if row.status == ACTIVE:
        _update(conn, row, subscriber, now=now)
        return "updated", int(row.id)
    _reactivate(
        conn,
        row.id,
        now=now,
        source=FROM_WEB,
        unsubscribed_at=None,
        next_digest_at=_schedule(subscriber, now),
        **_settings(subscriber),
    )
    return "subscribed", int(row.id)


def change_web_subscription(
    conn: Connection, subscriber_id: int, subscriber: Subscriber, *, now: datetime
) -> bool:
    """New filters and schedule for an active web subscription; False if it is not one."""
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.id == subscriber_id)
    ).first()
    if row is None or row.source != FROM_WEB or row.status != ACTIVE:
        return False
    _update(
        conn, row, subscriber.model_copy(update={"email": row.email, "name": row.name}), now=now
    )
    return True


def queue_message(
    conn: Connection,
    *,
    subscriber_id: int,
    kind: str,
    message_id: str,
    recipient: str,
    body: bytes,
    now: datetime,
) -> None:
    """Store one composed message for delivery (a confirmation or another notice)."""
    conn.execute(
        messages_table.insert().values(
            subscriber_id=subscriber_id,
            kind=kind,
            message_id=message_id,
            recipient=recipient,
            body=body,
            status="pending",
            attempts=0,
            created_at=now,
            last_error="",
        )
    )


def remove_subscriber(conn: Connection, email: str) -> None:
    record = find_subscriber(conn, email)
    if record is None or record.status == REMOVED:
        raise NotFoundError(f"no subscriber {email!r}", hint="see `syndicator subscribers list`")
    if record.source == FROM_FILE:
        raise SyndicatorError(
            f"{email} is listed in the subscribers file", hint="remove the entry there"
        )
    conn.execute(
        update(subscribers_table).where(subscribers_table.c.id == record.id).values(status=REMOVED)
    )


def unsubscribe(conn: Connection, subscriber_id: int, *, now: datetime) -> bool:
    """Unsubscribe at once (idempotent); True if they were subscribed until now."""
    row = conn.execute(
        select(subscribers_table).where(subscribers_table.c.id == subscriber_id)
    ).first()
    if row is None or row.status == UNSUBSCRIBED:
        return False
    conn.execute(
        update(subscribers_table)
        .where(subscribers_table.c.id == subscriber_id)
        .values(status=UNSUBSCRIBED, unsubscribed_at=now)
    )
    # Nothing more goes out to them, not even what was already queued.
    conn.execute(
        update(messages_table)
        .where(
            messages_table.c.subscriber_id == subscriber_id,
            messages_table.c.status.in_(("pending", "retry")),
        )
        .values(status="failed", last_error="unsubscribed")
    )
    return True


def resubscribe(conn: Connection, email: str, *, now: datetime) -> None:
    record = find_subscriber(conn, email)
    if record is None:
        raise NotFoundError(f"no subscriber {email!r}", hint="see `syndicator subscribers list`")
    if record.status not in (UNSUBSCRIBED, SUSPENDED):
        raise SyndicatorError(f"{email} is {record.status}, not unsubscribed or suspended")
    _reactivate(conn, record.id, now=now, unsubscribed_at=None)


# --- matching and queueing -----------------------------------------------------------------


@dataclass(slots=True)
class _ActiveIndex:
    """Every active subscriber's filter, indexed; ``added_seq`` aligned with ``index.ids``
    (which are in ascending order)."""

    revision: str | None
    index: FilterIndex
    added_seq: NDArray[np.int64]


# The index of each database's active subscribers, kept while the subscribers revision
# stands (on SQLite; elsewhere it is built for each batch).
_INDEXES: weakref.WeakKeyDictionary[Engine, _ActiveIndex] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=4096)
def _filter_shape(
    text: str,
) -> tuple[frozenset[str], frozenset[str], tuple[str, ...], frozenset[str], frozenset[str]]:
    filters = _filters(text)
    return (
        frozenset(filters.get("regions", ())),
        frozenset(filters.get("topics", ())),
        filters.get("keywords", ()),
        frozenset(filters.get("exclude_regions", ())),
        frozenset(filters.get("exclude_topics", ())),
    )


def _active_index(conn: Connection) -> _ActiveIndex:
    revision = subscribers_revision(conn)
    cached = _INDEXES.get(conn.engine)
    if cached is not None and revision is not None and cached.revision == revision:
        return cached
    rows = conn.execute(
        select(subscribers_table.c.id, subscribers_table.c.filters, subscribers_table.c.added_seq)
        # Feed-only subscribers are never mailed: nothing is matched for them.
        .where(subscribers_table.c.status == ACTIVE, subscribers_table.c.cadence != "feed")
        .order_by(subscribers_table.c.id)
    )
    added: list[int] = []

    def filters() -> Iterator[Filter]:
        for subscriber_id, text, added_seq in rows:
            added.append(added_seq)
            yield Filter(subscriber_id, *_filter_shape(text))

    index = FilterIndex(filters())
    built = _ActiveIndex(revision, index, np.asarray(added, dtype=np.int64))
    _INDEXES[conn.engine] = built
    return built


def record_matches(conn: Connection, new_ids: Sequence[str], *, now: datetime) -> int:
    """Match newly seen articles against active subscribers; record each match once."""
    if not new_ids:
        return 0
    active = _active_index(conn)
    if not len(active.index.ids):
        return 0
    rows: list[Any] = []
    for start in range(0, len(new_ids), 500):
        chunk = list(new_ids[start : start + 500])
        rows += conn.execute(
            select(
                articles_table.c.id,
                articles_table.c.seq,
                articles_table.c.title,
                articles_table.c.body,
                articles_table.c.regions,
                articles_table.c.topics,
            ).where(articles_table.c.id.in_(chunk))
        ).all()
    recorded = 0
    for row in rows:
        candidate = Candidate(
            row.id, row.title, row.body, tuple(row.regions.split()), tuple(row.topics.split())
        )
        matched = active.index.match(candidate)
        # Only subscribers who were there before the article was first seen.
        positions = np.searchsorted(active.index.ids, matched)
        matched = matched[active.added_seq[positions] < row.seq]
        if len(matched):
            recorded += insert_rows(
                conn,
                matches_table,
                [
                    {"subscriber_id": subscriber_id, "article_id": row.id, "matched_at": now}
                    for subscriber_id in matched.tolist()
                ],
                skip_existing=True,
            )
    return recorded


Composer = Callable[[SubscriberRecord, Sequence[Article], str, datetime], tuple[str, bytes]]


def pending_articles(conn: Connection, subscriber_id: int) -> list[Article]:
    """Articles matched for a subscriber and not yet in a message, oldest first."""
    rows = conn.execute(
        select(articles_table)
        .join(matches_table, matches_table.c.article_id == articles_table.c.id)
        .where(
            matches_table.c.subscriber_id == subscriber_id,
            matches_table.c.message.is_(None),
            articles_table.c.removed_at.is_(None),
        )
        .order_by(articles_table.c.published.desc(), articles_table.c.seq.asc())
    ).all()
    return [article_from_row(row) for row in rows]


def _pending_by_subscriber(conn: Connection) -> dict[int, list[Article]]:
    """Every match not yet in a message, with its article, grouped by subscriber."""
    # Pairs first, then each article once: thousands of subscribers share a few articles.
    pairs = conn.execute(
        select(matches_table.c.subscriber_id, matches_table.c.article_id)
        .join(articles_table, matches_table.c.article_id == articles_table.c.id)
        .where(matches_table.c.message.is_(None), articles_table.c.removed_at.is_(None))
        .order_by(articles_table.c.published.desc(), articles_table.c.seq.asc())
    ).all()
    wanted = sorted({pair.article_id for pair in pairs})
    articles: dict[str, Article] = {}
    for start in range(0, len(wanted), 500):
        for row in conn.execute(
            select(articles_table).where(articles_table.c.id.in_(wanted[start : start + 500]))
        ):
            articles[row.id] = article_from_row(row)
    pending: dict[int, list[Article]] = defaultdict(list)
    for pair in pairs:
        pending[pair.subscriber_id].append(articles[pair.article_id])
    return pending


def _concerned(
    conn: Connection, pending: dict[int, list[Article]], now: datetime
) -> list[SubscriberRecord]:
    """Active subscribers with something pending or a digest due, in address order:
    the others have nothing to do now, however many they are."""
    due = select(subscribers_table.c.id).where(
        subscribers_table.c.status == ACTIVE,
        subscribers_table.c.cadence != "immediate",
        subscribers_table.c.next_digest_at <= now,
    )
    ids = sorted(set(pending) | set(conn.execute(due).scalars()))
    found: list[SubscriberRecord] = []
    for start in range(0, len(ids), 500):
        found += [
            _record(row)
            for row in conn.execute(
                select(subscribers_table).where(
                    subscribers_table.c.id.in_(ids[start : start + 500]),
                    subscribers_table.c.status == ACTIVE,
                )
            )
        ]
    found.sort(key=lambda record: record.email.lower())
    return found


_QUEUE_BATCH = 500


def queue_due(conn: Connection, *, now: datetime, composer: Composer) -> list[int]:
    """Compose and store the messages due now; returns their ids.

    Immediate subscribers get one message with everything matched since their
    last one; digest subscribers get theirs when it is due (and nothing when
    there is nothing to say). The matches a message carries point at it.
    """
    pending = _pending_by_subscriber(conn)
    before = int(conn.execute(select(func.max(messages_table.c.id))).scalar() or 0)
    rows: list[dict[str, Any]] = []
    stored = 0
    # Subscribers sharing a schedule share their next due time: one update each.
    schedule: dict[tuple[str, int, str, str], list[int]] = defaultdict(list)
    for record in _concerned(conn, pending, now):
        if record.cadence != "immediate":
            if record.next_digest_at is None or record.next_digest_at > now:
                continue
            # Due now: the next one is the first due time after now, so a digest missed
            # while the service was down goes out once.
            schedule[(record.cadence, record.hour, record.weekday, record.timezone)].append(
                record.id
            )
        articles = pending.get(record.id)
        if not articles:
            continue  # nothing to say: no mail
        try:
            message_id, body = composer(record, articles, record.cadence, now)
        except (ValueError, SyndicatorError) as exc:
            # One subscriber's mail cannot be built: the others still get theirs, and
            # their matches stay pending for the next cycle.
            log.error("cannot compose mail for %s: %s", record.email, exc)
            continue
        rows.append(
            {
                "subscriber_id": record.id,
                "kind": record.cadence,
                "message_id": message_id,
                "recipient": record.email,
                "body": body,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "last_error": "",
            }
        )
        if len(rows) == _QUEUE_BATCH:  # stored as they come: memory stays bounded
            stored += insert_rows(conn, messages_table, rows)
            rows = []
    stored += insert_rows(conn, messages_table, rows)
    for (cadence, hour, weekday, timezone), ids in schedule.items():
        following = next_due(now, cadence=cadence, hour=hour, weekday=weekday, timezone=timezone)
        for start in range(0, len(ids), 500):
            conn.execute(
                update(subscribers_table)
                .where(subscribers_table.c.id.in_(ids[start : start + 500]))
                .values(next_digest_at=following)
            )
    if not stored:
        return []
    # Plain executemany (no RETURNING: several times faster), then one set-based update
    # points every pending match of these subscribers at its new message.
    new = messages_table.alias("new")
    conn.execute(
        update(matches_table)
        .where(
            matches_table.c.message.is_(None),
            matches_table.c.subscriber_id.in_(
                select(messages_table.c.subscriber_id).where(messages_table.c.id > before)
            ),
        )
        .values(
            message=select(func.max(new.c.id))
            .where(new.c.subscriber_id == matches_table.c.subscriber_id, new.c.id > before)
            .scalar_subquery()
        )
    )
    return [
        int(key)
        for key in conn.execute(
            select(messages_table.c.id).where(messages_table.c.id > before)
        ).scalars()
    ]


def recover_inflight(conn: Connection) -> int:
    """Messages left in ``sending`` by a crash go out again, with the same Message-ID."""
    return int(
        conn.execute(
            update(messages_table)
            .where(messages_table.c.status == "sending")
            .values(status="pending")
        ).rowcount
        or 0
    )


def outbox_counts(conn: Connection) -> dict[str, int]:
    return {
        row[0]: int(row[1])
        for row in conn.execute(
            select(messages_table.c.status, func.count()).group_by(messages_table.c.status)
        )
    }


# --- delivery ------------------------------------------------------------------------------


@dataclass(slots=True)
class DeliveryReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    suspended: list[str] = field(default_factory=list)


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """Exponential backoff with jitter: about 1, 2, 4 … minutes, at most 6 hours."""
    delay: timedelta = min(BACKOFF_FIRST * (2 ** max(attempts - 1, 0)), BACKOFF_LIMIT)
    return timedelta(seconds=delay.total_seconds() * rng.uniform(0.8, 1.2))


def envelope_sender(from_header: str) -> str:
    return parseaddr(from_header)[1]


def _claim(state: State, now: datetime, limit: int) -> list[Any]:
    """Mark up to ``limit`` due messages ``sending`` (durably) and return them."""
    with state.transaction() as conn:
        return _claim_in(conn, now, limit)


def _claim_in(conn: Connection, now: datetime, limit: int) -> list[Any]:
    """Mark up to ``limit`` due messages ``sending`` and return them."""
    due = conn.execute(
        select(
            messages_table.c.id,
            messages_table.c.recipient,
            messages_table.c.body,
            messages_table.c.attempts,
            messages_table.c.subscriber_id,
        )
        .where(
            (messages_table.c.status == "pending")
            | ((messages_table.c.status == "retry") & (messages_table.c.next_attempt_at <= now))
        )
        .order_by(messages_table.c.id)
        .limit(limit)
    ).all()
    if due:
        conn.execute(
            update(messages_table)
            .where(messages_table.c.id.in_([row.id for row in due]))
            .values(status="sending", attempts=messages_table.c.attempts + 1)
        )
    return list(due)


async def deliver(
    state: State,
    transport: Transport,
    *,
    sender: str,
    clock: Callable[[], datetime],
    rng: random.Random | None = None,
    batch_size: int = BATCH_SIZE,
    concurrency: int = 4,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Send every message that is due, batch by batch, recording each batch's outcomes.

    A batch is marked ``sending`` (durably) before its SMTP conversations start,
    and its outcomes are recorded once they are all known. Two batches are in
    flight at once, so the connections keep sending while the database records
    one batch and claims the next (in a thread): at most ``2 * batch_size``
    messages are ever in ``sending``, which bounds what a crash could send twice.
    """
    rng = rng or random.Random()
    report = DeliveryReport()
    limit = asyncio.Semaphore(max(1, concurrency))

    async def send(row: Any) -> Delivery:
        async with limit:
            return await transport.send(row.body, sender=sender, recipient=row.recipient)

    def start(rows: list[Any]) -> tuple[list[Any], list[asyncio.Task[Delivery]]]:
        return rows, [asyncio.ensure_future(send(row)) for row in rows]

    in_flight: deque[tuple[list[Any], list[asyncio.Task[Delivery]]]] = deque()
    try:
        first = [] if should_stop() else _claim(state, clock(), batch_size)
        if first:
            in_flight.append(start(first))
            second = (
                [] if should_stop() else await asyncio.to_thread(_claim, state, clock(), batch_size)
            )
            if second:
                in_flight.append(start(second))
        more = len(in_flight) == 2
        while in_flight:
            rows, tasks = in_flight.popleft()
            outcomes = list(await asyncio.gather(*tasks))
            # One transaction records this batch and claims the next, while the other
            # batch keeps the connections busy.
            claimed = await asyncio.to_thread(
                _record_outcomes,
                rows,
                outcomes,
                finished=clock(),
                rng=rng,
                report=report,
                state=state,
                claim_next=batch_size if more and not should_stop() else 0,
            )
            more = bool(claimed)
            if claimed:
                in_flight.append(start(claimed))
    finally:
        # Cancelled (shutting down): what was claimed stays in ``sending`` and goes out
        # again, with the same Message-ID, at the next start.
        for _, tasks in in_flight:
            for task in tasks:
                task.cancel()
    return report


def _record_outcomes(
    due: Sequence[Any],
    outcomes: Sequence[Delivery],
    *,
    finished: datetime,
    rng: random.Random,
    report: DeliveryReport,
    state: State,
    claim_next: int = 0,
) -> list[Any]:
    """Record a batch's outcomes in one transaction, a statement per kind of outcome,
    and in the same transaction claim up to ``claim_next`` more messages."""
    sent: list[Any] = []
    retry: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    permanent: list[Any] = []
    for row, delivery in zip(due, outcomes, strict=True):
        attempts = row.attempts + 1
        if delivery.outcome is Outcome.SENT:
            sent.append(row)
        elif delivery.outcome is Outcome.TEMPORARY and attempts < MAX_ATTEMPTS:
            retry.append(
                {
                    "key": row.id,
                    "at": finished + backoff(attempts, rng),
                    "error": delivery.detail,
                }
            )
            log.warning("to %s: %s; will retry", row.recipient, delivery.detail)
        else:
            failed.append({"key": row.id, "error": delivery.detail})
            log.warning("to %s: %s; given up", row.recipient, delivery.detail)
            if delivery.outcome is Outcome.PERMANENT:
                permanent.append(row)
    with state.transaction() as conn:
        if sent:
            conn.execute(
                update(messages_table)
                .where(messages_table.c.id.in_([row.id for row in sent]))
                .values(status="sent", sent_at=finished, last_error="")
            )
        if retry:
            conn.execute(
                update(messages_table)
                .where(messages_table.c.id == bindparam("key"))
                .values(
                    status="retry", next_attempt_at=bindparam("at"), last_error=bindparam("error")
                ),
                retry,
            )
        if failed:
            conn.execute(
                update(messages_table)
                .where(messages_table.c.id == bindparam("key"))
                .values(status="failed", last_error=bindparam("error")),
                failed,
            )
        for row in permanent:
            if _count_permanent_failure(conn, row.subscriber_id):
                report.suspended.append(row.recipient)
        claimed = _claim_in(conn, finished, claim_next) if claim_next else []
    report.sent += len(sent)
    report.retry += len(retry)
    report.failed += len(failed)
    return claimed


def _count_permanent_failure(conn: Connection, subscriber_id: int) -> bool:
    """Count a permanent failure; suspend the subscriber past the threshold."""
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
    if row is not None and row.permanent_failures >= SUSPEND_AFTER and row.status == ACTIVE:
        conn.execute(
            update(subscribers_table)
            .where(subscribers_table.c.id == subscriber_id)
            .values(status=SUSPENDED)
        )
        log.warning(
            "subscriber %s suspended after %s permanent failures",
            subscriber_id,
            row.permanent_failures,
        )
        return True
    return False
