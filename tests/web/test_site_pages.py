"""The site to browse: index, channel pages, archive pages and article pages, over real
HTTP, and in a real headless Chromium at phone and desktop widths."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.state.db import State
from tests.smtp_sink import Sink
from tests.web.readers_helpers import T0, Spec, configure, cycle, serving, write_articles
from tests.web.test_browser import browser, daemon, screenshots  # noqa: F401 (fixtures)

SPECS = [Spec(f"kenya-news-{n}", ("east-southern-africa",), ("aeo",)) for n in range(7)] + [
    Spec("peru-news", ("americas",), ("transit",))
]


@pytest.fixture
def config(install: Path) -> Config:
    return configure(install, "archive_size = 3")


async def page(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        assert response.status == 200, url
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        return await response.text()


async def test_index_channel_archive_and_article_pages_link_each_other(
    config: Config, classifier: Classifier, state: State
) -> None:
    write_articles(config.store.path, SPECS, start=T0 - timedelta(days=1))
    cycle(config, classifier, state, T0)
    async with serving(config, classifier, state) as served, aiohttp.ClientSession() as http:
        base = served.base
        index = await page(http, base)
        # The news first, then the channels, each with its count and latest date.
        assert index.index("Latest articles") < index.index("Browse and subscribe")
        assert re.search(
            r'href="' + re.escape(base) + r'regions/east-southern-africa.html">[^<]+</a>\s*'
            r'<span class="muted">7 · 01 Mar 2026</span>',
            index,
        )
        assert f'action="{base}feeds/filter.atom"' in index
        # A channel page: autodiscovery, newest first, a link to older articles.
        channel = await page(http, f"{base}regions/east-southern-africa.html")
        assert (
            '<link rel="alternate" type="application/atom+xml" title="WCO News — '
        ) in channel and f'href="{base}feeds/east-southern-africa.atom"' in channel
        titles = re.findall(r"<h3><a [^>]+>([^<]+)</a></h3>", channel)
        assert titles == [f"Kenya News {n}" for n in range(6, -1, -1)]
        older = re.search(r'<a href="([^"]+)" rel="prev">Older articles</a>', channel)
        assert older is not None and older.group(1) == f"{base}regions/east-southern-africa/3.html"
        archive = await page(http, older.group(1))
        assert re.findall(r"<h3><a [^>]+>([^<]+)</a></h3>", archive) == ["Kenya News 6"]
        assert f'href="{base}regions/east-southern-africa/2.html" rel="prev"' in archive
        first = await page(http, f"{base}regions/east-southern-africa/1.html")
        assert re.findall(r"<h3><a [^>]+>([^<]+)</a></h3>", first) == [
            "Kenya News 2",
            "Kenya News 1",
            "Kenya News 0",
        ]
        assert 'rel="prev"' not in first
        # Topics too; unknown slugs and other file types are 404.
        await page(http, f"{base}topics/aeo.html")
        await page(http, f"{base}all.html")
        for missing in ("regions/atlantis.html", "regions/..%2F..%2Fetc.html", "topics/aeo.rss"):
            async with http.get(f"{base}{missing}") as response:
                assert response.status == 404, missing
        # An article page links back to its channels.
        article = await page(http, f"{base}articles/kenya-news-3.html")
        assert f'<a href="{base}regions/east-southern-africa.html">' in article
        assert f'<a href="{base}topics/aeo.html">' in article
        # The index's form, as a browser submits it, leads to the filter's feed.
        form = {
            "region": "east-southern-africa",
            "topic": "aeo",
            "keyword": "",
            "exclude_region": "",
        }
        async with http.get(f"{base}feeds/filter.atom", params=form) as response:
            assert response.status == 200
            assert str(response.url) == (
                f"{base}feeds/filter.atom?region=east-southern-africa&topic=aeo"
            )
    # Nothing changed: a new cycle rewrites no page.
    again = cycle_written(config, classifier, state)
    assert again == []


def cycle_written(config: Config, classifier: Classifier, state: State) -> list[str]:
    from syndicator.pipeline import run_cycle

    result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=5))
    return [] if result.publish is None else result.publish.written


@pytest.mark.browser
def test_site_pages_at_phone_and_desktop_width(
    daemon: tuple[str, Path, Sink],  # noqa: F811
    browser: WebDriver,  # noqa: F811
) -> None:
    base, _, _ = daemon
    browser.get(base)
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings[:2] == ["Latest articles", "Browse and subscribe"]
    screenshots(browser, "site-index")
    browser.get(base + "regions/americas.html")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Americas")
    screenshots(browser, "site-channel")
    browser.find_element(By.CSS_SELECTOR, "ol.articles h3 a").click()
    assert browser.find_element(By.CSS_SELECTOR, "article .tags a").get_attribute("href")
    screenshots(browser, "site-article")
