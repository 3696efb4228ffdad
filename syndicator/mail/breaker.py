"""The reputation circuit breaker: pause sending when recent mail bounces or is reported.

Mailbox providers judge a sender by its recent mail: Gmail and Yahoo ask bulk senders
to keep spam complaints under 0.3 %, and relay providers review or pause accounts
whose bounce rate passes about 5 %. Over the last ``bounces.window`` messages sent
(once at least ``bounces.min_messages`` were), a hard bounce rate above
``bounces.max_bounce_rate`` or a complaint rate above ``bounces.max_complaint_rate``
pauses sending: mail is still queued, ``/healthz`` says why, one ERROR line is logged,
and ``syndicator mail resume`` starts sending again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from syndicator.config import BouncesConfig
from syndicator.state import bounces as store
from syndicator.state.db import State

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rates:
    sent: int
    bounce_rate: float
    complaint_rate: float


def rates(state: State, window: int) -> Rates:
    """Rates over the last ``window`` messages sent since sending last resumed."""
    with state.engine.connect() as conn:
        after = store.resumed_after(state, conn)
        sent, bounce_rate, complaint_rate = store.recent_rates(conn, window, after=after)
    return Rates(sent, bounce_rate, complaint_rate)


def trip_reason(current: Rates, limits: BouncesConfig) -> str | None:
    """Why sending must pause at these rates, or None (pure)."""
    if current.sent < limits.min_messages:
        return None
    if current.complaint_rate > limits.max_complaint_rate:
        return (
            f"complaint rate {current.complaint_rate:.2%} over the last {current.sent} messages "
            f"is above bounces.max_complaint_rate {limits.max_complaint_rate:.2%}"
        )
    if current.bounce_rate > limits.max_bounce_rate:
        return (
            f"hard bounce rate {current.bounce_rate:.2%} over the last {current.sent} messages "
            f"is above bounces.max_bounce_rate {limits.max_bounce_rate:.2%}"
        )
    return None


def evaluate(state: State, limits: BouncesConfig) -> str | None:
    """Pause sending if the rates say so; the reason sending is paused, or None."""
    reason = trip_reason(rates(state, limits.window), limits)
    with state.transaction() as conn:
        paused = store.paused_reason(state, conn)
        if paused is not None:
            return paused
        if reason is None:
            return None
        store.set_paused(state, conn, reason)
    log.error(
        "sending paused: %s; mail is still queued; fix the list, then `syndicator mail resume`",
        reason,
    )
    return reason


def paused(state: State) -> str | None:
    """Why sending is paused, or None."""
    with state.engine.connect() as conn:
        return store.paused_reason(state, conn)


def resume(state: State) -> str | None:
    """Start sending again; returns the reason it was paused (None if it was not)."""
    with state.transaction() as conn:
        reason = store.paused_reason(state, conn)
        store.set_paused(state, conn, None)
    return reason


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What /metrics and /healthz show of deliverability."""

    counts: dict[str, int]
    rates: Rates
    paused: str | None


def snapshot(state: State, window: int) -> Snapshot:
    with state.engine.connect() as conn:
        counts = store.event_counts(conn)
        paused_reason = store.paused_reason(state, conn)
    return Snapshot(counts, rates(state, window), paused_reason)
