"""Bounces and complaints: the corpus of report shapes, the policy, and hostile reports.

Every report in ``tests/data/bounces`` was written for these tests in the shape a real
MTA or feedback loop sends; ``{TOKEN}`` and ``{RECIPIENT}`` are filled in with the
return path of a message really delivered (into a Maildir) and its recipient.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.mail import roster
from syndicator.mail.bounces import Kind, parse_report
from syndicator.mail.deliver import deliver
from syndicator.mail.feedback import (
    PROCESSED_FOLDER,
    Policy,
    act_on_report,
    process_maildir,
    process_path,
)
from syndicator.mail.subscribers import Subscriber
from syndicator.mail.suppression import is_suppressed
from syndicator.mail.transport import MaildirTransport
from syndicator.mail.verp import find_tokens, make_token, message_key_of, return_path
from syndicator.state import bounces as store
from syndicator.state.db import State
from syndicator.state.outbox import NewMessage, queue_message
from syndicator.state.subscribers import find_subscriber
from tests.conftest import DATA_DIR

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = b"s" * 32
BOUNCE_ADDRESS = "bounces@news.example.org"
CORPUS = DATA_DIR / "bounces"

# file -> (kind, status, the subscriber's status afterwards with the default policy)
EXPECTED = {
    "postfix-dsn-hard.eml": (Kind.HARD, "5.1.1", "suspended"),
    "postfix-dsn-mailbox-full-failed.eml": (Kind.SOFT, "4.2.2", "active"),
    "dsn-delayed.eml": (Kind.DELAYED, "4.4.1", "active"),
    "exchange-dsn.eml": (Kind.HARD, "5.1.10", "suspended"),
    "exim-text.eml": (Kind.HARD, "5.1.1", "suspended"),
    "qmail-text-soft.eml": (Kind.SOFT, "4.2.2", "active"),
    "gmail-text.eml": (Kind.HARD, "5.1.1", "suspended"),
    "arf-abuse.eml": (Kind.COMPLAINT, "", "unsubscribed"),
    "arf-not-spam.eml": (Kind.OTHER, "", "active"),
    "out-of-office.eml": (Kind.AUTO_REPLY, "", "active"),
    "vacation-no-header.eml": (Kind.AUTO_REPLY, "", "active"),
}


_OPEN: list[State] = []


@pytest.fixture(autouse=True)
def _close_states() -> Iterator[None]:
    """Every state ``mail_everyone`` opened is closed after its test."""
    yield
    while _OPEN:
        _OPEN.pop().close()


@dataclass
class Mailed:
    state: State
    keys: dict[str, int]  # recipient -> message row id


def mail_everyone(tmp_path: Path, *addresses: str, url: str) -> Mailed:
    """A state (at ``url``) where each address subscribed and was sent one message (into
    a Maildir under ``tmp_path``)."""
    state = State.open(url)
    _OPEN.append(state)
    keys: dict[str, int] = {}
    with state.transaction() as conn:
        for number, address in enumerate(addresses):
            roster.add_subscriber(conn, Subscriber(email=address, cadence="immediate"), now=T0)
            record = find_subscriber(conn, address)
            assert record is not None
            queue_message(
                conn,
                NewMessage(
                    record.id,
                    "immediate",
                    f"<m{number}@news.example.org>",
                    address,
                    b"From: news@news.example.org\r\nTo: " + address.encode() + b"\r\n\r\nHi\r\n",
                ),
                now=T0,
            )
    senders: dict[str, str] = {}

    class Recording(MaildirTransport):
        async def send(self, message: bytes, *, sender: str, recipient: str):  # type: ignore[no-untyped-def]
            senders[recipient] = sender
            return await super().send(message, sender=sender, recipient=recipient)

    report = asyncio.run(
        deliver(
            state,
            Recording(tmp_path / "sent"),
            sender=lambda key: return_path(BOUNCE_ADDRESS, SECRET, key),
            clock=lambda: T0,
        )
    )
    assert report.sent == len(addresses)
    with state.engine.connect() as conn:
        for address in addresses:
            tokens = find_tokens(senders[address])
            key = message_key_of(tokens[0], SECRET)
            assert key is not None
            found = store.bounced_message(conn, key)
            assert found is not None and found.recipient == address and found.status == "sent"
            keys[address] = key
    return Mailed(state, keys)


def report_for(name: str, *, key: int, recipient: str, secret: bytes = SECRET) -> bytes:
    text = (CORPUS / name).read_text(encoding="utf-8")
    return (
        text.replace("{TOKEN}", make_token(secret, key))
        .replace("{RECIPIENT}", recipient)
        .encode("utf-8")
    )


def status_of(state: State, address: str) -> str:
    with state.engine.connect() as conn:
        record = find_subscriber(conn, address)
    assert record is not None
    return record.status


# --- the return path ---------------------------------------------------------------------


def test_return_path_is_short_signed_and_survives_lower_casing() -> None:
    address = return_path(BOUNCE_ADDRESS, SECRET, 123456)
    local = address.partition("@")[0]
    assert address.endswith("@news.example.org") and local.startswith("bounces+")
    assert len(local) <= len("bounces+") + 4 + 1 + 12
    token = find_tokens(address.upper())[0]
    assert message_key_of(token, SECRET) == 123456
    assert message_key_of(token, b"another secret that is long enough") is None
    number, _, signature = token.partition("-")
    forged = f"{number}-{'a' * len(signature)}"
    assert message_key_of(forged, SECRET) is None
    assert message_key_of(f"{int(number, 36) + 1:x}-{signature}", SECRET) is None


# --- the corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_report_is_read_as_expected(name: str) -> None:
    kind, status, _ = EXPECTED[name]
    report = parse_report(report_for(name, key=42, recipient="desk@example.net"))
    assert report.kind is kind, report
    assert report.status == status
    assert make_token(SECRET, 42) in report.tokens
    if kind in (Kind.HARD, Kind.SOFT) and report.shape != "text":
        assert report.recipient == "desk@example.net"


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_report_decides_for_exactly_its_subscriber(
    name: str, tmp_path: Path, state_url: str
) -> None:
    kind, _, after = EXPECTED[name]
    mailed = mail_everyone(tmp_path, "desk@example.net", "bystander@example.net", url=state_url)
    data = report_for(name, key=mailed.keys["desk@example.net"], recipient="desk@example.net")
    outcome = act_on_report(mailed.state, data, secret=SECRET, policy=Policy(), now=T0, origin=name)
    assert status_of(mailed.state, "desk@example.net") == after, outcome.line
    assert status_of(mailed.state, "bystander@example.net") == "active"
    with mailed.state.engine.connect() as conn:
        suppressed = is_suppressed(mailed.state, conn, "desk@example.net")
        decisions = store.latest_decisions(conn)
        held = store.everything_about(conn, "desk@example.net")
    assert suppressed == (kind is Kind.COMPLAINT)
    assert outcome.counted == kind.counts
    if after != "active":
        decision, reason, when = next(iter(decisions.values()))
        assert decision == after and reason and when == T0
        assert held["bounces"][0]["evidence"]
    else:
        assert decisions == {}


def test_a_dsn_carrying_auto_submitted_is_still_a_bounce() -> None:
    data = report_for("postfix-dsn-hard.eml", key=1, recipient="desk@example.net")
    assert b"Auto-Submitted: auto-replied" in data
    assert parse_report(data).kind is Kind.HARD


# --- policy ------------------------------------------------------------------------------


def mail_more(tmp_path: Path, state: State, address: str, count: int) -> list[int]:
    """Send ``count`` more messages to ``address``; every sent message's row id, in order."""
    with state.transaction() as conn:
        record = find_subscriber(conn, address)
        assert record is not None
        for number in range(count):
            queue_message(
                conn,
                NewMessage(
                    record.id,
                    "immediate",
                    f"<more{number}.{address}>",
                    address,
                    b"From: news@news.example.org\r\n\r\nHi\r\n",
                ),
                now=T0,
            )
    asyncio.run(
        deliver(
            state,
            MaildirTransport(tmp_path / "sent"),
            sender=lambda key: return_path(BOUNCE_ADDRESS, SECRET, key),
            clock=lambda: T0,
        )
    )
    with state.engine.connect() as conn:
        messages = store.everything_about(conn, address)["messages"]
    return [row["id"] for row in messages if row["status"] == "sent"]


