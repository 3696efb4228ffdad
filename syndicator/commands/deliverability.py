"""Command line of deliverability: bounces, the sending pause, suppression, data rights.

``syndicator bounces process FILE|DIR|-``, ``syndicator mail status|resume``,
``syndicator suppress import|export|list|add|remove`` and ``syndicator subscribers
export|forget EMAIL``. Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syndicator.config import Config
    from syndicator.state.bounces import Suppression
    from syndicator.state.db import State

# The parser imports this module for --help too: nothing heavy at the top.
EXIT_OK = 0
EXIT_PROBLEMS = 1


def add_commands(
    commands: Any,
    common: argparse.ArgumentParser,
    subscriber_actions: Any,
) -> None:
    """Add the deliverability commands to the parser ``cli.build_parser`` builds; each
    handler is imported only when its command runs."""
    bounces = commands.add_parser(
        "bounces",
        parents=[common],
        help="read bounces and complaints",
        description="Read bounces and spam complaints and apply the bounce policy: a hard "
        "bounce suspends, soft bounces count, a complaint unsubscribes and suppresses.",
    )
    bounce_actions = bounces.add_subparsers(dest="action", metavar="ACTION", required=True)
    process = bounce_actions.add_parser(
        "process",
        parents=[common],
        help="process a Maildir, an mbox, one message, or - for standard input",
    )
    process.add_argument("source", metavar="FILE|DIR|-")
    process.set_defaults(handler="syndicator.commands.deliverability:cmd_bounces_process")

    mail = commands.add_parser(
        "mail",
        parents=[common],
        help="whether sending is paused; resume it",
        description="The reputation circuit breaker pauses sending when recent mail bounces "
        "or is reported as spam too often (mail is still queued).",
    )
    mail_actions = mail.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = mail_actions.add_parser(
        "status", parents=[common], help="rates of recent mail, and whether sending is paused"
    )
    status.set_defaults(handler="syndicator.commands.deliverability:cmd_mail_status")
    resume = mail_actions.add_parser("resume", parents=[common], help="start sending again")
    resume.set_defaults(handler="syndicator.commands.deliverability:cmd_mail_resume")

    suppress = commands.add_parser(
        "suppress",
        parents=[common],
        help="the suppression list: addresses and *@domains never mailed",
        description="Manage the suppression list. CSV columns: entry (an address or "
        "*@domain), reason, date (ISO 8601).",
    )
    suppress_actions = suppress.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = suppress_actions.add_parser("list", parents=[common], help="list every entry")
    listing.set_defaults(handler="syndicator.commands.deliverability:cmd_suppress_list")
    exporting = suppress_actions.add_parser(
        "export", parents=[common], help="print the list as CSV"
    )
    exporting.set_defaults(handler="syndicator.commands.deliverability:cmd_suppress_export")
    importing = suppress_actions.add_parser(
        "import", parents=[common], help="add the entries of a CSV file (or - for stdin)"
    )
    importing.add_argument("file", metavar="FILE|-")
    importing.set_defaults(handler="syndicator.commands.deliverability:cmd_suppress_import")
    adding = suppress_actions.add_parser("add", parents=[common], help="add one entry")
    adding.add_argument("entry", metavar="ADDRESS|*@DOMAIN")
    adding.add_argument("--reason", default="added by the operator")
    adding.set_defaults(handler="syndicator.commands.deliverability:cmd_suppress_add")
    removing = suppress_actions.add_parser("remove", parents=[common], help="remove one entry")
    removing.add_argument("entry", metavar="ADDRESS|*@DOMAIN")
    removing.set_defaults(handler="syndicator.commands.deliverability:cmd_suppress_remove")

    export = subscriber_actions.add_parser(
        "export", parents=[common], help="print everything held about an address, as JSON"
    )
    export.add_argument("email")
    export.set_defaults(handler="syndicator.commands.deliverability:cmd_subscribers_export")
    forget = subscriber_actions.add_parser(
        "forget",
        parents=[common],
        help="delete everything held about an address (a suppression stays, as a hash)",
    )
    forget.add_argument("email")
    forget.set_defaults(handler="syndicator.commands.deliverability:cmd_subscribers_forget")


def _state(args: argparse.Namespace) -> tuple[Config, State]:
    from syndicator.commands.common import load  # noqa: PLC0415
    from syndicator.state.db import State  # noqa: PLC0415

    config = load(args)
    return config, State.open(config.state.url)


# --- bounces -------------------------------------------------------------------------------


def cmd_bounces_process(args: argparse.Namespace) -> int:
    from syndicator.mail import breaker  # noqa: PLC0415
    from syndicator.mail.feedback import Policy, process_path  # noqa: PLC0415
    from syndicator.mail.unsubscribe import load_secret  # noqa: PLC0415

    config, state = _state(args)
    try:
        secret = load_secret(state, config.mail.unsubscribe_secret_file)
        result = process_path(
            state,
            args.source,
            secret=secret,
            policy=Policy.from_config(config.bounces),
            now=datetime.now(UTC),
        )
        paused = breaker.evaluate(state, config.bounces)
    finally:
        state.close()
    print(
        f"{args.source}: {result.read} read, {result.counted} counted, {result.ignored} "
        f"ignored; {len(result.suspended)} suspended, {len(result.unsubscribed)} unsubscribed"
    )
    if paused:
        print(f"sending is paused: {paused}", file=sys.stderr)
    return EXIT_OK


# --- the breaker ---------------------------------------------------------------------------


def cmd_mail_status(args: argparse.Namespace) -> int:
    from syndicator.mail import breaker  # noqa: PLC0415

    config, state = _state(args)
    try:
        rates = breaker.rates(state, config.bounces.window)
        paused = breaker.paused(state)
    finally:
        state.close()
    print(
        f"last {rates.sent} messages: hard bounces {rates.bounce_rate:.2%} (limit "
        f"{config.bounces.max_bounce_rate:.2%}), complaints {rates.complaint_rate:.2%} "
        f"(limit {config.bounces.max_complaint_rate:.2%})"
    )
    print(f"sending is paused: {paused}" if paused else "sending is on")
    return EXIT_OK


def cmd_mail_resume(args: argparse.Namespace) -> int:
    from syndicator.mail import breaker  # noqa: PLC0415

    _config, state = _state(args)
    try:
        reason = breaker.resume(state)
    finally:
        state.close()
    print(f"sending resumed (it was paused: {reason})" if reason else "sending was not paused")
    return EXIT_OK


# --- suppression ---------------------------------------------------------------------------


def _suppressions(args: argparse.Namespace) -> list[Suppression]:
    from syndicator.state import bounces as store  # noqa: PLC0415

    _config, state = _state(args)
    try:
        with state.engine.connect() as conn:
            return store.suppressions(conn)
    finally:
        state.close()


def cmd_suppress_list(args: argparse.Namespace) -> int:
    entries = _suppressions(args)
    for item in entries:
        print(f"{item.entry:40} {item.added_at:%Y-%m-%d}  {item.reason}")
    print(f"{len(entries)} entr{'ies' if len(entries) != 1 else 'y'}", file=sys.stderr)
    return EXIT_OK


def cmd_suppress_export(args: argparse.Namespace) -> int:
    from syndicator.mail.suppression import to_csv  # noqa: PLC0415

    sys.stdout.write(to_csv(_suppressions(args)))
    return EXIT_OK


def cmd_suppress_import(args: argparse.Namespace) -> int:
    from syndicator.errors import SyndicatorError  # noqa: PLC0415
    from syndicator.mail.suppression import parse_csv  # noqa: PLC0415
    from syndicator.state import bounces as store  # noqa: PLC0415

    if args.file == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(args.file).read_text(encoding="utf-8"), args.file
        except (OSError, UnicodeDecodeError) as exc:
            raise SyndicatorError(f"{args.file}: cannot read: {exc}") from exc
    entries, problems = parse_csv(text, source=source, now=datetime.now(UTC))
    for problem in problems:
        print(problem, file=sys.stderr)
    _config, state = _state(args)
    added = 0
    try:
        with state.transaction() as conn:
            for entry in entries:
                added += store.add_suppression(
                    conn, entry.entry, reason=entry.reason, added_at=entry.added_at
                )
    finally:
        state.close()
    print(f"{source}: {added} added, {len(entries) - added} already listed")
    return EXIT_PROBLEMS if problems else EXIT_OK


def cmd_suppress_add(args: argparse.Namespace) -> int:
    from syndicator.errors import SyndicatorError  # noqa: PLC0415
    from syndicator.mail.suppression import suppress  # noqa: PLC0415

    _config, state = _state(args)
    try:
        with state.transaction() as conn:
            added = suppress(conn, args.entry, reason=args.reason, now=datetime.now(UTC))
    except ValueError as exc:
        raise SyndicatorError(str(exc), hint="give an address or *@domain") from exc
    finally:
        state.close()
    print(f"{args.entry}: {'added' if added else 'already listed'}")
    return EXIT_OK


def cmd_suppress_remove(args: argparse.Namespace) -> int:
    from syndicator.errors import NotFoundError  # noqa: PLC0415
    from syndicator.mail.suppression import unsuppress  # noqa: PLC0415

    _config, state = _state(args)
    try:
        with state.transaction() as conn:
            try:
                removed = unsuppress(state, conn, args.entry)
            except ValueError:
                removed = False
    finally:
        state.close()
    if not removed:
        raise NotFoundError(f"{args.entry!r} is not on the list", hint="see `suppress list`")
    print(f"{args.entry}: removed")
    return EXIT_OK


# --- data rights ---------------------------------------------------------------------------


def cmd_subscribers_export(args: argparse.Namespace) -> int:
    from syndicator.errors import NotFoundError  # noqa: PLC0415
    from syndicator.mail.rights import export_address  # noqa: PLC0415

    _config, state = _state(args)
    try:
        held = export_address(state, args.email)
    finally:
        state.close()
    if held is None:
        raise NotFoundError(f"nothing is held about {args.email!r}")
    json.dump(held, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return EXIT_OK


def cmd_subscribers_forget(args: argparse.Namespace) -> int:
    from syndicator.errors import NotFoundError  # noqa: PLC0415
    from syndicator.mail.rights import forget_address  # noqa: PLC0415

    _config, state = _state(args)
    try:
        outcome = forget_address(state, args.email, now=datetime.now(UTC))
    finally:
        state.close()
    if outcome is None:
        raise NotFoundError(f"nothing is held about {args.email!r}")
    print(f"{args.email}: {outcome}")
    return EXIT_OK
