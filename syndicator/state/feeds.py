"""What publishing keeps in state: each feed's signature, and where the last publish got to.

The marks are recorded before acting: a change marks the feeds dirty in the
transaction that records it, a publish is marked begun before the first file is
written and finished only after the last, so a crash in between makes the next
cycle publish (and check every file) again.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from syndicator.state.db import feeds_table, insert_rows, matches_table
from syndicator.state.meta import get_meta, set_meta

_DIRTY = "feeds_dirty"
_SETTINGS = "feeds_config"
_PUBLISHING = "feeds_publishing"
_WEBSUB_PENDING = "websub_pending"


@dataclass(frozen=True, slots=True)
class PublishMarks:
    dirty: bool  # something changed that is not published yet
    interrupted: bool  # a publish began and did not finish: the files on disk are in doubt
    settings: str | None  # the settings the last finished publish used


def publish_marks(conn: Connection) -> PublishMarks:
    return PublishMarks(
        dirty=get_meta(conn, _DIRTY) == "1",
        interrupted=get_meta(conn, _PUBLISHING) == "1",
        settings=get_meta(conn, _SETTINGS),
    )


def mark_feeds_dirty(conn: Connection) -> None:
    """Articles changed: the feeds are to be published again."""
    set_meta(conn, _DIRTY, "1")


def mark_publishing(conn: Connection) -> None:
    """A publish begins (the feeds stay dirty until it finished)."""
    set_meta(conn, _DIRTY, "1")
    set_meta(conn, _PUBLISHING, "1")


def mark_published(conn: Connection, settings: str) -> None:
    """A publish with ``settings`` finished: every file on disk is up to date."""
    set_meta(conn, _DIRTY, "0")
    set_meta(conn, _PUBLISHING, "0")
    set_meta(conn, _SETTINGS, settings)


_CHUNK = 500  # paths per IN (...) list


def feed_signatures(conn: Connection, paths: Collection[str] | None = None) -> dict[str, str]:
    """What each channel's published files were built from, by channel path; only those
    of ``paths`` when given (a publish looks up what it may render, not every file)."""
    if paths is None:
        return {row.path: row.signature for row in conn.execute(select(feeds_table))}
    wanted = sorted(paths)
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = select(feeds_table.c.path, feeds_table.c.signature).where(
            feeds_table.c.path.in_(wanted[start : start + _CHUNK])
        )
        found.update((row.path, row.signature) for row in conn.execute(query))
    return found


def record_feed_signatures(conn: Connection, signatures: Mapping[str, str]) -> None:
    insert_rows(
        conn,
        feeds_table,
        [{"path": path, "signature": signature} for path, signature in sorted(signatures.items())],
        replace_existing=True,
    )


def articles_awaiting_mail(conn: Connection) -> set[str]:
    """Ids of the articles matched for a subscriber and not in a message yet."""
    return set(
        conn.execute(
            select(matches_table.c.article_id).where(matches_table.c.message.is_(None)).distinct()
        ).scalars()
    )


def websub_pending(conn: Connection) -> list[str]:
    """Feed URLs the WebSub hub is still to be told about."""
    return list(json.loads(get_meta(conn, _WEBSUB_PENDING) or "[]"))


def set_websub_pending(conn: Connection, urls: Sequence[str]) -> None:
    set_meta(conn, _WEBSUB_PENDING, json.dumps(list(urls)))
