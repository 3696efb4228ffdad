"""Complete feeds by archives (RFC 5005, "Feed Paging and Archiving", section 4).

Each channel's articles are dealt, in the order they arrive (the oldest first on a first
build), into archive pages of ``page_size`` entries: ``archive/<channel>/1.atom`` holds
the oldest. An article keeps its page for good; one that leaves the channel (removed from
the store, or classified elsewhere) leaves a gap instead of moving the others, so a full
page never changes unless an article on it is edited or removed, and then it alone is
rendered again. New articles go to the newest page until it is full, then open the next.

The channel's own Atom feed (the subscription document) links ``prev-archive`` to the
newest page; each page links ``prev-archive`` to the one before it and ``current`` to the
feed, and carries ``<fh:archive/>``. A client that walks ``prev-archive`` from the feed
sees every article of the channel, each on exactly one archive page.

A channel whose articles all sit on its first page has no archive document yet: a lone
page would have neither a page before nor after it to link (RFC 5005 asks for neither,
and the W3C validator warns about an archive without them). Its feed holds every one of
its articles instead and says so with ``<fh:complete/>`` (section 2); the archive is
published from the moment a second page opens, the first page with its ``next-archive``
link.

Assignments are kept in state (:mod:`syndicator.state.readers`) and cached in memory
between publishes, keyed by a revision any process bumps when it changes them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from syndicator.models import Article
from syndicator.publish.atom import render_archive_document
from syndicator.publish.feeds import (
    Channel,
    Names,
    Site,
)
from syndicator.state.db import State
from syndicator.state.feeds import feed_signatures
from syndicator.state.readers import (
    archive_entries,
    archives_revision,
    full_articles,
    lock_archives,
    save_archive_entries,
    set_feed_signatures,
)

ARCHIVE_DIR = "archive"
_BATCH = 2000  # articles read from state at once while rendering pages
_WRITERS = 4
_KEPT_ARTICLES = 20_000  # articles kept between batches of pages


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class Archivable(Protocol):
    """What archiving needs of an article."""

    @property
    def id(self) -> str: ...
    @property
    def published(self) -> datetime: ...
    @property
    def updated(self) -> datetime: ...
    @property
    def content_hash(self) -> str: ...
    @property
    def regions(self) -> tuple[str, ...]: ...
    @property
    def topics(self) -> tuple[str, ...]: ...


def archive_path(channel: Channel, page: int) -> str:
    """The file of an archive page, relative to the feeds directory."""
    return f"{ARCHIVE_DIR}/{channel.path}/{page}.atom"


def archive_url(site: Site, channel: Channel, page: int) -> str:
    return f"{site.base_url}feeds/{archive_path(channel, page)}"


def prev_archive_links(
    site: Site, channels: Sequence[Channel], newest: Mapping[str, int]
) -> dict[str, str]:
    """The ``prev-archive`` link of each channel's feed: its newest archive page (none
    while the channel fits on one page, which is then not published)."""
    return {
        channel.path: archive_url(site, channel, newest[channel.path])
        for channel in channels
        if is_archived(newest.get(channel.path, 0))
    }


def is_archived(newest_page: int) -> bool:
    """Whether a channel whose newest page is ``newest_page`` has archive documents: from
    its second page on (before that its feed is complete)."""
    return newest_page >= 2


def render_archive_page(
    site: Site,
    channel: Channel,
    page: int,
    items: Sequence[Article],
    names: Names,
    *,
    entries: Callable[[Article], str] | None = None,
    has_next: bool = False,
) -> bytes:
    """One archive document: its entries newest first, linked to the page before it, to
    the page after it once there is one (``has_next``), and to the channel's feed.

    RFC 5005 §4: an archive document links ``prev-archive`` unless it is the oldest, and
    ``next-archive`` unless it is the newest. A page is final once the next one exists,
    so it is rendered once more then, with its ``next-archive`` link, and never again.
    """
    return render_archive_document(
        site,
        channel,
        page,
        items,
        names,
        self_url=archive_url(site, channel, page),
        prev_url=archive_url(site, channel, page - 1) if page > 1 else "",
        next_url=archive_url(site, channel, page + 1) if has_next else "",
        entries=entries,
    )


@dataclass
class _Assignments:
    """Every channel's archive pages: which article sits on which page, and whether it is
    still there."""

    revision: str
    page_size: int
    pages: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    entries: dict[str, dict[str, tuple[int, bool]]] = field(default_factory=dict)
    # How many of each channel's entries are present, kept as they change.
    present: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(
        cls, revision: str, page_size: int, rows: Iterable[tuple[str, str, int, bool]]
    ) -> _Assignments:
        loaded = cls(revision, page_size)
        for channel, article_id, page, present in rows:
            loaded.entries.setdefault(channel, {})[article_id] = (page, present)
            loaded.pages.setdefault(channel, {}).setdefault(page, []).append(article_id)
            loaded.present[channel] = loaded.present.get(channel, 0) + present
        return loaded

    def newest_page(self, channel: str) -> int:
        pages = self.pages.get(channel)
        return max(pages) if pages else 0

    def assign(self, channel: str, article_id: str) -> int:
        pages = self.pages.setdefault(channel, {})
        newest = max(pages) if pages else 0
        if newest == 0 or len(pages[newest]) >= self.page_size:
            newest += 1
            pages[newest] = []
        pages[newest].append(article_id)
        self.entries.setdefault(channel, {})[article_id] = (newest, True)
        self.present[channel] = self.present.get(channel, 0) + 1
        return newest

    def set_present(self, channel: str, article_id: str, present: bool) -> None:
        page, was = self.entries[channel][article_id]
        if was != present:
            self.entries[channel][article_id] = (page, present)
            self.present[channel] = self.present.get(channel, 0) + (1 if present else -1)

    def present_count(self, channel: str) -> int:
        return self.present.get(channel, 0)

    def present_on(self, channel: str, page: int) -> list[str]:
        entries = self.entries[channel]
        return [i for i in self.pages[channel][page] if entries[i][1]]


class KeptArchives:
    """The page assignments one process keeps between updates from one state handle
    (none yet: the next update reads them all from state)."""

    __slots__ = ("assignments",)

    def __init__(self) -> None:
        self.assignments: _Assignments | None = None


@dataclass(slots=True)
class ArchiveResult:
    written: list[str] = field(default_factory=list)
    pages_rendered: int = 0
    # Each channel's newest page (absent: none yet), for the feeds' prev-archive links.
    newest: dict[str, int] = field(default_factory=dict)
    # How many articles each channel holds now.
    counts: dict[str, int] = field(default_factory=dict)


def _oldest_first(article: Archivable) -> tuple[datetime, str]:
    return (article.published, article.id)


def _fingerprint(article: Archivable) -> tuple[object, ...]:
    return (article.id, article.updated, article.content_hash, article.regions, article.topics)


def signature_of(*parts: object) -> str:
    """A digest of ``parts`` (by their ``repr``): what a published file was built from."""
    return hashlib.sha256(
        b"".join(repr(part).encode("utf-8") + b"\x1f" for part in parts)
    ).hexdigest()


@dataclass(slots=True)
class _Plan:
    """What bringing the assignments in line with the articles takes."""

    added: list[tuple[str, str, int]] = field(default_factory=list)
    presence: list[tuple[str, str, bool]] = field(default_factory=list)
    dirty: set[tuple[Channel, int]] = field(default_factory=set)
    newest: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _plan(
    cache: _Assignments,
    channels: Sequence[Channel],
    articles: Mapping[str, Archivable],
    changed: frozenset[str] | None,
) -> _Plan:
    """New pages for newcomers, presence changes and the pages to render again; ``cache``
    is brought up to date as it goes."""
    plan = _Plan()
    full = changed is None
    for channel in channels:
        entries = cache.entries.get(channel.path, {})
        if full:
            candidates: Iterable[str] = set(entries) | {
                i for i, article in articles.items() if channel.includes(article)
            }
        else:
            assert changed is not None
            candidates = changed
        newcomers: list[Archivable] = []
        newest_before = cache.newest_page(channel.path)
        for article_id in candidates:
            article = articles.get(article_id)
            inside = article is not None and channel.includes(article)
            entry = entries.get(article_id)
            if entry is None:
                if inside:
                    assert article is not None
                    newcomers.append(article)
                continue
            page, present = entry
            if present != inside:
                cache.set_present(channel.path, article_id, inside)
                plan.presence.append((channel.path, article_id, inside))
                plan.dirty.add((channel, page))
            elif inside and not full:
                plan.dirty.add((channel, page))  # edited
        for article in sorted(newcomers, key=_oldest_first):
            page = cache.assign(channel.path, article.id)
            plan.added.append((channel.path, article.id, page))
            plan.dirty.add((channel, page))
        if newest_before and cache.newest_page(channel.path) > newest_before:
            # The page that was the newest now has one after it: its next-archive link.
            plan.dirty.add((channel, newest_before))
        if full:
            plan.dirty |= {(channel, page) for page in cache.pages.get(channel.path, {})}
        plan.newest[channel.path] = cache.newest_page(channel.path)
        plan.counts[channel.path] = cache.present_count(channel.path)
    return plan


def prime_archives(state: State, kept: KeptArchives, page_size: int) -> None:
    """Load the page assignments to keep now, so the first update after it costs what
    changed, not a read of every assignment."""
    with state.engine.connect() as conn, conn.begin():
        revision = archives_revision(state, conn)
        kept.assignments = _Assignments.load(revision, page_size, archive_entries(conn))


def update_archives(
    state: State,
    *,
    site: Site,
    names: Names,
    channels: Sequence[Channel],
    output_dir: Path,
    page_size: int,
    articles: Mapping[str, Archivable],
    changed: frozenset[str] | None,
    site_signature: str,
    write: Any,
    html: Callable[[Channel, int, list[Article]], tuple[str, bytes]] | None = None,
    fresh: bool = False,
    kept: KeptArchives | None = None,
    entries: Callable[[Article], str] | None = None,
) -> ArchiveResult:
    """Bring the archive pages in line with ``articles`` (every active one, by id).

    ``changed`` names the articles changed since the last call (None: unknown, check
    everything). Only pages holding a changed article, or newly given one, are rendered
    again; ``write(path, data) -> bool`` writes a file atomically when its bytes changed.
    ``html(channel, page, items)`` gives the path and bytes of the page's HTML twin.
    ``fresh``: the signatures in state describe another instance's output directory, so
    every page is rendered (and written where its bytes differ).
    """
    result = ArchiveResult()
    kept = KeptArchives() if kept is None else kept
    cache = kept.assignments
    with state.engine.connect() as conn, conn.begin():
        revision = archives_revision(state, conn)
        if cache is None or cache.revision != revision or cache.page_size != page_size:
            cache = _Assignments.load(revision, page_size, archive_entries(conn))
            changed = None
    # Forget the cache until this update is through, so a failure half-way is made good
    # by a full check next time.
    kept.assignments = None
    plan = _plan(cache, channels, articles, changed)
    if plan.added or plan.presence:
        with state.transaction() as conn:
            lock_archives(conn)
            if archives_revision(state, conn) != cache.revision:
                # Another instance assigned pages since they were read: plan again from
                # theirs, under the lock, so both agree on every page.
                cache = _Assignments.load(
                    archives_revision(state, conn), page_size, archive_entries(conn)
                )
                plan = _plan(cache, channels, articles, None)
            if plan.added or plan.presence:
                cache.revision = save_archive_entries(
                    state, conn, added=plan.added, presence=plan.presence
                )
    result.newest.update(plan.newest)
    result.counts.update(plan.counts)
    # A channel still on one page publishes no archive document: its feed holds it all
    # (fh:complete), so neither its signature is read nor its page rendered.
    dirty = {(c, page) for c, page in plan.dirty if is_archived(cache.newest_page(c.path))}
    with state.engine.connect() as conn:
        stored = (
            {}
            if fresh
            else feed_signatures(conn, [archive_path(channel, page) for channel, page in dirty])
        )
    wanted: dict[str, tuple[Channel, int, list[str], bool]] = {}
    signatures: dict[str, str] = {}
    for channel, page in dirty:
        ids = cache.present_on(channel.path, page)
        relative = archive_path(channel, page)
        has_next = page < cache.newest_page(channel.path)
        signature = signature_of(
            site_signature,
            channel,
            page,
            has_next,
            [_fingerprint(articles[i]) for i in ids],
        )
        if stored.get(relative) != signature or not (output_dir / relative).is_file():
            wanted[relative] = (channel, page, ids, has_next)
            signatures[relative] = signature
    batch: list[tuple[str, Channel, int, list[str], bool]] = []
    directories: set[Path] = set()

    # Articles read for earlier pages: most sit in several channels' pages. Bounded, so a
    # huge archive does not hold every article at once.
    loaded: dict[str, Article] = {}

    def flush() -> None:
        missing = {i for _, _, _, ids, _ in batch for i in ids if i not in loaded}
        if len(loaded) + len(missing) > _KEPT_ARTICLES:
            loaded.clear()
            missing = {i for _, _, _, ids, _ in batch for i in ids}
        with state.engine.connect() as conn:
            loaded.update(full_articles(conn, missing))
        files: list[tuple[str, bytes]] = []
        for relative, channel, page, ids, has_next in batch:
            items = sorted((loaded[i] for i in ids), key=_oldest_first, reverse=True)
            files.append(
                (
                    relative,
                    render_archive_page(
                        site, channel, page, items, names, entries=entries, has_next=has_next
                    ),
                )
            )
            if html is not None:
                files.append(html(channel, page, items))
            result.pages_rendered += 1
        # fsync waits on the disk, not the interpreter: a few writers at once, and each
        # directory synced once at the end.
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            done = pool.map(
                lambda item: write(output_dir / item[0], item[1], sync_directory=False), files
            )
            written = zip(files, done, strict=True)
            result.written += [relative for (relative, _), wrote in written if wrote]
        for relative, _ in files:
            directories.add((output_dir / relative).parent)
        batch.clear()

    for relative, (channel, page, ids, has_next) in sorted(wanted.items()):
        batch.append((relative, channel, page, ids, has_next))
        if sum(len(entry[3]) for entry in batch) >= _BATCH:
            flush()
    flush()
    for directory in sorted(directories):
        _fsync_directory(directory)
    with state.transaction() as conn:
        set_feed_signatures(conn, signatures)
    kept.assignments = cache
    return result
