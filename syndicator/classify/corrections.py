"""Editors' corrections: regions and topics set by hand for articles of any format.

Digest-format articles cannot carry front matter, so editors put their verdicts in
a TOML file (``classify.corrections`` in the configuration)::

    [[correction]]
    article = "Kenya Williams Appointed Head of Post-Clearance Audit"   # an id or a title
    regions = ["americas"]
    topics = ["post-clearance-audit"]
    note = "Kenya Williams is a person"

``regions`` and ``topics`` are each optional and override what classification (or
the article's front matter) says, separately. An article is named by its id or its
title; a title is matched the way ids are derived from titles, so capitals,
accents and punctuation do not matter.

A bad entry (an unknown region or topic, no ``article``, a key nobody reads) is one
problem naming the file, line and key; the other entries still apply. Loading is
pure apart from reading the one file.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syndicator.errors import ConfigError
from syndicator.models import REGION_SLUGS, derive_id

_KEYS = frozenset({"article", "regions", "topics", "note"})
_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*correction[ \t]*\]\]", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Correction:
    """An editor's verdict on one article."""

    article: str  # the id or title as written
    regions: tuple[str, ...] | None
    topics: tuple[str, ...] | None
    line: int
    note: str = ""

    def where(self, path: Path | None) -> str:
        return f"{path}:{self.line}" if path else f"line {self.line}"


@dataclass(slots=True)
class Corrections:
    """Every valid correction of one file, found by article id or title."""

    path: Path | None = None
    entries: list[Correction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    digest: str = ""
    _by_key: dict[str, Correction] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, regions: frozenset[str], topics: frozenset[str]) -> Corrections:
        """Read ``path``; a missing or unparseable file is a :class:`ConfigError`, a bad entry
        a problem in :attr:`problems`."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ConfigError(
                "corrections file not found",
                path=path,
                hint="create it or remove classify.corrections from the configuration",
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
        try:
            text = raw.decode("utf-8")
            data = tomllib.loads(text)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=path) from exc
        found = cls.from_dict(data, regions, topics, path=path, text=text)
        found.digest = hashlib.sha256(raw).hexdigest()[:16]
        return found

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        regions: frozenset[str],
        topics: frozenset[str],
        *,
        path: Path | None = None,
        text: str = "",
    ) -> Corrections:
        lines = [text.count("\n", 0, match.start()) + 1 for match in _HEADER.finditer(text)]
        corrections = cls(path=path)
        others = sorted(set(data) - {"correction"})
        if others:
            corrections.problems.append(
                f"{path}: unknown key {others[0]!r}; corrections are [[correction]] tables"
            )
        entries = data.get("correction", [])
        if not isinstance(entries, list):
            entries = []
            corrections.problems.append(f"{path}: correction must be [[correction]] tables")
        for index, entry in enumerate(entries):
            line = lines[index] if index < len(lines) else 0
            problem, correction = _entry(entry, index, line, regions, topics)
            if problem:
                corrections.problems.append(f"{path}:{line}: correction[{index}]{problem}")
                continue
            assert correction is not None
            for key in {correction.article, derive_id(correction.article)}:
                if key in corrections._by_key:
                    first = corrections._by_key[key]
                    corrections.problems.append(
                        f"{path}:{line}: correction[{index}].article: {correction.article!r} "
                        f"is corrected already at line {first.line}; the first one applies"
                    )
                    break
            else:
                corrections.entries.append(correction)
                corrections._by_key.setdefault(correction.article, correction)
                corrections._by_key.setdefault(derive_id(correction.article), correction)
        return corrections

    def find(self, article_id: str, title: str) -> Correction | None:
        """The correction naming this article by id or by title, if any."""
        if not self._by_key:
            return None
        return self._by_key.get(article_id) or self._by_key.get(derive_id(title))

    def unknown(self, ids: set[str]) -> list[Correction]:
        """Corrections naming no article of ``ids`` (by id or by the id of the title)."""
        return [
            entry
            for entry in self.entries
            if entry.article not in ids and derive_id(entry.article) not in ids
        ]


def _entry(
    entry: Any, index: int, line: int, regions: frozenset[str], topics: frozenset[str]
) -> tuple[str, Correction | None]:
    """``("", correction)``, or ``(".key: what is wrong", None)``."""
    if not isinstance(entry, dict):
        return ": must be a table", None
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        return f".{unknown[0]}: unknown key; use article, regions, topics, note", None
    article = entry.get("article")
    if not isinstance(article, str) or not article.strip():
        return ".article: name the article by its id or its title", None
    slugs: dict[str, tuple[str, ...] | None] = {}
    for key, known in (("regions", regions), ("topics", topics)):
        value = entry.get(key)
        if value is None:
            slugs[key] = None
            continue
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f".{key}: must be a list of slugs", None
        bad = [item for item in value if item not in known]
        if bad:
            return (
                f".{key}: unknown {key[:-1]} {bad[0]!r}; known: {', '.join(sorted(known))}",
                None,
            )
        slugs[key] = tuple(dict.fromkeys(value))
    if slugs["regions"] == ():
        return ".regions: an article needs at least one region (use global)", None
    if slugs["regions"] is None and slugs["topics"] is None:
        return ": set regions, topics or both", None
    note = entry.get("note", "")
    if not isinstance(note, str):
        return ".note: must be a string", None
    return "", Correction(article.strip(), slugs["regions"], slugs["topics"], line, note)


REGIONS = frozenset(REGION_SLUGS)
