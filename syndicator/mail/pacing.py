"""Pacing per recipient domain: a rate per domain, and a back-off for the domain that asks.

``mail.rate_limits`` gives messages per second per recipient domain (``"gmail.com" =
5``) and for all mail together (``"*" = 20``). :class:`PacedTransport` wraps the
configured transport (always: the back-off needs no configuration). Before each
message it waits for its domain's turn and the global one. When a domain defers with
421 or an RFC 3463 4.7.x status ("try again later", "rate limited") at RCPT or DATA,
that domain alone backs off: its messages are deferred without contacting the server
(they go back to the queue as temporary failures) until the back-off ends; it doubles
with each new deferral and ends at the first message the domain accepts. Every other
domain keeps flowing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from syndicator.mail.transport import Delivery, Outcome, Transport

BACKOFF_FIRST = 60.0  # seconds
BACKOFF_LIMIT = 3600.0
_POLICY_STATUS = re.compile(r"(?<![\d.])4\.7\.\d{1,3}(?![\d.])")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(">").lower()


def asks_to_back_off(delivery: Delivery) -> bool:
    """Whether a reply is a recipient domain's "slow down": 421, or a 4.7.x enhanced status,
    in answer to RCPT or DATA. Before that (greeting, EHLO, AUTH, MAIL FROM) it comes from
    the server we talk to, which is not the recipient's when we send through a relay."""
    if delivery.outcome is not Outcome.TEMPORARY:
        return False
    if "(RCPT)" not in delivery.detail and "(DATA)" not in delivery.detail:
        return False
    return delivery.code == 421 or bool(_POLICY_STATUS.search(delivery.detail))


@dataclass(slots=True)
class _Bucket:
    rate: float
    next_free: float = 0.0

    def reserve(self, now: float) -> float:
        """Take the next slot; how long to wait for it."""
        start = max(now, self.next_free)
        self.next_free = start + 1.0 / self.rate
        return start - now


@dataclass(slots=True)
class _Backoff:
    until: float = 0.0
    delay: float = 0.0


class PacedTransport:
    def __init__(
        self,
        inner: Transport,
        rate_limits: Mapping[str, float],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self._rates = dict(rate_limits)
        self._buckets: dict[str, _Bucket] = {}
        self._backoffs: dict[str, _Backoff] = {}
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"PacedTransport({self.inner!r})"

    def backing_off(self) -> dict[str, float]:
        """Domains backing off now, with the seconds left."""
        now = self._clock()
        return {d: b.until - now for d, b in self._backoffs.items() if b.until > now}

    def _bucket(self, key: str) -> _Bucket | None:
        rate = self._rates.get(key)
        if rate is None:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate)
        return bucket

    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        domain = domain_of(recipient)
        backoff = self._backoffs.get(domain)
        now = self._clock()
        if backoff is not None and backoff.until > now:
            return Delivery(
                Outcome.TEMPORARY,
                None,
                f"deferred: {domain} asked us to slow down; backing off for "
                f"{backoff.until - now:.0f} s more",
            )
        wait = 0.0
        for key in (domain, "*"):
            bucket = self._bucket(key)
            if bucket is not None:
                wait = max(wait, bucket.reserve(now + wait))
        if wait > 0:
            await self._sleep(wait)
        delivery = await self.inner.send(message, sender=sender, recipient=recipient)
        if asks_to_back_off(delivery):
            state = self._backoffs.setdefault(domain, _Backoff())
            state.delay = min(BACKOFF_LIMIT, state.delay * 2 if state.delay else BACKOFF_FIRST)
            state.until = self._clock() + state.delay
        elif delivery.outcome is Outcome.SENT:
            self._backoffs.pop(domain, None)
        return delivery

    async def close(self) -> None:
        await self.inner.close()
