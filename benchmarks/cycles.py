"""A long-lived process, like the daemon, timing its cycles (run by benchmarks.pipeline).

``python -m benchmarks.cycles CONFIG QUIET ADDED`` runs one warm-up cycle (and loads what
the service loads once started), then QUIET
cycles when nothing changed, then ADDED cycles each after one new article was
dropped into the store; prints the timings as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.pipeline import Pipeline
from syndicator.state.db import State


def main() -> None:
    config = load_config(Path(sys.argv[1]))
    quiet_count, added_count = int(sys.argv[2]), int(sys.argv[3])
    classifier = Classifier.load(config.classify.regions, config.classify.topics)
    state = State.open(config.state.url)
    now = datetime.now(UTC)
    pipeline = Pipeline(config, classifier, state, clock=lambda: now)
    pipeline.cycle(now=now)
    pipeline.prime()  # as the service does once started
    quiet = []
    for number in range(quiet_count):
        started = time.perf_counter()
        result = pipeline.cycle(now=now + timedelta(seconds=number + 1))
        quiet.append(time.perf_counter() - started)
        assert not result.reload.changed, result.summary()
    added, matched, queued = [], 0, 0
    for number in range(added_count):
        stamp = time.time_ns()
        title = f"Kenya Revenue Authority Opens Post-Clearance Audit Office No. {stamp}"
        (config.store.path / f"new-{stamp}.txt").write_text(
            f"{title}\n\n{title}\n\nThe Kenya Revenue Authority has extended its post-clearance "
            "audit team to the Mombasa port, with a new valuation desk.\n",
            encoding="utf-8",
        )
        started = time.perf_counter()
        result = pipeline.cycle(now=now + timedelta(minutes=number + 1))
        added.append(time.perf_counter() - started)
        assert len(result.reload.new) == 1, result.summary()
        matched += result.reload.matched
        queued += len(result.queued)
    state.close()
    json.dump({"quiet": quiet, "added": added, "matched": matched, "queued": queued}, sys.stdout)


if __name__ == "__main__":
    main()
