"""Feeds rendered on request: any filter as a feed URL, and each subscriber's private feed.

``GET /feeds/filter.atom?region=...&topic=...&keyword=...&exclude_region=...&exclude_topic=...``
(and ``.rss``, ``.json``) holds the newest ``feeds.max_items`` articles the filter matches,
with the subscribers' semantics (:mod:`syndicator.publish.filters`). Parameters have one
canonical form (names in that order, each value its own parameter, values sorted, keywords
lower-cased): any other spelling of the same filter is redirected there (301), so every
cache between here and the readers keeps one copy. Unknown names or slugs, more than ten
values of a name, a keyword over 64 characters, a query over 2 KB or text that is not UTF-8
get a 400 naming the parameter.

``GET /feeds/private/<token>.atom`` (and ``.json``): a subscriber's own feed, see
:mod:`syndicator.mail.private_feeds`; a forged token is a 404, a rotated one or that of a
subscriber who left a 410.

Rendered bytes are cached per canonical URL and thrown away when the articles revision
moves; the index of articles is rebuilt at most once per revision. ``ETag`` is a hash of
the bytes, so every instance serving the same articles answers the same ``304``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from aiohttp import hdrs

from syndicator.config import Config
from syndicator.mail.private_feeds import Verdict, feed_base_url, look_up
from syndicator.publish.feeds import (
    CONTENT_TYPES,
    Channel,
    Names,
    Site,
    feed_updated,
    render_all,
    render_json,
)
from syndicator.publish.filters import ArticleIndex, FeedFilter, FilterQueryError, parse_query
from syndicator.state.db import State
from syndicator.state.readers import active_tagged_articles, article_texts, full_articles
from syndicator.web.app import (
    Conditions,
    Redirect,
    Refusal,
    Reply,
    accepts_gzip,
    etag_matches,
    modified_since,
)

CACHE_ENTRIES = 512
REVISION_CHECK_SECONDS = 1.0
GZIP_LEVEL = 6


@dataclass
class _Rendered:
    body: bytes
    etag: str
    modified: datetime
    gzipped: bytes | None = None


@dataclass
class _Entry:
    revision: str
    formats: dict[str, _Rendered] = field(default_factory=dict)


def cache_seconds(config: Config) -> int:
    """The max-age of feeds and pages: ``feeds.cache_seconds``, else the cycle interval."""
    return config.feeds.cache_seconds or config.store.reload_interval


class ReaderFeeds:
    """Filter feeds and private feeds, rendered from state and cached; blocking (run the
    methods that may touch the database in a thread)."""

    def __init__(
        self,
        state: State,
        *,
        site: Site,
        names: Names,
        max_items: int,
        secret: bytes,
        cache_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.site = site
        self.names = names
        self.max_items = max_items
        self.secret = secret
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self._index: ArticleIndex | None = None
        self._revision = ""
        self._revision_checked = float("-inf")

    def reconfigure(self, *, site: Site, names: Names, max_items: int, cache_seconds: int) -> None:
        with self._lock:
            self.site, self.names = site, names
            self.max_items, self.cache_seconds = max_items, cache_seconds
            self._cache.clear()

    # --- what the web layer calls ------------------------------------------------------

    def filter_feed(
        self, fmt: str, raw_query: str, conditions: Conditions
    ) -> Reply | Redirect | Refusal:
        try:
            wanted, canonical = parse_query(
                raw_query, regions=list(self.names.regions), topics=list(self.names.topics)
            )
        except FilterQueryError as exc:
            return Refusal(400, str(exc))
        if not canonical:
            query = wanted.query()
            return Redirect(
                f"{self.site.base_url}feeds/filter.{fmt}" + (f"?{query}" if query else "")
            )
        key = ("filter", wanted)
        channel = Channel(
            "filter",
            "filter",
            "filter",
            wanted.describe(self.names.region, self.names.topic),
            "Articles matching "
            + wanted.describe(self.names.region, self.names.topic).replace(" · ", "; "),
            query=wanted.query(),
        )
        rendered = self._rendered(key, fmt, channel, wanted)
        return self._reply(rendered, fmt, conditions, private=False)

    def private_feed(self, fmt: str, token: str, conditions: Conditions) -> Reply | Refusal:
        found = look_up(self.state, self.secret, token)
        if found.verdict is Verdict.FORGED or found.owner is None:
            gone = found.verdict is Verdict.GONE
            message = "This feed address was replaced or its subscription ended."
            return Refusal(410, message) if gone else Refusal(404, "No such feed.")
        filters = json.loads(found.owner.filters)
        wanted = FeedFilter.of(
            regions=filters.get("regions", ()),
            topics=filters.get("topics", ()),
            keywords=filters.get("keywords", ()),
            exclude_regions=filters.get("exclude_regions", ()),
            exclude_topics=filters.get("exclude_topics", ()),
        )
        channel = Channel(
            "private",
            "private",
            "private",
            "Your feed: " + wanted.describe(self.names.region, self.names.topic),
            "Articles matching your subscription's filters",
            url=feed_base_url(self.site.base_url, token),
        )
        key = ("private", found.owner.id, found.generation, wanted)
        rendered = self._rendered(key, fmt, channel, wanted)
        return self._reply(rendered, fmt, conditions, private=True)

    # --- rendering and caching -----------------------------------------------------------

    def _current_revision(self) -> str:
        now = self._clock()
        if now - self._revision_checked >= REVISION_CHECK_SECONDS:
            with self.state.engine.connect() as conn:
                self._revision = self.state.articles_revision(conn)
            self._revision_checked = now
        return self._revision

    def _article_index(self, revision: str) -> ArticleIndex:
        index = self._index
        if index is None or index.revision != revision:
            with self.state.engine.connect() as conn:
                index = ArticleIndex.build(revision, active_tagged_articles(conn))
            self._index = index
        return index

    def _texts(self, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        with self.state.engine.connect() as conn:
            return article_texts(conn, list(ids))

    def _rendered(
        self, key: tuple[object, ...], fmt: str, channel: Channel, wanted: FeedFilter
    ) -> _Rendered:
        with self._lock:
            revision = self._current_revision()
            entry = self._cache.get(key)
            if entry is not None and entry.revision == revision and fmt in entry.formats:
                self._cache.move_to_end(key)
                return entry.formats[fmt]
            index = self._article_index(revision)
            chosen = index.choose(wanted, self.max_items, self._texts)
            with self.state.engine.connect() as conn:
                loaded = full_articles(conn, [item.id for item in chosen])
            items = [loaded[item.id] for item in chosen if item.id in loaded]
            if fmt == "json":
                outputs = {"json": render_json(self.site, channel, items, self.names)}
            else:
                outputs = render_all(self.site, channel, items, self.names)
            modified = feed_updated(items)
            if entry is None or entry.revision != revision:
                entry = _Entry(revision)
            for name, body in outputs.items():
                digest = hashlib.sha256(body).hexdigest()[:24]
                entry.formats[name] = _Rendered(body, digest, modified)
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return entry.formats[fmt]

    def _reply(
        self, rendered: _Rendered, fmt: str, conditions: Conditions, *, private: bool
    ) -> Reply:
        use_gzip = accepts_gzip(conditions.accept_encoding)
        etag = f'"{rendered.etag}{"-gzip" if use_gzip else ""}"'
        scope = "private" if private else "public"
        headers: dict[str, str] = {
            hdrs.ETAG: etag,
            hdrs.LAST_MODIFIED: format_datetime(rendered.modified, usegmt=True),
            hdrs.CACHE_CONTROL: f"{scope}, max-age={self.cache_seconds}",
            hdrs.VARY: hdrs.ACCEPT_ENCODING,
            hdrs.CONTENT_TYPE: f"{CONTENT_TYPES[fmt]}; charset=utf-8",
        }
        if private:
            headers["Referrer-Policy"] = "no-referrer"
            headers["X-Robots-Tag"] = "noindex"
        if conditions.if_none_match is not None:
            fresh = etag_matches(conditions.if_none_match, etag)
        elif conditions.if_modified_since is not None:
            seconds = int(rendered.modified.timestamp())
            fresh = not modified_since(conditions.if_modified_since, seconds * 1_000_000_000)
        else:
            fresh = False
        if fresh:
            del headers[hdrs.CONTENT_TYPE]
            return Reply(304, headers)
        if not use_gzip:
            return Reply(200, headers, rendered.body)
        if rendered.gzipped is None:
            rendered.gzipped = gzip.compress(rendered.body, compresslevel=GZIP_LEVEL, mtime=0)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        return Reply(200, headers, rendered.gzipped)
