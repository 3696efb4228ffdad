"""Reading and classifying changed store files, on every core when there are many.

Reading, parsing and classifying an article is pure work on its own bytes, so a
large batch (a first run over an archive, a reclassification) is split across
worker processes; a handful of changed files is read in this process, where
starting workers would cost more than it saves. The result is the same either
way, in the same order.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from syndicator.classify.classifier import Classifier
from syndicator.errors import StoreError
from syndicator.models import RawArticle
from syndicator.state.db import join_slugs
from syndicator.store.files import FileStat, read_file

log = logging.getLogger(__name__)

# Fewer changed files than this are read here: a worker pool costs a few tenths of a second.
PARALLEL_MIN_FILES = 256
_FILES_PER_TASK = 64

Classes = tuple[str, str]  # regions and topics, as stored (space-separated slugs)


@dataclass(slots=True)
class ReadFile:
    """One store file read: its articles, their classes (same order) and its problems."""

    stat: FileStat
    articles: list[RawArticle]
    classes: list[Classes]
    problems: list[StoreError]


def classes_of(
    classifier: Classifier,
    title: str,
    body: str,
    front_regions: tuple[str, ...] | None,
    front_topics: tuple[str, ...] | None,
    *,
    article_id: str = "",
) -> Classes:
    """Regions and topics of an article; front matter overrides what classification infers,
    and an editor's correction (see :mod:`syndicator.classify.corrections`) both."""
    correction = classifier.corrections.find(article_id, title)
    if correction is not None:
        if correction.regions is not None:
            front_regions = correction.regions
        if correction.topics is not None:
            front_topics = correction.topics
    if front_regions is not None and front_topics is not None:
        return join_slugs(front_regions), join_slugs(front_topics)
    regions, topics = classifier.decide(title, body)
    if front_regions is not None:
        regions = front_regions
    if front_topics is not None:
        topics = front_topics
    return join_slugs(regions), join_slugs(topics)


def _read_one(
    classifier: Classifier, path: Path
) -> tuple[list[RawArticle], list[Classes], list[StoreError]]:
    articles, problems = read_file(path)
    classes = [
        classes_of(classifier, a.title, a.body, a.regions, a.topics, article_id=a.id)
        for a in articles
    ]
    return articles, classes, problems


_worker_classifier: Classifier | None = None


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _start_worker(classifier: Classifier, parent: int | None) -> None:
    """Set up a worker: its classifier, and its end when the process that started it dies.

    A forked worker holds copies of every descriptor its parent had, the parent's state
    database connections included. If the parent is killed, workers left waiting for work
    would keep those connections open, and the server would never see the parent go:
    on PostgreSQL, its cycle lock would stay held and no instance would run the cycle
    again. So the kernel kills each worker with its parent (Linux), and a worker whose
    parent died before this ran ends at once.
    """
    global _worker_classifier  # noqa: PLW0603 - one classifier per worker process
    _worker_classifier = classifier
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _read_many(
    locations: list[str],
) -> list[tuple[list[RawArticle], list[Classes], list[StoreError]]]:
    assert _worker_classifier is not None
    return [_read_one(_worker_classifier, Path(location)) for location in locations]


def workers_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def read_files(
    classifier: Classifier, files: Sequence[FileStat], *, workers: int | None = None
) -> list[ReadFile]:
    """Read, parse and classify ``files``, in order."""
    count = workers_available() if workers is None else workers
    if count < 2 or len(files) < PARALLEL_MIN_FILES:
        return [ReadFile(item, *_read_one(classifier, item.path)) for item in files]
    try:
        return _read_in_parallel(classifier, files, min(count, 8))
    except (OSError, BrokenProcessPool) as exc:
        log.warning("reading on one core (worker processes unavailable: %s)", exc)
        return [ReadFile(item, *_read_one(classifier, item.path)) for item in files]


def _read_in_parallel(
    classifier: Classifier, files: Sequence[FileStat], workers: int
) -> list[ReadFile]:
    # A process with one thread can fork cheaply; one with threads (the service) must not
    # fork itself, so its workers come from a clean fork server.
    method = "fork" if threading.active_count() == 1 else "forkserver"
    chunks = [list(files[i : i + _FILES_PER_TASK]) for i in range(0, len(files), _FILES_PER_TASK)]
    found: list[ReadFile] = []
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_start_worker,
        # A forked worker's parent is this process; a fork server's workers are its own.
        initargs=(classifier, os.getpid() if method == "fork" else None),
    ) as pool:
        # Paths go as text: building them here would cost this process, which waits for
        # every worker's results, a little for every file.
        results = pool.map(_read_many, [[item.location for item in chunk] for chunk in chunks])
        for chunk, result in zip(chunks, results, strict=True):
            for item, (articles, classes, problems) in zip(chunk, result, strict=True):
                found.append(ReadFile(item, articles, classes, problems))
    return found
