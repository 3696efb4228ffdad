"""Subscribers as state records them, with the standard library alone.

The records are built here from rows of ``subscribers`` read through SQLAlchemy
(:mod:`syndicator.state.subscribers`) or through :mod:`sqlite3` (:mod:`syndicator.state.lookup`),
so listing subscribers on SQLite loads no SQLAlchemy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ACTIVE = "active"
SUSPENDED = "suspended"
UNSUBSCRIBED = "unsubscribed"
REMOVED = "removed"

# Where a subscription comes from: the operator's subscribers file or command line, or the
# subscriber's own confirmed request on the web pages.
FROM_FILE = "file"
FROM_CLI = "cli"
FROM_WEB = "web"
OPERATOR_SOURCES = (FROM_FILE, FROM_CLI)

# The columns a subscriber's own settings live in (what a subscribers file entry, the
# command line or the manage page can change).
SETTINGS = ("email", "name", "filters", "cadence", "hour", "weekday", "timezone", "group_by")
_FILTERS_KEPT = 4096  # distinct filters parsed once per read; memory stays bounded


@dataclass(frozen=True, slots=True)
class SubscriberRecord:
    """A subscriber as state knows them."""

    id: int
    email: str
    name: str
    regions: tuple[str, ...]
    topics: tuple[str, ...]
    keywords: tuple[str, ...]
    exclude_regions: tuple[str, ...]
    exclude_topics: tuple[str, ...]
    cadence: str
    hour: int
    weekday: str
    timezone: str
    source: str
    status: str
    added_at: datetime
    added_seq: int
    permanent_failures: int
    next_digest_at: datetime | None
    # How the table of contents of their digests is grouped: "region" or "topic".
    group_by: str = "region"
    # The stored settings columns, as stored (the filters as their JSON text).
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def parse_filters(text: str) -> dict[str, tuple[str, ...]]:
    """The filters column (JSON) as tuples of slugs and keywords."""
    return {key: tuple(value) for key, value in json.loads(text).items()}


class Records:
    """Builds records from rows, parsing each distinct filters text once (many subscribers
    share the same filters)."""

    def __init__(self) -> None:
        self._filters: dict[str, dict[str, tuple[str, ...]]] = {}

    def __call__(self, row: Any) -> SubscriberRecord:
        # Each column read once: the settings are columns the record has too.
        text = row.filters
        filters = self._filters.get(text)
        if filters is None:
            filters = parse_filters(text)
            if len(self._filters) < _FILTERS_KEPT:
                self._filters[text] = filters
        email, name, cadence, hour = row.email, row.name, row.cadence, row.hour
        weekday, timezone, group_by = row.weekday, row.timezone, row.group_by
        return SubscriberRecord(
            id=row.id,
            email=email,
            name=name,
            regions=filters.get("regions", ()),
            topics=filters.get("topics", ()),
            keywords=filters.get("keywords", ()),
            exclude_regions=filters.get("exclude_regions", ()),
            exclude_topics=filters.get("exclude_topics", ()),
            cadence=cadence,
            hour=hour,
            weekday=weekday,
            timezone=timezone,
            source=row.source,
            status=row.status,
            added_at=row.added_at,
            added_seq=row.added_seq,
            permanent_failures=row.permanent_failures,
            next_digest_at=row.next_digest_at,
            group_by=group_by,
            settings={  # SETTINGS, in its order
                "email": email,
                "name": name,
                "filters": text,
                "cadence": cadence,
                "hour": hour,
                "weekday": weekday,
                "timezone": timezone,
                "group_by": group_by,
            },
        )
