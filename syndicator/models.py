"""The data syndicator works on: articles as read from the store and as known to state."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REGION_SLUGS = (
    "americas",
    "east-southern-africa",
    "west-central-africa",
    "europe",
    "mena",
    "asia-pacific",
    "global",
)

ARTICLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_DERIVED_ID = 96
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def derive_id(title: str) -> str:
    """A stable article id from its title: lower-case ASCII words joined by hyphens.

    The same title (whatever its case, accents, punctuation or spacing) always
    gives the same id. Very long titles are cut and get a short hash of the whole
    title, so ids stay short and distinct.
    """
    folded = unicodedata.normalize("NFKD", title.casefold())
    ascii_text = folded.encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_text).strip("-")
    if slug and len(slug) <= _MAX_DERIVED_ID:
        return slug
    # surrogatepass: a title read from undecodable bytes still gets an id (and an error
    # report from the store) instead of stopping the cycle.
    digest = hashlib.sha256(
        " ".join(title.casefold().split()).encode("utf-8", "surrogatepass")
    ).hexdigest()
    if not slug:
        return f"article-{digest[:12]}"
    return f"{slug[:_MAX_DERIVED_ID].rstrip('-')}-{digest[:8]}"


def content_hash(title: str, body: str) -> str:
    """Hash of what a reader sees; ``updated`` moves only when this changes."""
    return hashlib.sha256(f"{title}\n\n{body}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RawArticle:
    """One article as the store holds it, before classification.

    ``regions`` and ``topics`` are set only when front matter names them; they
    then override what classification would infer.
    """

    id: str
    title: str
    body: str
    source: Path
    line: int
    summary: str = ""
    link: str = ""
    author: str = ""
    date: datetime | None = None
    updated: datetime | None = None
    regions: tuple[str, ...] | None = None
    topics: tuple[str, ...] | None = None
    format: str = "text"  # "text" (paragraphs) or "markdown"

    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.body)

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True, slots=True)
class Article:
    """An article as published: classified, with the dates state keeps for it."""

    id: str
    title: str
    body: str
    summary: str
    link: str
    author: str
    source: str
    line: int
    regions: tuple[str, ...]
    topics: tuple[str, ...]
    published: datetime
    updated: datetime
    first_seen: datetime
    content_hash: str
    seq: int = 0
    format: str = "text"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "regions": list(self.regions),
            "topics": list(self.topics),
            "published": self.published.isoformat(),
            "updated": self.updated.isoformat(),
            "first_seen": self.first_seen.isoformat(),
            "source": f"{self.source}:{self.line}",
            "link": self.link,
            "summary": self.summary,
            "author": self.author,
        }


def summarize(body: str, limit: int = 280) -> str:
    """The first sentence(s) of ``body``, at most ``limit`` characters, cut at a word."""
    text = " ".join(body.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end > limit // 2:
        return cut[: sentence_end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "…"
