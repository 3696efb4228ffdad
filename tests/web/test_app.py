"""The HTTP server, over real HTTP: files, validators, gzip, traversal, health and metrics."""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from syndicator.errors import SyndicatorError
from syndicator.metrics import Metrics
from syndicator.web.app import (
    Health,
    HttpServerError,
    accepts_gzip,
    create_app,
    etag_matches,
    public_parts,
    serve,
)
from tests.conftest import T0, Clock

INTERVAL = 300.0
SECRET = b"the secret outside output_dir\n"
# Long enough for gzip to be worth it and to tell a compressed body from the original.
ATOM = b'<?xml version="1.0" encoding="utf-8"?>\n<feed>' + b"<entry/>" * 200 + b"</feed>\n"

FILES = {
    "index.html": (b"<!doctype html><title>feeds</title>", "text/html; charset=utf-8"),
    "americas.atom": (ATOM, "application/atom+xml; charset=utf-8"),
    "americas.rss": (b"<rss/>", "application/rss+xml; charset=utf-8"),
    "americas.json": (b"{}", "application/feed+json; charset=utf-8"),
    "feeds.opml": (b"<opml/>", "text/x-opml; charset=utf-8"),
    "sitemap.xml": (b"<urlset/>", "application/xml; charset=utf-8"),
    "topics/aeo.rss": (b"<rss>aeo</rss>", "application/rss+xml; charset=utf-8"),
}


@dataclass
class Site:
    base: URL
    port: int
    output_dir: Path
    health: Health
    metrics: Metrics
    clock: Clock
    session: aiohttp.ClientSession

    def url(self, raw_path: str) -> URL:
        """The URL of ``raw_path`` exactly as written: no normalising, no re-encoding."""
        return URL(f"{self.base}{raw_path}", encoded=True)


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    published = tmp_path / "site" / "feeds"
    for name, (content, _) in FILES.items():
        (published / name).parent.mkdir(parents=True, exist_ok=True)
        (published / name).write_bytes(content)
    (published / "articles").mkdir()
    (published / "articles" / "kra-egms-2024.html").write_bytes(b"<p>KRA</p>")
    (published / "articles" / "notes.rss").write_bytes(b"<rss/>")
    (published / "index.rss").symlink_to(published / "americas.rss")  # stays inside
    (published / "notes.txt").write_bytes(b"not a feed")
    (published / "folder.rss").mkdir()
    (tmp_path / "site" / "secret.txt").write_bytes(SECRET)
    (tmp_path / "site" / "secret.rss").write_bytes(SECRET)
    (published / "leak.rss").symlink_to(tmp_path / "site" / "secret.rss")
    (published / "topics" / "leak.html").symlink_to(tmp_path / "site" / "secret.txt")
    (published / "escape").symlink_to(tmp_path / "site")
    return published


@pytest.fixture
async def site(output_dir: Path) -> AsyncIterator[Site]:
    health = Health(interval=INTERVAL)
    metrics = Metrics()
    clock = Clock(T0)
    app = create_app(output_dir=output_dir, health=health, metrics=metrics, clock=clock)
    runner = await serve(app, "127.0.0.1", 0)
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield Site(
                URL(f"http://127.0.0.1:{port}"), port, output_dir, health, metrics, clock, session
            )
    finally:
        await runner.cleanup()


