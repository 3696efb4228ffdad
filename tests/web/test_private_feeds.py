"""Private feeds end to end: shown on the manage page and in every mail, rotated there, and
the "feed only, no mail" cadence, over real HTTP and a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import feedparser
import pytest

from syndicator.mail.signup import manage_token
from syndicator.metrics import Metrics
from syndicator.pipeline import deliver_due, names_from, site_from_config
from syndicator.web.app import Health, create_app, serve
from syndicator.web.filter_feeds import ReaderFeeds
from tests.conftest import T0
from tests.web.test_subscriptions import (  # noqa: F401 (site: a fixture)
    Pages,
    links,
    outbox_record,
    site,
    to,
)

FEED_LINK = re.compile(r"https?://\S+/feeds/private/([0-9A-Za-z._-]+)\.atom")


@pytest.fixture
async def feeds(site: Pages) -> AsyncIterator[str]:  # noqa: F811
    """The same state's private feeds, served by the real app; its address."""
    reader_feeds = ReaderFeeds(
        site.state,
        site=site_from_config(site.config),
        names=names_from(site.classifier),
        max_items=site.config.feeds.max_items,
        secret=site.pages.desk.secret,
        cache_seconds=60,
    )
    app = create_app(
        output_dir=site.config.feeds.output_dir,
        health=Health(interval=60),
        metrics=Metrics(),
        clock=site.clock,
        reader_feeds=reader_feeds,
    )
    runner = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


def local(url: str, base: str) -> str:
    return url.replace("https://news.example.org/", base)


async def titles_of(session: aiohttp.ClientSession, url: str) -> list[str]:
    async with session.get(url) as response:
        assert response.status == 200, url
        parsed = feedparser.parse(await response.read())
    assert not parsed.bozo
    return [entry.title for entry in parsed.entries]


async def test_feed_only_subscriber_gets_no_mail_but_a_private_feed_that_rotates(
    site: Pages,  # noqa: F811
    feeds: str,
) -> None:
    status, _, _ = await site.subscribe("reader@example.org", regions="americas", cadence="feed")
    assert status == 303
    (confirmation,) = to(await site.delivered(), "reader@example.org")
    (token,) = links(confirmation, "confirm")
    csrf = await site.form(f"/confirm/{token}")
    status, _, _ = await site.post(f"/confirm/{token}", {"csrf": csrf})
    assert status in {200, 303}  # confirmed (the page, or a redirect to it)
    record = outbox_record(site.state, "reader@example.org")
    assert record.cadence == "feed"

    site.add_article("chile.txt", "Chile Launches AEO Programme", "Chile's customs launched it.")
    site.cycle(T0 + timedelta(minutes=5))
    await deliver_due(site.config, site.state, clock=site.clock)
    assert len(to(site.sink.received, "reader@example.org")) == 1  # the confirmation only

    manage = manage_token(site.pages.desk.secret, record.id, record.email)
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        page = await response.text()
    assert "No mail: a private feed for my feed reader" in page
    (first,) = set(FEED_LINK.findall(page))
    feed_url = local(f"https://news.example.org/feeds/private/{first}.atom", feeds)
    # Exactly what the filter matches, newest first: the same as the filter's own feed.
    private = await titles_of(site.session, feed_url)
    assert private[0] == "Chile Launches AEO Programme"
    assert private == await titles_of(site.session, f"{feeds}feeds/filter.atom?region=americas")
    async with site.session.get(feed_url[:-5] + ".json") as response:
        document = await response.json(content_type=None)
    assert [item["title"] for item in document["items"]] == private

    # Rotate: a new address on the manage page, the old one gone.
    csrf = await site.form(f"/manage/{manage}")
    rotate = {"csrf": csrf, "action": "rotate_feed"}
    status, headers, _ = await site.post(f"/manage/{manage}", rotate)
    assert status == 303 and headers["Location"] == f"/manage/{manage}?rotated=1"
    async with site.session.get(f"{site.base}{headers['Location']}") as response:
        page = await response.text()
    assert "Your feed has a new address" in page
    (second,) = set(FEED_LINK.findall(page))
    assert second != first
    async with site.session.get(feed_url) as response:
        assert response.status == 410
    renewed = local(f"https://news.example.org/feeds/private/{second}.atom", feeds)
    assert await titles_of(site.session, renewed) == private
    # Without a valid CSRF token, no rotation.
    forged = {"csrf": "forged", "action": "rotate_feed"}
    status, _, _ = await site.post(f"/manage/{manage}", forged)
    assert status == 403
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        assert set(FEED_LINK.findall(await response.text())) == {second}


async def test_every_mail_footer_links_the_readers_private_feed(
    site: Pages,  # noqa: F811
    feeds: str,
) -> None:
    site.add_article("peru.txt", "Peru Expands Green Lane", "Peru's customs expanded it.")
    site.cycle(T0 + timedelta(minutes=5))
    await deliver_due(site.config, site.state, clock=site.clock)
    (message,) = to(site.sink.received, "desk@example.org")
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    (token,) = FEED_LINK.findall(text_part.get_content())
    assert f"/feeds/private/{token}.atom" in html_part.get_content()
    feed_url = local(f"https://news.example.org/feeds/private/{token}.atom", feeds)
    assert "Peru Expands Green Lane" in await titles_of(site.session, feed_url)
