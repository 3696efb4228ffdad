"""The store files a process keeps between cycles follow what other processes record."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.pipeline import reload_store
from syndicator.state.articles import KnownFiles, record_files
from syndicator.state.db import State
from tests.conftest import T0, write


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    with closing(State.open(state_url)) as opened:
        yield opened


def digest(title: str) -> str:
    return f"{title}\n\n{title}\n\nCustoms officials in Kenya met to discuss transit.\n"


def test_a_file_another_process_forgot_is_read_again(
    tmp_path: Path, classifier: Classifier, state: State, state_url: str
) -> None:
    """Another process's cycle in between (a file that left the store and came back as it
    was) is seen through the files revision: the file is read again, not taken as known."""
    store = tmp_path / "articles"
    path = write(store / "a.txt", digest("Kenya Extends Cargo Tracking"))
    write(store / "b.txt", digest("Ghana Launches AEO Programme"))
    kept = KnownFiles()
    reload_store(store, classifier, state, now=T0, known_files=kept)
    assert reload_store(store, classifier, state, now=T0, known_files=kept).files_read == 0
    stat = path.stat()
    data = path.read_bytes()
    path.unlink()
    with closing(State.open(state_url)) as other:
        gone = reload_store(store, classifier, other, now=T0 + timedelta(hours=1))
    assert gone.removed == ["kenya-extends-cargo-tracking"]
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    back = reload_store(store, classifier, state, now=T0 + timedelta(hours=2), known_files=kept)
    assert back.files_read == 1
    assert sorted(article.id for article in state.articles()) == [
        "ghana-launches-aeo-programme",
        "kenya-extends-cargo-tracking",
    ]
    # What it recorded itself it keeps: the next cycle reads nothing.
    again = reload_store(store, classifier, state, now=T0 + timedelta(hours=3), known_files=kept)
    assert again.files_read == 0


def test_a_write_following_anothers_drops_what_was_kept(state: State, state_url: str) -> None:
    """Files kept, then another handle records a file, then this one records its own: the
    kept mapping missed the other's row, so it is read again in full."""
    kept = KnownFiles()
    row = {"size": 1, "mtime_ns": 1, "problems": ""}
    with state.transaction() as conn:
        revisions = record_files(conn, forget=[], read=[{"path": "/a", **row}])
    kept.recorded(revisions, forget=[], read=[{"path": "/a", **row}])
    with state.transaction() as conn:
        assert kept.read(state, conn) == {"/a": (1, 1)}
    with closing(State.open(state_url)) as other, other.transaction() as conn:
        record_files(conn, forget=[], read=[{"path": "/b", **row}])
    with state.transaction() as conn:
        revisions = record_files(conn, forget=["/a"], read=[{"path": "/c", **row}])
    kept.recorded(revisions, forget=["/a"], read=[{"path": "/c", **row}])
    with state.transaction() as conn:
        assert kept.read(state, conn) == {"/b": (1, 1), "/c": (1, 1)}
    with state.transaction() as conn:
        assert record_files(conn, forget=[], read=[]) is None
