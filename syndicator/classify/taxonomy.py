"""The taxonomy (``syndicator/data/topics.toml``, or ``classify.topics``): topics and their
cue phrases; and the reading of the classifier's TOML files.

Apart from the classifier so that what needs only the topics (subscribers name them) loads
no matcher.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syndicator.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Topic:
    slug: str
    name: str
    description: str
    cues: tuple[str, ...]
    weak_cues: tuple[str, ...] = ()


def read_data(path: Path, what: str) -> bytes:
    """The bytes of the classifier's file ``path`` (``what``: regions or topics)."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{what} not found", path=path, hint=f"set classify.{what} in the configuration"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc


def parse_toml(data: bytes, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from exc


def load_toml(path: Path, what: str) -> dict[str, Any]:
    return parse_toml(read_data(path, what), path)


def string_list(path: Path, key: str, value: Any) -> list[str]:
    """The non-blank strings of the list ``value`` at ``key``, else a ConfigError."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError("must be a list of strings", path=path, key=key)
    return [item for item in value if item.strip()]


@dataclass(slots=True)
class Taxonomy:
    topics: dict[str, Topic]

    @classmethod
    def load(cls, path: Path) -> Taxonomy:
        return cls.from_dict(load_toml(path, "topics"), path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> Taxonomy:
        topics: dict[str, Topic] = {}
        for index, entry in enumerate(data.get("topic", [])):
            key = f"topic[{index}]"
            slug = entry.get("slug")
            if not isinstance(slug, str) or not slug or slug != slug.lower() or " " in slug:
                raise ConfigError(
                    f"invalid topic slug {slug!r}: use lower-case words joined by hyphens",
                    path=path,
                    key=f"{key}.slug",
                )
            if slug in topics:
                raise ConfigError(f"topic {slug!r} defined twice", path=path, key=f"{key}.slug")
            cues = string_list(path, f"{key}.cues", entry.get("cues"))
            if not cues:
                raise ConfigError(f"topic {slug!r} has no cues", path=path, key=f"{key}.cues")
            topics[slug] = Topic(
                slug=slug,
                name=str(entry.get("name", slug)),
                description=str(entry.get("description", "")),
                cues=tuple(cues),
                weak_cues=tuple(string_list(path, f"{key}.weak_cues", entry.get("weak_cues"))),
            )
        if not topics:
            raise ConfigError("no [[topic]] entries", path=path)
        return cls(topics)
