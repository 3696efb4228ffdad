"""Reading bounces and complaints: what one report says, as data.

:func:`parse_report` is pure: bytes in, a :class:`Report` out, never an exception.
It recognises, in this order:

1. RFC 5965 abuse reports (``multipart/report; report-type=feedback-report``): a
   ``feedback-type`` of abuse, fraud or virus is a complaint;
2. RFC 3464 delivery status notifications (``multipart/report;
   report-type=delivery-status``): per recipient, ``Action`` and ``Status``. The
   status class decides (RFC 3463): 5.x.x is a hard bounce, 4.x.x a soft one even
   when the action is ``failed`` (a full mailbox returned when the queue gave up);
   ``delayed`` is only a warning;
3. the non-standard shapes real MTAs send (Postfix, Exim, qmail, Exchange, Yahoo, ...),
   through ``flufl.bounce``'s detectors (those of GNU Mailman), and last a text bounce
   from a mailer daemon that quotes an RFC 3463 status code;
4. auto-replies (``Auto-Submitted: auto-replied``, ``X-Autoreply``, "Out of office"),
   which are ignored. Only now: Postfix's DSNs carry ``Auto-Submitted: auto-replied``
   too, so that header alone never discards a bounce.

Who a report is about comes from the VERP token of its return path
(:mod:`syndicator.mail.verp`), never from the addresses it names; those are kept as
evidence.
"""

from __future__ import annotations

import email
import enum
import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from flufl.bounce import all_failures

from syndicator.mail.verp import find_tokens

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 10 * 1024 * 1024
_EVIDENCE_LIMIT = 300
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_CODE = re.compile(r"(?<!\d)([45])\d\d(?![\d.])")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery status notification|delivery failure|failure notice|returned mail|"
    r"mail delivery failed|could not be delivered|not delivered",
    re.IGNORECASE,
)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|"
    r"auto:|vacation|abwesenheit|absence)",
    re.IGNORECASE,
)
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus"})


class Kind(enum.Enum):
    HARD = "hard"  # a permanent failure: 5.x.x
    SOFT = "soft"  # a temporary failure returned to us: 4.x.x
    COMPLAINT = "complaint"  # the recipient reported the message as spam (ARF)
    DELAYED = "delayed"  # only a warning that delivery is still being tried
    AUTO_REPLY = "auto-reply"  # out of office and the like
    OTHER = "other"  # a report that asks nothing of us (delivered, not-spam, ...)
    UNRECOGNISED = "unrecognised"  # not a bounce, complaint or auto-reply we can read
    REJECTED = "rejected"  # too large or not a message at all

    @property
    def counts(self) -> bool:
        """Whether this kind of report can change a subscription."""
        return self in (Kind.HARD, Kind.SOFT, Kind.COMPLAINT)


@dataclass(frozen=True, slots=True)
class Report:
    """What one bounce or complaint says."""

    kind: Kind
    shape: str  # how it was read: "dsn", "arf", "flufl", "text", ...
    status: str = ""  # RFC 3463 status code, e.g. "5.1.1"
    recipient: str = ""  # the failed (or complaining) address the report names
    evidence: str = ""  # one line: the diagnostic, the feedback type, or why it was rejected
    tokens: tuple[str, ...] = ()  # VERP tokens found, unverified
    report_id: str = ""  # the report's own Message-ID


def one_line(text: str, limit: int = _EVIDENCE_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def kind_of_status(status: str, *, action: str = "failed") -> Kind:
    """What an RFC 3463 ``status`` with an RFC 3464 ``action`` means for the subscriber.

    The status class wins over the action: 4.x.x is soft even when the action is
    ``failed``; 5.x.x is hard. A ``delayed`` action is a warning whatever the status.
    """
    action = action.strip().lower()
    if action.startswith("delayed"):
        return Kind.DELAYED
    if action.startswith(("delivered", "relayed", "expanded")):
        return Kind.OTHER
    if status.startswith("4."):
        return Kind.SOFT
    if status.startswith("5."):
        return Kind.HARD
    if status.startswith("2."):
        return Kind.OTHER
    return Kind.HARD  # failed with no usable status: RFC 3464 makes Status mandatory


def _text_of(message: Message) -> str:
    """Every header and every decoded text part, for token and status searches."""
    pieces: list[str] = []
    for part in message.walk():
        pieces.extend(f"{name}: {value}" for name, value in part.items())
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                pieces.append(payload.decode(charset, "replace"))
            except LookupError:
                pieces.append(payload.decode("utf-8", "replace"))
        elif isinstance(payload, str):
            pieces.append(payload)
    return "\n".join(pieces)


def _address(field: str | None) -> str:
    """The address of a ``Final-Recipient: rfc822; a@b`` style field."""
    if not field:
        return ""
    _kind, semicolon, value = str(field).partition(";")
    value = value if semicolon else field
    return value.strip().strip("<>").strip()


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, str):
        # Some senders put the fields in a single text block; parse it ourselves.
        return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\n\s*\n", payload)]
    return []


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    return str(message.get_param("report-type", "") or "").lower()


