"""When digests are due: pure functions of the subscriber's settings and a given moment.

A daily digest is due at ``hour:00`` in the subscriber's time zone, a weekly one
at that hour on ``weekday``. The cycle sends a digest at the first cycle at or
after its due time, then asks for the next due time *after now*, so a digest
missed while the service was down goes out once, not once per missed day.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def next_due(
    after: datetime, *, cadence: str, hour: int, weekday: str, timezone: str
) -> datetime | None:
    """The first due time strictly after ``after`` (UTC), or None for ``immediate`` (and
    ``feed``, which mails nothing)."""
    if cadence in {"immediate", "feed"}:
        return None
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    day = local.date()
    for offset in range(0, 9):
        candidate_day = day + timedelta(days=offset)
        if cadence == "weekly" and candidate_day.weekday() != WEEKDAYS.index(weekday):
            continue
        candidate = datetime.combine(candidate_day, time(hour), tzinfo=zone)
        # Normalise times that do not exist or exist twice around a DST change.
        candidate = candidate.astimezone(UTC).astimezone(zone)
        if candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("unreachable: a due time exists within 8 days")
