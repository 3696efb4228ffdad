"""The built-in HTTP server: published feeds and pages, ``/healthz`` and ``/metrics``,
unsubscribe links, and the subscription pages of :mod:`syndicator.web.subscriptions`.

Files are served by hand rather than through ``web.static``, so that what leaves
``output_dir`` is decided here: a request path is split and percent-decoded one segment at a
time, every segment must look like a file name the daemon writes (letters, digits, ``.``,
``_``, ``-``; no leading dot), the joined path must stay inside ``output_dir`` after
``os.path.realpath``, only regular files of a few known types are served, and everything
else is a plain 404.

Conditional requests follow RFC 9110 (section 13.1.2: If-None-Match uses the weak
comparison; section 13.1.3: If-Modified-Since is ignored when If-None-Match is present). The
gzip and identity representations carry different strong ETags (RFC 9110 section 8.8.3), and
compressed bodies are kept in a small LRU keyed by path, size and modification time, so a
polling reader costs an ``open`` and an ``fstat``.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import hdrs, web

from syndicator.errors import SyndicatorError
from syndicator.mail.unsubscribe import UnsubscribeDesk
from syndicator.metrics import Metrics
from syndicator.web.pages import EMPTY_FORM, read_form, render_page
from syndicator.web.polling import PollLimit
from syndicator.web.subscriptions import SubscriptionPages

if TYPE_CHECKING:
    from syndicator.web.filter_feeds import ReaderFeeds

STALE_AFTER_INTERVALS = 3
CLIENT_MAX_SIZE = 64 * 1024  # the largest body is a subscription form, a few kilobytes
SHUTDOWN_TIMEOUT = 5.0  # seconds given to open requests when the daemon stops
# Seconds a connection may stay open without a complete request (idle between requests,
# silent from the start, or sending its headers slowly) before the server closes it:
# aiohttp's own default is an hour, which lets idle clients pile up.
KEEPALIVE_TIMEOUT = 15.0
BACKLOG = 128
FILE_CACHE_CONTROL = "public, max-age=60"
# A full archive page (RFC 5005) is never rewritten except to carry an edit.
ARCHIVE_CACHE_CONTROL = "public, max-age=31536000, immutable"
GZIP_LEVEL = 6
GZIP_CACHE_ENTRIES = 128
GZIP_CACHE_BYTES = 32 * 1024 * 1024
MAX_PATH_SEGMENTS = 8
MAX_ERROR_LENGTH = 1000

CONTENT_TYPES = {
    ".rss": "application/rss+xml; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".json": "application/feed+json; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
}

# One decoded path segment: what the daemon names its files (compare models.ARTICLE_ID).
# This alone rules out "", ".", "..", hidden files, "/", "\\", "%", NUL and non-ASCII.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([^"]*)"\s*(?:,|$)')


class HttpServerError(SyndicatorError):
    """The HTTP server cannot listen on its address (in use, not local, no permission)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"cannot listen on {host}:{port}: {reason}",
            hint="set http.listen to a free address, or http.enabled = false",
        )


@dataclass
class Health:
    """What ``/healthz`` reports: the outcome of the last cycles, judged against ``now``."""

    interval: float
    last_cycle_at: datetime | None = None
    last_cycle_ok: bool | None = None
    last_success_at: datetime | None = None
    last_error: str = ""
    articles: int = 0
    # Why the reputation circuit breaker paused sending ("" while mail flows).
    mail_paused: str = ""
    # Live instances sharing the state database that have the cycle role (None: unknown
    # yet). With none, nothing reads the store or queues mail: unhealthy.
    cycle_instances: int | None = None

    def record(self, ok: bool, at: datetime, *, articles: int, error: str = "") -> None:
        """Record a finished cycle; ``at`` must be timezone-aware."""
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware (e.g. datetime.now(UTC))")
        self.last_cycle_at = at
        self.last_cycle_ok = ok
        self.articles = articles
        if ok:
            self.last_success_at = at
            self.last_error = ""
        else:
            self.last_error = error[:MAX_ERROR_LENGTH]

    def status(self, now: datetime) -> tuple[int, dict[str, Any]]:
        """The HTTP status (200 or 503) and the JSON body of ``/healthz`` at ``now``."""
        if self.cycle_instances == 0:
            state = "no-cycle-instance"
        elif self.last_cycle_at is None:
            state = "starting"
        elif not self.last_cycle_ok:
            state = "failing"
        elif self.last_success_at is None or now - self.last_success_at > timedelta(
            seconds=STALE_AFTER_INTERVALS * self.interval
        ):
            state = "stale"
        else:
            state = "ok"
        body: dict[str, Any] = {
            "status": state,
            "last_cycle": _isoformat(self.last_cycle_at),
            "last_success": _isoformat(self.last_success_at),
            "error": self.last_error,
            "articles": self.articles,
        }
        if self.mail_paused:
            # Feeds are still served and mail still queued: the status stays as it is.
            body["mail"] = f"sending paused: {self.mail_paused}"
        if self.cycle_instances is not None:
            body["cycle_instances"] = self.cycle_instances
        if state == "no-cycle-instance":
            body["error"] = (
                "no live instance has the cycle role: the store is not read and no mail "
                "is queued (see service.roles)"
            )
        return (200 if state == "ok" else 503), body


