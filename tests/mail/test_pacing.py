"""Pacing per recipient domain: a domain that says "slow down" is held back, alone.

A real SMTP server (aiosmtpd) answers 421 4.7.0 at RCPT for every address of one domain;
mail to the other domains goes out in the same run. The rate limits are checked with a
clock and a sleep handed in, so no test waits on real time.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, load_config
from syndicator.mail.pacing import PacedTransport, asks_to_back_off
from syndicator.mail.transport import Delivery, Outcome
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state import bounces as store
from syndicator.state.db import State
from tests.conftest import SAMPLE_STORE, write
from tests.smtp_sink import Sink

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SLOW = [f"reader{n}@slow.example" for n in range(3)]
FAST = [f"reader{n}@fast.example" for n in range(3)] + ["desk@other.example"]


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


def test_a_domain_answering_421_is_held_back_while_others_flow(install: Path, sink: Sink) -> None:
    for address in SLOW:
        sink.handler.refuse[address] = "421 4.7.0 Try again later, closing connection"
    entries = "".join(
        f'\n[[subscriber]]\nemail = "{address}"\nregions = ["americas"]\ncadence = "immediate"\n'
        for address in SLOW + FAST
    )
    (install.parent / "subscribers.toml").write_text(entries)
    text = install.read_text().replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
    text += textwrap.dedent(
        f"""
        [mail.smtp]
        host = "127.0.0.1"
        port = {sink.port}
        timeout = 5
        pool_size = 1

        [mail.rate_limits]
        "*" = 1000
        "Fast.example" = 500
        """
    )
    install.write_text(text)
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    config = load_config(install)
    assert config.mail.rate_limits == {"*": 1000.0, "fast.example": 500.0}
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    state = State.open(config.state.url)
    try:
        run_cycle(config, classifier, state, now=T0)
        write(
            config.store.path / "chile.txt",
            "Chile Launches AEO Programme\n\nChile Launches AEO Programme\n\nIt did.\n",
        )
        later = T0 + timedelta(minutes=1)
        run_cycle(config, classifier, state, now=later)
        report = asyncio.run(deliver_due(config, state, clock=lambda: later))
        with state.engine.connect() as conn:
            statuses = {
                address: [m["status"] for m in store.everything_about(conn, address)["messages"]]
                for address in SLOW + FAST
            }
    finally:
        state.close()
    assert sorted(r.recipients[0] for r in sink.handler.received) == sorted(FAST)
    assert report.sent == len(FAST) and report.retry == len(SLOW)
    # The slow domain was asked once; its other messages waited without a connection.
    assert [a for a in sink.handler.rcpt_attempts if a.endswith("@slow.example")] == [SLOW[0]]
    assert all(statuses[address] == ["retry"] for address in SLOW), statuses
    assert all(statuses[address] == ["sent"] for address in FAST), statuses


class Recorder:
    """A transport answering from a script, and a clock and sleep that record waits."""

    def __init__(self, replies: dict[str, Delivery] | None = None) -> None:
        self.now = 100.0
        self.sent: list[tuple[float, str]] = []
        self.slept: list[float] = []
        self.replies = replies or {}

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        self.sent.append((self.now, recipient))
        return self.replies.get(recipient, Delivery(Outcome.SENT, 250, "250 OK (DATA)"))

    async def close(self) -> None:
        return None


def test_rate_limits_space_messages_per_domain_and_overall() -> None:
    recorder = Recorder()
    paced = PacedTransport(
        recorder, {"gmail.com": 2.0, "*": 10.0}, clock=recorder.clock, sleep=recorder.sleep
    )

    async def run() -> None:
        for recipient in ["a@gmail.com", "b@gmail.com", "c@gmail.com", "d@other.org"]:
            await paced.send(b"x", sender="s@example.org", recipient=recipient)

    asyncio.run(run())
    times = {recipient: at - 100.0 for at, recipient in recorder.sent}
    # gmail.com: one every 0.5 s; other.org only waits for the overall 10 per second.
    assert times["a@gmail.com"] == 0.0
    assert times["b@gmail.com"] == pytest.approx(0.5)
    assert times["c@gmail.com"] == pytest.approx(1.0)
    assert times["d@other.org"] == pytest.approx(1.1)


def test_back_off_doubles_and_ends_when_the_domain_accepts() -> None:
    slow = Delivery(Outcome.TEMPORARY, 451, "451 4.7.1 Rate limited, slow down (RCPT)")
    recorder = Recorder({"a@slow.example": slow})
    paced = PacedTransport(recorder, {}, clock=recorder.clock, sleep=recorder.sleep)

    async def send(recipient: str) -> Delivery:
        return await paced.send(b"x", sender="s@example.org", recipient=recipient)

    first = asyncio.run(send("a@slow.example"))
    assert first is slow and list(paced.backing_off()) == ["slow.example"]
    deferred = asyncio.run(send("b@slow.example"))
    assert deferred.outcome is Outcome.TEMPORARY and "slow down" in deferred.detail
    assert asyncio.run(send("c@fast.example")).outcome is Outcome.SENT
    recorder.now += 61
    assert asyncio.run(send("a@slow.example")) is slow
    assert paced.backing_off()["slow.example"] == pytest.approx(120)  # doubled
    recorder.now += 121
    recorder.replies.clear()
    assert asyncio.run(send("a@slow.example")).outcome is Outcome.SENT
    assert paced.backing_off() == {}
    assert [r for _, r in recorder.sent].count("b@slow.example") == 0


def test_only_recipient_replies_count_as_a_domain_asking_to_slow_down() -> None:
    assert asks_to_back_off(Delivery(Outcome.TEMPORARY, 421, "421 4.7.0 later (RCPT)"))
    assert asks_to_back_off(Delivery(Outcome.TEMPORARY, 450, "450 4.7.1 greylisted (DATA)"))
    # The relay's own greeting or a full mailbox are not a domain's rate limit.
    assert not asks_to_back_off(Delivery(Outcome.TEMPORARY, 421, "421 4.3.2 down (connect)"))
    assert not asks_to_back_off(Delivery(Outcome.TEMPORARY, 452, "452 4.2.2 full (RCPT)"))
    assert not asks_to_back_off(Delivery(Outcome.PERMANENT, 550, "550 5.7.1 no (RCPT)"))
