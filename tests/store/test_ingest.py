"""Reading a large batch of store files on every core gives what reading them here gives."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.errors import StoreError
from syndicator.store.files import scan
from syndicator.store.ingest import PARALLEL_MIN_FILES, ReadFile, read_files


def test_store_errors_survive_pickling() -> None:
    error = StoreError(Path("/store/a.txt"), "invalid UTF-8 (byte 0xff); file skipped", line=3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, copy.detail, str(copy)) == (
        error.path,
        error.line,
        error.detail,
        str(error),
    )


def make_store(root: Path) -> Path:
    """More files than are read in-process, good and bad mixed."""
    places = ["Kenya", "Chile", "Japan", "Morocco", "France"]
    for number in range(PARALLEL_MIN_FILES + 40):
        directory = root / f"{number % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        title = f"{places[number % 5]} Customs Launches Single Window Phase {number}"
        kind = number % 10
        if kind == 0:
            (directory / f"{number}.txt").write_bytes(b"\x00\xff binary \x00" * 10)
        elif kind == 1:
            (directory / f"{number}.txt").write_bytes(b"")
        elif kind == 2:
            (directory / f"{number}.md").write_text(f"+++\ntitle = \n+++\n{title}\n")
        elif kind == 3:
            (directory / f"{number}.md").write_text(
                f'+++\ntitle = "{title}"\nregions = ["americas"]\n+++\nThe body.\n'
            )
        else:
            (directory / f"{number}.txt").write_text(
                f"{title}\n\n{title}\n\nThe customs administration of {places[number % 5]} "
                "extended its single window to transit cargo.\n"
            )
    return root


def summary(found: list[ReadFile]) -> list[tuple[object, ...]]:
    return [
        (
            read.stat.location,
            [(a.id, a.title, a.body, a.regions, a.topics) for a in read.articles],
            read.classes,
            [str(problem) for problem in read.problems],
        )
        for read in found
    ]


def test_workers_read_what_one_process_reads(
    tmp_path: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    files = scan(make_store(tmp_path / "store")).files
    alone = read_files(classifier, files, workers=1)
    assert sum(len(read.problems) for read in alone) >= 3 * len(files) // 10
    assert sum(len(read.articles) for read in alone) >= len(files) // 2
    assert summary(read_files(classifier, files, workers=2)) == summary(alone)
    assert "one core" not in caplog.text  # the workers did the reading


def test_workers_from_a_process_with_threads(
    tmp_path: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    """The service has threads: its workers come from a fork server, with the same result."""
    files = scan(make_store(tmp_path / "store")).files
    alone = read_files(classifier, files, workers=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        found = pool.submit(read_files, classifier, files, workers=2).result()
    assert threading.active_count() >= 1
    assert summary(found) == summary(alone)
    assert "one core" not in caplog.text  # the workers did the reading
