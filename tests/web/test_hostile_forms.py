"""Hostile hands on the subscription pages, over real HTTP against the real app.

Each case reproduces input that once got through (a 500, a traceback, a bypassed limit, a
promise not kept), then what a newcomer sees on the pages: how filters combine, digest
fields, time zones, topic groups and the answer after confirming. The last test sends
long, control, non-ASCII, repeated and missing values in every field of every form and
finds no 500 and no logged traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select
from yarl import URL

from syndicator.classify.classifier import Classifier
from syndicator.cli import main
from syndicator.mail.signup import manage_token
from syndicator.mail.unsubscribe import make_token
from syndicator.state.db import subscription_requests_table
from syndicator.web.pages import PAGE_HEADERS
from tests.conftest import T0
from tests.smtp_sink import Sink
from tests.web.test_subscriptions import Pages, links, start, to
from tests.web.test_subscriptions import root_logging as root_logging  # noqa: PLC0414


@pytest.fixture
async def site(install: Path, sink: Sink, classifier: Classifier) -> AsyncIterator[Pages]:
    async for running in start(install, sink, classifier, "default_timezone = 'Europe/Brussels'"):
        yield running


@pytest.fixture
def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records that carry a traceback or come from aiohttp's error handler."""
    caplog.set_level(logging.INFO)
    return caplog.records


def no_tracebacks(records: list[logging.LogRecord]) -> None:
    bad = [
        record.getMessage()
        for record in records
        if record.exc_info
        or (record.name.startswith("aiohttp") and record.levelno >= logging.ERROR)
    ]
    assert bad == []


async def form_errors(site: Pages, data: dict[str, Any] | list[tuple[str, str]]) -> str:
    status, _, page = await site.post("/subscribe", data)
    assert status == 400, page
    return page


# --- 1. time zones -----------------------------------------------------------------------


async def test_a_huge_time_zone_is_a_field_error_not_a_500(
    site: Pages, tracebacks: list[logging.LogRecord]
) -> None:
    csrf = await site.form("/subscribe")
    page = await form_errors(
        site, {"csrf": csrf, "email": "a@example.org", "cadence": "daily", "timezone": "x" * 300}
    )
    assert "Time zone: unknown time zone" in page
    for zone in ("../../etc/passwd", "Europe/Brussels\x00", "/etc/localtime", "Europe"):
        data = {"csrf": csrf, "email": "a@example.org", "timezone": zone}
        assert "unknown time zone" in await form_errors(site, data)
    # The manage form too.
    desk = site.record("desk@example.org")
    assert desk is not None
    await site.subscribe("web@example.org")
    (token,) = links(to(await site.delivered(), "web@example.org")[0], "confirm")
    csrf = await site.form(f"/confirm/{token}")
    await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf})
    record = site.record("web@example.org")
    assert record is not None
    manage = manage_token(site.pages.desk.secret, record.id, record.email)
    status, _, page = await site.post(
        f"/manage/{manage}",
        {"csrf": csrf, "action": "save", "cadence": "daily", "timezone": "y" * 300},
    )
    assert status == 400 and "unknown time zone" in page
    no_tracebacks(tracebacks)


# --- 2, 3, 4. addresses ------------------------------------------------------------------


async def test_a_trailing_dot_is_the_same_mailbox(
    site: Pages, tracebacks: list[logging.LogRecord]
) -> None:
    status, headers, _ = await site.subscribe("victim@example.org.")
    assert status == 303 and headers["Location"] == "/subscribe/sent"
    received = await site.delivered()
    assert [item.recipients for item in received] == [["victim@example.org"]]
    no_tracebacks(tracebacks)


