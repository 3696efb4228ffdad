"""Mail from several instances sharing one outbox on PostgreSQL, against a bare sender.

1, 2 and 3 delivering processes (:mod:`benchmarks.deliverer`, the service's delivery:
claims with ``FOR UPDATE SKIP LOCKED`` under a lease, group commits of at most 16
outcomes) empty one outbox of N personalised digests on PostgreSQL into one aiosmtpd
sink in a process of its own (:mod:`benchmarks.sink`). The baseline, measured in the same
run against the same sink, is the bare pooled sender of :mod:`benchmarks.mail`: prebuilt
bytes over its persistent connections. The sink counts Message-IDs: every round must
deliver each message exactly once.

The PostgreSQL cluster is the benchmark's own (``initdb`` in a temporary directory,
PostgreSQL's default durability: fsync and synchronous commits on).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from benchmarks.mail import POOL, _bare, _install
from benchmarks.pipeline import free_port
from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.pipeline import Pipeline
from syndicator.state.db import State, messages_table

INSTANCES = (1, 2, 3)


def _processes(count: int, *args: str) -> list[subprocess.Popen[str]]:
    """``count`` Python children speaking lines on their standard input and output, started
    together; returned once each said ``ready``."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if line != "ready":
            for started in children:
                started.kill()
            raise RuntimeError(f"{args[0]} did not start (said {line!r})")
    return children


def _stop(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()


def _ask(child: subprocess.Popen[str], line: str) -> str:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()
    return child.stdout.readline()


def _reset(state: State) -> None:
    """Every message waiting again, as just queued (same bytes, same Message-IDs)."""
    with state.transaction() as conn:
        conn.execute(
            update(messages_table).values(
                status="pending",
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                sent_at=None,
                next_attempt_at=None,
                last_error="",
            )
        )


def _deliver(children: list[subprocess.Popen[str]]) -> tuple[float, list[dict[str, Any]]]:
    """Wall time for these delivering processes, told to go together, to empty the
    outbox; what each of them reported."""
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    reports = []
    for child in children:
        assert child.stdout is not None
        reports.append(json.loads(child.stdout.readline()))
    return time.perf_counter() - started, reports


def _queue_digests(config_path: Path, count: int) -> State:
    """``count`` personalised daily digests queued in the configured state; the state."""
    config = load_config(config_path)
    classifier = Classifier.load(config.classify.regions, config.classify.topics)
    state = State.open(config.state.url)
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    pipeline = Pipeline(config, classifier, state, clock=lambda: now)
    pipeline.cycle(now=now)  # baseline cycle, subscribers synced
    (config.store.path / "b.txt").write_text(
        "Kenya Launches Single Window\n\nKenya Launches Single Window\n\nKRA news.\n"
    )
    pipeline.cycle(now=now + timedelta(minutes=5))  # matched
    pipeline.cycle(now=now + timedelta(hours=1))  # 10:00 UTC: every digest is queued
    with state.engine.connect() as conn:
        queued = conn.execute(select(func.count()).select_from(messages_table)).scalar()
    if queued != count:
        raise RuntimeError(f"{queued} digests queued for {count} subscribers")
    return state


def run(database_url: str, count: int, repeat: int = 3) -> list[dict[str, Any]]:
    port = free_port()
    [sink] = _processes(1, "benchmarks.sink", str(port))
    root = Path(tempfile.mkdtemp(prefix="syndicator-scaleout-"))
    deliverers: list[subprocess.Popen[str]] = []
    ours: dict[int, list[float]] = {number: [] for number in INSTANCES}
    spread: dict[int, list[list[int]]] = {number: [] for number in INSTANCES}
    copies: dict[int, int] = dict.fromkeys(INSTANCES, 0)  # arrivals beyond the first, in all
    baseline: list[float] = []
    try:
        config_path = _install(root, port, count)
        config_path.write_text(
            config_path.read_text().replace(
                'url = "sqlite:///../state/syndicator.db"', f'url = "{database_url}"'
            )
        )
        state = _queue_digests(config_path, count)
        with state.engine.connect() as conn:
            sample = bytes(conn.execute(select(messages_table.c.body).limit(1)).scalar_one())
        # Started once, like daemons; each round uses the first 1, 2 or 3 of them.
        deliverers = _processes(max(INSTANCES), "benchmarks.deliverer", str(config_path))
        for _ in range(repeat):
            for number in INSTANCES:
                _reset(state)
                seconds, reports = _deliver(deliverers[:number])
                arrived = json.loads(_ask(sink, "count"))
                sent = sum(report["sent"] for report in reports)
                # Each message exactly once: as many arrivals as messages, all different.
                if not (sent == arrived["messages"] == arrived["distinct"] == count):
                    raise RuntimeError(
                        f"{number} instances: {count} messages, {sent} recorded sent, "
                        f"sink: {arrived}"
                    )
                ours[number].append(seconds)
                copies[number] += arrived["messages"] - arrived["distinct"]
                spread[number].append(sorted(report["sent"] for report in reports))
            baseline.append(asyncio.run(_bare(port, sample, count)))
            arrived = json.loads(_ask(sink, "count"))
            if arrived["messages"] != count - count % POOL:
                raise RuntimeError(f"the bare sender's messages did not all arrive: {arrived}")
        state.close()
    finally:
        _stop([*deliverers, sink])
        shutil.rmtree(root, ignore_errors=True)
    baseline_seconds = statistics.median(baseline)
    rows = []
    for number in INSTANCES:
        seconds = statistics.median(ours[number])
        rows.append(
            {
                "name": f"mail, {number} instance{'s' if number > 1 else ''} sharing one "
                "outbox (PostgreSQL)",
                "messages": count,
                "seconds": seconds,
                "messages_per_second": count / seconds,
                "sent_by_each": spread[number][-1],
                "rounds": len(ours[number]),
                "duplicates_at_sink": copies[number],
                "baseline": f"bare aiosmtplib, {POOL} pooled connections, prebuilt bytes, "
                "same sink",
                "baseline_seconds": baseline_seconds,
                "baseline_messages_per_second": count / baseline_seconds,
                "ratio": seconds / baseline_seconds,
                "share_of_baseline": baseline_seconds / seconds,
                "target": "at least 70 % of the baseline's messages per second; "
                "no fall with more instances; no duplicates",
            }
        )
    return rows
