"""Mail transports: hand one serialised message to one recipient and say what happened.

A transport never raises for a delivery problem. It returns a :class:`Delivery`
whose :class:`Outcome` tells the caller what to do with the outbox row:

* ``SENT``: the server said 2xx to the message for this recipient (or the file
  is in the Maildir's ``new/``). Only now may the row be marked sent.
* ``TEMPORARY``: try again later. 4xx replies, refused or dropped connections,
  timeouts, and configuration problems (failed AUTH, failed TLS): the operator
  fixes the configuration and nothing was lost meanwhile.
* ``PERMANENT``: the server refused this message or recipient with a 5xx
  reply at MAIL FROM, RCPT or DATA (RFC 5321 section 4.2.1); retrying is futile.

``classify_reply`` is the pure core; :class:`SmtpTransport` and
:class:`MaildirTransport` are the I/O around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import re
import secrets
import socket
import ssl
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from syndicator.config import Config

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "tls"]
# Where in the SMTP session a reply or failure happened; it ends up in `detail`.
Stage = Literal["connect", "EHLO", "STARTTLS", "AUTH", "MAIL FROM", "RCPT", "DATA"]

_T = TypeVar("_T")
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_DETAIL_LIMIT = 300
_CLOSE_GRACE = 1.0  # seconds to wait for a closed connection's socket to be released
_AUTH_HINT = "check mail.smtp.username and the SMTP password"
_TLS_HINT = "check mail.smtp.security, the port and the server's certificate"


class Outcome(enum.Enum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    code: int | None  # SMTP reply code, if a server replied
    detail: str  # one line, for logs and state


class Transport(Protocol):
    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery: ...

    async def close(self) -> None: ...


def one_line(text: str, limit: int = _DETAIL_LIMIT) -> str:
    """Collapse whitespace (multi-line replies, CR/LF) and cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def classify_reply(code: int, text: str, stage: Stage) -> Delivery:
    """What an SMTP reply ``code`` (with its ``text``) at ``stage`` means for this message.

    2xx is SENT. 5xx at MAIL FROM, RCPT or DATA is PERMANENT. Everything else is
    TEMPORARY: 4xx by definition; a refusal while setting up the session
    (greeting, EHLO, STARTTLS, AUTH, or 530 "authentication required") is about
    the server or our configuration, not this message, so it must not bounce it.
    """
    detail = f"{code} {text} ({stage})"
    if 200 <= code < 300:
        return Delivery(Outcome.SENT, code, one_line(detail))
    if stage == "AUTH" or code == 530:
        return Delivery(
            Outcome.TEMPORARY,
            code,
            one_line(f"{detail}: authentication failed or required; {_AUTH_HINT}"),
        )
    if stage == "STARTTLS":
        return Delivery(
            Outcome.TEMPORARY, code, one_line(f"{detail}: STARTTLS refused; {_TLS_HINT}")
        )
    if 500 <= code < 600 and stage in ("MAIL FROM", "RCPT", "DATA"):
        return Delivery(Outcome.PERMANENT, code, one_line(detail))
    if not 400 <= code < 600:
        detail = f"{detail}: unexpected reply"
    return Delivery(Outcome.TEMPORARY, code, one_line(detail))


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind ``exc`` (aiosmtplib wraps it in SMTPConnectError)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _needs_smtputf8(*addresses: str) -> bool:
    return not all(address.isascii() for address in addresses)


class _StepFailed(Exception):
    """Internal: ``error`` happened at ``stage`` of the SMTP session."""

    def __init__(self, stage: Stage, error: Exception) -> None:
        super().__init__(stage, error)
        self.stage: Stage = stage
        self.error = error


async def _step(stage: Stage, awaitable: Awaitable[_T]) -> _T:
    try:
        return await awaitable
    except (SMTPException, OSError, ValueError) as exc:  # ssl.SSLError, TimeoutError: OSError
        raise _StepFailed(stage, exc) from exc


@dataclass(slots=True)
class _Link:
    """A connection's asyncio transport and socket, kept to close them for sure."""

    transport: asyncio.BaseTransport
    socket: Any  # asyncio's TransportSocket: fileno() is -1 once the socket is closed


