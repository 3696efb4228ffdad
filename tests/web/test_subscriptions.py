"""Self-service subscriptions over real HTTP: double opt-in, manage, CSRF, tokens, limits.

The real aiohttp app on a free loopback port, a real state database, mail through a real
SMTP server (aiosmtpd); the clock is a value the test moves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from syndicator.classify.classifier import Classifier
from syndicator.cli import main
from syndicator.config import Config, load_config
from syndicator.errors import ConfigError
from syndicator.mail import roster
from syndicator.mail.signup import (
    SignupDesk,
    SignupSettings,
    confirm_token,
    describe_schedule,
    manage_token,
    parse_confirm_token,
)
from syndicator.mail.subscribers import Subscriber
from syndicator.mail.unsubscribe import UnsubscribeDesk, load_secret, make_token
from syndicator.metrics import Metrics
from syndicator.pipeline import deliver_due, names_from, run_cycle
from syndicator.state.db import (
    State,
    messages_table,
    subscribers_table,
    subscription_requests_table,
)
from syndicator.state.outbox import NewMessage, queue_message
from syndicator.web.app import Health, create_app, serve
from syndicator.web.ratelimit import RateLimiter, client_key
from syndicator.web.subscriptions import SubscriptionPages, timezone_names
from tests.conftest import SAMPLE_STORE, T0, Clock, write
from tests.smtp_sink import Received, Sink, SinkHandler

FILE_SUBSCRIBERS = """
    [[subscriber]]
    email = "desk@example.org"
    name = "Americas desk"
    regions = ["americas"]
    cadence = "immediate"
