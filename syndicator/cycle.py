"""One cycle: read the store, classify what changed, reconcile with state, publish.

:func:`reload_store` is the left half of the flow: it stats every
store file, re-reads and re-classifies only files whose size or mtime changed,
and records new, updated and removed articles in one transaction. The clock is
passed in as ``now``.

Dates follow the store's contract: ``published`` is the front-matter date or
the first time this installation saw the article; ``updated`` moves only when
the title or body changed. Articles first seen in the same cycle get distinct
timestamps, one second apart in store order (the first one newest), so feed
readers and validators can tell them apart.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.errors import StoreError
from syndicator.mail.mailer import Mailer
from syndicator.mail.outbox import (
    DeliveryReport,
    SyncResult,
    deliver,
    envelope_sender,
    queue_due,
    record_matches,
    sync_subscribers,
)
from syndicator.mail.subscribers import Subscriber, held_addresses, load_subscribers
from syndicator.mail.transport import Transport, transport_from_config
from syndicator.mail.unsubscribe import load_secret
from syndicator.models import RawArticle, summarize
from syndicator.publish.feeds import Channel, Names, Site, build_channels
from syndicator.publish.publisher import PublishResult, publish, settings_signature
from syndicator.publish.websub import ping as websub_ping
from syndicator.state.db import (
    State,
    articles_table,
    files_table,
    insert_rows,
    join_slugs,
    split_slugs,
)
from syndicator.state.readers import rotated_private_feeds
from syndicator.store.files import scan
from syndicator.store.ingest import Classes, ReadFile, classes_of, read_files

log = logging.getLogger(__name__)

_CLASSIFIER_KEY = "classifier"


@dataclass(slots=True)
class ReloadResult:
    """What one reload found and did."""

    files: int = 0
    files_read: int = 0
    articles: int = 0
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reclassified: int = 0
    matched: int = 0
    subscribers: SyncResult | None = None
    errors: list[StoreError] = field(default_factory=list)
    duration: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated or self.removed or self.reclassified)

    def summary(self) -> str:
        return (
            f"{self.articles} articles ({len(self.new)} new, {len(self.updated)} updated, "
            f"{len(self.removed)} removed), {self.files_read}/{self.files} files read, "
            f"{len(self.errors)} problems, {self.duration:.2f}s"
        )


def _check_topics(classifier: Classifier, raw: RawArticle) -> StoreError | None:
    if raw.topics is None:
        return None
    unknown = [slug for slug in raw.topics if slug not in classifier.taxonomy.topics]
    if not unknown:
        return None
    return StoreError(
        raw.source,
        f"topics: unknown topic {unknown[0]!r} (see config/topics.toml); article skipped",
        line=raw.line,
    )


def reload_store(
    store_path: Path,
    classifier: Classifier,
    state: State,
    *,
    now: datetime,
    subscribers: Sequence[Subscriber] | None = None,
    held_subscribers: frozenset[str] = frozenset(),
) -> ReloadResult:
    """Bring state in line with the store; return what changed.

    In the same transaction, new articles are matched against the subscribers
    known so far (nothing is matched on the very first load of a store: that is
    the baseline), then ``subscribers`` (the subscribers file, when given) is
    synced, so a subscriber added now receives only articles seen from now on.
    """
    started = time.perf_counter()
    result = ReloadResult()
    scanned = scan(store_path)
    result.errors.extend(scanned.errors)
    result.files = len(scanned.files)
    with state.transaction() as conn:
        known = state.files(conn)
        current = {item.location: item for item in scanned.files}
        changed = [
            item for item in scanned.files if known.get(item.location) != (item.size, item.mtime_ns)
        ]
        # Files in a directory that could not be read are out of sight, not gone: they keep
        # their articles (as does everything when nothing at all could be scanned).
        unreadable = tuple(
            f"{error.path}{os.sep}"
            for error in scanned.errors
            if error.message.startswith(f"{error.path}: cannot ")
        )
        vanished = [
            path for path in known if path not in current and not path.startswith(unreadable)
        ]
        if scanned.errors and not scanned.files:
            vanished = []
        parsed = read_files(classifier, changed)
        result.files_read = len(changed)
        next_seq = state.next_seq(conn)
        baseline = next_seq == 1  # no article was ever recorded
        _reconcile(
            conn,
            state=state,
            classifier=classifier,
            next_seq=next_seq,
            parsed=parsed,
            vanished=vanished,
            now=now,
            result=result,
        )
        if state.get_meta(conn, _CLASSIFIER_KEY) != classifier.fingerprint:
            result.reclassified = _reclassify_all(conn, classifier)
            if result.reclassified:
                state.record_article_changes(conn, None)
            state.set_meta(conn, _CLASSIFIER_KEY, classifier.fingerprint)
        if not baseline:
            result.matched = record_matches(conn, result.new, now=now)
        if subscribers is not None:
            result.subscribers = sync_subscribers(conn, subscribers, now=now, held=held_subscribers)
        result.articles = _count_active(conn)
        if result.changed:
            # In the transaction that records the change: a crash before publishing leaves
            # the feeds marked for rebuilding, not silently behind.
            state.set_meta(conn, _FEEDS_DIRTY_KEY, "1")
    for error in result.errors:
        log.warning("%s", error)
    result.duration = time.perf_counter() - started
    return result


def _count_active(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(articles_table)
            .where(articles_table.c.removed_at.is_(None))
        ).scalar()
        or 0
    )


def _rows_by_id(conn: Connection, ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        for row in conn.execute(select(articles_table).where(articles_table.c.id.in_(chunk))):
            found[row.id] = row
    return found


def _active_by_source(conn: Connection, paths: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for start in range(0, len(paths), _CHUNK):
        chunk = paths[start : start + _CHUNK]
        for row in conn.execute(
            select(articles_table.c.id, articles_table.c.source).where(
                articles_table.c.source.in_(chunk), articles_table.c.removed_at.is_(None)
            )
        ):
            found[row.source].add(row.id)
    return found


_CHUNK = 500
# Columns written when an article's content or metadata changed (the same for every row,
# so the updates go out as one executemany).
_CHANGED_COLUMNS = (
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


def _reconcile(
    conn: Connection,
    *,
    state: State,
    classifier: Classifier,
    next_seq: int,
    parsed: list[ReadFile],
    vanished: list[str],
    now: datetime,
    result: ReloadResult,
) -> None:
    """Apply what changed files say to state, with a handful of statements in all;
    new articles are numbered from ``next_seq``."""
    changed_paths = {read.stat.location for read in parsed} | set(vanished)
    if next_seq == 1:  # nothing recorded yet: nothing to look up
        existing: dict[str, Any] = {}
        before_by_source: dict[str, set[str]] = {}
    else:
        existing = _rows_by_id(conn, sorted({raw.id for read in parsed for raw in read.articles}))
        before_by_source = _active_by_source(conn, sorted(changed_paths))
    new_offset = 0
    edit_offset = 0
    seen_now: set[str] = set()
    inserts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    gone: list[str] = []
    file_rows: list[dict[str, Any]] = []
    for read in parsed:
        item, problems = read.stat, read.problems
        path = item.location
        result.errors.extend(problems)
        readable = not any("vanished" in p.message or "cannot read" in p.message for p in problems)
        kept: set[str] = set()
        for raw, classes in zip(read.articles, read.classes, strict=True):
            problem = _check_topics(classifier, raw)
            if problem is not None:
                result.errors.append(problem)
                continue
            if raw.id in seen_now:
                result.errors.append(
                    StoreError(
                        raw.source,
                        f"duplicate article id {raw.id!r} (same id or title earlier in this "
                        "scan); skipped",
                        line=raw.line,
                    )
                )
                continue
            row = existing.get(raw.id)
            if (
                row is not None
                and row.removed_at is None
                and row.source != path
                and row.source not in changed_paths
            ):
                result.errors.append(
                    StoreError(
                        raw.source,
                        f"duplicate of article {raw.id!r} in {row.source}:{row.line}; skipped",
                        line=raw.line,
                    )
                )
                continue
            seen_now.add(raw.id)
            kept.add(raw.id)
            if row is None:
                first_seen = now - timedelta(seconds=new_offset)
                new_offset += 1
                inserts.append(
                    {"seq": next_seq, **_article_values(classifier, raw, classes, first_seen)}
                )
                next_seq += 1
                result.new.append(raw.id)
                continue
            front_changed = (
                split_slugs(row.front_regions) if row.front_regions is not None else None
            ) != raw.regions or (
                split_slugs(row.front_topics) if row.front_topics is not None else None
            ) != raw.topics
            content_changed = row.content_hash != raw.content_hash
            meta_changed = (
                row.summary != (raw.summary or summarize(raw.body))
                or row.link != raw.link
                or row.author != raw.author
                or row.format != raw.format
                or row.front_date != raw.date
                or row.front_updated != raw.updated
            )
            if not (content_changed or front_changed or meta_changed):
                moves.append({"key": raw.id, "source": path, "line": raw.line})
                continue
            values = _article_values(classifier, raw, classes, row.first_seen)
            if content_changed:
                moved = now - timedelta(seconds=edit_offset)
                edit_offset += 1
                if moved <= row.updated:
                    moved = row.updated + timedelta(seconds=1)
                values["updated"] = raw.updated or moved
                result.updated.append(raw.id)
            else:
                values["updated"] = raw.updated or row.updated
            changes.append({"key": raw.id, **{c: values[c] for c in _CHANGED_COLUMNS}})
        if readable:
            gone.extend(sorted(before_by_source.get(path, set()) - kept))
            file_rows.append(
                {
                    "path": path,
                    "size": item.size,
                    "mtime_ns": item.mtime_ns,
                    "problems": "\n".join(str(problem) for problem in problems),
                }
            )
    for path in vanished:
        gone.extend(sorted(before_by_source.get(path, set())))
    # An article found again elsewhere in this scan moved; it did not leave the store.
    gone = [article_id for article_id in dict.fromkeys(gone) if article_id not in seen_now]
    insert_rows(conn, articles_table, inserts)
    if changes:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(
                {**{column: bindparam(column) for column in _CHANGED_COLUMNS}, "removed_at": None}
            ),
            changes,
        )
    if moves:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(source=bindparam("source"), line=bindparam("line"), removed_at=None),
            moves,
        )
    for start in range(0, len(gone), _CHUNK):
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id.in_(gone[start : start + _CHUNK]))
            .values(removed_at=now)
        )
    result.removed.extend(gone)
    touched = [row["id"] for row in inserts] + [row["key"] for row in changes + moves] + gone
    if touched:
        state.record_article_changes(conn, touched)
    stale = sorted({row["path"] for row in file_rows} | set(vanished))
    for start in range(0, len(stale), _CHUNK):
        conn.execute(
            delete(files_table).where(files_table.c.path.in_(stale[start : start + _CHUNK]))
        )
    insert_rows(conn, files_table, file_rows)


def _article_values(
    classifier: Classifier, raw: RawArticle, classes: Classes, first_seen: datetime
) -> dict[str, Any]:
    regions, topics = classes
    published = raw.date or first_seen
    return {
        "id": raw.id,
        "source": str(raw.source),
        "line": raw.line,
        "title": raw.title,
        "body": raw.body,
        "format": raw.format,
        "summary": raw.summary or summarize(raw.body),
        "link": raw.link,
        "author": raw.author,
        "regions": regions,
        "topics": topics,
        "front_regions": join_slugs(raw.regions) if raw.regions is not None else None,
        "front_topics": join_slugs(raw.topics) if raw.topics is not None else None,
        "front_date": raw.date,
        "front_updated": raw.updated,
        "content_hash": raw.content_hash,
        "classified_with": classifier.fingerprint,
        "first_seen": first_seen,
        "published": published,
        "updated": raw.updated or published,
        "removed_at": None,
    }


def _reclassify_all(conn: Connection, classifier: Classifier) -> int:
    """Classify every stored article again (the gazetteer or taxonomy changed)."""
    rows = conn.execute(
        select(
            articles_table.c.id,
            articles_table.c.title,
            articles_table.c.body,
            articles_table.c.front_regions,
            articles_table.c.front_topics,
            articles_table.c.classified_with,
        )
    ).all()
    changes = []
    for row in rows:
        if row.classified_with == classifier.fingerprint:
            continue
        front_regions = split_slugs(row.front_regions) if row.front_regions is not None else None
        front_topics = split_slugs(row.front_topics) if row.front_topics is not None else None
        regions, topics = classes_of(classifier, row.title, row.body, front_regions, front_topics)
        changes.append({"key": row.id, "regions": regions, "topics": topics})
    if changes:
        conn.execute(
            update(articles_table)
            .where(articles_table.c.id == bindparam("key"))
            .values(
                regions=bindparam("regions"),
                topics=bindparam("topics"),
                classified_with=classifier.fingerprint,
            ),
            changes,
        )
    return len(changes)


# --- the whole cycle -----------------------------------------------------------------------

_FEEDS_DIRTY_KEY = "feeds_dirty"
_FEEDS_CONFIG_KEY = "feeds_config"
_FEEDS_PUBLISHING_KEY = "feeds_publishing"
_WEBSUB_PENDING_KEY = "websub_pending"


@dataclass(slots=True)
class CycleResult:
    reload: ReloadResult
    publish: PublishResult | None = None
    websub_failed: list[str] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    publish_error: str = ""  # publishing failed (disk full...): the old files stay

    def summary(self) -> str:
        feeds = (
            f"{len(self.publish.written)} files written ({self.publish.channels_rendered} "
            f"channels, {self.publish.pages_rendered} pages)"
            if self.publish is not None
            else "publishing failed"
            if self.publish_error
            else "feeds unchanged"
        )
        return (
            f"{self.reload.summary()}; {feeds}; {self.reload.matched} matches, "
            f"{len(self.queued)} mails queued"
        )


def load_subscribers_file(
    config: Config, classifier: Classifier
) -> tuple[list[Subscriber] | None, list[str], frozenset[str]]:
    """The subscribers file's valid entries (None when the file cannot be used at all), its
    problems, and the addresses of its invalid entries (they keep their subscriptions).

    Like store files, the file is parsed again only when its size or mtime changed.
    """
    path = config.subscribers.file
    topics = frozenset(classifier.taxonomy.topics)
    try:
        stat = path.stat()
        key: tuple[object, ...] | None = (str(path), stat.st_size, stat.st_mtime_ns, topics)
    except OSError:
        key = None
    if key is not None and key in _SUBSCRIBERS_CACHE:
        return _SUBSCRIBERS_CACHE[key]
    listed_all, errors = load_subscribers(path, set(topics))
    problems = [str(error) for error in errors]
    unusable = not listed_all and any(
        marker in problem
        for problem in problems
        for marker in ("not found", "cannot read", "invalid TOML", "must be an array")
    )
    result = (None if unusable else listed_all), problems, held_addresses(list(errors))
    if key is not None:
        _SUBSCRIBERS_CACHE.clear()
        _SUBSCRIBERS_CACHE[key] = result
    return result


_SUBSCRIBERS_CACHE: dict[
    tuple[object, ...], tuple[list[Subscriber] | None, list[str], frozenset[str]]
] = {}
# The parse of the subscribers file last synced into each state database (by URL).
_LAST_SYNCED: dict[str, list[Subscriber]] = {}


def site_from_config(config: Config) -> Site:
    return Site(
        title=config.site.title,
        base_url=config.site.base_url,
        language=config.site.language,
        description=config.site.description,
        ttl_minutes=max(1, config.store.reload_interval // 60),
        tag_authority=config.tag_authority,
        tag_date=config.feeds.tag_date,
        hub=config.feeds.websub_hub,
        subscribe_url=f"{config.site.base_url}subscribe" if config.subscriptions_enabled else "",
    )


def names_from(classifier: Classifier) -> Names:
    return Names(
        regions={slug: region.name for slug, region in classifier.gazetteer.regions.items()},
        topics={slug: topic.name for slug, topic in classifier.taxonomy.topics.items()},
    )


def channels_from(classifier: Classifier) -> list[Channel]:
    return build_channels(
        {slug: (r.name, r.description) for slug, r in classifier.gazetteer.regions.items()},
        {slug: (t.name, t.description) for slug, t in classifier.taxonomy.topics.items()},
    )


def run_cycle(
    config: Config,
    classifier: Classifier,
    state: State,
    *,
    now: datetime,
    ping: Callable[[str, list[str]], list[str]] | None = None,
) -> CycleResult:
    """Reload the store and the subscribers, publish what changed, queue the mail due."""
    listed, problems, held = load_subscribers_file(config, classifier)
    synced_before = listed is not None and _LAST_SYNCED.get(config.state.url) is listed
    if not synced_before:
        for problem in problems:
            log.warning("%s", problem)
    result = CycleResult(
        reload_store(
            config.store.path,
            classifier,
            state,
            now=now,
            # The same parse of an unchanged file was synced already: nothing to do.
            subscribers=None if synced_before else listed,
            held_subscribers=held,
        ),
    )
    if listed is not None:
        _LAST_SYNCED[config.state.url] = listed
    site = site_from_config(config)
    names = names_from(classifier)
    output_dir = config.feeds.output_dir
    settings = f"{settings_signature(site, names, config.feeds.max_items)} {output_dir}"
    with state.transaction() as conn:
        # Dirty: something changed that is not published yet. Publishing: a publish began
        # and did not finish (a crash or a full disk), so files on disk are in doubt.
        dirty = state.get_meta(conn, _FEEDS_DIRTY_KEY) == "1"
        interrupted = state.get_meta(conn, _FEEDS_PUBLISHING_KEY) == "1"
        same_settings = state.get_meta(conn, _FEEDS_CONFIG_KEY) == settings
        # Rebuilding after an interrupted publish, a settings change or a lost output
        # directory: check every page on disk too, not only those whose inputs changed.
        verify = interrupted or not same_settings or not (output_dir / "index.html").is_file()
        if dirty or result.reload.changed or verify:
            # Recorded before acting: a crash while publishing makes the next cycle rebuild.
            state.set_meta(conn, _FEEDS_DIRTY_KEY, "1")
            state.set_meta(conn, _FEEDS_PUBLISHING_KEY, "1")
            dirty = True
    if dirty:
        try:
            result.publish = publish(
                state,
                site=site,
                names=names,
                channels=channels_from(classifier),
                output_dir=output_dir,
                max_items=config.feeds.max_items,
                verify_pages=verify,
                archive_size=config.feeds.archive_size,
            )
        except OSError as exc:
            # A full or unwritable disk: every file already there stays whole (writes are
            # atomic), mail still goes out, and the next cycle publishes again (still dirty).
            where = f": {exc.filename}" if exc.filename else ""
            result.publish_error = f"publishing failed: {exc.strerror or exc}{where}"
            log.error("%s", result.publish_error)
        else:
            with state.transaction() as conn:
                state.set_meta(conn, _FEEDS_DIRTY_KEY, "0")
                state.set_meta(conn, _FEEDS_PUBLISHING_KEY, "0")
                state.set_meta(conn, _FEEDS_CONFIG_KEY, settings)
    if site.hub:
        result.websub_failed = _notify_hub(
            state, site.hub, result.publish.changed_feed_urls if result.publish else [], ping
        )
    result.queued = queue_mail(config, classifier, state, now=now)
    return result


def queue_mail(config: Config, classifier: Classifier, state: State, *, now: datetime) -> list[int]:
    """Compose and store the messages due at ``now`` (immediate ones and due digests)."""
    secret = load_secret(state, config.mail.unsubscribe_secret_file)
    mailer = Mailer(config, names_from(classifier), secret)
    with state.transaction() as conn:
        mailer.feed_generations = rotated_private_feeds(conn)
        return queue_due(conn, now=now, composer=mailer)


async def deliver_due(
    config: Config,
    state: State,
    *,
    clock: Callable[[], datetime],
    transport: Transport | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Send every queued message that is due (the async right edge of the cycle)."""
    own = transport is None
    used = transport or transport_from_config(config)
    try:
        return await deliver(
            state,
            used,
            sender=envelope_sender(config.mail.from_),
            clock=clock,
            concurrency=config.mail.smtp.pool_size if config.mail.transport == "smtp" else 1,
            should_stop=should_stop,
        )
    finally:
        if own:
            await used.close()


def _notify_hub(
    state: State,
    hub: str,
    changed: list[str],
    ping: Callable[[str, list[str]], list[str]] | None,
) -> list[str]:
    """Ping the hub for changed feeds, and again for those it did not take last time."""
    with state.transaction() as conn:
        pending = json.loads(state.get_meta(conn, _WEBSUB_PENDING_KEY) or "[]")
        urls = list(dict.fromkeys([*pending, *changed]))
        state.set_meta(conn, _WEBSUB_PENDING_KEY, json.dumps(urls))
    if not urls:
        return []
    failed = (ping or websub_ping)(hub, urls)
    with state.transaction() as conn:
        state.set_meta(conn, _WEBSUB_PENDING_KEY, json.dumps(failed))
    return failed
