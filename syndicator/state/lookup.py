"""Articles and subscribers read from a SQLite state database with the standard library alone.

``syndicator articles``, ``syndicator explain`` and ``syndicator subscribers list`` only
read; loading SQLAlchemy would be most of what they do. On SQLite they read here instead,
with the statements of :meth:`State.articles`, :meth:`State.find_articles` and the
subscriber listing, and the same conversions (tests hold both to the same answers). Only
a database that is there and of this schema version is read; for anything else
(PostgreSQL, no database yet, an older or newer one, any error) these functions return
None, and the command opens :class:`State` as every other command does, which creates,
upgrades, refuses or reports as usual.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

from syndicator.models import Article
from syndicator.state import SCHEMA_VERSION, SUBSCRIBERS_FILE_SYNCED, SUBSCRIBERS_REVISION
from syndicator.state.records import Records, SubscriberRecord

# As State's engine: wait for a writer this long rather than fail at once.
BUSY_TIMEOUT_SECONDS = 30
_COLUMNS = (
    "id, title, body, summary, link, author, source, line, regions, topics, "
    "published, updated, first_seen, content_hash, seq, format"
)
Row = tuple[str, str, str, str, str, str, str, int, str, str, str, str, str, str, int, str]


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` state URL, else None (another database, a
    database in memory, or options after ``?``)."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url.removeprefix("sqlite:///")
    return Path(path) if path and path != ":memory:" else None


def articles(
    url: str, *, region: str | None = None, topic: str | None = None
) -> list[Article] | None:
    """As :meth:`State.articles` (articles not removed, newest first), or None."""
    found = _read(
        url,
        f"SELECT {_COLUMNS} FROM articles WHERE removed_at IS NULL "
        "ORDER BY published DESC, seq ASC",
        (),
    )
    if found is None:
        return None
    if region:
        found = [article for article in found if region in article.regions]
    if topic:
        found = [article for article in found if topic in article.topics]
    return found


def find_articles(url: str, needle: str) -> Sequence[Article] | None:
    """As :meth:`State.find_articles` (the article of id ``needle``, else those whose
    title contains it, ignoring case), or None."""
    by_id = _read(url, f"SELECT {_COLUMNS} FROM articles WHERE id = ?", (needle,))
    if by_id is None or by_id:
        return by_id
    return _read(
        url,
        f"SELECT {_COLUMNS} FROM articles WHERE lower(title) LIKE ? "
        "ORDER BY removed_at IS NOT NULL, published DESC",
        (f"%{needle.lower()}%",),
    )


def _connect(url: str) -> sqlite3.Connection | None:
    """A connection to the SQLite database of ``url`` if it is there and of this schema."""
    path = sqlite_path(url)
    if path is None:
        return None
    try:
        # mode=rw: a database that is not there is not created here (State creates it).
        connection = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_SECONDS
        )
    except sqlite3.Error:
        return None
    try:
        version = connection.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()
    except sqlite3.Error:
        version = None
    if version is None or version[0] != str(SCHEMA_VERSION):
        connection.close()
        return None
    return connection


def _read(url: str, statement: str, parameters: tuple[str, ...]) -> list[Article] | None:
    connection = _connect(url)
    if connection is None:
        return None
    with closing(connection):
        try:
            rows: list[Row] = connection.execute(statement, parameters).fetchall()
        except sqlite3.Error:
            return None
    return [_article(row) for row in rows]


# --- subscribers ---------------------------------------------------------------------------


# Columns of ``subscribers`` that SQLAlchemy reads as datetimes.
_SUBSCRIBER_DATES = ("added_at", "next_digest_at", "unsubscribed_at")


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A sign-up request not confirmed yet: its settings as stored (JSON)."""

    email: str
    settings: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class SubscriberListing:
    """What ``subscribers list`` shows: subscribers in address order, the requests still
    open (oldest first), each subscriber's latest decision that ended a subscription
    (decision, reason, when), and the problems of the subscribers file state follows."""

    subscribers: list[SubscriberRecord]
    requests: list[PendingRequest]
    decisions: dict[int, tuple[str, str, datetime]]
    problems: list[str]


def subscriber_listing(
    url: str, *, signature: str, requested_since: datetime
) -> SubscriberListing | None:
    """Subscribers, open requests (made at ``requested_since`` or later) and decisions, as
    ``subscribers list`` reads them through State; or None when state may not follow the
    subscribers file of ``signature`` (it was synced from other bytes, or subscribers
    changed since) and for any database the article functions leave to State."""
    connection = _connect(url)
    if connection is None:
        return None
    with closing(connection):
        try:
            connection.execute("BEGIN")  # every read below from one snapshot
            return _listing(connection, signature, requested_since)
        except (sqlite3.Error, ValueError, TypeError, KeyError):
            return None


def _listing(
    connection: sqlite3.Connection, signature: str, requested_since: datetime
) -> SubscriberListing | None:
    meta = dict(
        connection.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)",
            (SUBSCRIBERS_FILE_SYNCED, SUBSCRIBERS_REVISION),
        ).fetchall()
    )
    synced = json.loads(meta.get(SUBSCRIBERS_FILE_SYNCED) or "null")
    revision = meta.get(SUBSCRIBERS_REVISION)
    if (
        not isinstance(synced, dict)
        or revision is None
        or synced.get("signature") != signature
        or synced.get("revision") != str(revision)
    ):
        return None
    records = Records()
    # Every column, as ``select(subscribers_table)`` reads them, by name.
    cursor = connection.execute("SELECT * FROM subscribers ORDER BY email_key")
    names = [column[0] for column in cursor.description]
    subscribers = []
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        for name in _SUBSCRIBER_DATES:
            if row[name] is not None:
                row[name] = _aware(row[name])
        subscribers.append(records(SimpleNamespace(**row)))
    requests = [
        PendingRequest(email=email, settings=settings, requested_at=_aware(requested_at))
        for email, settings, requested_at in connection.execute(
            "SELECT email, settings, requested_at FROM subscription_requests "
            "WHERE confirmed_at IS NULL AND requested_at >= ? ORDER BY requested_at",
            (_stored(requested_since),),
        )
    ]
    decisions = {
        int(subscriber_id): (str(decision), str(reason), _aware(received_at))
        for subscriber_id, decision, reason, received_at in connection.execute(
            "SELECT subscriber_id, decision, reason, received_at FROM bounce_events "
            "WHERE decision IN ('suspended', 'unsubscribed') ORDER BY id"
        )
    }
    return SubscriberListing(
        subscribers=subscribers,
        requests=requests,
        decisions=decisions,
        problems=[str(problem) for problem in synced.get("problems", [])],
    )


def _stored(moment: datetime) -> str:
    """A datetime as SQLAlchemy binds it in SQLite (UTC, without offset, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _aware(stored: str) -> datetime:
    """A datetime as SQLAlchemy stores it in SQLite (ISO 8601, UTC, without offset)."""
    value = datetime.fromisoformat(stored)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _article(row: Row) -> Article:
    (id_, title, body, summary, link, author, source, line, regions, topics) = row[:10]
    published, updated, first_seen, content_hash, seq, format_ = row[10:]
    return Article(
        id=id_,
        title=title,
        body=body,
        summary=summary,
        link=link,
        author=author,
        source=source,
        line=line,
        regions=tuple(regions.split()) if regions else (),
        topics=tuple(topics.split()) if topics else (),
        published=_aware(published),
        updated=_aware(updated),
        first_seen=_aware(first_seen),
        content_hash=content_hash,
        seq=seq,
        format=format_,
    )
