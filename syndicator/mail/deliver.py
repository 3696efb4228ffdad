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
from typing import Any, Protocol

from syndicator.mail.transport import Delivery, Outcome, Transport
from syndicator.state.db import State
from syndicator.state.outbox import LEASE, ClaimedMessage, Failed, Outbox, Outcomes, Retry

log = logging.getLogger(__name__)

SUSPEND_AFTER = 3  # permanent failures before a subscriber is suspended
MAX_ATTEMPTS = 8  # temporary failures before a message is given up
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_LIMIT = timedelta(hours=6)
BATCH_SIZE = 64
UNRECORDED_LIMIT = 16  # messages handed to the transport and not yet recorded, at most
# Seconds an outcome may wait for others to share its commit. Each commit costs about the
# same whatever its size, so outcomes wait for a group of half the window (the other half
# keeps the transport busy meanwhile); this only bounds how long a slow trickle waits.
LINGER = 0.05


class MessageStore(Protocol):
    """What delivery needs of the outbox (see :class:`syndicator.state.outbox.Outbox`)."""

    def claim(self, now: datetime, limit: int) -> list[ClaimedMessage]: ...

    def record(
        self, outcomes: Outcomes, now: datetime, *, claim_next: int = 0
    ) -> tuple[list[ClaimedMessage], list[ClaimedMessage]]: ...

    def release(self, messages: Sequence[ClaimedMessage]) -> None: ...


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
    sender: str | Callable[[int], str],
    clock: Callable[[], datetime],
    rng: random.Random | None = None,
    batch_size: int = BATCH_SIZE,
    concurrency: int = 4,
    should_stop: Callable[[], bool] = lambda: False,
    owner: str = "",
    lease: timedelta = LEASE,
    window: int = UNRECORDED_LIMIT,
    linger: float = LINGER,
) -> DeliveryReport:
    """Send every message that is due, recording outcomes in small group commits.

    Messages are claimed in batches (``sending``, under a lease held by ``owner``) before
    any SMTP conversation starts. At most ``window`` messages are ever handed to the
    transport and not yet recorded. Outcomes are committed together, one commit at a
    time, as soon as half the window's worth of them wait, or no further message may be
    handed over until they are recorded, or the oldest has waited ``linger`` seconds, or
    nothing else is being sent: while one group commits, the other half of the window is
    being sent. Each commit also renews the leases still held and claims the next batch.
    A crash can therefore repeat at most ``window`` messages, with the same Message-ID.
    Stopping (``should_stop``) lets the messages in conversation finish and be recorded,
    and gives the claimed ones not yet started back to the queue. ``sender`` is the
    envelope sender, or a function of the message's row id that makes one per message (a
    VERP return path).
    """
    # An outbox made here keeps a connection for its claims and commits, closed at the end.
    made: Outbox | None = None
    outbox: MessageStore
    if isinstance(state, State):
        outbox = made = Outbox(state, suspend_after=SUSPEND_AFTER, owner=owner, lease=lease)
    else:
        outbox = state
    rng = rng or random.Random()
    window = max(1, window)
    group = max(1, window // 2)  # outcomes that make a commit worth its round trips
    report = DeliveryReport()
    concurrency = max(1, concurrency)
    loop = asyncio.get_running_loop()

    async def send(message: ClaimedMessage) -> Delivery:
        envelope = sender(message.id) if callable(sender) else sender
        return await transport.send(message.body, sender=envelope, recipient=message.recipient)

    def record(
        batch: list[tuple[ClaimedMessage, Delivery]], finished: datetime, claim_next: int
    ) -> list[ClaimedMessage]:
        outcomes = judge(
            [message for message, _ in batch],
            [delivery for _, delivery in batch],
            finished=finished,
            rng=rng,
        )
        suspended, claimed = outbox.record(outcomes, finished, claim_next=claim_next)
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
        return claimed

    claimed: deque[ClaimedMessage] = deque()
    sending: dict[asyncio.Future[Delivery], ClaimedMessage] = {}
    finished: list[tuple[ClaimedMessage, Delivery]] = []
    recording: asyncio.Future[list[ClaimedMessage]] | None = None
    recorded_size = 0  # outcomes in the commit under way
    asked = 0  # messages the commit under way also claims
    oldest = 0.0  # loop time of the oldest outcome waiting for a commit
    exhausted = should_stop()
    try:
        if not exhausted:
            first = await asyncio.to_thread(outbox.claim, clock(), batch_size)
            claimed.extend(first)
            exhausted = len(first) < batch_size
        while claimed or sending or finished or recording is not None:
            stopping = should_stop()
            if stopping and claimed:
                # Never handed to the transport: back to the queue, for anyone.
                await asyncio.to_thread(outbox.release, list(claimed))
                claimed.clear()
            # No more at once than the transport sends at once: the rest of the window is
            # left for outcomes waiting for their commit.
            while (
                claimed
                and len(sending) < concurrency
                and len(sending) + len(finished) + recorded_size < window
            ):
                message = claimed.popleft()
                sending[asyncio.ensure_future(send(message))] = message
            if recording is None and finished:
                full = len(sending) + len(finished) >= window
                if full or len(finished) >= group or not sending or loop.time() - oldest >= linger:
                    batch, finished = finished, []
                    recorded_size = len(batch)
                    asked = (
                        batch_size
                        if not exhausted and not stopping and len(claimed) < batch_size
                        else 0
                    )
                    recording = loop.run_in_executor(None, record, batch, clock(), asked)
            waiting: set[asyncio.Future[Any]] = set(sending)
            if recording is not None:
                waiting.add(recording)
            if not waiting:
                if not finished and not claimed and not exhausted and not stopping:
                    more = await asyncio.to_thread(outbox.claim, clock(), batch_size)
                    claimed.extend(more)
                    exhausted = len(more) < batch_size
                continue
            timeout = None
            if finished and recording is None:
                timeout = max(0.0, oldest + linger - loop.time())
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for future in done:
                if future is recording:
                    recording = None
                    recorded_size = 0
                    more = future.result()
                    claimed.extend(more)
                    if asked and len(more) < asked:
                        exhausted = True
                    asked = 0
                else:
                    if not finished:
                        oldest = loop.time()
                    finished.append((sending.pop(future), future.result()))
    finally:
        # Cancelled (shutting down) or failed: what was claimed stays in ``sending`` under
        # this instance's lease; it goes out again, with the same Message-ID, when the lease
        # expires or this instance starts again.
        for future in sending:
            future.cancel()
        if made is not None:
            made.close()
    return report
