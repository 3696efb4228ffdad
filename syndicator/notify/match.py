"""Matching articles to subscriber filters, with an index instead of a scan.

A subscriber matches an article when (no regions given, or a region in common)
and (no topics and no keywords given, or a topic in common, or a keyword found
as a whole word, case-insensitive, in title or body) and no exclusion applies.
A subscriber with no filters gets everything.

The index maps each region and topic to the subscribers asking for it, and all
keywords go into one Aho-Corasick automaton, so a batch of articles is matched
with a few set operations per article, whatever the number of subscribers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick

from syndicator.tokens import normalize


@dataclass(frozen=True, slots=True)
class Filter:
    subscriber_id: int
    regions: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    keywords: tuple[str, ...] = ()
    exclude_regions: frozenset[str] = frozenset()
    exclude_topics: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Candidate:
    """What matching needs of an article."""

    id: str
    title: str
    body: str
    regions: tuple[str, ...]
    topics: tuple[str, ...]


def _keyword_key(keyword: str) -> str:
    return normalize(keyword).lower().strip(" |")


class FilterIndex:
    """All subscribers' filters, indexed for matching many articles at once."""

    def __init__(self, filters: Iterable[Filter]) -> None:
        self.any_region: set[int] = set()
        self.any_topic: set[int] = set()
        self.by_region: dict[str, set[int]] = defaultdict(set)
        self.by_topic: dict[str, set[int]] = defaultdict(set)
        self.excluded_by_region: dict[str, set[int]] = defaultdict(set)
        self.excluded_by_topic: dict[str, set[int]] = defaultdict(set)
        keywords: dict[str, set[int]] = defaultdict(set)
        for item in filters:
            if item.regions:
                for region in item.regions:
                    self.by_region[region].add(item.subscriber_id)
            else:
                self.any_region.add(item.subscriber_id)
            if item.topics or item.keywords:
                for topic in item.topics:
                    self.by_topic[topic].add(item.subscriber_id)
                for keyword in item.keywords:
                    key = _keyword_key(keyword)
                    if key:
                        keywords[key].add(item.subscriber_id)
            else:
                self.any_topic.add(item.subscriber_id)
            for region in item.exclude_regions:
                self.excluded_by_region[region].add(item.subscriber_id)
            for topic in item.exclude_topics:
                self.excluded_by_topic[topic].add(item.subscriber_id)
        self._keywords: Any = None
        if keywords:
            self._keywords = ahocorasick.Automaton()
            for key, ids in keywords.items():
                self._keywords.add_word(f" {key} ", (len(key) + 2, frozenset(ids)))
            self._keywords.make_automaton()

    def _keyword_hits(self, article: Candidate) -> set[int]:
        if self._keywords is None:
            return set()
        hits: set[int] = set()
        for text in (article.title, article.body):
            for _end, (_length, ids) in self._keywords.iter(normalize(text).lower()):
                hits |= ids
        return hits

    def match(self, article: Candidate) -> set[int]:
        """The ids of the subscribers ``article`` matches."""
        region_ok = set(self.any_region)
        for region in article.regions:
            region_ok |= self.by_region.get(region, set())
        if not region_ok:
            return set()
        topic_ok = set(self.any_topic)
        for topic in article.topics:
            topic_ok |= self.by_topic.get(topic, set())
        topic_ok |= self._keyword_hits(article)
        matched = region_ok & topic_ok
        for region in article.regions:
            matched -= self.excluded_by_region.get(region, set())
        for topic in article.topics:
            matched -= self.excluded_by_topic.get(topic, set())
        return matched

    def match_all(self, articles: Sequence[Candidate]) -> dict[str, set[int]]:
        return {article.id: self.match(article) for article in articles}