async def test_spellings_of_one_mailbox_share_the_per_address_limit(
    install: Path, sink: Sink, classifier: Classifier
) -> None:
    async for site in start(install, sink, classifier, "subscribe_per_hour_per_email = 3\n"):
        # Comments are refused: they gave one mailbox endless spellings.
        for spelling in ("victim(1)@example.org", "victim@(2)example.org", '"victim"@example.org'):
            page = await form_errors(
                site, {"csrf": await site.form("/subscribe"), "email": spelling}
            )
            assert "comments, quotes" in page
        answers = [
            (await site.subscribe(spelling))[0]
            for spelling in (
                "victim@example.org",
                "victim@EXAMPLE.org",
                "victim@example.org.",
                "Victim@Example.ORG",
                "victim@example.org",
            )
        ]
        assert answers == [303, 303, 303, 429, 429]
        received = await site.delivered()
        assert len(received) == 3
        assert {address for item in received for address in item.recipients} == {
            "victim@example.org"
        }


async def test_a_non_ascii_local_part_is_refused_at_the_form(site: Pages) -> None:
    csrf = await site.form("/subscribe")
    page = await form_errors(site, {"csrf": csrf, "email": "josé@example.org"})
    assert "not supported" in page and "ASCII" in page
    with site.state.engine.connect() as conn:
        assert conn.execute(select(subscription_requests_table)).all() == []
    assert await site.delivered() == []
    # A non-ASCII domain is fine: it is sent in its ASCII (IDNA) form.
    status, _, _ = await site.subscribe("jose@bücher.example")
    assert status == 303
    assert [item.recipients for item in await site.delivered()] == [["jose@xn--bcher-kva.example"]]


# --- 5. control characters ---------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["\x1b[2J", "bell\x07", "right\u202eleft", "tab\there"])
async def test_control_characters_are_refused_in_keywords(site: Pages, keyword: str) -> None:
    csrf = await site.form("/subscribe")
    page = await form_errors(site, {"csrf": csrf, "email": "a@example.org", "keywords": keyword})
    assert "Keywords:" in page and "control characters" in page


@pytest.mark.usefixtures("root_logging")
async def test_terminal_output_escapes_control_characters(
    site: Pages, capsys: pytest.CaptureFixture[str]
) -> None:
    # A pending request stored before control characters were refused.
    await site.subscribe("waiting@example.org", keywords="customs")
    (token,) = links(to(await site.delivered(), "waiting@example.org")[0], "confirm")
    with site.state.transaction() as conn:
        settings = conn.execute(select(subscription_requests_table.c.settings)).scalar_one()
        conn.execute(
            subscription_requests_table.update().values(
                settings=settings.replace("customs", "\\u001b]0;pwned\\u0007\\u001b[2J"),
                # The command line reads the clock itself: date the request as if just made.
                requested_at=datetime.now(UTC),
            )
        )
    command = ["--config", str(site.config.source), "subscribers", "list"]
    assert await asyncio.to_thread(main, command) == 0
    output = capsys.readouterr().out
    assert "waiting@example.org" in output
    assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in output
    # Such a request can no longer be confirmed.
    async with site.session.get(f"{site.base}/confirm/{token}") as response:
        assert response.status == 404
    # The command line refuses them when adding, and names the entry.
    add = [*command[:-1], "add", "x@example.org", "--keyword", "a\x1bb"]
    assert await asyncio.to_thread(main, add) == 1
    error = capsys.readouterr().err
    assert "subscriber 'x@example.org': keywords: keyword 'a\\x1bb'" in error
    assert "\x1b" not in error


# --- 6. an old confirmation link ---------------------------------------------------------


