"""Crashes: SIGKILL at random moments while mail goes out and while feeds are written.

Each test uses a seeded random generator; the seed is in the failure message, and
``FAULTS_SEED=<seed>`` replays the same kill moments.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from syndicator.pipeline import PUBLISHED_MARKER
from syndicator.store.ingest import PARALLEL_MIN_FILES
from tests.conftest import T0
from tests.faults.helpers import (
    ENV,
    add_article,
    command,
    immediate,
    integrity_ok,
    query,
    run,
    use_smtp,
    wait_for,
)
from tests.faults.helpers import with_sample_store as sample_store
from tests.smtp_sink import Sink, SinkHandler

pytestmark = pytest.mark.faults

KILLS = 5
SUBSCRIBERS = 300


def seed() -> int:
    return int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1 << 30))


def kill(process: subprocess.Popen[bytes]) -> bool:
    """SIGKILL ``process`` unless it has ended already; whether it was killed."""
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return True


def _received_or_ended(sink: Sink, wanted: int, process: subprocess.Popen[bytes]) -> bool:
    return len(sink.received) >= wanted or process.poll() is not None


def _written_or_ended(
    output: Path, started_ns: int, wanted: int, process: subprocess.Popen[bytes]
) -> bool:
    return written_since(output, started_ns) >= wanted or process.poll() is not None


def in_flight(install: Path) -> set[str]:
    """Recipients of messages left in 'sending': what the crash may have sent already."""
    rows = query(install, "SELECT recipient FROM messages WHERE status = 'sending'")
    return {str(row[0]) for row in rows}


def test_sigkill_five_times_during_delivery_to_300_subscribers(install: Path) -> None:
    chosen = seed()
    rng = random.Random(chosen)
    addresses = [f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)]
    with Sink(SinkHandler(delay=0.01)) as sink:
        config = use_smtp(install, sink.port, immediate(addresses))
        store = sample_store(install)
        baseline = run(config, "run", "--once")
        assert baseline.returncode == 0, baseline.stderr
        assert sink.received == []
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        kills: list[str] = []
        possible_duplicates: Counter[str] = Counter()
        for _ in range(KILLS):
            before = len(sink.received)
            process = subprocess.Popen(
                command(config, "run", "--once"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=ENV,
            )
            if rng.random() < 0.25:
                # Any moment: starting up, reading the store, queueing, sending.
                pause = rng.uniform(0.05, 2.0)
                time.sleep(pause)
                kills.append(f"after {pause:.2f}s")
            else:
                # Mid-batch: after some messages of this run went out.
                wanted = before + rng.randint(1, 90)
                wait_for(
                    partial(_received_or_ended, sink, wanted, process),
                    60,
                    f"message {wanted}",
                )
                kills.append(f"after message {wanted}")
            if not kill(process):
                kills[-1] += " (had ended)"
            possible_duplicates.update(in_flight(install))
        final = run(config, "run", "--once")
        received = sink.received
    context = f"seed {chosen} (FAULTS_SEED={chosen} to replay); kills {kills}"
    assert final.returncode == 0, f"{context}: {final.stderr}"
    counts = Counter(item.recipients[0] for item in received)
    assert all(len(item.recipients) == 1 for item in received), context
    assert set(counts) == set(addresses), f"{context}: lost {set(addresses) - set(counts)}"
    # A second copy only for a message that was in flight at a kill, at most once per kill.
    for address, count in counts.items():
        assert count - 1 <= possible_duplicates[address], f"{context}: {address} x{count}"
    assert sum(counts.values()) - len(addresses) <= sum(possible_duplicates.values())
    message_ids: dict[str, set[str]] = {}
    for item in received:
        message_ids.setdefault(item.recipients[0], set()).add(str(item.message["Message-ID"]))
    assert all(len(ids) == 1 for ids in message_ids.values()), context  # resent as it was
    assert integrity_ok(install), context
    rows = query(install, "SELECT status, count(*) FROM messages GROUP BY status")
    statuses = {str(status): count for status, count in rows}
    assert statuses == {"sent": SUBSCRIBERS}, context


# --- publishing --------------------------------------------------------------------------

ARTICLES = 1500


def write_store(store: Path, edition: str, count: int = ARTICLES) -> None:
    """Articles with their dates in front matter, so a publish's output depends on the
    store alone (not on the clock): the new files are known before the kills."""
    regions = ["americas", "europe", "mena", "asia-pacific", "global"]
    for number in range(count):
        day = 1 + number % 28
        (store / f"a{number:04}.md").write_text(
            "+++\n"
            f'id = "notice-{number}"\n'
            f'title = "Customs Notice {number} ({edition})"\n'
            f"date = 2025-03-{day:02}T{number % 24:02}:00:00Z\n"
            f"updated = 2025-04-{day:02}T{number % 24:02}:00:00Z\n"
            f'regions = ["{regions[number % len(regions)]}"]\n'
            'topics = ["transit"]\n'
            "+++\n"
            f"The {edition} text of notice {number}, about transit.\n",
            encoding="utf-8",
        )


def published(output: Path) -> dict[str, bytes]:
    """Every published file (temporary files of an interrupted write are hidden ones)."""
    return {
        str(path.relative_to(output)): path.read_bytes()
        for path in output.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


def written_since(output: Path, started_ns: int) -> int:
    """How many published files were replaced since ``started_ns`` (by their mtime)."""
    count = 0
    for directory in (output, output / "topics", output / "articles"):
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and entry.stat().st_mtime_ns >= started_ns:
                    count += 1
    return count


def well_formed(name: str, data: bytes) -> None:
    if name.endswith(".json"):
        json.loads(data)
    elif name.endswith((".rss", ".atom", ".opml")):
        ET.fromstring(data)
    else:
        assert data.rstrip().endswith(b"</html>"), name


def reference(tmp_path: Path, install: Path, edition: str) -> dict[str, bytes]:
    """What a complete publish of ``edition`` writes, in an installation of its own."""
    twin = tmp_path / f"twin-{edition}"
    (twin / "articles").mkdir(parents=True)
    (twin / "config").mkdir()
    for item in install.parent.iterdir():
        (twin / "config" / item.name).write_bytes(item.read_bytes())
    write_store(twin / "articles", edition)
    result = run(twin / "config" / install.name, "feeds")
    assert result.returncode == 0, result.stderr
    return published(twin / "feeds")


def test_sigkill_while_publishing_leaves_old_or_new_files(tmp_path: Path, install: Path) -> None:
    chosen = seed()
    rng = random.Random(chosen)
    old = reference(tmp_path, install, "first")
    new = reference(tmp_path, install, "second")
    assert set(old) == set(new)
    changed = {name for name in new if old[name] != new[name]}
    # Every feed and every published page (those feeds and the index link to) changes.
    assert len(changed) > 200
    store = install.parent.parent / "articles"
    output = install.parent.parent / "feeds"
    write_store(store, "first")
    first = run(install, "feeds")
    assert first.returncode == 0, first.stderr
    assert published(output) == old
    write_store(store, "second")
    kills: list[str] = []
    for _ in range(KILLS):
        remaining = sum(data != new[name] for name, data in published(output).items())
        started = time.time_ns()
        process = subprocess.Popen(
            command(install, "feeds"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
        )
        if rng.random() < 0.2 or remaining < 2:
            pause = rng.uniform(0.05, 2.0)  # any moment: starting, reading, rendering
            time.sleep(pause)
            kills.append(f"after {pause:.2f}s")
        else:
            wanted = rng.randint(1, remaining - 1)  # mid-publish: after some files were replaced
            wait_for(
                partial(_written_or_ended, output, started, wanted, process),
                60,
                f"{wanted} files written",
            )
            kills.append(f"after {wanted} of {remaining} files")
        if not kill(process):
            kills[-1] += " (had ended)"
        context = f"seed {chosen} (FAULTS_SEED={chosen} to replay); kills {kills}"
        files = published(output)
        assert set(files) == set(new), context
        for name, data in files.items():
            assert data in (old[name], new[name]), f"{context}: {name} is neither old nor new"
            well_formed(name, data)
    last = run(install, "feeds")
    assert last.returncode == 0, last.stderr
    assert published(output) == new, kills
    # What the killed writers left behind (hidden temporary files) is cleared too.
    # Nothing hidden is left but the marker of the revision the files were built from.
    assert [p.name for p in output.rglob(".*") if p.name != PUBLISHED_MARKER] == [], kills
    assert integrity_ok(install)


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie nobody reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="needs Linux's /proc/PID/task/PID/children",
)
def test_sigkill_while_reading_in_parallel_leaves_no_worker_behind(install: Path) -> None:
    """A process killed while its worker processes read the store takes them with it.

    Forked workers hold copies of the parent's database connections: left running, they
    kept a killed instance's PostgreSQL session (and its cycle lock) open for good, and
    every later cycle was skipped."""
    store = install.parent.parent / "articles"
    count = 3 * PARALLEL_MIN_FILES  # enough to be read by worker processes
    write_store(store, "first", count)
    process = subprocess.Popen(
        command(install, "feeds"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    workers: list[int] = []

    def reading() -> bool:
        workers[:] = _children(process.pid)
        return bool(workers) or process.poll() is not None

    try:
        wait_for(reading, 60, "worker processes reading the store")
        assert kill(process), "the run ended before it could be killed while reading"
        wait_for(lambda: not any(_running(pid) for pid in workers), 10, f"workers {workers} to end")
    finally:
        for pid in workers:  # what this test would otherwise leave running
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    # Nothing of the killed run holds the state database: the next run does the whole cycle.
    again = run(install, "feeds")
    assert again.returncode == 0, again.stderr
    assert f"{count} articles" in again.stdout, again.stdout
    assert "Customs Notice" in (install.parent.parent / "feeds" / "all.atom").read_text()
    assert integrity_ok(install)


class Crash(BaseException):
    """Stands for SIGKILL at one exact point, which a real signal hits only by chance."""


def test_crash_between_recording_articles_and_publishing_them(
    install: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syndicator import pipeline
    from syndicator.classify.classifier import Classifier
    from syndicator.config import load_config
    from syndicator.state.db import State

    config = load_config(install)
    classifier = Classifier.load(config.classify.regions, config.classify.topics)
    store = sample_store(install)
    state = State.open(config.state.url)
    try:
        pipeline.run_cycle(config, classifier, state, now=T0)
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")

        def crash(*args: object, **kwargs: object) -> str:
            raise Crash  # right after the new article was recorded, before publishing

        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "settings_signature", crash)
            with pytest.raises(Crash):
                pipeline.run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
        assert "Chile Launches" not in (config.feeds.output_dir / "americas.atom").read_text()
        result = pipeline.run_cycle(config, classifier, state, now=T0 + timedelta(minutes=2))
        assert result.reload.new == []  # recorded by the crashed cycle
        assert "Chile Launches" in (config.feeds.output_dir / "americas.atom").read_text()
    finally:
        state.close()
