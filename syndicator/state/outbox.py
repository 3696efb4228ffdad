"""The durable outbox: messages stored before they are sent, and what became of them.

The order of things is the promise to subscribers:

1. matches are recorded in the transaction that records the new articles, before
   anything is composed or sent (:func:`syndicator.mail.queue.record_matches`);
2. a message is composed and stored, with its ``Message-ID``, before it is sent
   (:func:`syndicator.mail.queue.queue_due`), and the matches it carries point at it;
3. a message is claimed (``sending``) before the SMTP conversation and marked ``sent``
   only after the server accepted it for its recipient
   (:func:`syndicator.mail.deliver.deliver`).

A crash anywhere loses nothing: a message is claimed under a lease (the instance and an
expiry); when its instance dies, the lease expires and any live instance claims it again,
or the instance itself takes it back when it starts again (:func:`release_inflight`). It
then goes out with the same bytes and the same ``Message-ID``: the only duplicates
possible are those in flight.

Every statement on ``messages`` is here. A claim is one statement that picks the due
messages and marks them ``sending`` under a lease: on PostgreSQL they are picked with
``FOR UPDATE SKIP LOCKED``, so instances claiming together take different messages and
never wait for each other; on SQLite its transaction holds the write lock (``BEGIN
IMMEDIATE``), so two processes never claim the same message. On PostgreSQL a group commit
of messages sent, with the renewal of the leases and the next claim, is one statement
too: one round trip to the database per group.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    any_,
    bindparam,
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import Connection

from syndicator.state.coordination import (
    claim_messages,
    claim_statement,
    release_dead_leases,
    release_messages,
    renew_leases,
    renewal_statement,
    sending_by,
)
from syndicator.state.db import State, insert_rows, matches_table, messages_table
from syndicator.state.subscribers import count_permanent_failure

log = logging.getLogger(__name__)

NO_SUBSCRIBER = 0  # messages.subscriber_id of a confirmation mail
LEASE = timedelta(seconds=60)  # how long a claim holds unless renewed
# A lease is renewed at a commit once it has run this long (or a quarter of itself).
RENEWAL = timedelta(seconds=1)


class MessageStatus(StrEnum):
    """Where a message is: ``pending`` → ``sending`` → ``sent``, or ``retry`` (at its
    ``next_attempt_at``, then ``sending`` again) or ``failed`` (given up)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A composed message to store: ``kind`` is the subscriber's cadence, ``confirm`` or
    ``notice``."""

    subscriber_id: int
    kind: str
    message_id: str
    recipient: str
    body: bytes
    # A digest's due time: one digest per subscriber and due time (a unique key).
    digest_slot: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message claimed for sending; ``attempt`` counts this one (1 for the first)."""

    id: int
    subscriber_id: int
    recipient: str
    body: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class Retry:
    """Send again at ``at``: a temporary failure."""

    message: ClaimedMessage
    at: datetime
    error: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Given up; ``permanent`` when the server refused the recipient (counts against them)."""

    message: ClaimedMessage
    error: str
    permanent: bool


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What became of a batch of claimed messages."""

    sent: Sequence[ClaimedMessage] = ()
    retry: Sequence[Retry] = ()
    failed: Sequence[Failed] = ()


# --- queueing ------------------------------------------------------------------------------


def _row(message: NewMessage, now: datetime) -> dict[str, Any]:
    return {
        "subscriber_id": message.subscriber_id,
        "kind": message.kind,
        "message_id": message.message_id,
        "recipient": message.recipient,
        "body": message.body,
        "status": MessageStatus.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "last_error": "",
        "digest_slot": message.digest_slot,
    }


def queue_message(conn: Connection, message: NewMessage, *, now: datetime) -> None:
    """Store one composed message for delivery."""
    conn.execute(messages_table.insert().values(**_row(message, now)))


def queue_messages(conn: Connection, messages: Sequence[NewMessage], *, now: datetime) -> int:
    """Store many composed messages for delivery with one statement; how many."""
    return insert_rows(conn, messages_table, [_row(message, now) for message in messages])


def last_message_id(conn: Connection) -> int:
    """The largest message id so far (0 for none): the messages queued next come after it."""
    return int(conn.execute(select(func.max(messages_table.c.id))).scalar() or 0)


