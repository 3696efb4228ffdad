"""The self-service subscription pages of the HTTP server.

``GET /subscribe`` shows the form, ``POST /subscribe`` records a request and mails a link
(then redirects to ``/subscribe/sent``, the same answer for any valid address);
``/confirm/<token>`` shows a button whose POST confirms; ``/manage/<token>`` shows the
subscription and takes changes or an unsubscribe by POST.

Pages are rendered server-side from ``templates/web/`` with autoescaping, carry no
script and no external asset, and work by keyboard alone. Every form carries a CSRF
token: a random cookie (``HttpOnly``, ``SameSite=Lax``) and, in the form, its HMAC for
the purpose ``csrf``; a POST whose token does not match its cookie is refused. POSTs are
rate-limited per client address and requests also per email address (HTTP 429 with
``Retry-After``). Form input is checked by the same validation as subscriber files
(:func:`syndicator.mail.subscribers.check_entry`), and every problem is shown next to its field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

from aiohttp import hdrs, web
from multidict import MultiDictProxy

from syndicator.errors import SyndicatorError
from syndicator.mail.addresses import address_key
from syndicator.mail.signing import signature, signature_matches
from syndicator.mail.signup import (
    Confirmation,
    LinkProblem,
    SignupDesk,
    SignupSettings,
    describe,
)
from syndicator.mail.subscribers import WEEKDAYS, Subscriber, check_entry, check_timezone
from syndicator.mail.unsubscribe import mask
from syndicator.state.ratelimits import SharedRateLimiter
from syndicator.state.records import ACTIVE, OPERATOR_SOURCES, SubscriberRecord
from syndicator.web.pages import EMPTY_FORM, PAGE_HEADERS, read_form, render_page
from syndicator.web.ratelimit import client_key

log = logging.getLogger(__name__)

CSRF_COOKIE = "syndicator_csrf"
MAX_EMAIL = 254  # RFC 5321 section 4.5.3.1.3, less the angle brackets
MAX_KEYWORDS = 20
MAX_KEYWORD_LENGTH = 80
MAX_KEYWORDS_FIELD = MAX_KEYWORDS * (MAX_KEYWORD_LENGTH + 2)
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{32}$")
_HEADERS = PAGE_HEADERS
FIELD_LABELS = {
    "email": "Email address",
    "regions": "Regions",
    "topics": "Topics",
    "keywords": "Keywords",
    "cadence": "How often",
    "hour": "Hour",
    "weekday": "Day of the week",
    "timezone": "Time zone",
    "group_by": "Digest contents",
}
# What confirming did, as the page after the redirect is told it (anything else: "already").
CONFIRM_OUTCOMES = frozenset({"subscribed", "updated", "operator", "already"})
CADENCES = (
    ("immediate", "As articles are published"),
    ("daily", "A daily digest"),
    ("weekly", "A weekly digest"),
    ("feed", "No mail: a private feed for my feed reader"),
)
GROUPINGS = (
    ("region", "Region"),
    ("topic", "Topic"),
)
WEEKDAY_LABELS = tuple(
    zip(
        WEEKDAYS,
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        strict=True,
    )
)
DEFAULTS: dict[str, Any] = {
    "email": "",
    "regions": (),
    "topics": (),
    "keywords": "",
    "cadence": "daily",
    "hour": 8,
    "weekday": "mon",
    "timezone": "UTC",
    "group_by": "region",
}


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """IANA zone names to choose from: UTC, then every Area/Location zone."""
    names = sorted(
        name
        for name in available_timezones()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "posix/", "right/"))
    )
    return ("UTC", *names) if names else ()


# The shipped topics in a few groups, so the form stays short (each group folds away);
# topics an operator adds go under "More topics".
TOPIC_GROUPS = (
    (
        "Procedures and trade facilitation",
        (
            "trade-facilitation",
            "revised-kyoto-convention",
            "single-window",
            "transit",
            "aeo",
            "customs-brokers",
            "customs-business-partnership",
            "e-commerce",
            "regional-integration",
        ),
    ),
    (
        "Control and enforcement",
        (
            "risk-management",
            "security",
            "post-clearance-audit",
            "integrity",
            "plant-health",
            "health-safety",
            "environment",
        ),
    ),
    (
        "Revenue, tariff and origin",
        ("revenue", "customs-valuation", "harmonized-system", "rules-of-origin"),
    ),
    ("Technology and data", ("digital-customs", "data-exchange")),
    (
        "People and development",
        ("capacity-building", "fragile-states", "gender-diversity"),
    ),
)
OTHER_TOPICS = "More topics"


def topic_groups(topics: Mapping[str, str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """``topics`` (slug to name) in :data:`TOPIC_GROUPS` order; the rest by name at the end."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    placed: set[str] = set()
    for label, slugs in TOPIC_GROUPS:
        members = [(slug, topics[slug]) for slug in slugs if slug in topics]
        placed |= {slug for slug, _ in members}
        if members:
            groups.append((label, members))
    rest = sorted(
        ((slug, name) for slug, name in topics.items() if slug not in placed),
        key=lambda item: item[1].casefold(),
    )
    if rest:
        groups.append((OTHER_TOPICS, rest))
    return groups


