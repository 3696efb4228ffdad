"""The ``syndicator`` command line: parse arguments, call the application, print, exit.

Exit codes: 0 success, 1 problems found or the command failed, 2 usage error.
Errors print one line saying what is wrong and how to fix it; ``-v`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, cast

from syndicator import __version__
from syndicator.errors import SyndicatorError
from syndicator.terminal import PrintableStream

log = logging.getLogger("syndicator")

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


# --- plumbing ------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="configuration file (default: $SYNDICATOR_CONFIG, else "
        "/etc/syndicator/syndicator.toml, else ./config/syndicator.toml)",
    )
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="log lines as text (default) or one JSON object per line, for log shippers",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log more, and show tracebacks of errors",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="syndicator",
        description="Per-region and per-topic feeds and email digests for customs news.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"syndicator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = commands.add_parser(
        "init",
        parents=[common],
        help="write a new site: configuration, subscribers file, store, state and feeds",
        description="Write a working site into DIR (which must not exist or be empty): a "
        "commented configuration, a subscribers file, and the store, state, feeds and mail "
        "directories. With --example, the store holds the sample WCO news and the "
        "subscribers file three example subscribers. Nothing is overwritten.",
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="the new site's directory")
    init.add_argument(
        "--example", action="store_true", help="include the sample articles and subscribers"
    )
    init.set_defaults(handler="syndicator.commands.init:cmd_init")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the service: a cycle every store.reload_interval, and the HTTP server",
        description="Run the service: reload the store and publish feeds every "
        "store.reload_interval seconds, and serve them over HTTP (http.listen), until SIGTERM "
        "or SIGINT. With --once, run one full cycle and exit.",
    )
    run.add_argument("--once", action="store_true", help="run one full cycle, then exit")
    run.set_defaults(handler="syndicator.commands.run:cmd_run")

    feeds = commands.add_parser(
        "feeds",
        parents=[common],
        help="reload the store and publish the feeds once; send no mail",
        description="Reload the store and publish every feed, the index page, the OPML file "
        "and the article pages into feeds.output_dir. Only files whose content changed are "
        "rewritten. No mail is sent.",
    )
    feeds.set_defaults(handler="syndicator.commands.run:cmd_feeds")

    subscribers = commands.add_parser(
        "subscribers",
        parents=[common],
        help="list, add, remove, import or resubscribe subscribers",
        description="Manage subscribers. Entries of the subscribers file are synced into state "
        "at every cycle (and before these commands); entries added here live in state only.",
    )
    actions = subscribers.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", parents=[common], help="list subscribers with status and filters"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler="syndicator.commands.subscribers:cmd_subscribers_list")
    adding = actions.add_parser("add", parents=[common], help="add or update a subscriber")
    adding.add_argument("email")
    adding.add_argument("--name", default="")
    adding.add_argument("--region", action="append", default=[], dest="regions")
    adding.add_argument("--topic", action="append", default=[], dest="topics")
    adding.add_argument("--keyword", action="append", default=[], dest="keywords")
    adding.add_argument("--exclude-region", action="append", default=[], dest="exclude_regions")
    adding.add_argument("--exclude-topic", action="append", default=[], dest="exclude_topics")
    adding.add_argument(
        "--cadence", choices=("immediate", "daily", "weekly", "feed"), default="daily"
    )
    adding.add_argument("--hour", type=int, default=8)
    adding.add_argument("--weekday", default="mon")
    adding.add_argument("--timezone", default="UTC")
    adding.add_argument(
        "--group-by",
        choices=("region", "topic"),
        default="region",
        help="group a digest's table of contents by region (default) or by topic",
    )
    adding.set_defaults(handler="syndicator.commands.subscribers:cmd_subscribers_add")
    removing = actions.add_parser(
        "remove", parents=[common], help="remove a subscriber added with `add` or `import`"
    )
    removing.add_argument("email")
    removing.set_defaults(handler="syndicator.commands.subscribers:cmd_subscribers_remove")
    importing = actions.add_parser(
        "import", parents=[common], help="add subscribers from a TOML or CSV file"
    )
    importing.add_argument("file", type=Path, help="[[subscriber]] TOML, or CSV with a header")
    importing.set_defaults(handler="syndicator.commands.subscribers:cmd_subscribers_import")
    again = actions.add_parser(
        "resubscribe", parents=[common], help="lift an unsubscribe or a suspension"
    )
    again.add_argument("email")
    again.set_defaults(handler="syndicator.commands.subscribers:cmd_subscribers_resubscribe")
    # bounces, mail, suppress, and subscribers export/forget
    from syndicator.commands.deliverability import add_commands  # noqa: PLC0415

    add_commands(commands, common, actions)

    preview = commands.add_parser(
        "preview",
        parents=[common],
        help="print the next mail for a subscriber; change nothing",
        description="Print the next message a subscriber would receive (the articles matched "
        "for them and not yet sent), as it would be sent. Changes nothing.",
    )
    preview.add_argument("email")
    preview.set_defaults(handler="syndicator.commands.preview:cmd_preview")

    check = commands.add_parser(
        "check",
        parents=[common],
        help="validate configuration, gazetteer, taxonomy, subscribers and every store file",
        description="Validate the configuration, the gazetteer, the taxonomy, the subscribers "
        "file and every file of the article store. Lists every problem; exit status 1 if any.",
    )
    check.set_defaults(handler="syndicator.commands.check:cmd_check")

    articles = commands.add_parser(
        "articles",
        parents=[common],
        help="list known articles with their regions, topics and dates",
        description="List the articles known to the state database, newest first.",
    )
    articles.add_argument("--region", metavar="R", help="only articles of region R")
    articles.add_argument("--topic", metavar="T", help="only articles of topic T")
    articles.add_argument("--json", action="store_true", help="print a JSON array")
    articles.add_argument(
        "--uncertain",
        action="store_true",
        help="only articles an editor should review, with the reason (close call, no subject "
        "found, conflicting title and body)",
    )
    articles.set_defaults(handler="syndicator.commands.articles:cmd_articles")

    explain = commands.add_parser(
        "explain",
        parents=[common],
        help="show why each region and topic was assigned to an article",
        description="Show the cues behind each region and topic of an article: the words "
        "matched, where, their role (subject, funder, venue ...) and weight.",
    )
    explain.add_argument("article", metavar="ID_OR_TITLE", help="an article id or part of a title")
    explain.set_defaults(handler="syndicator.commands.explain:cmd_explain")

    status = commands.add_parser(
        "status",
        parents=[common],
        help="instances sharing the state database, who runs the cycle, the outbox",
        description="Show the instances sharing the state database (with their last "
        "heartbeat and roles), which one is running the cycle, the outbox by status and the "
        "messages each instance is sending, and the oldest message waiting.",
    )
    status.add_argument("--json", action="store_true", help="print a JSON object")
    status.set_defaults(handler="syndicator.commands.status:cmd_status")

    state = commands.add_parser(
        "state",
        parents=[common],
        help="copy the state database to another (SQLite to PostgreSQL)",
        description="Work on the state database as a whole.",
    )
    state_actions = state.add_subparsers(dest="action", metavar="ACTION", required=True)
    copying = state_actions.add_parser(
        "copy",
        parents=[common],
        help="copy the whole state into an empty database",
        description="Copy every article, file, subscriber, request, match, message and the "
        "unsubscribe secret from state.url into the empty database at URL (refused if it "
        "holds anything). Stop the service first; then point state.url at URL.",
    )
    copying.add_argument(
        "--to", required=True, metavar="URL", help="e.g. postgresql+psycopg://user@host/db"
    )
    copying.set_defaults(handler="syndicator.commands.state:cmd_state_copy")
    return parser


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(verbose: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        # journald adds its own timestamps.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The function a ``"module:function"`` name points at, imported now.

    Each command's module loads only when that command runs, so ``--help``, ``--version``
    and a usage error answer without loading the feed, mail, state or web machinery.
    """
    module, _, function = name.partition(":")
    handler: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module), function
    )
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    stdout, stderr = sys.stdout, sys.stderr
    # Everything printed or logged shows control characters as escapes: subscriber fields
    # and article titles come from strangers and must not steer the operator's terminal.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sys.stdout = cast("TextIO", PrintableStream(stdout))
    sys.stderr = cast("TextIO", PrintableStream(stderr))
    try:
        return _main(argv)
    finally:
        # A caller in the same process (an embedding program, a test) gets its streams
        # and logging back: nothing keeps writing to a stream it may since have closed.
        sys.stdout, sys.stderr = stdout, stderr
        root.handlers[:] = handlers
        root.setLevel(level)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    _setup_logging(verbose, getattr(args, "log_format", "text"))
    try:
        result = _handler(args.handler)(args)
    except SyndicatorError as exc:
        if verbose:
            log.exception("failed")
        print(f"syndicator: error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `syndicator articles | head`).
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        # A file or directory the configuration names cannot be written or read.
        if verbose:
            log.exception("failed")
        where = f": {exc.filename}" if exc.filename else ""
        print(f"syndicator: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_PROBLEMS
    return result
