"""Private feeds: each subscriber's own Atom and JSON feed of what their filters match.

The URL is ``<base_url>feeds/private/<token>.atom`` (and ``.json``), where the token is
``<subscriber id>.<generation>.<HMAC>``: unguessable without the signing secret (the
unsubscribe secret, under its own purpose ``feed``), and tied to a generation kept in
state. Rotating the feed bumps the generation, so every older URL stops working; a
subscriber who leaves (unsubscribed, removed) loses the feed altogether.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from sqlalchemy.engine import Connection

from syndicator.mail.signing import signature, signature_matches
from syndicator.state.db import State
from syndicator.state.readers import (
    FeedOwner,
    feed_owner,
    private_feed_generation,
    private_feed_generations,
    rotate_private_feed,
)

PURPOSE = "feed"
_TOKEN = re.compile(r"^([1-9][0-9]{0,18})\.([0-9]{1,9})\.([A-Za-z0-9_-]{22})$")
# Statuses that keep a private feed: a suspended address still reads its feed.
_KEEPS_FEED = frozenset({"active", "suspended"})


def make_token(secret: bytes, subscriber_id: int, generation: int) -> str:
    mac = signature(secret, PURPOSE, str(subscriber_id), str(generation))
    return f"{subscriber_id}.{generation}.{mac}"


def feed_base_url(base_url: str, token: str) -> str:
    """The private feed's URL without its extension (``.atom`` or ``.json`` follows)."""
    return f"{base_url}feeds/private/{token}"


def private_feed_url(base_url: str, secret: bytes, subscriber_id: int, generation: int) -> str:
    """The private Atom feed of a subscriber, as mail footers and the manage page show it."""
    return f"{feed_base_url(base_url, make_token(secret, subscriber_id, generation))}.atom"


class Verdict(Enum):
    OK = "ok"
    FORGED = "forged"  # not a token we signed: 404
    GONE = "gone"  # ours, but rotated since or the subscriber left: 410


@dataclass(frozen=True, slots=True)
class Lookup:
    verdict: Verdict
    owner: FeedOwner | None = None
    generation: int = 0


def look_up(state: State, secret: bytes, token: str) -> Lookup:
    """Who ``token`` belongs to, if it is ours and still current."""
    match = _TOKEN.match(token)
    if match is None:
        return Lookup(Verdict.FORGED)
    subscriber_id, generation, mac = int(match.group(1)), int(match.group(2)), match.group(3)
    if not signature_matches(mac, secret, PURPOSE, str(subscriber_id), str(generation)):
        return Lookup(Verdict.FORGED)
    with state.engine.connect() as conn:
        owner = feed_owner(conn, subscriber_id)
        current = private_feed_generation(conn, subscriber_id)
    if owner is None or owner.status not in _KEEPS_FEED or generation != current:
        return Lookup(Verdict.GONE)
    return Lookup(Verdict.OK, owner, generation)


def current_token(conn: Connection, secret: bytes, subscriber_id: int) -> str:
    return make_token(secret, subscriber_id, private_feed_generation(conn, subscriber_id))


def current_url(conn: Connection, base_url: str, secret: bytes, subscriber_id: int) -> str:
    generation = private_feed_generation(conn, subscriber_id)
    return private_feed_url(base_url, secret, subscriber_id, generation)


def current_tokens(conn: Connection, secret: bytes, ids: list[int]) -> dict[int, str]:
    generations = private_feed_generations(conn, ids)
    return {i: make_token(secret, i, generations.get(i, 0)) for i in ids}


def rotate(state: State, secret: bytes, subscriber_id: int) -> str:
    """Give the subscriber a new private feed URL; every older one stops working."""
    with state.transaction() as conn:
        generation = rotate_private_feed(conn, subscriber_id)
    return make_token(secret, subscriber_id, generation)
