"""A real SMTP server for tests: aiosmtpd on a free loopback port, recording what it accepts.

Faults are set per recipient on :class:`SinkHandler`: a refusal at RCPT, a refusal after
DATA, or the connection dropped after DATA without a reply. :class:`GreetingRefuser` is a
server that answers every connection with one greeting line (e.g. 421) and hangs up.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = message_from_bytes(self.data, policy=policy.default)
        return parsed


@dataclass
class SinkHandler:
    """Accepts everything, optionally slowly, or answers a fixed code for chosen recipients."""

    delay: float = 0.0
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> "550 ..." at RCPT
    refuse_data: dict[str, str] = field(default_factory=dict)  # recipient -> "554 ..." at DATA
    drop_after_data: set[str] = field(default_factory=set)  # hang up instead of replying
    received: list[Received] = field(default_factory=list)
    dropped: list[Received] = field(default_factory=list)  # read in full, never acknowledged
    rcpt_attempts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.lock:
            self.rcpt_attempts.append(address)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            time.sleep(self.delay)  # a slow server, one message at a time
        content = envelope.original_content or b""
        item = Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
        if any(address in self.drop_after_data for address in envelope.rcpt_tos):
            with self.lock:
                self.dropped.append(item)
            assert server.transport is not None
            server.transport.close()
            return "250 OK"  # never reaches the client: the connection is gone
        for address in envelope.rcpt_tos:
            if address in self.refuse_data:
                return self.refuse_data[address]
        with self.lock:
            self.received.append(item)
        return "250 Message accepted for delivery"


class _CountingSMTP(SMTP):
    def __init__(self, handler: Any, sink: Sink, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    def connection_made(self, transport: Any) -> None:
        if self.transport is None:
            with self._sink.handler.lock:
                self._sink.connections += 1
            self._sink.open.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink.open.discard(self)
        super().connection_lost(exc)


class _Controller(Controller):
    def __init__(self, sink: Sink, **kwargs: Any) -> None:
        super().__init__(sink.handler, **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, self._sink, **self.SMTP_kwargs)


class Sink:
    def __init__(self, handler: SinkHandler | None = None) -> None:
        self.handler = handler or SinkHandler()
        self.port = free_port()
        self.connections = 0  # connections opened by clients (the start-up probe included)
        self.open: set[SMTP] = set()  # the server's side of connections not yet closed
        self.controller = _Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Hang up on clients still connected (a kept connection, one dropped mid-session)
        # while the loop runs: stopping the loop first would leave their transports to be
        # collected, unclosed, in some later test.
        hang_up = asyncio.run_coroutine_threadsafe(self._hang_up(), self.controller.loop)
        try:
            hang_up.result(10)
        except TimeoutError:  # a handler still busy (a slow sink): stop all the same
            hang_up.cancel()
        self.controller.stop()

    async def _hang_up(self) -> None:
        for protocol in list(self.open):
            if protocol.transport is not None:
                protocol.transport.close()
        for _ in range(100):
            if not self.open:
                return
            await asyncio.sleep(0.01)

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)


class GreetingRefuser:
    """A server that greets every connection with ``greeting`` (e.g. 421) and hangs up."""

    def __init__(self, greeting: bytes = b"421 4.3.2 Service not available\r\n") -> None:
        self.port = free_port()
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                self.request.sendall(greeting)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> GreetingRefuser:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