def test_soft_bounces_older_than_the_window_do_not_count(tmp_path: Path, state_url: str) -> None:
    mailed = mail_everyone(tmp_path, "a@example.net", "b@example.net", url=state_url)
    keys = mail_more(tmp_path, mailed.state, "a@example.net", 3)
    assert len(keys) == 4
    policy = Policy(soft_limit=3, soft_days=7)
    moments = [T0, T0 + timedelta(days=8), T0 + timedelta(days=9), T0 + timedelta(days=10)]
    decisions = []
    for key, moment in zip(keys, moments, strict=True):
        data = report_for("qmail-text-soft.eml", key=key, recipient="a@example.net")
        outcome = act_on_report(
            mailed.state, data, secret=SECRET, policy=policy, now=moment, origin="q"
        )
        decisions.append(outcome.decision)
    # The first is more than 7 days older than the third: the limit is reached at the fourth.
    assert decisions == ["counted", "counted", "counted", "suspended"]
    assert status_of(mailed.state, "a@example.net") == "suspended"
    assert status_of(mailed.state, "b@example.net") == "active"


def test_several_reports_about_one_message_count_once(tmp_path: Path, state_url: str) -> None:
    mailed = mail_everyone(tmp_path, "a@example.net", url=state_url)
    key = mailed.keys["a@example.net"]
    template = report_for("postfix-dsn-mailbox-full-failed.eml", key=key, recipient="a@x")
    for number in range(4):
        data = template.replace(b"B2@mx", f"B2-{number}@mx".encode())
        act_on_report(
            mailed.state, data, secret=SECRET, policy=Policy(soft_limit=2), now=T0, origin="t"
        )
    assert status_of(mailed.state, "a@example.net") == "active"


