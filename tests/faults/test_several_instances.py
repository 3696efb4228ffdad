"""Three ``syndicator run`` on one PostgreSQL, killed one at a time.

2,000 subscribers (immediate, and daily ones whose digest falls due during the test), a
slowed SMTP server in a process of its own, new articles while the instances run, and
five SIGKILLs of a random instance at random moments, each restarted at once. Every
subscriber gets everything; a second copy only of a message in flight at a kill, with
the same Message-ID, at most 16 per kill; no message waits longer than the lease after a
kill; no traceback in any log; every instance ends with the same feeds, byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from syndicator.config import load_config
from tests.conftest import ROOT
from tests.faults.helpers import ENV, add_article, command, query, wait_for, with_sample_store
from tests.faults.sink_process import read_log
from tests.smtp_sink import free_port

pytestmark = [pytest.mark.faults, pytest.mark.slow]

INSTANCES = 3
KILLS = 5
IMMEDIATE = 1800
DAILY = 200
LEASE = 10
# After a lease expires, the next claim of a live instance: its next round (every second)
# or its next commit, slower on a loaded two-core machine.
SLACK = 10
ARTICLES = 3


def seed() -> int:
    return int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1 << 30))


def subscribers_file(path: Path) -> list[str]:
    addresses = []
    lines = []
    for number in range(IMMEDIATE + DAILY):
        address = f"reader{number:04}@example.org"
        addresses.append(address)
        cadence = "immediate" if number < IMMEDIATE else "daily"
        lines.append(f'[[subscriber]]\nemail = "{address}"\ncadence = "{cadence}"\n')
    path.write_text("\n".join(lines))
    return addresses


def instance_config(install: Path, name: str, smtp_port: int) -> Path:
    text = install.read_text().replace('output_dir = "../feeds"', f'output_dir = "../feeds-{name}"')
    text = text.replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
    text += (
        f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\ntimeout = 10\npool_size = 4\n'
        f'\n[http]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'\n[service]\ninstance_id = "{name}"\nlease_seconds = {LEASE}\nheartbeat_seconds = 2\n'
    )
    path = install.with_name(f"{name}.toml")
    path.write_text(text)
    return path


class Instance:
    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = self.logs / f"{self.config.stem}-{self.runs}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command(self.config, "run"), stdout=out, stderr=subprocess.STDOUT, env=ENV
            )

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def count(config: Path, sql: str) -> int:
    """A count from the state database; -1 while it cannot be read (not created yet)."""
    try:
        return int(str(query(config, sql)[0][0]))
    except SQLAlchemyError:
        return -1


def execute(config: Path, sql: str) -> None:
    engine = create_engine(load_config(config).state.url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def feeds(config: Path) -> dict[str, bytes]:
    root = config.parent.parent / f"feeds-{config.stem}"
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.mark.postgresql_only
def test_three_instances_killed_five_times_lose_nothing_and_agree(
    install: Path, tmp_path: Path
) -> None:
    chosen = seed()
    rng = random.Random(chosen)
    context = f"seed {chosen} (FAULTS_SEED={chosen} to replay)"
    addresses = subscribers_file(install.parent / "subscribers.toml")
    store = with_sample_store(install)
    sink_log = tmp_path / "sink.log"
    smtp_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.sink_process", str(smtp_port), "0.005", str(sink_log)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=ENV,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    instances = [
        Instance(instance_config(install, f"node{n}", smtp_port), logs) for n in range(INSTANCES)
    ]
    in_flight: list[set[str]] = []
    kills: list[tuple[float, str]] = []
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        for instance in instances:
            instance.start()
        # Up, with the baseline recorded: nothing is mailed for the store as it was.
        wait_for(
            lambda: count(install, "SELECT count(*) FROM subscribers") == len(addresses),
            120,
            "the subscribers synced",
        )
        for number in range(ARTICLES):
            add_article(
                store, f"new-{number}.txt", f"Chile Launches AEO Stage {number}", "Chile did."
            )
            time.sleep(rng.uniform(1.0, 3.0))
        # The daily subscribers' digest falls due now, while the instances deliver.
        due = datetime.now(UTC) + timedelta(seconds=2)
        execute(
            install,
            f"UPDATE subscribers SET next_digest_at = '{due.isoformat()}' WHERE cadence = 'daily'",
        )
        # The kills come while the instances deliver.
        wait_for(lambda: len(read_log(sink_log)) >= 50, 120, "the first messages")
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice(instances)
            victim.kill()
            kills.append((time.time(), victim.config.stem))
            in_flight.append(
                {
                    str(message_id)
                    for (message_id,) in query(
                        install,
                        "SELECT message_id FROM messages WHERE status = 'sending' "
                        f"AND lease_owner = '{victim.config.stem}'",
                    )
                }
            )
            victim.start()
        # Everything is sent in the end.
        wait_for(
            lambda: (
                query(
                    install,
                    "SELECT count(*) FROM messages WHERE status <> 'sent'",
                )[0][0]
                == 0
                and query(install, "SELECT count(*) FROM matches WHERE message IS NULL")[0][0] == 0
            ),
            240,
            f"{context}: every message sent",
        )
        time.sleep(3)  # the last outcomes logged; feeds caught up (interval 1 s)
        wait_for(
            lambda: (
                feeds(instances[0].config) == feeds(instances[1].config)
                and feeds(instances[1].config) == feeds(instances[2].config)
            ),
            60,
            f"{context}: the instances' feeds agree",
        )
    finally:
        for instance in instances:
            instance.stop()
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=30)
        if sink.stdout is not None:
            sink.stdout.close()
    arrivals = read_log(sink_log)
    messages = {
        str(message_id): (str(recipient), str(kind))
        for message_id, recipient, kind in query(
            install, "SELECT message_id, recipient, kind FROM messages"
        )
    }
    received = Counter(message_id for _, _, message_id in arrivals)
    # Every message stored was received; nothing else was.
    missing = sorted(set(messages) - set(received))
    assert not missing, (
        f"{context}: {len(missing)} of {len(messages)} messages never reached the server "
        f"({len(arrivals)} arrivals), e.g. {missing[:3]}"
    )
    unknown = sorted(set(received) - set(messages))
    assert not unknown, f"{context}: {unknown[:3]}"
    # Every subscriber got every article: immediate ones in their messages, daily ones in
    # their digest.
    by_recipient = Counter(recipient for recipient, _ in messages.values())
    forgotten = sorted(set(addresses) - set(by_recipient))
    assert not forgotten, f"{context}: {len(forgotten)} subscribers got nothing: {forgotten[:3]}"
    digests = [mid for mid, (_, kind) in messages.items() if kind == "daily"]
    assert len(digests) == DAILY, context
    unmailed = query(
        install,
        "SELECT count(*) FROM subscribers s JOIN articles a ON a.seq > s.added_seq "
        "LEFT JOIN matches m ON m.subscriber_id = s.id AND m.article_id = a.id "
        "WHERE m.message IS NULL",
    )[0][0]
    assert unmailed == 0, context
    # A second copy only of a message in flight at a kill, at most 16 per kill.
    twice = {message_id for message_id, count in received.items() if count > 1}
    assert max(received.values()) <= 2, context
    unexplained = sorted(twice - set().union(*in_flight))
    assert not unexplained, f"{context}: sent twice, not in flight at a kill: {unexplained[:3]}"
    for flying in in_flight:
        assert len(flying & twice) <= 16, context
    # No message in flight at a kill waited for the instance's restart longer than the lease
    # (and the next claim of a live instance) to go out again.
    for (killed_at, _), flying in zip(kills, in_flight, strict=True):
        for at, _, message_id in arrivals:
            if message_id in flying and at > killed_at:
                assert at - killed_at <= LEASE + SLACK, (context, message_id, at - killed_at)
    for log in logs.iterdir():
        text_of_log = log.read_text(errors="replace")
        assert "Traceback" not in text_of_log, (context, log.name, text_of_log[-3000:])
