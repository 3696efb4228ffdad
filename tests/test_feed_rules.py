"""The offline feed checker (tests/feed_rules.py) catches each of its rules: a valid
document of each format has no finding, and each deliberately broken copy has the
finding of the rule it breaks, at the level the W3C Feed Validator gives it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.feed_rules import ERROR, WARNING, check, problems

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ATOM_URL = "https://news.example.org/feeds/all.atom"
ARCHIVE_URL = "https://news.example.org/feeds/archive/all/2.atom"
RSS_URL = "https://news.example.org/feeds/all.rss"
JSON_URL = "https://news.example.org/feeds/all.json"

ATOM = """<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
  <id>tag:news.example.org,2026:feeds/all</id>
  <title>WCO News</title>
  <updated>2026-03-02T08:00:00+00:00</updated>
  <author><name>WCO News</name></author>
  <link href="https://news.example.org/feeds/all.atom" rel="self" type="application/atom+xml"/>
  <link href="https://news.example.org/feeds/archive/all/2.atom" rel="prev-archive"
        type="application/atom+xml"/>
  <link href="https://news.example.org/" rel="alternate" type="text/html"/>
  <entry>
    <id>tag:news.example.org,2026:articles/one</id>
    <title>Kenya opens a green lane</title>
    <updated>2026-03-02T08:00:00+00:00</updated>
    <content type="html">&lt;p&gt;Kenya &lt;a href="https://news.example.org/a"&gt;opened&lt;/a&gt;
      it.&lt;/p&gt;</content>
    <link href="https://news.example.org/articles/one.html"/>
    <summary>Kenya opened it.</summary>
  </entry>
  <entry>
    <id>tag:news.example.org,2026:articles/two</id>
    <title>Peru joins the AEO programme</title>
    <updated>2026-03-01T08:00:00+00:00</updated>
    <published>2026-03-01T08:00:00Z</published>
    <content type="html">&lt;p&gt;Peru joined.&lt;/p&gt;</content>
    <link href="https://news.example.org/articles/two.html"/>
  </entry>
</feed>
"""

ARCHIVE = """<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:fh="http://purl.org/syndication/history/1.0">
  <id>tag:news.example.org,2026:feeds/all/archive/2</id>
  <title>WCO News (archive page 2)</title>
  <updated>2026-03-02T08:00:00+00:00</updated>
  <author><name>WCO News</name></author>
  <link href="https://news.example.org/feeds/archive/all/2.atom" rel="self"/>
  <link href="https://news.example.org/feeds/all.atom" rel="current"/>
  <link href="https://news.example.org/feeds/archive/all/1.atom" rel="prev-archive"/>
  <link href="https://news.example.org/feeds/archive/all/3.atom" rel="next-archive"/>
  <fh:archive/>
  <entry>
    <id>tag:news.example.org,2026:articles/one</id>
    <title>Kenya opens a green lane</title>
    <updated>2026-03-02T08:00:00+00:00</updated>
    <summary>Kenya opened it.</summary>
    <link href="https://news.example.org/articles/one.html"/>
  </entry>
</feed>
"""

RSS = """<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:atom="http://www.w3.org/2005/Atom"
     xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">
  <channel>
    <title>WCO News</title>
    <link>https://news.example.org/</link>
    <description>Customs news</description>
    <atom:link href="https://news.example.org/feeds/all.rss" rel="self" type="application/rss+xml"/>
    <language>en</language>
    <lastBuildDate>Mon, 02 Mar 2026 08:00:00 +0000</lastBuildDate>
    <ttl>5</ttl>
    <item>
      <title>Kenya opens a green lane</title>
      <link>https://news.example.org/articles/one.html</link>
      <description>Kenya opened it.</description>
      <content:encoded>&lt;p&gt;Kenya opened it.&lt;/p&gt;</content:encoded>
      <guid isPermaLink="false">tag:news.example.org,2026:articles/one</guid>
      <pubDate>Mon, 02 Mar 2026 08:00:00 +0000</pubDate>
    </item>
    <item>
      <title>Peru joins the AEO programme</title>
      <link>https://news.example.org/articles/two.html</link>
      <guid>https://news.example.org/articles/two.html</guid>
      <pubDate>Sun, 01 Mar 2026 08:00:00 +0000</pubDate>
    </item>
  </channel>
