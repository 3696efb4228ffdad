"""``init``: write a new site."""

from __future__ import annotations

import argparse
import shlex

from syndicator.commands.common import EXIT_OK
from syndicator.newsite import write_site


def cmd_init(args: argparse.Namespace) -> int:
    site = write_site(args.directory, example=args.example)
    config = shlex.quote(str(site.config))
    what = "with the example articles and subscribers" if args.example else "with an empty store"
    print(f"wrote a new site into {site.directory}, {what}")
    print("next:")
    print(f"  syndicator --config {config} check        # validate the site")
    print(f"  syndicator --config {config} run --once   # one cycle: publish feeds into feeds/")
    print(f"  syndicator --config {config} run          # serve http://127.0.0.1:8080/")
    return EXIT_OK
