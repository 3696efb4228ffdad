"""Matching articles to subscriber filters, with an index instead of a scan.

A subscriber matches an article when (no regions given, or a region in common)
and (no topics and no keywords given, or a topic in common, or a keyword found
as a whole word, case-insensitive, in title or body) and no exclusion applies.
A subscriber with no filters gets everything.

The index keeps, for each region and topic, a boolean mask of the subscribers
asking for it, and all keywords go into one Aho-Corasick automaton, so an
article is matched with a few vectorised operations instead of a scan.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick
import numpy as np
from numpy.typing import NDArray

from syndicator.classify.tokens import normalize, normalize_phrase


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


class FilterIndex:
    """All subscribers' filters, indexed for matching many articles at once.

    Subscribers are numbered 0..N-1; each region and topic has a boolean mask
    over them, so matching an article is a handful of vectorised ORs and ANDs
    over N booleans, whatever the number of subscribers.
    """

    def __init__(self, filters: Iterable[Filter]) -> None:
        # One pass, keeping no Filter: there may be millions of them.
        ids = array("q")
        any_region: list[int] = []
        any_topic: list[int] = []
        by_region: dict[str, list[int]] = defaultdict(list)
        by_topic: dict[str, list[int]] = defaultdict(list)
        excluded_by_region: dict[str, list[int]] = defaultdict(list)
        excluded_by_topic: dict[str, list[int]] = defaultdict(list)
        keywords: dict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(filters):
            ids.append(item.subscriber_id)
            if item.regions:
                for region in item.regions:
                    by_region[region].append(position)
            else:
                any_region.append(position)
            if item.topics or item.keywords:
                for topic in item.topics:
                    by_topic[topic].append(position)
                for keyword in item.keywords:
                    key = normalize_phrase(keyword)
                    if key:
                        keywords[key].append(position)
            else:
                any_topic.append(position)
            for region in item.exclude_regions:
                excluded_by_region[region].append(position)
            for topic in item.exclude_topics:
                excluded_by_topic[topic].append(position)
        self.ids = np.frombuffer(ids, dtype=np.int64).copy() if ids else np.zeros(0, np.int64)
        self.any_region = self._mask(any_region)
        self.any_topic = self._mask(any_topic)
        self.by_region = {key: self._mask(positions) for key, positions in by_region.items()}
        self.by_topic = {key: self._mask(positions) for key, positions in by_topic.items()}
        self.excluded_by_region = {k: self._mask(v) for k, v in excluded_by_region.items()}
        self.excluded_by_topic = {k: self._mask(v) for k, v in excluded_by_topic.items()}
        self._keywords: Any = None
        if keywords:
            self._keywords = ahocorasick.Automaton()
            for key, positions in keywords.items():
                self._keywords.add_word(
                    f" {key} ", (len(key) + 2, np.asarray(positions, dtype=np.int64))
                )
            self._keywords.make_automaton()

    def _mask(self, positions: list[int]) -> NDArray[np.bool_]:
        mask = np.zeros(len(self.ids), dtype=bool)
        mask[np.asarray(positions, dtype=np.int64)] = True
        return mask

    def match(self, article: Candidate) -> NDArray[np.int64]:
        """The ids of the subscribers ``article`` matches (an array: there may be millions)."""
        region_ok = self.any_region.copy()
        for region in article.regions:
            mask = self.by_region.get(region)
            if mask is not None:
                region_ok |= mask
        if not region_ok.any():
            return self.ids[:0]
        topic_ok = self.any_topic.copy()
        for topic in article.topics:
            mask = self.by_topic.get(topic)
            if mask is not None:
                topic_ok |= mask
        if self._keywords is not None:
            for text in (article.title, article.body):
                for _end, (_length, positions) in self._keywords.iter(normalize(text).lower()):
                    topic_ok[positions] = True
        matched = region_ok & topic_ok
        for region in article.regions:
            mask = self.excluded_by_region.get(region)
            if mask is not None:
                matched &= ~mask
        for topic in article.topics:
            mask = self.excluded_by_topic.get(topic)
            if mask is not None:
                matched &= ~mask
        # flatnonzero + take is several times faster than boolean indexing.
        return self.ids.take(np.flatnonzero(matched))

    def match_all(self, articles: Sequence[Candidate]) -> dict[str, NDArray[np.int64]]:
        return {article.id: self.match(article) for article in articles}
