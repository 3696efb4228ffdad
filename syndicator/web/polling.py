"""Clients polling a feed far faster than it can change get ``429`` with ``Retry-After``.

Off by default (``feeds.polls_per_interval = 0``). Each (client address, path) pair has a
token bucket of ``polls`` requests refilled evenly over ``interval`` seconds (the cycle
interval): a reader polling at any sane rate never meets it, a loop hammering one URL does.
At most ``max_keys`` buckets are kept (the least recently used go first), so a flood of
distinct clients cannot exhaust memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime

from aiohttp import web

from syndicator.web.ratelimit import MAX_KEYS, client_key
from syndicator.web.subscriptions import client_address


class PollLimit:
    """At most ``polls`` requests per client and feed in ``interval`` seconds."""

    def __init__(
        self, polls: int, interval: int, *, trust_forwarded_for: bool, max_keys: int = MAX_KEYS
    ) -> None:
        if polls < 1 or interval < 1:
            raise ValueError("polls and interval must be at least 1")
        self.polls = polls
        self.interval = interval
        self.trust_forwarded_for = trust_forwarded_for
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, request: web.Request, now: datetime) -> float:
        """0.0 when the request may go ahead, else the whole seconds to wait (at least 1)."""
        client = client_key(client_address(request, trust_forwarded_for=self.trust_forwarded_for))
        return self.take_key(f"{client} {request.rel_url.raw_path}", now)

    def take_key(self, key: str, now: datetime) -> float:
        moment = now.timestamp()
        rate = self.polls / self.interval  # tokens per second
        tokens, at = self._buckets.pop(key, (float(self.polls), moment))
        tokens = min(float(self.polls), tokens + max(0.0, moment - at) * rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = float(max(1, math.ceil((1.0 - tokens) / rate)))
        self._buckets[key] = (tokens, moment)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
