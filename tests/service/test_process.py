"""The service as a real subprocess: it cycles, publishes and serves HTTP until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import SAMPLE_STORE, write
from tests.smtp_sink import free_port


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
        metrics = get(f"{base}metrics")[2].decode()
        assert 'syndicator_cycles_total{outcome="ok"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in err