async def test_an_old_confirm_link_after_unsubscribing_says_so(site: Pages) -> None:
    await site.subscribe("leaver@example.org", cadence="daily", hour="7")
    (token,) = links(to(await site.delivered(), "leaver@example.org")[0], "confirm")
    csrf = await site.form(f"/confirm/{token}")
    status, headers, _ = await site.post(f"/confirm/{token}", {"csrf": csrf})
    # Post/Redirect/Get: reloading the answer does not post again.
    assert status == 303 and headers["Location"] == f"/confirm/{token}?done=subscribed"
    async with site.session.get(site.base + headers["Location"]) as response:
        page = await response.text()
    assert "You are subscribed" in page
    assert "a daily digest at 07:00 (Europe/Brussels)" in page  # the site's default zone
    assert "The first digest is due Tuesday 03 March 2026, 07:00 (Europe/Brussels)" in page
    assert "as each new article" not in page
    record = site.record("leaver@example.org")
    assert record is not None
    secret = site.pages.desk.secret
    async with site.session.post(
        f"{site.base}/unsubscribe/{make_token(secret, record.id, record.email)}",
        data={"List-Unsubscribe": "One-Click"},
    ) as response:
        assert response.status == 200
    for path in (f"/confirm/{token}", f"/confirm/{token}?done=subscribed"):
        async with site.session.get(site.base + path) as response:
            page = await response.text()
            assert response.status == 410
        assert "This subscription has ended" in page and "Subscribe again" in page
        assert "You are subscribed" not in page and "Already confirmed" not in page


# --- 7. every error at once --------------------------------------------------------------


async def test_every_field_error_is_shown_at_once(site: Pages) -> None:
    csrf = await site.form("/subscribe")
    data = [
        ("csrf", csrf),
        ("email", "not an address"),
        ("keywords", ",".join(f"k{n}" for n in range(30))),
        ("regions", "atlantis"),
        ("topics", "astrology"),
        ("cadence", "hourly"),
        ("hour", "25"),
        ("weekday", "someday"),
        ("timezone", "Mars/Olympus"),
    ]
    page = await form_errors(site, data)
    summary = page[page.index('class="errors"') : page.index("</ul>")]
    found = re.findall(r'<li><a href="#[a-z]+">([^:]+):', summary)
    assert found == [
        "Email address",
        "Regions",
        "Topics",
        "Keywords",
        "How often",
        "Hour",
        "Day of the week",
        "Time zone",
    ]


# --- 8. unsubscribe pages and /subscribe/ ------------------------------------------------


async def test_unsubscribe_pages_have_the_look_and_headers_of_the_others(site: Pages) -> None:
    desk = site.record("desk@example.org")
    assert desk is not None
    token = make_token(site.pages.desk.secret, desk.id, desk.email)
    async with site.session.get(f"{site.base}/subscribe") as response:
        form_page = await response.text()
    stylesheet = form_page[form_page.index("<style>") : form_page.index("</style>")]
    for method, path, data, status, text in (
        ("GET", f"/unsubscribe/{token}", None, 200, "Stop all mail from WCO News"),
        ("GET", "/unsubscribe/1.forged", None, 404, "This link is not valid"),
        ("POST", f"/unsubscribe/{token}", {}, 400, "List-Unsubscribe=One-Click"),
        ("POST", "/unsubscribe/1.forged", {"List-Unsubscribe": "One-Click"}, 404, "not valid"),
        ("POST", f"/unsubscribe/{token}", {"List-Unsubscribe": "One-Click"}, 200, "no more"),
    ):
        async with site.session.request(method, site.base + path, data=data) as response:
            page = await response.text()
            assert response.status == status, (method, path)
            for name, value in PAGE_HEADERS.items():
                assert response.headers[name] == value
        assert text in page
        assert stylesheet in page  # the same template as the other pages
        assert '<a href="/">WCO News</a>' in page
    async with site.session.get(f"{site.base}/unsubscribe/{token}") as response:
        page = await response.text()
    assert '<form method="post">' in page  # back to the same URL