</rss>
"""

JSON_FEED: dict[str, object] = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "WCO News",
    "home_page_url": "https://news.example.org/",
    "feed_url": JSON_URL,
    "language": "en",
    "authors": [{"name": "WCO News"}],
    "items": [
        {
            "id": "tag:news.example.org,2026:articles/one",
            "url": "https://news.example.org/articles/one.html",
            "title": "Kenya opens a green lane",
            "content_html": "<p>Kenya opened it.</p>",
            "date_published": "2026-03-02T08:00:00Z",
            "date_modified": "2026-03-02T08:00:00+00:00",
            "tags": ["Kenya"],
        },
        {
            "id": "tag:news.example.org,2026:articles/two",
            "url": "https://news.example.org/articles/two.html",
            "title": "Peru joins the AEO programme",
            "content_text": "Peru joined.",
        },
    ],
}


def _json(change: Callable[[dict[str, object]], None]) -> str:
    feed = json.loads(json.dumps(JSON_FEED))
    change(feed)
    return json.dumps(feed)


def _item(index: int, **values: object) -> Callable[[dict[str, object]], None]:
    def apply(feed: dict[str, object]) -> None:
        items = feed["items"]
        assert isinstance(items, list)
        items[index].update(values)
        for key in [k for k, v in values.items() if v is None]:
            del items[index][key]

    return apply


def _without(key: str) -> Callable[[dict[str, object]], None]:
    def apply(feed: dict[str, object]) -> None:
        del feed[key]

    return apply


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    return lambda feed: feed.update({key: value})


ONE = "<id>tag:news.example.org,2026:articles/one</id>"
TWO = "<id>tag:news.example.org,2026:articles/two</id>"
SELF = (
    '<link href="https://news.example.org/feeds/all.atom" rel="self" type="application/atom+xml"/>'
)
FEED_UPDATED = "<updated>2026-03-02T08:00:00+00:00</updated>\n  <author>"

# case -> (where the broken document is fetched from, valid document, broken document,
# the level of the finding expected)
CASES: dict[str, tuple[str | None, str, str, str]] = {
    # Atom (RFC 4287)
    "atom: not XML": (ATOM_URL, ATOM, ATOM.replace("</feed>", ""), ERROR),
    "atom: feed id missing": (
        ATOM_URL,
        ATOM,
        ATOM.replace("<id>tag:news.example.org,2026:feeds/all</id>", ""),
        ERROR,
    ),
    "atom: feed title twice": (
        ATOM_URL,
        ATOM,
        ATOM.replace("<title>WCO News</title>", "<title>WCO News</title><title>Again</title>"),
        ERROR,
    ),
    "atom: feed updated missing": (
        ATOM_URL,
        ATOM,
        ATOM.replace(FEED_UPDATED, "<author>"),
        ERROR,
    ),
    "atom: entry id missing": (ATOM_URL, ATOM, ATOM.replace(TWO, ""), ERROR),
    "atom: entry title missing": (
        ATOM_URL,
        ATOM,
        ATOM.replace("<title>Peru joins the AEO programme</title>", ""),
        ERROR,
    ),
    "atom: id not an IRI": (
        ATOM_URL,
        ATOM,
        ATOM.replace(ONE, "<id>articles one</id>"),
        ERROR,
    ),
    "atom: date not RFC 3339": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            "<published>2026-03-01T08:00:00Z</published>",
            "<published>Sun, 01 Mar 2026 08:00:00 +0000</published>",
        ),
        ERROR,
    ),
    "atom: date without zone": (
        ATOM_URL,
        ATOM,
        ATOM.replace(FEED_UPDATED, "<updated>2026-03-02T08:00:00</updated>\n  <author>"),
        ERROR,
    ),
    "atom: date in the future": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            "<published>2026-03-01T08:00:00Z</published>",
            "<published>2027-03-01T08:00:00Z</published>",
        ),
        WARNING,
    ),
    "atom: no author anywhere": (
        ATOM_URL,
        ATOM,
        ATOM.replace("<author><name>WCO News</name></author>", ""),
        ERROR,
    ),
    "atom: author without name": (
        ATOM_URL,
        ATOM,
        ATOM.replace("<author><name>WCO News</name></author>", "<author></author>"),
        ERROR,
    ),
    "atom: relative link without xml:base": (
        None,
        ATOM,
        ATOM.replace(
            'href="https://news.example.org/articles/one.html"', 'href="articles/one.html"'
        ),
        WARNING,
    ),
    "atom: relative link in HTML content": (
        None,
        ATOM,
        ATOM.replace("https://news.example.org/a", "/a"),
        WARNING,
    ),
    "atom: script in HTML content": (
        ATOM_URL,
        ATOM,
        ATOM.replace("&lt;p&gt;Peru joined.", "&lt;script&gt;x()&lt;/script&gt;&lt;p&gt;Peru"),
        WARNING,
    ),
    "atom: no self link": (ATOM_URL, ATOM, ATOM.replace(SELF, ""), WARNING),
    "atom: self link elsewhere": (
        "https://news.example.org/feeds/europe.atom",
        ATOM,
        ATOM,
        WARNING,
    ),
    "atom: two entries with one id": (
        ATOM_URL,
        ATOM,
        ATOM.replace(TWO, ONE).replace(
            "</feed>",
            "<entry><id>tag:x,2026:3</id><title>t</title>"
            "<updated>2026-02-01T00:00:00Z</updated><summary>s</summary></entry></feed>",
        ),
        WARNING,
    ),
    "atom: every entry with one id": (ATOM_URL, ATOM, ATOM.replace(TWO, ONE), ERROR),
    "atom: two entries updated at once": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            "<updated>2026-03-01T08:00:00+00:00</updated>",
            "<updated>2026-03-02T08:00:00+00:00</updated>",
        ),
        WARNING,
    ),
    "atom: bad text type": (
        ATOM_URL,
        ATOM,
        ATOM.replace("<title>WCO News</title>", '<title type="text/plain">WCO News</title>'),
        ERROR,
    ),
    "atom: xhtml without div": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            "<summary>Kenya opened it.</summary>", '<summary type="xhtml">Kenya</summary>'
        ),
        ERROR,
    ),
    "atom: bad content type": (
        ATOM_URL,
        ATOM,
        ATOM.replace('<content type="html">&lt;p&gt;Peru', '<content type="htm l">&lt;p&gt;Peru'),
        ERROR,
    ),
    "atom: content src without summary": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            '<content type="html">&lt;p&gt;Peru joined.&lt;/p&gt;</content>',
            '<content type="text/html" src="https://news.example.org/two"/>',
        ),
        ERROR,
    ),
    "atom: no content and no alternate": (
        ATOM_URL,
        ATOM,
        ATOM.replace('<content type="html">&lt;p&gt;Peru joined.&lt;/p&gt;</content>', "").replace(
            '<link href="https://news.example.org/articles/two.html"/>', ""
        ),
        ERROR,
    ),
    "atom: entry without text": (
        ATOM_URL,
        ATOM,
        ATOM.replace('<content type="html">&lt;p&gt;Peru joined.&lt;/p&gt;</content>', ""),
        WARNING,
    ),
    "atom: link without href": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            '<link href="https://news.example.org/" rel="alternate" type="text/html"/>',
            '<link rel="related"/>',
        ),
        ERROR,
    ),
    "atom: two alternates of one type": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            '<link href="https://news.example.org/" rel="alternate" type="text/html"/>',
            '<link href="https://news.example.org/" rel="alternate" type="text/html"/>'
            '<link href="https://news.example.org/2" rel="alternate" type="text/html"/>',
        ),
        ERROR,
    ),
    "atom: unregistered rel": (
        ATOM_URL,
        ATOM,
        ATOM.replace('rel="alternate" type="text/html"', 'rel="homepage" type="text/html"'),
        WARNING,
    ),
    "atom: bad link type": (
        ATOM_URL,
        ATOM,
        ATOM.replace('rel="alternate" type="text/html"', 'rel="alternate" type="html"'),
        ERROR,
    ),
    # RFC 5005
    "archive: no current link": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace('<link href="https://news.example.org/feeds/all.atom" rel="current"/>', ""),
        WARNING,
    ),
    "archive: no archive links": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace('rel="prev-archive"', 'rel="related"').replace(
            'rel="next-archive"', 'rel="via"'
        ),
        WARNING,
    ),
    "archive: current is itself": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace("feeds/all.atom", "feeds/archive/all/2.atom"),
        ERROR,
    ),
    "archive: prev-archive is itself": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace("archive/all/1.atom", "archive/all/2.atom"),
        ERROR,
    ),
    "archive: two prev-archive links": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace(
            "<fh:archive/>",
            '<link href="https://news.example.org/feeds/archive/all/0.atom" rel="prev-archive"/>'
            "<fh:archive/>",
        ),
        ERROR,
    ),
    "archive: complete and archive at once": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace("<fh:archive/>", "<fh:archive/><fh:complete/>"),
        ERROR,
    ),
    "complete: with a prev-archive link": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            '<feed xmlns="http://www.w3.org/2005/Atom"',
            '<feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:fh="http://purl.org/syndication/history/1.0"',
        ).replace("<entry>", "<fh:complete/><entry>", 1),
        ERROR,
    ),
    "complete: current is not self": (
        ATOM_URL,
        ATOM,
        ATOM.replace(
            '<feed xmlns="http://www.w3.org/2005/Atom"',
            '<feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:fh="http://purl.org/syndication/history/1.0"',
        )
        .replace('rel="prev-archive"', 'rel="current"')
        .replace("<entry>", "<fh:complete/><entry>", 1),
        ERROR,
    ),
    "archive: history link inside an entry": (
        ARCHIVE_URL,
        ARCHIVE,
        ARCHIVE.replace(
            '<link href="https://news.example.org/articles/one.html"/>',
            '<link href="https://news.example.org/articles/one.html"/>'
            '<link href="https://news.example.org/feeds/all.atom" rel="current"/>',
        ),
        WARNING,
    ),
    # RSS 2.0
    "rss: wrong version": (RSS_URL, RSS, RSS.replace('version="2.0"', 'version="0.91"'), ERROR),
    "rss: channel without description": (
        RSS_URL,
        RSS,
        RSS.replace("<description>Customs news</description>", ""),
        ERROR,
    ),
    "rss: channel link not a URL": (
        RSS_URL,
        RSS,
        RSS.replace("<link>https://news.example.org/</link>", "<link>news.example.org</link>"),
        ERROR,
    ),
    "rss: date not RFC 822": (
        RSS_URL,
        RSS,
        RSS.replace("Mon, 02 Mar 2026 08:00:00 +0000</pubDate>", "2026-03-02T08:00:00Z</pubDate>"),
        ERROR,
    ),
    "rss: wrong day of the week": (
        RSS_URL,
        RSS,
        RSS.replace(
            "Mon, 02 Mar 2026 08:00:00 +0000</pubDate>", "Tue, 02 Mar 2026 08:00:00 +0000</pubDate>"
        ),
        ERROR,
    ),
    "rss: two-digit year": (
        RSS_URL,
        RSS,
        RSS.replace(
            "Mon, 02 Mar 2026 08:00:00 +0000</pubDate>", "Mon, 02 Mar 26 08:00:00 +0000</pubDate>"
        ),
        WARNING,
    ),
    "rss: guid permalink not a URL": (
        RSS_URL,
        RSS,
        RSS.replace('<guid isPermaLink="false">', "<guid>"),
        ERROR,
    ),
    "rss: isPermaLink not a boolean": (
        RSS_URL,
        RSS,
        RSS.replace('isPermaLink="false"', 'isPermaLink="no"'),
        ERROR,
    ),
    "rss: item without guid": (
        RSS_URL,
        RSS,
        RSS.replace("<guid>https://news.example.org/articles/two.html</guid>", ""),
        WARNING,
    ),
    "rss: two items with one guid": (
        RSS_URL,
        RSS,
        RSS.replace(
            "<guid>https://news.example.org/articles/two.html</guid>",
            '<guid isPermaLink="false">tag:news.example.org,2026:articles/one</guid>',
        ),
        ERROR,
    ),
    "rss: small number as guid": (
        RSS_URL,
        RSS,
        RSS.replace(
            "<guid>https://news.example.org/articles/two.html</guid>",
            '<guid isPermaLink="false">54</guid>',
        ),
        WARNING,
    ),
    "rss: no self link": (
        RSS_URL,
        RSS,
        RSS.replace(
            '<atom:link href="https://news.example.org/feeds/all.rss" rel="self" '
            'type="application/rss+xml"/>',
            "",
        ),
        WARNING,
    ),
    "rss: item without title or description": (
        RSS_URL,
        RSS,
        RSS.replace("<title>Peru joins the AEO programme</title>", ""),
        ERROR,
    ),
    "rss: ttl not a number": (RSS_URL, RSS, RSS.replace("<ttl>5</ttl>", "<ttl>soon</ttl>"), ERROR),
    "rss: author without real name": (
        RSS_URL,
        RSS,
        RSS.replace(
            "</guid>\n      <pubDate>Sun",
            "</guid><author>desk@example.org</author>\n      <pubDate>Sun",
        ),
        WARNING,
    ),
    # JSON Feed 1.1
    "json: not JSON": (JSON_URL, json.dumps(JSON_FEED), json.dumps(JSON_FEED)[:-1], ERROR),
    "json: no version": (JSON_URL, json.dumps(JSON_FEED), _json(_without("version")), ERROR),
    "json: unknown version": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_set("version", "https://jsonfeed.org/version/2")),
        ERROR,
    ),
    "json: no title": (JSON_URL, json.dumps(JSON_FEED), _json(_without("title")), ERROR),
    "json: no items": (JSON_URL, json.dumps(JSON_FEED), _json(_without("items")), ERROR),
    "json: item without id": (JSON_URL, json.dumps(JSON_FEED), _json(_item(1, id=None)), ERROR),
    "json: two items with one id": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_item(1, id="tag:news.example.org,2026:articles/one")),
        ERROR,
    ),
    "json: item without content": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_item(1, content_text=None)),
        ERROR,
    ),
    "json: date not RFC 3339": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_item(0, date_published="2 March 2026")),
        ERROR,
    ),
    "json: relative URL": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_item(0, url="/articles/one.html")),
        ERROR,
    ),
    "json: no feed_url": (JSON_URL, json.dumps(JSON_FEED), _json(_without("feed_url")), WARNING),
    "json: feed_url elsewhere": (
        "https://news.example.org/feeds/europe.json",
        json.dumps(JSON_FEED),
        json.dumps(JSON_FEED),
        WARNING,
    ),
    "json: deprecated author": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_set("author", {"name": "WCO"})),
        WARNING,
    ),
    "json: author with nothing": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_set("authors", [{}])),
        ERROR,
    ),
    "json: tags not strings": (
        JSON_URL,
        json.dumps(JSON_FEED),
        _json(_item(0, tags=[1, 2])),
        ERROR,
    ),
}

# The rule each case must be found by.
EXPECTED = {
    "atom: not XML": "SAXError",
    "atom: feed id missing": "MissingElement",
    "atom: feed title twice": "DuplicateElement",
    "atom: feed updated missing": "MissingElement",
    "atom: entry id missing": "MissingElement",
    "atom: entry title missing": "MissingElement",
    "atom: id not an IRI": "InvalidIRI",
    "atom: date not RFC 3339": "InvalidRFC3339Date",
    "atom: date without zone": "InvalidRFC3339Date",
    "atom: date in the future": "ImplausibleDate",
    "atom: no author anywhere": "MissingElement",
    "atom: author without name": "MissingElement",
    "atom: relative link without xml:base": "ContainsRelRef",
    "atom: relative link in HTML content": "ContainsRelRef",
    "atom: script in HTML content": "SecurityRisk",
    "atom: no self link": "MissingSelf",
    "atom: self link elsewhere": "SelfDoesntMatchLocation",
    "atom: two entries with one id": "DuplicateEntries",
    "atom: every entry with one id": "DuplicateIds",
    "atom: two entries updated at once": "DuplicateUpdated",
    "atom: bad text type": "InvalidTextType",
    "atom: xhtml without div": "MissingXhtmlDiv",
    "atom: bad content type": "InvalidMIMEType",
    "atom: content src without summary": "MissingSummary",
    "atom: no content and no alternate": "MissingContentOrAlternate",
    "atom: entry without text": "MissingTextualContent",
    "atom: link without href": "MissingHref",
    "atom: two alternates of one type": "DuplicateAtomLink",
    "atom: unregistered rel": "UnregisteredAtomLinkRel",
    "atom: bad link type": "InvalidMIMEType",
    "archive: no current link": "MissingCurrentInArchive",
    "archive: no archive links": "ArchiveIncomplete",
    "archive: current is itself": "ArchiveIsCurrent",
    "archive: prev-archive is itself": "ArchiveLinksToItself",
    "archive: two prev-archive links": "DuplicateAtomLink",
    "archive: complete and archive at once": "FeedRelInCompleteFeed",
    "complete: with a prev-archive link": "FeedRelInCompleteFeed",
    "complete: current is not self": "CurrentNotSelfInCompleteFeed",
    "archive: history link inside an entry": "FeedHistoryRelInEntry",
    "rss: wrong version": "InvalidRSSVersion",
    "rss: channel without description": "MissingElement",
    "rss: channel link not a URL": "InvalidURLElement",
    "rss: date not RFC 822": "InvalidRFC2822Date",
    "rss: wrong day of the week": "IncorrectDOW",
    "rss: two-digit year": "ProblematicalRFC822Date",
    "rss: guid permalink not a URL": "InvalidHttpGUID",
    "rss: isPermaLink not a boolean": "InvalidBooleanAttribute",
    "rss: item without guid": "MissingGuid",
    "rss: two items with one guid": "DuplicateValue",
    "rss: small number as guid": "NotSufficientlyUnique",
    "rss: no self link": "MissingAtomSelfLink",
    "rss: item without title or description": "ItemMustContainTitleOrDescription",
    "rss: ttl not a number": "InvalidInteger",
    "rss: author without real name": "MissingRealName",
    "json: not JSON": "InvalidJSON",
    "json: no version": "MissingElement",
    "json: unknown version": "InvalidValue",
    "json: no title": "MissingElement",
    "json: no items": "MissingElement",
    "json: item without id": "MissingElement",
    "json: two items with one id": "DuplicateIds",
    "json: item without content": "MissingElement",
    "json: date not RFC 3339": "InvalidRFC3339Date",
    "json: relative URL": "InvalidURL",
    "json: no feed_url": "MissingSelf",
    "json: feed_url elsewhere": "SelfDoesntMatchLocation",
    "json: deprecated author": "Deprecated",
    "json: author with nothing": "MissingElement",
    "json: tags not strings": "InvalidValue",
}


# Each valid document and where it is published.
VALID = {ATOM: ATOM_URL, ARCHIVE: ARCHIVE_URL, RSS: RSS_URL, json.dumps(JSON_FEED): JSON_URL}


@pytest.mark.parametrize("document", sorted(VALID))
def test_the_valid_documents_have_no_finding(document: str) -> None:
    found = check(document.encode(), location=VALID[document], now=NOW)
    assert found == [], problems(found)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_is_caught_on_a_broken_document(case: str) -> None:
    location, valid, broken, level = CASES[case]
    assert check(valid.encode(), location=VALID[valid], now=NOW) == []
    found = check(broken.encode(), location=location, now=NOW)
    rules = {(finding.level, finding.rule) for finding in found}
    assert (level, EXPECTED[case]) in rules, problems(found)
    # Every finding says where and what is wrong.
    assert all(finding.message and finding.where for finding in found)


def test_every_case_names_its_rule() -> None:
    assert set(CASES) == set(EXPECTED)