def test_soft_limit_reached_suspends(tmp_path: Path, state_url: str) -> None:
    mailed = mail_everyone(tmp_path, "a@example.net", "b@example.net", url=state_url)
    state = mailed.state
    keys = mail_more(tmp_path, state, "a@example.net", 2)
    assert len(keys) == 3
    policy = Policy(soft_limit=3, soft_days=7)
    for number, key in enumerate(keys):
        data = report_for("qmail-text-soft.eml", key=key, recipient="a@example.net")
        outcome = act_on_report(
            state, data, secret=SECRET, policy=policy, now=T0 + timedelta(days=number), origin="q"
        )
    assert outcome.decision == "suspended"
    assert "3 soft bounces within 7 days" in outcome.line
    assert status_of(state, "a@example.net") == "suspended"
    assert status_of(state, "b@example.net") == "active"


# --- hostile reports -----------------------------------------------------------------------


def test_forged_token_changes_nothing(
    tmp_path: Path, state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    mailed = mail_everyone(tmp_path, "desk@example.net", url=state_url)
    data = report_for(
        "postfix-dsn-hard.eml",
        key=mailed.keys["desk@example.net"],
        recipient="desk@example.net",
        secret=b"not our secret, but long enough",
    )
    outcome = act_on_report(mailed.state, data, secret=SECRET, policy=Policy(), now=T0, origin="f")
    assert "no valid return-path token" in outcome.line
    assert not outcome.counted
    assert status_of(mailed.state, "desk@example.net") == "active"


def test_bounce_for_a_message_never_sent_changes_nothing(tmp_path: Path, state_url: str) -> None:
    mailed = mail_everyone(tmp_path, "desk@example.net", url=state_url)
    data = report_for("exchange-dsn.eml", key=999, recipient="stranger@example.net")
    outcome = act_on_report(mailed.state, data, secret=SECRET, policy=Policy(), now=T0, origin="u")
    assert "names no message we sent" in outcome.line
    assert status_of(mailed.state, "desk@example.net") == "active"


def test_a_bounce_naming_another_address_still_only_touches_the_tokens_message(
    tmp_path: Path,
    state_url: str,
) -> None:
    mailed = mail_everyone(tmp_path, "desk@example.net", "other@example.net", url=state_url)
    data = report_for(
        "postfix-dsn-hard.eml", key=mailed.keys["desk@example.net"], recipient="other@example.net"
    )
    act_on_report(mailed.state, data, secret=SECRET, policy=Policy(), now=T0, origin="x")
    assert status_of(mailed.state, "desk@example.net") == "suspended"
    assert status_of(mailed.state, "other@example.net") == "active"


def test_huge_report_is_one_log_line(
    tmp_path: Path, state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    mailed = mail_everyone(tmp_path, "desk@example.net", url=state_url)
    box = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    head = report_for(
        "postfix-dsn-hard.eml", key=mailed.keys["desk@example.net"], recipient="desk@example.net"
    )
    (box / "new" / "huge").write_bytes(head + b"x" * (20 * 1024 * 1024))
    with caplog.at_level(logging.INFO, logger="syndicator"):
        result = process_maildir(mailed.state, box, secret=SECRET, policy=Policy(), now=T0)
    lines = [r.getMessage() for r in caplog.records if "huge" in r.getMessage()]
    assert len(lines) == 1 and "rejected" in lines[0] and "larger than" in lines[0]
    assert result.read == 1 and result.counted == 0
    assert status_of(mailed.state, "desk@example.net") == "active"
    assert (box / PROCESSED_FOLDER / "cur" / "huge:2,S").is_file()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff\xfe garbage \x00" * 100,
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="X"\n\n'
        b"--X\nContent-Type: message/delivery-status\n\n\x00\x01Action\n--X",
        b"Content-Type: multipart/report; report-type=feedback-report\n\nno boundary at all",
        b"",
    ],
)
def test_malformed_report_is_one_line_and_changes_nothing(
    data: bytes, tmp_path: Path, state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    mailed = mail_everyone(tmp_path, "desk@example.net", url=state_url)
    box = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "bad").write_bytes(data)
    with caplog.at_level(logging.INFO, logger="syndicator"):
        result = process_maildir(mailed.state, box, secret=SECRET, policy=Policy(), now=T0)
    assert len([r for r in caplog.records if "bad" in r.getMessage()]) == 1
    assert result.read == 1 and result.counted == 0
    assert status_of(mailed.state, "desk@example.net") == "active"


