"""One-click unsubscribe tokens (RFC 8058): ``<subscriber id>.<HMAC>``.

The HMAC-SHA256 covers the subscriber's id and address, keyed with a secret
that is read from ``mail.unsubscribe_secret_file`` or generated once and kept in
the state database. A forged or altered token fails verification; a token of an
address that resubscribed still works (unsubscribing is always allowed).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection

from syndicator.errors import ConfigError
from syndicator.mail.roster import unsubscribe
from syndicator.mail.signing import signature, signature_matches
from syndicator.state.db import State
from syndicator.state.subscribers import subscriber_address

# The name of the meta row holding the generated secret (not a secret itself).
_SECRET_META = "unsubscribe_secret"  # noqa: S105
_TOKEN = re.compile(r"^([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{22})$")


def load_secret(state: State, secret_file: Path | None) -> bytes:
    """The signing secret: from ``secret_file`` if configured, else generated once into state."""
    if secret_file is not None:
        try:
            secret = secret_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {secret_file}: {exc.strerror}", key="mail.unsubscribe_secret_file"
            ) from exc
        if len(secret) < 16:
            raise ConfigError(
                "the secret must be at least 16 bytes", key="mail.unsubscribe_secret_file"
            )
        return secret
    with state.transaction() as conn:
        return _stored_secret(state, conn)


def _stored_secret(state: State, conn: Connection) -> bytes:
    stored = state.get_meta(conn, _SECRET_META)
    if stored is None:
        # Generated once; concurrent first requests (or instances) keep whichever came first.
        stored = state.meta_once(conn, _SECRET_META, secrets.token_hex(32))
    return bytes.fromhex(stored)


def make_token(secret: bytes, subscriber_id: int, email: str) -> str:
    return f"{subscriber_id}.{signature(secret, 'unsubscribe', str(subscriber_id), _key(email))}"


def _key(email: str) -> str:
    return email.strip().lower()


def token_subscriber(token: str) -> int | None:
    """The subscriber id a well-formed token names (not yet verified), else None."""
    match = _TOKEN.match(token)
    return int(match.group(1)) if match else None


def verify(secret: bytes, token: str, subscriber_id: int, email: str) -> bool:
    match = _TOKEN.match(token)
    if match is None or int(match.group(1)) != subscriber_id:
        return False
    return signature_matches(match.group(2), secret, "unsubscribe", str(subscriber_id), _key(email))


class UnsubscribeDesk:
    """What the unsubscribe pages need: check a token, and act on it."""

    def __init__(self, state: State, secret: bytes, clock: Callable[[], datetime]) -> None:
        self.state = state
        self.secret = secret
        self.clock = clock

    def _verified(self, conn: Connection, token: str) -> tuple[int, str] | None:
        subscriber_id = token_subscriber(token)
        if subscriber_id is None:
            return None
        email = subscriber_address(conn, subscriber_id)
        if email is None or not verify(self.secret, token, subscriber_id, email):
            return None
        return subscriber_id, email

    def check(self, token: str) -> str | None:
        """The (partly masked) address a valid token belongs to, else None."""
        with self.state.engine.connect() as conn:
            found = self._verified(conn, token)
        return mask(found[1]) if found else None

    def unsubscribe(self, token: str) -> str | None:
        """Unsubscribe the token's subscriber (idempotent); their masked address, or None."""
        with self.state.transaction() as conn:
            found = self._verified(conn, token)
            if found is None:
                return None
            self.unsubscribe_in(conn, found[0])
        return mask(found[1])

    def unsubscribe_in(self, conn: Connection, subscriber_id: int) -> None:
        """Unsubscribe a subscriber whose link was verified by the caller: the one way every
        page that unsubscribes (one-click, the manage page) suppresses an address."""
        unsubscribe(conn, subscriber_id, now=self.clock())


def mask(email: str) -> str:
    """ "jane.doe@example.org" -> "j…e@example.org": enough to recognise, not to harvest."""
    local, _, domain = email.partition("@")
    shown = local[0] + "…" + local[-1] if len(local) > 2 else local[:1] + "…"
    return f"{shown}@{domain}"
