"""Three ``syndicator run`` on one PostgreSQL, killed one at a time.

2,000 subscribers (immediate, and daily ones whose digest falls due during the test), a
slowed SMTP server in a process of its own, new articles while the instances run, and
five SIGKILLs of a random running instance at random moments, each restarted: at once,
or (two of the five) only after its lease has run out, so that what it held must be
taken over by the live instances. Every subscriber gets every article and the digest; a
second copy only of a message in flight at a kill, with the same Message-ID, at most 16
per kill; no message held by a killed instance waits longer than the lease (and the next
claim of a live instance) to go out; no traceback in any log; every instance ends with
the same feeds, byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
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
LATE_RESTARTS = 2  # of the kills, restarted only after the lease (and the slack) ran out
IMMEDIATE = 1800
DAILY = 200
LEASE = 10
# After a lease expires, the next claim of a live instance: its next round (every second)
# or, while it delivers, when its own claimed messages run low; slower on a loaded
# two-core machine.
SLACK = 10
ARTICLES = 3
# Seconds the SMTP server takes per message: delivery lasts while the kills come.
SINK_DELAY = 0.01


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
        self.restart_at: float | None = None  # killed, to be started again then

    @property
    def name(self) -> str:
        return self.config.stem

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        self.restart_at = None
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command(self.config, "run"), stdout=out, stderr=subprocess.STDOUT, env=ENV
            )

    def ready(self) -> bool:
        """Running and through its first round (the daemon logs a line per cycle): it
        claims and delivers from now on."""
        if self.process is None or self.process.poll() is not None:
            return False
        return " cycle: " in self.log.read_text(errors="replace")

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


def restart_due(instances: list[Instance]) -> None:
    for instance in instances:
        if instance.restart_at is not None and time.time() >= instance.restart_at:
            instance.start()


class Takeovers(threading.Thread):
    """After each kill, how long until nothing the victim held is under its lease any more:
    claimed again by a live instance (or given back by the victim's restart). Rows still
    the dead process's are those whose lease ends by the kill plus the lease (it renewed
    them last before the kill; a claim afterwards, even by its restart under the same
    name, leases them longer)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url)
        self.lock = threading.Lock()
        self.watching: dict[int, tuple[float, str, list[int]]] = {}
        self.seconds: dict[int, float] = {}
        self.done = threading.Event()

    def watch(self, number: int, killed_at: float, victim: str, ids: list[int]) -> None:
        with self.lock:
            self.watching[number] = (killed_at, victim, ids)

    def run(self) -> None:
        while not self.done.wait(0.1):
            with self.lock:
                watching = dict(self.watching)
            for number, (killed_at, victim, ids) in watching.items():
                if ids and self._still_held(killed_at, victim, ids):
                    continue
                with self.lock:
                    self.seconds[number] = time.time() - killed_at
                    del self.watching[number]
        self.engine.dispose()

    def _still_held(self, killed_at: float, victim: str, ids: list[int]) -> bool:
        ends_by = datetime.fromtimestamp(killed_at + LEASE + 0.5, UTC)
        with self.engine.connect() as conn:
            held = conn.execute(
                text(
                    "SELECT count(*) FROM messages WHERE status = 'sending' "
                    "AND lease_owner = :victim AND lease_expires_at <= :ends_by "
                    f"AND id IN ({', '.join(str(key) for key in ids)})"
                ),
                {"victim": victim, "ends_by": ends_by},
            ).scalar()
        return bool(held)


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
        [
            sys.executable,
            "-m",
            "tests.faults.sink_process",
            str(smtp_port),
            str(SINK_DELAY),
            str(sink_log),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=ENV,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    instances = [
        Instance(instance_config(install, f"node{n}", smtp_port), logs) for n in range(INSTANCES)
    ]
    # Per kill: when, whom, whether the restart came late, and the Message-IDs of what the
    # victim held (claimed under its lease: in conversation with the server, or next).
    kills: list[tuple[float, str, bool]] = []
    held: list[set[str]] = []
    # The first kill's victim comes back late, while the others deliver: they must take
    # over what it held. Another late one falls at random.
    late = {0, *rng.sample(range(1, KILLS), LATE_RESTARTS - 1)}
    takeovers = Takeovers(load_config(install).state.url)
    takeovers.start()
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
        # The kills come while the instances deliver, each while another instance is up to
        # take over what the victim held.
        wait_for(lambda: len(read_log(sink_log)) >= 50, 120, "the first messages")
        for number in range(KILLS):

            def two_ready() -> bool:
                restart_due(instances)
                return sum(instance.ready() for instance in instances) >= 2

            wait_for(two_ready, 120, f"{context}: two instances up before kill {number + 1}")
            time.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice([instance for instance in instances if instance.ready()])
            victim.kill()
            killed_at = time.time()
            rows = query(
                install,
                "SELECT id, message_id FROM messages WHERE status = 'sending' "
                f"AND lease_owner = '{victim.name}'",
            )
            held.append({str(message_id) for _, message_id in rows})
            takeovers.watch(number, killed_at, victim.name, [int(str(key)) for key, _ in rows])
            if number in late:
                victim.restart_at = killed_at + LEASE + SLACK + 2
            else:
                victim.start()
            kills.append((killed_at, victim.name, number in late))

        def all_sent() -> bool:
            restart_due(instances)
            return (
                query(install, "SELECT count(*) FROM messages WHERE status <> 'sent'")[0][0] == 0
                and query(install, "SELECT count(*) FROM matches WHERE message IS NULL")[0][0] == 0
            )

        # Everything is sent in the end.
        wait_for(all_sent, 240, f"{context}: every message sent")

        def all_up() -> bool:
            restart_due(instances)
            return all(instance.ready() for instance in instances)

        wait_for(all_up, 120, f"{context}: every instance up again")
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
        takeovers.done.set()
        takeovers.join(timeout=30)
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
    twice = {message_id for message_id, copies in received.items() if copies > 1}
    # After each kill: how long until every message the victim held had gone out again.
    delivered = [
        max(
            (
                min((at for at, _, mid in arrivals if mid == message_id and at > killed_at),
                    default=float("inf"))
                - killed_at
                for message_id in holding
            ),
            default=0.0,
        )
        for (killed_at, _, _), holding in zip(kills, held, strict=True)
    ]  # fmt: skip
    taken = [takeovers.seconds.get(number, float("inf")) for number in range(len(kills))]
    print(
        f"{context}: {len(messages)} messages, {len(arrivals)} arrivals, {len(twice)} twice; "
        "kills (victim, restart, messages held, sent twice, taken over after, all sent after): "
        + ", ".join(
            f"({name}, {'late' if late_restart else 'at once'}, {len(holding)}, "
            f"{len(holding & twice)}, {seconds:.1f} s, {wait:.1f} s)"
            for (_, name, late_restart), holding, seconds, wait in zip(
                kills, held, taken, delivered, strict=True
            )
        )
    )
    # Every message stored was received; nothing else was.
    missing = sorted(set(messages) - set(received))
    assert not missing, (
        f"{context}: {len(missing)} of {len(messages)} messages never reached the server "
        f"({len(arrivals)} arrivals), e.g. {missing[:3]}"
    )
    unknown = sorted(set(received) - set(messages))
    assert not unknown, f"{context}: {unknown[:3]}"
    # Every subscriber got every article: immediate ones in their messages, daily ones in
    # their digest, one digest each.
    by_recipient = Counter(recipient for recipient, _ in messages.values())
    forgotten = sorted(set(addresses) - set(by_recipient))
    assert not forgotten, f"{context}: {len(forgotten)} subscribers got nothing: {forgotten[:3]}"
    digests = Counter(recipient for recipient, kind in messages.values() if kind == "daily")
    assert sorted(digests) == addresses[IMMEDIATE:], context
    assert set(digests.values()) == {1}, context
    unmailed = query(
        install,
        "SELECT count(*) FROM subscribers s JOIN articles a ON a.seq > s.added_seq "
        "LEFT JOIN matches m ON m.subscriber_id = s.id AND m.article_id = a.id "
        "WHERE m.message IS NULL",
    )[0][0]
    assert unmailed == 0, context
    # Never one article twice under different Message-IDs: every message carries matches
    # of its own (a second message for the same articles would carry none).
    empty = query(
        install,
        "SELECT count(*) FROM messages g WHERE NOT EXISTS "
        "(SELECT 1 FROM matches m WHERE m.message = g.id)",
    )[0][0]
    assert empty == 0, context
    # A second copy only of a message in flight at a kill, at most 16 per kill.
    assert max(received.values()) <= 2, context
    unexplained = sorted(twice - set().union(*held))
    assert not unexplained, f"{context}: sent twice, not in flight at a kill: {unexplained[:3]}"
    for holding in held:
        assert len(holding & twice) <= 16, context
    # Nothing a killed instance held waited for it longer than its lease (and the next
    # claim of a live instance). A late restart came after that: a live instance took
    # over what the victim held, and sent it.
    for (_, name, _), seconds in zip(kills, taken, strict=True):
        assert seconds <= LEASE + SLACK, (context, name, seconds)
    assert max(delivered) < float("inf"), context
    for log in logs.iterdir():
        text_of_log = log.read_text(errors="replace")
        assert "Traceback" not in text_of_log, (context, log.name, text_of_log[-3000:])
