"""The service as a real subprocess: it cycles, publishes and serves HTTP until SIGTERM or
SIGINT (twice: without waiting for the work in flight)."""

from __future__ import annotations

import concurrent.futures
import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_STORE, write
from tests.faults.helpers import (
    ENV,
    add_article,
    command,
    immediate,
    run,
    use_smtp,
    with_sample_store,
)
from tests.smtp_sink import Sink, free_port


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def wait_healthy(
    base: str, process: subprocess.Popen[str], timeout: float = 30
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            status, _, body = get(f"{base}healthz")
        except OSError:
            time.sleep(0.1)
            continue
        if status == 200:
            health: dict[str, object] = json.loads(body)
            return health
        time.sleep(0.1)
    raise AssertionError("service never became healthy")


def test_run_serves_feeds_and_stops_on_sigterm(install: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    config = install.read_text().replace(
        'base_url = "https://news.example.org/"', f'base_url = "{base}"'
    )
    install.write_text(config + f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
    store = install.parent.parent / "articles"
    (store / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    process = subprocess.Popen(
        [sys.executable, "-m", "syndicator", "--config", str(install), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        health = wait_healthy(base, process)
        assert health["status"] == "ok"
        assert health["articles"] == 10
        status, headers, body = get(f"{base}feeds/all.atom")
        assert status == 200
        assert headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert b"Colombia Adopts Mexican Expertise" in body
        status, _, _ = get(f"{base}feeds/all.atom", {"If-None-Match": headers["etag"]})
        assert status == 304
        status, _, index = get(base)
        assert status == 200
        assert b'rel="alternate" type="application/rss+xml"' in index
        colombia = "colombia-adopts-mexican-expertise-to-modernize-customs-risk-management"
        page = f"{base}articles/{colombia}.html"
        assert get(page)[0] == 200
        assert get(f"{base}feeds/../state/syndicator.db")[0] == 404
        # A new article shows up within the interval.
        write(
            store / "new.txt",
            "Ghana Opens AEO Programme\n\nGhana Opens AEO Programme\n\nGhana news.\n",
        )
        deadline = time.monotonic() + 15
        while b"Ghana Opens AEO Programme" not in get(f"{base}feeds/west-central-africa.rss")[2]:
            assert time.monotonic() < deadline, "new article never published"
            time.sleep(0.2)
        # The running service lists the store from what changed since its first cycle:
        # an article appended in place, and one in a directory made since.
        with (store / "new.txt").open("a", encoding="utf-8") as handle:
            handle.write("\nKenya Extends Cargo Tracking\n\nKenya Extends Cargo Tracking\n\nKe.\n")
        write(
            store / "2026" / "12" / "later.md",
            '+++\ntitle = "Japan Signs Mutual Recognition"\n+++\nJapan news.\n',
        )
        deadline = time.monotonic() + 15
        while not all(
            title in get(f"{base}feeds/all.atom")[2]
            for title in (b"Kenya Extends Cargo Tracking", b"Japan Signs Mutual Recognition")
        ):
            assert time.monotonic() < deadline, "changed store files never published"
            time.sleep(0.2)
        metrics = get(f"{base}metrics")[2].decode()
        assert 'syndicator_cycles_total{outcome="ok"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in err


def test_one_log_line_per_cycle_and_sign_up_bursts_queue_quietly(install: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with Sink() as sink:
        text = install.read_text().replace("https://news.example.org/", base)
        text = text.replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
        text += f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5\n'
        text += f'\n[http]\nlisten = "127.0.0.1:{port}"\n'
        install.write_text(text)
        (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
        process = subprocess.Popen(
            [sys.executable, "-m", "syndicator", "--config", str(install), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_healthy(base, process)
            # Eight sign-ups at once, as a burst of visitors would send them.
            jar = http.cookiejar.CookieJar()
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            with opener.open(f"{base}subscribe", timeout=5) as response:
                found = re.search(r'name="csrf" value="([^"]+)"', response.read().decode())
            assert found is not None

            def sign_up(number: int) -> int:
                data = urllib.parse.urlencode(
                    {"csrf": found.group(1), "email": f"reader{number}@example.org"}
                ).encode()
                with opener.open(f"{base}subscribe", data=data, timeout=10) as answer:
                    return int(answer.status)

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                assert list(pool.map(sign_up, range(8))) == [200] * 8
            deadline = time.monotonic() + 30
            while len(sink.received) < 8:
                assert time.monotonic() < deadline, f"{len(sink.received)} of 8 mails"
                time.sleep(0.1)
            time.sleep(3)  # a few more cycles (reload_interval = 1)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = err.splitlines()
    assert sorted(r for item in sink.received for r in item.recipients) == sorted(
        f"reader{n}@example.org" for n in range(8)
    )
    assert not [line for line in lines if "apscheduler" in line], err
    assert "maximum number of running instances" not in err
    cycles = [line for line in lines if " INFO syndicator.service.daemon: cycle: " in line]
    assert len(cycles) >= 3
    # What else is said at INFO: the start, HTTP requests, the sign-up mail and the stop.
    others = [
        line
        for line in lines
        if " INFO " in line
        and line not in cycles
        and " aiohttp.access: " not in line
        and not re.search(r"INFO syndicator\.service\.daemon: (serving|mail: |stopped)", line)
    ]
    assert others == [], "\n".join(others)


@pytest.mark.sqlite_only  # a clean close is read off SQLite's write-ahead log
def test_a_second_sigint_abandons_the_work_in_flight_and_shuts_down_in_order(
    install: Path,
) -> None:
    """The first SIGINT waits for the delivery in flight (to a server that never greets);
    the second abandons it, then the HTTP server and the database are closed as usual."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete, and nobody ever says a word
        silent.settimeout(60)
        config = use_smtp(
            install, silent.getsockname()[1], immediate(["desk@example.org"]), timeout=120
        )
        store = with_sample_store(install)
        port = free_port()
        config.write_text(config.read_text() + f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
        baseline = run(config, "run", "--once")
        assert baseline.returncode == 0, baseline.stderr
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        process = subprocess.Popen(
            command(config, "run"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            connection, _ = silent.accept()  # the first cycle is delivering its mail
            with connection:
                assert get(f"http://127.0.0.1:{port}/healthz")[0] in {200, 503}
                process.send_signal(signal.SIGINT)
                time.sleep(1)
                assert process.poll() is None  # waiting for the delivery in flight
                started = time.monotonic()
                process.send_signal(signal.SIGINT)
                _, err = process.communicate(timeout=20)
                took = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, err
    assert took < 10, err  # neither the stop timeout (30 s) nor the SMTP one (120 s)
    assert "second SIGINT: abandoning the work in flight" in err
    assert err.rstrip().endswith("stopped (interrupted twice)"), err
    assert "Traceback" not in err, err
    with pytest.raises(OSError):  # the HTTP server is closed
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    database = install.parent.parent / "state" / "syndicator.db"
    # Closed, not killed: the last connection's close checkpointed and removed the WAL.
    assert not database.with_name("syndicator.db-wal").exists()
    with sqlite3.connect(database) as conn:
        statuses = [row[0] for row in conn.execute("SELECT status FROM messages")]
    assert statuses == ["sending"]  # recorded before acting; sent again at the next start