class SmtpTransport:
    """Deliver over SMTP through a small pool of persistent aiosmtplib connections.

    At most ``pool_size`` sessions are in use at once. A connection is opened
    when first needed, probed with RSET before it is reused, and discarded
    (never reused) after any failure that may have left it in an unknown state.
    ``security`` is explicit: ``"none"`` never upgrades (aiosmtplib's default,
    ``start_tls=None``, would STARTTLS whenever the server offers it),
    ``"starttls"`` fails unless the server offers STARTTLS and the certificate
    verifies, ``"tls"`` is implicit TLS from the first byte (usually port 465).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Security,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        pool_size: int = 4,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be 'none', 'starttls' or 'tls', not {security!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.host = host
        self.port = port
        self.security: Security = security
        self.username = username
        self.timeout = timeout
        self.pool_size = pool_size
        self._password = password
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[SMTP] = []  # connected, envelope clear; last in, first out
        self._links: dict[SMTP, _Link] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"SmtpTransport({self.host}:{self.port}, security={self.security!r})"

    @property
    def _server(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        """Send ``message`` from ``sender`` to the one envelope ``recipient``."""
        if not recipient.strip() or _UNSAFE_ADDRESS.search(recipient):
            return Delivery(Outcome.PERMANENT, None, f"invalid recipient address {recipient!r}")
        if not sender.strip() or _UNSAFE_ADDRESS.search(sender):
            return Delivery(
                Outcome.TEMPORARY, None, f"invalid sender address {sender!r}; check mail.from"
            )
        async with self._slots:
            if self._closed:
                return Delivery(Outcome.TEMPORARY, None, "transport is closed")
            try:
                return await self._send_in_slot(message, sender, recipient)
            except Exception as exc:  # the contract: never raise for one message
                log.exception("unexpected error sending to %s via %s", recipient, self._server)
                return Delivery(Outcome.TEMPORARY, None, one_line(f"unexpected error: {exc!r}"))

    async def _send_in_slot(self, message: bytes, sender: str, recipient: str) -> Delivery:
        smtp: SMTP | None = None
        try:
            smtp, reused = await self._checkout()
            utf8 = _needs_smtputf8(sender, recipient)
            if utf8 and not smtp.supports_extension("smtputf8"):
                self._idle.append(smtp)
                return Delivery(
                    Outcome.PERMANENT,
                    None,
                    f"{self._server} does not support SMTPUTF8, needed for a non-ASCII address",
                )
            encoding = "utf-8" if utf8 else "ascii"
            options = self._mail_options(smtp, message, utf8=utf8)
            try:
                await _step("MAIL FROM", smtp.mail(sender, options=options, encoding=encoding))
            except _StepFailed as failure:
                closing = isinstance(failure.error, SMTPResponseException) and (
                    failure.error.code == 421
                )
                if not reused or (isinstance(failure.error, SMTPResponseException) and not closing):
                    raise
                # The server closed an idle connection (or says it will: 421): once more,
                # on a new one.
                log.debug("idle connection to %s went away: %s", self._server, failure.error)
                await self._release(smtp, graceful=False)
                smtp = None
                smtp = await self._connect()
                await _step("MAIL FROM", smtp.mail(sender, options=options, encoding=encoding))
            # A normal return from RCPT means 250/251 for *this* recipient; any
            # other reply raises SMTPRecipientRefused. We send one recipient per
            # transaction, so there is no partial acceptance to read from a dict.
            await _step("RCPT", smtp.rcpt(recipient, encoding=encoding))
            reply = await _step("DATA", smtp.data(message))
        except _StepFailed as failure:
            delivery = self._classify(failure.stage, failure.error)
            if smtp is not None:
                await self._recycle_after_failure(smtp, failure.stage)
            return delivery
        except BaseException:  # cancelled (or a bug): the session state is unknown
            if smtp is not None:
                self._links.pop(smtp, None)
                smtp.close()
            raise
        self._idle.append(smtp)
        return classify_reply(reply.code, reply.message, "DATA")

    @staticmethod
    def _mail_options(smtp: SMTP, message: bytes, *, utf8: bool) -> list[str]:
        options: list[str] = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(message)}")  # RFC 1870
        if message.isascii():  # the usual case: neither of the two below
            if utf8:
                options.append("SMTPUTF8")
            return options
        if smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152
        end = message.find(b"\r\n\r\n")
        headers = message if end < 0 else message[:end]
        if utf8 or (not headers.isascii() and smtp.supports_extension("smtputf8")):
            options.append("SMTPUTF8")  # RFC 6531: UTF-8 addresses or header fields
        return options

    async def _checkout(self) -> tuple[SMTP, bool]:
        """A connected session with a clear envelope, and whether it was reused.

        Sessions go back to the pool only after a completed transaction or an RSET,
        so a reused one needs no extra round trip; one the server closed meanwhile
        shows at MAIL FROM, and the caller then retries once on a new connection.
        """
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp, True
            await self._release(smtp, graceful=False)
        return await self._connect(), False

    async def _connect(self) -> SMTP:
        smtp = SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            # Explicit: None would STARTTLS opportunistically. We upgrade below.
            start_tls=False,
            tls_context=self._tls_context,
            timeout=self.timeout,
            local_hostname=self._local_hostname,
        )
        await _step("connect", smtp.connect())  # closes itself on failure
        self._remember(smtp)
        try:
            await _step("EHLO", self._greet(smtp))
            if self.security == "starttls":
                # Raises SMTPException if the server does not offer STARTTLS.
                await _step("STARTTLS", smtp.starttls())
                self._remember(smtp)  # the TLS transport replaced the plain one
                await _step("EHLO", self._greet(smtp))  # RFC 3207: forget pre-TLS EHLO
            if self.username:
                await _step("AUTH", smtp.login(self.username, self._password))
        except _StepFailed:
            await self._release(smtp, graceful=False)
            raise
        except BaseException:
            self._links.pop(smtp, None)
            smtp.close()
            raise
        log.debug("connected to %s (%s)", self._server, self.security)
        return smtp

    @staticmethod
    async def _greet(smtp: SMTP) -> None:
        try:
            await smtp.ehlo()
        except SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo()

    async def _recycle_after_failure(self, smtp: SMTP, stage: Stage) -> None:
        """Keep a session whose transaction was refused cleanly; drop anything doubtful."""
        if stage in ("MAIL FROM", "RCPT", "DATA") and smtp.is_connected:
            try:
                await smtp.rset()
            except (SMTPException, OSError):
                pass
            else:
                self._idle.append(smtp)
                return
        await self._release(smtp, graceful=False)

    def _classify(self, stage: Stage, error: Exception) -> Delivery:
        server = self._server
        # Reply-based errors carry the code; their type says the stage reliably.
        if isinstance(error, SMTPRecipientsRefused) and error.recipients:
            error = error.recipients[0]
        if isinstance(error, SMTPResponseException) and error.code > 0:
            if isinstance(error, SMTPConnectResponseError):
                stage = "connect"
            elif isinstance(error, SMTPHeloError):
                stage = "EHLO"
            elif isinstance(error, SMTPAuthenticationError):
                stage = "AUTH"
            elif isinstance(error, SMTPSenderRefused):
                stage = "MAIL FROM"
            elif isinstance(error, SMTPRecipientRefused):
                stage = "RCPT"
            elif isinstance(error, SMTPDataError):
                stage = "DATA"
            return classify_reply(error.code, error.message, stage)
        tls_error = _tls_error(error)
        if tls_error is not None or stage == "STARTTLS":
            reason = tls_error if tls_error is not None else error
            return Delivery(
                Outcome.TEMPORARY,
                None,
                one_line(f"TLS with {server} failed ({stage}): {reason}; {_TLS_HINT}"),
            )
        if isinstance(error, SMTPTimeoutError | TimeoutError):
            detail = f"no reply from {server} within {self.timeout:g} s ({stage})"
            if stage == "DATA":
                detail += "; the message may have been delivered"
            return Delivery(Outcome.TEMPORARY, None, detail)
        if isinstance(error, SMTPConnectError):
            cause = error.__cause__ or error
            return Delivery(
                Outcome.TEMPORARY, None, one_line(f"cannot connect to {server}: {cause}")
            )
        if isinstance(error, SMTPServerDisconnected | ConnectionError):
            return Delivery(
                Outcome.TEMPORARY, None, one_line(f"{server} closed the connection ({stage})")
            )
        if stage == "AUTH":
            return Delivery(Outcome.TEMPORARY, None, one_line(f"{error} ({stage}); {_AUTH_HINT}"))
        if isinstance(error, SMTPNotSupported) or (
            isinstance(error, ValueError) and stage in ("RCPT", "MAIL FROM")
        ):
            outcome = Outcome.PERMANENT if stage == "RCPT" else Outcome.TEMPORARY
            return Delivery(outcome, None, one_line(f"{error} ({stage})"))
        return Delivery(Outcome.TEMPORARY, None, one_line(f"{error} ({stage}, {server})"))

    async def close(self) -> None:
        """Wait for sends in progress, then QUIT every connection. Later sends are TEMPORARY."""
        self._closed = True
        for _ in range(self.pool_size):
            await self._slots.acquire()
        try:
            idle, self._idle = self._idle, []
            await asyncio.gather(*(self._release(smtp, graceful=True) for smtp in idle))
        finally:
            for _ in range(self.pool_size):
                self._slots.release()

    def _remember(self, smtp: SMTP) -> None:
        if smtp.transport is not None:
            self._links[smtp] = _Link(smtp.transport, smtp.transport.get_extra_info("socket"))

    async def _release(self, smtp: SMTP, *, graceful: bool) -> None:
        """Close ``smtp`` (after QUIT if ``graceful``) and wait until its socket is closed.

        asyncio closes a TLS connection asynchronously (close_notify first, up to
        30 s). Waiting here, and aborting what does not close in time, means
        neither a daemon that exits right after :meth:`close` nor the tests leak
        sockets. aiosmtplib may already have dropped its transport (timeouts,
        421, lost connections), so the link is remembered from connect time.
        """
        link = self._links.pop(smtp, None)
        if graceful and smtp.is_connected:
            with contextlib.suppress(SMTPException, OSError):
                await smtp.quit()
        elif link is not None and isinstance(link.transport, asyncio.WriteTransport):
            link.transport.abort()
        smtp.close()
        if link is None or link.socket is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_GRACE
        while link.socket.fileno() != -1:
            if loop.time() > deadline:
                if isinstance(link.transport, asyncio.WriteTransport):
                    link.transport.abort()
                await asyncio.sleep(0)
                return
            await asyncio.sleep(0.005)


class MaildirTransport:
    """Deliver into a Maildir: write to ``tmp/``, fsync, rename into ``new/``.

    The Maildir itself (and ``cur/ new/ tmp/``) is created on first use, but not
    its parent: a missing parent is more likely a typo than an intent. Lines are
    stored with LF endings, as mail readers expect; a ``Delivered-To:`` header
    names the envelope recipient.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._counter = itertools.count(1)
        host = socket.gethostname() or "localhost"
        self._hostname = host.replace("/", r"\057").replace(":", r"\072")

    def __repr__(self) -> str:
        return f"MaildirTransport({str(self.path)!r})"

    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        if not recipient.strip() or _UNSAFE_ADDRESS.search(recipient):
            return Delivery(Outcome.PERMANENT, None, f"invalid recipient address {recipient!r}")
        try:
            name = await asyncio.to_thread(self._deliver, message, recipient)
        except OSError as exc:
            where = exc.filename or self.path
            return Delivery(
                Outcome.TEMPORARY,
                None,
                one_line(
                    f"cannot deliver into maildir {self.path}: {where}: {exc.strerror or exc}"
                ),
            )
        return Delivery(Outcome.SENT, None, f"delivered to {self.path / 'new' / name}")

    def _unique_name(self) -> str:
        # The classic Maildir scheme: seconds, then a part unique on this host.
        now = time.time()
        seconds, micros = int(now), int((now % 1) * 1_000_000)
        serial = next(self._counter)
        return f"{seconds}.M{micros}P{os.getpid()}Q{serial}R{secrets.token_hex(4)}.{self._hostname}"

    def _deliver(self, message: bytes, recipient: str) -> str:
        self.path.mkdir(mode=0o700, exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(mode=0o700, exist_ok=True)
        body = message.replace(b"\r\n", b"\n")
        data = b"Delivered-To: " + recipient.encode("utf-8") + b"\n" + body
        name = self._unique_name()
        temporary = self.path / "tmp" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            temporary.rename(self.path / "new" / name)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        directory = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return name

    async def close(self) -> None:
        """Nothing to release; here for the :class:`Transport` protocol."""


def transport_from_config(config: Config) -> Transport:
    """The transport ``config.mail.transport`` names, set up from ``config.mail``.

    Raises :class:`~syndicator.errors.ConfigError` if the SMTP password file cannot be read.
    """
    mail = config.mail
    if mail.transport == "maildir":
        return MaildirTransport(mail.maildir)
    smtp = mail.smtp
    return SmtpTransport(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        username=config.smtp_username(),
        password=config.smtp_password(),
        timeout=smtp.timeout,
        pool_size=smtp.pool_size,
    )
