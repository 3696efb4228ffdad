"""DKIM: keys, the DNS record, and signatures that verify where the mail lands.

Keys are made with openssl as an operator would; verification is dkimpy's, with DNS
answered by the test from the record ``syndicator check`` prints.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest

from syndicator.classify.classifier import Classifier
from syndicator.cli import main
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, Config, load_config
from syndicator.errors import ConfigError
from syndicator.mail.dkim import SIGNED_HEADERS, Signer, dns_record, parse_key
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state.db import State
from tests.conftest import SAMPLE_STORE, write
from tests.smtp_sink import Sink

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SELECTOR = "news2026"
DOMAIN = "news.example.org"


def openssl_key(path: Path, *options: str) -> Path:
    subprocess.run(
        ["openssl", "genpkey", *options, "-out", str(path)], capture_output=True, check=True
    )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    return {
        "rsa": openssl_key(
            folder / "rsa.pem", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"
        ),
        "ed25519": openssl_key(folder / "ed25519.pem", "-algorithm", "ed25519"),
        "rsa1024": openssl_key(
            folder / "small.pem", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"
        ),
    }


def resolver(record: str) -> Callable[..., bytes | None]:
    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return dns


def configure(install: Path, key: Path, *, sink: Sink | None) -> Config:
    (install.parent / "subscribers.toml").write_text(
        textwrap.dedent(
            """
            [[subscriber]]
            email = "desk@example.org"
            name = "Americas desk"
            regions = ["americas"]
            cadence = "immediate"
            """
        )
    )
    text = install.read_text()
    text = text.replace("[mail]\n", f'[mail]\nfrom = "WCO News <news@{DOMAIN}>"\n')
    if sink is not None:
        text = text.replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
        text += f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5\n'
    text += f'\n[mail.dkim]\ndomain = "{DOMAIN}"\nselector = "{SELECTOR}"\nkey_file = "{key}"\n'
    install.write_text(text)
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return load_config(install)


def send_one_article(config: Config) -> None:
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    state = State.open(config.state.url)
    try:
        run_cycle(config, classifier, state, now=T0)
        write(
            config.store.path / "chile.txt",
            "Chile Launches AEO Programme\n\nChile Launches AEO Programme\n\nIt did.\n",
        )
        run_cycle(config, classifier, state, now=T0 + timedelta(minutes=5))
        report = asyncio.run(deliver_due(config, state, clock=lambda: T0 + timedelta(minutes=5)))
        assert report.sent == 1
    finally:
        state.close()


def printed_record(config: Config, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["--config", str(config.source), "check"]) == 0
    out = capsys.readouterr().out
    found = re.search(
        rf'^{SELECTOR}\._domainkey\.{re.escape(DOMAIN)}\. IN TXT "([^"]+)"$', out, re.M
    )
    assert found is not None, out
    return found.group(1)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_mail_through_the_smtp_sink_verifies_and_tampering_breaks_it(
    algorithm: str,
    keys: dict[str, Path],
    install: Path,
    sink: Sink,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = configure(install, keys[algorithm], sink=sink)
    record = printed_record(config, capsys)
    assert record.startswith(f"v=DKIM1; k={algorithm}; p=")
    send_one_article(config)
    (received,) = sink.handler.received
    data = received.data
    dns = resolver(record)
    assert data.startswith(b"DKIM-Signature: ")
    signature = data.split(b"\r\n\r\n", 1)[0].decode()
    assert f"a={algorithm}-sha256" in signature.replace("\r\n", "").replace(" ", "")
    signed = re.search(r"h=([^;]+);", signature.replace("\r\n", "").replace(" ", ""))
    assert signed is not None
    names = {name.lower() for name in signed.group(1).split(":")}
    assert {name.lower() for name in SIGNED_HEADERS} <= names
    assert dkim.verify(data, dnsfunc=dns)

    changed = data.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks")
    assert changed != data and not dkim.verify(changed, dnsfunc=dns)
    # A second List-Unsubscribe-Post added on the way breaks it too (signed once more).
    head, body = data.split(b"\r\n\r\n", 1)
    added = head + b"\r\nList-Unsubscribe-Post: List-Unsubscribe=Other\r\n\r\n" + body
    assert not dkim.verify(added, dnsfunc=dns)
    body_changed = data.replace(b"Chile", b"Chili")
    assert not dkim.verify(body_changed, dnsfunc=dns)


def test_mail_in_the_maildir_verifies(
    keys: dict[str, Path], install: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = configure(install, keys["rsa"], sink=None)
    record = printed_record(config, capsys)
    send_one_article(config)
    (path,) = (config.mail.maildir / "new").iterdir()
    data = path.read_bytes()  # LF line endings and a Delivered-To line on top
    assert data.startswith(b"Delivered-To: desk@example.org\nDKIM-Signature: ")
    assert dkim.verify(data, dnsfunc=resolver(record))


def test_keys_too_weak_or_unreadable_are_refused_with_the_key_named(
    keys: dict[str, Path], install: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="1024 bits; DKIM needs at least 2048"):
        parse_key(keys["rsa1024"].read_bytes())
    with pytest.raises(ConfigError, match=r"mail\.dkim\.key_file"):
        parse_key(b"not a key")
    config = configure(install, keys["rsa1024"], sink=None)
    assert main(["--config", str(config.source), "check"]) == 1
    out = capsys.readouterr().out
    assert "mail.dkim.key_file: the RSA key has 1024 bits" in out


def test_the_record_of_a_key_verifies_what_it_signs(keys: dict[str, Path]) -> None:
    key = parse_key(keys["ed25519"].read_bytes())
    signer = Signer(key, domain=DOMAIN, selector=SELECTOR)
    message = (
        b"From: WCO News <news@news.example.org>\r\nTo: a@example.org\r\nSubject: Hi\r\n"
        b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\nMessage-ID: <1@news.example.org>\r\n"
        b"\r\nHello.\r\n"
    )
    assert dkim.verify(signer.sign(message), dnsfunc=resolver(dns_record(key)))
