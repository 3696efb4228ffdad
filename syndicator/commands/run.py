"""``run`` and ``feeds``: cycles over the store."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from syndicator.commands.common import EXIT_OK, EXIT_PROBLEMS, now, open_all
from syndicator.pipeline import SKIPPED_LINE, Pipeline
from syndicator.state.outbox import release_inflight

log = logging.getLogger("syndicator")


def cmd_run(args: argparse.Namespace) -> int:
    config, classifier, state = open_all(args)
    try:
        if args.once:
            with state.transaction() as conn:
                recovered = release_inflight(conn, me=state.instance_id)
            if recovered:
                log.warning("%s messages were in flight at the last stop; sending again", recovered)
            pipeline = Pipeline(config, classifier, state, clock=now)
            result = pipeline.cycle()
            log.info("cycle: %s", result.summary())
            report = asyncio.run(pipeline.deliver())
            log.info(
                "mail: %s sent, %s to retry, %s failed", report.sent, report.retry, report.failed
            )
            return EXIT_PROBLEMS if result.publish_error else EXIT_OK
        # Imported here: the service's HTTP server and scheduler are not needed for one cycle.
        from syndicator.service.daemon import run_service  # noqa: PLC0415

        return run_service(config, classifier, state, clock=now)
    finally:
        state.close()


def cmd_feeds(args: argparse.Namespace) -> int:
    config, classifier, state = open_all(args)
    try:
        result = Pipeline(config, classifier, state, clock=now).cycle()
    finally:
        state.close()
    if result.publish_error:
        print(f"syndicator: error: {result.publish_error}", file=sys.stderr)
        return EXIT_PROBLEMS
    written = result.publish.written if result.publish else []
    if result.skipped:
        # The store was not read here: this directory was only brought up to the database.
        print(f"{config.feeds.output_dir}: {len(written)} files written; {SKIPPED_LINE}")
        return EXIT_OK
    print(
        f"{config.feeds.output_dir}: {len(written)} files written, "
        f"{result.reload.articles} articles"
    )
    return EXIT_OK
