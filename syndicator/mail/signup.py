"""Self-service subscriptions: double opt-in requests, confirmation and the manage page.

:meth:`SignupDesk.request` records what someone asked for and queues exactly one mail to
the address: a confirmation link when the address is not subscribed (or not any more), or
a link to manage the subscription when it already is. The page the requester sees is the
same either way, so the form tells nobody whether an address is known. The confirmation
link opens a page whose button POSTs to :meth:`SignupDesk.confirm` (mail scanners follow
links, they do not press buttons); only then does the address become a subscriber, and,
as for any new subscriber, only articles first seen from that moment are mailed to it.

Links carry tokens signed with the unsubscribe secret (see :mod:`signing`), each kind for
its own purpose, so no kind of token passes for another:

* confirm: ``<request id>.<expiry, Unix seconds>.<signature>``, the signature covering
  the id, the expiry, the request's random nonce and the address. It expires
  (``web.confirm_ttl_hours``), and dies with its request when the address asks again.
* manage: ``<subscriber id>.<signature>`` over the id and the address. Like the
  unsubscribe link in the same mail, it does not expire.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from syndicator.config import Config
from syndicator.mail import private_feeds, roster
from syndicator.mail.roster import SubscriberRecord
from syndicator.mail.signing import signature, signature_matches
from syndicator.mail.subscribers import Subscriber, stored_settings
from syndicator.mail.suppression import is_suppressed
from syndicator.mail.unsubscribe import UnsubscribeDesk, mask
from syndicator.state import requests
from syndicator.state.db import State
from syndicator.state.outbox import NO_SUBSCRIBER, NewMessage, queue_message
from syndicator.state.readers import rotate_private_feed

if TYPE_CHECKING:
    from syndicator.mail.compose import MailSettings
    from syndicator.publish.feeds import Names

# The mail composer (jinja2, and the feed renderer it links articles with) is imported where
# a mail is written: listing the requests waiting for confirmation needs none of it.

log = logging.getLogger(__name__)

# Requests are kept this long after their link expired (so a late click says "expired",
# not "invalid"), then deleted.
KEEP_EXPIRED = timedelta(days=7)
_CONFIRM_TOKEN = re.compile(r"^([1-9][0-9]{0,18})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})$")
_MANAGE_TOKEN = re.compile(r"^([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{22})$")
_WEEKDAY_NAMES = {
    "mon": "Mondays",
    "tue": "Tuesdays",
    "wed": "Wednesdays",
    "thu": "Thursdays",
    "fri": "Fridays",
    "sat": "Saturdays",
    "sun": "Sundays",
}


class LinkProblem(enum.Enum):
    """Why a link from a mail cannot be used."""

    INVALID = "invalid"  # malformed, forged, altered, or its request was replaced
    EXPIRED = "expired"  # correctly signed, but too old


# --- tokens --------------------------------------------------------------------------------


def _key(email: str) -> str:
    return email.strip().lower()


def confirm_token(secret: bytes, request_id: int, expires: int, nonce: str, email: str) -> str:
    signed = signature(secret, "confirm", str(request_id), str(expires), nonce, _key(email))
    return f"{request_id}.{expires}.{signed}"


def parse_confirm_token(token: str) -> tuple[int, int, str] | None:
    """``(request id, expiry, signature)`` of a well-formed token (not yet verified)."""
    match = _CONFIRM_TOKEN.match(token)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def manage_token(secret: bytes, subscriber_id: int, email: str) -> str:
    return f"{subscriber_id}.{signature(secret, 'manage', str(subscriber_id), _key(email))}"


def parse_manage_token(token: str) -> tuple[int, str] | None:
    """``(subscriber id, signature)`` of a well-formed token (not yet verified)."""
    match = _MANAGE_TOKEN.match(token)
    return (int(match.group(1)), match.group(2)) if match else None


# --- wording -------------------------------------------------------------------------------


def describe_schedule(cadence: str, hour: int, weekday: str, timezone: str) -> str:
    """ "a daily digest at 08:00 (Europe/Brussels)", "alerts as articles are published"."""
    if cadence == "immediate":
        return "alerts as articles are published"
    if cadence == "feed":
        return "no mail: a private feed only"
    at = f"at {hour:02d}:00 ({timezone})"
    if cadence == "weekly":
        return f"a weekly digest on {_WEEKDAY_NAMES.get(weekday, weekday)} {at}"
    return f"a daily digest {at}"


def describe(subscriber: Subscriber | SubscriberRecord, names: Names) -> tuple[str, str]:
    """What a subscription asks for, in words: (filters, schedule)."""
    from syndicator.mail.compose import describe_filters  # noqa: PLC0415

    filters = describe_filters(
        tuple(subscriber.regions),
        tuple(subscriber.topics),
        tuple(subscriber.keywords),
        tuple(subscriber.exclude_regions),
        tuple(subscriber.exclude_topics),
        names,
    )
    schedule = describe_schedule(
        subscriber.cadence, subscriber.hour, subscriber.weekday, subscriber.timezone
    )
    return filters, schedule


def _when(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# --- settings and results ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignupSettings:
    """What the subscription pages and their mail need from the configuration."""

    mail: MailSettings
    names: Names
    language: str = "en"
    confirm_ttl: timedelta = timedelta(hours=48)
    subscribe_per_hour_per_client: int = 10
    subscribe_per_hour_per_email: int = 3
    changes_per_hour_per_client: int = 60
    trust_forwarded_for: bool = False
    default_timezone: str = "UTC"

    @classmethod
    def from_config(cls, config: Config, names: Names) -> SignupSettings:
        from syndicator.mail.compose import MailSettings  # noqa: PLC0415

        web = config.web
        return cls(
            mail=MailSettings(
                sender=config.mail.from_,
                site_title=config.site.title,
                base_url=config.site.base_url,
                list_id=config.list_id,
            ),
            names=names,
            language=config.site.language,
            confirm_ttl=timedelta(hours=web.confirm_ttl_hours),
            subscribe_per_hour_per_client=web.subscribe_per_hour_per_client,
            subscribe_per_hour_per_email=web.subscribe_per_hour_per_email,
            changes_per_hour_per_client=web.changes_per_hour_per_client,
            trust_forwarded_for=web.trust_forwarded_for,
            default_timezone=web.default_timezone,
        )

    @property
    def known_topics(self) -> set[str]:
        return set(self.names.topics)


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A subscription request as its confirmation page shows it."""

    id: int
    email: str
    subscriber: Subscriber
    requested_at: datetime
    expires_at: datetime
    confirmed: bool


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What confirming did: ``subscribed``, ``updated``, ``operator`` (an operator's
    subscriber, left as it was) or ``already`` (this link was used before)."""

    outcome: str
    record: SubscriberRecord
    manage_url: str


# --- the desk ------------------------------------------------------------------------------


class SignupDesk:
    """Requests, confirmations and changes, each in one transaction of the state database.

    Blocking: the web pages call it from a worker thread. ``settings`` may be replaced
    (a reloaded configuration) between calls.
    """

    def __init__(
        self,
        state: State,
        secret: bytes,
        clock: Callable[[], datetime],
        settings: SignupSettings,
    ) -> None:
        self.state = state
        self.secret = secret
        self.clock = clock
        self.settings = settings
        self._unsubscribe = UnsubscribeDesk(state, secret, clock)

    # --- links

    def manage_url(self, record: SubscriberRecord) -> str:
        token = manage_token(self.secret, record.id, record.email)
        return f"{self.settings.mail.base_url}manage/{token}"

    def _confirm_url(self, request_id: int, expires: int, nonce: str, email: str) -> str:
        token = confirm_token(self.secret, request_id, expires, nonce, email)
        return f"{self.settings.mail.base_url}confirm/{token}"

    def _message_id(self, key: str) -> str:
        from syndicator.mail.compose import make_message_id  # noqa: PLC0415

        domain = parseaddr(self.settings.mail.sender)[1].rpartition("@")[2] or "localhost"
        return make_message_id(key, domain)

    # --- requests

    def request(self, subscriber: Subscriber) -> bool:
        """Record a request for ``subscriber`` and queue the one mail it causes.

        True when a mail was queued. A mail that cannot be composed is logged and the
        request is dropped; the caller answers the requester the same way regardless.
        """
        now = self.clock()
        settings = self.settings
        try:
            with self.state.transaction() as conn:
                requests.forget_requests_before(conn, now - settings.confirm_ttl - KEEP_EXPIRED)
                if is_suppressed(self.state, conn, subscriber.email):
                    # Answered as for any address (no enumeration); nothing is sent.
                    log.info("subscription request for a suppressed address: nothing sent")
                    return False
                record = roster.find_subscriber(conn, subscriber.email)
                if record is not None and record.status in (roster.ACTIVE, roster.SUSPENDED):
                    self._queue_already_subscribed(conn, record, now)
                else:
                    self._queue_confirmation(conn, subscriber, now)
        except ValueError as exc:
            # Nothing was recorded; the requester sees the same answer as always, and the
            # operator sees this line.
            log.error(
                "cannot compose the subscription mail for %s: %s", mask(subscriber.email), exc
            )
            return False
        return True

    def _queue_confirmation(self, conn: Connection, subscriber: Subscriber, now: datetime) -> None:
        from syndicator.mail.notice import Notice, compose_notice  # noqa: PLC0415

        nonce = secrets.token_hex(16)
        # One open request per address: asking again replaces it, and the older link dies.
        request_id = requests.store_request(
            conn,
            email=subscriber.email,
            settings=subscriber.model_dump_json(),
            nonce=nonce,
            now=now,
        )
        expires_at = now + self.settings.confirm_ttl
        url = self._confirm_url(request_id, int(expires_at.timestamp()), nonce, subscriber.email)
        site = self.settings.mail.site_title
        filters, schedule = describe(subscriber, self.settings.names)
        notice = Notice(
            subject=f"Confirm your subscription to {site}",
            heading="Confirm your subscription",
            paragraphs=(
                f"Someone, probably you, asked for {schedule} from {site} at "
                f"{subscriber.email}, with {filters}.",
                "To start receiving it, open this link and press the Confirm button:",
            ),
            action_label="Confirm your subscription",
            action_url=url,
            closing=(
                f"The link works until {_when(expires_at)}.",
                "If you did not ask for this, ignore this mail: nothing more will be sent.",
            ),
        )
        message_id = self._message_id(f"confirm:{request_id}:{nonce}")
        body = compose_notice(
            notice,
            settings=self.settings.mail,
            recipient=subscriber.email,
            now=now,
            message_id=message_id,
        )
        queue_message(
            conn,
            NewMessage(NO_SUBSCRIBER, "confirm", message_id, subscriber.email, body),
            now=now,
        )

    def _queue_already_subscribed(
        self, conn: Connection, record: SubscriberRecord, now: datetime
    ) -> None:
        from syndicator.mail.notice import Notice, compose_notice  # noqa: PLC0415

        site = self.settings.mail.site_title
        filters, schedule = describe(record, self.settings.names)
        notice = Notice(
            subject=f"Your subscription to {site}",
            heading="You are already subscribed",
            paragraphs=(
                f"Someone, probably you, asked to subscribe {record.email} to {site}. "
                f"This address already receives {schedule}, with {filters}. "
                "Nothing was changed.",
                "To change what you receive, or to unsubscribe:",
            ),
            action_label="Manage your subscription",
            action_url=self.manage_url(record),
            closing=("If you did not ask for this, ignore this mail.",),
        )
        message_id = self._message_id(f"notice:{record.id}:{secrets.token_hex(16)}")
        body = compose_notice(
            notice,
            settings=self.settings.mail,
            recipient=record.email,
            now=now,
            message_id=message_id,
        )
        queue_message(
            conn, NewMessage(record.id, "notice", message_id, record.email, body), now=now
        )

    # --- confirming

    def _request_of(self, conn: Connection, token: str) -> PendingRequest | LinkProblem:
        parsed = parse_confirm_token(token)
        if parsed is None:
            return LinkProblem.INVALID
        request_id, expires, signed = parsed
        row = requests.get_request(conn, request_id)
        if row is None or not signature_matches(
            signed, self.secret, "confirm", str(request_id), str(expires), row.nonce, row.email_key
        ):
            return LinkProblem.INVALID
        if self.clock().timestamp() > expires:
            return LinkProblem.EXPIRED
        try:
            subscriber = Subscriber.model_validate_json(row.settings)
        except ValidationError:
            # Stored before the rules that refuse it now: it cannot be confirmed.
            log.warning("request %s holds settings no longer accepted; link refused", row.id)
            return LinkProblem.INVALID
        return PendingRequest(
            id=row.id,
            email=row.email,
            subscriber=subscriber,
            requested_at=row.requested_at,
            expires_at=datetime.fromtimestamp(expires, UTC),
            confirmed=row.confirmed_at is not None,
        )

    def pending(self, token: str) -> PendingRequest | LinkProblem:
        """The request a confirmation link names; changes nothing."""
        with self.state.engine.connect() as conn:
            return self._request_of(conn, token)

    def confirmed(self, request: PendingRequest) -> Confirmation | None:
        """What a confirmed request led to, if its address is still subscribed; else None
        (unsubscribed since, or ended by the operator)."""
        with self.state.engine.connect() as conn:
            record = roster.find_subscriber(conn, request.email)
        if record is None or record.status not in (roster.ACTIVE, roster.SUSPENDED):
            return None
        return Confirmation("already", record, self.manage_url(record))

    def confirm(self, token: str) -> Confirmation | LinkProblem:
        """Confirm the request a link names (idempotent)."""
        now = self.clock()
        with self.state.transaction() as conn:
            found = self._request_of(conn, token)
            if isinstance(found, LinkProblem):
                return found
            if found.confirmed:
                record = roster.find_subscriber(conn, found.email)
                if record is None:  # confirmed, then removed from state by hand
                    return LinkProblem.INVALID
                return Confirmation("already", record, self.manage_url(record))
            outcome, subscriber_id = roster.confirm_web_subscription(
                conn, found.subscriber, now=now
            )
            requests.mark_confirmed(conn, found.id, now=now)
            record = roster.get_subscriber(conn, subscriber_id)
        if record is None:  # pragma: no cover - written in the same transaction
            return LinkProblem.INVALID
        log.info("subscription confirmed for %s (%s)", mask(record.email), outcome)
        return Confirmation(outcome, record, self.manage_url(record))

    # --- managing

    def _subscriber_of(self, conn: Connection, token: str) -> SubscriberRecord | None:
        parsed = parse_manage_token(token)
        if parsed is None:
            return None
        record = roster.get_subscriber(conn, parsed[0])
        if record is None or not signature_matches(
            parsed[1], self.secret, "manage", str(record.id), _key(record.email)
        ):
            return None
        return record

    def subscription(self, token: str) -> SubscriberRecord | None:
        """The subscriber a manage link names, or None for an invalid link."""
        with self.state.engine.connect() as conn:
            return self._subscriber_of(conn, token)

    def change(self, token: str, subscriber: Subscriber) -> tuple[SubscriberRecord, bool] | None:
        """New settings for the subscription a manage link names: (record, whether they
        were applied; only an active web subscription takes them), or None."""
        with self.state.transaction() as conn:
            record = self._subscriber_of(conn, token)
            if record is None:
                return None
            applied = roster.change_web_subscription(conn, record.id, subscriber, now=self.clock())
            after = roster.get_subscriber(conn, record.id) if applied else record
        return (after or record), applied

    def private_feed(self, record: SubscriberRecord) -> str:
        """The URL of the subscriber's private Atom feed (``.json`` for JSON Feed)."""
        with self.state.engine.connect() as conn:
            return private_feeds.current_url(
                conn, self.settings.mail.base_url, self.secret, record.id
            )

    def rotate_feed(self, token: str) -> SubscriberRecord | None:
        """A new private feed URL for the subscriber a manage link names; the old one
        answers 410 from now on."""
        with self.state.transaction() as conn:
            record = self._subscriber_of(conn, token)
            if record is None:
                return None
            rotate_private_feed(conn, record.id)
        return record

    def unsubscribe(self, token: str) -> SubscriberRecord | None:
        """Unsubscribe the subscriber a manage link names, as one-click unsubscribe does."""
        with self.state.transaction() as conn:
            record = self._subscriber_of(conn, token)
            if record is None:
                return None
            self._unsubscribe.unsubscribe_in(conn, record.id)
            return roster.get_subscriber(conn, record.id)


def open_requests(conn: Connection, *, now: datetime, ttl: timedelta) -> list[PendingRequest]:
    """Requests not confirmed yet whose link still works, oldest first."""
    return [
        PendingRequest(
            id=row.id,
            email=row.email,
            subscriber=stored_settings(row.settings),
            requested_at=row.requested_at,
            expires_at=row.requested_at + ttl,
            confirmed=False,
        )
        for row in requests.open_requests_since(conn, now - ttl)
    ]
