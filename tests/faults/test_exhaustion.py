"""Resource exhaustion: the feeds disk full while publishing, the state database locked.

The full disk is real when the tests may mount a small tmpfs (root, as in CI); otherwise
the one function that writes published files fails with ENOSPC as the kernel would, a
simulation of what cannot be produced without a mount (``FAULTS_SIMULATE_FULL_DISK=1``
forces it). Both run the same test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.cli import main
from syndicator.config import load_config
from syndicator.publish import publisher as publish
from syndicator.service.daemon import Service
from syndicator.state import db as state
from syndicator.state.db import State
from tests.faults.helpers import add_article, immediate, use_smtp, with_sample_store
from tests.smtp_sink import Sink

pytestmark = pytest.mark.faults

DESK = "desk@example.org"


class FullDisk:
    """The feeds directory's disk, which the test fills up and frees again."""

    def __init__(self, mount: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mount = mount
        self.real = self._mount(mount)
        self._full = False
        if not self.real:
            write = publish.write_if_changed

            def failing(path: Path, data: bytes, **kwargs: Any) -> bool:
                if self._full and path.is_relative_to(mount):
                    if path.is_file() and path.read_bytes() == data:
                        return False  # nothing to write, nothing to fail
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                return write(path, data, **kwargs)

            monkeypatch.setattr(publish, "write_if_changed", failing)

    @staticmethod
    def _mount(mount: Path) -> bool:
        mount.mkdir()
        if os.geteuid() != 0 or os.environ.get("FAULTS_SIMULATE_FULL_DISK"):
            return False
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],
            check=False,
            capture_output=True,
        )
        return done.returncode == 0

    def fill(self) -> None:
        self._full = True
        if self.real:
            chunk = b"\0" * 65536
            with (self.mount / "filler").open("wb", buffering=0) as handle:
                with contextlib.suppress(OSError):
                    while True:
                        handle.write(chunk)
                with contextlib.suppress(OSError):
                    while True:
                        handle.write(b"\0" * 512)

    def free(self) -> None:
        self._full = False
        if self.real:
            (self.mount / "filler").unlink()

    def unmount(self) -> None:
        if self.real:
            subprocess.run(["umount", str(self.mount)], check=True)


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    disk = FullDisk(tmp_path / "disk", monkeypatch)
    try:
        yield disk
    finally:
        disk.unmount()


def snapshot(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output)): p.read_bytes() for p in output.rglob("*") if p.is_file()}


