"""Articles read from a SQLite state database with the standard library alone.

``syndicator articles`` and ``syndicator explain`` only read articles; loading SQLAlchemy
would be most of what they do. On SQLite they read here instead, with the statements of
:meth:`State.articles` and :meth:`State.find_articles` and the same conversions (a test
holds both to the same answers). Only a database that is there and of this schema
version is read; for anything else (PostgreSQL, no database yet, an older or newer one,
any error) these functions return None, and the command opens :class:`State` as every
other command does, which creates, upgrades, refuses or reports as usual.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from syndicator.models import Article
from syndicator.state import SCHEMA_VERSION

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


def _read(url: str, statement: str, parameters: tuple[str, ...]) -> list[Article] | None:
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
    with closing(connection):
        try:
            version = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if version is None or version[0] != str(SCHEMA_VERSION):
                return None
            rows: list[Row] = connection.execute(statement, parameters).fetchall()
        except sqlite3.Error:
            return None
    return [_article(row) for row in rows]


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
