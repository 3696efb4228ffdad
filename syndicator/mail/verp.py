"""Per-message return paths (VERP): the envelope sender names the message it carried.

Every message leaves with the envelope sender ``<local>+<token>@<domain>``, built from
``mail.bounce_address`` (``<local>@<domain>``). The token is the message's row number in
base 36, a ``-`` and an HMAC of it cut to 60 bits in lower-case base 32: short, valid in
any local part, unchanged by MTAs that lower-case addresses, and impossible to forge
without the secret. A bounce or a complaint that comes back to that address therefore
maps to its message and subscriber without trusting anything else the report says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_PURPOSE = b"bounce:"
_SIGNATURE_CHARS = 12
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# Where a token can be found in a report: after the bounce local part and the delimiter.
_TOKEN = re.compile(r"\+([0-9a-z]{1,13})-([a-z2-7]{12})@", re.IGNORECASE)


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError(f"a message number is never negative: {number}")
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _DIGITS[rest] + digits
        if not number:
            return digits


def _signature(secret: bytes, number: str) -> str:
    digest = hmac.new(secret, _PURPOSE + number.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest[:8]).decode("ascii").lower()[:_SIGNATURE_CHARS]


def make_token(secret: bytes, message_key: int) -> str:
    """The signed token of the message with row number ``message_key``."""
    number = _base36(message_key)
    return f"{number}-{_signature(secret, number)}"


def return_path(bounce_address: str, secret: bytes, message_key: int) -> str:
    """The envelope sender for message ``message_key``: ``local+token@domain``."""
    local, at, domain = bounce_address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{bounce_address!r} is not an address, e.g. 'bounces@news.example.org'")
    return f"{local}+{make_token(secret, message_key)}@{domain}"


def message_key_of(token: str, secret: bytes) -> int | None:
    """The message number a token names, or None if its signature does not verify."""
    number, dash, signature = token.lower().partition("-")
    if not dash or not number or len(number) > 13 or any(c not in _DIGITS for c in number):
        return None
    if not hmac.compare_digest(signature.encode("ascii", "replace"), _sig(secret, number)):
        return None
    return int(number, 36)


def _sig(secret: bytes, number: str) -> bytes:
    return _signature(secret, number).encode("ascii")


def find_tokens(text: str) -> list[str]:
    """Every candidate token in ``text`` (an address ``...+NUMBER-SIGNATURE@...``), in order."""
    return list(dict.fromkeys(f"{m.group(1)}-{m.group(2)}".lower() for m in _TOKEN.finditer(text)))
