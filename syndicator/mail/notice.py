"""Notices: the one-off mails of the subscription pages (confirm your address, manage it).

Pure, like :mod:`syndicator.mail.compose`: the clock and the Message-ID are handed in.
A notice is ``multipart/alternative``, text then HTML, rendered from
``templates/mail/notice.txt`` and ``notice.html``. Its headers come from configuration
(checked when it was loaded), from an address that passed the subscriber validation, and
from text that goes through :func:`safe_header_text`.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from syndicator.mail.compose import (
    SUBJECT_LIMIT,
    MailSettings,
    mail_environment,
    safe_header_text,
)
from syndicator.publish.feeds import plain_title

_MAX_URL = 900


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notice says: a heading, paragraphs, one link to act on, closing lines."""

    subject: str
    heading: str
    paragraphs: tuple[str, ...]
    action_label: str
    action_url: str
    closing: tuple[str, ...] = ()


def compose_notice(
    notice: Notice,
    *,
    settings: MailSettings,
    recipient: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """The notice as bytes ready for SMTP ``DATA`` (CRLF line ends, 7-bit)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    url = notice.action_url
    if (
        not url.startswith(("https://", "http://"))
        or len(url) > _MAX_URL
        or any(char.isspace() or ord(char) < 32 for char in url)
    ):
        raise ValueError(f"action_url: {url!r} must be an http(s) URL")
    site_title = safe_header_text(plain_title(settings.site_title), limit=SUBJECT_LIMIT)
    environment = mail_environment()
    context = {
        "site_title": site_title,
        "heading": notice.heading,
        "paragraphs": notice.paragraphs,
        "action_label": notice.action_label,
        "action_url": url,
        "closing": notice.closing,
    }
    text = environment.get_template("mail/notice.txt").render(context)
    html = environment.get_template("mail/notice.html").render(context)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = settings.sender
    message["To"] = Address(addr_spec=recipient)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Subject"] = safe_header_text(notice.subject, limit=SUBJECT_LIMIT)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 section 5
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes()
