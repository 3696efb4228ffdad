"""Synthetic article stores and articles, drawn from the shipped gazetteer and taxonomy.

Every article is about 700 characters, names one or two places or agencies in
its title and a few topics' cue phrases in its body, like the real store.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS
from syndicator.models import Article, content_hash, derive_id

FILLER = (
    "Officials said the measure would shorten clearance times and improve compliance. "
    "The administration will review the results with traders after six months. "
    "Training sessions for officers and brokers are planned across the country. "
    "The reform follows consultations with the private sector and partner agencies. "
)
VERBS = ("Launches", "Expands", "Strengthens", "Reviews", "Modernises", "Pilots", "Adopts")


@dataclass(frozen=True, slots=True)
class Vocabulary:
    places: list[str]
    cues: list[str]

    @classmethod
    def load(cls) -> Vocabulary:
        regions = tomllib.loads(SHIPPED_REGIONS.read_text(encoding="utf-8"))
        topics = tomllib.loads(SHIPPED_TOPICS.read_text(encoding="utf-8"))
        places = [country["name"] for country in regions["country"]]
        for country in regions["country"]:
            places.extend(country.get("places", [])[:3])
        cues = [cue for topic in topics["topic"] for cue in topic["cues"][:6]]
        return cls(places, cues)


def article_texts(count: int, seed: int = 7) -> Iterator[tuple[str, str]]:
    """``count`` distinct (title, body) pairs of about 700 characters."""
    vocabulary = Vocabulary.load()
    chooser = random.Random(seed)
    for number in range(count):
        place = chooser.choice(vocabulary.places)
        cue = chooser.choice(vocabulary.cues)
        title = f"{place} Customs {chooser.choice(VERBS)} {cue.title()} Programme No. {number}"
        other = chooser.choice(vocabulary.places)
        body = (
            f"The customs administration of {place} has announced a new {cue} programme, "
            f"developed with support from {other}. "
            f"It also covers {chooser.choice(vocabulary.cues)} and "
            f"{chooser.choice(vocabulary.cues)}. {FILLER}"
        )
        yield title, body[:700]


STORE_FORMATS = ("digest", "toml", "yaml", "mixed")


def _front_matter(kind: str, title: str, number: int) -> str:
    """Front matter as archives carry it: a title, a date and an author (Hugo, Jekyll)."""
    moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(hours=number)
    if kind == "toml":
        return (
            f'+++\ntitle = "{title}"\ndate = {moment.isoformat()}\nauthor = "Press office"\n+++\n'
        )
    return f'---\ntitle: "{title}"\ndate: {moment.isoformat()}\nauthor: Press office\n---\n'


def write_store(
    root: Path, count: int, *, store_format: str = "mixed", per_directory: int = 1000
) -> Path:
    """A store of ``count`` articles in one format, nested two directories deep.

    ``digest``: digest text files of 50 articles each; ``toml`` and ``yaml``: one Markdown
    file per article with TOML or YAML front matter; ``mixed``: the three in turn.
    """
    if store_format not in STORE_FORMATS:
        raise ValueError(f"unknown store format {store_format!r}; one of {STORE_FORMATS}")
    root.mkdir(parents=True, exist_ok=True)
    kinds = ("digest", "toml", "yaml") if store_format == "mixed" else (store_format,)
    digest_lines: list[str] = []
    for number, (title, body) in enumerate(article_texts(count)):
        # Nested two deep, like an archive by year and month: 2026/03/...
        batch = number // per_directory
        directory = root / f"{2000 + batch // 12:04d}" / f"{batch % 12 + 1:02d}"
        kind = kinds[number % len(kinds)]
        if kind != "digest":
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"article-{number}.md").write_text(
                f"{_front_matter(kind, title, number)}{body}\n", encoding="utf-8"
            )
        else:
            digest_lines.append(f"{title}\n\n{title}\n\n{body}\n\n")
            if len(digest_lines) == 50:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / f"digest-{number}.txt").write_text(
                    "".join(digest_lines), encoding="utf-8"
                )
                digest_lines = []
    if digest_lines:
        (root / "digest-last.txt").write_text("".join(digest_lines), encoding="utf-8")
    return root


def articles(count: int, regions: list[str], topics: list[str]) -> list[Article]:
    """Classified articles in memory, newest first, for rendering benchmarks."""
    chooser = random.Random(11)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    made = []
    for number, (title, body) in enumerate(article_texts(count)):
        moment = start + timedelta(seconds=count - number)
        made.append(
            Article(
                id=derive_id(title),
                title=title,
                body=body,
                summary=body[:200],
                link="",
                author="Press office",
                source="bench.txt",
                line=number,
                regions=(chooser.choice(regions),),
                topics=tuple(chooser.sample(topics, 2)),
                published=moment,
                updated=moment,
                first_seen=moment,
                content_hash=content_hash(title, body),
                seq=number,
            )
        )
    return made


CADENCES = ("immediate", "daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIMEZONES = ("UTC", "Europe/Brussels", "America/Bogota", "Africa/Nairobi", "Asia/Tokyo")


Subscription = tuple[str, dict[str, list[str]], str, int, str, str]


def subscriptions(
    count: int, regions: list[str], topics: list[str], seed: int = 3
) -> Iterator[Subscription]:
    """``count`` random subscriptions: (email, filters, cadence, hour, weekday, timezone).

    Most people pick a region or two and a topic or two; some want everything in a
    region, a few follow keywords or exclude a region.
    """
    keywords = ["scanner", "green lane", "tariff", "single window", "valuation"]
    chooser = random.Random(seed)
    for number in range(count):
        filters = {
            "regions": sorted(chooser.sample(regions, chooser.choice((0, 1, 1, 1, 2)))),
            "topics": sorted(chooser.sample(topics, chooser.choice((0, 1, 1, 2, 2)))),
            "keywords": sorted(chooser.sample(keywords, 1)) if chooser.random() < 0.05 else [],
            "exclude_regions": ["global"] if chooser.random() < 0.1 else [],
            "exclude_topics": [],
        }
        yield (
            f"reader{number}@bench.example.org",
            filters,
            chooser.choice(CADENCES),
            chooser.randrange(24),
            chooser.choice(WEEKDAYS),
            chooser.choice(TIMEZONES),
        )
