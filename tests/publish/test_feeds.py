"""Feeds: every published file parses cleanly, is stable, safe and rebuilt only when needed."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs
from xml.etree import ElementTree

import feedparser
import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, Config, load_config
from syndicator.models import Article
from syndicator.pipeline import channels_from, run_cycle
from syndicator.publish.feeds import Names, Site, body_html, plain_title, render_json
from syndicator.state.db import State
from tests.conftest import DATA_DIR, SAMPLE_STORE, T0, write

GOLDEN = DATA_DIR / "golden"
HOSTILE_TITLE = '<script>alert("t")</script>Customs <b onmouseover="x()">Update</b> &lt;i&gt;'
HOSTILE_BODY = (
    'Intro <script>alert("b")</script> text.\n\n'
    '<a href="javascript:alert(1)">click</a> <img src="x.png" onerror="alert(2)"> '
    '<a href="data:text/html;base64,PHNjcmlwdD4=">data</a> <a href="/relative/page">rel</a>'
)


@pytest.fixture
def config(install: Path) -> Config:
    store = install.parent.parent / "articles"
    (store / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return load_config(install)


def published_files(output: Path) -> list[Path]:
    return sorted(p for p in output.rglob("*") if p.is_file())


def test_every_feed_parses_with_the_expected_entries(
    config: Config, classifier: Classifier, state: State
) -> None:
    result = run_cycle(config, classifier, state, now=T0)
    output = config.feeds.output_dir
    channels = channels_from(classifier)
    assert result.publish is not None
    assert len(channels) == 1 + 7 + len(classifier.taxonomy.topics)
    articles = state.articles()
    for channel in channels:
        expected = [a for a in articles if channel.includes(a)][: config.feeds.max_items]
        for fmt in ("rss", "atom"):
            parsed = feedparser.parse(output / f"{channel.path}.{fmt}")
            assert parsed.bozo == 0, (channel.path, fmt, parsed.get("bozo_exception"))
            assert [e.title for e in parsed.entries] == [a.title for a in expected]
            assert all(
                e.id.startswith("tag:news.example.org,2026:articles/") for e in parsed.entries
            )
        feed = json.loads((output / f"{channel.path}.json").read_bytes())
        assert feed["version"] == "https://jsonfeed.org/version/1.1"
        assert [item["title"] for item in feed["items"]] == [a.title for a in expected]
    assert (output / "index.html").is_file()
    assert len(list((output / "articles").glob("*.html"))) == 10


def test_feed_dates_are_distinct_and_come_from_items(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    atom = feedparser.parse(config.feeds.output_dir / "all.atom")
    updated = [e.updated for e in atom.entries]
    assert len(set(updated)) == len(updated)
    assert atom.feed.updated_parsed[:6] == T0.timetuple()[:6]
    rss = (config.feeds.output_dir / "all.rss").read_text()
    assert "<lastBuildDate>Mon, 02 Mar 2026 09:00:00 +0000</lastBuildDate>" in rss


def test_self_link_comes_before_alternate_and_links_are_absolute(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    rss = (config.feeds.output_dir / "europe.rss").read_text()
    assert '<atom:link href="https://news.example.org/feeds/europe.rss" rel="self"' in rss
    assert "<link>https://news.example.org/</link>" in rss
    for path in config.feeds.output_dir.rglob("*.atom"):
        tree = ElementTree.parse(path)
        for link in tree.iter("{http://www.w3.org/2005/Atom}link"):
            assert link.attrib["href"].startswith("https://news.example.org/")


def test_rebuild_without_change_is_byte_identical(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    output = config.feeds.output_dir
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in published_files(output)}
    again = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=5))
    assert again.publish is None  # nothing changed: nothing even rendered
    # A forced rebuild renders everything and still writes nothing.
    (output / "index.html").unlink()
    forced = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=10))
    assert forced.publish is not None
    assert forced.publish.written == ["index.html"]
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in published_files(output)}
    assert {p: v for p, v in after.items() if p.name != "index.html"} == {
        p: v for p, v in before.items() if p.name != "index.html"
    }
    assert after[output / "index.html"][0] == before[output / "index.html"][0]


def test_new_article_rewrites_only_its_channels(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    store = config.store.path
    write(
        store / "new.txt",
        "Kenya Launches Single Window\n\nKenya Launches Single Window\n\n"
        "The Kenya Revenue Authority launched a national single window.\n",
    )
    result = run_cycle(config, classifier, state, now=T0 + timedelta(hours=1))
    assert result.publish is not None
    feeds = sorted(
        p
        for p in result.publish.written
        if p.endswith((".rss", ".atom", ".json")) and not p.startswith("archive/")
    )
    assert feeds == sorted(
        f"{channel}.{fmt}"
        for channel in ("all", "east-southern-africa", "topics/single-window")
        for fmt in ("atom", "json", "rss")
    )
    # No archive page: each of these channels fits on one, so its feed holds all of it
    # (RFC 5005 fh:complete; tests/publish/test_archives.py has the channels that do not).
    assert not [p for p in result.publish.written if p.startswith("archive/")]
    assert b"<fh:complete/>" in (config.feeds.output_dir / "all.atom").read_bytes()
    assert "articles/kenya-launches-single-window.html" in result.publish.written
    assert result.publish.channels_rendered == 3


def test_removed_article_leaves_feeds_and_its_page_goes(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    sample = config.store.path / "sample.txt"
    text = sample.read_text()
    cut = text.index("WCO Shanghai Conference")
    sample.write_text(text[:cut])
    result = run_cycle(config, classifier, state, now=T0 + timedelta(hours=1))
    assert result.publish is not None
    page = "articles/wco-shanghai-conference-focuses-on-trade-facilitation-partnerships.html"
    assert page in result.publish.removed
    assert not (config.feeds.output_dir / page).exists()
    titles = [e.title for e in feedparser.parse(config.feeds.output_dir / "all.atom").entries]
    assert len(titles) == 9


def test_hostile_titles_and_bodies_are_published_safely(
    config: Config, classifier: Classifier, state: State
) -> None:
    write(
        config.store.path / "hostile.md",
        f"+++\ntitle = '''{HOSTILE_TITLE}'''\nregions = ['global']\n+++\n{HOSTILE_BODY}\n",
    )
    run_cycle(config, classifier, state, now=T0)
    output = config.feeds.output_dir
    for path in published_files(output):
        text = path.read_text(encoding="utf-8")
        decoded = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
        decoded = decoded.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        assert "<script" not in decoded.lower(), path
        assert "javascript:" not in decoded.lower(), path
        assert re.search(r"\bon(error|mouseover)\s*=", decoded, re.IGNORECASE) is None, path
        assert "data:text/html" not in decoded, path
        if path.suffix in {".rss", ".atom"}:
            assert feedparser.parse(path).bozo == 0, path
    entry = feedparser.parse(output / "global.atom").entries[0]
    assert entry.title == 'alert("t")Customs Update'
    assert 'href="https://news.example.org/relative/page"' in entry.content[0].value


def test_plain_title_and_body_html() -> None:
    assert plain_title("A <b>bold</b>\n title") == "A bold title"
    assert plain_title("R&amp;D &lt;script&gt;x&lt;/script&gt;") == "R&D x"
    article = Article(
        id="a",
        title="t",
        body="Line one\nline two.\n\nSecond <para>.",
        summary="",
        link="",
        author="",
        source="s",
        line=1,
        regions=(),
        topics=(),
        published=T0,
        updated=T0,
        first_seen=T0,
        content_hash="h",
    )
    assert body_html(article, "https://x.org/") == (
        "<p>Line one<br>\nline two.</p>\n<p>Second &lt;para&gt;.</p>"
    )


def _blank(data: str) -> str:
    """Volatile fields (the generator version) blanked for golden comparisons."""
    return re.sub(r'version="[^"]+"', 'version="X"', data)


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_golden_files(
    config: Config, classifier: Classifier, state: State, fmt: str, request: pytest.FixtureRequest
) -> None:
    run_cycle(config, classifier, state, now=T0)
    produced = _blank((config.feeds.output_dir / f"asia-pacific.{fmt}").read_text())
    golden = GOLDEN / f"asia-pacific.{fmt}"
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(produced, encoding="utf-8")
    assert produced == golden.read_text(encoding="utf-8")


def test_opml_and_index_list_every_feed(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    output = config.feeds.output_dir
    channels = channels_from(classifier)
    opml = ElementTree.parse(output / "feeds.opml").getroot()
    assert opml.attrib["version"] == "2.0"
    urls = [o.attrib["xmlUrl"] for o in opml.iter("outline") if "xmlUrl" in o.attrib]
    assert urls == [f"https://news.example.org/feeds/{c.path}.atom" for c in channels]
    index = (output / "index.html").read_text()
    for channel in channels:
        for fmt, kind in (("rss", "rss+xml"), ("atom", "atom+xml"), ("json", "feed+json")):
            assert (
                f'<link rel="alternate" type="application/{kind}"' in index
                and f'href="https://news.example.org/feeds/{channel.path}.{fmt}"' in index
            )
    assert "Colombia Adopts Mexican Expertise" in index
    assert "<script" not in index and "http://" not in index.replace("http://opml", "")


def test_json_feed_shape() -> None:
    site = Site(
        "S", "https://s.example/", "en", "d", 5, "s.example", "2026", hub="https://hub.example/"
    )
    article = Article(
        id="a",
        title="T",
        body="B",
        summary="S",
        link="https://elsewhere.example/a",
        author="Ann",
        source="s",
        line=1,
        regions=("europe",),
        topics=("aeo",),
        published=T0,
        updated=T0 + timedelta(hours=1),
        first_seen=T0,
        content_hash="h",
    )
    channels = channels_from(Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS))
    feed = json.loads(
        render_json(site, channels[0], [article], Names({"europe": "Europe"}, {"aeo": "AEO"}))
    )
    assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example/"}]
    (item,) = feed["items"]
    assert item == {
        "id": "tag:s.example,2026:articles/a",
        "url": "https://elsewhere.example/a",
        "title": "T",
        "content_html": "<p>B</p>",
        "date_published": "2026-03-02T09:00:00Z",
        "date_modified": "2026-03-02T10:00:00Z",
        "tags": ["Europe", "AEO"],
        "summary": "S",
        "authors": [{"name": "Ann"}],
    }


class _Hub(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, list[str]]]] = []
    status = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hub.received.append(parse_qs(self.rfile.read(length).decode()))
        self.send_response(_Hub.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    _Hub.received = []
    _Hub.status = 204
    server = HTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_websub_ping_and_retry(install: Path, classifier: Classifier, hub: str) -> None:
    text = install.read_text().replace("[feeds]\n", f'[feeds]\nwebsub_hub = "{hub}"\n')
    install.write_text(text)
    config = load_config(install)
    write(config.store.path / "a.txt", "Kenya Story\n\nKenya Story\n\nKenya news.\n")
    state = State.open(config.state.url)
    try:
        _Hub.status = 503
        failed = run_cycle(config, classifier, state, now=T0).websub_failed
        assert failed  # the hub refused: kept for the next cycle
        assert 'rel="hub"' in (config.feeds.output_dir / "all.atom").read_text()
        _Hub.status = 204
        _Hub.received = []
        result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=5))
        assert result.publish is None
        assert result.websub_failed == []
        pinged = sorted(r["hub.url"][0] for r in _Hub.received)
        assert pinged == sorted(failed)
        assert all(r["hub.mode"] == ["publish"] for r in _Hub.received)
        assert f"{config.site.base_url}feeds/all.atom" in pinged
    finally:
        state.close()


def test_lost_pages_come_back_on_a_forced_rebuild(
    config: Config, classifier: Classifier, state: State
) -> None:
    run_cycle(config, classifier, state, now=T0)
    output = config.feeds.output_dir
    page = next((output / "articles").iterdir())
    page.unlink()
    (output / "index.html").unlink()  # what an operator wiping the output would do
    result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=5))
    assert result.publish is not None
    assert sorted(result.publish.written) == sorted(["index.html", f"articles/{page.name}"])
    assert page.is_file()
