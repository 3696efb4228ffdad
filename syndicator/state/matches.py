"""Matches in state: which subscriber is owed which article, and which message carries it.

One row per (subscriber, article) ever matched: its primary key is the promise that
nobody gets the same article twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from syndicator.models import Article
from syndicator.state.db import article_from_row, articles_table, insert_rows, matches_table

_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True, slots=True)
class MatchableArticle:
    """What matching needs of an article: its text, classes and when it was first seen."""

    id: str
    seq: int
    title: str
    body: str
    regions: tuple[str, ...]
    topics: tuple[str, ...]


def articles_to_match(conn: Connection, ids: Sequence[str]) -> list[MatchableArticle]:
    """The articles of ``ids``, as matching needs them."""
    found: list[MatchableArticle] = []
    for start in range(0, len(ids), _CHUNK):
        found += [
            MatchableArticle(
                row.id,
                row.seq,
                row.title,
                row.body,
                tuple(row.regions.split()),
                tuple(row.topics.split()),
            )
            for row in conn.execute(
                select(
                    articles_table.c.id,
                    articles_table.c.seq,
                    articles_table.c.title,
                    articles_table.c.body,
                    articles_table.c.regions,
                    articles_table.c.topics,
                ).where(articles_table.c.id.in_(list(ids[start : start + _CHUNK])))
            )
        ]
    return found


def insert_matches(
    conn: Connection, article_id: str, subscriber_ids: Sequence[int], *, now: datetime
) -> int:
    """Record that ``article_id`` matched each of ``subscriber_ids``; a match recorded
    before is left as it was. How many were new."""
    return insert_rows(
        conn,
        matches_table,
        [
            {"subscriber_id": subscriber_id, "article_id": article_id, "matched_at": now}
            for subscriber_id in subscriber_ids
        ],
        skip_existing=True,
    )


def pending_articles(conn: Connection, subscriber_id: int) -> list[Article]:
    """Articles matched for a subscriber and not yet in a message, newest first."""
    rows = conn.execute(
        select(articles_table)
        .join(matches_table, matches_table.c.article_id == articles_table.c.id)
        .where(
            matches_table.c.subscriber_id == subscriber_id,
            matches_table.c.message.is_(None),
            articles_table.c.removed_at.is_(None),
        )
        .order_by(articles_table.c.published.desc(), articles_table.c.seq.asc())
    ).all()
    return [article_from_row(row) for row in rows]


def pending_matches(conn: Connection) -> dict[int, list[Article]]:
    """Every match not yet in a message, with its article, grouped by subscriber (each
    subscriber's articles newest first)."""
    # Pairs first, then each article once: thousands of subscribers share a few articles.
    pairs = conn.execute(
        select(matches_table.c.subscriber_id, matches_table.c.article_id)
        .join(articles_table, matches_table.c.article_id == articles_table.c.id)
        .where(matches_table.c.message.is_(None), articles_table.c.removed_at.is_(None))
        .order_by(articles_table.c.published.desc(), articles_table.c.seq.asc())
    ).all()
    wanted = sorted({pair.article_id for pair in pairs})
    articles: dict[str, Article] = {}
    for start in range(0, len(wanted), _CHUNK):
        for row in conn.execute(
            select(articles_table).where(articles_table.c.id.in_(wanted[start : start + _CHUNK]))
        ):
            articles[row.id] = article_from_row(row)
    pending: dict[int, list[Article]] = defaultdict(list)
    for pair in pairs:
        pending[pair.subscriber_id].append(articles[pair.article_id])
    return pending
