"""Publishing at scale: changes applied incrementally, pages for what is linked or asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import Config, load_config
from syndicator.metrics import Metrics
from syndicator.pipeline import Pipeline, channels_from, names_from, run_cycle, site_from_config
from syndicator.publish.archives import prev_archive_links
from syndicator.publish.feeds import article_page_path
from syndicator.publish.publisher import (
    PageOnDemand,
    PublishPlan,
    plan_publish,
    publish,
    remove_leftovers,
    settings_signature,
)
from syndicator.state.db import State
from syndicator.state.feeds import feed_signatures
from syndicator.state.readers import newest_archive_pages
from syndicator.web.app import Health, create_app, serve
from tests.conftest import T0, write

PLACES = ["Kenya", "Ghana", "Chile", "Japan", "Morocco", "France", "Peru", "Fiji"]
TOPICS = ["AEO Programme", "Single Window", "Transit Corridor", "Risk Management Unit"]


def digest(*titles: str) -> str:
    return "".join(
        f"{title}\n\n{title}\n\nCustoms officials met traders to discuss the reform.\n\n"
        for title in titles
    )


def titles(count: int, *, start: int = 0) -> list[str]:
    return [
        f"{PLACES[n % len(PLACES)]} Customs Launches {TOPICS[n % len(TOPICS)]} No. {n}"
        for n in range(start, start + count)
    ]


@pytest.fixture
def config(install: Path) -> Config:
    path = install
    path.write_text(
        path.read_text().replace(
            'output_dir = "../feeds"', 'output_dir = "../feeds"\nmax_items = 3'
        )
    )
    (path.parent / "subscribers.toml").write_text("")
    return load_config(path)


@pytest.fixture
def pipeline(config: Config, classifier: Classifier, state: State) -> Pipeline:
    """This process's pipeline: what publishing keeps is kept from one cycle to the next."""
    return Pipeline(config, classifier, state, clock=lambda: T0)


def rebuild(config: Config, classifier: Classifier, output_dir: Path) -> None:
    """Everything published from scratch, by another handle on the same database."""
    fresh = State.open(config.state.url)
    try:
        publish(
            fresh,
            site=site_from_config(config),
            names=names_from(classifier),
            channels=channels_from(classifier),
            output_dir=output_dir,
            max_items=config.feeds.max_items,
            verify_pages=True,
            archive_size=config.feeds.archive_size,
        )
    finally:
        fresh.close()


def files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern))}


def test_changes_applied_incrementally_publish_what_a_full_rebuild_would(
    tmp_path: Path, config: Config, classifier: Classifier, state: State, pipeline: Pipeline
) -> None:
    store = config.store.path
    write(store / "old.txt", digest(*titles(20)))
    pipeline.cycle(now=T0)
    steps: list[Callable[[], object]] = [
        lambda: write(store / "new.txt", digest(*titles(2, start=20))),  # new articles
        lambda: write(store / "old.txt", digest(*titles(19))),  # one removed
        lambda: write(  # one edited, one back
            store / "old.txt",
            digest(*titles(20)).replace("met traders", "met brokers", 1),
        ),
        lambda: write(store / "moved.txt", digest(*titles(1, start=3))),  # duplicate: skipped
        (store / "new.txt").unlink,
    ]
    for number, step in enumerate(steps, start=1):
        step()
        result = pipeline.cycle(now=T0 + timedelta(minutes=number))
        assert (result.publish is not None) == result.reload.changed
        expected = tmp_path / f"rebuild-{number}"
        rebuild(config, classifier, expected)
        output = config.feeds.output_dir
        for pattern in ("*.rss", "*.atom", "*.json", "index.html", "feeds.opml"):
            assert files(output, pattern) == files(expected, pattern), (number, pattern)
        ours, theirs = files(output / "articles", "*"), files(expected / "articles", "*")
        # Pages are kept once written: a superset of the rebuild's, each up to date.
        assert set(theirs) <= set(ours)
        assert all(ours[name] == theirs[name] for name in theirs)
        live = {a.id for a in state.articles()}
        assert {article_page_path(i).removeprefix("articles/") for i in live} >= set(ours)


