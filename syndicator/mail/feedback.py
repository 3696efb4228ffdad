"""Acting on bounces and complaints: the policy, and the places reports are read from.

For each report (:func:`act_on_report`), in one transaction:

1. a report already processed (same bytes) changes nothing;
2. it is parsed (:func:`syndicator.mail.bounces.parse_report`); auto-replies, delay
   warnings and anything unreadable are recorded as processed and change nothing;
3. its VERP token must verify and name a message we sent; otherwise (forged, foreign,
   or for an address we never mailed) it changes nothing;
4. the policy: a hard bounce suspends the subscriber at once; a soft bounce counts,
   and ``soft_limit`` of them within ``soft_days`` suspend; a complaint unsubscribes and
   puts the address on the suppression list. Each decision is recorded with its reason
   and the report's evidence.

Reports come from a Maildir (each processed file is moved into its ``.Processed``
folder only after its outcome is committed, so a crash never loses one and the
digest check makes a second reading harmless), from an mbox or single message
(``syndicator bounces process``), or from an IMAP mailbox.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import logging
import mailbox
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Connection

from syndicator.config import BouncesConfig, Config, ImapConfig
from syndicator.errors import SyndicatorError
from syndicator.mail import suppression
from syndicator.mail.bounces import MAX_REPORT_BYTES, Kind, Report, parse_report
from syndicator.mail.verp import message_key_of
from syndicator.state import bounces as store
from syndicator.state.db import State

log = logging.getLogger(__name__)

PROCESSED_FOLDER = ".Processed"
_ACTIVE = "active"
_SUSPENDED = "suspended"
_UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Policy:
    soft_limit: int = 5
    soft_days: int = 14

    @classmethod
    def from_config(cls, bounces: BouncesConfig) -> Policy:
        return cls(soft_limit=bounces.soft_limit, soft_days=bounces.soft_days)


@dataclass(slots=True)
class FeedbackReport:
    """What a run over reports did."""

    read: int = 0
    counted: int = 0
    ignored: int = 0
    suspended: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.read += 1
        if outcome.counted:
            self.counted += 1
        else:
            self.ignored += 1
        if outcome.decision == "suspended":
            self.suspended.append(outcome.email)
        elif outcome.decision == "unsubscribed":
            self.unsubscribed.append(outcome.email)


@dataclass(frozen=True, slots=True)
class Outcome:
    line: str  # one line for the log
    counted: bool = False
    decision: str = "none"
    email: str = ""


def _verified_message(
    conn: Connection, report: Report, secret: bytes
) -> tuple[store.BouncedMessage | None, bool]:
    """The message a report's token names; and whether any token verified at all."""
    verified = False
    for token in report.tokens:
        key = message_key_of(token, secret)
        if key is None:
            continue
        verified = True
        found = store.bounced_message(conn, key)
        if found is not None and found.status == "sent":
            return found, True
    return None, verified


def act_on_report(
    state: State, data: bytes, *, secret: bytes, policy: Policy, now: datetime, origin: str
) -> Outcome:
    """Read one report and apply the policy (see the module's description)."""
    digest = hashlib.sha256(data).hexdigest()
    report = parse_report(data)
    with state.transaction() as conn:
        if store.report_seen(conn, digest):
            return Outcome(f"{origin}: already processed")
        outcome = _decide(conn, report, secret=secret, policy=policy, now=now)
        line = f"{origin}: {outcome.line}"
        # No address here: `subscribers forget` must leave none behind.
        store.record_report(
            conn, digest, outcome=f"{report.kind.value}: {outcome.decision}", now=now
        )
    return Outcome(line, outcome.counted, outcome.decision, outcome.email)


