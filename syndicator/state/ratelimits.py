"""Rate limits shared by every instance on one state database: a token bucket per key in
the ``rate_limits`` table, taken in one short write transaction (the row locked on
PostgreSQL, the database on SQLite), so a client's allowance is the same whichever
instance answers it. :func:`spend` is the arithmetic of one bucket, shared with the
in-memory :class:`syndicator.web.ratelimit.RateLimiter`."""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import delete, select, update

from syndicator.state.db import State, rate_limits_table

HOUR = 3600.0


def spend(per_hour: int, tokens: float, at: float, moment: float) -> tuple[float, float]:
    """Take one request from a bucket that held ``tokens`` at ``at`` (Unix seconds), at
    ``moment``: the tokens left, and 0.0 or the whole seconds to wait (at least 1)."""
    rate = per_hour / HOUR  # tokens per second
    tokens = min(float(per_hour), tokens + max(0.0, moment - at) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, float(max(1, math.ceil((1.0 - tokens) / rate)))


class SharedRateLimiter:
    """At most ``per_hour`` requests per key and hour (0: no limit), across instances."""

    def __init__(self, state: State, purpose: str, per_hour: int) -> None:
        if per_hour < 0:
            raise ValueError("per_hour must be 0 (no limit) or more")
        self.state = state
        self.purpose = purpose
        self.per_hour = per_hour
        self._takes = 0

    def take(self, key: str, now: datetime) -> float:
        """0.0 if a request for ``key`` may go ahead at ``now``, else the seconds to wait."""
        if self.per_hour == 0:
            return 0.0
        moment = now.timestamp()
        name = f"{self.purpose}:{key}"[:400]
        table = rate_limits_table
        with self.state.transaction() as conn:
            query = select(table.c.tokens, table.c.at).where(table.c.key == name)
            row = conn.execute(query.with_for_update()).first()
            if row is None:
                tokens, wait = spend(self.per_hour, float(self.per_hour), moment, moment)
                inserted = self.state.insert_ignoring_conflict(
                    conn, table, {"key": name, "tokens": tokens, "at": moment}
                )
                if inserted:
                    return wait
                # Another instance created the bucket at the same moment: take from it.
                row = conn.execute(query.with_for_update()).one()
            tokens, wait = spend(self.per_hour, float(row.tokens), float(row.at), moment)
            conn.execute(update(table).where(table.c.key == name).values(tokens=tokens, at=moment))
            self._takes += 1
            if self._takes % 1000 == 0:
                # Buckets untouched for an hour are full again: the same as no row.
                conn.execute(delete(table).where(table.c.at < moment - HOUR))
        return wait
