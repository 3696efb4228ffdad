"""``syndicator state copy --to URL``: a SQLite installation moved to PostgreSQL mails
nothing again, keeps its messages and secret, and an occupied target is refused."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from syndicator.config import load_config
from syndicator.mail.unsubscribe import load_secret
from syndicator.state.db import State
from tests import pg
from tests.faults.helpers import add_article, immediate, run, use_smtp, with_sample_store
from tests.smtp_sink import Sink

DESKS = ["americas@example.org", "africa@example.org", "all@example.org"]


@pytest.fixture
def empty_postgresql(postgres: pg.Cluster | None) -> str:
    if postgres is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (initdb, pg_ctl), and CI needs it")
        pytest.skip("PostgreSQL is not installed here (initdb, pg_ctl)")
    return postgres.database()


@pytest.mark.sqlite_only  # from SQLite, to the PostgreSQL database of the fixture
def test_copy_to_postgresql_then_run_there_mails_nothing_again(
    install: Path, empty_postgresql: str
) -> None:
    with Sink() as sink:
        config = use_smtp(install, sink.port, immediate(DESKS))
        store = with_sample_store(install)
        assert run(config, "run", "--once").returncode == 0  # the baseline
        add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs did.")
        assert run(config, "run", "--once").returncode == 0
        assert len(sink.received) == 3
        # Queued, not sent yet: goes out from PostgreSQL, once.
        add_article(store, "peru.txt", "Peru Opens Green Lane", "Peru's customs did.")
        assert run(config, "feeds").returncode == 0
        before = State.open(load_config(config).state.url)
        secret = load_secret(before, None)
        before.close()

        copied = run(config, "state", "copy", "--to", empty_postgresql)
        assert copied.returncode == 0, copied.stderr
        assert "messages 6" in copied.stdout
        again = run(config, "state", "copy", "--to", empty_postgresql)
        assert again.returncode == 1
        assert (
            again.stderr.strip()
            .splitlines()[-1]
            .startswith("syndicator: error: the target database is not empty (rows in ")
        ), again.stderr
        assert "Traceback" not in again.stderr

        text = config.read_text().replace(
            'url = "sqlite:///../state/syndicator.db"', f'url = "{empty_postgresql}"'
        )
        config.write_text(text)
        assert load_config(config).state.url == empty_postgresql
        moved = run(config, "run", "--once")
        assert moved.returncode == 0, moved.stderr
        assert run(config, "run", "--once").returncode == 0
        received = sink.received
    subjects = Counter(str(item.message["Subject"]) for item in received)
    assert subjects == {"Chile Launches AEO Programme": 3, "Peru Opens Green Lane": 3}
    assert len({str(item.message["Message-ID"]) for item in received}) == 6
    after = State.open(empty_postgresql)
    try:
        assert load_secret(after, None) == secret
        assert len(after.articles()) == 12
    finally:
        after.close()
