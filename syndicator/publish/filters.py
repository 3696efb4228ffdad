"""Filters as feeds: a subscriber's filters, or any filter asked for in a URL, over articles.

The semantics are the subscribers' (see :mod:`syndicator.mail.match`): an article matches
when (no regions given, or a region in common) and (no topics and no keywords given, or a
topic in common, or a keyword found as a whole word, case-insensitive, in title or body)
and no exclusion applies.

:class:`ArticleIndex` turns that around: the matching index of subscribers keeps a mask
of subscribers per region and topic; this one keeps a mask of *articles* per region and
topic, in feed order, so a filter's newest items are a few vectorised operations and then
a walk that stops as soon as it has enough. Keywords are looked for in the normalised text
of the candidates only, newest first, fetched on demand and kept for the revision.

Everything here is pure; the query string is parsed by :func:`parse_query`, which names
the parameter and value of any problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

import numpy as np
from numpy.typing import NDArray

from syndicator.classify.tokens import normalize, normalize_phrase
from syndicator.state.readers import TaggedArticle

# Parameters in their canonical order; each value is repeated as its own parameter.
PARAMETERS = ("region", "topic", "keyword", "exclude_region", "exclude_topic")
MAX_VALUES = 10  # per parameter
MAX_KEYWORD_LENGTH = 64
MAX_QUERY_LENGTH = 2048  # bytes of the raw query string


class FilterQueryError(ValueError):
    """A filter URL that cannot be served; ``str()`` is the one line to show."""

    def __init__(self, message: str, *, parameter: str = "") -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}" if parameter else message)


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """What a filter feed holds; values are sorted and unique, so equal filters are equal."""

    regions: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    exclude_regions: tuple[str, ...] = ()
    exclude_topics: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        *,
        regions: Sequence[str] = (),
        topics: Sequence[str] = (),
        keywords: Sequence[str] = (),
        exclude_regions: Sequence[str] = (),
        exclude_topics: Sequence[str] = (),
    ) -> FeedFilter:
        def tidy(values: Iterable[str]) -> tuple[str, ...]:
            return tuple(sorted(set(values)))

        return cls(
            tidy(regions),
            tidy(topics),
            tidy(" ".join(keyword.lower().split()) for keyword in keywords),
            tidy(exclude_regions),
            tidy(exclude_topics),
        )

    def items(self) -> list[tuple[str, str]]:
        """(parameter, value) pairs in canonical order."""
        groups = (
            self.regions,
            self.topics,
            self.keywords,
            self.exclude_regions,
            self.exclude_topics,
        )
        return [
            (name, value) for name, group in zip(PARAMETERS, groups, strict=True) for value in group
        ]

    def query(self) -> str:
        """The canonical query string (no leading ``?``)."""
        return "&".join(f"{name}={quote(value, safe='')}" for name, value in self.items())

    def describe(self, region_name: Callable[[str], str], topic_name: Callable[[str], str]) -> str:
        """A short human title: "Europe, MENA · AEO, "single window" · not Global"."""
        what = [region_name(r) for r in self.regions]
        about = [topic_name(t) for t in self.topics] + [f"“{k}”" for k in self.keywords]
        without = [region_name(r) for r in self.exclude_regions]
        without += [topic_name(t) for t in self.exclude_topics]
        parts = [", ".join(what) or "All regions"]
        if about:
            parts.append(", ".join(about))
        if without:
            parts.append("not " + ", ".join(without))
        return " · ".join(parts)


def parse_query(
    raw_query: str, *, regions: Sequence[str], topics: Sequence[str]
) -> tuple[FeedFilter, bool]:
    """The filter a raw (still percent-encoded) query string asks for, and whether the
    query was already in canonical form.

    Raises :class:`FilterQueryError` for unknown parameters or slugs, too many values,
    overlong keywords or queries, and text that is not UTF-8.
    """
    if len(raw_query) > MAX_QUERY_LENGTH:
        raise FilterQueryError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    collected: dict[str, list[str]] = {name: [] for name in PARAMETERS}
    if raw_query:
        for pair in raw_query.split("&"):
            if not pair:
                raise FilterQueryError("empty parameter (a doubled or trailing '&')")
            raw_name, equals, raw_value = pair.partition("=")
            name = _decode(raw_name, "")
            if name not in collected:
                raise FilterQueryError(f"unknown parameter {name!r}; use {', '.join(PARAMETERS)}")
            if not equals:
                raise FilterQueryError("no value (write name=value)", parameter=name)
            value = _decode(raw_value.replace("+", " "), name)
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise FilterQueryError("control characters are not allowed", parameter=name)
            if not value.strip():
                continue  # a form's "any": left out of the canonical URL
            collected[name].append(value)
            if len(collected[name]) > MAX_VALUES:
                raise FilterQueryError(f"at most {MAX_VALUES} values", parameter=name)
    for name, known in (
        ("region", regions),
        ("exclude_region", regions),
        ("topic", topics),
        ("exclude_topic", topics),
    ):
        for value in collected[name]:
            if value not in known:
                raise FilterQueryError(f"unknown slug {value!r}", parameter=name)
    for value in collected["keyword"]:
        if len(value) > MAX_KEYWORD_LENGTH:
            raise FilterQueryError(
                f"keywords are at most {MAX_KEYWORD_LENGTH} characters", parameter="keyword"
            )
        if not normalize_phrase(value):
            raise FilterQueryError(f"{value!r} has no word to look for", parameter="keyword")
    found = FeedFilter.of(
        regions=collected["region"],
        topics=collected["topic"],
        keywords=collected["keyword"],
        exclude_regions=collected["exclude_region"],
        exclude_topics=collected["exclude_topic"],
    )
    return found, found.query() == raw_query


def _decode(raw: str, parameter: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise FilterQueryError("not valid UTF-8", parameter=parameter) from None


# --- the index of articles ---------------------------------------------------------------


@dataclass
class ArticleIndex:
    """Active articles in feed order, with a mask of positions per region and topic."""

    revision: str
    articles: list[TaggedArticle]
    by_region: dict[str, NDArray[np.bool_]] = field(default_factory=dict)
    by_topic: dict[str, NDArray[np.bool_]] = field(default_factory=dict)
    # Normalised lower-case "title body" of the articles looked at for keywords so far.
    texts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, revision: str, articles: list[TaggedArticle]) -> ArticleIndex:
        index = cls(revision, articles)
        region_positions: dict[str, list[int]] = {}
        topic_positions: dict[str, list[int]] = {}
        for position, article in enumerate(articles):
            for region in article.regions:
                region_positions.setdefault(region, []).append(position)
            for topic in article.topics:
                topic_positions.setdefault(topic, []).append(position)
        index.by_region = {k: index._mask(v) for k, v in region_positions.items()}
        index.by_topic = {k: index._mask(v) for k, v in topic_positions.items()}
        return index

    def _mask(self, positions: list[int]) -> NDArray[np.bool_]:
        mask = np.zeros(len(self.articles), dtype=bool)
        mask[np.asarray(positions, dtype=np.int64)] = True
        return mask

    def _any(self, masks: dict[str, NDArray[np.bool_]], keys: Sequence[str]) -> NDArray[np.bool_]:
        found = np.zeros(len(self.articles), dtype=bool)
        for key in keys:
            mask = masks.get(key)
            if mask is not None:
                found |= mask
        return found

    def choose(
        self,
        wanted: FeedFilter,
        limit: int,
        fetch_texts: Callable[[Sequence[str]], dict[str, tuple[str, str]]],
    ) -> list[TaggedArticle]:
        """The newest ``limit`` articles ``wanted`` matches. ``fetch_texts(ids)`` gives
        (title, body) of articles whose text a keyword must be looked for in."""
        count = len(self.articles)
        allowed = (
            self._any(self.by_region, wanted.regions)
            if wanted.regions
            else np.ones(count, dtype=bool)
        )
        allowed &= ~self._any(self.by_region, wanted.exclude_regions)
        allowed &= ~self._any(self.by_topic, wanted.exclude_topics)
        if not wanted.topics and not wanted.keywords:
            return [self.articles[i] for i in np.flatnonzero(allowed)[:limit]]
        by_topic = self._any(self.by_topic, wanted.topics)
        keys = [f" {normalize_phrase(keyword)} " for keyword in wanted.keywords]
        chosen: list[TaggedArticle] = []
        positions = np.flatnonzero(allowed)
        for start in range(0, len(positions), 256):
            block = positions[start : start + 256]
            if keys:
                missing = [
                    self.articles[i].id
                    for i in block
                    if not by_topic[i] and self.articles[i].id not in self.texts
                ]
                if missing:
                    for article_id, (title, body) in fetch_texts(missing).items():
                        text = normalize(title).lower() + normalize(body).lower()
                        self.texts[article_id] = text
            for i in block:
                article = self.articles[i]
                if by_topic[i] or (
                    keys and any(key in self.texts.get(article.id, "") for key in keys)
                ):
                    chosen.append(article)
                    if len(chosen) >= limit:
                        return chosen
        return chosen
