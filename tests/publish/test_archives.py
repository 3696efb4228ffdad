"""Archives (RFC 5005): a client walking prev-archive sees every article exactly once."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree

import aiohttp
import feedparser
import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.state.db import State
from tests.publish.test_publisher import digest, titles
from tests.web.readers_helpers import T0, configure, cycle, serving

HISTORY = "{http://purl.org/syndication/history/1.0}archive"
ARTICLES = 5000
PAGE = 100


@pytest.fixture
def config(install: Path) -> Config:
    return configure(install, f"archive_size = {PAGE}")


def store_files(store: Path, count: int, *, start: int = 0, per_file: int = 500) -> None:
    for first in range(start, start + count, per_file):
        names = titles(min(per_file, start + count - first), start=first)
        (store / f"batch-{first:06d}.txt").write_text(digest(*names), encoding="utf-8")


async def walk(http: aiohttp.ClientSession, url: str) -> tuple[list[str], list[list[str]]]:
    """A small RFC 5005 consumer: the ids of the current document, then of each archive
    document, following prev-archive links until there are none."""
    async with http.get(url) as response:
        assert response.status == 200
        current = feedparser.parse(await response.read())
    assert not current.bozo
    pages: list[list[str]] = []
    link = _prev_archive(current)
    visited = set()
    while link:
        assert link not in visited, f"prev-archive loop at {link}"
        visited.add(link)
        async with http.get(link) as response:
            assert response.status == 200, link
            body = await response.read()
        assert ElementTree.fromstring(body).find(HISTORY) is not None, f"{link} lacks fh:archive"
        parsed = feedparser.parse(body)
        assert not parsed.bozo, link
        assert any(item.rel == "current" and item.href == url for item in parsed.feed.links)
        pages.append([entry.id for entry in parsed.entries])
        link = _prev_archive(parsed)
    return [entry.id for entry in current.entries], pages


def _prev_archive(parsed: feedparser.FeedParserDict) -> str:
    return next(
        (item.href for item in parsed.feed.get("links", []) if item.rel == "prev-archive"), ""
    )


def channel_ids(state: State, *, region: str | None = None) -> set[str]:
    return {f"articles/{a.id}" for a in state.articles(region=region)}


def short(ids: list[str]) -> list[str]:
    return [re.sub(r"^tag:[^:]+:", "", i) for i in ids]


async def test_walking_prev_archive_collects_every_article_once_at_5000(
    config: Config, classifier: Classifier, state: State
) -> None:
    store_files(config.store.path, ARTICLES)
    cycle(config, classifier, state, T0)
    async with serving(config, classifier, state) as served, aiohttp.ClientSession() as http:
        for channel, region in (("all", None), ("east-southern-africa", "east-southern-africa")):
            current, pages = await walk(http, f"{served.base}feeds/{channel}.atom")
            archived = [i for page in pages for i in page]
            assert len(archived) == len(set(archived)), "an article on two archive pages"
            expected = channel_ids(state, region=region)
            assert set(short(archived)) == expected
            assert set(short(current)) <= expected
            # Full pages of PAGE entries, the oldest first: the last page walked is page 1.
            assert all(len(page) == PAGE for page in pages[1:])
            assert len(pages) == -(-len(expected) // PAGE)
        # Cache hints: a full page is immutable; the newest may still grow; feeds as often as
        # a cycle may change them.
        newest = -(-ARTICLES // PAGE)
        for path, expected_control in (
            ("archive/all/1.atom", "public, max-age=31536000, immutable"),
            (f"archive/all/{newest - 1}.atom", "public, max-age=31536000, immutable"),
            (f"archive/all/{newest}.atom", "public, max-age=1"),
            ("all.atom", "public, max-age=1"),
        ):
            async with http.get(f"{served.base}feeds/{path}") as response:
                assert response.headers["Cache-Control"] == expected_control, path
                assert response.headers["Vary"] == "Accept-Encoding"


def test_an_edit_or_removal_rerenders_only_the_pages_holding_it(
    config: Config, classifier: Classifier, state: State
) -> None:
    store_files(config.store.path, 1000)
    cycle(config, classifier, state, T0)
    output = config.feeds.output_dir
    archive = output / "archive"
    before = {p: p.read_bytes() for p in archive.rglob("*.atom")}
    assert len([p for p in before if p.parent == archive / "all"]) == 10
    # Edit the oldest article (the last in store order): it sits on page 1 of "all".
    batch = config.store.path / "batch-000500.txt"
    title = titles(1, start=999)[0]
    text = batch.read_text()
    entry = f"{title}\n\n{title}\n\nCustoms officials met traders to discuss the reform.\n\n"
    assert text.endswith(entry)
    batch.write_text(text.replace(entry, entry.replace("the reform", "the new reform")))
    result = run(config, classifier, state, minutes=1)
    rewritten = sorted(p for p in result if p.startswith("archive/"))
    article = next(a for a in state.articles() if a.title == title)
    channels = ["all", *article.regions, *(f"topics/{t}" for t in article.topics)]
    assert [p.rpartition("/")[0] for p in rewritten] == sorted(f"archive/{c}" for c in channels)
    assert "archive/all/1.atom" in rewritten
    # Removing it rewrites the same pages again, and no page shifts.
    batch.write_text(text.removesuffix(entry))
    result = run(config, classifier, state, minutes=2)
    assert sorted(p for p in result if p.startswith("archive/")) == rewritten
    after = {p: p.read_bytes() for p in archive.rglob("*.atom")}
    changed = sorted(str(p.relative_to(output)) for p in before if before[p] != after[p])
    assert changed == rewritten
    assert b"No. 999<" not in (archive / "all" / "1.atom").read_bytes()
    # New articles open the next pages; page 10, the newest until now, is rendered once
    # more with its next-archive link (RFC 5005 §4); pages 1 to 9 stay as they were.
    before = {p: p.read_bytes() for p in archive.rglob("*.atom")}
    store_files(config.store.path, 150, start=1000)
    result = run(config, classifier, state, minutes=3)
    opened = {"archive/all/10.atom", "archive/all/11.atom", "archive/all/12.atom"}
    assert opened <= set(result)
    assert not any(p.startswith("archive/all/") and p not in opened for p in result)
    assert (output / "all.atom").read_text().count("archive/all/12.atom") == 1
    tenth = (archive / "all" / "10.atom").read_text()
    assert 'archive/all/11.atom" rel="next-archive"' in tenth
    assert 'archive/all/9.atom" rel="prev-archive"' in tenth
    assert "next-archive" not in (archive / "all" / "12.atom").read_text()
    # Pages that had a next page already are untouched.
    assert (archive / "all" / "9.atom").read_bytes() == before[archive / "all" / "9.atom"]


def run(config: Config, classifier: Classifier, state: State, *, minutes: int) -> list[str]:
    from syndicator.pipeline import run_cycle

    result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=minutes))
    assert result.publish is not None
    return result.publish.written


COMPLETE = b"<fh:complete/>"


async def test_a_channel_on_one_page_is_served_whole_until_its_second_page_opens(
    config: Config, classifier: Classifier, state: State
) -> None:
    assert config.feeds.max_items < PAGE
    output = config.feeds.output_dir
    store_files(config.store.path, PAGE)
    cycle(config, classifier, state, T0)
    # One full page: no archive document (it could link no page before or after it); the
    # feed holds every article, past max_items, and says it is complete (RFC 5005 §2).
    feed = (output / "all.atom").read_bytes()
    assert COMPLETE in feed and b"prev-archive" not in feed
    assert len(feedparser.parse(feed).entries) == PAGE
    assert not (output / "archive" / "all").exists()
    assert not (output / "all").exists()  # nor the HTML twins
    assert 'rel="prev"' not in (output / "all.html").read_text()
    # A page 1 left by an earlier version, for a channel still on one page, goes.
    stale = output / "archive" / "europe" / "1.atom"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"<feed/>")
    # One more article opens page 2: the archive appears, page 1 with its next-archive
    # link, and the feed is back to max_items with prev-archive to the newest page.
    store_files(config.store.path, 1, start=PAGE)
    written = run(config, classifier, state, minutes=1)
    assert {"archive/all/1.atom", "archive/all/2.atom", "all/1.html", "all/2.html"} <= set(written)
    assert not stale.exists()
    feed = (output / "all.atom").read_bytes()
    assert COMPLETE not in feed
    assert len(feedparser.parse(feed).entries) == config.feeds.max_items
    first = (output / "archive" / "all" / "1.atom").read_text()
    assert 'archive/all/2.atom" rel="next-archive"' in first and "prev-archive" not in first
    second = (output / "archive" / "all" / "2.atom").read_text()
    assert 'archive/all/1.atom" rel="prev-archive"' in second and "next-archive" not in second
    async with serving(config, classifier, state) as served, aiohttp.ClientSession() as http:
        current, pages = await walk(http, f"{served.base}feeds/all.atom")
    archived = [i for page in pages for i in page]
    assert sorted(short(archived)) == sorted(channel_ids(state))
    assert [len(page) for page in pages] == [1, PAGE]
    assert len(current) == config.feeds.max_items