# Offered first, after the site's default: where most readers of customs news live.
COMMON_TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Brussels",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Mexico_City",
    "America/Bogota",
    "America/Sao_Paulo",
    "Africa/Lagos",
    "Africa/Cairo",
    "Africa/Nairobi",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)


def zone_choices(default: str, selected: str) -> list[tuple[str, list[tuple[str, bool]]]]:
    """The time zone menu: (group label, [(zone, selected)]) for the site's default and the
    common zones, then every zone; ``selected`` is marked once, in the first group holding it.
    An empty list when the system has no zone database (the form asks for a name then)."""
    every = timezone_names()
    if not every:
        return []
    known = set(every)
    first = [zone for zone in dict.fromkeys((default, *COMMON_TIMEZONES)) if zone in known]
    rest = list(every)
    if selected not in known and _is_zone(selected):
        first = [selected, *first]  # a zone this system lists under another name: keep it
    marked = False
    groups: list[tuple[str, list[tuple[str, bool]]]] = []
    for label, zones in (("Common time zones", first), ("All time zones", rest)):
        options = []
        for zone in zones:
            here = zone == selected and not marked
            marked = marked or here
            options.append((zone, here))
        groups.append((label, options))
    return groups


def _is_zone(name: str) -> bool:
    try:
        check_timezone(name)
    except ValueError:
        return False
    return True


def client_address(request: web.Request, *, trust_forwarded_for: bool) -> str:
    """The client's address: the peer, or behind a trusted proxy the last X-Forwarded-For
    entry (the one the proxy appended; earlier ones are whatever the client sent)."""
    if trust_forwarded_for:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"