"""
LINK = re.compile(r"https?://\S+/(confirm|manage|unsubscribe)/([0-9A-Za-z._-]+)")


def configure(install: Path, sink: Sink, web: str = "") -> Config:
    (install.parent / "subscribers.toml").write_text(textwrap.dedent(FILE_SUBSCRIBERS))
    text = install.read_text().replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
    text += f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5\n'
    text += "\n[web]\n" + textwrap.dedent(web)
    install.write_text(text)
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return load_config(install)


@dataclass
class Pages:
    """The running app, its state and mail, and a browser-like client with cookies."""

    config: Config
    classifier: Classifier
    state: State
    clock: Clock
    sink: Sink
    pages: SubscriptionPages
    base: str
    session: aiohttp.ClientSession
    deliveries: list[asyncio.Task[Any]] = field(default_factory=list)

    async def delivered(self) -> list[Received]:
        """Wait for the deliveries the pages started, then what the SMTP server holds."""
        while self.deliveries:
            await self.deliveries.pop()
        return self.sink.received

    async def form(self, path: str, session: aiohttp.ClientSession | None = None) -> str:
        """GET a page with a form; the CSRF token in it (its cookie stays in the jar)."""
        async with (session or self.session).get(self.base + path) as response:
            assert response.status == 200, await response.text()
            found = re.search(r'name="csrf" value="([^"]+)"', await response.text())
            assert found is not None
            return found.group(1)

    async def post(
        self,
        path: str,
        data: dict[str, Any] | list[tuple[str, str]],
        *,
        session: aiohttp.ClientSession | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        async with (session or self.session).post(
            self.base + path, data=data, allow_redirects=False, headers=headers
        ) as response:
            return response.status, dict(response.headers), await response.text()

    async def post_and_follow(self, path: str, data: dict[str, Any]) -> tuple[int, str]:
        """POST that must answer 303 (Post/Redirect/Get); the status and page it leads to."""
        status, headers, _ = await self.post(path, data)
        assert status == 303, status
        async with self.session.get(self.base + headers["Location"]) as response:
            return response.status, await response.text()

    async def subscribe(self, email: str, **fields: Any) -> tuple[int, dict[str, str], str]:
        csrf = await self.form("/subscribe")
        data: list[tuple[str, str]] = [("csrf", csrf), ("email", email)]
        fields.setdefault("cadence", "immediate")
        for key, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                data.append((key, str(item)))
        return await self.post("/subscribe", data)

    def cycle(self, at: datetime) -> None:
        self.clock.now = at
        run_cycle(self.config, self.classifier, self.state, now=at)

    def add_article(self, name: str, title: str, body: str) -> None:
        write(self.config.store.path / name, f"{title}\n\n{title}\n\n{body}\n")

    def record(self, email: str) -> roster.SubscriberRecord | None:
        with self.state.engine.connect() as conn:
            return roster.find_subscriber(conn, email)


async def start(
    install: Path, sink: Sink, classifier: Classifier, web: str = "", *, enabled: bool = True
) -> AsyncIterator[Pages]:
    config = configure(install, sink, web)
    state = State.open(config.state.url)
    clock = Clock(T0)
    run_cycle(config, classifier, state, now=T0)  # the baseline; syncs the file's subscriber
    secret = load_secret(state, None)
    desk = SignupDesk(
        state, secret, clock, SignupSettings.from_config(config, names_from(classifier))
    )
    deliveries: list[asyncio.Task[Any]] = []

    def deliver_now() -> None:
        deliveries.append(asyncio.create_task(deliver_due(config, state, clock=clock)))

    pages = SubscriptionPages(desk, enabled=enabled, on_queued=deliver_now)
    app = create_app(
        output_dir=config.feeds.output_dir,
        health=Health(interval=60),
        metrics=Metrics(),
        clock=clock,
        unsubscribe=UnsubscribeDesk(state, secret, clock),
        subscriptions=pages,
        site_title=config.site.title,
    )
    runner = await serve(app, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    try:
        # unsafe=True: keep cookies of a numeric host, as a browser does.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            site = Pages(
                config, classifier, state, clock, sink, pages, f"http://127.0.0.1:{port}", session
            )
            site.deliveries = deliveries
            yield site
            await site.delivered()
    finally:
        await runner.cleanup()
        state.close()


@pytest.fixture
async def site(install: Path, sink: Sink, classifier: Classifier) -> AsyncIterator[Pages]:
    async for running in start(install, sink, classifier):
        yield running


def links(message: EmailMessage, kind: str) -> list[str]:
    """The tokens of ``kind`` links in the text part of ``message``."""
    text_part = message.get_body(("plain",))
    assert text_part is not None
    return [
        token for found_kind, token in LINK.findall(text_part.get_content()) if found_kind == kind
    ]


def to(received: list[Received], email: str) -> list[EmailMessage]:
    return [item.message for item in received if item.recipients == [email]]


# --- the page ------------------------------------------------------------------------------


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def structure(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Structure()
    parser.feed(html)
    return parser.tags


async def test_subscribe_page_is_self_contained_labelled_and_sets_a_csrf_cookie(
    site: Pages,
) -> None:
    async with site.session.get(site.base + "/subscribe") as response:
        assert response.status == 200
        html = await response.text()
        headers = response.headers
        cookie = response.cookies["syndicator_csrf"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    tags = structure(html)
    assert ("html", {"lang": "en"}) in tags
    assert (
        "meta",
        {"name": "viewport", "content": "width=device-width, initial-scale=1"},
    ) in tags
    assert not [tag for tag, _ in tags if tag in {"script", "link", "img", "iframe"}]
    assert all(
        (attrs.get("href") or "/").startswith(("/", "#")) for tag, attrs in tags if tag == "a"
    )
    assert [tag for tag, _ in tags].count("h1") == 1
    labelled = {attrs["for"] for tag, attrs in tags if tag == "label"}
    controls = [
        attrs for tag, attrs in tags if tag in {"input", "select"} and attrs.get("type") != "hidden"
    ]
    # email, regions, topics, keywords, cadences (with "feed only"), hour, weekday, zone,
    # and how a digest's contents are grouped (by region, the default, or by topic)
    assert len(controls) == 1 + 7 + 25 + 1 + 4 + 3 + 1
    assert '<option value="region" selected>Region</option>' in html
    assert '<option value="topic">Topic</option>' in html
    assert all(attrs["id"] in labelled for attrs in controls)
    # Each checkbox is labelled with the name of its region or topic.
    assert 'id="region-americas" name="regions" value="americas"> Americas and Caribbean' in html
    assert 'value="aeo"> Authorized Economic Operators</label>' in html
    assert "<option selected>UTC</option>" in html
    assert "Europe/Brussels" in timezone_names()


# --- double opt-in, end to end over HTTP -------------------------------------------------------


async def test_a_digest_grouped_by_topic_chosen_on_the_form_then_by_region_on_manage(
    site: Pages,
) -> None:
    status, _, _ = await site.subscribe(
        "bo@example.org", cadence="daily", hour="9", timezone="UTC", group_by="topic"
    )
    assert status == 303
    (token,) = links(to(await site.delivered(), "bo@example.org")[0], "confirm")
    csrf = await site.form(f"/confirm/{token}")
    status, page = await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf})
    assert status == 200 and "You are subscribed" in page
    record = site.record("bo@example.org")
    assert record is not None and (record.cadence, record.group_by) == ("daily", "topic")

    site.add_article(
        "chile.txt",
        "Chile Launches AEO Programme",
        "Chile's customs launched an Authorized Economic Operator programme in Santiago.",
    )
    site.add_article(
        "kenya.txt",
        "Kenya Rolls Out Single Window",
        "The Kenya Revenue Authority rolled out its Single Window system in Nairobi.",
    )
    site.cycle(T0 + timedelta(minutes=5))
    site.cycle(datetime(2026, 3, 3, 9, 0, tzinfo=UTC))  # the first digest is due
    await deliver_due(site.config, site.state, clock=site.clock)
    _, digest = to(site.sink.received, "bo@example.org")  # the confirmation, the digest
    assert digest["Subject"].startswith("2 new articles: ")
    body = digest.get_body(("plain",))
    assert body is not None
    text = body.get_content().replace("\r\n", "\n")
    # The table of contents is grouped by each article's first topic, not by region.
    assert "\nAUTHORIZED ECONOMIC OPERATORS\n" in text
    assert "\nSINGLE WINDOW\n" in text
    assert "AMERICAS AND CARIBBEAN" not in text

    (manage,) = links(digest, "manage")
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        page = await response.text()
    assert '<option value="topic" selected>Topic</option>' in page
    csrf = await site.form(f"/manage/{manage}")
    status, headers, _ = await site.post(
        f"/manage/{manage}",
        [
            ("csrf", csrf),
            ("action", "save"),
            ("cadence", "daily"),
            ("hour", "9"),
            ("weekday", "mon"),
            ("timezone", "UTC"),
            ("group_by", "region"),
        ],
    )
    assert status == 303, headers
    record = site.record("bo@example.org")
    assert record is not None and record.group_by == "region"
    # A value outside the two choices is refused, naming the field, and nothing changes.
    status, _, page = await site.post(
        f"/manage/{manage}",
        [("csrf", csrf), ("action", "save"), ("cadence", "daily"), ("group_by", "weekday")],
    )
    assert status == 400 and "Digest contents:" in page
    record = site.record("bo@example.org")
    assert record is not None and record.group_by == "region"


async def test_double_opt_in_confirm_receive_change_and_leave(site: Pages) -> None:
    status, headers, _ = await site.subscribe(
        "Ana@Example.org", regions=["americas", "europe"], keywords="green lane, Peru"
    )
    assert status == 303
    assert headers["Location"] == "/subscribe/sent"
    async with site.session.get(site.base + "/subscribe/sent") as response:
        assert "Check your mail" in await response.text()
    # The domain's case is normalised: the mail goes to one spelling of the mailbox.
    mail = to(await site.delivered(), "Ana@example.org")
    assert len(mail) == 1
    confirmation = mail[0]
    assert confirmation["Subject"] == "Confirm your subscription to WCO News"
    assert confirmation["Auto-Submitted"] == "auto-generated"
    assert confirmation.get_content_type() == "multipart/alternative"
    html_part = confirmation.get_body(("html",))
    assert html_part is not None and "Confirm your subscription</a>" in html_part.get_content()
    (token,) = links(confirmation, "confirm")
    assert site.record("ana@example.org") is None  # pending: not a subscriber yet

    # While pending, a matching article is mailed to nobody but the file's subscriber.
    site.add_article("chile.txt", "Chile Launches AEO Programme", "Chile's customs launched it.")
    site.cycle(T0 + timedelta(minutes=5))
    await deliver_due(site.config, site.state, clock=site.clock)
    assert len(to(site.sink.received, "Ana@example.org")) == 1

    # Following the link changes nothing; the button does.
    async with site.session.get(f"{site.base}/confirm/{token}") as response:
        page = await response.text()
        assert response.status == 200
        assert "Confirm subscription</button>" in page
        assert "A…a@example.org" in page
        assert (
            "Regions Americas and Caribbean, Europe; keywords &#39;green lane&#39;, "
            "&#39;Peru&#39;" in page
        )
    assert site.record("ana@example.org") is None
    csrf = await site.form(f"/confirm/{token}")
    status, page = await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf})
    assert status == 200 and "You are subscribed" in page
    record = site.record("ana@example.org")
    assert record is not None
    assert (record.status, record.source, record.cadence) == ("active", "web", "immediate")
    assert record.regions == ("americas", "europe")
    assert record.keywords == ("green lane", "Peru")
    # Confirming twice is harmless.
    status, page = await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf})
    assert status == 200 and "confirmed already" in page

    # The next matching article arrives, with a link to manage the subscription.
    site.add_article("peru.txt", "Peru Expands Green Lane", "Peru's customs expanded it.")
    site.cycle(T0 + timedelta(minutes=10))
    await deliver_due(site.config, site.state, clock=site.clock)
    news = to(site.sink.received, "Ana@example.org")[1:]
    assert [message["Subject"] for message in news] == ["Peru Expands Green Lane"]
    (manage,) = links(news[0], "manage")

    # Change filters on the manage page.
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        page = await response.text()
        assert 'value="americas" checked' in page
        assert 'value="green lane, Peru"' in page
    csrf = await site.form(f"/manage/{manage}")
    status, headers, _ = await site.post(
        f"/manage/{manage}",
        [
            ("csrf", csrf),
            ("action", "save"),
            ("topics", "aeo"),
            ("cadence", "weekly"),
            ("hour", "7"),
            ("weekday", "fri"),
            ("timezone", "Asia/Singapore"),
            ("keywords", ""),
        ],
    )
    assert status == 303 and headers["Location"] == f"/manage/{manage}?saved=1"
    record = site.record("ana@example.org")
    assert record is not None
    assert (record.regions, record.topics, record.keywords) == ((), ("aeo",), ())
    assert (record.cadence, record.hour, record.weekday, record.timezone) == (
        "weekly",
        7,
        "fri",
        "Asia/Singapore",
    )
    assert record.next_digest_at == datetime(2026, 3, 5, 23, 0, tzinfo=UTC)  # Fri 07:00 +08
    async with site.session.get(f"{site.base}/manage/{manage}?saved=1") as response:
        assert "Your changes are saved." in await response.text()

    # Unsubscribe from the manage page: the one-click way, queued mail included.
    with site.state.transaction() as conn:
        queue_message(
            conn,
            NewMessage(
                subscriber_id=record.id,
                kind="weekly",
                message_id="<queued@example.org>",
                recipient=record.email,
                body=b"Subject: queued\r\n\r\nqueued\r\n",
            ),
            now=site.clock(),
        )
    status, _, page = await site.post(f"/manage/{manage}", {"csrf": csrf, "action": "unsubscribe"})
    assert status == 200 and "You are unsubscribed" in page
    record = site.record("ana@example.org")
    assert record is not None and record.status == "unsubscribed"
    with site.state.engine.connect() as conn:
        queued = conn.execute(
            select(messages_table.c.status, messages_table.c.last_error).where(
                messages_table.c.message_id == "<queued@example.org>"
            )
        ).one()
    assert tuple(queued) == ("failed", "unsubscribed")
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        assert "This address is unsubscribed" in await response.text()


async def test_the_answer_is_the_same_whoever_the_address_is(site: Pages) -> None:
    # Prepare: one pending request, one confirmed web subscriber, one who unsubscribed.
    await site.subscribe("pending@example.org")
    await site.subscribe("web@example.org")
    await site.subscribe("gone@example.org")
    received = await site.delivered()
    for email in ("web@example.org", "gone@example.org"):
        (token,) = links(to(received, email)[0], "confirm")
        csrf = await site.form(f"/confirm/{token}")
        assert (await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf}))[0] == 200
    gone = site.record("gone@example.org")
    assert gone is not None
    with site.state.transaction() as conn:
        roster.unsubscribe(conn, gone.id, now=T0)
    before = len(received)

    answers = []
    addresses = (
        "new@example.org",
        "pending@example.org",
        "web@example.org",
        "desk@example.org",  # the subscribers file's
        "gone@example.org",
    )
    for email in addresses:
        status, headers, body = await site.subscribe(email, regions=["mena"])
        answers.append(
            (status, headers["Location"], body, headers.get("Set-Cookie"), headers["Content-Type"])
        )
    assert all(answer == answers[0] for answer in answers), answers
    received = (await site.delivered())[before:]
    assert sorted(item.recipients[0] for item in received) == sorted(addresses)
    subjects = {item.recipients[0]: item.message["Subject"] for item in received}
    for email in ("new@example.org", "pending@example.org", "gone@example.org"):
        assert subjects[email] == "Confirm your subscription to WCO News"
    for email in ("web@example.org", "desk@example.org"):
        assert subjects[email] == "Your subscription to WCO News"
        (manage,) = links(to(received, email)[0], "manage")
        async with site.session.get(f"{site.base}/manage/{manage}") as response:
            assert response.status == 200
    # Nothing about an existing subscription changed: the file's entry keeps its filters.
    desk = site.record("desk@example.org")
    assert desk is not None and desk.regions == ("americas",)
    # The earlier link of the pending address was replaced by the new one.
    with site.state.engine.connect() as conn:
        requests = conn.execute(
            select(subscription_requests_table.c.email).where(
                subscription_requests_table.c.confirmed_at.is_(None)
            )
        ).scalars()
        assert sorted(requests) == ["gone@example.org", "new@example.org", "pending@example.org"]


async def test_a_confirmed_request_brings_back_an_address_that_left_the_file(
    site: Pages,
) -> None:
    desk = site.record("desk@example.org")
    assert desk is not None
    with site.state.transaction() as conn:
        roster.unsubscribe(conn, desk.id, now=T0)
    await site.subscribe("desk@example.org", topics=["aeo"], cadence="daily")
    (token,) = links(to(await site.delivered(), "desk@example.org")[-1], "confirm")
    csrf = await site.form(f"/confirm/{token}")
    assert (await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf}))[0] == 200
    record = site.record("desk@example.org")
    assert record is not None
    assert (record.status, record.source, record.topics, record.cadence) == (
        "active",
        "web",
        ("aeo",),
        "daily",
    )
    # The file still lists the address: its sync leaves the web subscription alone.
    (site.config.subscribers.file).write_text(
        textwrap.dedent(FILE_SUBSCRIBERS).replace('"americas"', '"europe"')
    )
    site.cycle(T0 + timedelta(minutes=1))
    after = site.record("desk@example.org")
    assert after is not None and (after.source, after.topics) == ("web", ("aeo",))


async def test_a_confirmation_mail_that_cannot_be_delivered_is_recorded_not_raised(
    install: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    with Sink(SinkHandler(refuse={"nobody@example.org": "550 5.1.1 no such user"})) as sink:
        async for site in start(install, sink, classifier):
            status, headers, _ = await site.subscribe("nobody@example.org")
            assert (status, headers["Location"]) == (303, "/subscribe/sent")
            assert await site.delivered() == []
            with site.state.engine.connect() as conn:
                row = conn.execute(
                    select(
                        messages_table.c.kind, messages_table.c.status, messages_table.c.last_error
                    )
                ).one()
            assert (row.kind, row.status) == ("confirm", "failed")
            assert "550" in row.last_error
    assert any("nobody@example.org" in record.getMessage() for record in caplog.records)


# --- CSRF, tokens, limits ----------------------------------------------------------------------


async def test_forms_without_a_matching_csrf_token_are_refused(site: Pages) -> None:
    valid = await site.form("/subscribe")
    data = {"email": "x@example.org", "cadence": "daily"}
    async with aiohttp.ClientSession() as stranger:  # no cookie: a forged cross-site POST
        status, _, page = await site.post("/subscribe", {**data, "csrf": valid}, session=stranger)
        assert status == 403 and "This form has expired" in page
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        other_csrf = await site.form("/subscribe", session=other)  # another browser's token
    for token in ("", "A" * 22, other_csrf, valid[:-1] + ("B" if valid[-1] != "B" else "C")):
        status, _, _ = await site.post("/subscribe", {**data, "csrf": token})
        assert status == 403, token
    # A cookie of the wrong shape counts as none.
    async with aiohttp.ClientSession(cookies={"syndicator_csrf": "x"}) as odd:
        assert (await site.post("/subscribe", {**data, "csrf": valid}, session=odd))[0] == 403
    assert await site.delivered() == []
    with site.state.engine.connect() as conn:
        assert conn.execute(select(subscription_requests_table)).all() == []

    # The confirm and manage forms are guarded the same way.
    desk = site.record("desk@example.org")
    assert desk is not None
    manage = manage_token(site.pages.desk.secret, desk.id, desk.email)
    fresh = await site.form(f"/manage/{manage}")
    async with aiohttp.ClientSession() as stranger:
        status, _, _ = await site.post(
            f"/manage/{manage}", {"csrf": fresh, "action": "unsubscribe"}, session=stranger
        )
    assert status == 403
    after = site.record("desk@example.org")
    assert after is not None and after.status == "active"


async def test_expired_forged_and_misused_tokens_are_refused(site: Pages) -> None:
    await site.subscribe("late@example.org")
    (token,) = links(to(await site.delivered(), "late@example.org")[0], "confirm")
    parsed = parse_confirm_token(token)
    assert parsed is not None
    request_id, expires, signed = parsed
    assert expires == int((T0 + timedelta(hours=48)).timestamp())
    csrf = await site.form(f"/confirm/{token}")
    secret = site.pages.desk.secret
    desk = site.record("desk@example.org")
    assert desk is not None
    forged = [
        f"{request_id}.{expires}.{signed[:-1]}{'A' if signed[-1] != 'A' else 'B'}",
        f"{request_id}.{expires + 86400}.{signed}",  # a longer life
        f"{request_id + 1}.{expires}.{signed}",
        confirm_token(
            b"another secret of 32 bytes......", request_id, expires, "0" * 32, "late@example.org"
        ),
        manage_token(secret, desk.id, desk.email),  # a manage token is no confirm token
        "not-a-token",
    ]
    for bad in forged:
        async with site.session.get(f"{site.base}/confirm/{bad}") as response:
            assert response.status == 404, bad
            assert "This link is not valid" in await response.text()
        assert (await site.post(f"/confirm/{bad}", {"csrf": csrf}))[0] == 404
    for bad in (
        make_token(secret, desk.id, desk.email),  # an unsubscribe token is no manage token
        manage_token(secret, desk.id + 1, desk.email),
        manage_token(secret, desk.id, "other@example.org"),
    ):
        async with site.session.get(f"{site.base}/manage/{bad}") as response:
            assert response.status == 404, bad
    # Just before and just after the expiry.
    site.clock.now = T0 + timedelta(hours=48)
    async with site.session.get(f"{site.base}/confirm/{token}") as response:
        assert response.status == 200
    site.clock.now = T0 + timedelta(hours=48, seconds=1)
    async with site.session.get(f"{site.base}/confirm/{token}") as response:
        assert response.status == 410
        assert "This link has expired" in await response.text()
    assert (await site.post(f"/confirm/{token}", {"csrf": csrf}))[0] == 410
    assert site.record("late@example.org") is None
    # Asking again gives a new link and kills the old one.
    site.clock.now = T0 + timedelta(hours=50)
    await site.subscribe("late@example.org")
    (second,) = links(to(await site.delivered(), "late@example.org")[1], "confirm")
    assert second != token
    async with site.session.get(f"{site.base}/confirm/{token}") as response:
        assert response.status == 404
    async with site.session.get(f"{site.base}/confirm/{second}") as response:
        assert response.status == 200


async def test_requests_are_limited_per_client_and_per_address(
    install: Path, sink: Sink, classifier: Classifier
) -> None:
    web = """
        subscribe_per_hour_per_client = 3
        subscribe_per_hour_per_email = 2
        changes_per_hour_per_client = 2
        trust_forwarded_for = true
    """
    async for site in start(install, sink, classifier, web):
        one = {"X-Forwarded-For": "198.51.100.7, 192.0.2.1"}  # the proxy appended 192.0.2.1
        csrf = await site.form("/subscribe")

        async def ask(
            email: str, headers: dict[str, str], site: Pages = site, csrf: str = csrf
        ) -> tuple[int, dict[str, str], str]:
            data = {"csrf": csrf, "email": email, "cadence": "daily"}
            return await site.post("/subscribe", data, headers=headers)

        assert (await ask("a@example.org", one))[0] == 303
        assert (await ask("b@example.org", one))[0] == 303
        assert (await ask("a@example.org", one))[0] == 303
        status, headers, page = await ask("c@example.org", one)
        assert status == 429 and "Too many requests" in page
        assert headers["Retry-After"] == "1200"  # one request back every 20 minutes
        # Another client is not held back by the first, but an address is, whoever asks.
        other = {"X-Forwarded-For": "192.0.2.2"}
        assert (await ask("c@example.org", other))[0] == 303
        status, headers, _ = await ask("a@example.org", other)
        assert status == 429 and headers["Retry-After"] == "1800"
        # Time refills the buckets.
        site.clock.now = T0 + timedelta(minutes=20)
        assert (await ask("d@example.org", one))[0] == 303
        site.clock.now = T0 + timedelta(minutes=50)
        assert (await ask("a@example.org", other))[0] == 303
        # Confirm and manage forms have their own limit per client.
        desk = site.record("desk@example.org")
        assert desk is not None
        manage = manage_token(site.pages.desk.secret, desk.id, desk.email)
        results = [
            (await site.post(f"/manage/{manage}", {"csrf": csrf, "action": "none"}, headers=one))[0]
            for _ in range(3)
        ]
        assert results == [400, 400, 429]
        assert len({item.recipients[0] for item in await site.delivered()}) == 4


async def test_forwarded_for_is_ignored_unless_trusted(
    install: Path, sink: Sink, classifier: Classifier
) -> None:
    async for site in start(install, sink, classifier, "subscribe_per_hour_per_client = 1\n"):
        csrf = await site.form("/subscribe")
        first = {"X-Forwarded-For": "192.0.2.1"}
        second = {"X-Forwarded-For": "192.0.2.2"}
        data = {"csrf": csrf, "email": "a@example.org"}
        assert (await site.post("/subscribe", data, headers=first))[0] == 303
        data["email"] = "b@example.org"
        assert (await site.post("/subscribe", data, headers=second))[0] == 429


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": "not an address"}, "Email address", "&#39;not an address&#39; is not an email"),
        ({"email": ""}, "Email address", "give the address"),
        ({"email": "a@example.org\r\nBcc: x@example.org"}, "Email address", "is not an email"),
        ({"regions": "atlantis"}, "Regions", "unknown region &#39;atlantis&#39;"),
        ({"topics": "astrology"}, "Topics", "unknown topic &#39;astrology&#39;"),
        ({"timezone": "Mars/Olympus"}, "Time zone", "unknown time zone"),
        ({"hour": "24"}, "Hour", "less than or equal to 23"),
        (
            {"cadence": "hourly"},
            "How often",
            "&#39;immediate&#39;, &#39;daily&#39;, &#39;weekly&#39; or &#39;feed&#39;",
        ),
        ({"weekday": "someday"}, "Day of the week", "Input should be"),
        ({"keywords": "a\u2028b"}, "Keywords", "must be non-empty text on one line"),
        ({"keywords": ",".join(f"k{n}" for n in range(21))}, "Keywords", "at most 20 keywords"),
    ],
)
async def test_bad_input_names_the_field_and_keeps_what_was_typed(
    site: Pages, fields: dict[str, str], field: str, message: str
) -> None:
    csrf = await site.form("/subscribe")
    data = {"csrf": csrf, "email": "ok@example.org", "keywords": "kept, words", **fields}
    status, _, page = await site.post("/subscribe", data)
    assert status == 400
    assert f"{field}: " in page and message in page
    assert 'aria-invalid="true"' in page
    if "keywords" not in fields:
        assert 'value="kept, words"' in page
    assert await site.delivered() == []


async def test_operator_entries_are_shown_read_only_and_can_leave(site: Pages) -> None:
    desk = site.record("desk@example.org")
    assert desk is not None
    manage = manage_token(site.pages.desk.secret, desk.id, desk.email)
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        page = await response.text()
    assert "kept by the operator" in page
    assert 'value="save"' not in page and "Region Americas and Caribbean" in page
    csrf = await site.form(f"/manage/{manage}")
    status, _, page = await site.post(
        f"/manage/{manage}", {"csrf": csrf, "action": "save", "regions": "europe"}
    )
    assert status == 403
    same = site.record("desk@example.org")
    assert same is not None and same.regions == ("americas",)
    status, _, page = await site.post(f"/manage/{manage}", {"csrf": csrf, "action": "unsubscribe"})
    assert status == 200
    # Still listed in the file: suppressed all the same, and mailed nothing.
    site.add_article("chile.txt", "Chile Launches AEO Programme", "Chile's customs launched it.")
    site.cycle(T0 + timedelta(minutes=5))
    await deliver_due(site.config, site.state, clock=site.clock)
    left = site.record("desk@example.org")
    assert left is not None and left.status == "unsubscribed"
    assert to(site.sink.received, "desk@example.org") == []


async def test_pages_are_not_served_when_disabled_until_a_reload_enables_them(
    install: Path, sink: Sink, classifier: Classifier
) -> None:
    async for site in start(install, sink, classifier, enabled=False):
        for path in ("/subscribe", "/subscribe/sent", "/confirm/1.2.x", "/manage/1.x"):
            async with site.session.get(site.base + path) as response:
                assert response.status == 404
        assert (await site.post("/subscribe", {"email": "a@example.org"}))[0] == 404
        # A reloaded configuration turns them on (and keeps the rate-limit buckets while
        # the limits stay the same).
        settings = site.pages.desk.settings
        limiter = site.pages.subscribe_by_client
        site.pages.reconfigure(settings, enabled=True)
        assert site.pages.subscribe_by_client is limiter
        async with site.session.get(site.base + "/subscribe") as response:
            assert response.status == 200
        site.pages.reconfigure(replace(settings, subscribe_per_hour_per_client=1), enabled=True)
        assert site.pages.subscribe_by_client is not limiter
        assert site.pages.subscribe_by_client.per_hour == 1


# --- mail, index page, command line -------------------------------------------------------------


def test_every_mail_links_to_its_manage_page_and_the_index_to_subscribing(
    install: Path, sink: Sink, classifier: Classifier
) -> None:
    config = configure(install, sink)
    state = State.open(config.state.url)
    try:
        run_cycle(config, classifier, state, now=T0)
        index = (config.feeds.output_dir / "index.html").read_text()
        assert '<a href="https://news.example.org/subscribe">Get the news by email</a>' in index
        write(config.store.path / "chile.txt", "Chile AEO\n\nChile AEO\n\nChile news.\n")
        run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
        asyncio.run(deliver_due(config, state, clock=lambda: T0))
        (message,) = [item.message for item in sink.received]
        desk = outbox_record(state, "desk@example.org")
        expected = manage_token(load_secret(state, None), desk.id, desk.email)
        assert links(message, "manage") == [expected]
        html_part = message.get_body(("html",))
        assert html_part is not None
        assert f"https://news.example.org/manage/{expected}" in html_part.get_content()

        # Without the pages, neither link.
        install.write_text(install.read_text().replace("[web]\n", "[web]\nsubscribe = false\n"))
        config = load_config(install)
        write(config.store.path / "peru.txt", "Peru AEO\n\nPeru AEO\n\nPeru news.\n")
        run_cycle(config, classifier, state, now=T0 + timedelta(minutes=2))
        asyncio.run(deliver_due(config, state, clock=lambda: T0))
        assert links(sink.received[-1].message, "manage") == []
        index = (config.feeds.output_dir / "index.html").read_text()
        assert "/subscribe" not in index
    finally:
        state.close()


def outbox_record(state: State, email: str) -> roster.SubscriberRecord:
    with state.engine.connect() as conn:
        record = roster.find_subscriber(conn, email)
    assert record is not None
    return record


@pytest.fixture
def root_logging() -> Iterator[None]:
    """main() sets up logging for the process; put the test run's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