def _isoformat(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def public_parts(raw_path: str, route: str) -> tuple[str, ...] | None:
    """The decoded segments of ``raw_path`` after the ``route`` segment, or None if unsafe.

    ``raw_path`` is the path as sent (still percent-encoded), so an encoded slash stays inside
    its segment and is refused there instead of becoming a separator.

    >>> public_parts("/feeds/topics/aeo.rss", "feeds")
    ('topics', 'aeo.rss')
    >>> public_parts("/feeds/..%2Fsecret.txt", "feeds") is None
    True
    """
    segments = raw_path.split("/")
    if len(segments) < 3 or segments[0] != "" or len(segments) > MAX_PATH_SEGMENTS + 2:
        return None
    decoded = [unquote(segment, errors="replace") for segment in segments[1:]]
    if decoded[0] != route:
        return None
    parts = decoded[1:]
    if not all(_SAFE_SEGMENT.fullmatch(part) for part in parts):
        return None
    return tuple(parts)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (RFC 9110 section 12.5.3)."""
    gzip_q: float | None = None
    any_q: float | None = None
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if coding in {"gzip", "x-gzip"}:
            gzip_q = quality if gzip_q is None else max(gzip_q, quality)
        elif coding == "*":
            any_q = quality
    if gzip_q is not None:
        return gzip_q > 0
    return any_q is not None and any_q > 0


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison) or is ``*``."""
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/").strip('"')
    return any(match.group(1) == opaque for match in _ENTITY_TAG.finditer(if_none_match))


def modified_since(if_modified_since: str, mtime_ns: int) -> bool:
    """False when the file was not modified after the ``If-Modified-Since`` date.

    HTTP dates have whole seconds, so the file's time is truncated before comparing. An
    unparsable date counts as "modified" (RFC 9110: the field is then ignored).
    """
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError, OverflowError):
        return True
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since < datetime.fromtimestamp(mtime_ns // 1_000_000_000, UTC)


@dataclass(frozen=True)
class Conditions:
    """The request headers that decide the representation and whether to send it."""

    if_none_match: str | None = None
    if_modified_since: str | None = None
    accept_encoding: str = ""


@dataclass(frozen=True)
class Reply:
    """A file response: 200 with a body, or 304 without one."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Redirect:
    """A permanent redirect to the canonical URL of the same resource."""

    location: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A plain-text refusal: 400 (bad request), 404 (unknown) or 410 (gone)."""

    status: int
    message: str


FILTER_FORMATS = ("rss", "atom", "json")
PRIVATE_FORMATS = ("atom", "json")


@dataclass
class _GzipCache:
    """Compressed bodies by path, valid while the file's size and content digest stay the
    same."""

    max_entries: int = GZIP_CACHE_ENTRIES
    max_bytes: int = GZIP_CACHE_BYTES
    _entries: OrderedDict[str, tuple[int, str, bytes]] = field(default_factory=OrderedDict)
    _size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, path: str, size: int, digest: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[:2] != (size, digest):
                return None
            self._entries.move_to_end(path)
            return entry[2]

    def put(self, path: str, size: int, digest: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._entries.pop(path, None)
            if old is not None:
                self._size -= len(old[2])
            self._entries[path] = (size, digest, body)
            self._size += len(body)
            while len(self._entries) > self.max_entries or self._size > self.max_bytes:
                _, (_, _, evicted) = self._entries.popitem(last=False)
                self._size -= len(evicted)


_LOCATED_SECONDS = 1.0
_LOCATED_MAX = 4096


class FileServer:
    """Answers for the files under ``output_dir``; blocking, so run it in a thread."""

    def __init__(
        self,
        output_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_control: str = FILE_CACHE_CONTROL,
    ) -> None:
        self.output_dir = output_dir
        self.cache_control = cache_control
        self._gzip_cache = _GzipCache()
        # Content digests by path, valid while the file's inode, size and mtime stay the
        # same: the ETag of a file is its content's, so every instance serving the same
        # bytes gives the same ETag.
        self._digests: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._digest_lock = threading.Lock()
        self._clock = clock
        # Resolved paths, kept for a second: feed readers ask for the same few files, and
        # resolving symbolic links costs more than the rest of a 304.
        self._located: dict[tuple[str, ...], tuple[float, str | None]] = {}

    def locate(self, parts: Sequence[str]) -> str | None:
        """The real path of ``parts`` below ``output_dir``, or None if it would leave it."""
        key = tuple(parts)
        now = self._clock()
        cached = self._located.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        root = os.path.realpath(self.output_dir)
        resolved = os.path.realpath(f"{root}/{'/'.join(parts)}")
        inside = resolved != root and os.path.commonpath([root, resolved]) == root
        target = resolved if inside else None
        if len(self._located) >= _LOCATED_MAX:
            self._located.clear()
        self._located[key] = (now + _LOCATED_SECONDS, target)
        return target

    def _cache_control(self, parts: Sequence[str], target: str) -> str:
        """Archive pages are immutable once full, which the next page's existence shows;
        everything else may change at the next cycle."""
        if len(parts) >= 3 and parts[0] == "archive" and parts[-1].endswith(".atom"):
            number = parts[-1].removesuffix(".atom")
            if number.isdigit() and (Path(target).parent / f"{int(number) + 1}.atom").is_file():
                return ARCHIVE_CACHE_CONTROL
        return self.cache_control

    def reply(self, parts: Sequence[str], conditions: Conditions) -> Reply | None:
        """The response for the file at ``parts``, or None for "not found"."""
        content_type = CONTENT_TYPES.get(PurePosixPath(parts[-1]).suffix) if parts else None
        target = self.locate(parts) if content_type else None
        if content_type is None or target is None:
            return None
        try:
            # O_NOFOLLOW: a symlink swapped in after locate() is refused; O_NONBLOCK: a FIFO
            # does not hang the open (it is refused below as not a regular file).
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        # One open file per request: size, mtime and body all come from the same inode even
        # if the file is replaced (renamed over) meanwhile.
        with os.fdopen(fd, "rb") as file:
            use_gzip = accepts_gzip(conditions.accept_encoding)
            version = (info.st_ino, info.st_size, info.st_mtime_ns)
            content: bytes | None = None
            with self._digest_lock:
                known = self._digests.get(target)
            if known is not None and known[0] == version:
                digest = known[1]
            else:
                content = file.read()
                digest = hashlib.sha256(content).hexdigest()[:32]
                with self._digest_lock:
                    if len(self._digests) >= _LOCATED_MAX:
                        self._digests.clear()
                    self._digests[target] = (version, digest)
            validator = digest + ("-gzip" if use_gzip else "")
            modified = datetime.fromtimestamp(info.st_mtime_ns // 1_000_000_000, UTC)
            headers: dict[str, str] = {
                hdrs.ETAG: f'"{validator}"',
                hdrs.LAST_MODIFIED: format_datetime(modified, usegmt=True),
                hdrs.CACHE_CONTROL: self._cache_control(parts, target),
                hdrs.VARY: hdrs.ACCEPT_ENCODING,
                hdrs.CONTENT_TYPE: content_type,
            }
            if conditions.if_none_match is not None:
                fresh = etag_matches(conditions.if_none_match, headers[hdrs.ETAG])
            elif conditions.if_modified_since is not None:
                fresh = not modified_since(conditions.if_modified_since, info.st_mtime_ns)
            else:
                fresh = False
            if fresh:
                del headers[hdrs.CONTENT_TYPE]
                return Reply(304, headers)
            if not use_gzip:
                return Reply(200, headers, file.read() if content is None else content)
            headers[hdrs.CONTENT_ENCODING] = "gzip"
            body = self._gzip_cache.get(target, info.st_size, digest)
            if body is None:
                raw = file.read() if content is None else content
                body = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
                self._gzip_cache.put(target, info.st_size, digest, body)
            return Reply(200, headers, body)


def _conditions(request: web.Request) -> Conditions:
    def joined(name: str) -> str | None:
        values = request.headers.getall(name, [])
        return ", ".join(values) if values else None

    return Conditions(
        if_none_match=joined(hdrs.IF_NONE_MATCH),
        if_modified_since=request.headers.get(hdrs.IF_MODIFIED_SINCE),
        accept_encoding=joined(hdrs.ACCEPT_ENCODING) or "",
    )


def create_app(
    *,
    output_dir: Path,
    health: Health,
    metrics: Metrics,
    clock: Callable[[], datetime],
    unsubscribe: UnsubscribeDesk | None = None,
    subscriptions: SubscriptionPages | None = None,
    site_title: str = "syndicator",
    language: str = "en",
    base_path: str = "/",
    write_page: Callable[[str], bool] | None = None,
    reader_feeds: ReaderFeeds | None = None,
    cache_seconds: int = 60,
    polls: PollLimit | None = None,
) -> web.Application:
    """The web application; it reads ``output_dir`` on every request and keeps no globals.

    ``write_page(article_id)`` writes the page of an article that has none yet (pages
    are published for what feeds and mail link to); it returns False for no article.

    With ``subscriptions``, it also serves the subscribe, confirm and manage pages; with
    ``reader_feeds``, filter feeds and private feeds. ``polls`` answers 429 to a client
    polling one feed far faster than it can change.
    """
    files = FileServer(output_dir, cache_control=f"public, max-age={cache_seconds}")

    def too_often(request: web.Request) -> web.Response | None:
        if polls is None:
            return None
        wait = polls.take(request, clock())
        if not wait:
            return None
        return web.Response(
            status=429,
            text=f"Polled too often: this feed changes at most every {polls.interval} seconds.\n",
            headers={hdrs.RETRY_AFTER: str(int(wait)), hdrs.CACHE_CONTROL: "no-store"},
        )

    async def send_file(request: web.Request, parts: tuple[str, ...] | None) -> web.Response:
        if parts is None:
            raise web.HTTPNotFound()
        # In the loop, not a thread: a stat and a read from the page cache cost less than the
        # hand-off (most answers are 304s to feed readers polling).
        reply = files.reply(parts, _conditions(request))
        if reply is None:
            raise web.HTTPNotFound()
        # For HEAD, aiohttp sends these headers (Content-Length included) without the body.
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body or None)

    async def index(request: web.Request) -> web.Response:
        return await send_file(request, ("index.html",))

    async def feed(request: web.Request) -> web.Response:
        refused = too_often(request)
        if refused is not None:
            return refused
        return await send_file(request, public_parts(request.rel_url.raw_path, "feeds"))

    def answer(reply: Reply | Redirect | Refusal) -> web.Response:
        if isinstance(reply, Redirect):
            raise web.HTTPMovedPermanently(reply.location)
        if isinstance(reply, Refusal):
            return web.Response(
                status=reply.status,
                text=reply.message + "\n",
                headers={hdrs.CACHE_CONTROL: "no-store"},
            )
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body or None)

    async def filter_feed(request: web.Request) -> web.Response:
        fmt = request.match_info["fmt"]
        if reader_feeds is None or fmt not in FILTER_FORMATS:
            raise web.HTTPNotFound()
        refused = too_often(request)
        if refused is not None:
            return refused
        raw_query = request.rel_url.raw_query_string
        reply = await asyncio.to_thread(
            reader_feeds.filter_feed, fmt, raw_query, _conditions(request)
        )
        return answer(reply)

    async def private_feed(request: web.Request) -> web.Response:
        fmt = request.match_info["fmt"]
        if reader_feeds is None or fmt not in PRIVATE_FORMATS:
            raise web.HTTPNotFound()
        refused = too_often(request)
        if refused is not None:
            return refused
        token = request.match_info["token"]
        reply = await asyncio.to_thread(reader_feeds.private_feed, fmt, token, _conditions(request))
        return answer(reply)

    async def article(request: web.Request) -> web.Response:
        parts = public_parts(request.rel_url.raw_path, "articles")
        if parts is None or len(parts) != 1 or not parts[0].endswith(".html"):
            raise web.HTTPNotFound()
        try:
            return await send_file(request, ("articles", *parts))
        except web.HTTPNotFound:
            article_id = unquote(parts[0].removesuffix(".html"))
            if write_page is None or not await asyncio.to_thread(write_page, article_id):
                raise
        return await send_file(request, ("articles", *parts))

    async def channel_page(request: web.Request) -> web.Response:
        """``regions/<slug>.html``, ``topics/<slug>.html``, ``all.html`` and their archive
        pages (``regions/<slug>/<n>.html``...): HTML only."""
        route = request.rel_url.raw_path.split("/")[1].removesuffix(".html")
        parts = (
            ("all.html",)
            if request.rel_url.raw_path == "/all.html"
            else public_parts(request.rel_url.raw_path, route)
        )
        if parts is None or not parts[-1].endswith(".html"):
            raise web.HTTPNotFound()
        return await send_file(request, parts if parts == ("all.html",) else (route, *parts))

    async def healthz(request: web.Request) -> web.Response:
        status, body = health.status(clock())
        return web.json_response(body, status=status, headers={hdrs.CACHE_CONTROL: "no-store"})

    async def metrics_text(request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(
            body=body,
            headers={hdrs.CONTENT_TYPE: content_type, hdrs.CACHE_CONTROL: "no-store"},
        )

    def page(name: str, heading: str, *, status: int = 200, **context: Any) -> web.Response:
        return render_page(
            name,
            site_title=site_title,
            heading=heading,
            language=language,
            base_path=base_path,
            status=status,
            **context,
        )

    def invalid_link() -> web.Response:
        return page(
            "message.html",
            "This link is not valid",
            status=404,
            paragraphs=(
                "This unsubscribe link is not valid. Use the link in your latest mail, "
                "or reply to it.",
            ),
            link=None,
        )

    async def unsubscribe_page(request: web.Request) -> web.Response:
        """GET shows a button and never unsubscribes by itself (mail scanners follow links)."""
        token = request.match_info["token"]
        address = await asyncio.to_thread(unsubscribe.check, token) if unsubscribe else None
        if address is None:
            return invalid_link()
        # The form posts back to this very URL, token and all.
        return page("unsubscribe.html", "Unsubscribe", address=address)

    async def unsubscribe_post(request: web.Request) -> web.Response:
        """RFC 8058 one-click: POST with List-Unsubscribe=One-Click unsubscribes at once."""
        token = request.match_info["token"]
        form = await read_form(request) or EMPTY_FORM
        if form.get("List-Unsubscribe") != "One-Click":
            return page(
                "message.html",
                "Unsubscribe",
                status=400,
                paragraphs=("Send List-Unsubscribe=One-Click to unsubscribe.",),
                link=None,
            )
        address = await asyncio.to_thread(unsubscribe.unsubscribe, token) if unsubscribe else None
        if address is None:
            return invalid_link()
        return page("unsubscribed.html", "You are unsubscribed", address=address)

    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app.router.add_get("/unsubscribe/{token}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{token}", unsubscribe_post)
    if subscriptions is not None:
        subscriptions.add_routes(app)
    # add_get also answers HEAD; any other method on these paths is a 405.
    app.router.add_get("/", index)
    app.router.add_get("/feeds/filter.{fmt}", filter_feed)
    app.router.add_get("/feeds/private/{token}.{fmt}", private_feed)
    app.router.add_get("/feeds/{path:.*}", feed)
    app.router.add_get("/articles/{name}", article)
    for prefix in ("regions", "topics", "all"):
        app.router.add_get(f"/{prefix}/{{path:.*}}", channel_page)
    app.router.add_get("/all.html", channel_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app`` on ``host:port`` (0: any free port); ``await runner.cleanup()``."""
    runner = web.AppRunner(
        app,
        handle_signals=False,  # the daemon owns signal handling
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        handler_cancellation=True,  # a client that goes away cancels its handler
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise HttpServerError(host, port, exc.strerror or str(exc)) from exc
    return runner
