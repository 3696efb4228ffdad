"""Articles and store files in state: what the cycle reads to reconcile, and records after.

Lookups go out in chunks of at most :data:`CHUNK` ids or paths (SQLite limits the
parameters of one statement); writes of many rows go out as one executemany each.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from syndicator.models import Article
from syndicator.state.db import (
    State,
    article_from_row,
    articles_table,
    files_table,
    get_meta,
    insert_rows,
    meta_table,
    set_meta,
)

CHUNK = 500
# Columns written when an article's content or metadata changed (the same for every row,
# so the updates go out as one executemany).
CHANGED_COLUMNS = (
    "source",
    "line",
    "title",
    "body",
    "format",
    "summary",
    "link",
    "author",
    "regions",
    "topics",
    "front_regions",
    "front_topics",
    "front_date",
    "front_updated",
    "content_hash",
    "classified_with",
    "published",
    "updated",
)
# Enough of an article to choose feed items and compute signatures.
LIGHT_COLUMNS = (
    articles_table.c.id,
    articles_table.c.seq,
    articles_table.c.published,
    articles_table.c.updated,
    articles_table.c.regions,
    articles_table.c.topics,
    articles_table.c.content_hash,
    articles_table.c.link,
    articles_table.c.page_signature,
)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


# --- reading, for the cycle ------------------------------------------------------------------


def count_active(conn: Connection) -> int:
    """How many articles are in the store now (not removed)."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(articles_table)
            .where(articles_table.c.removed_at.is_(None))
        ).scalar()
        or 0
    )


def rows_by_id(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    """The stored rows of articles ``ids`` (removed ones included), by id."""
    found: dict[str, Any] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(select(articles_table).where(articles_table.c.id.in_(chunk))):
            found[row.id] = row
    return found


def active_by_source(conn: Connection, paths: Sequence[str]) -> dict[str, set[str]]:
    """The ids of the active articles each of the store files ``paths`` holds."""
    found: dict[str, set[str]] = defaultdict(set)
    for chunk in _chunks(paths):
        for row in conn.execute(
            select(articles_table.c.id, articles_table.c.source).where(
                articles_table.c.source.in_(chunk), articles_table.c.removed_at.is_(None)
            )
        ):
            found[row.source].add(row.id)
    return found


def classification_inputs(conn: Connection) -> list[Any]:
    """Every stored article's id, text, front-matter classes, classes and the classifier it
    was classified with."""
    return list(
        conn.execute(
            select(
                articles_table.c.id,
                articles_table.c.title,
                articles_table.c.body,
                articles_table.c.front_regions,
                articles_table.c.front_topics,
                articles_table.c.classified_with,
                articles_table.c.regions,
                articles_table.c.topics,
            )
        ).all()
    )


# --- recording, for the cycle ----------------------------------------------------------------


def record_articles(
    conn: Connection,
    *,
    new: Sequence[dict[str, Any]],
    changed: Sequence[dict[str, Any]],
    moved: Sequence[dict[str, Any]],
    removed: Sequence[str],
    now: datetime,
) -> None:
    """Insert ``new`` rows; rewrite the :data:`CHANGED_COLUMNS` of ``changed`` rows (keyed by
    ``key``); point ``moved`` rows at their new ``source`` and ``line``; mark ``removed`` ids
    removed at ``now``. Changed and moved articles are active again."""
    insert_rows(conn, articles_table, new)
    if changed:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(
                {**{column: bindparam(column) for column in CHANGED_COLUMNS}, "removed_at": None}
            ),
            changed,
        )
    if moved:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(source=bindparam("source"), line=bindparam("line"), removed_at=None),
            moved,
        )
    for chunk in _chunks(removed):
        conn.execute(
            update(articles_table).where(articles_table.c.id.in_(chunk)).values(removed_at=now)
        )