async def test_subscribers_list_shows_web_and_pending_subscriptions(
    site: Pages, capsys: pytest.CaptureFixture[str]
) -> None:
    await site.subscribe("waiting@example.org", topics=["aeo"])
    await site.subscribe("joined@example.org", regions=["mena"])
    (token,) = links(to(await site.delivered(), "joined@example.org")[0], "confirm")
    csrf = await site.form(f"/confirm/{token}")
    await site.post(f"/confirm/{token}", {"csrf": csrf})
    # The CLI reads the clock itself: date the request as if just made.
    with site.state.transaction() as conn:
        conn.execute(update(subscription_requests_table).values(requested_at=datetime.now(UTC)))
    command = ["--config", str(site.config.source), "subscribers", "list"]
    assert await asyncio.to_thread(main, [*command, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = {(row["email"], row["status"], row["source"]) for row in rows}
    assert listed == {
        ("desk@example.org", "active", "file"),
        ("joined@example.org", "active", "web"),
        ("waiting@example.org", "pending", "web"),
    }
    assert await asyncio.to_thread(main, command) == 0
    text = capsys.readouterr().out
    assert re.search(r"waiting@example.org\s+pending\s+web\s+immediate\n\s+topics aeo", text)
    assert re.search(r"joined@example.org\s+active\s+web\s+immediate", text)


def test_web_settings_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "syndicator.toml"
    path.write_text("[web]\nsubscribe = false\nconfirm_ttl_hours = 12\n")
    config = load_config(path)
    assert (config.web.subscribe, config.web.confirm_ttl_hours) == (False, 12)
    assert not config.subscriptions_enabled
    path.write_text("[web]\nsubscribe_rate = 5\n")
    with pytest.raises(ConfigError, match=r"syndicator.toml:2: web.subscribe_rate: unknown key"):
        load_config(path)
    path.write_text("[web]\nconfirm_ttl_hours = 0\n")
    with pytest.raises(ConfigError, match=r"web.confirm_ttl_hours: Input should be greater"):
        load_config(path)


# --- pure parts ------------------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_one_per_interval() -> None:
    limiter = RateLimiter(6)  # one back every 10 minutes
    assert [limiter.take("a", T0) for _ in range(7)] == [0.0] * 6 + [600.0]
    assert limiter.take("b", T0) == 0.0  # keys are independent
    assert limiter.take("a", T0 + timedelta(minutes=5)) == 300.0
    assert limiter.take("a", T0 + timedelta(minutes=10)) == 0.0
    assert limiter.take("a", T0 + timedelta(minutes=10)) == 600.0
    assert limiter.take("a", T0 + timedelta(hours=5)) == 0.0  # refilled, never beyond 6
    assert [limiter.take("a", T0 + timedelta(hours=5)) for _ in range(6)][-1] == 600.0
    unlimited = RateLimiter(0)
    assert all(unlimited.take("a", T0) == 0.0 for _ in range(1000))


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(2, max_keys=100)
    for number in range(1000):
        limiter.take(f"client-{number}", T0 + timedelta(seconds=number))
    assert len(limiter) <= 100
    assert limiter.take("client-999", T0 + timedelta(seconds=1000)) == 0.0
    assert limiter.take("client-999", T0 + timedelta(seconds=1000)) > 0


def test_client_key_groups_an_ipv6_host_by_its_network() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2:aaaa::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("unix-socket") == "unix-socket"


def test_tokens_of_one_purpose_never_pass_for_another() -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    unsubscribe = make_token(secret, 7, "a@example.org")
    manage = manage_token(secret, 7, "a@example.org")
    assert unsubscribe != manage
    assert manage == manage_token(secret, 7, "A@Example.org ")  # the address's case is no matter
    confirm = confirm_token(secret, 7, 1_800_000_000, "ab" * 16, "a@example.org")
    assert parse_confirm_token(confirm) == (7, 1_800_000_000, confirm.rsplit(".", 1)[1])
    assert parse_confirm_token(manage) is None


def test_describe_schedule() -> None:
    assert describe_schedule("immediate", 8, "mon", "UTC") == "alerts as articles are published"
    assert describe_schedule("daily", 7, "mon", "Europe/Brussels") == (
        "a daily digest at 07:00 (Europe/Brussels)"
    )
    assert describe_schedule("weekly", 18, "fri", "UTC") == (
        "a weekly digest on Fridays at 18:00 (UTC)"
    )


def test_a_notice_that_cannot_be_composed_records_nothing(
    install: Path, sink: Sink, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    config = configure(install, sink)
    state = State.open(config.state.url)
    try:
        settings = SignupSettings.from_config(config, names_from(classifier))
        broken = replace(settings, mail=replace(settings.mail, base_url="ftp://example.org/"))
        desk = SignupDesk(state, load_secret(state, None), lambda: T0, broken)
        assert desk.request(Subscriber(email="a@example.org")) is False
        with state.engine.connect() as conn:
            assert conn.execute(select(subscription_requests_table)).all() == []
            assert conn.execute(select(messages_table)).all() == []
            assert conn.execute(select(subscribers_table.c.email)).scalars().all() == []
    finally:
        state.close()
    assert "cannot compose the subscription mail for a…@example.org" in caplog.text


async def test_rate_limits_are_shared_by_every_instance(
    install: Path, sink: Sink, classifier: Classifier
) -> None:
    """Two instances on one state database: an address's allowance is one, not one each."""
    web = "subscribe_per_hour_per_email = 3\nsubscribe_per_hour_per_client = 4\n"
    async for site in start(install, sink, classifier, web):
        state = State.open(site.config.state.url)
        desk = SignupDesk(
            state,
            site.pages.desk.secret,
            site.clock,
            SignupSettings.from_config(site.config, names_from(classifier)),
        )
        app = create_app(
            output_dir=site.config.feeds.output_dir,
            health=Health(interval=60),
            metrics=Metrics(),
            clock=site.clock,
            unsubscribe=UnsubscribeDesk(state, site.pages.desk.secret, site.clock),
            subscriptions=SubscriptionPages(desk),
            site_title=site.config.site.title,
        )
        runner = await serve(app, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                other = replace(site, base=f"http://127.0.0.1:{runner.addresses[0][1]}")
                other.session = session
                results = []
                for index, instance in enumerate((site, other, site, other)):
                    csrf = await instance.form("/subscribe")
                    data = {"csrf": csrf, "email": "a@example.org", "cadence": "daily"}
                    results.append((await instance.post("/subscribe", data))[0])
                    assert index < 3 or results[-1] == 429
                assert results == [303, 303, 303, 429]
                # The fifth request from this client, whichever instance it reaches.
                csrf = await other.form("/subscribe")
                data = {"csrf": csrf, "email": "b@example.org", "cadence": "daily"}
                assert (await other.post("/subscribe", data))[0] == 429
        finally:
            await runner.cleanup()
            state.close()
