"""Bounces and complaints read from an IMAP mailbox on a real Dovecot (IMAPS and STARTTLS).

The password comes from the environment as in production, and the server's certificate
is checked against the test CA (through SSL_CERT_FILE, as an operator with a private CA
would do).
"""

from __future__ import annotations

import imaplib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicator.config import Config
from syndicator.mail.feedback import process_configured
from tests.imap_server import PASSWORD, USER, Dovecot
from tests.mail.test_bounces import (  # noqa: F401 (_close_states closes what fill opens)
    SECRET,
    Mailed,
    _close_states,
    mail_everyone,
    report_for,
    status_of,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def dovecot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    with Dovecot() as server:
        ca = tmp_path / "ca.pem"
        server.ca.cert_pem.write_to_path(str(ca))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        monkeypatch.setenv("SYNDICATOR_IMAP_PASSWORD", PASSWORD)
        yield server


def imap_config(server: Dovecot, *, security: str, move_to: str = "") -> Config:
    port = server.imaps_port if security == "tls" else server.imap_port
    return Config.model_validate(
        {
            "bounces": {
                "imap": {
                    "host": "127.0.0.1",
                    "port": port,
                    "security": security,
                    "username": USER,
                    "move_to": move_to,
                    "timeout": 10,
                }
            }
        }
    )


def inbox(server: Dovecot, folder: str = "INBOX") -> list[bytes]:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=server.client_context())
    try:
        client.login(USER, PASSWORD)
        client.select(f'"{folder}"')
        status, found = client.uid("SEARCH", "ALL")
        assert status == "OK"
        flags: list[bytes] = []
        for uid in found[0].split():
            _, data = client.uid("FETCH", uid, "(FLAGS)")
            flags.append(data[0] if isinstance(data[0], bytes) else b"")
        return flags
    finally:
        client.logout()


def fill(server: Dovecot, tmp_path: Path, state_url: str) -> Mailed:
    mailed = mail_everyone(
        tmp_path, "hard@example.net", "angry@example.net", "away@example.net", url=state_url
    )
    keys = mailed.keys
    server.deliver("1.dsn", report_for("postfix-dsn-hard.eml", key=keys["hard@example.net"],
                                       recipient="hard@example.net"))  # fmt: skip
    server.deliver("2.arf", report_for("arf-abuse.eml", key=keys["angry@example.net"],
                                       recipient="angry@example.net"))  # fmt: skip
    server.deliver("3.ooo", report_for("out-of-office.eml", key=keys["away@example.net"],
                                       recipient="away@example.net"))  # fmt: skip
    return mailed


def test_imaps_reports_are_processed_once_and_flagged(
    dovecot: Dovecot, tmp_path: Path, state_url: str
) -> None:
    mailed = fill(dovecot, tmp_path, state_url)
    state = mailed.state
    config = imap_config(dovecot, security="tls")
    first = process_configured(config, state, secret=SECRET, now=T0)
    assert (first.read, first.counted) == (3, 2)
    assert first.suspended == ["hard@example.net"]
    assert first.unsubscribed == ["angry@example.net"]
    assert status_of(state, "away@example.net") == "active"
    flags = inbox(dovecot)
    assert len(flags) == 3 and all(b"$Processed" in f and b"\\Seen" in f for f in flags), flags
    again = process_configured(config, state, secret=SECRET, now=T0)
    assert again.read == 0


def test_starttls_reports_are_moved_to_a_folder(
    dovecot: Dovecot, tmp_path: Path, state_url: str
) -> None:
    mailed = fill(dovecot, tmp_path, state_url)
    state = mailed.state
    config = imap_config(dovecot, security="starttls", move_to="Processed")
    result = process_configured(config, state, secret=SECRET, now=T0)
    assert (result.read, result.counted) == (3, 2)
    assert inbox(dovecot) == []
    assert len(inbox(dovecot, "Processed")) == 3


def test_a_wrong_password_is_one_error_line_and_changes_nothing(
    dovecot: Dovecot,
    tmp_path: Path,
    state_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailed = fill(dovecot, tmp_path, state_url)
    monkeypatch.setenv("SYNDICATOR_IMAP_PASSWORD", "wrong")
    with caplog.at_level(logging.ERROR, logger="syndicator"):
        result = process_configured(
            imap_config(dovecot, security="tls"),
            mailed.state,
            secret=SECRET,
            now=T0,
        )
    assert result.read == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "bounces.imap: cannot reach 127.0.0.1" in errors[0]
    assert len(inbox(dovecot)) == 3