def test_a_quiet_cycle_after_a_change_renders_only_the_touched_channels(
    config: Config, classifier: Classifier, state: State, pipeline: Pipeline
) -> None:
    store = config.store.path
    write(store / "old.txt", digest(*titles(20)))
    first = pipeline.cycle(now=T0)
    assert first.publish is not None and first.publish.channels_rendered == 33
    write(store / "new.txt", digest("Kenya Customs Launches Single Window Upgrade"))
    second = pipeline.cycle(now=T0 + timedelta(minutes=1))
    assert second.publish is not None
    assert second.publish.channels_rendered == 3  # all, east-southern-africa, single-window
    assert second.publish.pages_rendered == 1


async def test_pages_are_written_for_linked_articles_and_on_request(
    config: Config, classifier: Classifier, state: State
) -> None:
    # Archives off, so each feed is its newest max_items (with archives, a channel that
    # fits on one archive page is served whole and links every article).
    config = config.model_copy(
        update={"feeds": config.feeds.model_copy(update={"archive_size": 0})}
    )
    pipeline = Pipeline(config, classifier, state, clock=lambda: T0)
    store = config.store.path
    write(store / "old.txt", digest(*titles(45)))
    pipeline.cycle(now=T0)
    pages_dir = config.feeds.output_dir / "articles"
    articles = state.articles()
    written = {p.name for p in pages_dir.iterdir()}
    # The index lists the latest 30; every feed's items are among them here.
    assert len(written) == 30
    unlinked = [a for a in articles if article_page_path(a.id).split("/")[1] not in written]
    assert len(unlinked) == 15
    writer = PageOnDemand(
        state,
        site=site_from_config(config),
        names=names_from(classifier),
        channels=channels_from(classifier),
        output_dir=config.feeds.output_dir,
        max_items=config.feeds.max_items,
    )
    app = create_app(
        output_dir=config.feeds.output_dir,
        health=Health(interval=300.0),
        metrics=Metrics(),
        clock=lambda: T0,
        write_page=writer.write,
    )
    runner = await serve(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            target = unlinked[0]
            async with session.get(f"{base}/{article_page_path(target.id)}") as response:
                assert response.status == 200
                assert target.title in await response.text()
                etag = response.headers["ETag"]
            assert (config.feeds.output_dir / article_page_path(target.id)).is_file()
            async with session.get(
                f"{base}/{article_page_path(target.id)}", headers={"If-None-Match": etag}
            ) as response:
                assert response.status == 304
            async with session.get(f"{base}/articles/no-such-article.html") as response:
                assert response.status == 404
            # An article that left the store has no page, on disk or on request.
            write(store / "old.txt", digest(*titles(44)))
            pipeline.cycle(now=T0 + timedelta(minutes=1))
            gone = next(a for a in articles if a.title == titles(45)[44])
            async with session.get(f"{base}/{article_page_path(gone.id)}") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()
    # The page written on request is kept up to date like the others.
    write(
        store / "old.txt",
        digest(*titles(44)).replace(
            target.title + "\n\nCustoms officials met", target.title + "\n\nCustoms officers met"
        ),
    )
    pipeline.cycle(now=T0 + timedelta(minutes=2))
    assert (
        "Customs officers met"
        in (config.feeds.output_dir / article_page_path(target.id)).read_text()
    )


def test_an_article_about_to_be_mailed_gets_its_page(
    config: Config, classifier: Classifier, state: State, pipeline: Pipeline
) -> None:
    store = config.store.path
    write(store / "old.txt", digest(*titles(40)))
    pipeline.cycle(now=T0)
    (config.subscribers.file).write_text(
        '[[subscriber]]\nemail = "desk@example.org"\nkeywords = ["lighthouse"]\n'
        'cadence = "immediate"\n'
    )
    pipeline.cycle(now=T0 + timedelta(minutes=1))
    # Dated long ago: it is in no feed's latest three and not on the index.
    write(
        store / "archive.md",
        """
        +++
        title = "Harbour Lighthouse Inspection Report"
        date = 2001-01-01T00:00:00Z
        +++
        The customs launch inspected the lighthouse.
        """,
    )
    result = pipeline.cycle(now=T0 + timedelta(minutes=2))
    assert result.reload.matched == 1 and len(result.queued) == 1
    article = state.find_articles("Harbour Lighthouse")[0]
    assert (config.feeds.output_dir / article_page_path(article.id)).is_file()


def test_a_kept_catalogue_follows_changes_made_by_another_process(
    tmp_path: Path, config: Config, classifier: Classifier, state: State, pipeline: Pipeline
) -> None:
    store = config.store.path
    write(store / "old.txt", digest(*titles(20)))
    pipeline.cycle(now=T0)
    pipeline.prime()  # as the service does once started
    # Another process (a `run --once` from cron, say) records and publishes a change...
    other = State.open(config.state.url)
    try:
        write(store / "new.txt", digest(*titles(2, start=20)))
        run_cycle(config, classifier, other, now=T0 + timedelta(minutes=1))
    finally:
        other.close()
    # ...then this process makes one of its own: what it publishes takes in both.
    write(store / "old.txt", digest(*titles(19)))
    result = pipeline.cycle(now=T0 + timedelta(minutes=2))
    assert result.reload.removed and result.publish is not None
    expected = tmp_path / "rebuild"
    rebuild(config, classifier, expected)
    output = config.feeds.output_dir
    for pattern in ("*.rss", "*.atom", "*.json", "index.html", "feeds.opml"):
        assert files(output, pattern) == files(expected, pattern), pattern


def test_the_publish_plan_renders_what_changed_or_went_missing(
    config: Config, classifier: Classifier, state: State, pipeline: Pipeline
) -> None:
    write(config.store.path / "old.txt", digest(*titles(6)))
    pipeline.cycle(now=T0)
    catalogue = pipeline.catalogue.catalogue
    assert catalogue is not None
    channels = channels_from(classifier)
    output = config.feeds.output_dir
    present = {str(p.relative_to(output)) for p in output.rglob("*") if p.is_file()}
    with state.engine.connect() as conn:
        stored = feed_signatures(conn)
        newest = newest_archive_pages(conn)
    site = site_from_config(config)
    archived = prev_archive_links(site, channels, newest)

    def plan(**changes: object) -> PublishPlan:
        inputs: dict[str, object] = {
            "channels": channels,
            "site_signature": settings_signature(
                site_from_config(config), names_from(classifier), config.feeds.max_items
            ),
            "stored_signatures": stored,
            "feed_files": present,
            "page_files": None,
            "awaiting_mail": set(),
            "changed": frozenset(),
            "prev_archive": archived,
            "complete": {c.path for c in channels if c.path not in archived},
        }
        return plan_publish(catalogue, **{**inputs, **changes})  # type: ignore[arg-type]

    assert plan().feeds == {} and plan().pages == set()  # all published, nothing changed
    americas = next(channel for channel in channels if channel.path == "americas")
    assert list(plan(feed_files=present - {"americas.json"}).feeds) == [americas]
    assert list(plan(stored_signatures={}).feeds) == channels  # nothing known: everything
    pages = {name for name in present if name.startswith("articles/")}
    assert pages and plan(page_files=set()).pages == {
        item.id for item in catalogue.order if item.page_signature
    }
    assert plan(page_files={name.removeprefix("articles/") for name in pages}).pages == set()
    gone = catalogue.order[0].id
    assert plan(changed=frozenset({gone, "no-such-article"})).unpublish == ["no-such-article"]
    assert plan(changed=None).unpublish is None  # unknown changes: whatever is stale on disk


def test_leftovers_of_dead_writers_are_removed_everywhere_under_the_feeds(tmp_path: Path) -> None:
    """A publish killed while writing an archive page or its HTML twin leaves a hidden
    temporary file deep under the feeds directory; a rebuild removes it wherever it is,
    and leaves those of a writer still running."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = os.getpid()
    left = {
        f"archive/regions/europe/.11.atom.{dead.pid}.ab12cd34.tmp": True,
        f"regions/europe/.11.html.{dead.pid}.x9y8z7w6.tmp": True,
        f"articles/.kenya.html.{dead.pid}.q1w2e3r4.tmp": True,
        f".all.atom.{dead.pid}.zz00yy11.tmp": True,
        f"archive/all/.3.atom.{alive}.aa11bb22.tmp": False,  # a publish running now
        "archive/all/notes.tmp": False,  # not one of ours
    }
    for name in left:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
    removed = remove_leftovers(tmp_path)
    assert sorted(removed) == sorted(name for name, gone in left.items() if gone)
    assert {name for name in left if (tmp_path / name).exists()} == {
        name for name, gone in left.items() if not gone
    }