def _decide(
    conn: Connection, report: Report, *, secret: bytes, policy: Policy, now: datetime
) -> Outcome:
    what = f"{report.kind.value} ({report.shape})"
    if not report.kind.counts:
        return Outcome(f"{what}, ignored: {report.evidence}")
    message, verified = _verified_message(conn, report, secret)
    if message is None:
        why = (
            "its return path names no message we sent"
            if verified
            else "no valid return-path token (forged or not ours)"
        )
        return Outcome(f"{what}, ignored: {why}")
    evidence = report.evidence or report.status
    if report.recipient and report.recipient.lower() != message.recipient.lower():
        evidence = f"{evidence} (report names {report.recipient})"
    subscriber = store.subscriber_status(conn, message.subscriber_id)
    email = message.recipient
    decision, reason = "none", ""
    if report.kind is Kind.COMPLAINT:
        suppression.suppress_address(conn, email, reason="complaint", now=now)
        decision, reason = "unsubscribed", "spam complaint; suppressed"
        if subscriber is not None and subscriber[1] in (_ACTIVE, _SUSPENDED):
            store.set_subscriber_status(conn, message.subscriber_id, _UNSUBSCRIBED, now=now)
        elif subscriber is None:
            decision = "suppressed"
    elif subscriber is None or subscriber[1] != _ACTIVE:
        decision, reason = "none", "not an active subscriber"
    elif report.kind is Kind.HARD:
        store.set_subscriber_status(conn, message.subscriber_id, _SUSPENDED, now=now)
        decision, reason = "suspended", f"hard bounce {report.status or ''}".strip()
    else:
        since = now - timedelta(days=policy.soft_days)
        # Each message counts once, however many reports come back about it.
        count = store.soft_bounces_since(conn, message.subscriber_id, since, besides=message.key)
        count += 1
        if count >= policy.soft_limit:
            store.set_subscriber_status(conn, message.subscriber_id, _SUSPENDED, now=now)
            decision = "suspended"
            reason = f"{count} soft bounces within {policy.soft_days} days"
        else:
            decision = "counted"
            reason = f"soft bounce {count} of {policy.soft_limit} within {policy.soft_days} days"
    store.record_event(
        conn,
        message_key=message.key,
        subscriber_id=message.subscriber_id,
        kind=report.kind.value,
        status=report.status,
        decision=decision,
        reason=reason,
        evidence=evidence,
        now=now,
    )
    return Outcome(
        f"{what} for {email}: {decision}" + (f" ({reason})" if reason else ""),
        counted=True,
        decision=decision,
        email=email,
    )


def _log(outcome: Outcome) -> None:
    if outcome.decision in ("suspended", "unsubscribed"):
        log.warning("%s", outcome.line)
    else:
        log.info("%s", outcome.line)


# --- sources -------------------------------------------------------------------------------


def _maildir_files(path: Path) -> Iterator[Path]:
    for sub in ("new", "cur"):
        folder = path / sub
        try:
            names = sorted(entry.name for entry in folder.iterdir())
        except FileNotFoundError:
            continue
        for name in names:
            if not name.startswith("."):
                yield folder / name