async def test_subscribe_with_a_slash_redirects(site: Pages) -> None:
    async with site.session.get(site.base + "/subscribe/", allow_redirects=False) as response:
        assert response.status == 308 and response.headers["Location"] == "/subscribe"
    async with site.session.get(site.base + "/subscribe/") as response:
        assert response.status == 200 and "Subscribe by email" in await response.text()
    # A form posted to it keeps its method and body (308).
    csrf = await site.form("/subscribe")
    async with site.session.post(
        site.base + "/subscribe/", data={"csrf": csrf, "email": "slash@example.org"}
    ) as response:
        assert response.status == 200 and "Check your mail" in await response.text()


# --- the pages a newcomer reads ----------------------------------------------------------


async def test_the_form_explains_filters_groups_topics_and_offers_the_sites_zone_first(
    site: Pages,
) -> None:
    async with site.session.get(site.base + "/subscribe") as response:
        page = await response.text()
    assert "How your choices combine" in page
    assert "You get an article when it is about <strong>one of your regions</strong>" in page
    assert "For example, Europe with the topic Transit and the keyword" in page
    groups = re.findall(r"<details class=\"group\"[^>]*>\s*<summary>([^<]+?) <span", page)
    assert len(groups) == 5 and groups[0] == "Procedures and trade facilitation"
    assert len(re.findall(r'name="topics"', page)) == 25  # every topic, each in one group
    assert '<details class="group" open' not in page  # folded until a topic is chosen
    zones = page[page.index('<select id="timezone"') :]
    zones = zones[: zones.index("</select>")]
    options = re.findall(r"<option( selected)?>([^<]+)</option>", zones)
    assert options[0] == (" selected", "Europe/Brussels")
    assert [zone for _, zone in options[1:4]] == ["UTC", "Europe/London", "Europe/Moscow"]
    assert '<optgroup label="All time zones">' in zones
    assert [zone for selected, zone in options if selected] == ["Europe/Brussels"]
    # Digest fields are inside the block the stylesheet hides for "as published".
    assert "form:has(#cadence-immediate:checked) .digest { display: none; }" in page
    digest = page[page.index('<div id="schedule" class="digest">') :]
    assert digest.index('id="hour"') < digest.index('id="timezone"') < digest.index("</fieldset>")

    # A chosen topic opens its group; a form sent back keeps the zone chosen.
    csrf = await site.form("/subscribe")
    page = await form_errors(
        site,
        [("csrf", csrf), ("email", ""), ("topics", "transit"), ("timezone", "Asia/Tokyo")],
    )
    assert re.search(
        r'<details class="group" open>\s*<summary>Procedures and trade facilitation '
        r'<span class="count">1 of 9 chosen',
        page,
    )
    assert "<option selected>Asia/Tokyo</option>" in page


async def test_the_answer_after_confirming_fits_the_cadence(site: Pages) -> None:
    await site.subscribe("now@example.org", cadence="immediate")
    await site.subscribe("weekly@example.org", cadence="weekly", weekday="fri", hour="16")
    received = await site.delivered()
    pages = {}
    for email in ("now@example.org", "weekly@example.org"):
        (token,) = links(to(received, email)[0], "confirm")
        csrf = await site.form(f"/confirm/{token}")
        status, pages[email] = await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf})
        assert status == 200
    assert "a mail comes as each new article" in pages["now@example.org"]
    assert "first digest" not in pages["now@example.org"]
    weekly = pages["weekly@example.org"]
    assert "as a weekly digest on Fridays at 16:00 (Europe/Brussels)" in weekly
    assert "The first digest is due Friday 06 March 2026, 16:00 (Europe/Brussels)" in weekly


# --- the hostile pass --------------------------------------------------------------------

HOSTILE = (
    "",
    " ",
    "x" * 5000,
    "\x00",
    "\x1b[31mred\x07",
    "a\r\nBcc: x@example.org",
    "\u202eevil",
    "josé",
    "日本語@例え.テスト",
    "%00%0d%0a",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "-1",
    "99999999999999999999999",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
)
FIELDS = ("email", "regions", "topics", "keywords", "cadence", "hour", "weekday", "timezone")


