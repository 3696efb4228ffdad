"""The reputation circuit breaker: too many bounces pause sending, queueing goes on,
the daemon's /healthz says why and /metrics counts, and `mail resume` starts it again."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import textwrap
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.cli import main
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, BouncesConfig, Config, load_config
from syndicator.mail import breaker
from syndicator.mail.unsubscribe import load_secret
from syndicator.mail.verp import make_token
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state import bounces as store
from syndicator.state.db import State
from syndicator.state.outbox import count_by_status
from tests.conftest import DATA_DIR, SAMPLE_STORE, write
from tests.service.test_daemon import daemon_config, start
from tests.smtp_sink import free_port

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
READERS = [f"reader{n:02}@example.net" for n in range(20)]


def configure(install: Path) -> Config:
    entries = "".join(
        f'\n[[subscriber]]\nemail = "{address}"\nregions = ["americas"]\ncadence = "immediate"\n'
        for address in READERS
    )
    (install.parent / "subscribers.toml").write_text(entries)
    text = install.read_text().replace(
        "[mail]\n", '[mail]\nbounce_address = "bounces@news.example.org"\n'
    )
    text += textwrap.dedent(
        """
        [bounces]
        maildir = "../bounces"
        min_messages = 10
        max_bounce_rate = 0.05
        """
    )
    install.write_text(text)
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return load_config(install)


def bounce(config: Config, state: State, address: str) -> None:
    """A Postfix DSN for the message sent to ``address``, into the bounce Maildir."""
    with state.engine.connect() as conn:
        (message,) = store.everything_about(conn, address)["messages"]
    secret = load_secret(state, None)
    text = (DATA_DIR / "bounces" / "postfix-dsn-hard.eml").read_text()
    data = text.replace("{TOKEN}", make_token(secret, message["id"])).replace(
        "{RECIPIENT}", address
    )
    assert config.bounces.maildir is not None
    write(config.bounces.maildir / "new" / f"{message['id']}.bounce", data)


def test_bounce_rate_pauses_sending_until_resumed(
    install: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(install)
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    state = State.open(config.state.url)
    try:
        run_cycle(config, classifier, state, now=T0)
        write(config.store.path / "a.txt", "Chile Launches AEO\n\nChile Launches AEO\n\nIt did.\n")
        run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
        assert asyncio.run(deliver_due(config, state, clock=lambda: T0)).sent == 20
        for address in READERS[:2]:  # 10 % hard bounces, the limit is 5 %
            bounce(config, state, address)
        with caplog.at_level(logging.ERROR, logger="syndicator"):
            run_cycle(config, classifier, state, now=T0 + timedelta(minutes=2))
            run_cycle(config, classifier, state, now=T0 + timedelta(minutes=3))
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert "sending paused: hard bounce rate 10.00% over the last 20 messages" in errors[0]
        assert "syndicator mail resume" in errors[0]
        # Queueing goes on; sending does not.
        write(config.store.path / "b.txt", "Peru Opens Lane\n\nPeru Opens Lane\n\nIt did.\n")
        run_cycle(config, classifier, state, now=T0 + timedelta(minutes=4))
        assert asyncio.run(deliver_due(config, state, clock=lambda: T0)).sent == 0
        with state.engine.connect() as conn:
            assert count_by_status(conn).get("pending") == 18
    finally:
        state.close()

    # The daemon says why on /healthz and counts on /metrics.
    port = free_port()
    daemon = start(daemon_config(install, port), {})
    try:
        health: dict[str, object] = {}
        deadline = time.monotonic() + 30
        while "mail" not in health:
            assert time.monotonic() < deadline, health
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.loads(r.read())
            except OSError:
                continue
        assert str(health["mail"]).startswith("sending paused: hard bounce rate 10.00%")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "syndicator_sending_paused 1.0" in metrics
        assert 'syndicator_bounce_reports{kind="hard"} 2.0' in metrics
        assert 'syndicator_recent_rate{kind="bounce"} 0.1' in metrics
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0

    source = str(config.source)
    capsys.readouterr()
    assert main(["--config", source, "mail", "status"]) == 0
    assert "sending is paused: hard bounce rate" in capsys.readouterr().out
    assert main(["--config", source, "mail", "resume"]) == 0
    assert "sending resumed" in capsys.readouterr().out
    state = State.open(config.state.url)
    try:
        # The rates start again from the next message: no immediate second pause.
        assert breaker.evaluate(state, config.bounces) is None
        assert asyncio.run(deliver_due(config, state, clock=lambda: T0)).sent == 18
    finally:
        state.close()
    assert main(["--config", source, "mail", "status"]) == 0
    assert "sending is on" in capsys.readouterr().out


def test_complaint_rate_limit_is_checked_before_bounces() -> None:
    limits = BouncesConfig(min_messages=100)
    rates = breaker.Rates(sent=1000, bounce_rate=0.2, complaint_rate=0.004)
    reason = breaker.trip_reason(rates, limits)
    assert reason is not None and reason.startswith("complaint rate 0.40%")
    assert breaker.trip_reason(breaker.Rates(99, 0.5, 0.5), limits) is None
    assert breaker.trip_reason(breaker.Rates(1000, 0.05, 0.003), limits) is None