def record_files(
    conn: Connection, *, forget: Sequence[str], read: Sequence[dict[str, Any]]
) -> tuple[str | None, str] | None:
    """Forget the store files ``forget`` and record the files ``read`` (path, size,
    mtime_ns, problems), so an unchanged file is not read again.

    Returns the files revision before and after (None: nothing to record), for
    :meth:`KnownFiles.recorded` once the transaction committed.
    """
    if not forget and not read:
        return None
    for chunk in _chunks(forget):
        conn.execute(delete(files_table).where(files_table.c.path.in_(chunk)))
    insert_rows(conn, files_table, read)
    # The row is locked while the revision moves, so ``before`` is the one this write
    # follows, whoever else writes files at the same time.
    insert_rows(conn, meta_table, [{"key": _FILES_REVISION, "value": ""}], skip_existing=True)
    before = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == _FILES_REVISION).with_for_update()
    ).scalar()
    after = secrets.token_hex(8)
    set_meta(conn, _FILES_REVISION, after)
    return (before or None, after)


_FILES_REVISION = "files_revision"


class KnownFiles:
    """The store files state knows (path -> (size, mtime_ns)), kept by one process between
    cycles while the files revision in state stands: every write of the files moves it,
    so a cycle reads the rows again only after another process changed them.
    """

    __slots__ = ("files", "revision")

    def __init__(self) -> None:
        self.revision: str | None = None  # None: nothing kept
        self.files: dict[str, tuple[int, int]] = {}

    def read(self, state: State, conn: Connection) -> dict[str, tuple[int, int]]:
        """The files as of ``conn``'s transaction (do not change the mapping)."""
        # The revision first: a write committed between the two reads shows as a new
        # revision next time, never as a stale mapping kept for good.
        revision = get_meta(conn, _FILES_REVISION) or None
        if revision is None or revision != self.revision:
            self.files = state.files(conn)
            self.revision = revision
        return self.files

    def recorded(
        self,
        revisions: tuple[str | None, str] | None,
        *,
        forget: Sequence[str],
        read: Sequence[dict[str, Any]],
    ) -> None:
        """What :func:`record_files` wrote and returned, after its transaction committed."""
        if revisions is None:
            return
        before, after = revisions
        if before is None or before != self.revision:
            # Another process wrote files in between: read them all next time.
            self.revision, self.files = None, {}
            return
        for path in forget:
            self.files.pop(path, None)
        for row in read:
            self.files[row["path"]] = (row["size"], row["mtime_ns"])
        self.revision = after


def record_classes(
    conn: Connection, changes: Sequence[dict[str, Any]], *, classified_with: str
) -> None:
    """Store new ``regions`` and ``topics`` for articles (keyed by ``key``)."""
    if changes:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(
                regions=bindparam("regions"),
                topics=bindparam("topics"),
                classified_with=classified_with,
            ),
            changes,
        )


# --- reading and recording, for publishing ---------------------------------------------------


def light_articles(conn: Connection, ids: Sequence[str] | None = None) -> list[Any]:
    """The :data:`LIGHT_COLUMNS` of every active article, or of the active ones of ``ids``."""
    if ids is None:
        query = select(*LIGHT_COLUMNS).where(articles_table.c.removed_at.is_(None))
        return list(conn.execute(query))
    rows: list[Any] = []
    for chunk in _chunks(sorted(ids)):
        query = select(*LIGHT_COLUMNS).where(
            articles_table.c.id.in_(chunk), articles_table.c.removed_at.is_(None)
        )
        rows.extend(conn.execute(query))
    return rows


def articles_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, Article]:
    """The full articles ``ids``, by id."""
    found: dict[str, Article] = {}
    for chunk in _chunks(sorted(ids)):
        for row in conn.execute(select(articles_table).where(articles_table.c.id.in_(chunk))):
            found[row.id] = article_from_row(row)
    return found


def active_article(conn: Connection, article_id: str) -> Article | None:
    """Article ``article_id``, if it is in the store now."""
    row = conn.execute(
        select(articles_table).where(
            articles_table.c.id == article_id, articles_table.c.removed_at.is_(None)
        )
    ).first()
    return None if row is None else article_from_row(row)


def record_page_signatures(conn: Connection, signatures: Mapping[str, str]) -> None:
    """Note what each article's published page was built from ("": it has none)."""
    if signatures:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(page_signature=bindparam("signature")),
            [{"key": key, "signature": value} for key, value in signatures.items()],
        )
