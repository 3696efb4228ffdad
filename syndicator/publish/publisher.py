"""Publishing: feeds, article pages, the index page and the OPML file, written atomically.

A file is written only when its bytes change (temp file in the same directory,
fsync, ``os.replace``), so readers and crashes never see half a file, and
mtimes and ETags stay put while nothing changes. Each channel's inputs are
hashed into a signature kept in state; a channel is rendered again only when
its signature changed or one of its files is missing, so a new article costs
the channels it belongs to, not all of them.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jinja2 import BytecodeCache, Environment, PackageLoader, select_autoescape
from jinja2.bccache import Bucket
from sqlalchemy.engine import Connection

from syndicator import __version__
from syndicator.models import Article
from syndicator.publish.archives import (
    KeptArchives,
    archive_path,
    prev_archive_links,
    prime_archives,
    signature_of,
    update_archives,
)
from syndicator.publish.atom import AtomEntries
from syndicator.publish.channel_pages import (
    ChannelItems,
    archive_page_path,
    channel_page_path,
    channel_page_url,
    render_channel_page,
)
from syndicator.publish.feeds import (
    CONTENT_TYPES,
    FORMATS,
    Channel,
    Names,
    Site,
    article_page_path,
    article_url,
    body_html,
    feed_updated,
    feed_url,
    iso_date,
    plain_title,
    render_all,
    render_opml,
    select_items,
)
from syndicator.state.articles import (
    active_article,
    articles_by_id,
    light_articles,
    record_page_signatures,
)
from syndicator.state.db import State
from syndicator.state.feeds import (
    articles_awaiting_mail,
    feed_signatures,
    record_feed_signatures,
)

log = logging.getLogger(__name__)

# Bump when templates or renderers change in a way that must rebuild every file.
RENDER_VERSION = "1"
INDEX_LATEST = 30


@dataclass(slots=True)
class PublishResult:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    channels_rendered: int = 0
    pages_rendered: int = 0
    changed_feed_urls: list[str] = field(default_factory=list)
    duration: float = 0.0


def write_if_changed(
    path: Path, data: bytes, *, sync_directory: bool = True, modified: datetime | None = None
) -> bool:
    """Atomically replace ``path`` with ``data`` unless it already holds exactly that.

    With ``sync_directory=False`` the caller fsyncs the directory itself, once for
    many files. ``modified`` becomes the file's modification time (a feed's own updated
    date, so that every instance serving it says the same ``Last-Modified``).
    """
    stamp = None if modified is None else int(modified.timestamp()) * 1_000_000_000
    try:
        current = path.stat()
        if current.st_size == len(data) and path.read_bytes() == data:
            if stamp is not None and current.st_mtime_ns != stamp:
                os.utime(path, ns=(stamp, stamp))
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name tells a later publish whose leftover it is.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).chmod(0o644)
        if stamp is not None:
            os.utime(temporary, ns=(stamp, stamp))
        Path(temporary).replace(path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
        if isinstance(exc, OSError) and exc.filename is None:
            # A failed write or fsync (a full disk) names no file: say which one.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    if sync_directory:
        _fsync_directory(path.parent)
    return True


# ".<name>.<pid>.<random>.tmp", as write_if_changed names its temporary files.
_TEMPORARY = re.compile(r"\..+\.([0-9]+)\.[a-z0-9_]+\.tmp")


def remove_leftovers(output_dir: Path) -> list[str]:
    """Delete temporary files left by writers that are gone (a publish killed mid-write),
    anywhere under ``output_dir`` (feeds, pages, archive pages and their HTML twins).

    Those of a live process (another publish running now) are left alone.
    """
    removed = []
    for directory, _subdirectories, names in os.walk(output_dir):
        for name in names:
            if not name.endswith(".tmp"):
                continue
            match = _TEMPORARY.fullmatch(name)
            if match is None or _alive(int(match.group(1))):
                continue
            path = Path(directory) / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path.relative_to(output_dir).as_posix())
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


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


class CompiledTemplates(BytecodeCache):
    """The templates as compiled once, kept with the catalogue between publishes: each
    publish makes an environment of its own (its globals are the site's), and compiling
    the templates again would cost more than rendering what one new article changes.
    Jinja checks each template's source against the checksum kept with its code."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


def _templates(compiled: CompiledTemplates | None) -> Environment:
    return Environment(
        loader=PackageLoader("syndicator", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
        bytecode_cache=compiled,
    )


class Pages:
    """The HTML pages: the index and one page per article."""

    def __init__(
        self,
        site: Site,
        names: Names,
        channels: Sequence[Channel],
        compiled: CompiledTemplates | None = None,
    ) -> None:
        self.site = site
        self.names = names
        self.channels = channels
        environment = _templates(compiled)
        environment.globals |= {
            "site": site,
            "site_title": plain_title(site.title),
            "version": __version__,
            "iso": iso_date,
            "title": lambda article: plain_title(article.title),
            "title_of": plain_title,
            "tags": self._tags,
            "article_url": lambda article: article_url(site, article),
            "feed_url": lambda channel, fmt: feed_url(site, channel, fmt),
            "formats": [(fmt, CONTENT_TYPES[fmt]) for fmt in FORMATS],
            "opml_url": f"{site.base_url}feeds/feeds.opml",
        }
        environment.globals["channel_url"] = lambda channel: channel_page_url(site, channel)
        environment.globals["channels_of"] = self._channels_of
        self._by_slug = {(c.kind, c.slug): c for c in channels}
        self.environment = environment
        self._items = ChannelItems(environment)
        self._index = environment.get_template("index.html")
        self._article = environment.get_template("article.html")
        all_channel = next((c for c in channels if c.kind == "all"), None)
        self._all_feed = feed_url(site, all_channel, "atom") if all_channel else ""

    def _channels_of(self, article: Article) -> list[Channel]:
        """The channels an article's page links back to: its regions, then its topics."""
        keys = [("region", slug) for slug in article.regions]
        keys += [("topic", slug) for slug in article.topics]
        return [self._by_slug[key] for key in keys if key in self._by_slug]

    def _tags(self, article: Article) -> str:
        regions = ", ".join(self.names.region(slug) for slug in article.regions)
        topics = ", ".join(self.names.topic(slug) for slug in article.topics)
        return f"{regions}{' · ' + topics if topics else ''}"

    def index(
        self,
        latest: Sequence[Article],
        counts: dict[str, int] | None = None,
        newest: dict[str, datetime] | None = None,
    ) -> bytes:
        """The index page: the latest articles first, then every channel with its number
        of articles and the date of its newest."""
        groups = [
            ("Everything", [c for c in self.channels if c.kind == "all"]),
            ("Regions", [c for c in self.channels if c.kind == "region"]),
            ("Topics", [c for c in self.channels if c.kind == "topic"]),
        ]
        return self._index.render(
            channels=self.channels,
            groups=groups,
            latest=latest,
            counts=counts or {},
            newest=newest or {},
        ).encode("utf-8")

    def channel(
        self, channel: Channel, articles: Sequence[Article], *, page: int = 0, older: int = 0
    ) -> bytes:
        return render_channel_page(
            self.environment,
            channel,
            articles,
            site=self.site,
            page=page,
            older=older,
            items=self._items,
        )

    def article(self, article: Article) -> bytes:
        return self._article.render(
            article=article,
            content=body_html(article, self.site.base_url),
            all_feed=self._all_feed,
        ).encode("utf-8")


def _page_signature(site_signature: str, item: _LightArticle | Article) -> str:
    return signature_of(
        site_signature,
        item.id,
        item.content_hash,
        item.published,
        item.updated,
        item.regions,
        item.topics,
    )


def settings_signature(site: Site, names: Names, max_items: int) -> str:
    """What every published file depends on besides its articles, this version included:
    when it changes (a setting, a name, an upgrade), everything is rendered again."""
    return signature_of(
        RENDER_VERSION,
        __version__,
        site,
        sorted(names.regions.items()),
        sorted(names.topics.items()),
        max_items,
    )


class _LightArticle:
    """Enough of an article to choose feed items and compute signatures."""

    __slots__ = (
        "content_hash",
        "id",
        "key",
        "link",
        "page_signature",
        "published",
        "regions",
        "topics",
        "updated",
    )

    def __init__(self, row: Any) -> None:
        self.id: str = row.id
        self.published: datetime = row.published
        self.updated: datetime = row.updated
        self.regions: tuple[str, ...] = tuple(row.regions.split())
        self.topics: tuple[str, ...] = tuple(row.topics.split())
        self.content_hash: str = row.content_hash
        self.link: str = row.link
        self.page_signature: str = row.page_signature
        # Feed order: newest first, then in the order they were first seen.
        self.key: tuple[float, int] = (-row.published.timestamp(), row.seq)


_by_key = attrgetter("key")


class _Catalogue:
    """Every active article, light, in feed order, and each channel's items.

    Kept between publishes in one process: when the only change since the last
    publish is one this process made (and named), just those articles are read
    again, so a new article costs its own rows, not the whole archive.
    """

    def __init__(self, revision: str, light: list[_LightArticle]) -> None:
        self.revision = revision
        self.order = sorted(light, key=_by_key)
        self.by_id = {item.id: item for item in self.order}
        self.selections: dict[str, list[_LightArticle]] = {}
        self.chosen_for: tuple[object, ...] | None = None

    def apply(self, rows: dict[str, Any], ids: frozenset[str]) -> list[_LightArticle]:
        """Bring the changed ``ids`` up to date (absent from ``rows``: removed); returns
        their versions before and after."""
        touched = []
        for article_id in ids:
            old = self.by_id.pop(article_id, None)
            if old is not None:
                index = bisect.bisect_left(self.order, old.key, key=_by_key)
                del self.order[index]
                touched.append(old)
            row = rows.get(article_id)
            if row is not None:
                new = _LightArticle(row)
                bisect.insort(self.order, new, key=_by_key)
                self.by_id[article_id] = new
                touched.append(new)
        return touched

    def choose(
        self,
        channels: Sequence[Channel],
        max_items: int,
        touched: list[_LightArticle] | None,
        *,
        whole: frozenset[str] = frozenset(),
        whole_limit: int = 0,
    ) -> None:
        """Each channel's items: all again, or only the channels ``touched`` articles
        were or are in. The channels named in ``whole`` get up to ``whole_limit`` items
        (all of theirs: they fit on one archive page) instead of ``max_items``."""
        chosen_for = (tuple(channels), max_items, whole, whole_limit)
        if touched is None or self.chosen_for != chosen_for:
            affected = list(channels)
        else:
            affected = [c for c in channels if any(c.includes(item) for item in touched)]
        for channel in affected:
            limit = max(max_items, whole_limit) if channel.path in whole else max_items
            self.selections[channel.path] = select_items(channel, self.order, limit)
        self.chosen_for = chosen_for


class KeptCatalogue:
    """The catalogue one process keeps between publishes from one state handle (none
    yet: the next publish reads every article), with the archive page assignments and
    the compiled page templates."""

    __slots__ = ("archives", "catalogue", "templates")

    def __init__(self) -> None:
        self.catalogue: _Catalogue | None = None
        self.archives = KeptArchives()
        self.templates = CompiledTemplates()


def _catalogue(
    state: State, conn: Connection, kept: KeptCatalogue, *, rebuild: bool
) -> tuple[_Catalogue, frozenset[str] | None, list[_LightArticle] | None]:
    """The catalogue as of now, the ids changed since the last publish (None: unknown)
    and their versions before and after."""
    revision = state.articles_revision(conn)
    catalogue = kept.catalogue
    changes = state.article_changes
    if not rebuild and catalogue is not None:
        if catalogue.revision == revision:
            return catalogue, frozenset(), []
        if changes is not None and changes[0] == catalogue.revision and changes[1] == revision:
            ids = changes[2]
            rows = {row.id: row for row in light_articles(conn, sorted(ids))}
            touched = catalogue.apply(rows, ids)
            catalogue.revision = revision
            return catalogue, ids, touched
    catalogue = _Catalogue(revision, [_LightArticle(row) for row in light_articles(conn)])
    kept.catalogue = catalogue
    return catalogue, None, None


def prime_catalogue(state: State, kept: KeptCatalogue, *, archive_size: int = 0) -> None:
    """Load the catalogue to keep now (with ``archive_size``, the archive page assignments
    too), so the first change after it costs what it changes, not a read of every article."""
    with state.engine.connect() as conn, conn.begin():
        _catalogue(state, conn, kept, rebuild=False)
    if archive_size:
        prime_archives(state, kept.archives, archive_size)


@dataclass(slots=True)
class PublishPlan:
    """What one publish renders and writes, decided before anything is written."""

    feeds: dict[Channel, list[_LightArticle]]  # channels to render, with their items
    feed_signatures: dict[str, str]  # of those channels, by path
    latest: list[_LightArticle]  # the index page's articles
    pages: set[str]  # ids of the article pages to write
    page_signatures: dict[str, str]  # of every linked article page, by id
    unpublish: list[str] | None  # ids whose pages go (None: whatever is stale on disk)

    @property
    def articles_needed(self) -> set[str]:
        """Ids of the articles to read in full to render the plan."""
        needed = {item.id for items in self.feeds.values() for item in items}
        return needed | {item.id for item in self.latest} | self.pages


def plan_publish(
    catalogue: _Catalogue,
    *,
    channels: Sequence[Channel],
    site_signature: str,
    stored_signatures: Mapping[str, str],
    feed_files: Collection[str],
    page_files: Collection[str] | None,
    awaiting_mail: Collection[str],
    changed: frozenset[str] | None,
    prev_archive: Mapping[str, str] | None = None,
    complete: Collection[str] = (),
) -> PublishPlan:
    """Which feeds and pages to render (pure: the files present are handed in).

    A channel is rendered when its signature changed or one of its ``feed_files``
    (paths relative to the output directory) is missing; a page when its signature
    changed or, with ``page_files`` (the names in ``articles/``), its file is missing.
    Pages are kept for the articles something links to (a feed, the index, a mail
    about to be sent) and for those ``changed`` that have one (None: every changed).
    ``prev_archive`` gives each channel's newest archive page (RFC 5005), which its feed
    links to, and ``complete`` the channels whose feed holds every one of their articles
    (``fh:complete``); a channel's HTML page counts among its files.
    """
    prev_archive = prev_archive or {}
    feeds: dict[Channel, list[_LightArticle]] = {}
    signatures: dict[str, str] = {}
    for channel in channels:
        items = catalogue.selections[channel.path]
        signature = signature_of(
            site_signature,
            channel,
            [(i.id, i.published, i.updated, i.content_hash, i.regions, i.topics) for i in items],
            prev_archive.get(channel.path, ""),
            channel.path in complete,
        )
        signatures[channel.path] = signature
        missing = any(f"{channel.path}.{fmt}" not in feed_files for fmt in FORMATS)
        missing = missing or channel_page_path(channel) not in feed_files
        if stored_signatures.get(channel.path) != signature or missing:
            feeds[channel] = items
    latest = catalogue.order[:INDEX_LATEST]
    linked: dict[str, _LightArticle] = {}
    for items in catalogue.selections.values():
        linked |= {item.id: item for item in items}
    linked |= {item.id: item for item in latest}
    linked |= {i: catalogue.by_id[i] for i in awaiting_mail if i in catalogue.by_id}
    if changed is None:  # after a full reload, any published page may be out of date
        linked |= {item.id: item for item in catalogue.order if item.page_signature}
    else:
        linked |= {
            i: catalogue.by_id[i]
            for i in changed
            if i in catalogue.by_id and catalogue.by_id[i].page_signature
        }
    page_signatures = {
        item.id: _page_signature(site_signature, item) for item in linked.values() if not item.link
    }
    pages = {
        article_id
        for article_id, signature in page_signatures.items()
        if catalogue.by_id[article_id].page_signature != signature
        or (page_files is not None and Path(article_page_path(article_id)).name not in page_files)
    }
    unpublish = (
        None
        if changed is None
        else [i for i in changed if i not in catalogue.by_id or catalogue.by_id[i].link]
    )
    return PublishPlan(feeds, signatures, latest, pages, page_signatures, unpublish)


def publish(
    state: State,
    *,
    site: Site,
    names: Names,
    channels: Sequence[Channel],
    output_dir: Path,
    max_items: int,
    verify_pages: bool = True,
    kept: KeptCatalogue | None = None,
    archive_size: int = 0,
    fresh: bool = False,
    record: bool = True,
) -> PublishResult:
    """Bring ``output_dir`` in line with the articles in state.

    Pages are published for the articles something links to (a feed, the index, a
    mail about to be sent) and kept up to date while their articles stay; the HTTP
    server renders any other article's page when it is asked for. ``kept`` is the
    catalogue kept from the last publish through ``state`` (none: read every article).
    With ``verify_pages``, every page file is checked on disk too (a forced rebuild).

    ``fresh``: the signatures in state describe another instance's output directory, not
    this one; every channel and linked page is rendered (only files whose bytes differ
    are written). Without ``record`` the signatures in state are left as they are (an
    instance catching up while another runs the cycle).
    """
    started = time.perf_counter()
    result = PublishResult()
    kept = KeptCatalogue() if kept is None else kept
    site_signature = settings_signature(site, names, max_items)
    with state.engine.connect() as conn, conn.begin():
        catalogue, changed, touched = _catalogue(state, conn, kept, rebuild=verify_pages)
        stored = {} if fresh else feed_signatures(conn, [c.path for c in channels])
        awaiting_mail = articles_awaiting_mail(conn)
    pages = Pages(site, names, channels, kept.templates)
    prev_archive: dict[str, str] = {}
    newest_page: dict[str, int] = {}
    counts: dict[str, int] = {}
    complete: frozenset[str] = frozenset()
    entries = AtomEntries(site, names)
    if archive_size:
        archived = update_archives(
            state,
            site=site,
            names=names,
            channels=channels,
            output_dir=output_dir,
            page_size=archive_size,
            articles=catalogue.by_id,
            changed=None if verify_pages else changed,
            site_signature=site_signature,
            write=write_if_changed,
            html=lambda channel, page, items: (
                archive_page_path(channel, page),
                pages.channel(channel, items, page=page, older=page - 1),
            ),
            fresh=fresh,
            kept=kept.archives,
            entries=entries,
        )
        result.written += archived.written
        newest_page, counts = archived.newest, archived.counts
        prev_archive = prev_archive_links(site, channels, archived.newest)
        complete = frozenset(c.path for c in channels if c.path not in prev_archive)
        result.removed += _remove_unarchived(output_dir, channels, complete)
    catalogue.choose(channels, max_items, touched, whole=complete, whole_limit=archive_size)
    plan = plan_publish(
        catalogue,
        channels=channels,
        site_signature=site_signature,
        stored_signatures=stored,
        feed_files=_present_feeds(output_dir),
        # Listing the page files costs a directory read: only for a forced rebuild.
        page_files=_listing(output_dir / "articles") if verify_pages else None,
        awaiting_mail=awaiting_mail,
        changed=changed,
        prev_archive=prev_archive,
        complete=complete,
    )
    if fresh:
        plan.pages = set(plan.page_signatures)
    with state.engine.connect() as conn:
        full = articles_by_id(conn, plan.articles_needed)
    # Files to write: (path relative to output_dir, bytes, modification time, the feed's
    # URL when it is one), written a batch at a time.
    batch: list[tuple[str, bytes, datetime | None, str]] = []

    def flush() -> None:
        done = _write_files(output_dir, [(path, data, mtime) for path, data, mtime, _ in batch])
        for (relative, _, _, url), wrote in zip(batch, done, strict=True):
            if wrote:
                result.written.append(relative)
                if url:
                    result.changed_feed_urls.append(url)
        batch.clear()

    for channel, items in plan.feeds.items():
        channel_articles = [full[item.id] for item in items]
        channel_updated = feed_updated(channel_articles)
        rendered = render_all(
            site,
            channel,
            channel_articles,
            names,
            prev_archive=prev_archive.get(channel.path, ""),
            complete=channel.path in complete,
            entries=entries,
        )
        for fmt, data in rendered.items():
            relative = f"{channel.path}.{fmt}"
            batch.append((relative, data, channel_updated, feed_url(site, channel, fmt)))
        older = newest_page.get(channel.path, 0) if channel.path in prev_archive else 0
        page = pages.channel(channel, channel_articles, older=older)
        batch.append((channel_page_path(channel), page, None, ""))
        result.channels_rendered += 1
        if len(batch) >= _BATCH_FILES:
            flush()
    flush()  # the feeds before the pages that list them
    updated = feed_updated([full[item.id] for item in plan.latest])
    index = pages.index(
        [full[item.id] for item in plan.latest],
        counts,
        {path: items[0].published for path, items in catalogue.selections.items() if items},
    )
    batch.append(("index.html", index, updated, ""))
    batch.append(("feeds.opml", render_opml(site, channels, updated), updated, ""))
    flush()
    result.written += _write_pages(output_dir, pages, [full[i] for i in sorted(plan.pages)])
    result.pages_rendered += len(plan.pages)
    if plan.unpublish is None:
        unpublished = _remove_stale_pages(output_dir, catalogue)
    else:
        unpublished = _remove_pages(output_dir, plan.unpublish)
    result.removed += [article_page_path(i) for i in unpublished]
    if verify_pages:  # a rebuild, as after a crash: clear what a killed writer left
        result.removed += remove_leftovers(output_dir)
    if not record:
        result.duration = time.perf_counter() - started
        return result
    with state.transaction() as conn:
        record_feed_signatures(
            conn, {channel.path: plan.feed_signatures[channel.path] for channel in plan.feeds}
        )
        record_page_signatures(
            conn,
            {
                **{i: plan.page_signatures[i] for i in plan.pages},
                **dict.fromkeys(unpublished, ""),
            },
        )
    for article_id in plan.pages:
        catalogue.by_id[article_id].page_signature = plan.page_signatures[article_id]
    result.duration = time.perf_counter() - started
    return result


def _remove_unarchived(
    output_dir: Path, channels: Sequence[Channel], complete: Collection[str]
) -> list[str]:
    """Remove the first archive page (and its HTML twin) of each channel in ``complete``,
    as published before a channel that fits on one page stopped having one; the paths
    removed."""
    removed = []
    for channel in channels:
        if channel.path not in complete:
            continue
        for relative in (archive_path(channel, 1), archive_page_path(channel, 1)):
            try:
                (output_dir / relative).unlink()
            except FileNotFoundError:
                continue
            removed.append(relative)
    return removed


def _listing(directory: Path, *, files_only: bool = False) -> set[str]:
    """The names in ``directory``, or only its regular files' (none when it does not
    exist)."""
    if not directory.is_dir():
        return set()
    with os.scandir(directory) as entries:
        return {entry.name for entry in entries if not files_only or entry.is_file()}


def _present_feeds(output_dir: Path) -> set[str]:
    """The files in ``output_dir`` and ``topics/``, relative to it."""
    present = _listing(output_dir, files_only=True)
    for directory in ("topics", "regions"):
        listed = _listing(output_dir / directory, files_only=True)
        present |= {f"{directory}/{name}" for name in listed}
    return present


class PageOnDemand:
    """Writes the page of an article nothing linked to yet, when someone asks for it.

    Publishing writes pages only for the articles a feed, the index or a mail links
    to; any other article's page is written the first time it is requested (by the
    HTTP server), and then kept up to date like the others.
    """

    def __init__(
        self,
        state: State,
        *,
        site: Site,
        names: Names,
        channels: Sequence[Channel],
        output_dir: Path,
        max_items: int,
    ) -> None:
        self.state = state
        self.output_dir = output_dir
        self._pages = Pages(site, names, channels)
        self._site_signature = settings_signature(site, names, max_items)

    def write(self, article_id: str) -> bool:
        """Write the page of active article ``article_id``; False when it has none."""
        with self.state.engine.connect() as conn:
            article = active_article(conn, article_id)
        if article is None or article.link:
            return False
        signature = _page_signature(self._site_signature, article)
        page = self.output_dir / article_page_path(article.id)
        write_if_changed(page, self._pages.article(article))
        with self.state.transaction() as conn:
            record_page_signatures(conn, {article.id: signature})
        return True


_BATCH_FILES = 64  # rendered files held at once before they are written


def _write_files(
    output_dir: Path, files: Sequence[tuple[str, bytes, datetime | None]]
) -> list[bool]:
    """Write ``files`` (path relative to ``output_dir``, bytes, modification time) from a
    few threads (fsync waits on the disk, not the interpreter), each directory fsynced once
    at the end; whether each one was written."""
    if not files:
        return []

    def write(file: tuple[str, bytes, datetime | None]) -> bool:
        relative, data, modified = file
        return write_if_changed(
            output_dir / relative, data, sync_directory=False, modified=modified
        )

    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        done = list(pool.map(write, files))
    for directory in sorted({(output_dir / relative).parent for relative, _, _ in files}):
        _fsync_directory(directory)
    return done


def _write_pages(output_dir: Path, pages: Pages, articles: Sequence[Article]) -> list[str]:
    """Render article pages and write them from a few threads (fsync waits on the disk,
    not the interpreter); the directory is fsynced once at the end."""
    if not articles:
        return []
    directory = output_dir / "articles"
    directory.mkdir(parents=True, exist_ok=True)

    def write(article: Article) -> str | None:
        relative = article_page_path(article.id)
        data = pages.article(article)
        if write_if_changed(output_dir / relative, data, sync_directory=False):
            return relative
        return None

    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        written = [relative for relative in pool.map(write, articles) if relative]
    _fsync_directory(directory)
    return written


_WRITERS = 4


def _remove_stale_pages(output_dir: Path, catalogue: _Catalogue) -> list[str]:
    """Delete pages of articles that left the store (or now link elsewhere); their ids."""
    directory = output_dir / "articles"
    if not directory.is_dir():
        return []
    removed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.endswith(".html"):
                continue
            article_id = unquote(entry.name.removesuffix(".html"))
            item = catalogue.by_id.get(article_id)
            if item is None or item.link:
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()
                removed.append(article_id)
    return sorted(removed)


def _remove_pages(output_dir: Path, ids: Sequence[str]) -> list[str]:
    """Delete the pages of ``ids``, those that exist; their ids."""
    removed = []
    for article_id in sorted(ids):
        with contextlib.suppress(FileNotFoundError):
            (output_dir / article_page_path(article_id)).unlink()
            removed.append(article_id)
    return removed
