"""What the reader-facing feeds keep in state: archive pages and private feeds.

* ``archive_entries``: which archive page of which channel holds an article. An article
  keeps its page for good (RFC 5005 archive documents must not be reshuffled); when it
  leaves the channel (removed, or classified elsewhere) its row stays with ``present = 0``,
  so the page still counts it and no later article moves into its place.
* ``private_feeds``: the generation of each subscriber's private feed token; rotating the
  feed bumps it, so every older token stops working.

Archive page signatures live in ``feeds`` next to the channel feeds', under
``archive/<channel>/<page>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from syndicator.models import Article
from syndicator.state.db import (
    State,
    advisory_key,
    article_from_row,
    articles_table,
    feeds_table,
    insert_rows,
    metadata,
    subscribers_table,
)

archive_entries_table = Table(
    "archive_entries",
    metadata,
    Column("channel", Text, primary_key=True),
    Column("article_id", String(128), primary_key=True),
    Column("page", Integer, nullable=False),
    Column("present", Integer, nullable=False, default=1),
)

private_feeds_table = Table(
    "private_feeds",
    metadata,
    Column("subscriber_id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False),
)

_ARCHIVES_REVISION = "archives_revision"
_CHUNK = 500


# --- articles as the reader feeds see them -----------------------------------------------


@dataclass(frozen=True, slots=True)
class TaggedArticle:
    """An active article's id, feed order and tags: what filtering needs but its text."""

    id: str
    seq: int
    published: datetime
    updated: datetime
    content_hash: str
    regions: tuple[str, ...]
    topics: tuple[str, ...]


def active_tagged_articles(conn: Connection) -> list[TaggedArticle]:
    """Every active article, newest first (then in the order first seen), without text."""
    query = (
        select(
            articles_table.c.id,
            articles_table.c.seq,
            articles_table.c.published,
            articles_table.c.updated,
            articles_table.c.content_hash,
            articles_table.c.regions,
            articles_table.c.topics,
        )
        .where(articles_table.c.removed_at.is_(None))
        .order_by(articles_table.c.published.desc(), articles_table.c.seq.asc())
    )
    return [
        TaggedArticle(
            row.id,
            row.seq,
            row.published,
            row.updated,
            row.content_hash,
            tuple(row.regions.split()),
            tuple(row.topics.split()),
        )
        for row in conn.execute(query)
    ]


