"""Clients polling a feed far faster than it can change get ``429`` with ``Retry-After``.

Off by default (``feeds.polls_per_interval = 0``). Each (client address, path) pair has a
token bucket of ``polls_per_interval`` requests refilled evenly over
``store.reload_interval``: a reader polling at any sane rate never meets it, a loop
hammering one URL does.
"""

from __future__ import annotations

import math
from datetime import datetime

from aiohttp import web

from syndicator.web.ratelimit import HOUR, RateLimiter, client_key
from syndicator.web.subscriptions import client_address


class PollLimit:
    """At most ``polls`` requests per client and feed in ``interval`` seconds."""

    def __init__(self, polls: int, interval: int, *, trust_forwarded_for: bool) -> None:
        self.polls = polls
        self.interval = interval
        self.trust_forwarded_for = trust_forwarded_for
        self._limiter = RateLimiter(max(1, math.ceil(polls * HOUR / interval)))

    def take(self, request: web.Request, now: datetime) -> float:
        """0.0 when the request may go ahead, else the seconds to wait."""
        client = client_key(client_address(request, trust_forwarded_for=self.trust_forwarded_for))
        return self._limiter.take(f"{client} {request.rel_url.raw_path}", now)
