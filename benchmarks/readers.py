"""Feeds for readers: filter feeds over HTTP, and archive pages after one edit.

* Filter-feed answers per second (wrk against the real daemon, one worker each): a
  cached filter URL revalidated with its ETag, and uncached filters (every request a new
  canonical URL: a keyword no article holds, so the whole index is walked), next to the
  baseline of the static-file ``304`` path for ``feeds/all.atom`` in the same daemon.
* Archive pages (RFC 5005) brought up to date after one edited article, next to a full
  rebuild of every archive page of every channel, over the same state.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.generate import write_store
from benchmarks.http import _etag, _tool, _wrk
from benchmarks.pipeline import free_port, install
from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.pipeline import Pipeline, channels_from, names_from, site_from_config
from syndicator.publish.archives import KeptArchives, update_archives
from syndicator.publish.publisher import settings_signature, write_if_changed
from syndicator.state.db import State

FILTER = "feeds/filter.atom?region=europe&topic=aeo"
_UNCACHED_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/feeds/filter.atom?keyword=nothing" .. counter)
end
"""


def _wrk_script(url: str, script: Path, seconds: int, connections: int) -> float:
    output = subprocess.run(
        [_tool("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in output.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"cannot read wrk's output:\n{output}")


def filter_feeds(articles: int, seconds: int, connections: int) -> list[dict[str, Any]]:
    _tool("wrk")
    root = Path(tempfile.mkdtemp(prefix="syndicator-readers-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        config = install(root)
        write_store(root / "articles", articles)
        port = free_port()
        text = config.read_text() + f'\n[http]\nlisten = "127.0.0.1:{port}"\n'
        config.write_text(text.replace("[store]\n", "[store]\nreload_interval = 3600\n"))
        process = subprocess.Popen(
            [sys.executable, "-m", "syndicator", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/"
        # The daemon's first cycle publishes the feeds: a cold run of the whole store,
        # minutes at 100,000 articles on a busy machine.
        static_etag = _etag(base + "feeds/all.atom", time.monotonic() + 600 + articles / 50)
        filter_etag = _etag(base + FILTER, time.monotonic() + 60)
        static = _wrk(base + "feeds/all.atom", static_etag, seconds, connections)
        cached = _wrk(base + FILTER, filter_etag, seconds, connections)
        script = root / "uncached.lua"
        script.write_text(_UNCACHED_SCRIPT)
        uncached = _wrk_script(base, script, seconds, min(connections, 4))
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(root, ignore_errors=True)
    baseline = {
        "baseline": "the static-file 304 path (feeds/all.atom), same daemon",
        "baseline_seconds": 1 / static,
        "baseline_requests_per_second": static,
    }
    # Each ratio is the baseline's answers per second over the filter feed's: how many
    # times longer a filter-feed answer takes than a static file's 304.
    return [
        {
            "name": "filter feed answers per second (cached, 304)",
            "articles": articles,
            "seconds": 1 / cached,
            "requests_per_second": cached,
            **baseline,
            "ratio": static / cached,
            "target": "report the ratio",
        },
        {
            "name": "filter feed answers per second (uncached)",
            "articles": articles,
            "seconds": 1 / uncached,
            "requests_per_second": uncached,
            **baseline,
            "ratio": static / uncached,
            "target": "report the ratio",
        },
    ]


def archives(articles: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="syndicator-archives-"))
    try:
        path = install(root)
        write_store(root / "articles", articles)
        config = load_config(path)
        classifier = Classifier.load(config.classify.regions, config.classify.topics)
        site, names = site_from_config(config), names_from(classifier)
        channels = channels_from(classifier)
        state = State.open(config.state.url)
        try:
            now = datetime(2026, 3, 2, tzinfo=UTC)
            pipeline = Pipeline(config, classifier, state, clock=lambda: now)
            pipeline.cycle(now=now)
            catalogue = pipeline.catalogue.catalogue
            assert catalogue is not None
            light: dict[str, Any] = dict(catalogue.by_id)
            output = config.feeds.output_dir
            signature = settings_signature(site, names, config.feeds.max_items)

            def update(
                changed: frozenset[str] | None, mapping: dict[str, Any]
            ) -> tuple[float, int]:
                started = time.perf_counter()
                result = update_archives(
                    state,
                    site=site,
                    names=names,
                    channels=channels,
                    output_dir=output,
                    page_size=config.feeds.archive_size,
                    articles=mapping,
                    changed=changed,
                    site_signature=signature,
                    write=write_if_changed,
                    kept=kept,
                )
                return time.perf_counter() - started, result.pages_rendered

            # Full rebuild: every page rendered and compared (files removed first).
            shutil.rmtree(output / "archive")
            kept = KeptArchives()  # nothing kept: every assignment read from state
            full_seconds, full_pages = update(None, light)
            # One edit: an article in the middle of the store, its content changed.
            edited_id = sorted(light)[len(light) // 2]
            edited = dict(light)
            edited[edited_id] = dataclasses.replace(
                _Light.of(light[edited_id]), content_hash="edited"
            )
            one_seconds, one_pages = update(frozenset({edited_id}), edited)
        finally:
            state.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "name": "archive pages after one edit",
        "articles": articles,
        "seconds": one_seconds,
        "pages_rendered": one_pages,
        "baseline": "a full rebuild of every archive page",
        "baseline_seconds": full_seconds,
        "baseline_pages_rendered": full_pages,
        "ratio": full_seconds / one_seconds,
        "target": "report the ratio",
    }


@dataclasses.dataclass(frozen=True)
class _Light:
    """An editable copy of what archiving reads of an article."""

    id: str
    published: datetime
    updated: datetime
    content_hash: str
    regions: tuple[str, ...]
    topics: tuple[str, ...]

    @classmethod
    def of(cls, item: Any) -> _Light:
        return cls(
            item.id, item.published, item.updated, item.content_hash, item.regions, item.topics
        )