def test_disk_full_while_publishing(
    install: Path,
    full_disk: FullDisk,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    output = full_disk.mount / "feeds"
    with Sink() as sink:
        config = use_smtp(install, sink.port, immediate([DESK]))
        config.write_text(
            config.read_text().replace('output_dir = "../feeds"', f'output_dir = "{output}"')
        )
        store = with_sample_store(install)
        assert main(["--config", str(config), "run", "--once"]) == 0
        before = snapshot(output)
        assert "all.atom" in before
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        full_disk.fill()
        capsys.readouterr()
        assert main(["--config", str(config), "run", "--once"]) == 1
        _, err = capsys.readouterr()
        # One line says what failed and where; the old feeds are all there, whole.
        errors = [line for line in err.splitlines() if " ERROR " in line]
        assert len(errors) == 1, err
        assert "publishing failed: No space left on device: " in errors[0]
        assert str(output) in errors[0]
        assert "Traceback" not in err
        after = {k: v for k, v in snapshot(output).items() if k != "filler"}
        assert after == before  # no half-written file, no temporary file left behind
        # The mail did not wait for the feeds.
        assert [r.message["Subject"] for r in sink.received] == ["Chile Launches AEO Programme"]
        full_disk.free()
        assert main(["--config", str(config), "run", "--once"]) == 0
        assert "Chile Launches AEO Programme" in (output / "americas.atom").read_text()
        assert len(sink.received) == 1  # recovered, and nothing mailed twice
    _, err = capsys.readouterr()
    assert " ERROR " not in err


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_lock(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the state database's write lock for ``seconds``."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "locked"
    return process


def finish(process: subprocess.Popen[str]) -> int:
    process.communicate(timeout=30)
    return process.returncode


@pytest.mark.sqlite_only  # SQLite's own write lock and busy timeout
def test_state_database_locked_by_another_process(
    install: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "BUSY_TIMEOUT_SECONDS", 2)  # 30 in service; shorter to wait less
    database = install.parent.parent / "state" / "syndicator.db"
    with Sink() as sink:
        config = use_smtp(install, sink.port, immediate([DESK]))
        store = with_sample_store(install)
        assert main(["--config", str(config), "run", "--once"]) == 0
        # A lock shorter than the busy timeout: the cycle waits its turn, then does it all.
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        locker = hold_lock(database, 1.0)
        started = time.monotonic()
        assert main(["--config", str(config), "run", "--once"]) == 0
        assert time.monotonic() - started >= 0.5
        assert finish(locker) == 0
        assert [r.message["Subject"] for r in sink.received] == ["Chile Launches AEO Programme"]
        # A lock longer than the busy timeout: one clear line, exit 1, nothing half-done.
        add_article(store, "peru.txt", "Peru Opens Green Lane", "Peru's customs did.")
        capsys.readouterr()
        locker = hold_lock(database, 6.0)
        try:
            assert main(["--config", str(config), "run", "--once"]) == 1
        finally:
            finish(locker)
        _, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1] == (
            "syndicator: error: state database error: database is locked "
            "(another process may hold it locked; try again)"
        ), err
        assert "Traceback" not in err
        assert len(sink.received) == 1
        # The next cycle finds the article as new and mails it: nothing was lost.
        assert main(["--config", str(config), "run", "--once"]) == 0
        subjects = sorted(r.message["Subject"] for r in sink.received)
    assert subjects == ["Chile Launches AEO Programme", "Peru Opens Green Lane"]
    with contextlib.closing(__import__("sqlite3").connect(database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_disk_full_makes_the_service_unhealthy_until_it_recovers(
    install: Path, full_disk: FullDisk
) -> None:
    output = full_disk.mount / "feeds"
    install.write_text(
        install.read_text().replace('output_dir = "../feeds"', f'output_dir = "{output}"')
    )
    store = with_sample_store(install)
    config = load_config(install)
    classifier = Classifier.load(config.classify.regions, config.classify.topics)
    database = State.open(config.state.url)
    try:
        service = Service(config, classifier, database, clock=lambda: datetime.now(UTC))
        assert await service.cycle() is not None
        assert service.health.status(datetime.now(UTC))[0] == 200
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        full_disk.fill()
        await service.cycle()
        status, body = service.health.status(datetime.now(UTC))
        assert (status, body["status"]) == (503, "failing")
        assert "No space left on device" in str(body["error"])
        full_disk.free()
        await service.cycle()
        assert service.health.status(datetime.now(UTC))[0] == 200
        assert "Chile Launches" in (output / "americas.atom").read_text()
    finally:
        database.close()


PG_LOCKER = """
import sys, time
from sqlalchemy import create_engine
engine = create_engine(sys.argv[1])
with engine.connect() as conn, conn.begin():
    # What a write takes: other sessions may read these tables, never change them.
    conn.exec_driver_sql("LOCK TABLE articles, meta, messages IN EXCLUSIVE MODE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_tables(url: str, seconds: float) -> subprocess.Popen[str]:
    """Another session holding the tables a cycle writes for ``seconds`` (PostgreSQL)."""
    process = subprocess.Popen(
        [sys.executable, "-c", PG_LOCKER, url, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "locked"
    return process


@pytest.mark.postgresql_only  # the counterpart of SQLite's busy timeout: lock_timeout
def test_state_tables_locked_by_another_session(
    install: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "BUSY_TIMEOUT_SECONDS", 2)  # 30 in service; shorter to wait less
    url = load_config(install).state.url
    with Sink() as sink:
        config = use_smtp(install, sink.port, immediate([DESK]))
        store = with_sample_store(install)
        assert main(["--config", str(config), "run", "--once"]) == 0
        # A lock shorter than the lock timeout: the cycle waits its turn, then does it all.
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        locker = hold_tables(url, 1.0)
        started = time.monotonic()
        assert main(["--config", str(config), "run", "--once"]) == 0
        assert time.monotonic() - started >= 0.5
        assert finish(locker) == 0
        assert [r.message["Subject"] for r in sink.received] == ["Chile Launches AEO Programme"]
        # A lock longer than the lock timeout: one clear line, exit 1, nothing half-done.
        add_article(store, "peru.txt", "Peru Opens Green Lane", "Peru's customs did.")
        capsys.readouterr()
        locker = hold_tables(url, 6.0)
        try:
            assert main(["--config", str(config), "run", "--once"]) == 1
        finally:
            finish(locker)
        _, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1] == (
            "syndicator: error: state database error: canceling statement due to lock timeout "
            "(another process may hold it locked; try again)"
        ), err
        assert "Traceback" not in err
        assert len(sink.received) == 1
        # The next cycle finds the article as new and mails it: nothing was lost.
        assert main(["--config", str(config), "run", "--once"]) == 0
        subjects = sorted(r.message["Subject"] for r in sink.received)
    assert subjects == ["Chile Launches AEO Programme", "Peru Opens Green Lane"]
