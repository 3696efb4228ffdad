"""Several processes on one state database: schema creation, one cycle at a time, and no
mail twice. Every test here runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import subprocess
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

from tests.faults.helpers import ENV, add_article, command, immediate, run, with_sample_store

ROUNDS = 2
SUBSCRIBERS = 200


def together(config: Path, *args: str, count: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """Start ``count`` copies of a command at once; wait for them all."""
    processes = [
        subprocess.Popen(
            command(config, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(count)
    ]
    finished = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return finished


def maildir_recipients(install: Path) -> Counter[tuple[str, str]]:
    """(recipient, Message-ID) of every message delivered into the Maildir."""
    found: Counter[tuple[str, str]] = Counter()
    for path in (install.parent.parent / "mail" / "new").iterdir():
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[(str(message["To"]), str(message["Message-ID"]))] += 1
    return found


def test_commands_started_together_on_an_empty_database_all_come_up(install: Path) -> None:
    started = together(install, "articles", "--json", count=4)
    for finished in started:
        assert finished.returncode == 0, finished.stderr
        assert finished.stdout.strip() == "[]"
        assert "Traceback" not in finished.stderr


def test_two_run_once_together_mail_every_subscriber_once(install: Path) -> None:
    addresses = [f"reader{n:03}@example.org" for n in range(SUBSCRIBERS)]
    (install.parent / "subscribers.toml").write_text(immediate(addresses))
    store = with_sample_store(install)
    baseline = run(install, "run", "--once")
    assert baseline.returncode == 0, baseline.stderr
    for round_ in range(ROUNDS):
        add_article(
            store, f"chile-{round_}.txt", f"Chile Launches AEO Programme {round_}", "Chile did."
        )
        for finished in together(install, "run", "--once"):
            assert finished.returncode == 0, finished.stderr
            assert "Traceback" not in finished.stderr, finished.stderr
        delivered = maildir_recipients(install)
        recipients = Counter(recipient for recipient, _ in delivered)
        assert set(recipients) == set(addresses)
        # One message per subscriber and round, each stored once.
        assert set(recipients.values()) == {round_ + 1}, round_
        assert set(delivered.values()) == {1}
