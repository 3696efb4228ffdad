"""The daemon as a real subprocess: systemd notifications, signals, reload, restart."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, load_config
from syndicator.service.daemon import Service
from syndicator.service.systemd import Notifier
from syndicator.state.db import State
from tests.conftest import ROOT, SAMPLE_STORE, write
from tests.smtp_sink import Sink, free_port


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect(self, until: str, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if until in self.messages[-1]:
                return self.messages
        raise AssertionError(f"no {until!r} in {self.messages}")

    def drain(self, seconds: float) -> list[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def start(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "syndicator", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def daemon_config(install: Path, port: int, interval: int = 60) -> Path:
    text = install.read_text().replace("reload_interval = 1", f"reload_interval = {interval}")
    install.write_text(text + f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return install


def test_notify_ready_watchdog_reload_and_stop(install: Path, notify: NotifySocket) -> None:
    port = free_port()
    config = daemon_config(install, port)
    process = start(config, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    try:
        messages = notify.collect("READY=1")
        # READY only once the first cycle is done and HTTP listens.
        assert (install.parent.parent / "feeds" / "index.html").is_file()
        assert http_ok(f"http://127.0.0.1:{port}/healthz")
        assert not any("READY=1" in m for m in messages[:-1])
        notify.messages.clear()
        pings = notify.drain(2.2)
        assert sum("WATCHDOG=1" in m for m in pings) >= 3  # every half second
        # A good new configuration is applied...
        config.write_text(config.read_text().replace('title = "WCO News"', 'title = "Customs"'))
        notify.messages.clear()
        process.send_signal(signal.SIGHUP)
        messages = notify.collect("READY=1")
        assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in messages)
        deadline = time.monotonic() + 15
        index = install.parent.parent / "feeds" / "index.html"
        while "<h1>Customs</h1>" not in index.read_text():
            assert time.monotonic() < deadline, "reloaded configuration never applied"
            time.sleep(0.2)
        # ...a broken one is reported and the running one kept.
        config.write_text(config.read_text() + "\n[store]\nreload_interval = -1\n")
        notify.messages.clear()
        process.send_signal(signal.SIGHUP)
        notify.collect("READY=1")
        time.sleep(0.5)
        assert process.poll() is None
        assert http_ok(f"http://127.0.0.1:{port}/healthz")
        notify.messages.clear()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "reload failed, keeping the running configuration" in err
    assert any("STOPPING=1" in m for m in notify.collect("STOPPING=1", timeout=1))


def test_sigterm_then_restart_sends_no_duplicate(install: Path) -> None:
    port = free_port()
    with Sink() as sink:
        config = daemon_config(install, port, interval=1)
        (install.parent / "subscribers.toml").write_text(
            '[[subscriber]]\nemail = "desk@example.org"\nregions = ["americas"]\n'
            'cadence = "immediate"\n'
        )
        text = config.read_text().replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
        config.write_text(
            text + f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5\n'
        )
        process = start(config, {})
        try:
            deadline = time.monotonic() + 30
            while not http_ok(f"http://127.0.0.1:{port}/healthz"):
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
            write(
                install.parent.parent / "articles" / "chile.txt",
                "Chile Launches AEO\n\nChile Launches AEO\n\nChile news.\n",
            )
            while not sink.received:
                assert time.monotonic() < deadline + 30, "never mailed"
                time.sleep(0.1)
            time.sleep(0.5)  # the outcome is recorded
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                metrics = reply.read().decode()
            assert 'syndicator_mails_total{outcome="sent"} 1.0' in metrics
            assert 'syndicator_outbox_messages{status="sent"} 1.0' in metrics
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        again = start(config, {})
        try:
            deadline = time.monotonic() + 30
            while not http_ok(f"http://127.0.0.1:{port}/healthz"):
                assert time.monotonic() < deadline and again.poll() is None
                time.sleep(0.1)
            time.sleep(2.5)  # two more cycles
        finally:
            again.send_signal(signal.SIGTERM)
            again.communicate(timeout=60)
        assert [r.recipients for r in sink.received] == [["desk@example.org"]]


def test_startup_failure_exits_non_zero(install: Path) -> None:
    port = free_port()
    config = daemon_config(install, port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "syndicator", "--config", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "http.listen" in result.stderr or str(port) in result.stderr


def test_cycles_never_overlap(install: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cycle slower than the interval: the next one waits its turn, never runs alongside."""
    from syndicator.pipeline import Pipeline

    config = load_config(daemon_config(install, free_port(), interval=1))
    config = config.model_copy(update={"http": config.http.model_copy(update={"enabled": False})})
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    running = 0
    most = 0
    calls = 0
    real = Pipeline.cycle

    def slow_cycle(*args: object, **kwargs: object) -> object:
        nonlocal running, most, calls
        running += 1
        calls += 1
        most = max(most, running)
        try:
            time.sleep(1.5)  # longer than the one-second interval
            return real(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            running -= 1

    monkeypatch.setattr(Pipeline, "cycle", slow_cycle)

    async def scenario() -> None:
        state = State.open(config.state.url)
        service = Service(
            config, classifier, state, clock=lambda: datetime.now(UTC), notifier=Notifier({})
        )
        task = asyncio.create_task(service.run())
        await asyncio.sleep(5)
        service._on_signal(signal.SIGTERM)
        assert await task == 0
        state.close()

    asyncio.run(scenario())
    assert calls >= 2
    assert most == 1


def test_a_heartbeat_in_flight_at_sigterm_finishes_without_a_traceback(
    install: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler's shutdown cancels the jobs it still runs; a heartbeat being written
    then is waited for, not cancelled (which logged a traceback)."""
    from syndicator.state import coordination

    text = daemon_config(install, free_port()).read_text()
    install.write_text(text + "\n[service]\nheartbeat_seconds = 1\n")
    config = load_config(install)
    config = config.model_copy(update={"http": config.http.model_copy(update={"enabled": False})})
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    beats: list[tuple[float, float]] = []
    writing = threading.Event()
    real = coordination.heartbeat

    def slow_heartbeat(*args: Any, **kwargs: Any) -> None:
        began = time.monotonic()
        writing.set()
        time.sleep(1.5)  # a slow database
        real(*args, **kwargs)
        beats.append((began, time.monotonic()))

    monkeypatch.setattr(coordination, "heartbeat", slow_heartbeat)

    async def scenario() -> float:
        state = State.open(config.state.url)
        service = Service(
            config, classifier, state, clock=lambda: datetime.now(UTC), notifier=Notifier({})
        )
        task = asyncio.create_task(service.run())
        while not beats:  # the first beat, at start
            await asyncio.sleep(0.05)
        writing.clear()
        # The scheduler's next beat is under way: stop now.
        assert await asyncio.to_thread(writing.wait, 30)
        stopped_at = time.monotonic()
        service._on_signal(signal.SIGTERM)
        assert await task == 0
        state.close()
        return stopped_at

    with caplog.at_level(logging.INFO):
        stopped_at = asyncio.run(scenario())
    assert any(began < stopped_at < ended for began, ended in beats), beats
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert "stopped" in caplog.text


def test_notifier_speaks_to_abstract_sockets() -> None:
    name = f"syndicator-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_interval == 2.0
        assert notifier.ready("all good")
        assert server.recv(100) == b"READY=1\nSTATUS=all good"
    assert not Notifier({}).ready("nobody listens")
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None


UNIT = ROOT / "systemd" / "syndicator.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_is_hardened_and_verifies_cleanly() -> None:
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) < 2.0
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, check=False
    )
    assert verify.stdout == "" and verify.stderr == "", verify.stderr
    assert datetime.now(UTC).year >= 2024  # the check ran


TEMPLATE = ROOT / "systemd" / "syndicator@.service"


def unit_settings(text: str) -> list[str]:
    """A unit's settings, without comments and blank lines."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def readme_block(containing: str) -> str:
    """The README's shell block that contains ``containing``."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    found = [str(block) for block in blocks if containing in block]
    assert len(found) == 1, containing
    return found[0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_instance_template_and_the_loop_that_makes_instances(tmp_path: Path) -> None:
    """The README's example of several instances on one host: the template unit verifies
    and is as hardened as the single unit, and the README's loop makes configurations that
    load, share what must be shared and keep apart what must be each instance's own."""
    instance = tmp_path / "syndicator@node1.service"
    instance.write_text(TEMPLATE.read_text())
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, check=False
    )
    assert verify.stdout == "" and verify.stderr == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(instance)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) < 2.0
    # The same unit but for what makes it an instance.
    single, template = unit_settings(UNIT.read_text()), unit_settings(TEMPLATE.read_text())
    assert [line for line in template if line not in single] == [
        "Description=syndicator feed and notification service, instance %i",
        "After=network-online.target postgresql.service",
        "ExecStart=/usr/bin/env syndicator --config /etc/syndicator/%i.toml run",
        "StateDirectory=syndicator/%i",
    ]
    assert len(single) == len(template)
    # The configuration moved to PostgreSQL, with its files under the state directory as the
    # README's "Running as a service" says; the loop run on it.
    etc = tmp_path / "etc"
    etc.mkdir()
    url = "postgresql+psycopg://syndicator@db.example.org/syndicator"
    (etc / "syndicator.toml").write_text(
        (ROOT / "config" / "syndicator.toml")
        .read_text()
        .replace('path = "../articles"', 'path = "/srv/syndicator/articles"')
        .replace('output_dir = "../feeds"', 'output_dir = "/var/lib/syndicator/feeds"')
        .replace('url = "sqlite:///../state/syndicator.db"', f'url = "{url}"')
        .replace('maildir = "../mail"', 'maildir = "/var/lib/syndicator/mail"')
    )
    (etc / "subscribers.toml").write_text("")
    block = readme_block("syndicator@.service")
    loop = block[: block.index("done\n") + len("done\n")].replace("/etc/syndicator", str(etc))
    subprocess.run(["bash", "-euc", loop], check=True, timeout=60)
    configs = [load_config(etc / f"node{n}.toml") for n in (1, 2, 3)]
    state_directory = next(
        line.split("=", 1)[1] for line in template if line.startswith("StateDirectory=")
    )
    assert {config.state.url for config in configs} == {url}
    assert len({config.site.base_url for config in configs}) == 1
    assert len({config.http.listen for config in configs}) == 3
    assert len({config.service.instance_id for config in configs}) == 3
    for n, config in enumerate(configs, start=1):
        own = Path("/var/lib") / state_directory.replace("%i", f"node{n}")
        assert config.feeds.output_dir.is_relative_to(own), config.feeds.output_dir
        assert config.mail.maildir.is_relative_to(own), config.mail.maildir
    # The units the README enables are instances of this template.
    assert "systemctl enable --now syndicator@node1 syndicator@node2 syndicator@node3" in block


def test_store_watch_and_rebinding_http_on_reload(install: Path) -> None:
    port, new_port = free_port(), free_port()
    config = daemon_config(install, port, interval=300)
    config.write_text(config.read_text().replace("[store]\n", "[store]\nwatch = true\n"))
    process = start(config, {})
    store = install.parent.parent / "articles"
    feed = install.parent.parent / "feeds" / "west-central-africa.rss"
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"http://127.0.0.1:{port}/healthz"):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # the watcher is up
        write(
            store / "ghana.txt",
            "Ghana Opens AEO Programme\n\nGhana Opens AEO Programme\n\nGhana.\n",
        )
        # The interval is five minutes: only the watcher can publish it this soon.
        while "Ghana Opens AEO Programme" not in feed.read_text():
            assert time.monotonic() < deadline + 15, "store change never picked up"
            time.sleep(0.2)
        config.write_text(config.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{new_port}"))
        process.send_signal(signal.SIGHUP)
        while not http_ok(f"http://127.0.0.1:{new_port}/healthz"):
            assert time.monotonic() < deadline + 30, "never rebound"
            time.sleep(0.1)
        assert not http_ok(f"http://127.0.0.1:{port}/healthz")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
