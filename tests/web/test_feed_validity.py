"""Every feed document we publish passes the W3C Feed Validator's rules, checked offline
(tests/feed_rules.py): the channel feeds (Atom, RSS, JSON), every archive page, filter
feeds in all three formats, and a reader's private feeds, fetched from the real app."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.mail import private_feeds, roster
from syndicator.mail.subscribers import Subscriber
from syndicator.state.db import State
from tests.feed_rules import Finding, check, problems
from tests.web.readers_helpers import T0, Spec, configure, cycle, serving, write_articles

PAGE = 4
REGIONS = ("east-southern-africa", "west-central-africa", "europe", "americas", "global")
TOPICS = ((), ("aeo",), ("transit", "aeo"), ("e-commerce",), ("post-clearance-audit",))
SENTENCES = (
    "Customs officials met traders.",
    "Customs <b>officials</b> & traders met at the border; 5 < 6.",
    "A new Trade Corridor opened.",
)
# Enough articles for several archive pages in most channels.
SPECS = [
    Spec(
        f"story-{number:03d}",
        (REGIONS[number % len(REGIONS)],) + (("global",) if number % 7 == 0 else ()),
        TOPICS[number % len(TOPICS)],
        SENTENCES[number % len(SENTENCES)],
    )
    for number in range(60)
] + [Spec("lone-gender-story", ("europe",), ("gender-diversity",))]  # a channel of one page
FILTERS = (
    "region=east-southern-africa&region=west-central-africa&topic=aeo&exclude_region=global",
    "keyword=corridor",
    "topic=transit&exclude_topic=e-commerce",
    "keyword=nothing-matches-this",
)


@pytest.fixture
def config(install: Path) -> Config:
    return configure(install, f"archive_size = {PAGE}")


async def test_every_published_document_passes_the_validator_rules(
    config: Config, classifier: Classifier, state: State
) -> None:
    write_articles(config.store.path, SPECS, start=T0 - timedelta(days=10))
    cycle(config, classifier, state, T0)
    with state.transaction() as conn:
        roster.add_subscriber(
            conn,
            Subscriber(
                email="reader@example.org",
                regions=["east-southern-africa", "europe"],
                topics=["aeo"],
                keywords=["corridor"],
                cadence="feed",
            ),
            now=T0,
        )
        reader = roster.find_subscriber(conn, "reader@example.org")
    assert reader is not None
    output = config.feeds.output_dir
    found: dict[str, list[Finding]] = {}
    checked: dict[str, int] = {"atom": 0, "rss": 0, "json": 0, "archive": 0}
    async with serving(config, classifier, state) as served, aiohttp.ClientSession() as http:

        async def fetch_and_check(url: str) -> None:
            async with http.get(url) as response:
                assert response.status == 200, url
                body = await response.read()
            # Where the document says it lives is where it was fetched from.
            found[url] = check(body, location=url, now=T0)

        for path in sorted(output.rglob("*")):
            relative = path.relative_to(output).as_posix()
            if path.suffix not in {".atom", ".rss", ".json"} or relative == "feeds.json":
                continue
            await fetch_and_check(f"{served.base}feeds/{relative}")
            kind = "archive" if relative.startswith("archive/") else path.suffix[1:]
            checked[kind] += 1
        for query in FILTERS:
            for suffix in ("atom", "rss", "json"):
                await fetch_and_check(f"{served.base}feeds/filter.{suffix}?{query}")
        with state.engine.connect() as conn:
            token = private_feeds.current_token(conn, served.secret, reader.id)
        for suffix in ("atom", "json"):
            await fetch_and_check(f"{served.base}feeds/private/{token}.{suffix}")
    # Every channel in every format, and archives of several pages, were checked.
    assert checked["atom"] == checked["rss"] == checked["json"] >= 30
    assert checked["archive"] > checked["atom"]
    wrong = {url: problems(findings) for url, findings in found.items()}
    assert {url: lines for url, lines in wrong.items() if lines} == {}
    # A channel that fits on one archive page has no archive document (a lone one could
    # link no page before or after it): its feed holds every article, with fh:complete.
    complete = sorted(
        path.relative_to(output).as_posix()
        for path in output.rglob("*.atom")
        if b"<fh:complete/>" in path.read_bytes()
    )
    assert "topics/gender-diversity.atom" in complete
    for relative in complete:
        assert not list((output / "archive" / relative.removesuffix(".atom")).glob("*")), relative
