"""Email notifications end to end: matching, the outbox, digests, delivery and unsubscribe.

Mail goes through a real SMTP server (aiosmtpd on loopback); the clock is passed in.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from syndicator.classify.classifier import Classifier
from syndicator.config import Config, load_config
from syndicator.mail import deliver, roster
from syndicator.mail.match import Candidate, Filter, FilterIndex
from syndicator.mail.schedule import next_due
from syndicator.mail.subscribers import Subscriber
from syndicator.mail.suppression import drop_suppressed, suppress
from syndicator.mail.unsubscribe import load_secret, make_token
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state import outbox
from syndicator.state.db import State, messages_table
from tests.conftest import SAMPLE_STORE, T0, write
from tests.smtp_sink import Sink, SinkHandler


def configure(install: Path, sink: Sink, subscribers: str) -> Config:
    """The test installation, mailing through ``sink``, with these subscribers."""
    (install.parent / "subscribers.toml").write_text(textwrap.dedent(subscribers))
    text = install.read_text().replace(
        "[mail]\n",
        '[mail]\ntransport = "smtp"\nfrom = "WCO News <news@example.org>"\n',
    )
    text += f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5\n'
    install.write_text(text)
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return load_config(install)


def cycle(config: Config, classifier: Classifier, state: State, now: datetime) -> None:
    run_cycle(config, classifier, state, now=now)
    asyncio.run(deliver_due(config, state, clock=lambda: now))


def add_article(config: Config, name: str, title: str, body: str) -> None:
    write(config.store.path / name, f"{title}\n\n{title}\n\n{body}\n")


IMMEDIATE = """
    [[subscriber]]
    email = "desk@example.org"
    name = "Americas desk"
    regions = ["americas"]
    cadence = "immediate"

    [[subscriber]]
    email = "africa@example.org"
    regions = ["east-southern-africa"]
    cadence = "immediate"
"""


@pytest.fixture
def state_of(install: Path) -> Iterator[list[State]]:
    opened: list[State] = []
    yield opened
    for state in opened:
        state.close()


def open_state(config: Config, opened: list[State]) -> State:
    state = State.open(config.state.url)
    opened.append(state)
    return state


def test_immediate_mail_after_a_baseline_never_twice(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    config = configure(install, sink, IMMEDIATE)
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)  # first cycle on an existing store: the baseline
    assert sink.received == []
    add_article(config, "chile.txt", "Chile Launches AEO Programme", "Chile's customs launched it.")
    add_article(config, "kenya.txt", "Kenya Extends Cargo Tracking", "KRA extended tracking.")
    cycle(config, classifier, state, T0 + timedelta(minutes=5))
    by_recipient = {tuple(r.recipients): r for r in sink.received}
    assert set(by_recipient) == {("desk@example.org",), ("africa@example.org",)}
    message = by_recipient[("desk@example.org",)].message
    assert message["Subject"] == "Chile Launches AEO Programme"
    assert message["To"] == "Americas desk <desk@example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://news.example.org/unsubscribe/" in message["List-Unsubscribe"]
    assert message["List-Id"].endswith("<news.news.example.org>")
    assert message.get_content_type() == "multipart/alternative"
    # An edit is not mailed again, and nothing is mailed twice.
    add_article(config, "chile.txt", "Chile Launches AEO Programme", "Now with more detail.")
    cycle(config, classifier, state, T0 + timedelta(minutes=10))
    cycle(config, classifier, state, T0 + timedelta(minutes=15))
    assert len(sink.received) == 2


DAILY = """
    [[subscriber]]
    email = "daily@example.org"
    cadence = "daily"
    hour = 8
    timezone = "Europe/Brussels"

    [[subscriber]]
    email = "weekly@example.org"
    cadence = "weekly"
    weekday = "wed"
    hour = 7
    timezone = "Asia/Singapore"