# --- sources -------------------------------------------------------------------------------


def test_maildir_reports_are_moved_aside_and_never_read_twice(
    tmp_path: Path, state_url: str
) -> None:
    mailed = mail_everyone(
        tmp_path, "hard@example.net", "soft@example.net", "ok@example.net", url=state_url
    )
    box = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.hard").write_bytes(
        report_for("exim-text.eml", key=mailed.keys["hard@example.net"], recipient="hard@x")
    )
    (box / "cur" / "2.soft:2,").write_bytes(
        report_for(
            "postfix-dsn-mailbox-full-failed.eml",
            key=mailed.keys["soft@example.net"],
            recipient="soft@example.net",
        )
    )
    first = process_maildir(mailed.state, box, secret=SECRET, policy=Policy(), now=T0)
    assert (first.read, first.counted, first.suspended) == (2, 2, ["hard@example.net"])
    assert sorted(p.name for p in (box / PROCESSED_FOLDER / "cur").iterdir()) == [
        "1.hard:2,S",
        "2.soft:2,",
    ]
    assert not list((box / "new").iterdir()) and not list((box / "cur").iterdir())
    # The same report delivered again (a second copy): counted once only.
    (box / "new" / "3.again").write_bytes(
        report_for(
            "postfix-dsn-mailbox-full-failed.eml",
            key=mailed.keys["soft@example.net"],
            recipient="soft@example.net",
        )
    )
    again = process_maildir(mailed.state, box, secret=SECRET, policy=Policy(), now=T0)
    assert (again.read, again.counted) == (1, 0)
    with mailed.state.engine.connect() as conn:
        assert store.soft_bounces_since(conn, 2, T0 - timedelta(days=1)) == 1
    assert status_of(mailed.state, "ok@example.net") == "active"


def test_process_path_reads_an_mbox(tmp_path: Path, state_url: str) -> None:
    mailed = mail_everyone(tmp_path, "one@example.net", "two@example.net", url=state_url)
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for address, name in (
        ("one@example.net", "gmail-text.eml"),
        ("two@example.net", "arf-abuse.eml"),
    ):
        box.add(report_for(name, key=mailed.keys[address], recipient=address))
    box.flush()
    box.close()
    result = process_path(mailed.state, str(path), secret=SECRET, policy=Policy(), now=T0)
    assert result.suspended == ["one@example.net"]
    assert result.unsubscribed == ["two@example.net"]


def test_forgetting_a_bounced_address_leaves_no_trace_of_it(tmp_path: Path, state_url: str) -> None:
    from sqlalchemy import select

    from syndicator.mail.rights import forget_address
    from syndicator.state.db import metadata

    mailed = mail_everyone(tmp_path, "Gone@Example.net", "stays@example.net", url=state_url)
    for name in ("postfix-dsn-hard.eml", "arf-abuse.eml"):
        data = report_for(name, key=mailed.keys["Gone@Example.net"], recipient="Gone@Example.net")
        act_on_report(mailed.state, data, secret=SECRET, policy=Policy(), now=T0, origin=name)
    outcome = forget_address(mailed.state, "gone@example.net", now=T0)
    assert outcome is not None and "stays suppressed" in outcome
    with mailed.state.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = repr(conn.execute(select(table)).all()).lower()
            assert "gone@example.net" not in rows, table.name
        assert is_suppressed(mailed.state, conn, "GONE@example.net")
    assert status_of(mailed.state, "stays@example.net") == "active"
