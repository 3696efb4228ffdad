"""Rate limits: a token bucket per key (a client address, an email address), in memory.

Pure apart from the moment handed in: ``limiter.take(key, now)`` says whether a request
may go ahead now and, if not, how many seconds until it may. Each bucket holds up to
``per_hour`` requests and refills evenly over the hour, so a burst of ``per_hour`` is
allowed, then one more every ``3600 / per_hour`` seconds. Buckets that have refilled
completely are forgotten, and at most ``max_keys`` are kept (the least recently used go
first), so a flood of distinct keys cannot exhaust memory.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from datetime import datetime

from syndicator.state.ratelimits import HOUR, spend

MAX_KEYS = 100_000


def client_key(address: str) -> str:
    """The bucket of a client address: itself for IPv4, its /64 network for IPv6.

    One IPv6 host usually holds a whole /64; anything unparsable is its own key.
    """
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class RateLimiter:
    """At most ``per_hour`` requests per key and hour (0: no limit)."""

    def __init__(self, per_hour: int, *, max_keys: int = MAX_KEYS) -> None:
        if per_hour < 0:
            raise ValueError("per_hour must be 0 (no limit) or more")
        self.per_hour = per_hour
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str, now: datetime) -> float:
        """Take one request from ``key``'s bucket: 0.0 if it may go ahead, else the seconds
        to wait (a whole number, at least 1), for a ``Retry-After`` header."""
        if self.per_hour == 0:
            return 0.0
        moment = now.timestamp()
        tokens, at = self._buckets.pop(key, (float(self.per_hour), moment))
        tokens, wait = spend(self.per_hour, tokens, at, moment)
        self._buckets[key] = (tokens, moment)
        self._prune(moment, self.per_hour / HOUR)
        return wait

    def _prune(self, moment: float, rate: float) -> None:
        if len(self._buckets) <= self.max_keys:
            return
        full = [
            key
            for key, (tokens, at) in self._buckets.items()
            if tokens + (moment - at) * rate >= self.per_hour
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
