"""Matching new articles to subscribers, and queueing the mail that is due.

:func:`record_matches` runs in the transaction that records new articles;
:func:`queue_due` composes a message for each subscriber with something due and stores
it, with the matches it carries pointing at it, before anything is sent. Every
statement is in :mod:`syndicator.state`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

from syndicator.errors import SyndicatorError
from syndicator.mail.match import Candidate, Filter, FilterIndex
from syndicator.mail.schedule import next_due
from syndicator.models import Article
from syndicator.state.db import subscribers_revision
from syndicator.state.matches import articles_to_match, insert_matches, pending_matches
from syndicator.state.outbox import (
    NewMessage,
    attach_pending_matches,
    last_message_id,
    queue_messages,
)
from syndicator.state.records import SubscriberRecord, parse_filters
from syndicator.state.subscribers import (
    active_filters,
    active_subscribers,
    due_digest_ids,
    set_next_digest,
)

log = logging.getLogger(__name__)

QUEUE_BATCH = 500  # messages stored at a time: memory stays bounded
_SHAPES_KEPT = 4096  # distinct filters parsed once per index build; memory stays bounded

Composer = Callable[[SubscriberRecord, Sequence[Article], str, datetime], tuple[str, bytes]]

_Shape = tuple[frozenset[str], frozenset[str], tuple[str, ...], frozenset[str], frozenset[str]]


@dataclass(slots=True)
class _Built:
    """Every active subscriber's filter, indexed; ``added_seq`` aligned with ``index.ids``
    (which are in ascending order)."""

    revision: str | None
    index: FilterIndex
    added_seq: NDArray[np.int64]


class SubscriberIndex:
    """The active subscribers' filters, indexed for matching, kept while the subscribers
    revision of the database stands (SQLite and PostgreSQL count every change; on other
    databases it is built for each batch).

    Whoever owns a :class:`~syndicator.state.db.State` owns one and passes it to
    :func:`record_matches`; it holds nothing but what it read from that database.
    """

    def __init__(self) -> None:
        self._built: _Built | None = None

    def current(self, conn: Connection) -> _Built:
        revision = subscribers_revision(conn)
        built = self._built
        if built is not None and revision is not None and built.revision == revision:
            return built
        shapes: dict[str, _Shape] = {}  # many subscribers share the same filters
        added: list[int] = []

        def filters() -> Iterator[Filter]:
            for subscriber_id, text, added_seq in active_filters(conn):
                added.append(added_seq)
                shape = shapes.get(text)
                if shape is None:
                    shape = _shape(text)
                    if len(shapes) < _SHAPES_KEPT:
                        shapes[text] = shape
                yield Filter(subscriber_id, *shape)

        index = FilterIndex(filters())
        self._built = _Built(revision, index, np.asarray(added, dtype=np.int64))
        return self._built


def _shape(text: str) -> _Shape:
    filters = parse_filters(text)
    return (
        frozenset(filters.get("regions", ())),
        frozenset(filters.get("topics", ())),
        filters.get("keywords", ()),
        frozenset(filters.get("exclude_regions", ())),
        frozenset(filters.get("exclude_topics", ())),
    )


def record_matches(
    conn: Connection,
    new_ids: Sequence[str],
    *,
    now: datetime,
    index: SubscriberIndex | None = None,
) -> int:
    """Match newly seen articles against active subscribers; record each match once.

    ``index`` keeps the subscribers' index between calls; without it one is built.
    """
    if not new_ids:
        return 0
    active = (index or SubscriberIndex()).current(conn)
    if not len(active.index.ids):
        return 0
    recorded = 0
    for article in articles_to_match(conn, new_ids):
        candidate = Candidate(
            article.id, article.title, article.body, article.regions, article.topics
        )
        matched = active.index.match(candidate)
        # Only subscribers who were there before the article was first seen.
        positions = np.searchsorted(active.index.ids, matched)
        matched = matched[active.added_seq[positions] < article.seq]
        if len(matched):
            recorded += insert_matches(conn, article.id, matched.tolist(), now=now)
    return recorded


def _concerned(
    conn: Connection, pending: dict[int, list[Article]], now: datetime
) -> list[SubscriberRecord]:
    """Active subscribers with something pending or a digest due, in address order:
    the others have nothing to do now, however many they are."""
    found = active_subscribers(conn, set(pending) | set(due_digest_ids(conn, now)))
    found.sort(key=lambda record: record.email.lower())
    return found


def queue_due(conn: Connection, *, now: datetime, composer: Composer) -> list[int]:
    """Compose and store the messages due now; returns their ids.

    Immediate subscribers get one message with everything matched since their
    last one; digest subscribers get theirs when it is due (and nothing when
    there is nothing to say). The matches a message carries point at it.
    """
    pending = pending_matches(conn)
    before = last_message_id(conn)
    batch: list[NewMessage] = []
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
        slot = None if record.cadence == "immediate" else record.next_digest_at
        batch.append(NewMessage(record.id, record.cadence, message_id, record.email, body, slot))
        if len(batch) == QUEUE_BATCH:
            stored += queue_messages(conn, batch, now=now)
            batch = []
    stored += queue_messages(conn, batch, now=now)
    for (cadence, hour, weekday, timezone), ids in schedule.items():
        following = next_due(now, cadence=cadence, hour=hour, weekday=weekday, timezone=timezone)
        set_next_digest(conn, ids, following)
    if not stored:
        return []
    return attach_pending_matches(conn, queued_after=before)
