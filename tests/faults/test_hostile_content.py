"""Hostile titles and bodies through the whole pipeline: store, feeds and pages, mail.

Each hostile article is still published, made safe: feeds stay well-formed with no active
content, and mail gets no injected header and no extra envelope recipient.
``tests/test_feeds.py`` and ``tests/test_compose.py`` prove the renderers one at a time;
here one cycle carries them all, and every output is parsed the way its reader would.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state.db import State
from tests.conftest import T0
from tests.faults.helpers import add_article, immediate, use_smtp, with_sample_store
from tests.smtp_sink import Sink

pytestmark = pytest.mark.faults

DESK, OTHER = "desk@example.org", "other@example.org"

TITLES = {
    "script": "<script>alert(1)</script> Chile Customs",
    "handler": '<img src=x onerror="alert(1)"> Peru Customs',
    "crlf": "Chile Customs\r\nBcc: evil@example.org",
    "lf": "Peru Customs\nTo: evil@example.org",
    "cr": "Mexico Customs\rCc: evil@example.org",
    "ls": "Brazil Customs\u2028Cc: evil@example.org",
    "nul": "Chile Customs\u0000Bcc: evil@example.org",
    "encoded": "=?UTF-8?Q?=0A?=Bcc: evil@example.org Chile Customs",
    "encoded2": "Chile =?utf-8?b?Cg==?=Bcc: evil@example.org",
    "long": "Chile Customs " + "Modernisation " * 715,  # over 10,000 characters
}
BODY = """Customs of Chile met.

<script>alert("body")</script>
<img src="x.png" onerror="alert(2)" onload="alert(3)">
<a href="javascript:alert(4)">one</a> <a href="JaVaScRiPt:alert(5)">two</a>
<a href="&#106;avascript:alert(6)">three</a> <a href=" javascript:alert(7)">four</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCg4KTwvc2NyaXB0Pg==">five</a>
<iframe src="data:text/html,<script>alert(9)</script>"></iframe>
<svg onload="alert(10)"><circle r="1"/></svg>
<form action="javascript:alert(11)"><button formaction="javascript:x">go</button></form>
<p style="background:url(javascript:alert(12))" onmouseover="alert(13)">styled</p>

[markdown link](javascript:alert(14)) and [data link](data:text/html,x) and
![image](javascript:alert(15))
"""


class ActiveContent(HTMLParser):
    """Collects what a browser could run: script-like elements, on* attributes, and
    javascript: or data: URLs (attribute values arrive with entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "iframe", "object", "embed", "svg", "form", "base"}:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            text = "".join((value or "").split()).lower()
            if text.startswith(("javascript:", "data:", "vbscript:")) or "javascript:" in text:
                self.found.append(f"{tag} {name}={value}")


def active_content(html: str) -> list[str]:
    parser = ActiveContent()
    parser.feed(html)
    parser.close()
    return parser.found


def html_fragments(path: Path) -> list[str]:
    """The HTML a reader renders from a published file."""
    data = path.read_bytes()
    if path.suffix == ".json":
        feed = json.loads(data)
        return [item.get("content_html", "") for item in feed["items"]]
    if path.suffix == ".html":
        return [data.decode("utf-8")]
    root = ET.fromstring(data)  # well-formed, or this raises
    texts = []
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in {"description", "content", "summary", "encoded"} and element.text:
            texts.append(element.text)
    return texts


def test_hostile_titles_and_bodies_end_to_end(install: Path, classifier: Classifier) -> None:
    with Sink() as sink:
        subscribers = immediate([DESK], regions='["americas"]') + immediate([OTHER])
        config = load_config(use_smtp(install, sink.port, subscribers))
        store = with_sample_store(install)
        state = State.open(config.state.url)
        try:
            run_cycle(config, classifier, state, now=T0)
            for key, title in TITLES.items():
                (store / f"{key}.md").write_text(
                    f'+++\nid = "hostile-{key}"\ntitle = {json.dumps(title)}\n'
                    f'regions = ["americas"]\n+++\n{BODY}',
                    encoding="utf-8",
                )
            add_article(store, "plain.txt", "Chile Launches AEO Programme", "Chile's customs.")
            run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
            asyncio.run(deliver_due(config, state, clock=lambda: T0 + timedelta(minutes=1)))
        finally:
            state.close()
        received = sink.received
    output = config.feeds.output_dir
    # Every article is published, under its own id, with its page.
    atom = (output / "americas.atom").read_text(encoding="utf-8")
    for key in TITLES:
        assert f"articles/hostile-{key}<" in atom, key
        assert (output / "articles" / f"hostile-{key}.html").is_file()
    files = [
        path
        for path in output.rglob("*")
        if path.suffix in {".rss", ".atom", ".json", ".html", ".opml"}
    ]
    assert len(files) > 100
    for path in files:
        if path.suffix == ".opml":
            ET.fromstring(path.read_bytes())
            continue
        for fragment in html_fragments(path):
            # The index page's own form (a GET building a filter feed URL) is the site's;
            # anything more there, or any active content elsewhere, came from an article.
            own = ["<form>"] if path == output / "index.html" else []
            assert active_content(fragment) == own, path
            assert "\x00" not in fragment
    index = (output / "index.html").read_text(encoding="utf-8")
    assert index.count("<form ") == 1
    assert (
        '<form class="filter" method="get" action="https://news.example.org/feeds/filter.atom">'
        in index
    )
    for key in TITLES:
        page = (output / "articles" / f"hostile-{key}.html").read_text(encoding="utf-8")
        assert "Customs" in page and "styled" in page  # made safe, not dropped
    # Mail: one message each, to exactly its subscriber, with exactly the expected headers.
    assert sorted(tuple(r.recipients) for r in received) == [(DESK,), (OTHER,)]
    for item in received:
        message = item.message
        assert sorted(message.keys()) == sorted(EXPECTED_HEADERS), message.keys()
        assert message["To"].addresses[0].addr_spec == item.recipients[0]
        for name in ("Bcc", "Cc", "Reply-To"):
            assert message[name] is None
        subject = str(message["Subject"])
        assert not set(subject) & {"\r", "\n", "\u2028", "\x00"}
        assert_no_active_html(message)
        raw_headers = item.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        assert "evil@example.org" not in raw_headers.replace("\r\n ", " ").split("Subject:")[0]


EXPECTED_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]


def assert_no_active_html(message: EmailMessage) -> None:
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert active_content(html.get_content()) == []
