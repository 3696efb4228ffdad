"""The classifier kept on disk: read back only while the gazetteer, the taxonomy and the code
are those it was built from, only when whole, and never from a file another user could
write (unpickling runs code)."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from syndicator.classify import cache
from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS
from syndicator.store.files import read_file
from tests.conftest import SAMPLE_STORE


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the shipped gazetteer and taxonomy, free to edit."""
    regions, topics = tmp_path / "regions.toml", tmp_path / "topics.toml"
    shutil.copyfile(SHIPPED_REGIONS, regions)
    shutil.copyfile(SHIPPED_TOPICS, topics)
    return regions, topics


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "syndicator"


def load(files: tuple[Path, Path], directory: Path | None) -> Classifier:
    return Classifier.load(*files, cache_dir=directory)


def the_entry(directory: Path) -> Path:
    (entry,) = directory.iterdir()
    return entry


def verdicts(classifier: Classifier) -> list[str]:
    """Everything classification says about the sample store, evidence included."""
    articles, errors = read_file(SAMPLE_STORE)
    assert errors == []
    return [repr(classifier.classify(article.title, article.body)) for article in articles]


class Trap:
    """Unpickled, it creates ``marker``: proof that a file's pickle was run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def plant(entry: Path, payload: bytes) -> None:
    """Replace the payload of ``entry`` (keeping its header: format and key) by ``payload``,
    with the checksum that goes with it: an entry that only its owner check can refuse."""
    magic, key, _checksum, _old = entry.read_bytes().split(b"\n", 3)
    checksum = hashlib.sha256(payload).hexdigest().encode()
    entry.write_bytes(b"\n".join([magic, key, checksum, payload]))


def test_a_cached_classifier_decides_as_a_built_one(
    files: tuple[Path, Path], directory: Path
) -> None:
    built = load(files, None)
    assert not directory.exists()
    first = load(files, directory)  # builds, and stores
    entry = the_entry(directory)
    assert (entry.stat().st_mode & 0o777, directory.stat().st_mode & 0o777) == (0o600, 0o700)
    written = entry.stat().st_ino
    cached = load(files, directory)  # reads back: a hit writes nothing
    assert entry.stat().st_ino == written
    assert [path.name for path in directory.iterdir()] == [entry.name]  # no temporary left
    for classifier in (first, cached):
        assert classifier.fingerprint == built.fingerprint
        assert classifier.conflicts == built.conflicts
        assert classifier.gazetteer == built.gazetteer
        assert classifier.taxonomy == built.taxonomy
        assert verdicts(classifier) == verdicts(built)


def test_an_edited_gazetteer_or_taxonomy_is_built_again(
    files: tuple[Path, Path], directory: Path
) -> None:
    regions, topics = files
    title, body = "Xanadu Joins the Convention", "Xanadu's customs service signed it."
    before = load(files, directory)
    assert before.classify(title, body).regions == ("global",)
    written = the_entry(directory).stat().st_ino
    regions.write_text(
        regions.read_text(encoding="utf-8") + '\n[[country]]\nname = "Xanadu"\nregion = "europe"\n',
        encoding="utf-8",
    )
    after = load(files, directory)
    assert after.classify(title, body).regions == ("europe",)
    assert after.fingerprint != before.fingerprint
    entry = the_entry(directory)  # the same entry, replaced
    assert entry.stat().st_ino != written
    topics.write_text(
        topics.read_text(encoding="utf-8")
        + '\n[[topic]]\nslug = "pleasure-domes"\ncues = ["pleasure dome"]\n',
        encoding="utf-8",
    )
    again = load(files, directory)
    assert "pleasure-domes" in again.taxonomy.topics
    assert again.classify("A stately pleasure dome", "Decreed.").topics == ("pleasure-domes",)
    assert again.classify(title, body).regions == ("europe",)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="cut-short"),
        pytest.param(lambda data: data[:-100] + bytes(100), id="payload-zeroed"),
        pytest.param(lambda data: data.replace(b"\n", b" ", 2), id="header-broken"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: os.urandom(4096), id="noise"),
    ],
)
def test_a_damaged_entry_is_built_again(
    files: tuple[Path, Path], directory: Path, damage: Callable[[bytes], bytes]
) -> None:
    built = load(files, directory)
    entry = the_entry(directory)
    damaged = damage(entry.read_bytes())
    entry.write_bytes(damaged)
    assert verdicts(load(files, directory)) == verdicts(built)
    # Stored whole again: the next load reads it back (and so writes nothing).
    rewritten = the_entry(directory).stat()
    assert the_entry(directory).read_bytes() != damaged
    assert verdicts(load(files, directory)) == verdicts(built)
    assert the_entry(directory).stat().st_ino == rewritten.st_ino


def test_an_entry_of_the_right_key_that_is_not_the_classifier_is_built_again(
    files: tuple[Path, Path], directory: Path, tmp_path: Path
) -> None:
    """The control for the tests below: planted in a file only its owner can write, the
    trap is unpickled (the checks before it pass), then refused as no classifier."""
    built = load(files, directory)
    marker = tmp_path / "unpickled"
    plant(the_entry(directory), pickle.dumps(Trap(marker)))
    assert verdicts(load(files, directory)) == verdicts(built)
    assert marker.exists()


def test_an_entry_others_could_write_is_never_unpickled(
    files: tuple[Path, Path], directory: Path, tmp_path: Path
) -> None:
    built = load(files, directory)
    marker = tmp_path / "unpickled"
    entry = the_entry(directory)
    plant(entry, pickle.dumps(Trap(marker)))
    entry.chmod(0o620)  # the group may write it
    assert verdicts(load(files, directory)) == verdicts(built)
    assert not marker.exists()
    # Replaced by a good entry of our own.
    assert the_entry(directory).stat().st_mode & 0o777 == 0o600
    plant(the_entry(directory), pickle.dumps(Trap(marker)))
    directory.chmod(0o777)  # anyone may replace the file
    assert verdicts(load(files, directory)) == verdicts(built)
    assert not marker.exists()


def test_an_entry_that_is_a_symbolic_link_is_never_followed(
    files: tuple[Path, Path], directory: Path, tmp_path: Path
) -> None:
    built = load(files, directory)
    marker = tmp_path / "unpickled"
    entry = the_entry(directory)
    elsewhere = tmp_path / "elsewhere.pickle"
    entry.rename(elsewhere)
    plant(elsewhere, pickle.dumps(Trap(marker)))
    entry.symlink_to(elsewhere)
    assert verdicts(load(files, directory)) == verdicts(built)
    assert not marker.exists()
    assert not the_entry(directory).is_symlink()  # replaced by a file of our own


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_entry_owned_by_another_user_is_never_unpickled(
    files: tuple[Path, Path], directory: Path, tmp_path: Path
) -> None:
    built = load(files, directory)
    marker = tmp_path / "unpickled"
    entry = the_entry(directory)
    plant(entry, pickle.dumps(Trap(marker)))
    nobody = 65534
    os.chown(entry, nobody, nobody)
    assert verdicts(load(files, directory)) == verdicts(built)
    assert not marker.exists()
    plant(the_entry(directory), pickle.dumps(Trap(marker)))
    os.chown(directory, nobody, nobody)
    assert verdicts(load(files, directory)) == verdicts(built)
    assert not marker.exists()


def test_a_directory_that_cannot_be_made_only_costs_the_cache(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n", encoding="utf-8")
    built = load(files, None)
    assert verdicts(load(files, blocker / "syndicator")) == verdicts(built)


def test_the_cache_lives_in_the_users_cache_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ana")
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/ana")
    assert cache.default_directory() == Path("/var/cache/ana/syndicator")
    # The XDG specification: a relative path is invalid and ignored.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert cache.default_directory() == Path("/home/ana/.cache/syndicator")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.default_directory() == Path("/home/ana/.cache/syndicator")
    monkeypatch.delenv("HOME")
    assert cache.default_directory() is None
