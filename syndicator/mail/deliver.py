"""Delivery: a loop over the outbox's three verbs, with no SQL of its own.

``claim(now, limit)`` marks due messages ``sending`` (durably) and returns them; each is
``send``-t through a transport; ``record(outcomes, now)`` stores what became of them.
What an outcome means (sent, retried with backoff, given up; a permanent refusal counting
against the subscriber) is decided here, by :func:`judge`, from the transport's outcome
alone. The outbox's guarantees are written in :mod:`syndicator.state.outbox`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Protocol

from syndicator.mail.transport import Delivery, Outcome, Transport
from syndicator.state.db import State
from syndicator.state.outbox import ClaimedMessage, Failed, Outbox, Outcomes, Retry

log = logging.getLogger(__name__)

SUSPEND_AFTER = 3  # permanent failures before a subscriber is suspended
MAX_ATTEMPTS = 8  # temporary failures before a message is given up
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_LIMIT = timedelta(hours=6)
BATCH_SIZE = 64


class MessageStore(Protocol):
    """What delivery needs of the outbox (see :class:`syndicator.state.outbox.Outbox`)."""

    def claim(self, now: datetime, limit: int) -> list[ClaimedMessage]: ...

    def record(
        self, outcomes: Outcomes, now: datetime, *, claim_next: int = 0
    ) -> tuple[list[ClaimedMessage], list[ClaimedMessage]]: ...


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


def judge(
    messages: Sequence[ClaimedMessage],
    deliveries: Sequence[Delivery],
    *,
    finished: datetime,
    rng: random.Random,
) -> Outcomes:
    """What to record for each message of a batch, given what the transport said."""
    sent: list[ClaimedMessage] = []
    retry: list[Retry] = []
    failed: list[Failed] = []
    for message, delivery in zip(messages, deliveries, strict=True):
        if delivery.outcome is Outcome.SENT:
            sent.append(message)
        elif delivery.outcome is Outcome.TEMPORARY and message.attempt < MAX_ATTEMPTS:
            retry.append(Retry(message, finished + backoff(message.attempt, rng), delivery.detail))
            log.warning("to %s: %s; will retry", message.recipient, delivery.detail)
        else:
            failed.append(Failed(message, delivery.detail, delivery.outcome is Outcome.PERMANENT))
            log.warning("to %s: %s; given up", message.recipient, delivery.detail)
    return Outcomes(sent, retry, failed)


async def deliver(
    state: State | MessageStore,
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

    A batch is claimed (durably) before its SMTP conversations start, and its
    outcomes are recorded once they are all known. Two batches are in flight at
    once, so the connections keep sending while the database records one batch
    and claims the next (in a thread): at most ``2 * batch_size`` messages are
    ever in ``sending``, which bounds what a crash could send twice.
    """
    outbox = Outbox(state, suspend_after=SUSPEND_AFTER) if isinstance(state, State) else state
    rng = rng or random.Random()
    report = DeliveryReport()
    limit = asyncio.Semaphore(max(1, concurrency))

    async def send(message: ClaimedMessage) -> Delivery:
        async with limit:
            return await transport.send(message.body, sender=sender, recipient=message.recipient)

    def start(
        messages: list[ClaimedMessage],
    ) -> tuple[list[ClaimedMessage], list[asyncio.Task[Delivery]]]:
        return messages, [asyncio.ensure_future(send(message)) for message in messages]

    in_flight: deque[tuple[list[ClaimedMessage], list[asyncio.Task[Delivery]]]] = deque()
    try:
        first = [] if should_stop() else outbox.claim(clock(), batch_size)
        if first:
            in_flight.append(start(first))
            second = (
                [] if should_stop() else await asyncio.to_thread(outbox.claim, clock(), batch_size)
            )
            if second:
                in_flight.append(start(second))
        more = len(in_flight) == 2
        while in_flight:
            messages, tasks = in_flight.popleft()
            deliveries = list(await asyncio.gather(*tasks))
            finished = clock()
            outcomes = judge(messages, deliveries, finished=finished, rng=rng)
            # One transaction records this batch and claims the next, while the other
            # batch keeps the connections busy.
            suspended, claimed = await asyncio.to_thread(
                outbox.record,
                outcomes,
                finished,
                claim_next=batch_size if more and not should_stop() else 0,
            )
            report.sent += len(outcomes.sent)
            report.retry += len(outcomes.retry)
            report.failed += len(outcomes.failed)
            for message in suspended:
                log.warning(
                    "subscriber %s suspended after %s permanent failures",
                    message.subscriber_id,
                    SUSPEND_AFTER,
                )
                report.suspended.append(message.recipient)
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