def _text(form: MultiDictProxy[Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


def _texts(form: MultiDictProxy[Any], name: str) -> list[str]:
    return [value for value in form.getall(name, []) if isinstance(value, str)]


def entry_from_form(
    form: MultiDictProxy[Any], *, email: str | None = None, default_timezone: str = "UTC"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """``(entry for check_entry, values to show again, problems by field)`` of a form.

    ``email``: the address of the subscription being managed (the form has no email field
    then). Only the limits of the web form are checked here; everything else is the
    subscriber validation's.
    """
    problems: dict[str, str] = {}
    address = _text(form, "email").strip() if email is None else email
    if len(address) > MAX_EMAIL:
        problems["email"] = f"at most {MAX_EMAIL} characters"
    if email is None and not address:
        problems["email"] = "give the address the mail should go to"
    keywords_text = _text(form, "keywords")
    keywords = [part.strip() for part in keywords_text.split(",") if part.strip()]
    if len(keywords) > MAX_KEYWORDS or any(len(k) > MAX_KEYWORD_LENGTH for k in keywords):
        problems["keywords"] = (
            f"at most {MAX_KEYWORDS} keywords of at most {MAX_KEYWORD_LENGTH} characters each"
        )
    entry: dict[str, Any] = {
        "email": address,
        "regions": list(dict.fromkeys(_texts(form, "regions"))),
        "topics": list(dict.fromkeys(_texts(form, "topics"))),
        "keywords": keywords,
        "cadence": _text(form, "cadence", "daily"),
        "hour": _text(form, "hour", "8").strip(),
        "weekday": _text(form, "weekday", "mon"),
        "timezone": _text(form, "timezone", default_timezone).strip(),
        "group_by": _text(form, "group_by", "region"),
    }
    values = {
        **entry,
        "email": address if email is None else "",
        "keywords": keywords_text[:MAX_KEYWORDS_FIELD],
    }
    return entry, values, problems


def _values_of(record: SubscriberRecord) -> dict[str, Any]:
    return {
        "email": "",
        "regions": record.regions,
        "topics": record.topics,
        "keywords": ", ".join(record.keywords),
        "cadence": record.cadence,
        "hour": record.hour,
        "weekday": record.weekday,
        "timezone": record.timezone,
        "group_by": record.group_by,
    }


class SubscriptionPages:
    """The handlers of the subscription pages, around a :class:`SignupDesk`.

    ``on_queued`` is called (in the event loop) after a request queued a mail, so the
    service can deliver it now rather than at its next mail run. ``enabled`` and the
    settings may change with :meth:`reconfigure` (a reloaded configuration).
    """

    def __init__(
        self,
        desk: SignupDesk,
        *,
        enabled: bool = True,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.desk = desk
        self.enabled = enabled
        self.on_queued = on_queued
        self._limits: tuple[int, int, int] | None = None
        self._set_limiters(desk.settings)

    def reconfigure(self, settings: SignupSettings, *, enabled: bool) -> None:
        self.desk.settings = settings
        self.enabled = enabled
        self._set_limiters(settings)

    def _set_limiters(self, settings: SignupSettings) -> None:
        limits = (
            settings.subscribe_per_hour_per_client,
            settings.subscribe_per_hour_per_email,
            settings.changes_per_hour_per_client,
        )
        if limits == self._limits:
            return  # keep the buckets: a reload must not reset them
        self._limits = limits
        # In the state database, so that every instance serving the pages counts the same.
        state = self.desk.state
        self.subscribe_by_client = SharedRateLimiter(state, "subscribe-client", limits[0])
        self.subscribe_by_email = SharedRateLimiter(state, "subscribe-email", limits[1])
        self.changes_by_client = SharedRateLimiter(state, "changes-client", limits[2])

    @staticmethod
    async def _take(limiter: SharedRateLimiter, key: str, now: datetime) -> float:
        try:
            return await asyncio.to_thread(limiter.take, key, now)
        except SyndicatorError as exc:
            # The database is busy or away: let the request through rather than fail it
            # (the request itself then meets the same database and says so).
            log.warning("rate limit not checked: %s", exc)
            return 0.0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/subscribe/", self.with_slash)
        app.router.add_get("/subscribe", self.subscribe_form)
        app.router.add_post("/subscribe", self.subscribe)
        app.router.add_get("/subscribe/sent", self.sent)
        app.router.add_get("/confirm/{token}", self.confirm_form)
        app.router.add_post("/confirm/{token}", self.confirm)
        app.router.add_get("/manage/{token}", self.manage_form)
        app.router.add_post("/manage/{token}", self.manage)
        app.router.add_get("/manage/{token}/export", self.export)

    # --- rendering -------------------------------------------------------------------------

    @property
    def settings(self) -> SignupSettings:
        return self.desk.settings

    @property
    def base_path(self) -> str:
        """The path of ``base_url``: pages link within it, whatever host they were asked by."""
        return urlsplit(self.settings.mail.base_url).path or "/"

    def _page(
        self, template: str, heading: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        names = self.settings.names
        defaults: dict[str, Any] = {
            "site_title": self.settings.mail.site_title,
            "language": self.settings.language,
            "base_path": self.base_path,
            "heading": heading,
            "regions": list(names.regions.items()),
            "topics": sorted(names.topics.items(), key=lambda item: item[1].casefold()),
            "topic_groups": topic_groups(names.topics),
            "cadences": CADENCES,
            "weekdays": WEEKDAY_LABELS,
            "groupings": GROUPINGS,
            "keywords_max": MAX_KEYWORDS_FIELD,
            "labels": FIELD_LABELS,
            "anchors": {"email": "email", "keywords": "keywords", "hour": "hour"},
            "errors": {},
            "values": DEFAULTS,
        }
        return render_page(template, status=status, **{**defaults, **context})

    def _message(
        self,
        heading: str,
        *paragraphs: str,
        status: int,
        link: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        response = self._page(
            "message.html", heading, status=status, paragraphs=paragraphs, link=link
        )
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def _not_found(self) -> web.Response:
        return self._message(
            "This link is not valid",
            "The link is incomplete, altered, or was replaced by a newer one. Use the link "
            "in the latest mail, or ask again.",
            status=404,
            link=("Subscribe", f"{self.base_path}subscribe"),
        )

    def _link_problem(self, problem: LinkProblem) -> web.Response:
        if problem is LinkProblem.EXPIRED:
            hours = int(self.settings.confirm_ttl.total_seconds() // 3600)
            return self._message(
                "This link has expired",
                f"Confirmation links work for {hours} hours. Nothing was subscribed; "
                "ask again for a new link.",
                status=410,
                link=("Subscribe", f"{self.base_path}subscribe"),
            )
        return self._not_found()

    def _too_many(self, wait: float) -> web.Response:
        minutes = max(1, round(wait / 60))
        return self._message(
            "Too many requests",
            f"Please wait about {minutes} minute{'s' if minutes != 1 else ''} and try again.",
            status=429,
            headers={hdrs.RETRY_AFTER: str(int(wait))},
        )

    def _unavailable(self, exc: Exception) -> web.Response:
        log.error("subscription page failed: %s", exc)
        return self._message(
            "Please try again later",
            "The subscription service is busy or out of order. Nothing was changed.",
            status=503,
            headers={hdrs.RETRY_AFTER: "60"},
        )

    # --- CSRF ------------------------------------------------------------------------------

    def _csrf_cookie(self, request: web.Request) -> str | None:
        value = request.cookies.get(CSRF_COOKIE, "")
        return value if _COOKIE_VALUE.fullmatch(value) else None

    def _with_csrf(self, request: web.Request) -> tuple[str, Callable[[web.Response], None]]:
        """The form token for this browser, and what sets its cookie on the response."""
        cookie = self._csrf_cookie(request)
        fresh = cookie is None
        if cookie is None:
            cookie = secrets.token_urlsafe(24)
        token = signature(self.desk.secret, "csrf", cookie)
        value = cookie

        def set_cookie(response: web.Response) -> None:
            if fresh:
                response.set_cookie(
                    CSRF_COOKIE,
                    value,
                    path=self.base_path,
                    httponly=True,
                    samesite="Lax",
                    secure=self._over_https(request),
                )

        return token, set_cookie

    def _over_https(self, request: web.Request) -> bool:
        """Whether the browser speaks HTTPS to us (directly, or to the trusted proxy)."""
        if request.secure:
            return True
        forwarded = request.headers.get("X-Forwarded-Proto", "")
        return self.settings.trust_forwarded_for and forwarded.strip().lower() == "https"

    def _csrf_ok(self, request: web.Request, form: MultiDictProxy[Any]) -> bool:
        cookie = self._csrf_cookie(request)
        submitted = _text(form, "csrf")
        return cookie is not None and signature_matches(submitted, self.desk.secret, "csrf", cookie)

    def _csrf_refused(self) -> web.Response:
        return self._message(
            "This form has expired",
            "The form was sent without the cookie it was shown with (cookies may be off, or "
            "the page is old). Go back, reload the page and send it again.",
            status=403,
        )

    def _checked(
        self, entry: dict[str, Any], limits: dict[str, str]
    ) -> tuple[Subscriber | None, dict[str, str]]:
        """The subscriber a form asks for, or every problem at once, in the form's order.

        The limits of the form (``limits``) win over what validation says of the same field.
        """
        subscriber, found = check_entry(entry, self.settings.known_topics)
        problems: dict[str, str] = {}
        for key, message in found.items():
            problems.setdefault(key.split(".")[0], message)
        problems |= limits
        ordered = {name: problems[name] for name in FIELD_LABELS if name in problems}
        ordered |= {name: message for name, message in problems.items() if name not in ordered}
        return (None if ordered else subscriber), ordered

    def _client(self, request: web.Request) -> str:
        return client_key(
            client_address(request, trust_forwarded_for=self.settings.trust_forwarded_for)
        )

    # --- subscribe -------------------------------------------------------------------------

    def _form_page(
        self,
        request: web.Request,
        *,
        values: Mapping[str, Any] | None = None,
        errors: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> web.Response:
        csrf, set_cookie = self._with_csrf(request)
        if values is None:
            values = {**DEFAULTS, "timezone": self.settings.default_timezone}
        response = self._page(
            "subscribe.html",
            "Subscribe by email",
            status=status,
            csrf=csrf,
            values=values,
            errors=errors or {},
            timezones=zone_choices(self.settings.default_timezone, str(values["timezone"])),
        )
        set_cookie(response)
        return response

    async def with_slash(self, request: web.Request) -> web.StreamResponse:
        """``/subscribe/`` is ``/subscribe``: 308 keeps the method (and a form's body)."""
        if not self.enabled:
            raise web.HTTPNotFound()
        raise web.HTTPPermanentRedirect(f"{self.base_path}subscribe", headers=_HEADERS)

    async def subscribe_form(self, request: web.Request) -> web.Response:
        if not self.enabled:
            raise web.HTTPNotFound()
        return self._form_page(request)

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            raise web.HTTPNotFound()
        form = await read_form(request) or EMPTY_FORM
        if not self._csrf_ok(request, form):
            return self._csrf_refused()
        entry, values, limits = entry_from_form(
            form, default_timezone=self.settings.default_timezone
        )
        subscriber, problems = self._checked(entry, limits)
        if subscriber is None or problems:
            return self._form_page(request, values=values, errors=problems, status=400)
        now = self.desk.clock()
        wait = await self._take(self.subscribe_by_client, self._client(request), now)
        if not wait:
            # The normalised address: two spellings of one mailbox share one bucket.
            wait = await self._take(self.subscribe_by_email, address_key(subscriber.email), now)
        if wait:
            return self._too_many(wait)
        try:
            queued = await asyncio.to_thread(self.desk.request, subscriber)
        except SyndicatorError as exc:
            return self._unavailable(exc)
        if queued:
            self.on_queued()
        # The same answer whether the address was unknown, waiting or subscribed.
        raise web.HTTPSeeOther(f"{self.base_path}subscribe/sent", headers=_HEADERS)

    async def sent(self, request: web.Request) -> web.Response:
        if not self.enabled:
            raise web.HTTPNotFound()
        hours = int(self.settings.confirm_ttl.total_seconds() // 3600)
        return self._page("sent.html", "Check your mail", ttl_hours=hours)

    # --- confirm ---------------------------------------------------------------------------

    async def confirm_form(self, request: web.Request) -> web.Response:
        """GET shows a button and never confirms by itself (mail scanners follow links)."""
        if not self.enabled:
            raise web.HTTPNotFound()
        token = request.match_info["token"]
        try:
            found = await asyncio.to_thread(self.desk.pending, token)
        except SyndicatorError as exc:
            return self._unavailable(exc)
        if isinstance(found, LinkProblem):
            return self._link_problem(found)
        if found.confirmed:
            try:
                done = await asyncio.to_thread(self.desk.confirmed, found)
            except SyndicatorError as exc:
                return self._unavailable(exc)
            if done is None:
                return self._message(
                    "This subscription has ended",
                    f"{mask(found.email)} was subscribed with this link, and is not any more: "
                    "it receives no mail. To receive mail again, subscribe again.",
                    status=410,
                    link=("Subscribe again", f"{self.base_path}subscribe"),
                )
            outcome = request.query.get("done", "already")
            if outcome in CONFIRM_OUTCOMES:
                done = Confirmation(outcome, done.record, done.manage_url)
            return self._confirmed(done)
        filters, schedule = describe(found.subscriber, self.settings.names)
        csrf, set_cookie = self._with_csrf(request)
        response = self._page(
            "confirm.html",
            "Confirm your subscription",
            csrf=csrf,
            action=f"{self.base_path}confirm/{token}",
            address=mask(found.email),
            filters=filters,
            schedule=schedule,
        )
        set_cookie(response)
        return response

    async def confirm(self, request: web.Request) -> web.Response:
        if not self.enabled:
            raise web.HTTPNotFound()
        wait = await self._take(self.changes_by_client, self._client(request), self.desk.clock())
        if wait:
            return self._too_many(wait)
        form = await read_form(request) or EMPTY_FORM
        if not self._csrf_ok(request, form):
            return self._csrf_refused()
        try:
            done = await asyncio.to_thread(self.desk.confirm, request.match_info["token"])
        except SyndicatorError as exc:
            return self._unavailable(exc)
        if isinstance(done, LinkProblem):
            return self._link_problem(done)
        # Post/Redirect/Get: the page can be reloaded and bookmarked without posting again.
        raise web.HTTPSeeOther(
            f"{self.base_path}confirm/{request.match_info['token']}?done={done.outcome}",
            headers=_HEADERS,
        )

    def _confirmed(self, done: Confirmation) -> web.Response:
        record = done.record
        filters, schedule = describe(record, self.settings.names)
        heading = "You are subscribed" if done.outcome != "operator" else "Already subscribed"
        first_digest = ""
        if record.cadence != "immediate" and record.next_digest_at is not None:
            local = record.next_digest_at.astimezone(ZoneInfo(record.timezone))
            first_digest = f"{local:%A %d %B %Y, %H:%M} ({record.timezone})"
        return self._page(
            "confirmed.html",
            heading,
            outcome=done.outcome,
            address=mask(record.email),
            cadence=record.cadence,
            filters=filters,
            schedule=schedule,
            first_digest=first_digest,
            manage_url=done.manage_url,
        )

    # --- manage ----------------------------------------------------------------------------

    def _manage_page(
        self,
        request: web.Request,
        record: SubscriberRecord,
        *,
        values: Mapping[str, Any] | None = None,
        errors: Mapping[str, str] | None = None,
        saved: bool = False,
        status: int = 200,
    ) -> web.Response:
        token = request.match_info["token"]
        filters, schedule = describe(record, self.settings.names)
        csrf, set_cookie = self._with_csrf(request)
        values = values or _values_of(record)
        feed_url = self.desk.private_feed(record) if record.status in {ACTIVE, "suspended"} else ""
        response = self._page(
            "manage.html",
            "Your subscription",
            feed_url=feed_url,
            rotated=request.query.get("rotated") == "1",
            status=status,
            csrf=csrf,
            action=f"{self.base_path}manage/{token}",
            address=mask(record.email),
            status_name=record.status,
            editable=record.source not in OPERATOR_SOURCES and record.status == ACTIVE,
            filters=filters,
            schedule=schedule,
            values=values,
            errors=errors or {},
            saved=saved,
            timezones=zone_choices(self.settings.default_timezone, str(values["timezone"])),
        )
        set_cookie(response)
        return response

    async def manage_form(self, request: web.Request) -> web.Response:
        if not self.enabled:
            raise web.HTTPNotFound()
        try:
            record = await asyncio.to_thread(self.desk.subscription, request.match_info["token"])
        except SyndicatorError as exc:
            return self._unavailable(exc)
        if record is None:
            return self._not_found()
        return self._manage_page(request, record, saved=request.query.get("saved") == "1")

    async def manage(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            raise web.HTTPNotFound()
        wait = await self._take(self.changes_by_client, self._client(request), self.desk.clock())
        if wait:
            return self._too_many(wait)
        form = await read_form(request) or EMPTY_FORM
        if not self._csrf_ok(request, form):
            return self._csrf_refused()
        token = request.match_info["token"]
        action = _text(form, "action")
        try:
            if action in ("forget", "forget-confirmed"):
                return await self._forget(request, token, confirmed=action == "forget-confirmed")
            if action == "unsubscribe":
                record = await asyncio.to_thread(self.desk.unsubscribe, token)
                if record is None:
                    return self._not_found()
                return self._page(
                    "unsubscribed.html", "You are unsubscribed", address=mask(record.email)
                )
            if action == "rotate_feed":
                if await asyncio.to_thread(self.desk.rotate_feed, token) is None:
                    return self._not_found()
                raise web.HTTPSeeOther(
                    f"{self.base_path}manage/{token}?rotated=1", headers=_HEADERS
                )
            if action != "save":
                return self._message(
                    "Nothing to do", "Use the buttons of the manage page.", status=400
                )
            record = await asyncio.to_thread(self.desk.subscription, token)
            if record is None:
                return self._not_found()
            entry, values, limits = entry_from_form(
                form, email=record.email, default_timezone=self.settings.default_timezone
            )
            subscriber, problems = self._checked(entry, limits)
            if subscriber is None or problems:
                return self._manage_page(
                    request, record, values=values, errors=problems, status=400
                )
            changed = await asyncio.to_thread(self.desk.change, token, subscriber)
        except SyndicatorError as exc:
            return self._unavailable(exc)
        if changed is None:
            return self._not_found()
        if not changed[1]:
            return self._message(
                "This subscription cannot be changed here",
                "It is kept by the site's operator, or it is not active. You can still "
                "unsubscribe on the manage page.",
                status=403,
                link=("Back to your subscription", f"{self.base_path}manage/{token}"),
            )
        raise web.HTTPSeeOther(f"{self.base_path}manage/{token}?saved=1", headers=_HEADERS)

    # --- data rights -----------------------------------------------------------------------

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Everything held about the address a manage link names, as a JSON download."""
        if not self.enabled:
            raise web.HTTPNotFound()
        from syndicator.mail.rights import export_address  # noqa: PLC0415

        token = request.match_info["token"]
        try:
            record = await asyncio.to_thread(self.desk.subscription, token)
            if record is None:
                return self._not_found()
            held = await asyncio.to_thread(export_address, self.desk.state, record.email)
        except SyndicatorError as exc:
            return self._unavailable(exc)
        return web.Response(
            body=json.dumps(held, indent=2, sort_keys=True).encode("utf-8"),
            content_type="application/json",
            headers={
                **_HEADERS,
                hdrs.CONTENT_DISPOSITION: 'attachment; filename="my-subscription-data.json"',
            },
        )

    async def _forget(self, request: web.Request, token: str, *, confirmed: bool) -> web.Response:
        from syndicator.mail.rights import forget_address  # noqa: PLC0415

        record = await asyncio.to_thread(self.desk.subscription, token)
        if record is None:
            return self._not_found()
        if not confirmed:
            csrf, set_cookie = self._with_csrf(request)
            response = self._page(
                "forget.html",
                "Delete everything about you?",
                csrf=csrf,
                action=f"{self.base_path}manage/{token}",
                address=mask(record.email),
                back=f"{self.base_path}manage/{token}",
            )
            set_cookie(response)
            return response
        await asyncio.to_thread(
            forget_address, self.desk.state, record.email, now=self.desk.clock(), always=True
        )
        return self._message(
            "Everything about you is deleted",
            f"{self.settings.mail.site_title} no longer holds your address, your subscription "
            "or its history, and sends you no more mail. To prevent mail ever reaching you "
            "again, only a one-way fingerprint of the address is kept.",
            status=200,
        )
