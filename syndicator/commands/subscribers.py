"""``subscribers list/add/remove/import/resubscribe``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from syndicator.classify.taxonomy import Taxonomy
from syndicator.commands.common import EXIT_OK, EXIT_PROBLEMS, load, now
from syndicator.config import Config
from syndicator.errors import NotFoundError, SyndicatorError
from syndicator.mail.addresses import lookup_address
from syndicator.mail.subscribers import (
    Subscriber,
    file_signature,
    load_subscribers,
    load_subscribers_csv,
    load_subscribers_file,
    stored_settings,
)
from syndicator.state import lookup
from syndicator.state.records import FROM_WEB, SUSPENDED, UNSUBSCRIBED

if TYPE_CHECKING:
    from syndicator.state.db import State

# SQLAlchemy and the roster load only where a command writes, or where state cannot be
# listed with the standard library (`subscribers list` on SQLite, when state follows the
# subscribers file as it is, reads with sqlite3 alone).


def _subscriber_state(args: argparse.Namespace) -> tuple[Config, Taxonomy, State]:
    """Configuration, taxonomy and state, with the subscribers file synced.

    Subscribers name topics, so the taxonomy is read; the gazetteer and the classifier's
    matcher are not needed here.
    """
    from syndicator.state.db import State  # noqa: PLC0415

    config = load(args)
    taxonomy = Taxonomy.load(config.classify.topics)
    state = State.open(config.state.url)
    _sync(config, taxonomy, state)
    return config, taxonomy, state


def _sync(config: Config, taxonomy: Taxonomy, state: State) -> None:
    """Make state follow the subscribers file, and say what is wrong with it."""
    from syndicator.mail.roster import sync_subscribers  # noqa: PLC0415

    listed, problems, held, signature = load_subscribers_file(
        config.subscribers.file, taxonomy.topics
    )
    for problem in problems:
        print(problem, file=sys.stderr)
    if listed is not None:
        with state.transaction() as conn:
            sync_subscribers(
                conn, listed, now=now(), held=held, signature=signature, problems=problems
            )


def _listing(config: Config, taxonomy: Taxonomy) -> lookup.SubscriberListing:
    """Subscribers, open sign-up requests and decisions, once state follows the file.

    On SQLite, when state already follows the subscribers file as it is now (the same
    bytes, the same topics, no subscriber changed since), it is read with the standard
    library and nothing is synced; otherwise the file is synced first, as by a cycle.
    """
    since = now() - timedelta(hours=config.web.confirm_ttl_hours)
    signature = file_signature(config.subscribers.file, taxonomy.topics)
    if signature is not None:
        listing = lookup.subscriber_listing(
            config.state.url, signature=signature, requested_since=since
        )
        if listing is not None:
            for problem in listing.problems:
                print(problem, file=sys.stderr)
            return listing
    from syndicator.state.db import State  # noqa: PLC0415
    from syndicator.state.subscribers import subscriber_listing  # noqa: PLC0415

    state = State.open(config.state.url)
    try:
        _sync(config, taxonomy, state)  # says the file's problems
        with state.engine.connect() as conn:
            return subscriber_listing(conn, requested_since=since)
    finally:
        state.close()


def cmd_subscribers_list(args: argparse.Namespace) -> int:
    config = load(args)
    listing = _listing(config, Taxonomy.load(config.classify.topics))
    decisions = listing.decisions
    # Web requests waiting for confirmation are listed too, as "pending": they receive
    # nothing but the confirmation mail until then.
    rows: list[dict[str, Any]] = [
        {
            "email": r.email,
            "name": r.name,
            "status": r.status,
            "source": r.source,
            "cadence": r.cadence,
            "group_by": r.group_by,
            "regions": list(r.regions),
            "topics": list(r.topics),
            "keywords": list(r.keywords),
            "exclude_regions": list(r.exclude_regions),
            "exclude_topics": list(r.exclude_topics),
            "next_digest_at": r.next_digest_at.isoformat() if r.next_digest_at else None,
            "permanent_failures": r.permanent_failures,
            "added_at": r.added_at.isoformat(),
            # Why a bounce or a complaint ended the subscription, if one did.
            "decision": (
                f"{decisions[r.id][1]} ({decisions[r.id][2]:%Y-%m-%d %H:%M} UTC)"
                if r.id in decisions and r.status in (SUSPENDED, UNSUBSCRIBED)
                else None
            ),
        }
        for r in listing.subscribers
    ]
    for request in listing.requests:
        asked = stored_settings(request.settings)
        rows.append(
            {
                "email": request.email,
                "name": asked.name,
                "status": "pending",
                "source": FROM_WEB,
                "cadence": asked.cadence,
                "group_by": asked.group_by,
                "regions": list(asked.regions),
                "topics": list(asked.topics),
                "keywords": list(asked.keywords),
                "exclude_regions": list(asked.exclude_regions),
                "exclude_topics": list(asked.exclude_topics),
                "next_digest_at": None,
                "permanent_failures": 0,
                "added_at": request.requested_at.isoformat(),
                "decision": None,
            }
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for row in rows:
        when = row["cadence"]
        if row["group_by"] != "region" and row["cadence"] in ("daily", "weekly"):
            when += f" by {row['group_by']}"
        if row["next_digest_at"]:
            when += f", next {datetime.fromisoformat(row['next_digest_at']):%Y-%m-%d %H:%M} UTC"
        filters = "; ".join(
            f"{label} {', '.join(row[key])}"
            for label, key in (
                ("regions", "regions"),
                ("topics", "topics"),
                ("keywords", "keywords"),
                ("not regions", "exclude_regions"),
                ("not topics", "exclude_topics"),
            )
            if row[key]
        )
        failures = f", {row['permanent_failures']} failures" if row["permanent_failures"] else ""
        if row["decision"]:
            failures += f", {row['status']}: {row['decision']}"
        print(
            f"{row['email']:40} {row['status']:12} {row['source']:4} {when}{failures}\n"
            f"    {filters or 'everything'}"
        )
    print(f"{len(rows)} subscriber{'s' if len(rows) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _subscriber_from_args(args: argparse.Namespace) -> Subscriber:
    try:
        return Subscriber.model_validate(
            {
                key: getattr(args, key)
                for key in (
                    "email",
                    "name",
                    "regions",
                    "topics",
                    "keywords",
                    "exclude_regions",
                    "exclude_topics",
                    "cadence",
                    "hour",
                    "weekday",
                    "timezone",
                    "group_by",
                )
            }
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: "
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise SyndicatorError(f"subscriber {args.email.strip()[:80]!r}: {problems}") from exc


def cmd_subscribers_add(args: argparse.Namespace) -> int:
    subscriber = _subscriber_from_args(args)
    _config, taxonomy, state = _subscriber_state(args)
    try:
        unknown = [
            t for t in subscriber.topics + subscriber.exclude_topics if t not in taxonomy.topics
        ]
        if unknown:
            raise NotFoundError(
                f"unknown topic {unknown[0]!r}",
                hint=f"known topics: {', '.join(taxonomy.topics)}",
            )
        from syndicator.mail.roster import add_subscriber  # noqa: PLC0415

        with state.transaction() as conn:
            outcome = add_subscriber(conn, subscriber, now=now())
    finally:
        state.close()
    print(f"{subscriber.email}: {outcome}")
    return EXIT_OK


def cmd_subscribers_remove(args: argparse.Namespace) -> int:
    from syndicator.mail.roster import remove_subscriber  # noqa: PLC0415

    state = _subscriber_state(args)[2]
    try:
        with state.transaction() as conn:
            remove_subscriber(conn, lookup_address(args.email))
    finally:
        state.close()
    print(f"{args.email}: removed")
    return EXIT_OK


def cmd_subscribers_resubscribe(args: argparse.Namespace) -> int:
    from syndicator.mail.roster import resubscribe  # noqa: PLC0415

    state = _subscriber_state(args)[2]
    try:
        with state.transaction() as conn:
            resubscribe(conn, lookup_address(args.email), now=now())
    finally:
        state.close()
    print(f"{args.email}: subscribed again (only articles seen from now on)")
    return EXIT_OK


def cmd_subscribers_import(args: argparse.Namespace) -> int:
    from syndicator.mail.roster import add_subscriber  # noqa: PLC0415

    _config, taxonomy, state = _subscriber_state(args)
    known_topics = set(taxonomy.topics)
    if args.file.suffix.lower() == ".csv":
        listed, errors = load_subscribers_csv(args.file, known_topics)
    else:
        listed, errors = load_subscribers(args.file, known_topics)
    for error in errors:
        print(error, file=sys.stderr)
    counts: dict[str, int] = {}
    try:
        for subscriber in listed:
            try:
                with state.transaction() as conn:
                    outcome = add_subscriber(conn, subscriber, now=now())
            except SyndicatorError as exc:
                print(f"{args.file}: {exc}", file=sys.stderr)
                outcome = "skipped"
            counts[outcome] = counts.get(outcome, 0) + 1
    finally:
        state.close()
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    print(f"{args.file}: {summary or 'nothing imported'}")
    return EXIT_PROBLEMS if errors or counts.get("skipped") else EXIT_OK
