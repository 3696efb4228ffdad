"""The whole pipeline at scale: a cold run, quiet cycles, one new article, peak memory.

Synthetic stores of N articles (nested directories) are written to a temporary directory,
one per store format: digest text files, Markdown with TOML front matter, Markdown with YAML
front matter, and the three mixed. Measured, each next to what the machine allows in the
same run:

* per format, a cold ``syndicator run --once`` (a subprocess, as an operator runs it)
  against reading and lowercasing every file of that store in plain Python;
* in a long-lived process like the daemon's, with S synthetic subscribers in state: a
  cycle when nothing changed, and a cycle when one article was added, until its mail is
  queued;
* the peak resident memory of the processes, the last one with a large subscriber list
  matching a new article;
* given a PostgreSQL database, the same quiet and added cycles there, the state moved from
  SQLite with ``syndicator state copy``, against the SQLite cycles of the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from benchmarks.generate import STORE_FORMATS, subscriptions, write_store
from syndicator.mail.schedule import next_due
from syndicator.models import REGION_SLUGS
from syndicator.state.db import State, articles_table, subscribers_table

TOPICS = [
    "risk-management", "aeo", "transit", "revenue", "e-commerce", "security", "integrity",
    "single-window", "trade-facilitation", "capacity-building", "digital-customs",
]  # fmt: skip


def read_and_lowercase(root: Path) -> tuple[float, int]:
    """The baseline: every store file read and lowercased, nothing else."""
    started = time.perf_counter()
    characters = 0
    for directory, _, names in os.walk(root):
        for name in names:
            # Plain os calls, as the simplest script would make them.
            path = os.path.join(directory, name)  # noqa: PTH118
            with open(path, encoding="utf-8") as handle:  # noqa: PTH123
                characters += len(handle.read().lower())
    return time.perf_counter() - started, characters


MAILDIR = """
[mail]
transport = "maildir"
maildir = "../mail"
"""


def install(root: Path, *, subscribers: str = "", mail: str = MAILDIR) -> Path:
    """A configuration under ``root/config`` (the shipped gazetteer and taxonomy, this
    subscribers file and mail section) for a store in ``root/articles``; its path."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "subscribers.toml").write_text(subscribers)
    config = root / "config" / "syndicator.toml"
    config.write_text(
        textwrap.dedent(
            """
            [site]
            base_url = "https://news.example.org/"
            [store]
            path = "../articles"
            [feeds]
            output_dir = "../feeds"
            [state]
            url = "sqlite:///../state/syndicator.db"
            """
        )
        + textwrap.dedent(mail)
    )
    return config


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _timed_process(command: list[str]) -> tuple[float, int, str]:
    """Wall time, peak resident memory (bytes) and standard output of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    output = process.stdout.read().decode()
    errors = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[2:]} failed ({process.returncode}):\n{errors[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, output


def add_subscribers(url: str, count: int, *, start: int, now: datetime) -> None:
    """``count`` synthetic subscribers added to state now (as `subscribers import` would)."""
    state = State.open(url)
    with state.transaction() as conn:
        added_seq = int(conn.execute(select(func.max(articles_table.c.seq))).scalar() or 0)
        rows = []
        generated = subscriptions(start + count, list(REGION_SLUGS), TOPICS)
        for number, (email, filters, cadence, hour, weekday, zone) in enumerate(generated):
            if number < start:
                continue
            rows.append(
                {
                    "email": email,
                    "email_key": email,
                    "name": f"Reader {number}",
                    "filters": json.dumps(filters, sort_keys=True),
                    "cadence": cadence,
                    "hour": hour,
                    "weekday": weekday,
                    "timezone": zone,
                    "source": "cli",
                    "status": "active",
                    "added_at": now,
                    "added_seq": added_seq,
                    "permanent_failures": 0,
                    "next_digest_at": next_due(
                        now, cadence=cadence, hour=hour, weekday=weekday, timezone=zone
                    ),
                }
            )
            if len(rows) == 20_000:
                conn.execute(subscribers_table.insert(), rows)
                rows = []
        if rows:
            conn.execute(subscribers_table.insert(), rows)
    state.close()


def _child(config: Path, quiet: int, added: int) -> dict[str, Any]:
    seconds, peak, output = _timed_process(
        [sys.executable, "-m", "benchmarks.cycles", str(config), str(quiet), str(added)]
    )
    result: dict[str, Any] = json.loads(output)
    result["process_seconds"] = seconds
    result["peak_bytes"] = peak
    return result


FORMAT_NAMES = {
    "digest": "digest text files",
    "toml": "Markdown, TOML front matter",
    "yaml": "Markdown, YAML front matter",
    "mixed": "mixed formats",
}


def cold_run(root: Path, articles: int, store_format: str) -> tuple[dict[str, Any], int]:
    """A store of one format under ``root``, its cold ``run --once`` against its own plain
    read; the row and the run's peak memory. State stays in ``root`` for later cycles."""
    config = install(root)
    write_store(root / "articles", articles, store_format=store_format)
    files = sum(len(names) for _, _, names in os.walk(root / "articles"))
    baseline = statistics.median(read_and_lowercase(root / "articles")[0] for _ in range(3))
    seconds, peak, _ = _timed_process(
        [sys.executable, "-m", "syndicator", "--config", str(config), "run", "--once"]
    )
    row = {
        "name": f"cold run --once, {articles:,} articles, {FORMAT_NAMES[store_format]}",
        "articles": articles,
        "files": files,
        "seconds": seconds,
        "peak_mib": peak / 2**20,
        "baseline": "read and lowercase every file of this store in plain Python",
        "baseline_seconds": baseline,
        "ratio": seconds / baseline,
        "target": "at most 5x the baseline",
    }
    return row, peak


