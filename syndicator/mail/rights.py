"""Data rights: everything held about an address, and forgetting it.

:func:`export_address` gathers the subscription (filters, source, status), its matches,
its messages and their delivery status, its bounces and complaints, and any open
sign-up request, as JSON-ready data. :func:`forget_address` deletes all of it in one
transaction; if the address was suppressed, the suppression is kept as a salted hash,
so the address is still never mailed although it is no longer stored.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from syndicator.mail import suppression
from syndicator.state import bounces as store
from syndicator.state.db import State


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def export_address(state: State, email: str) -> dict[str, Any] | None:
    """Everything held about ``email``, or None if nothing is."""
    key = suppression.address_key(email)
    with state.engine.connect() as conn:
        held = store.everything_about(conn, key)
        suppressed = suppression.is_suppressed(state, conn, key)
    subscriber = held["subscriber"]
    if subscriber is not None:
        subscriber["filters"] = json.loads(subscriber["filters"])
        subscriber.pop("email_key", None)
    if subscriber is None and not held["messages"] and not held["requests"] and not suppressed:
        return None
    held["address"] = email.strip()
    held["suppressed"] = suppressed
    result: dict[str, Any] = _plain(held)
    return result


def forget_address(state: State, email: str, *, now: datetime, always: bool = False) -> str | None:
    """Delete everything about ``email``; what happened, or None if nothing was held.

    A suppressed address stays suppressed, through a salted hash. With ``always`` (the
    person asked, on the manage page), the hash is kept in any case: they asked for no
    more mail, and an operator's later import must not bring it back.
    """
    key = suppression.address_key(email)
    with state.transaction() as conn:
        row = store.subscriber_row(conn, key)
        listed = row is not None and row["source"] == "file"
        if always:
            suppression.suppress_address(conn, key, reason="forgotten at their request", now=now)
        kept = suppression.keep_hash_only(state, conn, key, now=now)
        deleted = store.forget(conn, key)
    if not deleted and not kept:
        return None
    outcome = "forgotten"
    if kept:
        outcome += "; it stays suppressed (only a salted hash of it is kept)"
    if listed:
        outcome += "; remove it from the subscribers file too, or the next cycle adds it again"
    return outcome
