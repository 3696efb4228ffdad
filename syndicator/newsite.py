"""``syndicator init``: a new site directory that works as written.

A site is a configuration with comments, a subscribers file, and the directories the
configuration names: the article store, state, feeds and the Maildir. With ``example``, the
store holds the sample WCO news and the subscribers file three example subscribers.
Nothing is ever overwritten: the directory must not exist or be empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syndicator.config import SHIPPED_DATA
from syndicator.errors import SyndicatorError
from syndicator.publish.publisher import write_if_changed

SITE_FILES = SHIPPED_DATA / "site"
EXAMPLE_STORE = SHIPPED_DATA / "examples"
DIRECTORIES = ("articles", "state", "feeds", "mail")


class SiteExistsError(SyndicatorError, FileExistsError):
    """The directory given to ``init`` already holds something."""


@dataclass(frozen=True, slots=True)
class NewSite:
    directory: Path
    config: Path
    written: tuple[Path, ...]


def write_site(directory: Path, *, example: bool) -> NewSite:
    """Write a new site into ``directory`` (created if missing); refuse a non-empty one."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SiteExistsError(
            f"{directory} already exists and is not an empty directory",
            hint="give a new directory; init never overwrites anything",
        )
    files: dict[Path, bytes] = {
        directory / "syndicator.toml": (SITE_FILES / "syndicator.toml").read_bytes(),
        directory / "subscribers.toml": (
            SITE_FILES / ("subscribers-example.toml" if example else "subscribers.toml")
        ).read_bytes(),
    }
    if example:
        for article in sorted(EXAMPLE_STORE.iterdir()):
            if article.is_file():
                files[directory / "articles" / article.name] = article.read_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    for name in DIRECTORIES:
        (directory / name).mkdir(exist_ok=True)
    for path, data in files.items():
        write_if_changed(path, data)
    return NewSite(directory, directory / "syndicator.toml", tuple(files))