async def raw_request(port: int, request_line: str, *headers: str) -> tuple[int, bytes]:
    """Send bytes the client libraries would refuse or normalise; the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [request_line, "Host: 127.0.0.1", "Connection: close", *headers, "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- serving files -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [(n, ct) for n, (_, ct) in FILES.items()])
async def test_each_feed_type_is_served_with_its_content_type(
    site: Site, name: str, expected: str
) -> None:
    async with site.session.get(
        site.url(f"/feeds/{name}"), headers={"Accept-Encoding": "identity"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == expected
        assert response.headers["Cache-Control"] == "public, max-age=60"
        assert await response.read() == FILES[name][0]


async def test_root_and_articles_serve_html(site: Site) -> None:
    async with site.session.get(site.url("/")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert gzip.decompress(await response.read()) == FILES["index.html"][0]
    async with site.session.get(
        site.url("/articles/kra-egms-2024.html"), headers={"Accept-Encoding": "identity"}
    ) as response:
        assert response.status == 200
        assert await response.read() == b"<p>KRA</p>"


async def test_validators_are_present_and_describe_the_file(site: Site) -> None:
    mtime = T0.timestamp() + 0.75
    os.utime(site.output_dir / "americas.atom", (mtime, mtime))
    async with site.session.get(
        site.url("/feeds/americas.atom"), headers={"Accept-Encoding": "identity"}
    ) as response:
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')
        assert not etag.startswith("W/")
        assert response.headers["Last-Modified"] == "Mon, 02 Mar 2026 09:00:00 GMT"


async def test_if_none_match_gives_304_without_body(site: Site) -> None:
    url = site.url("/feeds/americas.atom")
    async with site.session.get(url) as response:
        etag = response.headers["ETag"]
        last_modified = response.headers["Last-Modified"]
    for if_none_match in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        async with site.session.get(url, headers={"If-None-Match": if_none_match}) as response:
            assert response.status == 304, if_none_match
            assert await response.read() == b""
            assert response.headers["ETag"] == etag
            assert response.headers["Last-Modified"] == last_modified
            assert response.headers["Cache-Control"] == "public, max-age=60"
    async with site.session.get(url, headers={"If-None-Match": '"nope"'}) as response:
        assert response.status == 200


async def test_if_modified_since_gives_304_unless_the_file_is_newer(site: Site) -> None:
    path = site.output_dir / "americas.rss"
    os.utime(path, (T0.timestamp() + 0.5, T0.timestamp() + 0.5))
    url = site.url("/feeds/americas.rss")
    for since in (T0, T0 + timedelta(hours=1)):
        headers = {"If-Modified-Since": format_datetime(since, usegmt=True)}
        async with site.session.get(url, headers=headers) as response:
            assert response.status == 304
    earlier = {"If-Modified-Since": format_datetime(T0 - timedelta(seconds=1), usegmt=True)}
    async with site.session.get(url, headers=earlier) as response:
        assert response.status == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.1.3).
    both = {"If-None-Match": '"other"', "If-Modified-Since": format_datetime(T0, usegmt=True)}
    async with site.session.get(url, headers=both) as response:
        assert response.status == 200
    async with site.session.get(url, headers={"If-Modified-Since": "garbage"}) as response:
        assert response.status == 200


async def test_a_republished_file_is_served_fresh(site: Site) -> None:
    path = site.output_dir / "americas.atom"
    url = site.url("/feeds/americas.atom")
    async with site.session.get(url) as response:
        old_etag = response.headers["ETag"]
        last_modified = response.headers["Last-Modified"]
        assert gzip.decompress(await response.read()) == ATOM
    new_content = ATOM.replace(b"<entry/>", b"<entry>new</entry>", 1)
    staged = path.with_name(".americas.atom.tmp")
    staged.write_bytes(new_content)
    later = path.stat().st_mtime + 10
    os.utime(staged, (later, later))
    staged.replace(path)
    headers = {"If-None-Match": old_etag}
    async with site.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["ETag"] != old_etag
        assert gzip.decompress(await response.read()) == new_content  # not the cached body
    async with site.session.get(url, headers={"If-Modified-Since": last_modified}) as response:
        assert response.status == 200


async def test_gzip_when_accepted(site: Site) -> None:
    url = site.url("/feeds/americas.atom")
    async with site.session.get(url, headers={"Accept-Encoding": "br;q=1, gzip;q=0.5"}) as first:
        assert first.headers["Content-Encoding"] == "gzip"
        assert first.headers["Vary"] == "Accept-Encoding"
        body = await first.read()
        assert len(body) < len(ATOM)
        assert gzip.decompress(body) == ATOM
    async with site.session.get(url, headers={"Accept-Encoding": "gzip"}) as second:
        assert await second.read() == body
        assert second.headers["ETag"] == first.headers["ETag"]


@pytest.mark.parametrize("accept_encoding", ["identity", "gzip;q=0", "br", "*;q=0", "gzip;q=0, *"])
async def test_identity_unless_gzip_is_accepted(site: Site, accept_encoding: str) -> None:
    async with site.session.get(
        site.url("/feeds/americas.atom"), headers={"Accept-Encoding": accept_encoding}
    ) as response:
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        assert response.headers["Vary"] == "Accept-Encoding"
        assert await response.read() == ATOM


async def test_gzip_and_identity_have_different_etags(site: Site) -> None:
    url = site.url("/feeds/americas.atom")
    async with site.session.get(url, headers={"Accept-Encoding": "gzip"}) as compressed:
        gzip_etag = compressed.headers["ETag"]
    async with site.session.get(url, headers={"Accept-Encoding": "identity"}) as plain:
        assert plain.headers["ETag"] != gzip_etag
    headers = {"Accept-Encoding": "identity", "If-None-Match": gzip_etag}
    async with site.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert await response.read() == ATOM


@pytest.mark.parametrize("accept_encoding", ["gzip", "identity"])
async def test_head_has_the_headers_of_get_and_no_body(site: Site, accept_encoding: str) -> None:
    url = site.url("/feeds/americas.atom")
    headers = {"Accept-Encoding": accept_encoding}
    async with site.session.get(url, headers=headers) as get:
        body = await get.read()
        expected = {name: get.headers[name] for name in ("ETag", "Last-Modified", "Content-Type")}
    async with site.session.head(url, headers=headers) as head:
        assert head.status == 200
        assert {name: head.headers[name] for name in expected} == expected
        assert head.headers["Content-Length"] == str(len(body))
        assert head.headers.get("Content-Encoding") == get.headers.get("Content-Encoding")
        assert await head.read() == b""


# --- what is not served ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_path",
    [
        "/feeds/../secret.txt",
        "/feeds/../secret.rss",
        "/feeds/%2e%2e/secret.txt",
        "/feeds/%2e%2e/secret.rss",
        "/feeds/%2E%2E%2Fsecret.txt",
        "/feeds/%2E%2E%2Fsecret.rss",
        "/feeds/..%2fsecret.txt",
        "/feeds/..%2fsecret.rss",
        "/feeds/%252e%252e/secret.rss",
        "/feeds/%252e%252e%252fsecret.rss",
        "/feeds//etc/passwd",
        "/feeds/%2Fetc%2Fpasswd",
        "/feeds/..\\secret.rss",
        "/feeds/..%5csecret.rss",
        "/feeds/americas.rss%00.html",
        "/feeds/%00",
        "/feeds/leak.rss",
        "/feeds/topics/leak.html",
        "/feeds/escape/secret.rss",
        "/feeds/topics/../../secret.rss",
        "/feeds/./americas.rss",
        "/feeds/.americas.atom.tmp",
        "/articles/..%2fsecret.rss",
        "/articles/%2e%2e%2Ffeeds%2Famericas.rss",
        "/feeds/",
        "/feeds",
    ],
)
async def test_paths_outside_output_dir_are_404(site: Site, raw_path: str) -> None:
    (site.output_dir / ".americas.atom.tmp").write_bytes(b"half written")
    status, body = await raw_request(site.port, f"GET {raw_path} HTTP/1.1")
    assert status == 404
    assert b"secret" not in body
    assert b"half written" not in body
    async with site.session.get(site.url(raw_path)) as response:  # the same through a client
        assert response.status == 404


async def test_absolute_form_request_target_is_confined_too(site: Site) -> None:
    status, body = await raw_request(site.port, "GET http://evil/feeds/../secret.rss HTTP/1.1")
    assert status == 404
    assert b"secret" not in body
    status, _ = await raw_request(site.port, "GET http://evil/feeds/americas.rss HTTP/1.1")
    assert status == 200


async def test_a_symlink_that_stays_inside_is_served(site: Site) -> None:
    async with site.session.get(site.url("/feeds/index.rss")) as response:
        assert response.status == 200


async def test_a_literal_nul_or_oversized_header_is_a_client_error(site: Site) -> None:
    status, body = await raw_request(site.port, "GET /feeds/americas.rss\x00.html HTTP/1.1")
    assert status == 400  # refused by aiohttp's parser before routing
    assert b"<rss/>" not in body
    status, _ = await raw_request(
        site.port, "GET /feeds/americas.rss HTTP/1.1", "X-Padding: " + "a" * 20_000
    )
    assert status in {400, 431}
    async with site.session.get(site.url("/feeds/americas.rss")) as response:
        assert response.status == 200  # and the server carries on


@pytest.mark.parametrize(
    "raw_path",
    [
        "/feeds/notes.txt",
        "/feeds/folder.rss",
        "/feeds/missing.rss",
        "/feeds/americas",
        "/articles/notes.rss",
        "/articles/missing.html",
        "/articles/",
        "/secret.txt",
        "/index.html",
        "/feeds/americas.rss/",
    ],
)
async def test_unknown_types_missing_files_and_other_paths_are_404(
    site: Site, raw_path: str
) -> None:
    async with site.session.get(site.url(raw_path)) as response:
        assert response.status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_files_are_405(site: Site, method: str) -> None:
    for raw_path in ("/feeds/americas.rss", "/", "/articles/kra-egms-2024.html"):
        async with site.session.request(method, site.url(raw_path), data=b"x") as response:
            assert response.status == 405
            assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}


# --- health --------------------------------------------------------------------------------


async def healthz(site: Site) -> tuple[int, dict[str, object]]:
    async with site.session.get(site.url("/healthz")) as response:
        assert response.headers["Cache-Control"] == "no-store"
        body: dict[str, object] = await response.json()
        return response.status, body


async def test_healthz_reports_starting_ok_failing_and_stale(site: Site) -> None:
    status, body = await healthz(site)
    assert (status, body["status"]) == (503, "starting")
    assert body["last_cycle"] is None
    assert body["last_success"] is None

    site.health.record(True, T0, articles=42)
    status, body = await healthz(site)
    assert (status, body) == (
        200,
        {
            "status": "ok",
            "last_cycle": "2026-03-02T09:00:00+00:00",
            "last_success": "2026-03-02T09:00:00+00:00",
            "error": "",
            "articles": 42,
        },
    )

    site.clock.now = T0 + timedelta(seconds=3 * INTERVAL)
    status, body = await healthz(site)
    assert (status, body["status"]) == (200, "ok")
    site.clock.now = T0 + timedelta(seconds=3 * INTERVAL + 1)
    status, body = await healthz(site)
    assert (status, body["status"]) == (503, "stale")

    failed_at = T0 + timedelta(seconds=INTERVAL)
    site.health.record(False, failed_at, articles=42, error="database is locked")
    status, body = await healthz(site)
    assert (status, body["status"], body["error"]) == (503, "failing", "database is locked")
    assert body["last_cycle"] == failed_at.isoformat()
    assert body["last_success"] == T0.isoformat()

    recovered_at = site.clock.now
    site.health.record(True, recovered_at, articles=43)
    status, body = await healthz(site)
    assert (status, body["status"], body["error"], body["articles"]) == (200, "ok", "", 43)


def test_health_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Health(interval=1).record(True, datetime(2026, 3, 2), articles=0)


# --- metrics -------------------------------------------------------------------------------


async def scrape(site: Site) -> dict[str, float]:
    async with site.session.get(site.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_reflect_recorded_cycles(site: Site) -> None:
    before = await scrape(site)
    assert before["syndicator_cycles_total|outcome=ok"] == 0
    assert before["syndicator_cycles_total|outcome=failed"] == 0
    assert before["syndicator_mails_total|outcome=retry"] == 0

    site.metrics.record_cycle(ok=True, duration=1.5, articles=120, feeds_written=9, finished_at=T0)
    site.metrics.record_cycle(
        ok=False, duration=0.2, articles=120, feeds_written=0, finished_at=T0 + timedelta(1)
    )
    site.metrics.record_mail("sent", 3)
    site.metrics.set_outbox({"pending": 2, "failed": 1})
    site.metrics.set_outbox({"failed": 1})
    after = await scrape(site)
    assert after["syndicator_cycles_total|outcome=ok"] == 1
    assert after["syndicator_cycles_total|outcome=failed"] == 1
    assert after["syndicator_cycle_duration_seconds_count"] == 2
    assert after["syndicator_cycle_duration_seconds_sum"] == pytest.approx(1.7)
    assert after["syndicator_articles"] == 120
    assert after["syndicator_feeds_written_total"] == 9
    assert after["syndicator_last_cycle_success_timestamp_seconds"] == T0.timestamp()
    assert after["syndicator_mails_total|outcome=sent"] == 3
    assert after["syndicator_outbox_messages|status=pending"] == 0
    assert after["syndicator_outbox_messages|status=failed"] == 1


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the default registry would refuse the second
    first.record_cycle(ok=True, duration=1, articles=1, feeds_written=1, finished_at=T0)
    assert b'syndicator_cycles_total{outcome="ok"} 1.0' in first.render()[0]
    assert b'syndicator_cycles_total{outcome="ok"} 0.0' in second.render()[0]


# --- serving -------------------------------------------------------------------------------


async def test_serve_reports_an_address_in_use(output_dir: Path) -> None:
    app = create_app(
        output_dir=output_dir, health=Health(interval=1), metrics=Metrics(), clock=Clock(T0)
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HttpServerError, match=f"127.0.0.1:{port}") as caught:
            await serve(app, "127.0.0.1", port)
    assert isinstance(caught.value, SyndicatorError)
    assert "http.listen" in str(caught.value)


# --- the pure parts ------------------------------------------------------------------------


def test_public_parts_decodes_one_segment_at_a_time() -> None:
    assert public_parts("/feeds/topics/aeo.rss", "feeds") == ("topics", "aeo.rss")
    assert public_parts("/feeds/a%2Db.rss", "feeds") == ("a-b.rss",)
    assert public_parts("/feeds/a%2Fb.rss", "feeds") is None
    assert public_parts("/articles/x.html", "feeds") is None
    assert public_parts("/feeds/" + "a/" * 20 + "x.rss", "feeds") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.1", True),
        ("x-gzip", True),
        ("*", True),
        ("", False),
        ("identity", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, *;q=1", False),
        ("gzip;q=bogus", False),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [('"a"', True), ('W/"a"', True), ('"b", W/"a"', True), ("*", True), ('"b"', False)],
)
def test_etag_matches(header: str, expected: bool) -> None:
    assert etag_matches(header, '"a"') is expected