def attach_pending_matches(conn: Connection, *, queued_after: int) -> list[int]:
    """Point every pending match of each subscriber who got a message with an id above
    ``queued_after`` at their newest one; the ids of those messages."""
    # One set-based update, in place of a RETURNING per message (several times slower).
    new = messages_table.alias("new")
    conn.execute(
        update(matches_table)
        .where(
            matches_table.c.message.is_(None),
            matches_table.c.subscriber_id.in_(
                select(messages_table.c.subscriber_id).where(messages_table.c.id > queued_after)
            ),
        )
        .values(
            message=select(func.max(new.c.id))
            .where(new.c.subscriber_id == matches_table.c.subscriber_id, new.c.id > queued_after)
            .scalar_subquery()
        )
    )
    return [
        int(key)
        for key in conn.execute(
            select(messages_table.c.id).where(messages_table.c.id > queued_after)
        ).scalars()
    ]


def cancel_queued(conn: Connection, subscriber_id: int, *, reason: str) -> None:
    """Give up every message of a subscriber not sent yet (nor being sent)."""
    conn.execute(
        update(messages_table)
        .where(
            messages_table.c.subscriber_id == subscriber_id,
            messages_table.c.status.in_((MessageStatus.PENDING, MessageStatus.RETRY)),
        )
        .values(status=MessageStatus.FAILED, last_error=reason)
    )


# --- delivery ------------------------------------------------------------------------------


def claim_due_messages(
    conn: Connection, now: datetime, limit: int, *, owner: str = "", lease: timedelta = LEASE
) -> list[ClaimedMessage]:
    """Claim up to ``limit`` messages due at ``now``, oldest first, for ``owner`` until
    ``now + lease``, and return them. Due: pending, a retry whose time came, or
    ``sending`` under a lease that expired (its instance died or hung). One statement
    (see :func:`syndicator.state.coordination.claim_messages`)."""
    return _claimed(claim_messages(conn, now, limit, owner=owner, lease=lease))


