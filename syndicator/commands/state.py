"""``state copy``: move the state database to another (SQLite to PostgreSQL)."""

from __future__ import annotations

import argparse

from syndicator.commands.common import EXIT_OK, load
from syndicator.state.copy import copy_state
from syndicator.state.db import State


def cmd_state_copy(args: argparse.Namespace) -> int:
    config = load(args)
    source = State.open(config.state.url)
    try:
        target = State.open(args.to)
        try:
            report = copy_state(source, target)
        finally:
            target.close()
    finally:
        source.close()
    copied = ", ".join(f"{name} {count}" for name, count in report.rows.items() if count)
    print(f"copied {copied or 'nothing'}; now set state.url to the new database and restart")
    return EXIT_OK
