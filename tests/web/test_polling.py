"""Clients polling far faster than feeds change: 429 with Retry-After, when configured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from syndicator.metrics import Metrics
from syndicator.web.app import Health, create_app, serve
from syndicator.web.polling import PollLimit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_polling_faster_than_the_interval_gets_429_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / "all.atom").write_bytes(b"<feed/>")
    (tmp_path / "europe.atom").write_bytes(b"<feed/>")
    clock = Clock()
    app = create_app(
        output_dir=tmp_path,
        health=Health(interval=60),
        metrics=Metrics(),
        clock=clock,
        cache_seconds=60,
        polls=PollLimit(3, 60, trust_forwarded_for=False),
    )
    runner = await serve(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/feeds/"
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(4):
                async with http.get(base + "all.atom") as response:
                    statuses.append(response.status)
                    retry_after = response.headers.get("Retry-After")
                    control = response.headers["Cache-Control"]
            assert statuses == [200, 200, 200, 429]
            assert retry_after == "20"  # three polls per 60 s: one every 20 s
            assert control == "no-store"
            # Another feed has its own allowance.
            async with http.get(base + "europe.atom") as response:
                assert response.status == 200
                assert response.headers["Cache-Control"] == "public, max-age=60"
            # Once the time has come, the client is served again.
            clock.now = T0 + timedelta(seconds=20)
            async with http.get(base + "all.atom") as response:
                assert response.status == 200
    finally:
        await runner.cleanup()


async def test_no_limit_by_default(tmp_path: Path) -> None:
    (tmp_path / "all.atom").write_bytes(b"<feed/>")
    app = create_app(
        output_dir=tmp_path, health=Health(interval=60), metrics=Metrics(), clock=lambda: T0
    )
    runner = await serve(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(
                    f"http://127.0.0.1:{runner.addresses[0][1]}/feeds/all.atom"
                ) as response:
                    assert response.status == 200
    finally:
        await runner.cleanup()