def process_maildir(
    state: State,
    path: Path,
    *,
    secret: bytes,
    policy: Policy,
    now: datetime,
    move: bool = True,
) -> FeedbackReport:
    """Process every message in a Maildir; with ``move``, each goes to ``.Processed`` after.

    A file that cannot be read is logged and left where it is; the others go on.
    """
    result = FeedbackReport()
    if not path.is_dir():
        # Nothing arrived yet: the MTA creates the Maildir (as its own user) with the first.
        return result
    done = path / PROCESSED_FOLDER
    if move:
        for sub in ("cur", "new", "tmp"):
            (done / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    for file in _maildir_files(path):
        try:
            with file.open("rb") as handle:
                data = handle.read(_read_limit())
        except OSError as exc:
            log.error("%s: cannot read: %s", file, exc.strerror or exc)
            continue
        outcome = act_on_report(
            state, data, secret=secret, policy=policy, now=now, origin=str(file)
        )
        _log(outcome)
        result.add(outcome)
        if move:
            name = file.name if ":2," in file.name else f"{file.name}:2,S"
            try:
                file.replace(done / "cur" / name)
            except OSError as exc:
                log.error("%s: cannot move aside: %s", file, exc.strerror or exc)
    return result


def _read_limit() -> int:
    # One byte more than a report may have: a larger one is rejected by its size.
    return MAX_REPORT_BYTES + 1


def process_path(
    state: State, where: str, *, secret: bytes, policy: Policy, now: datetime
) -> FeedbackReport:
    """``syndicator bounces process``: a Maildir, an mbox, one message, or ``-`` (stdin)."""
    if where == "-":
        data = sys.stdin.buffer.read(_read_limit())
        result = FeedbackReport()
        outcome = act_on_report(
            state, data, secret=secret, policy=policy, now=now, origin="<stdin>"
        )
        _log(outcome)
        result.add(outcome)
        return result
    path = Path(where)
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise SyndicatorError(
                f"{path} is not a Maildir (no cur/ or new/)", hint="give a Maildir, mbox or file"
            )
        return process_maildir(state, path, secret=secret, policy=policy, now=now, move=False)
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        raise SyndicatorError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    result = FeedbackReport()
    if head == b"From ":
        box = mailbox.mbox(path, create=False)
        try:
            for number, key in enumerate(box.iterkeys(), start=1):
                data = box.get_bytes(key)
                outcome = act_on_report(
                    state, data, secret=secret, policy=policy, now=now, origin=f"{path}#{number}"
                )
                _log(outcome)
                result.add(outcome)
        finally:
            box.close()
        return result
    with path.open("rb") as handle:
        data = handle.read(_read_limit())
    outcome = act_on_report(state, data, secret=secret, policy=policy, now=now, origin=str(path))
    _log(outcome)
    result.add(outcome)
    return result


# --- IMAP ----------------------------------------------------------------------------------


_PROCESSED_FLAG = "$Processed"


def _imap_connect(imap: ImapConfig, password: str, context: ssl.SSLContext) -> imaplib.IMAP4:
    client: imaplib.IMAP4
    if imap.security == "tls":
        client = imaplib.IMAP4_SSL(imap.host, imap.port, ssl_context=context, timeout=imap.timeout)
    else:
        client = imaplib.IMAP4(imap.host, imap.port, timeout=imap.timeout)
    try:
        if imap.security == "starttls":
            client.starttls(ssl_context=context)
        client.login(imap.username, password)
    except BaseException:
        client.shutdown()  # the socket, closed for sure
        raise
    return client


def process_imap(
    state: State,
    imap: ImapConfig,
    *,
    password: str,
    secret: bytes,
    policy: Policy,
    now: datetime,
    context: ssl.SSLContext | None = None,
) -> FeedbackReport:
    """Process every unprocessed message of the IMAP mailbox, then move or flag it.

    Each message is flagged (or moved) only after its outcome is committed; one not yet
    flagged after a crash is read again, and its digest makes that harmless.
    """
    result = FeedbackReport()
    tls = context or ssl.create_default_context()
    try:
        client = _imap_connect(imap, password, tls)
    except (OSError, imaplib.IMAP4.error) as exc:
        log.error(
            "bounces.imap: cannot reach %s:%s as %s: %s", imap.host, imap.port, imap.username, exc
        )
        return result
    try:
        status, _ = client.select(_quoted(imap.mailbox))
        if status != "OK":
            log.error("bounces.imap: no mailbox %r on %s", imap.mailbox, imap.host)
            return result
        if imap.move_to:
            client.create(_quoted(imap.move_to))  # "already exists" is fine
        status, found = client.uid("SEARCH", "UNKEYWORD", _PROCESSED_FLAG)
        uids = found[0].split() if status == "OK" and found and found[0] else []
        for uid in uids:
            status, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
            data = next(
                (
                    part[1]
                    for part in fetched
                    if isinstance(part, tuple) and isinstance(part[1], bytes)
                ),
                None,
            )
            if status != "OK" or data is None:
                log.error("bounces.imap: cannot fetch message %s", uid.decode())
                continue
            outcome = act_on_report(
                state,
                data,
                secret=secret,
                policy=policy,
                now=now,
                origin=f"imap:{imap.mailbox}/{uid.decode()}",
            )
            _log(outcome)
            result.add(outcome)
            client.uid("STORE", uid, "+FLAGS", f"(\\Seen {_PROCESSED_FLAG})")
            if imap.move_to:
                moved, _ = client.uid("MOVE", uid, _quoted(imap.move_to))
                if moved != "OK":
                    copied, _ = client.uid("COPY", uid, _quoted(imap.move_to))
                    if copied == "OK":
                        client.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
                        client.expunge()
    except (OSError, imaplib.IMAP4.error) as exc:
        log.error("bounces.imap: %s:%s: %s", imap.host, imap.port, exc)
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            client.logout()
    return result


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the cycle's step ------------------------------------------------------------------


def process_configured(
    config: Config, state: State, *, secret: bytes, now: datetime
) -> FeedbackReport:
    """Read the configured bounce Maildir and IMAP mailbox, if any."""
    policy = Policy.from_config(config.bounces)
    total = FeedbackReport()
    sources: list[FeedbackReport] = []
    if config.bounces.maildir is not None:
        try:
            sources.append(
                process_maildir(
                    state, config.bounces.maildir, secret=secret, policy=policy, now=now
                )
            )
        except OSError as exc:
            log.error("bounces.maildir: %s: %s", config.bounces.maildir, exc.strerror or exc)
    if config.bounces.imap.host:
        sources.append(
            process_imap(
                state,
                config.bounces.imap,
                password=config.imap_password(),
                secret=secret,
                policy=policy,
                now=now,
            )
        )
    for source in sources:
        total.read += source.read
        total.counted += source.counted
        total.ignored += source.ignored
        total.suspended += source.suspended
        total.unsubscribed += source.unsubscribed
    return total
