"""Suppression at sign-up, and data rights (export, forget) on the manage page and the CLI.

The real app on a loopback port, a real state database and mail through a real SMTP
server, as in test_subscriptions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from syndicator.classify.classifier import Classifier
from syndicator.cli import main
from syndicator.mail.suppression import is_suppressed, suppress_address
from syndicator.pipeline import deliver_due
from syndicator.state import bounces as store
from syndicator.state.db import metadata
from syndicator.state.subscribers import find_subscriber
from tests.conftest import T0
from tests.smtp_sink import Sink
from tests.web.test_subscriptions import Pages, links, start, to


@pytest.fixture
async def site(install: Path, sink: Sink, classifier: Classifier) -> AsyncIterator[Pages]:
    async for running in start(install, sink, classifier):
        yield running


async def subscribed(site: Pages, email: str) -> str:
    """Subscribe ``email`` through the pages, receive one article; its manage token."""
    await site.subscribe(email, regions=["americas"])
    (token,) = links(to(await site.delivered(), email)[0], "confirm")
    csrf = await site.form(f"/confirm/{token}")
    assert (await site.post(f"/confirm/{token}", {"csrf": csrf}))[0] == 303  # then the page
    site.add_article("chile.txt", "Chile Launches AEO Programme", "Chile's customs launched it.")
    site.cycle(T0 + timedelta(minutes=5))
    await deliver_due(site.config, site.state, clock=site.clock)
    news = to(site.sink.received, email)[1:]
    assert [message["Subject"] for message in news] == ["Chile Launches AEO Programme"]
    (manage,) = links(news[0], "manage")
    return manage


async def test_a_suppressed_address_gets_the_same_answer_and_no_mail(
    site: Pages, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(site.config.source), "suppress", "add", "*@Blocked.example"]) == 0
    assert main(["--config", str(site.config.source), "suppress", "add", "one@example.org"]) == 0
    capsys.readouterr()
    answers = []
    for email in ("new@example.org", "anyone@blocked.example", "One@Example.org"):
        status, headers, body = await site.subscribe(email, regions=["mena"])
        answers.append((status, headers["Location"], body, headers["Content-Type"]))
    assert all(answer == answers[0] for answer in answers), answers
    received = await site.delivered()
    assert [item.recipients for item in received] == [["new@example.org"]]


async def test_manage_page_exports_everything_and_forgets_after_confirmation(
    site: Pages, capsys: pytest.CaptureFixture[str]
) -> None:
    manage = await subscribed(site, "ana@example.org")
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        page = await response.text()
    assert f"/manage/{manage}/export" in page and "Delete everything about me" in page

    async with site.session.get(f"{site.base}/manage/{manage}/export") as response:
        assert response.status == 200
        assert "attachment" in response.headers["Content-Disposition"]
        held = json.loads(await response.text())
    assert held["address"] == "ana@example.org"
    assert held["subscriber"]["filters"]["regions"] == ["americas"]
    assert held["subscriber"]["source"] == "web"
    assert [m["kind"] for m in held["messages"]] == ["confirm", "immediate"]
    assert all(m["status"] == "sent" for m in held["messages"])
    assert [m["article_id"] for m in held["matches"]] and held["bounces"] == []
    assert held["requests"][0]["settings"]["regions"] == ["americas"]

    # The first button asks; nothing is deleted yet.
    csrf = await site.form(f"/manage/{manage}")
    status, _, page = await site.post(f"/manage/{manage}", {"csrf": csrf, "action": "forget"})
    assert status == 200 and "Yes, delete everything" in page
    assert site.record("ana@example.org") is not None
    status, _, page = await site.post(
        f"/manage/{manage}", {"csrf": csrf, "action": "forget-confirmed"}
    )
    assert status == 200 and "Everything about you is deleted" in page
    assert site.record("ana@example.org") is None
    async with site.session.get(f"{site.base}/manage/{manage}") as response:
        assert response.status == 404
    with site.state.engine.connect() as conn:
        held_after = store.everything_about(conn, "ana@example.org")
        entries = [item.entry for item in store.suppressions(conn)]
        assert is_suppressed(site.state, conn, "Ana@Example.org")
    assert held_after["messages"] == [] and held_after["requests"] == []
    assert held_after["subscriber"] is None
    # No row of any table mentions the address any more.
    with site.state.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = repr(conn.execute(select(table)).all()).lower()
            assert "ana@example.org" not in rows, table.name
    # Only a salted hash is kept, never the address.
    assert len(entries) == 1 and entries[0].startswith("sha256:")
    assert "ana" not in entries[0]
    # Asking to subscribe again is answered as always, and sends nothing.
    before = len(site.sink.received)
    status, headers, _ = await site.subscribe("ana@example.org", regions=["mena"])
    assert (status, headers["Location"]) == (303, "/subscribe/sent")
    assert len(await site.delivered()) == before
    # The operator can lift it by the address, although only its hash is stored.
    assert main(["--config", str(site.config.source), "suppress", "remove", "ana@example.org"]) == 0
    capsys.readouterr()


async def test_cli_export_and_forget_keep_a_complaint_suppressed(
    site: Pages, capsys: pytest.CaptureFixture[str]
) -> None:
    await subscribed(site, "bea@example.org")
    config = str(site.config.source)
    capsys.readouterr()
    assert main(["--config", config, "subscribers", "export", "bea@example.org"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["subscriber"]["email"] == "bea@example.org" and not held["suppressed"]
    # A spam complaint suppressed the address; then they ask to be forgotten.
    with site.state.transaction() as conn:
        suppress_address(conn, "bea@example.org", reason="complaint", now=T0)
    assert main(["--config", config, "subscribers", "forget", "bea@example.org"]) == 0
    assert "stays suppressed" in capsys.readouterr().out
    assert main(["--config", config, "suppress", "export"]) == 0
    exported = capsys.readouterr().out
    assert "bea@example.org" not in exported and "sha256:" in exported and "complaint" in exported
    assert main(["--config", config, "subscribers", "export", "bea@example.org"]) == 0
    assert json.loads(capsys.readouterr().out)["suppressed"] is True
    # Re-added by an operator's import, the address still gets nothing: dropped at queueing.
    assert main(["--config", config, "subscribers", "add", "bea@example.org", "--region",
                 "americas", "--cadence", "immediate"]) == 0  # fmt: skip
    site.add_article("peru.txt", "Peru Expands Green Lane", "Peru's customs expanded it.")
    site.cycle(T0 + timedelta(minutes=10))
    with site.state.engine.connect() as conn:
        messages = store.everything_about(conn, "bea@example.org")["messages"]
        record = find_subscriber(conn, "bea@example.org")
    assert record is not None and record.status == "active"
    assert [(m["status"], m["last_error"]) for m in messages] == [
        ("failed", "suppressed: on the suppression list")
    ]
    # Forgetting an address of the subscribers file says it comes back unless removed there.
    assert main(["--config", config, "subscribers", "forget", "desk@example.org"]) == 0
    assert "remove it from the subscribers file too" in capsys.readouterr().out
    # Forgetting an unknown address says so.
    assert main(["--config", config, "subscribers", "forget", "nobody@example.org"]) == 1
