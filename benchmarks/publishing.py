"""Publishing every channel, next to plain string serialization of the same entries."""

from __future__ import annotations

import html
import statistics
import time
from collections.abc import Callable
from email.utils import format_datetime
from typing import Any

from benchmarks.generate import articles
from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS
from syndicator.pipeline import channels_from, names_from
from syndicator.publish.feeds import FORMATS, Site, article_url, render_all, select_items, tag_uri


def _median(run: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _plain_rss(site: Site, items: list[Any]) -> bytes:
    """The baseline: RSS items built with f-strings and html.escape, nothing else."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>']
    for item in items:
        parts.append(
            f"<item><title>{html.escape(item.title)}</title>"
            f"<link>{html.escape(article_url(site, item))}</link>"
            f'<guid isPermaLink="false">{html.escape(tag_uri(site, item.id))}</guid>'
            f"<description>{html.escape(item.summary)}</description>"
            f"<pubDate>{format_datetime(item.published)}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def run(count: int, max_items: int, repeat: int) -> dict[str, Any]:
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    channels = channels_from(classifier)
    names = names_from(classifier)
    site = Site("Bench", "https://bench.example/", "en", "Benchmark", 5, "bench.example", "2026")
    store = articles(count, list(classifier.gazetteer.regions), list(classifier.taxonomy.topics))
    selected = [(channel, select_items(channel, store, max_items)) for channel in channels]
    entries = sum(len(items) for _, items in selected)

    def ours() -> None:
        for channel, items in selected:
            render_all(site, channel, items, names)

    def baseline() -> None:
        for _, items in selected:
            for _ in FORMATS:
                _plain_rss(site, items)

    ours_seconds = _median(ours, repeat)
    baseline_seconds = _median(baseline, repeat)
    rendered = entries * len(FORMATS)
    return {
        "name": "publish every channel (RSS, Atom, JSON)",
        "articles": count,
        "channels": len(channels),
        "entries_rendered": rendered,
        "seconds": ours_seconds,
        "baseline": "plain f-string RSS of the same entries",
        "baseline_seconds": baseline_seconds,
        "ratio": ours_seconds / baseline_seconds,
        "entries_per_second": rendered / ours_seconds,
        "baseline_entries_per_second": rendered / baseline_seconds,
    }
