"""Matching new articles against many subscribers: the index against a plain scan."""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from benchmarks.generate import article_texts
from syndicator.classify.tokens import normalize
from syndicator.mail.match import Candidate, Filter, FilterIndex
from syndicator.models import REGION_SLUGS

REGIONS = list(REGION_SLUGS)
TOPICS = ["risk-management", "aeo", "transit", "revenue", "e-commerce", "security", "integrity"]
KEYWORDS = ["scanner", "green lane", "tariff", "single window", "valuation"]


def subscribers(count: int, seed: int = 3) -> list[Filter]:
    """Random filters: most pick a region or two, some topics, a few keywords or exclusions."""
    chooser = random.Random(seed)
    made = []
    for number in range(count):
        made.append(
            Filter(
                subscriber_id=number + 1,
                regions=frozenset(chooser.sample(REGIONS, chooser.choice((0, 1, 1, 2)))),
                topics=frozenset(chooser.sample(TOPICS, chooser.choice((0, 0, 1, 2)))),
                keywords=tuple(chooser.sample(KEYWORDS, 1)) if chooser.random() < 0.05 else (),
                exclude_regions=frozenset({"global"}) if chooser.random() < 0.1 else frozenset(),
            )
        )
    return made


def _scan(filters: list[Filter], article: Candidate) -> set[int]:
    """The baseline: every subscriber's filter checked in turn."""
    regions = set(article.regions)
    topics = set(article.topics)
    text = normalize(article.title).lower() + normalize(article.body).lower()
    found = set()
    for item in filters:
        if item.regions and not item.regions & regions:
            continue
        wants_topics = bool(item.topics or item.keywords)
        if (
            wants_topics
            and not item.topics & topics
            and not any(f" {k} " in text for k in item.keywords)
        ):
            continue
        if item.exclude_regions & regions or item.exclude_topics & topics:
            continue
        found.add(item.subscriber_id)
    return found


def run(subscriber_count: int, article_count: int = 50) -> dict[str, Any]:
    chooser = random.Random(5)
    articles = [
        Candidate(
            f"a{number}",
            title,
            body,
            (chooser.choice(REGIONS),),
            tuple(chooser.sample(TOPICS, 2)),
        )
        for number, (title, body) in enumerate(article_texts(article_count))
    ]
    filters = subscribers(subscriber_count)
    started = time.perf_counter()
    index = FilterIndex(filters)
    build_seconds = time.perf_counter() - started
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        matched = index.match_all(articles)
        timings.append(time.perf_counter() - started)
    seconds = statistics.median(timings)
    baseline_articles = articles[: max(1, article_count // 10)]
    started = time.perf_counter()
    for article in baseline_articles:
        expected = _scan(filters, article)
        assert expected == set(matched[article.id].tolist()), "index and scan disagree"
    baseline_seconds = (time.perf_counter() - started) * len(articles) / len(baseline_articles)
    return {
        "name": f"match {article_count} articles against subscribers",
        "subscribers": subscriber_count,
        "seconds": seconds,
        "index_build_seconds": build_seconds,
        "matches": int(sum(len(found) for found in matched.values())),
        "baseline": "plain scan of every filter (extrapolated from a tenth of the articles)",
        "baseline_seconds": baseline_seconds,
        "ratio": seconds / baseline_seconds,
        "target": "under 0.5 s for 1,000,000 subscribers",
    }