"""


def test_daily_and_weekly_digests_with_catch_up(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    config = configure(install, sink, DAILY)
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)  # Monday 09:00 UTC = 10:00 in Brussels
    add_article(config, "a.txt", "Ghana Opens Single Window", "Ghana news.")
    cycle(config, classifier, state, T0 + timedelta(hours=1))
    assert sink.received == []  # a digest waits for its hour
    # Tuesday 07:00 UTC = 08:00 in Brussels: the daily digest is due.
    cycle(config, classifier, state, datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    assert [r.recipients for r in sink.received] == [["daily@example.org"]]
    assert "Ghana Opens Single Window" in sink.received[0].message["Subject"]
    # Nothing new: no mail at the next due time.
    cycle(config, classifier, state, datetime(2026, 3, 4, 7, 0, tzinfo=UTC))
    daily = [r for r in sink.received if r.recipients == ["daily@example.org"]]
    assert len(daily) == 1
    # The weekly one (Wednesday 07:00 in Singapore = Tuesday 23:00 UTC) went out once.
    weekly = [r for r in sink.received if r.recipients == ["weekly@example.org"]]
    assert len(weekly) == 1
    # Down for three days: one catch-up digest, not three.
    add_article(config, "b.txt", "Togo Modernises Customs Laboratory", "Togo news.")
    add_article(config, "c.txt", "Peru Expands Green Lane", "Peru news.")
    cycle(config, classifier, state, datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    cycle(config, classifier, state, datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    daily = [r for r in sink.received if r.recipients == ["daily@example.org"]]
    assert len(daily) == 2
    assert daily[1].message["Subject"].startswith("2 ")


def test_new_subscriber_gets_only_later_articles_and_first_digest_after_joining(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    config = configure(install, sink, IMMEDIATE)
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)
    add_article(config, "a.txt", "Ghana Opens Single Window", "Ghana news.")
    cycle(config, classifier, state, T0 + timedelta(minutes=1))
    (install.parent / "subscribers.toml").write_text(
        textwrap.dedent(
            IMMEDIATE + '\n[[subscriber]]\nemail = "new@example.org"\ncadence = "daily"\n'
        )
    )
    cycle(config, classifier, state, T0 + timedelta(minutes=2))
    with state.engine.connect() as conn:
        record = roster.find_subscriber(conn, "new@example.org")
    assert record is not None
    assert record.next_digest_at == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    cycle(config, classifier, state, datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
    assert [r for r in sink.received if r.recipients == ["new@example.org"]] == []
    add_article(config, "b.txt", "Togo Modernises Customs Laboratory", "Togo news.")
    cycle(config, classifier, state, datetime(2026, 3, 3, 9, 0, tzinfo=UTC))
    cycle(config, classifier, state, datetime(2026, 3, 4, 8, 0, tzinfo=UTC))
    mails = [r for r in sink.received if r.recipients == ["new@example.org"]]
    assert len(mails) == 1
    assert "Togo" in mails[0].message["Subject"]


@pytest.mark.parametrize(
    ("reply", "status", "permanent"),
    [
        ("451 4.3.0 try later", "retry", 0),
        ("452 4.2.2 mailbox full", "retry", 0),
        ("550 5.1.1 no such user", "failed", 1),
    ],
)
def test_refused_recipient_is_never_marked_sent(  # noqa: PLR0917 - pytest fixtures
    install: Path,
    classifier: Classifier,
    state_of: list[State],
    reply: str,
    status: str,
    permanent: int,
) -> None:
    handler = SinkHandler(refuse={"desk@example.org": reply})
    with Sink(handler) as sink:
        config = configure(install, sink, IMMEDIATE)
        state = open_state(config, state_of)
        cycle(config, classifier, state, T0)
        add_article(config, "a.txt", "Chile Launches AEO", "Chile news.")
        add_article(config, "b.txt", "Kenya Extends Cargo Tracking", "Kenya news.")
        cycle(config, classifier, state, T0 + timedelta(minutes=1))
        # The rest of the batch still went out.
        assert [r.recipients for r in sink.received] == [["africa@example.org"]]
        with state.engine.connect() as conn:
            rows = {row.recipient: row for row in conn.execute(select(messages_table))}
            desk = roster.find_subscriber(conn, "desk@example.org")
        assert rows["desk@example.org"].status == status
        assert rows["desk@example.org"].last_error.startswith(reply[:3])
        assert rows["africa@example.org"].status == "sent"
        assert desk is not None and desk.permanent_failures == permanent
        if status == "retry":
            # Backoff is honoured: a cycle right away does not try again.
            retry_at = rows["desk@example.org"].next_attempt_at
            assert retry_at >= T0 + timedelta(minutes=1, seconds=40)
            cycle(config, classifier, state, T0 + timedelta(minutes=1, seconds=5))
            with state.engine.connect() as conn:
                again = conn.execute(
                    select(messages_table.c.attempts).where(
                        messages_table.c.recipient == "desk@example.org"
                    )
                ).scalar()
            assert again == 1
            # Once the server takes it, it goes out.
            handler.refuse.clear()
            cycle(config, classifier, state, retry_at + timedelta(seconds=1))
            assert ["desk@example.org"] in [r.recipients for r in sink.received]


def test_permanent_failures_suspend_the_subscriber(
    install: Path, classifier: Classifier, state_of: list[State]
) -> None:
    handler = SinkHandler(refuse={"desk@example.org": "550 5.1.1 no such user"})
    with Sink(handler) as sink:
        config = configure(install, sink, IMMEDIATE)
        state = open_state(config, state_of)
        cycle(config, classifier, state, T0)
        for number in range(deliver.SUSPEND_AFTER):
            add_article(config, f"a{number}.txt", f"Chile Story {number}", "Chile news.")
            cycle(config, classifier, state, T0 + timedelta(minutes=number + 1))
        with state.engine.connect() as conn:
            record = roster.find_subscriber(conn, "desk@example.org")
        assert record is not None and record.status == "suspended"
        add_article(config, "later.txt", "Chile Story Later", "Chile news.")
        cycle(config, classifier, state, T0 + timedelta(hours=1))
        with state.engine.connect() as conn:
            count = len(conn.execute(select(messages_table.c.id)).all())
        assert count == deliver.SUSPEND_AFTER + 0  # no message queued for a suspended subscriber


def test_server_down_is_retried_and_nothing_is_lost(
    install: Path, classifier: Classifier, state_of: list[State]
) -> None:
    sink = Sink()
    config = configure(install, sink, IMMEDIATE)  # configured, but not started
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)
    add_article(config, "a.txt", "Chile Launches AEO", "Chile news.")
    cycle(config, classifier, state, T0 + timedelta(minutes=1))
    with state.engine.connect() as conn:
        assert outbox.count_by_status(conn) == {"retry": 1}
    with sink:
        cycle(config, classifier, state, T0 + timedelta(hours=1))
        assert [r.recipients for r in sink.received] == [["desk@example.org"]]


def test_unsubscribe_over_http_and_suppression(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    from syndicator.mail.unsubscribe import UnsubscribeDesk
    from syndicator.metrics import Metrics
    from syndicator.web.app import Health, create_app, serve

    config = configure(install, sink, IMMEDIATE)
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)
    with state.engine.connect() as conn:
        desk = roster.find_subscriber(conn, "desk@example.org")
    assert desk is not None
    secret = load_secret(state, None)
    token = make_token(secret, desk.id, desk.email)

    async def exercise() -> list[tuple[int, str]]:
        app = create_app(
            output_dir=config.feeds.output_dir,
            health=Health(interval=60),
            metrics=Metrics(),
            clock=lambda: T0,
            unsubscribe=UnsubscribeDesk(state, secret, lambda: T0),
            site_title="WCO News",
        )
        runner = await serve(app, "127.0.0.1", 0)
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}/unsubscribe/"
        results = []
        try:
            for method, path, body in (
                ("GET", token, None),
                (
                    "POST",
                    token[:-1] + ("A" if token[-1] != "A" else "B"),
                    "List-Unsubscribe=One-Click",
                ),
                ("POST", f"{desk.id + 1}.{token.split('.')[1]}", "List-Unsubscribe=One-Click"),
                ("POST", token, "something=else"),
                ("POST", token, "List-Unsubscribe=One-Click"),
                ("POST", token, "List-Unsubscribe=One-Click"),
            ):
                results.append(await asyncio.to_thread(_request, method, base + path, body))
        finally:
            await runner.cleanup()
        return results

    (get, forged, other, wrong_body, first, replay) = asyncio.run(exercise())
    assert get[0] == 200 and '<form method="post">' in get[1]
    assert forged[0] == 404 and other[0] == 404 and wrong_body[0] == 400
    assert first[0] == 200 and "unsubscribed" in first[1]
    assert replay[0] == 200  # idempotent
    with state.engine.connect() as conn:
        record = roster.find_subscriber(conn, "desk@example.org")
    assert record is not None and record.status == "unsubscribed"
    # Still in the subscribers file: suppressed all the same.
    add_article(config, "a.txt", "Chile Launches AEO", "Chile news.")
    cycle(config, classifier, state, T0 + timedelta(minutes=5))
    assert ["desk@example.org"] not in [r.recipients for r in sink.received]
    with state.transaction() as conn:
        roster.resubscribe(conn, "desk@example.org", now=T0 + timedelta(minutes=6))
    add_article(config, "b.txt", "Peru Expands Green Lane", "Peru news.")
    cycle(config, classifier, state, T0 + timedelta(minutes=7))
    mails = [r for r in sink.received if r.recipients == ["desk@example.org"]]
    assert [m.message["Subject"] for m in mails] == ["Peru Expands Green Lane"]


def _request(method: str, url: str, body: str | None) -> tuple[int, str]:
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_hostile_titles_inject_no_header_or_recipient(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    config = configure(install, sink, IMMEDIATE)
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)
    titles = [
        "Chile Customs\r\nBcc: evil@example.org",
        "Chile =?UTF-8?Q?=0A?=Bcc: x@example.org",
        "Chile \u2028Cc: y@example.org",
        "Chile " + "A" * 10_000,
    ]
    for number, title in enumerate(titles):
        write(
            config.store.path / f"h{number}.md",
            f"+++\ntitle = {json.dumps(title)}\nregions = ['americas']\n+++\n"
            "<script>x</script> body\n",
        )
    cycle(config, classifier, state, T0 + timedelta(minutes=1))
    (received,) = sink.received
    assert received.recipients == ["desk@example.org"]
    message = received.message
    assert message["Bcc"] is None and message["Cc"] is None
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "<script" not in html.get_content()


def test_kill_during_delivery_loses_nothing(
    install: Path, classifier: Classifier, state_of: list[State]
) -> None:
    """A real subprocess killed with SIGKILL mid-batch, then restarted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    people = "".join(
        f'\n[[subscriber]]\nemail = "p{n:03}@example.org"\ncadence = "immediate"\n'
        for n in range(60)
    )
    handler = SinkHandler(delay=0.02)
    with Sink(handler) as sink:
        config = configure(install, sink, people)
        command = [sys.executable, "-m", "syndicator", "--config", str(install), "run", "--once"]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        add_article(config, "a.txt", "Chile Launches AEO", "Chile news.")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(sink.received) < 10:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        killed_at = len(sink.received)
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        received = sink.received
    recipients = [r.recipients[0] for r in received]
    assert set(recipients) == {f"p{n:03}@example.org" for n in range(60)}
    duplicates = len(recipients) - len(set(recipients))
    assert duplicates <= 2 * deliver.BATCH_SIZE  # at most what was in flight at the kill
    assert killed_at < 60
    by_address: dict[str, set[str]] = {}
    for item in received:
        by_address.setdefault(item.recipients[0], set()).add(item.message["Message-ID"])
    assert all(len(ids) == 1 for ids in by_address.values())  # resent with the same Message-ID
    state = open_state(config, state_of)
    assert state.integrity_ok()


