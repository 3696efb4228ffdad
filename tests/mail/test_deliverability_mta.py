"""End to end with a real Postfix: VERP return paths, real bounces, DKIM on the wire.

syndicator sends through a private Postfix (tests/mta.py) to five subscribers: one
local address with no account (Postfix's local agent bounces it, 5.1.1), and four at
a domain Postfix relays to an aiosmtpd sink that refuses one mailbox (550 5.2.1),
answers "mailbox full" for another (452 4.2.2: Postfix gives up at once here and
returns a DSN with ``Action: failed`` and a 4.x.x status) and accepts two. Postfix
writes the bounces to the per-message return paths; they land in the bounce Maildir;
the next cycle suspends exactly the two hard bounces, counts the soft one, and leaves
everyone else alone. The messages the sink received verify with dkimpy against the
public key (DNS answered by the test).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim

from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, Config, load_config
from syndicator.mail.dkim import dns_record, parse_key
from syndicator.mail.verp import find_tokens
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state import bounces as store
from syndicator.state.db import State
from syndicator.state.subscribers import list_subscribers
from tests.conftest import ROOT, SAMPLE_STORE, write
from tests.mta import BOUNCE_DOMAIN, LOCAL_DOMAIN, Postfix
from tests.smtp_sink import Sink

RELAYED = "relayed.syndicator.test"
SUBSCRIBERS = {
    f"nosuchuser@{LOCAL_DOMAIN}": "suspended",
    f"gone@{RELAYED}": "suspended",
    f"full@{RELAYED}": "active",
    f"reader@{RELAYED}": "active",
    f"other@{RELAYED}": "active",
}


def generate_rsa_key(path: Path) -> Path:
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(path),
        ],
        capture_output=True,
        check=True,
    )
    return path


def configure(install: Path, mta: Postfix, key: Path) -> Config:
    entries = "".join(
        f'\n[[subscriber]]\nemail = "{address}"\nregions = ["americas"]\ncadence = "immediate"\n'
        for address in SUBSCRIBERS
    )
    (install.parent / "subscribers.toml").write_text(entries)
    text = install.read_text().replace(
        "[mail]\n",
        textwrap.dedent(
            f"""\
            [mail]
            transport = "smtp"
            from = "WCO News <news@{BOUNCE_DOMAIN}>"
            bounce_address = "bounces@{BOUNCE_DOMAIN}"
            """
        ),
    )
    text += textwrap.dedent(
        f"""
        [mail.smtp]
        host = "127.0.0.1"
        port = {mta.port}
        timeout = 10

        [mail.dkim]
        domain = "{BOUNCE_DOMAIN}"
        selector = "news2026"
        key_file = "{key}"

        [bounces]
        maildir = "{mta.bounce_maildir}"
        """
    )
    install.write_text(text)
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return load_config(install)


def test_real_postfix_bounces_suspend_exactly_the_failed_subscribers(
    install: Path, tmp_path: Path
) -> None:
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    key_file = generate_rsa_key(tmp_path / "dkim.pem")
    with Sink() as sink:
        sink.handler.refuse[f"gone@{RELAYED}"] = "550 5.2.1 Mailbox disabled for this recipient"
        sink.handler.refuse[f"full@{RELAYED}"] = "452 4.2.2 Mailbox full"
        with Postfix(routes={RELAYED: sink.port}) as mta:
            config = configure(install, mta, key_file)
            state = State.open(config.state.url)
            try:
                now = datetime.now(UTC)
                run_cycle(config, classifier, state, now=now)  # the baseline: no mail
                write(
                    config.store.path / "chile.txt",
                    "Chile Launches AEO Programme\n\nChile Launches AEO Programme\n\n"
                    "Chile's customs launched an AEO programme.\n",
                )
                run_cycle(config, classifier, state, now=now + timedelta(minutes=1))
                report = asyncio.run(
                    deliver_due(config, state, clock=lambda: now + timedelta(minutes=1))
                )
                # Postfix accepted all five: the failures come back later, as bounces.
                assert report.sent == 5, report
                bounces = mta.wait_for_bounces(3)
                # Each bounce went to the return path of its own message.
                tokens = {find_tokens(path.read_text(errors="replace"))[0] for path in bounces}
                assert len(tokens) == 3
                result = run_cycle(config, classifier, state, now=now + timedelta(minutes=2))
                assert result.feedback is not None
                assert sorted(result.feedback.suspended) == sorted(
                    a for a, status in SUBSCRIBERS.items() if status == "suspended"
                )
                with state.engine.connect() as conn:
                    statuses = {r.email: r.status for r in list_subscribers(conn)}
                    events = {
                        row["kind"]
                        for address in SUBSCRIBERS
                        for row in store.everything_about(conn, address)["bounces"]
                    }
                assert statuses == SUBSCRIBERS
                assert events == {"hard", "soft"}
                # Every report was moved aside; a second cycle reads nothing again.
                assert not list((mta.bounce_maildir / "new").iterdir())
                again = run_cycle(config, classifier, state, now=now + timedelta(minutes=3))
                assert again.feedback is not None and again.feedback.read == 0
            finally:
                state.close()
    # What reached the mailboxes (through Postfix) verifies against the published key.
    delivered = {tuple(item.recipients): item for item in sink.handler.received}
    assert set(delivered) == {(f"reader@{RELAYED}",), (f"other@{RELAYED}",)}
    record = dns_record(parse_key(key_file.read_bytes())).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"news2026._domainkey.{BOUNCE_DOMAIN}.".encode() else None

    for item in delivered.values():
        assert item.sender.startswith("bounces+") and item.sender.endswith(f"@{BOUNCE_DOMAIN}")
        assert b"Received: " in item.data  # Postfix's own header: not signed, no harm
        assert dkim.verify(item.data, dnsfunc=dns)
        altered = item.data.replace(
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks",
        )
        assert altered != item.data and not dkim.verify(altered, dnsfunc=dns)
    # `subscribers list` says why each suspended subscriber was suspended.
    listing = subprocess.run(
        [sys.executable, "-m", "syndicator", "--config", str(install), "subscribers", "list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if "@" in line}
    assert "hard bounce 5.1.1" in lines[f"nosuchuser@{LOCAL_DOMAIN}"]
    assert "hard bounce 5.2.1" in lines[f"gone@{RELAYED}"]
    assert "hard bounce" not in lines[f"full@{RELAYED}"]
