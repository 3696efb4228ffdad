"""A store of articles with known regions and topics, and the real app serving it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicator.classify.classifier import Classifier
from syndicator.config import Config, load_config
from syndicator.mail.unsubscribe import load_secret
from syndicator.metrics import Metrics
from syndicator.pipeline import names_from, run_cycle, site_from_config
from syndicator.state.db import State
from syndicator.web.app import Health, create_app, serve
from syndicator.web.filter_feeds import ReaderFeeds
from tests.smtp_sink import free_port

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Spec:
    """One article: its id, regions, topics and a sentence for keywords."""

    id: str
    regions: tuple[str, ...]
    topics: tuple[str, ...] = ()
    sentence: str = "Customs officials met traders."


def article_file(spec: Spec, published: datetime) -> str:
    regions = ", ".join(f'"{r}"' for r in spec.regions)
    topics = ", ".join(f'"{t}"' for t in spec.topics)
    title = spec.id.replace("-", " ").title()
    return (
        "+++\n"
        f'id = "{spec.id}"\n'
        f'title = "{title}"\n'
        f"date = {published.isoformat()}\n"
        f"regions = [{regions}]\n"
        f"topics = [{topics}]\n"
        "+++\n"
        f"{spec.sentence}\n"
    )


def write_articles(store: Path, specs: Sequence[Spec], *, start: datetime) -> None:
    """One file per article, each an hour newer than the one before."""
    for number, spec in enumerate(specs):
        directory = store / f"d{number // 500}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{spec.id}.md").write_text(
            article_file(spec, start + timedelta(hours=number)), encoding="utf-8"
        )


def configure(install: Path, extra: str = "") -> Config:
    text = install.read_text().replace(
        'output_dir = "../feeds"', f'output_dir = "../feeds"\n{extra}'
    )
    # The site's own address is the test server's, so published links lead to it.
    port = free_port()
    text = text.replace("https://news.example.org/", f"http://127.0.0.1:{port}/")
    install.write_text(text + f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
    (install.parent / "subscribers.toml").write_text("")
    return load_config(install)


class Ticks:
    """A monotonic clock the test moves: ``tick()`` lets the next request see new articles
    (the articles revision is read at most once a second)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 2.0


@dataclass
class Served:
    base: str
    feeds: ReaderFeeds
    secret: bytes
    clock: Ticks


@asynccontextmanager
async def serving(config: Config, classifier: Classifier, state: State) -> AsyncIterator[Served]:
    """The real app on a free port, with filter and private feeds, its base_url the port's."""
    port = config.http.port
    base = config.site.base_url
    site = site_from_config(config)
    secret = load_secret(state, None)
    clock = Ticks()
    feeds = ReaderFeeds(
        state,
        site=site,
        names=names_from(classifier),
        max_items=config.feeds.max_items,
        secret=secret,
        cache_seconds=config.store.reload_interval,
        clock=clock,
    )
    app = create_app(
        output_dir=config.feeds.output_dir,
        health=Health(interval=1.0),
        metrics=Metrics(),
        clock=lambda: T0,
        reader_feeds=feeds,
        cache_seconds=config.store.reload_interval,
    )
    runner = await serve(app, "127.0.0.1", port)
    try:
        yield Served(base, feeds, secret, clock)
    finally:
        await runner.cleanup()


def cycle(config: Config, classifier: Classifier, state: State, now: datetime) -> None:
    result = run_cycle(config, classifier, state, now=now)
    assert result.reload.errors == [], result.reload.errors
