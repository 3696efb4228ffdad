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


class _Signal:
    """Wakes whoever waits on it (a future each), at most after ``timeout`` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self, timeout: float | None = None) -> None:
        future = self._loop.create_future()
        self._waiters.append(future)
        timer = None if timeout is None else self._loop.call_later(timeout, _wake, future)
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            _wake(future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
    any SMTP conversation starts. ``concurrency`` loops send them (one per pooled
    connection), each taking the next claimed message as soon as its last one's reply is
    in. At most ``window`` messages are ever handed to the transport and not yet
    recorded. Outcomes are committed together, one commit at a time, as soon as half the
    window's worth of them wait, or no further message may be handed over until they are
    recorded, or the oldest has waited ``linger`` seconds, or nothing else is being sent:
    while one group commits, the other half of the window is being sent. Each commit also
    renews the leases still held and claims the next batch. A crash can therefore repeat
    at most ``window`` messages, with the same Message-ID. Stopping (``should_stop``) lets
    the messages in conversation finish and be recorded, and gives the claimed ones not
    yet started back to the queue. ``sender`` is the envelope sender, or a function of the
    message's row id that makes one per message (a VERP return path).
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
    finished: list[tuple[ClaimedMessage, Delivery]] = []
    in_flight = 0  # messages handed to the transport, no outcome yet
    recorded_size = 0  # outcomes in the commit under way
    oldest = 0.0  # loop time of the oldest outcome waiting for a commit
    over = False  # tells the senders to stop asking for messages
    committer = _Signal(loop)  # an outcome the commits may be waiting for
    changed = _Signal(loop)  # a commit, a claim or a release: senders may go on

    async def sender_loop() -> None:
        # Like a bare client on a pooled connection: the next message goes out as soon as
        # the last one's reply is in, while the window has room for it.
        nonlocal in_flight, oldest
        while True:
            while not claimed or in_flight + len(finished) + recorded_size >= window:
                if over:
                    return
                await changed.wait()
            if should_stop():
                committer.notify()  # the claimed messages go back to the queue
                await changed.wait()
                continue
            message = claimed.popleft()
            in_flight += 1
            try:
                delivery = await send(message)
            finally:
                in_flight -= 1
            if not finished:
                oldest = loop.time()
            finished.append((message, delivery))
            if (
                len(finished) == 1  # the linger starts
                or len(finished) >= group
                or not in_flight
                or in_flight + len(finished) + recorded_size >= window
            ):
                committer.notify()

    senders: list[asyncio.Task[None]] = []
    exhausted = should_stop()
    try:
        if not exhausted:
            first = await asyncio.to_thread(outbox.claim, clock(), batch_size)
            claimed.extend(first)
            exhausted = len(first) < batch_size
        senders = [asyncio.create_task(sender_loop()) for _ in range(concurrency)]
        for task in senders:
            task.add_done_callback(lambda _: committer.notify())
        while True:
            stopping = should_stop()
            if stopping and claimed:
                # Never handed to the transport: back to the queue, for anyone.
                await asyncio.to_thread(outbox.release, list(claimed))
                claimed.clear()
            if finished:
                full = in_flight + len(finished) >= window
                lingered = loop.time() - oldest >= linger
                if full or len(finished) >= group or not in_flight or lingered:
                    batch, finished = finished, []
                    recorded_size = len(batch)
                    asked = (
                        batch_size
                        if not exhausted and not stopping and len(claimed) < batch_size
                        else 0
                    )
                    try:
                        more = await loop.run_in_executor(None, record, batch, clock(), asked)
                    finally:
                        recorded_size = 0
                    claimed.extend(more)
                    if asked and len(more) < asked:
                        exhausted = True
                    changed.notify()
                    continue
            elif not in_flight and not claimed:
                if exhausted or stopping:
                    break
                more = await asyncio.to_thread(outbox.claim, clock(), batch_size)
                claimed.extend(more)
                exhausted = len(more) < batch_size
                changed.notify()
                continue
            await committer.wait(max(0.0, oldest + linger - loop.time()) if finished else None)
            for task in senders:
                if task.done():
                    task.result()  # a sender failed (a bug): fail as loudly
    finally:
        # Cancelled (shutting down) or failed: what was claimed stays in ``sending`` under
        # this instance's lease; it goes out again, with the same Message-ID, when the lease
        # expires or this instance starts again.
        over = True
        changed.notify()
        for task in senders:
            if not task.done():
                task.cancel()
        if senders:
            await asyncio.gather(*senders, return_exceptions=True)
        if made is not None:
            made.close()
    return report
