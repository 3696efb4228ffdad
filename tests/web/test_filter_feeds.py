"""Any filter as a feed URL, and private feeds, over real HTTP against the real app."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import aiohttp
import feedparser
import pytest
from yarl import URL

from syndicator.classify.classifier import Classifier
from syndicator.config import Config
from syndicator.mail import private_feeds
from syndicator.mail.roster import add_subscriber, unsubscribe
from syndicator.mail.subscribers import Subscriber
from syndicator.mail.unsubscribe import load_secret
from syndicator.state.db import State
from tests.web.readers_helpers import T0, Spec, configure, cycle, serving, write_articles

SPECS = [
    Spec("kenya-aeo", ("east-southern-africa",), ("aeo",)),
    Spec("ghana-aeo", ("west-central-africa",), ("aeo",)),
    Spec("wco-aeo", ("global",), ("aeo",)),
    Spec("kenya-transit", ("east-southern-africa",), ("transit",)),
    Spec("peru-aeo", ("americas",), ("aeo",)),
    Spec("zambia-corridor", ("east-southern-africa",), (), "A new Trade Corridor opened."),
    Spec("france-audit", ("europe",), ("post-clearance-audit",)),
]
AFRICA = "region=east-southern-africa&region=west-central-africa"


@pytest.fixture
def config(install: Path) -> Config:
    return configure(install)


@pytest.fixture
def published(config: Config, classifier: Classifier, state: State) -> Config:
    write_articles(config.store.path, SPECS, start=T0 - timedelta(days=30))
    cycle(config, classifier, state, T0)
    return config


def ids(document: bytes) -> list[str]:
    parsed = feedparser.parse(document)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [entry.id.rpartition("/")[2] for entry in parsed.entries]


async def test_filter_feed_has_the_subscribers_semantics(
    published: Config, classifier: Classifier, state: State
) -> None:
    async with serving(published, classifier, state) as served, aiohttp.ClientSession() as http:
        # AEO news from Africa, no global stories; newest first.
        url = f"{served.base}feeds/filter.atom?{AFRICA}&topic=aeo&exclude_region=global"
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
            assert response.headers["Vary"] == "Accept-Encoding"
            assert response.headers["Cache-Control"] == "public, max-age=1"
            body = await response.read()
        assert ids(body) == ["ghana-aeo", "kenya-aeo"]
        # A keyword is a whole word in title or body, case-insensitive, or-ed with topics.
        query = "region=east-southern-africa&topic=aeo&keyword=trade+corridor"
        url = f"{served.base}feeds/filter.json?{query}"
        async with http.get(URL(url, encoded=True), allow_redirects=False) as response:
            assert response.status == 301  # "+" is not the canonical spelling of a space
            location = response.headers["Location"]
        assert location.endswith("keyword=trade%20corridor")
        async with http.get(location) as response:
            document = json.loads(await response.read())
        assert [item["id"].rpartition("/")[2] for item in document["items"]] == [
            "zambia-corridor",
            "kenya-aeo",
        ]
        assert document["feed_url"] == location
        # No parameters: everything, like all.*
        async with http.get(f"{served.base}feeds/filter.rss") as response:
            assert len(ids(await response.read())) == len(SPECS)


async def test_non_canonical_orderings_redirect_to_one_url(
    published: Config, classifier: Classifier, state: State
) -> None:
    canonical = f"{AFRICA}&topic=aeo&exclude_region=global"
    spellings = [
        "topic=aeo&region=west-central-africa&region=east-southern-africa&exclude_region=global",
        f"exclude_region=global&{AFRICA}&topic=aeo",
        f"{AFRICA}&topic=aeo&topic=aeo&exclude_region=global",  # repeated
        "region=east-southern-africa&region=west-central-africa&topic=ae%6F&exclude_region=global",
        # As the index page's form sends it: empty fields for "any".
        f"{AFRICA}&topic=aeo&keyword=&exclude_region=global&exclude_topic=",
    ]
    async with serving(published, classifier, state) as served, aiohttp.ClientSession() as http:
        for query in spellings:
            async with http.get(
                URL(f"{served.base}feeds/filter.atom?{query}", encoded=True),
                allow_redirects=False,
            ) as response:
                assert response.status == 301, query
                assert response.headers["Location"] == (
                    f"{served.base}feeds/filter.atom?{canonical}"
                ), query
        async with http.get(f"{served.base}feeds/filter.atom?{canonical}") as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("region=atlantis", "region: unknown slug 'atlantis'"),
        ("topic=aeo%00", "topic: control characters"),
        ("exclude_topic=nope", "exclude_topic: unknown slug"),
        ("color=blue", "unknown parameter 'color'"),
        ("region", "region: no value"),
        ("keyword=%FF%FE", "keyword: not valid UTF-8"),
        ("keyword=" + "x" * 65, "keyword: keywords are at most 64"),
        ("&".join(f"keyword=k{n}" for n in range(11)), "keyword: at most 10 values"),
        ("keyword=" + "a" * 3000, "longer than 2048"),
        ("region=europe&&topic=aeo", "empty parameter"),
        ("keyword=%21%21", "has no word"),
    ],
)
async def test_bad_filter_parameters_get_a_clear_400(
    published: Config, classifier: Classifier, state: State, query: str, names: str
) -> None:
    async with (
        serving(published, classifier, state) as served,
        aiohttp.ClientSession() as http,
        http.get(URL(f"{served.base}feeds/filter.atom?{query}", encoded=True)) as response,
    ):
        assert response.status == 400
        text = await response.text()
    assert names in text
    assert text.count("\n") == 1


async def test_filter_feed_etag_304_gzip_and_revision(
    published: Config, classifier: Classifier, state: State
) -> None:
    url_path = "feeds/filter.atom?region=east-southern-africa"
    async with (
        serving(published, classifier, state) as served,
        aiohttp.ClientSession(auto_decompress=False) as http,
    ):
        url = served.base + url_path
        async with http.get(url, headers={"Accept-Encoding": "identity"}) as response:
            plain = await response.read()
            etag = response.headers["ETag"]
            last_modified = response.headers["Last-Modified"]
        async with http.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await response.read()) == plain
            assert response.headers["ETag"] != etag
        for headers in ({"If-None-Match": etag}, {"If-Modified-Since": last_modified}):
            async with http.get(
                url, headers={"Accept-Encoding": "identity", **headers}
            ) as response:
                assert response.status == 304, headers
                assert await response.read() == b""
        # A new article in the filter: the next request (after the revision check) differs.
        write_articles(
            published.store.path / "later",
            [Spec("uganda-transit", ("east-southern-africa",), ("transit",))],
            start=T0,
        )
        cycle(published, classifier, state, T0 + timedelta(minutes=5))
        served.feeds._revision_checked = float("-inf")  # the check happens once a second
        async with http.get(
            url, headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
        ) as response:
            assert response.status == 200
            assert ids(await response.read())[0] == "uganda-transit"
            assert response.headers["ETag"] != etag


async def test_private_feed_follows_filters_rotates_and_leaves(
    published: Config, classifier: Classifier, state: State
) -> None:
    secret = load_secret(state, None)
    with state.transaction() as conn:
        add_subscriber(
            conn,
            Subscriber(
                email="reader@example.org",
                regions=["east-southern-africa"],
                topics=["aeo", "transit"],
            ),
            now=T0,
        )
        subscriber_id = conn.exec_driver_sql(
            "SELECT id FROM subscribers WHERE email_key = 'reader@example.org'"
        ).scalar_one()
        token = private_feeds.current_token(conn, secret, subscriber_id)
    async with serving(published, classifier, state) as served, aiohttp.ClientSession() as http:
        atom = f"{served.base}feeds/private/{token}.atom"
        async with http.get(atom) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "private, max-age=1"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            body = await response.read()
        assert ids(body) == ["kenya-transit", "kenya-aeo"]
        assert b"reader@example.org" not in body
        async with http.get(atom.replace(".atom", ".json")) as response:
            document = json.loads(await response.read())
            assert [i["id"].rpartition("/")[2] for i in document["items"]] == [
                "kenya-transit",
                "kenya-aeo",
            ]
            assert document["feed_url"] == atom.replace(".atom", ".json")
        async with http.get(atom.replace(".atom", ".rss")) as response:
            assert response.status == 404  # private feeds are Atom and JSON
        # Forged: another id under the same MAC, a changed MAC, a later generation, garbage.
        number, generation, mac = token.split(".")
        forged = [
            f"{int(number) + 1}.{generation}.{mac}",
            f"{number}.{generation}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
            f"{number}.{int(generation) + 1}.{mac}",
            "1.0.%2e%2e",
            "x" * 300,
        ]
        for bad in forged:
            async with http.get(
                URL(f"{served.base}feeds/private/{bad}.atom", encoded=True)
            ) as response:
                assert response.status == 404, bad
        # Rotation: the old URL is gone (410), the new one works.
        new_token = private_feeds.rotate(state, served.secret, subscriber_id)
        assert new_token != token
        async with http.get(atom) as response:
            assert response.status == 410
        async with http.get(f"{served.base}feeds/private/{new_token}.atom") as response:
            assert response.status == 200
        # Leaving loses the feed.
        with state.transaction() as conn:
            unsubscribe(conn, subscriber_id, now=T0)
        async with http.get(f"{served.base}feeds/private/{new_token}.atom") as response:
            assert response.status == 410
