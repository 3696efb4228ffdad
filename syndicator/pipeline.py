"""The cycle: read the store, classify what changed, reconcile with state, publish, queue mail.

A :class:`Pipeline` owns what one process keeps between cycles (configuration,
classifier, state, clock, the last parse of the subscribers file, the catalogue
publishing keeps); the service and ``run --once`` each own one. Each stage is a
pure plan and its application: :func:`plan_reconcile` says what is new, updated
and removed from the scan and the stored rows, :func:`reload_store` records it;
:func:`~syndicator.publish.publisher.plan_publish` says what to write,
:func:`~syndicator.publish.publisher.publish` writes it.

Dates follow the store's contract: ``published`` is the front-matter date or
the first time this installation saw the article; ``updated`` moves only when
the title or body changed. Articles first seen in the same cycle get distinct
timestamps, one second apart in store order (the first one newest), so feed
readers and validators can tell them apart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.errors import ErrorKind, StoreError
from syndicator.mail.deliver import DeliveryReport, deliver, envelope_sender
from syndicator.mail.mailer import Mailer
from syndicator.mail.queue import SubscriberIndex, queue_due, record_matches
from syndicator.mail.roster import SyncResult, sync_subscribers
from syndicator.mail.subscribers import Subscriber, SubscribersFile, load_subscribers_file
from syndicator.mail.transport import Transport, transport_from_config
from syndicator.mail.unsubscribe import load_secret
from syndicator.models import RawArticle, summarize
from syndicator.publish.feeds import Channel, Names, Site, build_channels
from syndicator.publish.publisher import (
    KeptCatalogue,
    PageOnDemand,
    PublishResult,
    prime_catalogue,
    publish,
    settings_signature,
    write_if_changed,
)
from syndicator.publish.websub import ping as websub_ping
from syndicator.state import articles as stored_articles
from syndicator.state import feeds as feed_marks
from syndicator.state.coordination import CYCLE_LOCK, exclusive_turn
from syndicator.state.db import State, join_slugs, split_slugs
from syndicator.state.meta import classified_with, record_classifier
from syndicator.state.readers import rotated_private_feeds
from syndicator.store.files import ScanResult, scan
from syndicator.store.ingest import Classes, ReadFile, classes_of, read_files
from syndicator.store.listing import StoreListing

if TYPE_CHECKING:
    from syndicator.mail.feedback import FeedbackReport

log = logging.getLogger(__name__)

# A file that could not be read now is out of sight, not gone: it keeps its articles.
_OUT_OF_SIGHT = frozenset({ErrorKind.UNREADABLE, ErrorKind.VANISHED})


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


# --- reconciling: the plan (pure) -------------------------------------------------------------


def vanished_files(scanned: ScanResult, known: Mapping[str, object]) -> list[str]:
    """The files state knows that left the store, as far as this scan can tell.

    Files in a directory that could not be read are out of sight, not gone: they keep
    their articles (as does everything when nothing at all could be scanned).
    """
    if scanned.errors and not scanned.files:
        return []
    current = {item.location for item in scanned.files}
    unreadable = tuple(
        f"{error.path}{os.sep}" for error in scanned.errors if error.kind is ErrorKind.UNREADABLE
    )
    return [path for path in known if path not in current and not path.startswith(unreadable)]


@dataclass(slots=True)
class ReconcilePlan:
    """What to record for a set of changed and vanished store files."""

    inserts: list[dict[str, Any]] = field(default_factory=list)  # new articles' rows
    changes: list[dict[str, Any]] = field(default_factory=list)  # content or metadata changed
    moves: list[dict[str, Any]] = field(default_factory=list)  # same article, new place
    removed: list[str] = field(default_factory=list)  # ids that left the store
    file_rows: list[dict[str, Any]] = field(default_factory=list)  # files read, to remember
    forget_files: list[str] = field(default_factory=list)  # file rows replaced or dropped
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    errors: list[StoreError] = field(default_factory=list)

    @property
    def touched(self) -> list[str]:
        """Every article id whose row this plan writes."""
        return (
            [row["id"] for row in self.inserts]
            + [row["key"] for row in self.changes + self.moves]
            + self.removed
        )


def _check_topics(classifier: Classifier, raw: RawArticle) -> StoreError | None:
    if raw.topics is None:
        return None
    unknown = [slug for slug in raw.topics if slug not in classifier.taxonomy.topics]
    if not unknown:
        return None
    return StoreError(
        raw.source,
        f"topics: unknown topic {unknown[0]!r} (syndicator check names the taxonomy in use); "
        "article skipped",
        kind=ErrorKind.UNKNOWN_NAME,
        line=raw.line,
    )


def plan_reconcile(
    *,
    classifier: Classifier,
    parsed: Sequence[ReadFile],
    vanished: Sequence[str],
    stored: Mapping[str, Any],
    active_by_source: Mapping[str, set[str]],
    next_seq: int,
    now: datetime,
) -> ReconcilePlan:
    """What the changed files ``parsed`` and the ``vanished`` ones mean for state.

    ``stored`` holds the stored rows of the articles the changed files hold (by id),
    ``active_by_source`` the ids of the active articles of each changed or vanished
    file; new articles are numbered from ``next_seq``. Pure: reads nothing, writes
    nothing.
    """
    plan = ReconcilePlan()
    changed_paths = {read.stat.location for read in parsed} | set(vanished)
    new_offset = 0
    edit_offset = 0
    seen_now: set[str] = set()
    gone: list[str] = []
    for read in parsed:
        item, problems = read.stat, read.problems
        path = item.location
        plan.errors.extend(problems)
        readable = not any(problem.kind in _OUT_OF_SIGHT for problem in problems)
        kept: set[str] = set()
        for raw, classes in zip(read.articles, read.classes, strict=True):
            problem = _check_topics(classifier, raw)
            if problem is not None:
                plan.errors.append(problem)
                continue
            if raw.id in seen_now:
                plan.errors.append(
                    StoreError(
                        raw.source,
                        f"duplicate article id {raw.id!r} (same id or title earlier in this "
                        "scan); skipped",
                        kind=ErrorKind.DUPLICATE,
                        line=raw.line,
                    )
                )
                continue
            row = stored.get(raw.id)
            if (
                row is not None
                and row.removed_at is None
                and row.source != path
                and row.source not in changed_paths
            ):
                plan.errors.append(
                    StoreError(
                        raw.source,
                        f"duplicate of article {raw.id!r} in {row.source}:{row.line}; skipped",
                        kind=ErrorKind.DUPLICATE,
                        line=raw.line,
                    )
                )
                continue
            seen_now.add(raw.id)
            kept.add(raw.id)
            if row is None:
                first_seen = now - timedelta(seconds=new_offset)
                new_offset += 1
                plan.inserts.append(
                    {"seq": next_seq, **_article_values(classifier, raw, classes, first_seen)}
                )
                next_seq += 1
                plan.new.append(raw.id)
                continue
            content_changed = row.content_hash != raw.content_hash
            if not (content_changed or _front_changed(row, raw) or _meta_changed(row, raw)):
                plan.moves.append({"key": raw.id, "source": path, "line": raw.line})
                continue
            values = _article_values(classifier, raw, classes, row.first_seen)
            if content_changed:
                moved = now - timedelta(seconds=edit_offset)
                edit_offset += 1
                if moved <= row.updated:
                    moved = row.updated + timedelta(seconds=1)
                values["updated"] = raw.updated or moved
                plan.updated.append(raw.id)
            else:
                values["updated"] = raw.updated or row.updated
            plan.changes.append(
                {"key": raw.id, **{c: values[c] for c in stored_articles.CHANGED_COLUMNS}}
            )
        if readable:
            gone.extend(sorted(active_by_source.get(path, set()) - kept))
            plan.file_rows.append(
                {
                    "path": path,
                    "size": item.size,
                    "mtime_ns": item.mtime_ns,
                    "problems": "\n".join(str(problem) for problem in problems),
                }
            )
    for path in vanished:
        gone.extend(sorted(active_by_source.get(path, set())))
    # An article found again elsewhere in this scan moved; it did not leave the store.
    plan.removed = [article_id for article_id in dict.fromkeys(gone) if article_id not in seen_now]
    plan.forget_files = sorted({row["path"] for row in plan.file_rows} | set(vanished))
    return plan


def _front_changed(row: Any, raw: RawArticle) -> bool:
    front_regions = split_slugs(row.front_regions) if row.front_regions is not None else None
    front_topics = split_slugs(row.front_topics) if row.front_topics is not None else None
    return front_regions != raw.regions or front_topics != raw.topics


def _meta_changed(row: Any, raw: RawArticle) -> bool:
    return bool(
        row.summary != (raw.summary or summarize(raw.body))
        or row.link != raw.link
        or row.author != raw.author
        or row.format != raw.format
        or row.front_date != raw.date
        or row.front_updated != raw.updated
    )


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


def plan_reclassify(classifier: Classifier, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """New regions and topics for the stored articles another classifier classified."""
    changes = []
    for row in rows:
        if row.classified_with == classifier.fingerprint:
            continue
        front_regions = split_slugs(row.front_regions) if row.front_regions is not None else None
        front_topics = split_slugs(row.front_topics) if row.front_topics is not None else None
        regions, topics = classes_of(
            classifier, row.title, row.body, front_regions, front_topics, article_id=row.id
        )
        changes.append(
            {
                "key": row.id,
                "regions": regions,
                "topics": topics,
                "moved": (regions, topics) != (row.regions, row.topics),
            }
        )
    return changes


# --- reconciling: reading and recording ----------------------------------------------------


def reload_store(
    store_path: Path,
    classifier: Classifier,
    state: State,
    *,
    now: datetime,
    subscribers: SubscribersFile | None = None,
    subscriber_index: SubscriberIndex | None = None,
    known_files: stored_articles.KnownFiles | None = None,
    listing: StoreListing | None = None,
) -> ReloadResult:
    """Bring state in line with the store; return what changed.

    In the same transaction, new articles are matched against the subscribers
    known so far (nothing is matched on the very first load of a store: that is
    the baseline), then ``subscribers`` (the subscribers file as read, when given and
    usable) is synced, so a subscriber added now receives only articles seen from now on,
    and state notes the file's signature and problems with it.
    ``known_files`` keeps the files state knows between calls (without it they are read);
    ``listing`` the store's listing (without it the store is scanned whole).
    """
    started = time.perf_counter()
    result = ReloadResult()
    scanned = scan(store_path) if listing is None else listing.scan(store_path, now=now)
    result.errors.extend(scanned.errors)
    result.files = len(scanned.files)
    kept_files = stored_articles.KnownFiles() if known_files is None else known_files
    with state.transaction() as conn:
        known = kept_files.read(state, conn)
        changed = [
            item for item in scanned.files if known.get(item.location) != (item.size, item.mtime_ns)
        ]
        # Every file state knows found again (the usual cycle): none vanished.
        found_again = len(scanned.files) - sum(1 for item in changed if item.location not in known)
        vanished = [] if found_again == len(known) else vanished_files(scanned, known)
        parsed = read_files(classifier, changed)
        result.files_read = len(changed)
        next_seq = state.next_seq(conn)
        baseline = next_seq == 1  # no article was ever recorded: nothing to look up
        plan = plan_reconcile(
            classifier=classifier,
            parsed=parsed,
            vanished=vanished,
            stored={}
            if baseline
            else stored_articles.rows_by_id(
                conn, sorted({raw.id for read in parsed for raw in read.articles})
            ),
            active_by_source={}
            if baseline
            else stored_articles.active_by_source(
                conn, sorted({read.stat.location for read in parsed} | set(vanished))
            ),
            next_seq=next_seq,
            now=now,
        )
        stored_articles.record_articles(
            conn,
            new=plan.inserts,
            changed=plan.changes,
            moved=plan.moves,
            removed=plan.removed,
            now=now,
        )
        touched = plan.touched
        if touched:
            state.record_article_changes(conn, touched)
        files_revisions = stored_articles.record_files(
            conn, forget=plan.forget_files, read=plan.file_rows
        )
        result.errors.extend(plan.errors)
        result.new.extend(plan.new)
        result.updated.extend(plan.updated)
        result.removed.extend(plan.removed)
        if classified_with(conn) != classifier.fingerprint:
            changes = plan_reclassify(classifier, stored_articles.classification_inputs(conn))
            stored_articles.record_classes(
                conn,
                [{key: change[key] for key in ("key", "regions", "topics")} for change in changes],
                classified_with=classifier.fingerprint,
            )
            result.reclassified = len(changes)
            moved = [change["key"] for change in changes if change["moved"]]
            if moved:
                # Only the articles whose regions or topics moved (a changed gazetteer, taxonomy
                # or correction) are news to the publishers; when this transaction recorded
                # other changes already, they read everything instead.
                state.record_article_changes(conn, None if touched else moved)
            record_classifier(conn, classifier.fingerprint)
        if not baseline:
            result.matched = record_matches(conn, result.new, now=now, index=subscriber_index)
        if subscribers is not None and subscribers.listed is not None:
            result.subscribers = sync_subscribers(
                conn,
                subscribers.listed,
                now=now,
                held=subscribers.held,
                signature=subscribers.signature,
                problems=subscribers.problems,
            )
        result.articles = stored_articles.count_active(conn)
        if result.changed:
            # In the transaction that records the change: a crash before publishing leaves
            # the feeds marked for rebuilding, not silently behind.
            feed_marks.mark_feeds_dirty(conn)
    kept_files.recorded(files_revisions, forget=plan.forget_files, read=plan.file_rows)
    for error in result.errors:
        log.warning("%s", error)
    result.duration = time.perf_counter() - started
    return result


# --- the whole cycle -----------------------------------------------------------------------


SKIPPED_LINE = "another instance is running the cycle; skipped this round"


@dataclass(slots=True)
class CycleResult:
    reload: ReloadResult
    publish: PublishResult | None = None
    websub_failed: list[str] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    publish_error: str = ""  # publishing failed (disk full...): the old files stay
    skipped: bool = False  # another instance was running the cycle
    feedback: FeedbackReport | None = None  # bounces and complaints read this cycle

    def summary(self) -> str:
        if self.skipped:
            return SKIPPED_LINE
        feeds = (
            f"{len(self.publish.written)} files written ({self.publish.channels_rendered} "
            f"channels, {self.publish.pages_rendered} pages)"
            if self.publish is not None
            else "publishing failed"
            if self.publish_error
            else "feeds unchanged"
        )
        summary = (
            f"{self.reload.summary()}; {feeds}; {self.reload.matched} matches, "
            f"{len(self.queued)} mails queued"
        )
        if self.feedback is not None and self.feedback.read:
            summary += (
                f"; {self.feedback.read} bounce reports ({len(self.feedback.suspended)} "
                f"suspended, {len(self.feedback.unsubscribed)} unsubscribed)"
            )
        return summary


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


class Pipeline:
    """One process's cycle: configuration, classifier, state, clock, and what is kept
    between cycles (the last parse of the subscribers file and the catalogue publishing
    keeps). Nothing here reads the real time: ``clock`` is handed in."""

    def __init__(
        self,
        config: Config,
        classifier: Classifier,
        state: State,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.state = state
        self.clock = clock
        self.catalogue = KeptCatalogue()
        # The active subscribers' matching index, kept while they do not change.
        self.subscriber_index = SubscriberIndex()
        # The store files state knows, kept while no other process changes them.
        self.known_files = stored_articles.KnownFiles()
        # The store's files, listed whole once and then from what a watch saw change.
        self.listing = StoreListing()
        # The subscribers file as last parsed: the key (path, size, mtime, topics) and result.
        self._subscribers: tuple[tuple[object, ...], SubscribersFile] | None = None
        # The parse last synced into state (the same parse again needs no sync).
        self._synced: list[Subscriber] | None = None

    def configure(self, config: Config, classifier: Classifier) -> None:
        """Run with a new configuration from the next cycle on."""
        self.config, self.classifier = config, classifier

    def subscribers_file(self) -> SubscribersFile:
        """:func:`load_subscribers_file`, parsed again only when the file's size or mtime
        (or the known topics) changed, like store files."""
        path = self.config.subscribers.file
        try:
            stat = path.stat()
        except OSError:
            return load_subscribers_file(path, self.classifier.taxonomy.topics)
        key = (
            str(path),
            stat.st_size,
            stat.st_mtime_ns,
            frozenset(self.classifier.taxonomy.topics),
        )
        if self._subscribers is not None and self._subscribers[0] == key:
            return self._subscribers[1]
        loaded = load_subscribers_file(path, self.classifier.taxonomy.topics)
        self._subscribers = (key, loaded)
        return loaded

    def cycle(
        self,
        *,
        now: datetime | None = None,
        ping: Callable[[str, list[str]], list[str]] | None = None,
    ) -> CycleResult:
        """Reload the store and the subscribers, publish what changed, queue the mail due.

        One instance at a time: when another instance sharing the database is running the
        cycle, this one skips the round (``skipped``), only publishing its own files again
        if they are behind the database.
        """
        with exclusive_turn(self.state, CYCLE_LOCK) as mine:
            if mine:
                return self._cycle(now=now, ping=ping)
        return self.catch_up()

    def catch_up(self) -> CycleResult:
        """The round of an instance that does not run the cycle: publish this instance's
        files again if they are behind the articles in state."""
        return catch_up_feeds(self.config, self.classifier, self.state)

    def _cycle(
        self,
        *,
        now: datetime | None,
        ping: Callable[[str, list[str]], list[str]] | None,
    ) -> CycleResult:
        now = self.clock() if now is None else now
        config, classifier, state = self.config, self.classifier, self.state
        loaded = self.subscribers_file()
        listed = loaded.listed
        synced_before = listed is not None and self._synced is listed
        if not synced_before:
            for problem in loaded.problems:
                log.warning("%s", problem)
        result = CycleResult(
            reload_store(
                config.store.path,
                classifier,
                state,
                now=now,
                # The same parse of an unchanged file was synced already: nothing to do.
                subscribers=None if synced_before else loaded,
                subscriber_index=self.subscriber_index,
                known_files=self.known_files,
                listing=self.listing,
            ),
        )
        if listed is not None:
            self._synced = listed
        self._publish(result)
        hub = config.feeds.websub_hub
        if hub:
            changed = result.publish.changed_feed_urls if result.publish else []
            result.websub_failed = _notify_hub(state, hub, changed, ping)
        result.feedback = process_feedback(config, state, now=now)
        result.queued = _queue_mail(config, classifier, state, now=now)
        return result

    def _publish(self, result: CycleResult) -> None:
        config, classifier, state = self.config, self.classifier, self.state
        site = site_from_config(config)
        names = names_from(classifier)
        output_dir = config.feeds.output_dir
        settings = f"{settings_signature(site, names, config.feeds.max_items)} {output_dir}"
        with state.transaction() as conn:
            marks = feed_marks.publish_marks(conn)
            # Rebuilding after an interrupted publish, a settings change or a lost output
            # directory: check every page on disk too, not only those whose inputs changed.
            verify = (
                marks.interrupted
                or marks.settings != settings
                or not (output_dir / "index.html").is_file()
            )
            revision = state.articles_revision(conn)
            published_as = _published_as(config, classifier, revision)
            changes = state.article_changes
            before = (
                changes[0]
                if result.reload.changed and changes is not None and changes[1] == revision
                else revision
            )
            # This directory was behind the database before this cycle (another instance
            # published the last changes): the signatures in state are not this directory's.
            fresh = _files_behind(config, _published_as(config, classifier, before))
            dirty = marks.dirty or result.reload.changed or verify or fresh
            if dirty:
                # Recorded before acting: a crash while publishing makes the next cycle rebuild.
                feed_marks.mark_publishing(conn)
        if not dirty:
            return
        try:
            result.publish = publish(
                state,
                site=site,
                names=names,
                channels=channels_from(classifier),
                output_dir=output_dir,
                max_items=config.feeds.max_items,
                verify_pages=verify or fresh,
                archive_size=config.feeds.archive_size,
                kept=self.catalogue,
                fresh=fresh,
            )
            write_if_changed(_marker(config), published_as.encode())
        except OSError as exc:
            # A full or unwritable disk: every file already there stays whole (writes are
            # atomic), mail still goes out, and the next cycle publishes again (still dirty).
            where = f": {exc.filename}" if exc.filename else ""
            result.publish_error = f"publishing failed: {exc.strerror or exc}{where}"
            log.error("%s", result.publish_error)
        else:
            with state.transaction() as conn:
                feed_marks.mark_published(conn, settings)

    def queue_mail(self, *, now: datetime | None = None) -> list[int]:
        """Compose and store the messages due at ``now`` (immediate ones and due digests),
        under the cycle's lock: a due digest is queued by one instance, once."""
        now = self.clock() if now is None else now
        return queue_mail(self.config, self.classifier, self.state, now=now)

    async def deliver(
        self,
        *,
        transport: Transport | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> DeliveryReport:
        """Send every queued message that is due by the pipeline's clock."""
        return await deliver_due(
            self.config, self.state, clock=self.clock, transport=transport, should_stop=should_stop
        )

    def prime(self) -> None:
        """Load what the cycle keeps between cycles now (the service, once started): the
        catalogue and archive pages publishing keeps, the store files state knows, the
        subscribers' matching index; so the first change after a start costs what it
        changes, not a read of every article."""
        prime_catalogue(self.state, self.catalogue, archive_size=self.config.feeds.archive_size)
        with self.state.engine.connect() as conn, conn.begin():
            self.known_files.read(self.state, conn)
            self.subscriber_index.current(conn)

    def page_writer(self) -> PageOnDemand:
        """Writes, on request, the page of an article nothing linked to yet."""
        config, classifier = self.config, self.classifier
        return PageOnDemand(
            self.state,
            site=site_from_config(config),
            names=names_from(classifier),
            channels=channels_from(classifier),
            output_dir=config.feeds.output_dir,
            max_items=config.feeds.max_items,
        )


# In the output directory: the articles revision and settings its files were built from.
# Several instances share the database but not their output directories: each one that
# finds its own files behind the database publishes them again.
PUBLISHED_MARKER = ".published-revision"


def _published_as(config: Config, classifier: Classifier, revision: str) -> str:
    site = site_from_config(config)
    settings = settings_signature(site, names_from(classifier), config.feeds.max_items)
    return f"{revision} {settings}"


def _marker(config: Config) -> Path:
    return config.feeds.output_dir / PUBLISHED_MARKER


def _files_behind(config: Config, wanted: str) -> bool:
    try:
        return _marker(config).read_text(encoding="utf-8") != wanted
    except OSError:
        return True


def catch_up_feeds(config: Config, classifier: Classifier, state: State) -> CycleResult:
    """Publish this instance's files again if they are behind the articles in state (the
    round of an instance that does not run the cycle)."""
    result = CycleResult(ReloadResult(), skipped=True)
    with state.engine.connect() as conn:
        wanted = _published_as(config, classifier, state.articles_revision(conn))
    if not _files_behind(config, wanted):
        return result
    try:
        result.publish = publish(
            state,
            site=site_from_config(config),
            names=names_from(classifier),
            channels=channels_from(classifier),
            output_dir=config.feeds.output_dir,
            max_items=config.feeds.max_items,
            verify_pages=True,
            archive_size=config.feeds.archive_size,
            fresh=True,
            record=False,
        )
        write_if_changed(_marker(config), wanted.encode())
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        result.publish_error = f"publishing failed: {exc.strerror or exc}{where}"
        log.error("%s", result.publish_error)
    return result


def run_cycle(
    config: Config,
    classifier: Classifier,
    state: State,
    *,
    now: datetime,
    ping: Callable[[str, list[str]], list[str]] | None = None,
) -> CycleResult:
    """One cycle at ``now`` by a pipeline of its own (nothing is kept for a next one)."""
    return Pipeline(config, classifier, state, clock=lambda: now).cycle(now=now, ping=ping)


def queue_mail(config: Config, classifier: Classifier, state: State, *, now: datetime) -> list[int]:
    """Compose and store the messages due at ``now`` (immediate ones and due digests).

    Under the cycle's lock: a due digest is queued by one instance, once.
    """
    with exclusive_turn(state, CYCLE_LOCK) as mine:
        if not mine:
            return []
        return _queue_mail(config, classifier, state, now=now)


def _queue_mail(
    config: Config, classifier: Classifier, state: State, *, now: datetime
) -> list[int]:
    secret = load_secret(state, config.mail.unsubscribe_secret_file)
    mailer = Mailer(config, names_from(classifier), secret)
    from syndicator.mail.suppression import drop_suppressed  # noqa: PLC0415

    with state.transaction() as conn:
        mailer.feed_generations = rotated_private_feeds(conn)
        queued = queue_due(conn, now=now, composer=mailer)
        # The suppression list wins over every subscription: such mail is never sent.
        dropped = drop_suppressed(state, conn)
    return [key for key in queued if key not in dropped] if dropped else queued


def process_feedback(config: Config, state: State, *, now: datetime) -> FeedbackReport | None:
    """Read the configured bounces and complaints, then check the reputation breaker."""
    if config.bounces.maildir is None and not config.bounces.imap.host:
        return None
    from syndicator.mail import breaker  # noqa: PLC0415
    from syndicator.mail.feedback import process_configured  # noqa: PLC0415

    secret = load_secret(state, config.mail.unsubscribe_secret_file)
    report = process_configured(config, state, secret=secret, now=now)
    breaker.evaluate(state, config.bounces)
    return report


async def deliver_due(
    config: Config,
    state: State,
    *,
    clock: Callable[[], datetime],
    transport: Transport | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Send every queued message that is due (the async right edge of the cycle)."""
    # Imported here: only delivery needs DKIM, pacing and the breaker.
    from syndicator.mail import breaker  # noqa: PLC0415
    from syndicator.mail.dkim import SigningTransport, signer_from_config  # noqa: PLC0415
    from syndicator.mail.pacing import PacedTransport  # noqa: PLC0415
    from syndicator.mail.verp import return_path  # noqa: PLC0415

    paused = breaker.paused(state)
    if paused is not None:
        log.debug("sending is paused: %s", paused)
        return DeliveryReport()
    signer = signer_from_config(config)
    secret = load_secret(state, config.mail.unsubscribe_secret_file)
    bounce_address = config.mail.bounce_address
    fixed_sender = envelope_sender(config.mail.from_)
    own = transport is None
    used = transport or transport_from_config(config)
    if signer is not None:
        used = SigningTransport(used, signer)
    used = PacedTransport(used, config.mail.rate_limits)
    try:
        return await deliver(
            state,
            used,
            # With mail.bounce_address, a return path per message (VERP); else mail.from.
            sender=(lambda key: return_path(bounce_address, secret, key))
            if bounce_address
            else fixed_sender,
            clock=clock,
            concurrency=config.mail.smtp.pool_size if config.mail.transport == "smtp" else 1,
            should_stop=should_stop,
            owner=state.instance_id,
            lease=timedelta(seconds=config.service.lease_seconds),
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
        urls = list(dict.fromkeys([*feed_marks.websub_pending(conn), *changed]))
        feed_marks.set_websub_pending(conn, urls)
    if not urls:
        return []
    failed = (ping or websub_ping)(hub, urls)
    with state.transaction() as conn:
        feed_marks.set_websub_pending(conn, failed)
    return failed
