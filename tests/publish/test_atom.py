"""The Atom writer gives, byte for byte, the documents feedgen (lxml) gives for the same
articles: every labelled article, hostile text, authors, Markdown, a hub, a filter query."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import feedparser
import pytest
from feedgen.ext.base import BaseExtension

from syndicator.classify.classifier import Classifier
from syndicator.models import Article
from syndicator.pipeline import channels_from
from syndicator.publish.atom import AtomEntries, render_archive_document, render_channel_atom
from syndicator.publish.feeds import (
    CONTENT_TYPES,
    Channel,
    Names,
    Site,
    _generator,
    feed_url,
    plain_title,
)
from syndicator.store.files import read_file
from tests.conftest import DATA_DIR, T0

PREV = "https://news.example.org/feeds/archive/all/3.atom"
HISTORY_NS = "http://purl.org/syndication/history/1.0"
SITES = (
    Site("WCO News", "https://news.example.org/", "en", "d", 5, "news.example.org", "2026"),
    Site(
        'Customs & Trade <"Daily">',
        "https://example.net/news/",
        "fr",
        "d",
        5,
        "example.net",
        "2026-01-01",
        hub="https://hub.example/?a=1&b=2",
    ),
)
HOSTILE = Article(
    id="hostile & <odd> id",
    title='<script>alert("t")</script>Customs <b>Update</b> &lt;i&gt; \u2014 caf\u00e9',
    body='Intro <script>x</script> "quoted" & done.\r\n\n<a href="/rel?a=1&b=2">rel</a>\ttab',
    summary="A summary with <tags> & \"quotes\" and 'apostrophes'",
    link='https://elsewhere.example/a?x=1&y="2"',
    author="Jane Doe <jane@example.org>",
    source="s",
    line=1,
    regions=("europe", "unknown-slug"),
    topics=("aeo",),
    published=T0,
    updated=T0 + timedelta(hours=1),
    first_seen=T0,
    content_hash="h1",
    format="markdown",
)


def labelled_articles(classifier: Classifier) -> list[Article]:
    found: list[Article] = []
    for path in sorted(DATA_DIR.rglob("*")):
        if path.suffix not in {".txt", ".md"} or not path.is_file():
            continue
        raw_articles, _ = read_file(path)
        for number, raw in enumerate(raw_articles):
            regions, topics = classifier.decide(raw.title, raw.body)
            moment = T0 + timedelta(minutes=len(found))
            found.append(
                Article(
                    id=raw.id,
                    title=raw.title,
                    body=raw.body,
                    summary=raw.summary,
                    link=raw.link,
                    author=raw.author or ("Ann Author" if number % 3 == 0 else ""),
                    source=str(path),
                    line=raw.line,
                    regions=regions,
                    topics=topics,
                    published=moment,
                    updated=moment + timedelta(seconds=number % 2),
                    first_seen=moment,
                    content_hash=raw.content_hash,
                    format=raw.format,
                )
            )
    return found


class _History(BaseExtension):  # type: ignore[misc]
    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY_NS}

    def extend_atom(self, feed: Any) -> Any:
        feed.append(feed.makeelement(f"{{{HISTORY_NS}}}archive", {}))
        return feed


def feedgen_channel(
    site: Site, channel: Channel, items: list[Article], names: Names, prev_archive: str = ""
) -> bytes:
    fg = _generator(site, channel, items, names)
    atom = CONTENT_TYPES["atom"]
    fg.link(href=feed_url(site, channel, "atom"), rel="self", type=atom)
    if site.hub:
        fg.link(href=site.hub, rel="hub")
    if prev_archive:
        fg.link(href=prev_archive, rel="prev-archive", type=atom)
    fg.link(href=site.index_url, rel="alternate", type="text/html")
    data: bytes = fg.atom_str(pretty=True)
    return data


def feedgen_archive(site: Site, channel: Channel, items: list[Article], names: Names) -> bytes:
    fg = _generator(site, channel, items, names)
    fg.register_extension("fh", _History, None, atom=True, rss=False)
    fg.id(f"{fg.id()}/archive/2")
    fg.title(f"{plain_title(site.title)} — {channel.name} (archive page 2)")
    atom = CONTENT_TYPES["atom"]
    fg.link(href="https://x.example/2.atom", rel="self", type=atom)
    fg.link(href=feed_url(site, channel, "atom"), rel="current", type=atom)
    fg.link(href="https://x.example/1.atom", rel="prev-archive", type=atom)
    fg.link(href=site.index_url, rel="alternate", type="text/html")
    data: bytes = fg.atom_str(pretty=True)
    return data


@pytest.mark.parametrize("site", SITES, ids=["plain", "hub-and-markup"])
def test_documents_are_byte_for_byte_those_of_feedgen(classifier: Classifier, site: Site) -> None:
    articles = [HOSTILE, *labelled_articles(classifier)]
    assert len(articles) > 300
    names = Names(
        {slug: f"{slug.title()} & co" for slug in classifier.gazetteer.regions} | {"europe": ""},
        {slug: topic.name for slug, topic in classifier.taxonomy.topics.items()},
    )
    channels = channels_from(classifier)
    channels.append(
        Channel("filter", "all", "filter", "A filter", "Ours", query="region=europe&topic=aeo")
    )
    entries = AtomEntries(site, names)
    for channel in channels:
        items = [a for a in articles if channel.includes(a)][:150]
        ours = render_channel_atom(
            site,
            channel,
            items,
            names,
            prev_archive=PREV,
            entries=entries,
        )
        expected = feedgen_channel(site, channel, items, names, PREV)
        assert ours == expected, channel.path
        archive = render_archive_document(
            site,
            channel,
            2,
            items,
            names,
            self_url="https://x.example/2.atom",
            prev_url="https://x.example/1.atom",
            entries=entries,
        )
        assert archive == feedgen_archive(site, channel, items, names), channel.path
        assert not feedparser.parse(archive).bozo


def test_an_empty_channel_is_a_valid_document(classifier: Classifier) -> None:
    site, channel = SITES[0], channels_from(classifier)[0]
    names = Names({}, {})
    assert render_channel_atom(site, channel, [], names) == feedgen_channel(
        site, channel, [], names
    )


def test_an_entry_is_written_once_per_publish(classifier: Classifier) -> None:
    entries = AtomEntries(SITES[0], Names({}, {}))
    first = entries(HOSTILE)
    assert entries(HOSTILE) is first
    edited = replace(HOSTILE, content_hash="h2", title="Edited")
    assert "Edited" in entries(edited) and "Edited" not in first
