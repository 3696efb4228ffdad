"""Reloading the store into state: new, edited, removed, incremental, and front matter;
the plan of what changed, decided on error kinds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, load_config
from syndicator.errors import ErrorKind, SyndicatorError
from syndicator.pipeline import plan_reconcile, reload_store, vanished_files
from syndicator.state import articles
from syndicator.state.db import State
from syndicator.store.files import scan
from syndicator.store.ingest import read_files
from tests.conftest import CONFIG_DIR, SAMPLE_STORE, T0, write


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    opened = State.open(state_url)
    yield opened
    opened.close()


def digest(*titles: str, body: str = "Customs officials in Kenya met to discuss transit.") -> str:
    return "".join(f"{t}\n\n{t}\n\n{body}\n\n" for t in titles)


def test_first_cycle_records_every_article_with_distinct_times(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    store.mkdir()
    (store / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    result = reload_store(store, classifier, state, now=T0)
    assert len(result.new) == 10
    assert result.errors == []
    articles = state.articles()
    assert len(articles) == 10
    assert len({a.published for a in articles}) == 10
    # Store order: the first article of the file is the newest.
    assert articles[0].title.startswith("Colombia Adopts")
    assert articles[0].published == T0
    assert all(a.updated == a.published == a.first_seen for a in articles)
    assert articles[0].regions == ("americas",)
    assert "risk-management" in articles[0].topics


def test_unchanged_store_is_not_read_again(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    write(store / "a.txt", digest("Kenya Extends Cargo Tracking"))
    write(store / "b.txt", digest("Ghana Launches AEO Programme"))
    first = reload_store(store, classifier, state, now=T0)
    assert first.files_read == 2
    second = reload_store(store, classifier, state, now=T0 + timedelta(minutes=5))
    assert (second.files_read, second.new, second.updated, second.removed) == (0, [], [], [])
    assert second.articles == 2
    # Touching one file re-reads that file only.
    path = store / "b.txt"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = reload_store(store, classifier, state, now=T0 + timedelta(minutes=10))
    assert third.files_read == 1
    assert third.updated == []


def test_edit_moves_updated_but_never_published(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    path = write(store / "a.txt", digest("Kenya Extends Cargo Tracking"))
    reload_store(store, classifier, state, now=T0)
    path.write_text(digest("Kenya Extends Cargo Tracking", body="Now also for Uganda."))
    later = T0 + timedelta(hours=1)
    result = reload_store(store, classifier, state, now=later)
    assert result.updated == ["kenya-extends-cargo-tracking"]
    (article,) = state.articles()
    assert article.published == T0
    assert article.updated == later
    assert article.body == "Now also for Uganda."


def test_removed_article_comes_back_with_its_first_seen(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    path = write(store / "a.txt", digest("Kenya Extends Cargo Tracking", "Ghana Launches AEO"))
    reload_store(store, classifier, state, now=T0)
    path.write_text(digest("Ghana Launches AEO"))
    result = reload_store(store, classifier, state, now=T0 + timedelta(hours=1))
    assert result.removed == ["kenya-extends-cargo-tracking"]
    assert [a.id for a in state.articles()] == ["ghana-launches-aeo"]
    # Moved to another file: same article, same first_seen, not new.
    write(store / "b.txt", digest("Kenya Extends Cargo Tracking"))
    back = reload_store(store, classifier, state, now=T0 + timedelta(hours=2))
    assert back.new == []
    kenya = next(a for a in state.articles() if a.id.startswith("kenya"))
    assert kenya.first_seen == T0
    assert kenya.source.endswith("b.txt")


def test_deleted_file_removes_its_articles(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    path = write(store / "a.txt", digest("Kenya Extends Cargo Tracking"))
    write(store / "b.txt", digest("Ghana Launches AEO"))
    reload_store(store, classifier, state, now=T0)
    path.unlink()
    result = reload_store(store, classifier, state, now=T0 + timedelta(hours=1))
    assert result.removed == ["kenya-extends-cargo-tracking"]
    assert [a.id for a in state.articles()] == ["ghana-launches-aeo"]
    assert len(state.articles(include_removed=True)) == 2


def test_front_matter_overrides_classification_and_dates(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    write(
        store / "a.md",
        """
        +++
        title = "Kenya Extends Cargo Tracking"
        date = 2024-05-01T09:30:00Z
        regions = ["global"]
        +++
        The Kenya Revenue Authority extended tracking for transit cargo.
        """,
    )
    reload_store(store, classifier, state, now=T0)
    (article,) = state.articles()
    assert article.regions == ("global",)
    assert "transit" in article.topics  # topics not overridden: still inferred
    assert article.published == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert article.first_seen == T0


def test_bad_files_are_reported_and_the_rest_goes_on(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    write(store / "a-good.txt", digest("Kenya Extends Cargo Tracking"))
    (store / "binary.txt").write_bytes(b"\x00\x01\x02")
    write(store / "bad.md", "+++\ntitle = 'x'\ntopics = ['no-such-topic']\n+++\nBody\n")
    write(store / "z-dup.txt", digest("Kenya Extends Cargo Tracking"))
    result = reload_store(store, classifier, state, now=T0)
    messages = sorted(str(e) for e in result.errors)
    assert len(messages) == 3
    assert any("binary.txt: binary file" in m for m in messages)
    assert any("bad.md:1: topics: unknown topic 'no-such-topic'" in m for m in messages)
    assert any("z-dup.txt:1: duplicate article id" in m for m in messages)
    assert [a.id for a in state.articles()] == ["kenya-extends-cargo-tracking"]


def test_changed_gazetteer_reclassifies_everything(
    tmp_path: Path, classifier: Classifier, state: State
) -> None:
    store = tmp_path / "articles"
    write(store / "a.txt", digest("Atlantis Customs Modernises", body="Nothing else."))
    reload_store(store, classifier, state, now=T0)
    assert state.articles()[0].regions == ("global",)
    regions = tmp_path / "regions.toml"
    regions.write_text(
        (SHIPPED_REGIONS).read_text(encoding="utf-8")
        + '\n[[country]]\nname = "Atlantis"\nregion = "europe"\nmember = false\n',
        encoding="utf-8",
    )
    changed = Classifier.load(regions, SHIPPED_TOPICS)
    assert changed.fingerprint != classifier.fingerprint
    result = reload_store(store, changed, state, now=T0 + timedelta(hours=1))
    assert result.reclassified == 1
    assert result.updated == []
    assert state.articles()[0].regions == ("europe",)


def test_example_configuration_points_at_the_sample_store() -> None:
    config = load_config(CONFIG_DIR / "syndicator.toml")
    assert config.store.path.resolve() == SAMPLE_STORE.parent.resolve()


@pytest.mark.parametrize("reword", [False, True], ids=["messages", "reworded"])
def test_what_counts_as_removed_rests_on_error_kinds_not_words(
    tmp_path: Path,
    classifier: Classifier,
    state: State,
    reword: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file that vanished between the scan and its reading keeps its articles; a file
    whose article title holds the words of that message does not."""
    store = tmp_path / "articles"
    write(store / "going.txt", digest("Kenya Opens Transit Corridor"))
    write(store / "edited.txt", digest("Peru Opens Green Lane", "Chile Signs AEO Agreement"))
    reload_store(store, classifier, state, now=T0)
    if reword:
        original = SyndicatorError.__init__

        def reworded(self: SyndicatorError, message: str, *, hint: str = "") -> None:
            original(self, "reworded " + message.upper()[::-1], hint=hint)

        monkeypatch.setattr(SyndicatorError, "__init__", reworded)
    title = "Cargo vanished, cannot read manifests"  # a title, and no body
    write(
        store / "edited.txt",
        digest("Peru Opens Green Lane") + f"{title}\n\n{title}\n",
    )
    scanned = scan(store)
    (store / "going.txt").unlink()  # after the scan, before the reading
    parsed = read_files(classifier, scanned.files)
    assert [p.kind for read in parsed for p in read.problems] == [
        ErrorKind.INVALID,
        ErrorKind.VANISHED,
    ]
    assert ("vanished" in str(parsed[0].problems[0])) is not reword
    with state.transaction() as conn:
        paths = sorted(str(store / name) for name in ("edited.txt", "going.txt"))
        plan = plan_reconcile(
            classifier=classifier,
            parsed=parsed,
            vanished=vanished_files(scanned, state.files(conn)),
            stored=articles.rows_by_id(conn, [raw.id for read in parsed for raw in read.articles]),
            active_by_source=articles.active_by_source(conn, paths),
            next_seq=state.next_seq(conn),
            now=T0 + timedelta(minutes=1),
        )
    assert plan.removed == ["chile-signs-aeo-agreement"]  # gone from a file that was read
    assert [row["path"] for row in plan.file_rows] == [str(store / "edited.txt")]
    assert plan.forget_files == [str(store / "edited.txt")]  # going.txt: read again next time
    assert plan.inserts == plan.changes == []
    assert [move["key"] for move in plan.moves] == ["peru-opens-green-lane"]
