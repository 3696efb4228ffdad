"""Inserting many rows at once: plain, skipping taken keys, replacing them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest
from sqlalchemy import select, text

from syndicator.state.db import State, feeds_table, insert_rows
from syndicator.state.feeds import feed_signatures, record_feed_signatures
from tests.faults.helpers import wait_for


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    with closing(State.open(state_url)) as opened:
        yield opened


def stored(state: State) -> dict[str, str]:
    with state.engine.connect() as conn:
        return {row.path: row.signature for row in conn.execute(select(feeds_table))}


def test_rows_with_taken_keys_are_skipped_or_replaced_as_asked(state: State) -> None:
    with state.transaction() as conn:
        assert insert_rows(conn, feeds_table, [{"path": "a", "signature": "1"}]) == 1
    with state.transaction() as conn:
        rows = [{"path": "a", "signature": "2"}, {"path": "b", "signature": "2"}]
        assert insert_rows(conn, feeds_table, rows, skip_existing=True) == 1
    assert stored(state) == {"a": "1", "b": "2"}
    with state.transaction() as conn:
        rows = [{"path": "a", "signature": "3"}, {"path": "c", "signature": "3"}]
        insert_rows(conn, feeds_table, rows, replace_existing=True)
    assert stored(state) == {"a": "3", "b": "2", "c": "3"}


@pytest.mark.postgresql_only
def test_a_writer_waiting_on_anothers_signatures_replaces_them(state_url: str) -> None:
    """Two instances record what they published for the same channel at once: the second
    waits for the first's row, then overwrites it; neither fails on the other's row (as a
    delete followed by an insert did)."""
    with closing(State.open(state_url)) as one, closing(State.open(state_url)) as two:
        with one.transaction() as conn:
            record_feed_signatures(conn, {"all": "old"})
        failures: list[BaseException] = []

        def second() -> None:
            try:
                with two.transaction() as conn:
                    record_feed_signatures(conn, {"all": "two"})
            except BaseException as exc:  # reported below, on the test's thread
                failures.append(exc)

        with one.transaction() as conn:
            record_feed_signatures(conn, {"all": "one"})
            waiting = threading.Thread(target=second)
            waiting.start()
            wait_for(lambda: blocked_on_a_lock(one), timeout=10, what="the second writer")
        waiting.join(timeout=10)
        assert failures == []
        with one.engine.connect() as conn:
            assert feed_signatures(conn) == {"all": "two"}


def blocked_on_a_lock(state: State) -> bool:
    with state.engine.connect() as conn:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return bool(conn.execute(query).scalar())
