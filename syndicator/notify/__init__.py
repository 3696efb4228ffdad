"""Notification mail: composing messages for subscribers (sending lives in the transports)."""

from __future__ import annotations

from syndicator.notify.compose import (
    MailSettings,
    Recipient,
    compose,
    describe_filters,
    make_message_id,
    safe_header_text,
)

__all__ = [
    "MailSettings",
    "Recipient",
    "compose",
    "describe_filters",
    "make_message_id",
    "safe_header_text",
]