def test_preview_prints_the_next_mail_and_changes_nothing(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    import subprocess
    import sys

    config = configure(install, sink, DAILY)
    state = open_state(config, state_of)
    cycle(config, classifier, state, T0)
    add_article(config, "a.txt", "Ghana Opens Single Window", "Ghana news.")
    run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
    with state.engine.connect() as conn:
        before = conn.execute(select(messages_table)).all()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "syndicator",
            "--config",
            str(install),
            "preview",
            "daily@example.org",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Subject: Ghana Opens Single Window" in result.stdout
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in result.stdout
    with state.engine.connect() as conn:
        after = conn.execute(select(messages_table)).all()
    assert before == after == []
    missing = subprocess.run(
        [sys.executable, "-m", "syndicator", "--config", str(install), "preview", "x@example.org"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1


def test_subscribers_commands(install: Path, sink: Sink, classifier: Classifier) -> None:
    import subprocess
    import sys

    configure(install, sink, IMMEDIATE)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syndicator", "--config", str(install), "subscribers", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = run(
        "add", "cli@example.org", "--region", "europe", "--topic", "aeo", "--cadence", "weekly"
    )
    assert added.returncode == 0, added.stderr
    csv = install.parent / "more.csv"
    csv.write_text("email,regions,cadence\nc1@example.org,europe;mena,daily\nbad-address,,daily\n")
    imported = run("import", str(csv))
    assert imported.returncode == 1
    assert "more.csv:3: email" in imported.stderr
    listed = json.loads(run("list", "--json").stdout)
    emails = {item["email"]: item for item in listed}
    assert set(emails) == {
        "desk@example.org",
        "africa@example.org",
        "cli@example.org",
        "c1@example.org",
    }
    assert emails["c1@example.org"]["regions"] == ["europe", "mena"]
    assert run("remove", "desk@example.org").returncode == 1  # managed in the file
    assert run("remove", "cli@example.org").returncode == 0
    assert run("add", "x@example.org", "--topic", "no-such").returncode == 1
    assert run("resubscribe", "c1@example.org").returncode == 1  # not unsubscribed


# --- pure parts --------------------------------------------------------------------------------


def test_next_due_across_daylight_saving() -> None:
    # Brussels moves to summer time on 29 March 2026: 08:00 local is 07:00 UTC before, 06:00 after.
    before = next_due(
        datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
        cadence="daily",
        hour=8,
        weekday="mon",
        timezone="Europe/Brussels",
    )
    assert before == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    weekly = next_due(T0, cadence="weekly", hour=9, weekday="mon", timezone="UTC")
    assert weekly == T0 + timedelta(days=7)  # due exactly now counts as past
    assert next_due(T0, cadence="immediate", hour=8, weekday="mon", timezone="UTC") is None


REGIONS = ["americas", "europe", "mena", "global"]
TOPICS = ["aeo", "transit", "revenue"]


def naive_match(item: Filter, article: Candidate) -> bool:
    region_ok = not item.regions or bool(item.regions & set(article.regions))
    text = f" {article.title} {article.body} ".lower()
    keyword_ok = any(re.search(rf"\b{re.escape(k.lower())}\b", text) for k in item.keywords)
    topic_ok = (
        (not item.topics and not item.keywords)
        or bool(item.topics & set(article.topics))
        or keyword_ok
    )
    excluded = bool(item.exclude_regions & set(article.regions)) or bool(
        item.exclude_topics & set(article.topics)
    )
    return region_ok and topic_ok and not excluded


filters = st.builds(
    Filter,
    subscriber_id=st.integers(min_value=1, max_value=10_000),
    regions=st.frozensets(st.sampled_from(REGIONS), max_size=2),
    topics=st.frozensets(st.sampled_from(TOPICS), max_size=2),
    keywords=st.lists(st.sampled_from(["scanner", "green lane", "tariff"]), max_size=2).map(tuple),
    exclude_regions=st.frozensets(st.sampled_from(REGIONS), max_size=1),
    exclude_topics=st.frozensets(st.sampled_from(TOPICS), max_size=1),
)
candidates = st.builds(
    Candidate,
    id=st.just("a"),
    title=st.sampled_from(["New scanner installed", "Green lane opens", "Tariff news", "News"]),
    body=st.sampled_from(["", "The tariff changes.", "Scanners and green lanes."]),
    regions=st.lists(st.sampled_from(REGIONS), min_size=1, max_size=2, unique=True).map(tuple),
    topics=st.lists(st.sampled_from(TOPICS), max_size=2, unique=True).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(filters, max_size=12, unique_by=lambda f: f.subscriber_id), candidates)
def test_index_matches_exactly_what_a_scan_would(
    subscribers: list[Filter], article: Candidate
) -> None:
    expected = {f.subscriber_id for f in subscribers if naive_match(f, article)}
    assert set(FilterIndex(subscribers).match(article).tolist()) == expected


def test_backoff_grows_and_is_bounded() -> None:
    rng = random.Random(1)
    delays = [deliver.backoff(attempt, rng) for attempt in range(1, 12)]
    assert delays[0] <= timedelta(minutes=1.2)
    assert delays[3] >= timedelta(minutes=6)
    assert max(delays) <= timedelta(hours=7.2)


def test_sender_address_from_header() -> None:
    assert parseaddr("WCO News <news@example.org>")[1] == deliver.envelope_sender(
        "WCO News <news@example.org>"
    )
    assert urllib.parse.quote("x") == "x"


def test_example_configuration_mails_a_new_article_into_the_maildir(tmp_path: Path) -> None:
    """The README's walk-through: the example configuration, a new article, a Maildir."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "articles", tmp_path / "articles")
    command = [
        sys.executable,
        "-m",
        "syndicator",
        "--config",
        str(tmp_path / "config" / "syndicator.toml"),
        "run",
        "--once",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    assert not (tmp_path / "mail" / "new").exists() or not any(
        (tmp_path / "mail" / "new").iterdir()
    )
    write(
        tmp_path / "articles" / "chile.txt",
        "Chile Launches AEO Programme\n\nChile Launches AEO Programme\n\nChile news.\n",
    )
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    assert "1 sent" in result.stderr
    (delivered,) = list((tmp_path / "mail" / "new").iterdir())
    text = delivered.read_text()
    assert "Subject: Chile Launches AEO Programme" in text
    assert "To: Americas desk <americas-desk@example.org>" in text


def test_the_kept_matching_index_follows_changes_made_by_other_processes(
    install: Path, sink: Sink, classifier: Classifier, state_of: list[State]
) -> None:
    config = configure(install, sink, IMMEDIATE)
    daemon = open_state(config, state_of)  # a long-lived process keeps its index
    cycle(config, classifier, daemon, T0)
    add_article(config, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
    cycle(config, classifier, daemon, T0 + timedelta(minutes=1))
    assert [r.recipients for r in sink.received] == [["desk@example.org"]]
    # Another process (the command line) adds one subscriber and unsubscribes another.
    other = open_state(config, state_of)
    with other.transaction() as conn:
        roster.add_subscriber(
            conn,
            Subscriber(email="peru@example.org", regions=("americas",), cadence="immediate"),
            now=T0 + timedelta(minutes=2),
        )
        desk = roster.find_subscriber(conn, "desk@example.org")
        assert desk is not None
        roster.unsubscribe(conn, desk.id, now=T0 + timedelta(minutes=2))
    add_article(config, "peru.txt", "Peru Launches AEO Programme", "SUNAT did.")
    cycle(config, classifier, daemon, T0 + timedelta(minutes=3))
    assert [r.recipients for r in sink.received[1:]] == [["peru@example.org"]]


def test_queued_mail_to_a_suppressed_address_or_domain_is_given_up(state_url: str) -> None:
    state = State.open(state_url)
    try:
        with state.transaction() as conn:
            ids = {}
            for email in ("Desk@Example.org", "peer@elsewhere.example", "zed@example.net"):
                roster.add_subscriber(conn, Subscriber(email=email), now=T0)
                record = roster.find_subscriber(conn, email)
                assert record is not None
                ids[email] = record.id
                outbox.queue_message(
                    conn,
                    outbox.NewMessage(
                        subscriber_id=record.id,
                        kind="immediate",
                        message_id=f"<{record.id}@test>",
                        recipient=email,
                        body=b"Subject: x\r\n\r\nx\r\n",
                    ),
                    now=T0,
                )
            # An empty list gives nothing up.
            assert drop_suppressed(state, conn) == set()
            suppress(conn, "desk@example.org", reason="asked", now=T0)
            suppress(conn, "*@elsewhere.example", reason="domain", now=T0)
            dropped = drop_suppressed(state, conn)
        with state.engine.connect() as conn:
            status = {
                row.recipient: row.status
                for row in conn.execute(select(messages_table.c.recipient, messages_table.c.status))
            }
        assert len(dropped) == 2
        assert status == {
            "Desk@Example.org": "failed",
            "peer@elsewhere.example": "failed",
            "zed@example.net": "pending",
        }
    finally:
        state.close()