def on_postgresql(
    root: Path, database_url: str, sqlite: dict[str, Any], *, articles: int, subscribers: int
) -> list[dict[str, Any]]:
    """The same quiet and added cycles on PostgreSQL, against SQLite's in this run: the
    SQLite state under ``root`` moved with ``syndicator state copy``, feeds copied as they
    stand. The store is left as SQLite knows it."""
    config = root / "config" / "syndicator.toml"
    copy_seconds, _, _ = _timed_process(
        [sys.executable, "-m", "syndicator", "--config", str(config), "state", "copy", "--to",
         database_url]
    )  # fmt: skip
    shutil.copytree(root / "feeds", root / "feeds-postgresql", symlinks=True)
    moved = config.with_name("postgresql.toml")
    moved.write_text(
        config.read_text()
        .replace('url = "sqlite:///../state/syndicator.db"', f'url = "{database_url}"')
        .replace('output_dir = "../feeds"', 'output_dir = "../feeds-postgresql"')
    )
    known = set((root / "articles").iterdir())
    try:
        cycles = _child(moved, quiet=5, added=3)
    finally:
        for added in set((root / "articles").iterdir()) - known:
            added.unlink()
        shutil.rmtree(root / "feeds-postgresql", ignore_errors=True)
    return [
        {
            "name": f"cycle, nothing changed ({subscribers:,} subscribers), PostgreSQL",
            "articles": articles,
            "seconds": statistics.median(cycles["quiet"]),
            "baseline": "the same cycle on SQLite in this run",
            "baseline_seconds": statistics.median(sqlite["quiet"]),
            "ratio": statistics.median(cycles["quiet"]) / statistics.median(sqlite["quiet"]),
            "state_copy_seconds": copy_seconds,
            "target": "under 1 s at 100,000 articles",
        },
        {
            "name": f"cycle, one article added ({subscribers:,} subscribers), PostgreSQL",
            "articles": articles,
            "seconds": statistics.median(cycles["added"]),
            "first_seconds": cycles["added"][0],
            "matches": cycles["matched"],
            "mails_queued": cycles["queued"],
            "baseline": "the same cycle on SQLite in this run",
            "baseline_seconds": statistics.median(sqlite["added"]),
            "ratio": statistics.median(cycles["added"]) / statistics.median(sqlite["added"]),
            "target": "under 1 s at 100,000 articles",
        },
    ]


def run(
    articles: int,
    subscribers: int,
    memory_subscribers: int,
    *,
    postgresql: str | None = None,
    every_format: bool = True,
) -> list[dict[str, Any]]:
    """The rows above; with ``postgresql`` (the URL of an empty database) also the quiet
    and added cycles on PostgreSQL. Without ``every_format``, only the mixed store is
    built; with ``memory_subscribers`` 0, there is no memory row."""
    cold_rows = []
    for store_format in STORE_FORMATS:
        if store_format == "mixed" or not every_format:
            continue  # below: its state serves the cycles
        root = Path(tempfile.mkdtemp(prefix="syndicator-pipeline-"))
        try:
            cold_rows.append(cold_run(root, articles, store_format)[0])
        finally:
            shutil.rmtree(root, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix="syndicator-pipeline-"))
    try:
        mixed, cold_peak = cold_run(root, articles, "mixed")
        cold_rows.append(mixed)
        baseline = mixed["baseline_seconds"]
        config = root / "config" / "syndicator.toml"
        url = f"sqlite:///{root / 'state' / 'syndicator.db'}"
        now = datetime.now(UTC)
        add_subscribers(url, subscribers, start=0, now=now)
        cycles = _child(config, quiet=5, added=3)
        moved = (
            []
            if postgresql is None
            else on_postgresql(root, postgresql, cycles, articles=articles, subscribers=subscribers)
        )
        large = None
        if memory_subscribers:
            add_subscribers(
                url, memory_subscribers - subscribers, start=subscribers, now=now + timedelta(0, 1)
            )
            large = _child(config, quiet=1, added=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        *cold_rows,
        {
            "name": f"cycle, nothing changed ({subscribers:,} subscribers)",
            "articles": articles,
            "seconds": statistics.median(cycles["quiet"]),
            "baseline": "the mixed store's baseline (reading every file)",
            "baseline_seconds": baseline,
            "ratio": statistics.median(cycles["quiet"]) / baseline,
            "target": "under 1 s at 100,000 articles",
        },
        {
            "name": f"cycle, one article added ({subscribers:,} subscribers)",
            "articles": articles,
            "seconds": statistics.median(cycles["added"]),
            "first_seconds": cycles["added"][0],
            "matches": cycles["matched"],
            "mails_queued": cycles["queued"],
            "baseline": "the mixed store's baseline (reading every file)",
            "baseline_seconds": baseline,
            "ratio": statistics.median(cycles["added"]) / baseline,
            "target": "under 1 s at 100,000 articles",
        },
        *moved,
    ]
    if large is None:
        return rows
    peak = max(cold_peak, cycles["peak_bytes"], large["peak_bytes"])
    return [
        *rows,
        {
            "name": f"peak memory, {memory_subscribers:,} subscribers",
            "articles": articles,
            "subscribers": memory_subscribers,
            "seconds": large["added"][0],
            "peak_mib": peak / 2**20,
            "cold_run_peak_mib": cold_peak / 2**20,
            "large_list_peak_mib": large["peak_bytes"] / 2**20,
            "large_list_matches": large["matched"],
            "large_list_mails_queued": large["queued"],
            "baseline": "the 1 GiB limit (ratio: peak / limit; seconds: the large list's cycle)",
            "baseline_seconds": None,
            "ratio": peak / 2**30,
            "target": "under 1 GiB with 100,000 articles and 1,000,000 subscribers",
        },
    ]