def _claimed(rows: Sequence[Any]) -> list[ClaimedMessage]:
    return [
        ClaimedMessage(
            id=row.id,
            subscriber_id=row.subscriber_id,
            recipient=row.recipient,
            body=row.body,
            attempt=row.attempts,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :func:`record_outcomes` did: the messages whose permanent failure suspended
    their subscriber, and how many outcomes it left out because their lease had passed
    to another instance."""

    suspended: list[ClaimedMessage]
    lost_leases: int


def record_outcomes(
    conn: Connection, outcomes: Outcomes, *, now: datetime, suspend_after: int, owner: str
) -> Recorded:
    """Record what became of messages ``owner`` claimed, a statement per kind of outcome.

    Only messages ``owner`` still holds (``sending`` under its lease) are recorded. One
    whose lease expired and was claimed by another instance is that instance's now: its
    outcome is the one recorded, never overwritten by a late one from here (a ``retry``
    written over its ``sent`` would send the message again). Rows are locked as they are
    read, so no claim takes them meanwhile (claims skip locked rows).

    A permanent failure counts against its subscriber, who is suspended at
    ``suspend_after``.
    """
    claimed = len(outcomes.sent) + len(outcomes.retry) + len(outcomes.failed)
    recorded = 0
    if outcomes.sent:
        # One statement, the condition checked as each row is locked: the usual commit.
        ids = [message.id for message in outcomes.sent]
        recorded += len(
            conn.execute(
                _record_sent_listed(),
                {"ids": ids, "now": now, "owner": owner},
            ).all()
        )
    if outcomes.retry or outcomes.failed:
        # Rarer: the rows still held, locked as they are read (claims skip locked rows).
        others = [
            *(retry.message.id for retry in outcomes.retry),
            *(failed.message.id for failed in outcomes.failed),
        ]
        held = set(
            conn.execute(
                select(messages_table.c.id)
                .where(messages_table.c.id.in_(others), sending_by(owner))
                .with_for_update()
            ).scalars()
        )
        recorded += len(held)
        outcomes = Outcomes(
            retry=[retry for retry in outcomes.retry if retry.message.id in held],
            failed=[failed for failed in outcomes.failed if failed.message.id in held],
        )
    if outcomes.retry:
        conn.execute(
            update(messages_table)
            .where(messages_table.c.id == bindparam("key"))
            .values(
                status=MessageStatus.RETRY,
                next_attempt_at=bindparam("at"),
                last_error=bindparam("error"),
                lease_owner=None,
                lease_expires_at=None,
            ),
            [
                {"key": retry.message.id, "at": retry.at, "error": retry.error}
                for retry in outcomes.retry
            ],
        )
    if outcomes.failed:
        conn.execute(
            update(messages_table)
            .where(messages_table.c.id == bindparam("key"))
            .values(
                status=MessageStatus.FAILED,
                last_error=bindparam("error"),
                lease_owner=None,
                lease_expires_at=None,
            ),
            [{"key": failed.message.id, "error": failed.error} for failed in outcomes.failed],
        )
    suspended = [
        failed.message
        for failed in outcomes.failed
        if failed.permanent
        and count_permanent_failure(conn, failed.message.subscriber_id, suspend_after=suspend_after)
    ]
    return Recorded(suspended, claimed - recorded)


def record_sent_at_once(
    conn: Connection,
    sent: Sequence[ClaimedMessage],
    *,
    now: datetime,
    owner: str,
    renew: tuple[datetime, datetime] | None,
    claim_next: int,
    lease: timedelta,
) -> tuple[int, list[ClaimedMessage]]:
    """PostgreSQL: a group commit of messages sent as one statement, so one round trip in
    autocommit (:meth:`State.single_statement`); how many were recorded, and the
    messages claimed.

    It does what :func:`record_outcomes`, :func:`renew_leases` (``renew``: ``(until,
    unless_after)``) and :func:`claim_due_messages` (``claim_next``) do one after the
    other, as data-modifying CTEs. Those all see the database as it was before the
    statement and may not change a row twice, so each is kept off the rows of the ones
    before it: the renewal off the messages being recorded, the claim off both (the
    renewal first, the claim after it would not find them due either).
    """
    parameters: dict[str, Any] = {
        "ids": [message.id for message in sent],
        "now": now,
        "owner": owner,
    }
    if renew is not None:
        parameters["renew_until"], parameters["unless_after"] = renew
    if claim_next:
        parameters["limit"], parameters["until"] = claim_next, now + lease
    statement = _sent_at_once(renew=renew is not None, claim=bool(claim_next))
    rows = conn.execute(statement, parameters).all()
    claimed = sorted((row for row in rows if row.part == "claimed"), key=lambda row: row.id)
    return sum(1 for row in rows if row.part == "recorded"), _claimed(claimed)


@functools.cache
def _sent_at_once(*, renew: bool, claim: bool) -> Any:
    # The ids as one array parameter: the statement's text is the same for any number of
    # them, so PostgreSQL plans it once per connection (a list of parameters would make
    # a statement of its own for each length, and cost rendering at every execution).
    recording = messages_table.c.id == any_(bindparam("ids", type_=ARRAY(Integer)))
    recorded = _record_sent(among=recording).cte("recorded")
    ctes = []
    leaving: Any = recording
    if renew:
        ctes.append(renewal_statement().where(~recording).cte("renewed"))
        leaving = recording | (
            (messages_table.c.status == MessageStatus.SENDING.value)
            & (messages_table.c.lease_owner == bindparam("owner"))
        )
    columns = ("id", "recipient", "body", "attempts", "subscriber_id")
    parts = [
        select(
            literal("recorded").label("part"),
            recorded.c.id,
            *(null().label(name) for name in columns[1:]),
        )
    ]
    if claim:
        claimed = claim_statement(leaving).cte("claimed")
        parts.insert(
            0, select(literal("claimed").label("part"), *(claimed.c[name] for name in columns))
        )
    return (union_all(*parts) if len(parts) > 1 else parts[0]).add_cte(*ctes)


@functools.cache
def _record_sent_listed() -> Any:
    """:func:`_record_sent` with ``ids`` a list of parameters (any database)."""
    return _record_sent(among=messages_table.c.id.in_(bindparam("ids", expanding=True)))


def _record_sent(*, among: Any) -> Any:
    """Messages ``owner`` still holds among ``ids`` (the condition ``among``) are sent at
    ``now`` (the parameters); their ids. The condition is checked as each row is locked."""
    return (
        update(messages_table)
        .where(
            among,
            messages_table.c.status == MessageStatus.SENDING.value,
            messages_table.c.lease_owner == bindparam("owner"),
        )
        .values(
            status=MessageStatus.SENT.value,
            sent_at=bindparam("now"),
            last_error="",
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(messages_table.c.id)
    )


def release_inflight(conn: Connection, *, me: str) -> int:
    """Messages left in ``sending`` by a crash of this instance (or of a dead process of
    this host) go out again, with the same Message-ID; those under the live lease of
    another instance stay theirs (see ``coordination.release_dead_leases``)."""
    return release_dead_leases(conn, me=me, host=socket.gethostname())


def count_by_status(conn: Connection) -> dict[str, int]:
    """How many messages are in each status (statuses with none are left out)."""
    return {
        str(row[0]): int(row[1])
        for row in conn.execute(
            select(messages_table.c.status, func.count()).group_by(messages_table.c.status)
        )
    }


class Outbox:
    """The outbox as delivery sees it: claim due messages, record what became of them,
    give back what was claimed and not sent. Claims are leased to ``owner`` for
    ``lease``; a record renews the leases ``owner`` still holds that have run for
    ``RENEWAL`` (or a quarter of the lease), at most once in that time, so while commits
    go on a lease never has less than three quarters of itself left.

    Each verb is one write transaction of ``state``.
    """

    def __init__(
        self,
        state: State,
        *,
        suspend_after: int,
        owner: str = "",
        lease: timedelta = LEASE,
    ) -> None:
        self.state = state
        self.suspend_after = suspend_after
        self.owner = owner or state.instance_id
        self.lease = lease
        self._renewed_at: datetime | None = None
        # Claims and group commits follow each other every few milliseconds: they share
        # one connection, kept until close(), that reads messages in the order of an index
        # (a claim stops at its limit) or by key.
        self._held = state.held(index_order=True)

    def close(self) -> None:
        """Give back the connection claims and commits were made on."""
        self._held.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def claim(self, now: datetime, limit: int) -> list[ClaimedMessage]:
        """Claim up to ``limit`` messages due at ``now`` (durably) and return them."""
        with self._held.single_statement() as conn:
            return claim_due_messages(conn, now, limit, owner=self.owner, lease=self.lease)

    def record(
        self, outcomes: Outcomes, now: datetime, *, claim_next: int = 0
    ) -> tuple[list[ClaimedMessage], list[ClaimedMessage]]:
        """Record a batch's outcomes, renew the leases still held and, in the same
        transaction, claim up to ``claim_next`` more messages: ``(suspended, claimed)``.

        On PostgreSQL a batch of messages all sent (the usual one) is a single statement
        (:func:`record_sent_at_once`): the commit is one round trip.
        """
        every = min(RENEWAL, self.lease / 4)
        renew = None
        if self._renewed_at is None or now - self._renewed_at >= every:
            renew = (now + self.lease, now + self.lease - every)
        suspended: list[ClaimedMessage] = []
        if (
            self.state.engine.dialect.name == "postgresql"
            and not outcomes.retry
            and not outcomes.failed
        ):
            with self._held.single_statement() as conn:
                recorded, claimed = record_sent_at_once(
                    conn,
                    outcomes.sent,
                    now=now,
                    owner=self.owner,
                    renew=renew,
                    claim_next=claim_next,
                    lease=self.lease,
                )
            lost_leases = len(outcomes.sent) - recorded
        else:
            with self._held.transaction() as conn:
                done = record_outcomes(
                    conn, outcomes, now=now, suspend_after=self.suspend_after, owner=self.owner
                )
                if renew is not None:
                    until, unless_after = renew
                    renew_leases(conn, owner=self.owner, until=until, unless_after=unless_after)
                claimed = (
                    claim_due_messages(conn, now, claim_next, owner=self.owner, lease=self.lease)
                    if claim_next
                    else []
                )
            suspended, lost_leases = done.suspended, done.lost_leases
        if renew is not None:
            self._renewed_at = now
        if lost_leases:
            log.warning(
                "%s outcomes not recorded: their leases had expired and another instance "
                "claimed them (it sends them again); service.lease_seconds may be too short",
                lost_leases,
            )
        return suspended, claimed

    def release(self, messages: Sequence[ClaimedMessage]) -> None:
        """Give back claimed messages never handed to the transport."""
        with self.state.transaction() as conn:
            release_messages(conn, [message.id for message in messages], owner=self.owner)