def hostile_forms(csrf: str) -> list[list[tuple[str, str]]]:
    """Each field alone with each hostile value, missing, and repeated; CSRF kept valid."""
    good = {
        "email": "a@example.org",
        "regions": "europe",
        "topics": "aeo",
        "keywords": "green lane",
        "cadence": "daily",
        "hour": "8",
        "weekday": "mon",
        "timezone": "UTC",
    }
    forms: list[list[tuple[str, str]]] = []
    for field, value in itertools.product(FIELDS, HOSTILE):
        forms.append([("csrf", csrf), *((k, value if k == field else v) for k, v in good.items())])
    for field in FIELDS:
        forms.append([("csrf", csrf), *((k, v) for k, v in good.items() if k != field)])
        forms.append([("csrf", csrf), *good.items(), *[(field, good[field])] * 200])
    forms.append([("csrf", csrf), ("csrf", "x" * 100), ("action", "\x00"), ("action", "save")])
    return forms


def body_of(form: list[tuple[str, str]]) -> bytes:
    """The form urlencoded by hand, so that values no client library would send get sent."""
    return "&".join(
        f"{quote(key)}={quote(value, errors='surrogatepass')}" for key, value in form
    ).encode()


async def test_no_form_answers_hostile_input_with_a_500(
    install: Path, sink: Sink, classifier: Classifier, tracebacks: list[logging.LogRecord]
) -> None:
    limits = """
        subscribe_per_hour_per_client = 0
        subscribe_per_hour_per_email = 0
        changes_per_hour_per_client = 0
    """
    async for site in start(install, sink, classifier, limits):
        await site.subscribe("member@example.org")
        (token,) = links(to(await site.delivered(), "member@example.org")[0], "confirm")
        csrf = await site.form(f"/confirm/{token}")
        await site.post_and_follow(f"/confirm/{token}", {"csrf": csrf})
        record = site.record("member@example.org")
        assert record is not None
        secret = site.pages.desk.secret
        manage = manage_token(secret, record.id, record.email)
        unsubscribe = make_token(secret, record.id, record.email)
        statuses: dict[int, int] = {}
        paths = ("/subscribe", "/subscribe/", f"/manage/{manage}", f"/confirm/{token}")
        for path in paths:
            raw = f"csrf={csrf}&action=save&email=a@example.org&keywords=".encode()
            bodies = [
                *(
                    body_of([*fields, ("action", "save")] if "/manage/" in path else fields)
                    for fields in hostile_forms(csrf)
                ),
                raw + b"\xed\xa0\x80",  # not UTF-8, not percent-encoded
                raw + b"\xff\xfe",
                b"\x00" * 1000,
                b"=" * 1000,
                b"&" * 1000,
                b"%" * 1000,
            ]
            for body in bodies:
                async with site.session.post(
                    site.base + path,
                    data=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    allow_redirects=False,
                ) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    assert response.status < 500, (path, body[:200])
        # Hostile tokens and one-click bodies.
        for value in HOSTILE:
            quoted = quote(value, safe="", errors="surrogatepass") or "x"
            for path in (f"/confirm/{quoted}", f"/manage/{quoted}", f"/unsubscribe/{quoted}"):
                async with site.session.get(URL(site.base + path, encoded=True)) as response:
                    assert response.status == 404, path
            async with site.session.post(
                f"{site.base}/unsubscribe/{unsubscribe}",
                data=f"List-Unsubscribe={value[:100]}".encode("utf-8", "surrogatepass"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as response:
                assert response.status in {200, 400}
        # 413: a body of a thousand fields, refused by aiohttp before it reaches a form.
        assert set(statuses) <= {200, 303, 308, 400, 403, 404, 410, 413}, statuses
        # The member's mail is unchanged by all of it, but for the saves that were valid.
        site.clock.now = T0 + timedelta(minutes=1)
        assert site.record("member@example.org") is not None
    no_tracebacks(tracebacks)