def article_texts(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(title, body) of the given articles."""
    found: dict[str, tuple[str, str]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = select(articles_table.c.id, articles_table.c.title, articles_table.c.body).where(
            articles_table.c.id.in_(ids[start : start + _CHUNK])
        )
        found.update((row.id, (row.title, row.body)) for row in conn.execute(query))
    return found


def full_articles(conn: Connection, ids: Iterable[str]) -> dict[str, Article]:
    """The whole articles ``ids`` (active or not)."""
    ordered = sorted(set(ids))
    found: dict[str, Article] = {}
    for start in range(0, len(ordered), _CHUNK):
        query = select(articles_table).where(
            articles_table.c.id.in_(ordered[start : start + _CHUNK])
        )
        found.update((row.id, article_from_row(row)) for row in conn.execute(query))
    return found


# --- archive pages -----------------------------------------------------------------------


@dataclass(slots=True)
class ArchiveEntry:
    page: int
    present: bool


def archives_revision(state: State, conn: Connection) -> str:
    """A token that changes with every change to archive assignments, by any process."""
    return state.get_meta(conn, _ARCHIVES_REVISION) or "0"


def archive_entries(conn: Connection) -> Iterator[tuple[str, str, int, bool]]:
    """Every assignment: (channel, article id, page, present)."""
    query = select(
        archive_entries_table.c.channel,
        archive_entries_table.c.article_id,
        archive_entries_table.c.page,
        archive_entries_table.c.present,
    )
    for channel, article_id, page, present in conn.execute(query):
        yield channel, article_id, int(page), bool(present)


def newest_archive_pages(conn: Connection) -> dict[str, int]:
    """Each channel's newest archive page."""
    query = select(
        archive_entries_table.c.channel, func.max(archive_entries_table.c.page)
    ).group_by(archive_entries_table.c.channel)
    return {channel: int(page) for channel, page in conn.execute(query)}


def lock_archives(conn: Connection) -> None:
    """Make the archive assignments this transaction's alone until it ends, so instances
    assigning pages at once take turns (SQLite's write transaction already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key("archives")})


def save_archive_entries(
    state: State,
    conn: Connection,
    *,
    added: Sequence[tuple[str, str, int]],
    presence: Sequence[tuple[str, str, bool]],
) -> str:
    """Record new assignments (channel, article, page) and changes of presence; returns
    the new archives revision."""
    insert_rows(
        conn,
        archive_entries_table,
        [{"channel": c, "article_id": a, "page": p, "present": 1} for c, a, p in added],
    )
    if presence:
        conn.execute(
            update(archive_entries_table)
            .where(
                and_(
                    archive_entries_table.c.channel == bindparam("key_channel"),
                    archive_entries_table.c.article_id == bindparam("key_article"),
                )
            )
            .values(present=bindparam("new_present")),
            [{"key_channel": c, "key_article": a, "new_present": int(p)} for c, a, p in presence],
        )
    revision = str(int(archives_revision(state, conn)) + 1)
    state.set_meta(conn, _ARCHIVES_REVISION, revision)
    return revision


def set_feed_signatures(conn: Connection, signatures: dict[str, str]) -> None:
    rows = [{"path": path, "signature": signatures[path]} for path in sorted(signatures)]
    insert_rows(conn, feeds_table, rows, replace_existing=True)


# --- private feeds -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedOwner:
    """A subscriber as their private feed needs them."""

    id: int
    email: str
    status: str
    cadence: str
    filters: str  # JSON, as in the subscribers table


def private_feed_generation(conn: Connection, subscriber_id: int) -> int:
    """The current generation of a subscriber's private feed token (0 until rotated)."""
    value = conn.execute(
        select(private_feeds_table.c.generation).where(
            private_feeds_table.c.subscriber_id == subscriber_id
        )
    ).scalar()
    return int(value or 0)


def private_feed_generations(conn: Connection, ids: Iterable[int]) -> dict[int, int]:
    """Generations of many subscribers' private feeds (absent: 0)."""
    ordered = sorted(set(ids))
    found: dict[int, int] = {}
    for start in range(0, len(ordered), _CHUNK):
        query = select(private_feeds_table).where(
            private_feeds_table.c.subscriber_id.in_(ordered[start : start + _CHUNK])
        )
        found.update((row.subscriber_id, row.generation) for row in conn.execute(query))
    return found


def rotated_private_feeds(conn: Connection) -> dict[int, int]:
    """The generation of every private feed ever rotated (the others are at 0)."""
    return {row.subscriber_id: row.generation for row in conn.execute(select(private_feeds_table))}


def rotate_private_feed(conn: Connection, subscriber_id: int) -> int:
    """Give a subscriber's private feed a new generation; returns it."""
    generation = private_feed_generation(conn, subscriber_id) + 1
    changed = conn.execute(
        update(private_feeds_table)
        .where(private_feeds_table.c.subscriber_id == subscriber_id)
        .values(generation=generation)
    ).rowcount
    if not changed:
        conn.execute(
            private_feeds_table.insert().values(subscriber_id=subscriber_id, generation=generation)
        )
    return generation


def feed_owner(conn: Connection, subscriber_id: int) -> FeedOwner | None:
    row: Any = conn.execute(
        select(
            subscribers_table.c.id,
            subscribers_table.c.email,
            subscribers_table.c.status,
            subscribers_table.c.cadence,
            subscribers_table.c.filters,
        ).where(subscribers_table.c.id == subscriber_id)
    ).first()
    if row is None:
        return None
    return FeedOwner(int(row.id), row.email, row.status, row.cadence, row.filters)
