"""A real feed reader: Debian's newsboat, subscribed to a private feed and a filter URL."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.mail import private_feeds
from syndicator.mail.roster import add_subscriber
from syndicator.mail.subscribers import Subscriber
from syndicator.mail.unsubscribe import load_secret
from syndicator.state.db import State
from tests.web.readers_helpers import T0, Spec, configure, cycle, serving, write_articles

NEWSBOAT = shutil.which("newsboat")
pytestmark = pytest.mark.skipif(NEWSBOAT is None, reason="needs Debian's newsboat")

FIRST = [
    Spec("kenya-aeo", ("east-southern-africa",), ("aeo",)),
    Spec("ghana-aeo", ("west-central-africa",), ("aeo",)),
    Spec("wco-aeo", ("global",), ("aeo",)),
    Spec("kenya-transit", ("east-southern-africa",), ("transit",)),
    Spec("peru-aeo", ("americas",), ("aeo",)),
    Spec("france-single-window", ("europe",), ("single-window",)),
]
LATER = [
    Spec("uganda-aeo", ("east-southern-africa",), ("aeo",)),
    Spec("chile-aeo", ("americas",), ("aeo",)),
    Spec("senegal-transit", ("west-central-africa",), ("transit",)),
    Spec("togo-aeo", ("west-central-africa", "global"), ("aeo",)),
]


@pytest.fixture
def config(install: Path) -> Config:
    return configure(install)


async def newsboat(home: Path, *commands: str) -> str:
    """Run newsboat non-interactively over its urls and cache files; its output."""
    assert NEWSBOAT is not None
    process = await asyncio.create_subprocess_exec(
        NEWSBOAT,
        "-u",
        str(home / "urls"),
        "-c",
        str(home / "cache.db"),
        "-C",
        str(home / "config"),
        "-x",
        *commands,
        env={
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "XDG_DATA_HOME": str(home),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()
    return output.decode()


def cached(home: Path) -> dict[str, set[str]]:
    """What newsboat stored: the ids (GUIDs) of the items of each feed URL."""
    with sqlite3.connect(home / "cache.db") as db:
        rows = db.execute("SELECT feedurl, guid FROM rss_item").fetchall()
    found: dict[str, set[str]] = {}
    for url, guid in rows:
        found.setdefault(url, set()).add(guid.rpartition("/")[2])
    return found


def unread(home: Path) -> dict[str, set[str]]:
    with sqlite3.connect(home / "cache.db") as db:
        rows = db.execute("SELECT feedurl, guid FROM rss_item WHERE unread = 1").fetchall()
    found: dict[str, set[str]] = {}
    for url, guid in rows:
        found.setdefault(url, set()).add(guid.rpartition("/")[2])
    return found


def read_everything(home: Path) -> None:
    """As if the reader had read every item."""
    with sqlite3.connect(home / "cache.db") as db:
        db.execute("UPDATE rss_item SET unread = 0")


async def test_newsboat_sees_exactly_the_matching_items_and_then_exactly_the_new_ones(
    tmp_path: Path, config: Config, classifier: Classifier, state: State
) -> None:
    write_articles(config.store.path, FIRST, start=T0 - timedelta(days=10))
    cycle(config, classifier, state, T0)
    secret = load_secret(state, None)
    with state.transaction() as conn:
        add_subscriber(
            conn,
            Subscriber(
                email="reader@example.org",
                regions=["east-southern-africa", "americas"],
                topics=["aeo"],
            ),
            now=T0,
        )
        subscriber_id = conn.exec_driver_sql("SELECT id FROM subscribers").scalar_one()
        token = private_feeds.current_token(conn, secret, subscriber_id)
    async with serving(config, classifier, state) as served:
        private = f"{served.base}feeds/private/{token}.atom"
        # AEO news from Africa, no global stories.
        africa = (
            f"{served.base}feeds/filter.atom?region=east-southern-africa"
            "&region=west-central-africa&topic=aeo&exclude_region=global"
        )
        # One reader per feed: newsboat keeps one copy of an item id across all its feeds.
        homes = {private: tmp_path / "private", africa: tmp_path / "africa"}
        for url, home in homes.items():
            home.mkdir()
            (home / "config").write_text("")
            (home / "urls").write_text(f"{url}\n")
            await newsboat(home, "reload")
            read_everything(home)
        assert cached(homes[private]) == {private: {"kenya-aeo", "peru-aeo"}}
        assert cached(homes[africa]) == {africa: {"kenya-aeo", "ghana-aeo"}}

        write_articles(config.store.path / "later", LATER, start=T0)
        cycle(config, classifier, state, T0 + timedelta(minutes=5))
        served.clock.tick()
        outputs = {
            url: await newsboat(home, "reload", "print-unread") for url, home in homes.items()
        }
        assert unread(homes[private]) == {private: {"uganda-aeo", "chile-aeo"}}
        assert unread(homes[africa]) == {africa: {"uganda-aeo"}}
        assert "2 unread articles" in outputs[private]
        assert "1 unread articles" in outputs[africa]
        assert cached(homes[africa]) == {africa: {"kenya-aeo", "ghana-aeo", "uganda-aeo"}}
