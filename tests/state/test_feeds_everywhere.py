"""Several instances, each with its own feeds directory, on one state database: every
instance publishes the same bytes, with the same ETag and Last-Modified, whichever
instance ran the cycle. Every test here runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import hdrs

from syndicator.classify.classifier import Classifier
from syndicator.config import Config, load_config
from syndicator.pipeline import catch_up_feeds, run_cycle
from syndicator.state.coordination import CYCLE_LOCK, exclusive_turn
from syndicator.state.db import State
from syndicator.web.app import Conditions, FileServer
from tests.conftest import T0
from tests.faults.helpers import add_article, with_sample_store


@pytest.fixture
def instances(install: Path, state_url: str) -> Iterator[list[tuple[Config, State]]]:
    """Two instances: the same store and state database, their own feeds directories."""
    with_sample_store(install)
    opened: list[tuple[Config, State]] = []
    for name in ("one", "two"):
        text = install.read_text().replace('output_dir = "../feeds"', f'output_dir = "../{name}"')
        config_path = install.with_name(f"{name}.toml")
        config_path.write_text(
            text.replace('url = "sqlite:///../state/', 'url = "sqlite:///../state/')
        )
        config = load_config(config_path)
        config = config.model_copy(
            update={"state": config.state.model_copy(update={"url": state_url})}
        )
        opened.append((config, State.open(state_url)))
    yield opened
    for _, state in opened:
        state.close()


def published(config: Config) -> dict[str, bytes]:
    root = config.feeds.output_dir
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def validators(config: Config) -> dict[str, tuple[str, str]]:
    server = FileServer(config.feeds.output_dir)
    found = {}
    for name in ("all.atom", "all.rss", "all.json", "americas.atom", "feeds.opml"):
        reply = server.reply(tuple(name.split("/")), Conditions())
        assert reply is not None and reply.status == 200
        found[name] = (reply.headers[hdrs.ETAG], reply.headers[hdrs.LAST_MODIFIED])
    return found


def test_every_instance_publishes_the_same_bytes_and_validators(
    instances: list[tuple[Config, State]], classifier: Classifier
) -> None:
    (one, one_state), (two, two_state) = instances
    run_cycle(one, classifier, one_state, now=T0)
    run_cycle(two, classifier, two_state, now=T0 + timedelta(seconds=1))
    assert published(one) == published(two)
    store = one.store.path
    for step, (config, state) in enumerate([(one, one_state), (two, two_state), (one, one_state)]):
        add_article(store, f"chile-{step}.txt", f"Chile Launches AEO Stage {step}", "Chile did.")
        now = T0 + timedelta(minutes=step + 1)
        result = run_cycle(config, classifier, state, now=now)
        assert len(result.reload.new) == 1
        # The other instance's round: nothing new in the store, its files behind.
        other, other_state = (two, two_state) if config is one else (one, one_state)
        run_cycle(other, classifier, other_state, now=now + timedelta(seconds=1))
        assert published(one) == published(two), step
        assert f"Chile Launches AEO Stage {step}" in published(two)["all.atom"].decode()
    assert validators(one) == validators(two)
    modified = validators(one)["all.atom"][1]
    assert modified == "Mon, 02 Mar 2026 09:03:00 GMT"  # the feed's own updated date


def test_an_instance_that_skips_the_cycle_still_catches_up(
    instances: list[tuple[Config, State]], classifier: Classifier
) -> None:
    (one, one_state), (two, two_state) = instances
    run_cycle(one, classifier, one_state, now=T0)
    add_article(one.store.path, "peru.txt", "Peru Opens Green Lane", "Peru's customs did.")
    run_cycle(one, classifier, one_state, now=T0 + timedelta(minutes=1))
    with exclusive_turn(one_state, CYCLE_LOCK) as held:
        assert held
        # On PostgreSQL the lock is held: the round is skipped; either way the instance
        # without the cycle publishes what the database holds.
        result = catch_up_feeds(two, classifier, two_state)
    assert result.skipped
    assert published(one) == published(two)
    assert "Peru Opens Green Lane" in published(two)["all.atom"].decode()
