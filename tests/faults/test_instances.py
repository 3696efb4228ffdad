"""Instances sharing the outbox, killed mid-delivery: a dead instance's messages wait for
its lease, never for its restart, and a live instance never takes messages under a live
lease. Real processes, a real SMTP server; on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.helpers import (
    ENV,
    add_article,
    command,
    immediate,
    query,
    run,
    use_smtp,
    wait_for,
    with_sample_store,
)
from tests.smtp_sink import Sink, SinkHandler

pytestmark = pytest.mark.faults

SUBSCRIBERS = 300
LEASE = 6


class TimedHandler(SinkHandler):
    """A slow server that notes when each message arrived."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.arrivals: list[tuple[float, str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if reply.startswith("250"):
            message_id = ""
            for line in (envelope.original_content or b"").split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    message_id = line.split(b":", 1)[1].strip().decode()
                    break
            with self.lock:
                self.arrivals.append((time.time(), envelope.rcpt_tos[0], message_id))
        return reply


def _timestamp(value: object) -> float:
    """A lease expiry as read back raw: a datetime (PostgreSQL) or text (SQLite), in UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def as_instance(config: Path, name: str) -> Path:
    """A copy of ``config`` for the instance ``name`` (same database, store and server)."""
    copy = config.with_name(f"{name}.toml")
    copy.write_text(
        config.read_text() + f'\n[service]\ninstance_id = "{name}"\nlease_seconds = {LEASE}\n'
    )
    return copy


def test_a_killed_instance_s_messages_go_out_after_its_lease_and_only_then(install: Path) -> None:
    addresses = [f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)]
    handler = TimedHandler()
    with Sink(handler) as sink:
        config = use_smtp(install, sink.port, immediate(addresses))
        alpha, beta = as_instance(config, "alpha"), as_instance(config, "beta")
        store = with_sample_store(install)
        baseline = run(alpha, "run", "--once")
        assert baseline.returncode == 0, baseline.stderr
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        process = subprocess.Popen(
            command(alpha, "run", "--once"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        wait_for(lambda: len(sink.received) >= 40 or process.poll() is not None, 120, "mail")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        killed_at = time.time()
        leased = query(
            config,
            "SELECT recipient, lease_expires_at FROM messages WHERE status = 'sending' "
            "AND lease_owner = 'alpha'",
        )
        assert leased, "the kill came after the last message"
        in_flight = {str(recipient) for recipient, _ in leased}
        expiry = min(_timestamp(expires) for _, expires in leased)
        assert expiry > killed_at
        # Another instance, at once: everything else goes out; alpha's messages stay alpha's
        # until its lease expires.
        second = run(beta, "run", "--once")
        assert second.returncode == 0, second.stderr
        assert "Traceback" not in second.stderr
        time.sleep(max(0.0, expiry + 0.5 - time.time()))
        third = run(beta, "run", "--once")
        assert third.returncode == 0, third.stderr
        arrivals = list(handler.arrivals)
    counts = Counter(recipient for _, recipient, _ in arrivals)
    assert set(counts) == set(addresses), f"lost: {set(addresses) - set(counts)}"
    twice = {recipient for recipient, count in counts.items() if count > 1}
    assert twice <= in_flight
    assert len(twice) <= 16
    assert max(counts.values()) <= 2
    # Nobody touched alpha's messages while its lease was live: what reached the server
    # for them after the kill came once the lease had expired.
    for at, recipient, _ in arrivals:
        if recipient in in_flight and at > killed_at + 1.0:
            assert at >= expiry, (recipient, at - expiry)
    ids = {recipient: {mid for _, to, mid in arrivals if to == recipient} for recipient in twice}
    assert all(len(found) == 1 for found in ids.values())  # the same Message-ID
    rows = query(config, "SELECT status, count(*) FROM messages GROUP BY status")
    assert {str(status): count for status, count in rows} == {"sent": SUBSCRIBERS}
