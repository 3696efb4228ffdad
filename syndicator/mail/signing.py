"""HMAC signatures for the links in mail and the forms of the web pages.

Every signature names its purpose first (``unsubscribe``, ``manage``, ``confirm``,
``csrf``), so a value signed for one purpose never verifies for another, then the fields
it covers, joined with ``:``. Callers put any field that may itself contain ``:`` (an
address) last, so the joined message is unambiguous. HMAC-SHA256 cut to 128 bits,
URL-safe base64 without padding: 22 characters.
"""

from __future__ import annotations

import base64
import hmac

SIGNATURE_LENGTH = 22


def signature(secret: bytes, purpose: str, *fields: str) -> str:
    """The signature of ``fields`` for ``purpose`` under ``secret``."""
    message = ":".join((purpose, *fields)).encode("utf-8")
    digest = hmac.digest(secret, message, "sha256")[:16]  # one call into OpenSSL
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def signature_matches(given: str, secret: bytes, purpose: str, *fields: str) -> bool:
    """Whether ``given`` is the signature of ``fields`` for ``purpose`` (constant time)."""
    expected = signature(secret, purpose, *fields)
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("ascii"))
