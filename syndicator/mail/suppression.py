"""The suppression list: addresses and domains that are never mailed, whatever else says.

An entry is an address (compared without regard to case) or a whole domain written
``*@domain``. An address that was forgotten (``subscribers forget``) while suppressed
stays suppressed through a salted SHA-256 of it, so the list holds without the address.

The list is checked when mail is queued and when someone asks to subscribe on the web
(where the answer is the same as for any other address: the page says nothing of it).
It is kept as CSV for import and export: ``entry,reason,date`` with a header line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from syndicator.errors import SyndicatorError
from syndicator.mail import addresses
from syndicator.state import bounces as store
from syndicator.state.db import State

log = logging.getLogger(__name__)

_SALT_KEY = "suppression_salt"
_HASH_PREFIX = "sha256:"
CSV_FIELDS = ("entry", "reason", "date")


class SuppressionError(SyndicatorError, ValueError):
    """One bad entry of a suppression CSV, with its line."""


@dataclass(frozen=True, slots=True)
class Entry:
    entry: str
    reason: str
    added_at: datetime


def normalise(entry: str) -> str:
    """An address or ``*@domain`` in the one spelling addresses are compared in; raises
    ValueError (an :class:`AddressError` says why) for anything else."""
    value = entry.strip()
    if value.startswith("*@"):
        # The domain as an address's domain is spelled (lower case, ASCII, no final dot).
        return "*@" + addresses.address_key("x@" + value[2:]).partition("@")[2]
    return addresses.address_key(value)


def address_key(email: str) -> str:
    """How an address is looked up in the list (as every part of syndicator compares it)."""
    try:
        return addresses.address_key(email)
    except addresses.AddressError:
        return email.strip().lower()  # an address stored before it was checked so strictly


def _salt(state: State, conn: Connection) -> str:
    salt = state.get_meta(conn, _SALT_KEY)
    if salt is None:
        salt = state.meta_once(conn, _SALT_KEY, secrets.token_hex(16))
    return salt


def hashed(salt: str, email: str) -> str:
    digest = hashlib.sha256(f"{salt}:{address_key(email)}".encode()).hexdigest()
    return _HASH_PREFIX + digest


def _candidates(salt: str, email: str) -> dict[str, str]:
    """The list entries that would suppress ``email``, each mapped to the address."""
    key = address_key(email)
    return {key: key, "*@" + key.rpartition("@")[2]: key, hashed(salt, key): key}


def suppressed(state: State, conn: Connection, emails: Iterable[str]) -> set[str]:
    """Which of ``emails`` (as lower-cased keys) the list suppresses."""
    salt = _salt(state, conn)
    wanted: dict[str, set[str]] = {}
    for email in emails:
        for candidate, key in _candidates(salt, email).items():
            wanted.setdefault(candidate, set()).add(key)
    found = store.suppressed_entries(conn, wanted)
    return {key for entry in found for key in wanted[entry]}


def is_suppressed(state: State, conn: Connection, email: str) -> bool:
    return bool(suppressed(state, conn, [email]))


def suppress(conn: Connection, email_or_domain: str, *, reason: str, now: datetime) -> bool:
    """Add an entry; False if it was already there."""
    return store.add_suppression(conn, normalise(email_or_domain), reason=reason, added_at=now)


def suppress_address(conn: Connection, email: str, *, reason: str, now: datetime) -> bool:
    """Add an address we hold (a subscriber's, a recipient's); never raises for its spelling."""
    return store.add_suppression(conn, address_key(email), reason=reason, added_at=now)


def unsuppress(state: State, conn: Connection, entry: str) -> bool:
    """Remove an entry, or the hash an address was kept as; False if neither was listed."""
    value = normalise(entry)
    removed = store.remove_suppression(conn, value)
    if not value.startswith("*@"):
        removed = store.remove_suppression(conn, hashed(_salt(state, conn), value)) or removed
    return removed


def keep_hash_only(state: State, conn: Connection, email: str, *, now: datetime) -> bool:
    """Before an address is forgotten: if it is suppressed by its own entry, replace that
    entry with the salted hash. True when the address stays suppressed."""
    key = address_key(email)
    salt = _salt(state, conn)
    own = store.suppressed_entries(conn, [key, hashed(salt, key)])
    if not own:
        return False
    reasons = {item.entry: item.reason for item in store.suppressions(conn) if item.entry in own}
    store.remove_suppression(conn, key)
    store.add_suppression(
        conn,
        hashed(salt, key),
        reason=reasons.get(key) or reasons.get(hashed(salt, key)) or "forgotten",
        added_at=now,
    )
    return True


def drop_suppressed(state: State, conn: Connection) -> set[int]:
    """Give up every queued message to a suppressed address; returns their ids."""
    if not store.any_suppression(conn):
        return set()  # the usual case: nothing to read or normalise
    pending = store.suppressed_pending_messages(conn)
    if not pending:
        return set()
    blocked = suppressed(state, conn, {recipient for _, recipient in pending})
    keys = [key for key, recipient in pending if address_key(recipient) in blocked]
    if keys:
        store.drop_messages(conn, keys, reason="suppressed: on the suppression list")
        log.info("%s queued messages to suppressed addresses given up", len(keys))
    return set(keys)


# --- CSV ---------------------------------------------------------------------------------


def parse_csv(text: str, *, source: str, now: datetime) -> tuple[list[Entry], list[str]]:
    """Entries of a suppression CSV, and one problem line per bad row (the rest still count).

    Columns: ``entry`` (an address or ``*@domain``), ``reason``, ``date`` (ISO 8601; a
    date alone means midnight UTC). A header line is optional; reason and date may be
    left out.
    """
    entries: list[Entry] = []
    problems: list[str] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if number == 1 and row[0].strip().lower() in ("entry", "email", "address"):
            continue
        try:
            entry = normalise(row[0])
            added = _date(row[2]) if len(row) > 2 and row[2].strip() else now
        except ValueError as exc:
            problems.append(f"{source}:{number}: {exc}")
            continue
        reason = " ".join(row[1].split()) if len(row) > 1 and row[1].strip() else "imported"
        entries.append(Entry(entry, reason, added))
    return entries, problems


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an ISO 8601 date, e.g. 2026-01-31") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_csv(entries: Iterable[store.Suppression]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for item in entries:
        writer.writerow((item.entry, item.reason, item.added_at.isoformat()))
    return out.getvalue()
