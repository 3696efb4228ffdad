"""Personalized mail per second through our whole path, against a bare pooled sender.

The SMTP sink is aiosmtpd in a separate process, so it does not share our
interpreter. The baseline sends prebuilt bytes over the same number of
persistent aiosmtplib connections. Ours is the cycle at which a daily digest
falls due for every subscriber: it composes one personalised message each
(queue_due), stores them, and delivers them through SmtpTransport, recording
every outcome in the state database.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import delete, update

from benchmarks.pipeline import free_port, install
from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.pipeline import Pipeline, deliver_due
from syndicator.state.db import State, matches_table, messages_table, subscribers_table

POOL = 4
SINK = textwrap.dedent(
    """
    import sys, time
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()
    """
)


async def _bare(port: int, message: bytes, count: int) -> float:
    """The baseline: prebuilt bytes over POOL persistent connections."""

    async def worker(share: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for number in range(share):
            await client.sendmail("news@example.org", [f"p{number}@example.org"], message)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker(count // POOL) for _ in range(POOL)))
    return time.perf_counter() - started


def _install(root: Path, port: int, count: int) -> Path:
    (root / "articles").mkdir(parents=True)
    (root / "articles" / "a.txt").write_text("Old Story\n\nOld Story\n\nKenya news.\n")
    subscribers = "".join(
        f'[[subscriber]]\nemail = "p{n}@example.org"\nname = "Person {n}"\n'
        'cadence = "daily"\nhour = 10\n'
        for n in range(count)
    )
    smtp = f"""
        [mail]
        transport = "smtp"
        [mail.smtp]
        host = "127.0.0.1"
        port = {port}
        pool_size = {POOL}
        """
    return install(root, subscribers=subscribers, mail=smtp)


def _reset(state: State, due: datetime) -> None:
    """Undo a measured round: no messages, every match pending, every digest due."""
    with state.transaction() as conn:
        conn.execute(delete(messages_table))
        conn.execute(update(matches_table).values(message=None))
        conn.execute(update(subscribers_table).values(next_digest_at=due))


def run(count: int, repeat: int = 3) -> dict[str, Any]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    root = Path(tempfile.mkdtemp(prefix="syndicator-bench-"))
    ours: list[float] = []
    composed: list[float] = []
    baseline: list[float] = []
    try:
        config = load_config(_install(root, port, count))
        classifier = Classifier.load(config.classify.regions, config.classify.topics)
        state = State.open(config.state.url)
        now = datetime(2026, 3, 2, 9, tzinfo=UTC)
        pipeline = Pipeline(config, classifier, state, clock=lambda: now)
        pipeline.cycle(now=now)  # baseline cycle, subscribers synced
        (root / "articles" / "b.txt").write_text(
            "Kenya Launches Single Window\n\nKenya Launches Single Window\n\nKRA news.\n"
        )
        pipeline.cycle(now=now + timedelta(minutes=5))  # matched
        due = now + timedelta(hours=1)  # 10:00 UTC: every digest is due
        for _ in range(repeat):
            _reset(state, due)
            started = time.perf_counter()
            pipeline.cycle(now=due)
            composed.append(time.perf_counter() - started)
            report = asyncio.run(deliver_due(config, state, clock=lambda: due))
            ours.append(time.perf_counter() - started)
            assert report.sent == count, report
            with state.engine.connect() as conn:
                sample = conn.execute(messages_table.select().limit(1)).first()
            assert sample is not None
            baseline.append(asyncio.run(_bare(port, bytes(sample.body), count)))
        state.close()
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    seconds = statistics.median(ours)
    baseline_seconds = statistics.median(baseline)
    return {
        "name": "personalized mails per second to an SMTP sink",
        "messages": count,
        "seconds": seconds,
        "compose_seconds": statistics.median(composed),
        "messages_per_second": count / seconds,
        "baseline": f"bare aiosmtplib, {POOL} pooled connections, prebuilt bytes",
        "baseline_seconds": baseline_seconds,
        "baseline_messages_per_second": count / baseline_seconds,
        "ratio": seconds / baseline_seconds,
        "share_of_baseline": baseline_seconds / seconds,
        # Delivery alone (each round less its composing), for comparison with the
        # PostgreSQL rows, which deliver messages stored beforehand.
        "delivery_share_of_baseline": baseline_seconds
        / statistics.median(total - part for total, part in zip(ours, composed, strict=True)),
        "target": "at least 70 % of the baseline's messages per second",
    }
