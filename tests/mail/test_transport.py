"""Mail transports against a real aiosmtpd server on 127.0.0.1 and real Maildirs in tmp_path."""

from __future__ import annotations

import asyncio
import email
import email.policy
import errno
import mailbox
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as ServerSMTP
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from syndicator.config import Config
from syndicator.mail.transport import (
    Delivery,
    MaildirTransport,
    Outcome,
    SmtpTransport,
    classify_reply,
    transport_from_config,
)
from tests.smtp_sink import free_port

SENDER = "news@example.org"
RECIPIENT = "alice@example.net"


def make_message(subject: str = "Customs news", body: str = "Hello.\n") -> bytes:
    message = EmailMessage()
    message["From"] = f"WCO News <{SENDER}>"
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message.set_content(body)
    return message.as_bytes(policy=email.policy.SMTP)


# --- the server ------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    content: bytes
    tls: bool


@dataclass
class Handler:
    """aiosmtpd handler that records envelopes; set a field to simulate a fault."""

    mail_reply: str = ""
    mail_replies: list[str] = field(default_factory=list)  # consumed one per MAIL
    rcpt_reply: str = ""
    data_reply: str = ""
    rset_replies: list[str] = field(default_factory=list)  # consumed one per RSET
    data_delay: float = 0.0
    drop_after_data: bool = False
    received: list[Received] = field(default_factory=list)
    quits: int = 0

    async def handle_MAIL(
        self,
        server: ServerSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: ServerSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.drop_after_data:
            assert server.transport is not None
            server.transport.close()
            return "250 OK"
        if self.data_reply:
            return self.data_reply
        assert server.transport is not None
        assert isinstance(envelope.original_content, bytes)
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                mail_options=list(envelope.mail_options),
                content=envelope.original_content,
                tls=server.transport.get_extra_info("sslcontext") is not None,
            )
        )
        return "250 2.0.0 Message accepted"

    async def handle_RSET(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        return self.rset_replies.pop(0) if self.rset_replies else "250 OK"

    async def handle_QUIT(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


class Connections:
    """Connections the server saw: open now, most open at once, total."""

    def __init__(self) -> None:
        self.live: set[ServerSMTP] = set()
        self.most = 0
        self.total = 0

    def opened(self, server: ServerSMTP) -> None:
        self.live.add(server)
        self.total += 1
        self.most = max(self.most, len(self.live))

    def closed(self, server: ServerSMTP) -> None:
        self.live.discard(server)

    def reset(self) -> None:
        self.most = len(self.live)
        self.total = 0


class CountingSMTP(ServerSMTP):
    def __init__(self, handler: Handler, connections: Connections, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again on the same session
        super().connection_made(transport)
        if first:
            self.connections.opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.connections.closed(self)


class Server(Controller):
    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
        self.connections = Connections()

    def factory(self) -> CountingSMTP:
        return CountingSMTP(self.handler, self.connections, **self.SMTP_kwargs)

    def start(self) -> None:
        super().start()
        # Controller.start() opened one probe connection; forget it.
        deadline = time.monotonic() + 2
        while self.connections.live and time.monotonic() < deadline:
            time.sleep(0.005)
        self.connections.reset()

    def drop_all(self) -> None:
        """Close every client connection from the server side."""

        def close_all() -> None:
            for session in list(self.connections.live):
                if session.transport is not None:
                    session.transport.close()

        self.loop.call_soon_threadsafe(close_all)


StartServer = Callable[..., Server]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    servers: list[Server] = []

    def start(handler: Handler | None = None, **kwargs: Any) -> Server:
        server = Server(handler or Handler(), **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
def server(start_server: StartServer, handler: Handler) -> Server:
    return start_server(handler)


@pytest.fixture
async def smtp(server: Server) -> AsyncIterator[SmtpTransport]:
    transport = plain_transport(server.port)
    yield transport
    await transport.close()


def plain_transport(port: int, **kwargs: Any) -> SmtpTransport:
    options: dict[str, Any] = {"security": "none", "timeout": 5.0, "local_hostname": "client.test"}
    options.update(kwargs)
    return SmtpTransport(host="127.0.0.1", port=port, **options)


async def send_one(transport: SmtpTransport, recipient: str = RECIPIENT) -> Delivery:
    return await transport.send(make_message(), sender=SENDER, recipient=recipient)


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- TLS material ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


# --- the pure classifier -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stage", "outcome"),
    [
        (250, "DATA", Outcome.SENT),
        (421, "connect", Outcome.TEMPORARY),
        (554, "connect", Outcome.TEMPORARY),
        (450, "RCPT", Outcome.TEMPORARY),
        (550, "RCPT", Outcome.PERMANENT),
        (553, "MAIL FROM", Outcome.PERMANENT),
        (530, "MAIL FROM", Outcome.TEMPORARY),
        (554, "DATA", Outcome.PERMANENT),
        (535, "AUTH", Outcome.TEMPORARY),
        (454, "STARTTLS", Outcome.TEMPORARY),
        (354, "DATA", Outcome.TEMPORARY),
    ],
)
def test_classify_reply(code: int, stage: Any, outcome: Outcome) -> None:
    delivery = classify_reply(code, "some\ntext", stage)
    assert delivery.outcome is outcome
    assert delivery.code == code
    assert "\n" not in delivery.detail
    assert delivery.detail.startswith(f"{code} some text ({stage})")


# --- SMTP: success -------------------------------------------------------------------------


async def test_accepted_message_is_sent_with_envelope(
    smtp: SmtpTransport, handler: Handler
) -> None:
    message = make_message("Région Europe: tarifs", "Café\n")
    delivery = await smtp.send(message, sender=SENDER, recipient=RECIPIENT)

    assert delivery.outcome is Outcome.SENT
    assert delivery.code == 250
    assert delivery.detail == "250 2.0.0 Message accepted (DATA)"
    [received] = handler.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [RECIPIENT]
    assert received.tls is False
    options = [option.upper() for option in received.mail_options]
    assert f"SIZE={len(message)}" in options
    assert "BODY=8BITMIME" in options  # the body is 8-bit and aiosmtpd offers 8BITMIME
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == "Région Europe: tarifs"
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body()
    assert body is not None
    assert body.get_content().splitlines() == ["Café"]


# --- SMTP: refusals and faults -------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    fault: str  # the Handler field to set
    reply: str
    outcome: Outcome
    code: int
    detail: str | None = None  # the exact detail, where the test pins it


@pytest.mark.parametrize(
    "case",
    [
        Refusal("rcpt_reply", "451 4.3.0 try again later", Outcome.TEMPORARY, 451),
        Refusal("rcpt_reply", "452 4.5.3 too many recipients", Outcome.TEMPORARY, 452),
        Refusal(
            "rcpt_reply",
            "550 5.1.1 user unknown",
            Outcome.PERMANENT,
            550,
            "550 5.1.1 user unknown (RCPT)",
        ),
        Refusal("mail_reply", "553 5.1.8 sender domain rejected", Outcome.PERMANENT, 553),
        Refusal("mail_reply", "530 5.7.0 authentication required", Outcome.TEMPORARY, 530),
        Refusal("data_reply", "451 4.3.0 queue full", Outcome.TEMPORARY, 451),
        Refusal(
            "data_reply",
            "554 5.6.0 message rejected",
            Outcome.PERMANENT,
            554,
            "554 5.6.0 message rejected (DATA)",
        ),
    ],
    ids=lambda case: f"{case.fault}-{case.code}",
)
async def test_refusals_are_classified_by_code(
    smtp: SmtpTransport, handler: Handler, server: Server, case: Refusal
) -> None:
    fault, reply = case.fault, case.reply
    setattr(handler, fault, reply)
    delivery = await send_one(smtp)

    assert delivery.outcome is case.outcome
    assert delivery.code == case.code
    assert delivery.detail.startswith(reply)
    if case.detail is not None:
        assert delivery.detail == case.detail
    assert handler.received == []

    # A cleanly refused transaction leaves a usable session: it is reused.
    setattr(handler, fault, "")
    assert (await send_one(smtp)).outcome is Outcome.SENT
    assert server.connections.total == 1


async def test_421_greeting_is_temporary() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 4.3.2 Service shutting down\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    listener = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    transport = plain_transport(port)
    try:
        delivery = await send_one(transport)
    finally:
        await transport.close()
        listener.close()
        await listener.wait_closed()

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.code == 421
    assert delivery.detail == "421 4.3.2 Service shutting down (connect)"


async def test_nothing_listening_is_temporary() -> None:
    port = free_port()
    transport = plain_transport(port)
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.code is None
    assert delivery.detail.startswith(f"cannot connect to 127.0.0.1:{port}")


async def test_disconnect_after_data_is_temporary_and_reconnects(
    smtp: SmtpTransport, handler: Handler, server: Server
) -> None:
    handler.drop_after_data = True
    delivery = await send_one(smtp)

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.code is None
    assert delivery.detail == f"127.0.0.1:{server.port} closed the connection (DATA)"

    handler.drop_after_data = False
    assert (await send_one(smtp)).outcome is Outcome.SENT
    assert server.connections.total == 2  # the broken session was not reused


async def test_server_slower_than_timeout_is_temporary(
    start_server: StartServer,
) -> None:
    server = start_server(Handler(data_delay=3.0))
    transport = plain_transport(server.port, timeout=0.5)
    started = time.monotonic()
    delivery = await send_one(transport)
    elapsed = time.monotonic() - started
    await transport.close()

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.code is None
    assert delivery.detail.startswith(f"no reply from 127.0.0.1:{server.port} within 0.5 s (DATA)")
    assert elapsed < 2.0


# --- SMTP: authentication -----------------------------------------------------------------


def authenticator(
    server: ServerSMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    valid = isinstance(auth_data, LoginPassword) and auth_data == (b"alice", b"s3cret")
    # handled=False: aiosmtpd then replies 535 itself (handled=True would send nothing).
    return AuthResult(success=valid, handled=False)


@pytest.mark.parametrize(
    ("password", "outcome", "code"),
    [("s3cret", Outcome.SENT, 250), ("wrong", Outcome.TEMPORARY, 535)],
)
async def test_auth(start_server: StartServer, password: str, outcome: Outcome, code: int) -> None:
    handler = Handler()
    server = start_server(handler, authenticator=authenticator, auth_require_tls=False)
    transport = plain_transport(server.port, username="alice", password=password)
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is outcome
    assert delivery.code == code
    if outcome is Outcome.TEMPORARY:
        assert delivery.detail.startswith("535 5.7.8 Authentication credentials invalid (AUTH)")
        assert "mail.smtp.username" in delivery.detail
        assert handler.received == []
    else:
        assert len(handler.received) == 1


async def test_username_but_no_auth_offered_is_temporary(server: Server) -> None:
    transport = plain_transport(server.port, username="alice", password="s3cret")
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.TEMPORARY
    assert "AUTH" in delivery.detail
    assert "mail.smtp.username" in delivery.detail


# --- SMTP: TLS ----------------------------------------------------------------------------


async def test_starttls_with_auth(
    start_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Handler()
    server = start_server(
        handler, tls_context=server_tls, require_starttls=True, authenticator=authenticator
    )
    transport = plain_transport(
        server.port,
        security="starttls",
        tls_context=client_tls,
        username="alice",
        password="s3cret",
    )
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.SENT
    assert [received.tls for received in handler.received] == [True]


async def test_starttls_not_offered_is_temporary(
    server: Server, client_tls: ssl.SSLContext, handler: Handler
) -> None:
    transport = plain_transport(server.port, security="starttls", tls_context=client_tls)
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.TEMPORARY
    assert "STARTTLS" in delivery.detail
    assert "mail.smtp.security" in delivery.detail
    assert handler.received == []


async def test_starttls_untrusted_certificate_is_temporary(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    handler = Handler()
    server = start_server(handler, tls_context=server_tls, require_starttls=True)
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    untrusting.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    transport = plain_transport(server.port, security="starttls", tls_context=untrusting)
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.detail.startswith(f"TLS with 127.0.0.1:{server.port} failed (STARTTLS)")
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.detail
    assert handler.received == []


async def test_security_none_does_not_upgrade_opportunistically(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    handler = Handler()
    server = start_server(handler, tls_context=server_tls)  # offers STARTTLS
    transport = plain_transport(server.port, security="none")
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.SENT
    assert [received.tls for received in handler.received] == [False]


async def test_implicit_tls(
    start_server: StartServer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    handler = Handler()
    server = start_server(handler, ssl_context=server_tls)
    transport = plain_transport(server.port, security="tls", tls_context=client_tls)
    deliveries = [await send_one(transport) for _ in range(2)]
    await transport.close()

    assert [delivery.outcome for delivery in deliveries] == [Outcome.SENT, Outcome.SENT]
    assert [received.tls for received in handler.received] == [True, True]
    assert server.connections.total == 1


async def test_implicit_tls_against_plain_server_is_temporary(
    server: Server, client_tls: ssl.SSLContext
) -> None:
    transport = plain_transport(server.port, security="tls", tls_context=client_tls)
    delivery = await send_one(transport)
    await transport.close()

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.detail.startswith(f"TLS with 127.0.0.1:{server.port} failed (connect)")


# --- SMTP: the pool -----------------------------------------------------------------------


async def test_pool_bounds_and_reuses_connections(start_server: StartServer) -> None:
    handler = Handler(data_delay=0.01)
    server = start_server(handler)
    transport = plain_transport(server.port, pool_size=3)
    messages = [make_message(f"Message {number}") for number in range(50)]
    deliveries = await asyncio.gather(
        *(transport.send(message, sender=SENDER, recipient=RECIPIENT) for message in messages)
    )

    assert {delivery.outcome for delivery in deliveries} == {Outcome.SENT}
    assert len(handler.received) == 50
    assert server.connections.most <= 3
    assert server.connections.total == 3  # opened lazily, then reused for all 50

    await transport.close()
    await wait_until(lambda: not server.connections.live)
    assert handler.quits == 3
    after_close = await send_one(transport)
    assert after_close.outcome is Outcome.TEMPORARY
    assert after_close.detail == "transport is closed"


async def test_reconnects_after_server_drops_idle_connection(
    smtp: SmtpTransport, server: Server, handler: Handler
) -> None:
    assert (await send_one(smtp)).outcome is Outcome.SENT
    server.drop_all()
    await wait_until(lambda: not server.connections.live)

    assert (await send_one(smtp)).outcome is Outcome.SENT
    assert server.connections.total == 2
    assert len(handler.received) == 2


async def test_idle_connection_closed_by_the_server_is_replaced(
    smtp: SmtpTransport, server: Server, handler: Handler
) -> None:
    assert (await send_one(smtp)).outcome is Outcome.SENT
    handler.mail_replies = ["421 4.4.2 idle too long, closing"]

    assert (await send_one(smtp)).outcome is Outcome.SENT
    assert server.connections.total == 2
    assert len(handler.received) == 2


async def test_invalid_recipient_is_permanent_without_connecting(
    smtp: SmtpTransport, server: Server
) -> None:
    delivery = await send_one(smtp, recipient="bob@example.net\r\nRCPT TO:<eve@example.net>")

    assert delivery.outcome is Outcome.PERMANENT
    assert server.connections.total == 0


# --- Maildir ------------------------------------------------------------------------------


async def test_maildir_delivers_into_new(tmp_path: Path) -> None:
    path = tmp_path / "mail"
    transport = MaildirTransport(path)
    first = await transport.send(make_message("One"), sender=SENDER, recipient=RECIPIENT)
    second = await transport.send(make_message("Two"), sender=SENDER, recipient="bob@example.net")
    await transport.close()

    assert first.outcome is second.outcome is Outcome.SENT
    assert {entry.name for entry in path.iterdir()} == {"cur", "new", "tmp"}
    assert list((path / "tmp").iterdir()) == []
    names = sorted(entry.name for entry in (path / "new").iterdir())
    assert len(names) == 2
    assert names[0] != names[1]
    assert first.detail.endswith(tuple(names))

    box = mailbox.Maildir(path, create=False)
    parsed = sorted((str(m["Subject"]), str(m["Delivered-To"])) for m in box)
    assert parsed == [("One", RECIPIENT), ("Two", "bob@example.net")]
    raw = next(iter((path / "new").iterdir())).read_bytes()
    assert b"\r\n" not in raw


async def test_maildir_missing_parent_is_temporary(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "missing" / "mail")
    delivery = await transport.send(make_message(), sender=SENDER, recipient=RECIPIENT)

    assert delivery.outcome is Outcome.TEMPORARY
    assert delivery.code is None
    assert "No such file or directory" in delivery.detail
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_maildir_read_only_is_temporary(tmp_path: Path) -> None:
    path = tmp_path / "mail"
    for sub in ("", "cur", "new", "tmp"):
        (path / sub).mkdir()
    (path / "tmp").chmod(0o500)
    try:
        delivery = await MaildirTransport(path).send(
            make_message(), sender=SENDER, recipient=RECIPIENT
        )
    finally:
        (path / "tmp").chmod(0o700)

    assert delivery.outcome is Outcome.TEMPORARY
    assert "Permission denied" in delivery.detail


async def test_maildir_disk_full_is_temporary_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    path = tmp_path / "mail"
    delivery = await MaildirTransport(path).send(make_message(), sender=SENDER, recipient=RECIPIENT)

    assert delivery.outcome is Outcome.TEMPORARY
    assert "No space left on device" in delivery.detail
    assert list((path / "tmp").iterdir()) == []
    assert list((path / "new").iterdir()) == []


async def test_maildir_rejects_header_injection(tmp_path: Path) -> None:
    delivery = await MaildirTransport(tmp_path).send(
        make_message(), sender=SENDER, recipient="a@example.net\nBcc: eve@example.net"
    )

    assert delivery.outcome is Outcome.PERMANENT


# --- configuration ------------------------------------------------------------------------


def test_transport_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATOR_SMTP_USERNAME", raising=False)
    monkeypatch.setenv("SYNDICATOR_SMTP_PASSWORD", "from-env")

    maildir = transport_from_config(
        Config.model_validate({"mail": {"transport": "maildir", "maildir": str(tmp_path)}})
    )
    assert isinstance(maildir, MaildirTransport)
    assert maildir.path == tmp_path

    smtp = transport_from_config(
        Config.model_validate(
            {
                "mail": {
                    "transport": "smtp",
                    "smtp": {
                        "host": "mx.example.org",
                        "port": 587,
                        "security": "starttls",
                        "username": "news",
                        "timeout": 12,
                        "pool_size": 9,
                    },
                }
            }
        )
    )
    assert isinstance(smtp, SmtpTransport)
    assert (smtp.host, smtp.port, smtp.security, smtp.username, smtp.timeout, smtp.pool_size) == (
        "mx.example.org",
        587,
        "starttls",
        "news",
        12.0,
        9,
    )
    assert smtp._password == "from-env"
