"""HTTP abuse against the real server on a free port, with raw sockets where clients would
refuse to send such bytes.

``tests/test_web.py`` proves the common traversal encodings, symlinks leading out, a NUL
and one oversized header; here are the rarer encodings, symlinked directories, requests
oversized in every part, hundreds of idle and half-sent connections, and unsubscribe
tokens forged, replayed and fetched with GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.mail import roster
from syndicator.mail.unsubscribe import UnsubscribeDesk, load_secret, make_token
from syndicator.metrics import Metrics
from syndicator.pipeline import run_cycle
from syndicator.state.db import State, messages_table
from syndicator.web import app as web
from syndicator.web.app import Health, create_app, serve
from tests.conftest import T0
from tests.faults.helpers import immediate, with_sample_store

pytestmark = pytest.mark.faults

SECRET = b"SECRET outside the output directory"


async def exchange(port: int, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes; the status code (0 if the server hung up without one) and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


async def first_reply(port: int, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes (the server may stop reading them); the status of its first reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except asyncio.IncompleteReadError as exc:
        response = exc.partial
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    parts = response.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), response


def get_request(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


@pytest.fixture
async def server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[int, Path]]:
    monkeypatch.setattr(web, "KEEPALIVE_TIMEOUT", 1.0)  # the bound, shortened to wait less
    output = tmp_path / "site" / "feeds"
    (output / "topics").mkdir(parents=True)
    (output / "articles").mkdir()
    (output / "americas.rss").write_bytes(b"<rss/>")
    (output / "index.html").write_bytes(b"<!doctype html><title>feeds</title>")
    outside = tmp_path / "outside"
    (outside / "topics").mkdir(parents=True)
    for name in ("secret.rss", "secret.html", "secret.atom", "topics/secret.rss"):
        (outside / name).write_bytes(SECRET)
    (tmp_path / "site" / "secret.rss").write_bytes(SECRET)
    (output / "articles" / "passwd.html").symlink_to("/etc/passwd")
    (output / "articles" / "away.html").symlink_to(outside / "secret.html")
    (output / "elsewhere").symlink_to(outside / "topics")
    (output / "hop.rss").symlink_to(output / "hop2.rss")
    (output / "hop2.rss").symlink_to(outside / "secret.rss")
    app = create_app(output_dir=output, health=Health(60), metrics=Metrics(), clock=lambda: T0)
    runner = await serve(app, "127.0.0.1", 0)
    try:
        yield runner.addresses[0][1], output
    finally:
        await runner.cleanup()


TRAVERSALS = [
    "/feeds/%c0%ae%c0%ae/secret.rss",  # overlong UTF-8 dots
    "/feeds/%c0%ae%c0%ae%c0%afsecret.rss",
    "/feeds/%e0%80%ae%e0%80%ae/secret.rss",
    "/feeds/%ef%bc%8e%ef%bc%8e/secret.rss",  # fullwidth dots
    "/feeds/%u002e%u002e/secret.rss",
    "/feeds/%25%32%65%25%32%65/secret.rss",  # double-encoded, digit by digit
    "/feeds/%252e%252e%255csecret.rss",
    "/feeds/..%255csecret.rss",
    "/feeds/..;/secret.rss",
    "/feeds/.%2e/secret.rss",
    "/feeds/%2e./secret.rss",
    "/feeds/....//secret.rss",
    "/feeds/..././secret.rss",
    "/feeds/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/feeds/..%c0%afsecret.rss",
    "/feeds/..%c1%9csecret.rss",
    "/feeds/%00../secret.rss",
    "/feeds/americas.rss%00",
    "/feeds/americas.rss%0a",
    "/feeds/americas.rss%20",
    "/feeds/americas.rss::$DATA",
    "/feeds/AMERICAS.RSS/..%2f..%2fsecret.rss",
    "/feeds/topics/..%2F..%2Fsecret.rss",
    "/feeds/file:%2f%2f%2fetc%2fpasswd",
    "/feeds/\\..\\secret.rss",
    "/articles/passwd.html",
    "/articles/away.html",
    "/articles/..%2f..%2fsecret.rss",
    "/feeds/elsewhere/secret.rss",
    "/feeds/hop.rss",
    "/feeds/" + "a/" * 50 + "secret.rss",
    "/feeds/" + "x" * 300 + ".rss",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_in_rare_encodings_and_symlinked_dirs_is_404(
    server: tuple[int, Path], target: str
) -> None:
    port, _ = server
    status, body = await exchange(port, get_request(target))
    assert status in {400, 404}, (target, status)
    assert SECRET not in body and b"root:" not in body


async def test_oversized_requests_are_refused_and_the_server_carries_on(
    server: tuple[int, Path],
) -> None:
    port, _ = server
    # A body announced on a GET is never read: the file is served and the rest ignored.
    status, _ = await first_reply(
        port, b"GET /feeds/americas.rss HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
    )
    assert status == 200
    oversized = [
        get_request("/feeds/" + "a" * 100_000 + ".rss"),
        get_request("/feeds/americas.rss", "Cookie: " + "c" * 100_000),
        get_request("/feeds/americas.rss", *(f"X-H{n}: {n}" for n in range(2_000))),
        get_request("/feeds/americas.rss", "X-Folded: a\r\n " + "b" * 50_000),
        b"POST /unsubscribe/1.AAAAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\n"
        + b"a"
        * 1_000_000,
    ]
    for request in oversized:
        status, body = await first_reply(port, request)
        assert status in {0, 400, 404, 405, 413, 431}, (request[:60], status)
        assert b"<rss/>" not in body
    status, body = await exchange(port, get_request("/feeds/americas.rss"))
    assert (status, body) == (200, b"<rss/>")


async def test_hundreds_of_idle_connections_are_bounded_and_others_still_served(
    server: tuple[int, Path],
) -> None:
    port, _ = server
    # Client and server ends share this process: make room for both.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 and (hard == resource.RLIM_INFINITY or hard >= 2048):
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    idle = await asyncio.to_thread(open_idle, port, 400)  # the server's loop keeps accepting
    try:
        started = time.monotonic()
        status, body = await exchange(port, get_request("/feeds/americas.rss"), timeout=10)
        assert (status, body) == (200, b"<rss/>")
        assert time.monotonic() - started < 5  # answered while 400 others hang on
        # The server closes idle and half-sent connections after its keep-alive timeout.
        deadline = time.monotonic() + 15
        open_ones = list(idle)
        while open_ones and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            open_ones = [sock for sock in open_ones if not closed_by_peer(sock)]
        assert open_ones == [], f"{len(open_ones)} idle connections still open"
    finally:
        for sock in idle:
            sock.close()


def open_idle(port: int, count: int) -> list[socket.socket]:
    idle = []
    for number in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if number % 2:  # half of them start a request and never finish it
            sock.sendall(b"GET /feeds/americas.rss HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.setblocking(False)
        idle.append(sock)
    return idle


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# --- unsubscribe tokens ------------------------------------------------------------------


async def test_forged_replayed_and_fetched_unsubscribe_tokens(
    install: Path, classifier: Classifier
) -> None:
    (install.parent / "subscribers.toml").write_text(
        immediate(["desk@example.org", "peer@example.org"])
    )
    with_sample_store(install)
    config = load_config(install)
    state = State.open(config.state.url)
    try:
        run_cycle(config, classifier, state, now=T0)
        with state.engine.connect() as conn:
            desk = roster.find_subscriber(conn, "desk@example.org")
            peer = roster.find_subscriber(conn, "peer@example.org")
        assert desk is not None and peer is not None
        secret = load_secret(state, None)
        token = make_token(secret, desk.id, desk.email)
        signature = token.split(".")[1]
        app = create_app(
            output_dir=config.feeds.output_dir,
            health=Health(60),
            metrics=Metrics(),
            clock=lambda: T0,
            unsubscribe=UnsubscribeDesk(state, secret, lambda: T0),
        )
        runner = await serve(app, "127.0.0.1", 0)
        port = runner.addresses[0][1]
        try:
            forged = [
                make_token(b"another secret of 32 bytes......", desk.id, desk.email),
                f"{peer.id}.{signature}",  # desk's signature on peer's id
                make_token(secret, peer.id, "someone@example.org"),
                f"{desk.id}.{signature.lower()}",
                f"0{desk.id}.{signature}",
                f"{desk.id}.{signature}=",
                f"{desk.id}.{signature[:-1]}",
                f"{desk.id + 1000}.{signature}",
                "-1." + signature,
                "99999999999999999999." + signature,
                "..%2f..%2fetc%2fpasswd",
                "%00",
                "é" * 40,
                "A" * 4000,
            ]
            for bad in forged:
                target = "/unsubscribe/" + urllib.parse.quote(bad, safe="%")
                status, _ = await exchange(port, post_request(target))
                assert status in {400, 404}, (bad, status)
            # GET and HEAD, however often (mail scanners follow links), never unsubscribe.
            for _ in range(3):
                status, body = await exchange(port, get_request(f"/unsubscribe/{token}"))
                assert status == 200 and b'<form method="post">' in body
                head = get_request(f"/unsubscribe/{token}").replace(b"GET ", b"HEAD ", 1)
                status, _ = await exchange(port, head)
                assert status == 200
            assert statuses(state) == {"desk@example.org": "active", "peer@example.org": "active"}
            # The real POST unsubscribes; replaying it changes nothing more, for anyone.
            for _ in range(3):
                status, body = await exchange(port, post_request(f"/unsubscribe/{token}"))
                assert status == 200 and b"will receive no more mail" in body
            assert statuses(state) == {
                "desk@example.org": "unsubscribed",
                "peer@example.org": "active",
            }
            with state.engine.connect() as conn:
                assert list(conn.execute(select(messages_table))) == []
        finally:
            await runner.cleanup()
    finally:
        state.close()


def post_request(target: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("utf-8") + body


def statuses(state: State) -> dict[str, str]:
    with state.engine.connect() as conn:
        return {record.email: record.status for record in roster.list_subscribers(conn)}