def _arf(message: Message, tokens: tuple[str, ...], report_id: str) -> Report | None:
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        fields: dict[str, str] = {}
        for block in _blocks(part):
            fields |= {name.lower(): str(value) for name, value in block.items()}
        feedback = fields.get("feedback-type", "").strip().lower()
        recipient = _address(fields.get("original-rcpt-to"))
        evidence = one_line(
            f"feedback-type {feedback or '?'} from "
            f"{fields.get('reporting-mta', fields.get('user-agent', 'unknown'))}"
        )
        kind = Kind.COMPLAINT if feedback in _COMPLAINT_TYPES else Kind.OTHER
        return Report(kind, "arf", "", recipient, evidence, tokens, report_id)
    return None


def _dsn(message: Message, tokens: tuple[str, ...], report_id: str) -> Report | None:
    found: list[Report] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _blocks(part):
            action = str(block.get("action", "") or "")
            if not action:
                continue  # the per-message block
            status_field = str(block.get("status", "") or "").strip()
            match = _STATUS.search(status_field)
            status = match.group(0) if match else ""
            diagnostic = str(block.get("diagnostic-code", "") or "")
            if not status and (code := _SMTP_CODE.search(diagnostic)):
                status = f"{code.group(1)}.0.0"
            recipient = _address(block.get("original-recipient")) or _address(
                block.get("final-recipient")
            )
            kind = kind_of_status(status, action=action)
            evidence = one_line(
                f"action {action.strip().lower()}, status {status or '?'}"
                + (f": {diagnostic}" if diagnostic else "")
            )
            found.append(Report(kind, "dsn", status, recipient, evidence, tokens, report_id))
    if not found:
        return None
    # One recipient per message here; if a report lists several, the worst decides.
    order = (Kind.HARD, Kind.SOFT, Kind.DELAYED, Kind.OTHER)
    return min(found, key=lambda report: order.index(report.kind))


def _flufl(message: Message, text: str, tokens: tuple[str, ...], report_id: str) -> Report | None:
    temporary, permanent = all_failures(message)
    if not temporary and not permanent:
        return None
    if not permanent:
        recipient = sorted(temporary)[0].decode("ascii", "replace")
        return Report(Kind.DELAYED, "flufl", "", recipient, "a delay warning", tokens, report_id)
    recipient = sorted(permanent)[0].decode("ascii", "replace")
    status, kind, evidence = _status_in_text(text)
    return Report(kind or Kind.HARD, "flufl", status, recipient, evidence, tokens, report_id)


def _status_in_text(text: str) -> tuple[str, Kind | None, str]:
    """The first RFC 3463 status code in a text bounce, its kind and the line it is on."""
    match = _STATUS.search(text)
    if match is None:
        return "", None, ""
    status = match.group(0)
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start : end if end >= 0 else len(text)]
    return status, kind_of_status(status), one_line(line)


def _text_bounce(
    message: Message, text: str, tokens: tuple[str, ...], report_id: str
) -> Report | None:
    sender = str(message.get("from", "") or "")
    subject = str(message.get("subject", "") or "")
    if not (_DAEMON.search(sender) or _BOUNCE_SUBJECT.search(subject)):
        return None
    status, kind, evidence = _status_in_text(text)
    if kind is None:
        return None
    return Report(kind, "text", status, "", evidence, tokens, report_id)


def _is_auto_reply(message: Message) -> bool:
    auto = str(message.get("auto-submitted", "") or "").strip().lower()
    precedence = str(message.get("precedence", "") or "").strip().lower()
    return (
        (auto not in {"", "no"})
        or message.get("x-autoreply") is not None
        or message.get("x-autorespond") is not None
        or precedence in ("auto_reply", "bulk", "junk")
        or bool(_AUTO_REPLY_SUBJECT.search(str(message.get("subject", "") or "")))
    )


def parse_report(data: bytes, *, limit: int = MAX_REPORT_BYTES) -> Report:
    """Read one bounce, complaint or auto-reply; never raises."""
    if len(data) > limit:
        return Report(
            Kind.REJECTED, "none", evidence=f"{len(data)} bytes, larger than the {limit} allowed"
        )
    if not data.strip():
        return Report(Kind.REJECTED, "none", evidence="empty report")
    try:
        message = email.message_from_bytes(data)
        report_id = one_line(str(message.get("message-id", "") or ""), 200)
        text = _text_of(message)
        tokens = tuple(find_tokens(text))
        report_type = _report_type(message)
        report: Report | None = None
        if report_type == "feedback-report":
            report = _arf(message, tokens, report_id)
        if report is None and report_type in ("delivery-status", ""):
            report = _dsn(message, tokens, report_id)
        if report is None:
            report = _arf(message, tokens, report_id)  # a feedback part with a wrong type
        if report is None:
            report = _flufl(message, text, tokens, report_id)
        if report is None:
            report = _text_bounce(message, text, tokens, report_id)
        if report is None and _is_auto_reply(message):
            report = Report(Kind.AUTO_REPLY, "headers", "", "", "auto-reply", tokens, report_id)
        if report is None:
            subject = one_line(str(message.get("subject", "") or ""), 120)
            report = Report(
                Kind.UNRECOGNISED, "none", evidence=f"subject {subject!r}", tokens=tokens
            )
        return report
    except Exception as exc:  # the contract: one bad report is one line, never a crash
        return Report(Kind.REJECTED, "none", evidence=one_line(f"malformed report: {exc!r}"))
