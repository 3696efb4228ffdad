"""The subscribers revision: it moves with every committed change to who is subscribed to
what, whichever process makes it, so a matching index can be kept while it stands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import pytest
from sqlalchemy import update

from syndicator.mail import roster
from syndicator.mail.queue import SubscriberIndex
from syndicator.mail.subscribers import Subscriber
from syndicator.state.db import State, subscribers_revision, subscribers_table
from tests.conftest import T0


@pytest.fixture
def state(state_url: str) -> Iterator[State]:
    with closing(State.open(state_url)) as opened:
        yield opened


def revision(state: State) -> str | None:
    with state.engine.connect() as conn:
        return subscribers_revision(conn)


def test_the_revision_moves_with_who_is_subscribed_to_what(state: State, state_url: str) -> None:
    before = revision(state)
    assert before is not None
    with state.transaction() as conn:
        roster.add_subscriber(conn, Subscriber(email="a@example.org", regions=["mena"]), now=T0)
        roster.add_subscriber(
            conn, Subscriber(email="b@example.org", regions=["asia-pacific"]), now=T0
        )
    added = revision(state)
    assert added != before
    # Bookkeeping of mail (when the next digest is due) changes no filter.
    with state.transaction() as conn:
        conn.execute(update(subscribers_table).values(next_digest_at=T0 + timedelta(days=1)))
    assert revision(state) == added
    # A transaction that is rolled back changes nothing.
    with pytest.raises(RuntimeError), state.transaction() as conn:
        conn.execute(update(subscribers_table).values(filters='{"regions": ["europe"]}'))
        raise RuntimeError("rolled back")
    assert revision(state) == added
    # Another process's change counts too.
    with closing(State.open(state_url)) as other, other.transaction() as conn:
        found = roster.find_subscriber(conn, "a@example.org")
        assert found is not None
        roster.unsubscribe(conn, found.id, now=T0)
    assert revision(state) not in {before, added}


def test_a_kept_index_is_used_again_until_subscribers_change(state: State) -> None:
    with state.transaction() as conn:
        roster.add_subscriber(conn, Subscriber(email="a@example.org", regions=["mena"]), now=T0)
    index = SubscriberIndex()
    with state.engine.connect() as conn:
        first = index.current(conn)
        assert index.current(conn) is first
        assert len(first.index.ids) == 1
    with state.transaction() as conn:
        roster.add_subscriber(
            conn, Subscriber(email="b@example.org", regions=["asia-pacific"]), now=T0
        )
    with state.engine.connect() as conn:
        second = index.current(conn)
    assert second is not first
    assert len(second.index.ids) == 2
