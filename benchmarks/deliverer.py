"""One delivering instance in a process of its own (run by benchmarks.scaleout).

``python -m benchmarks.deliverer CONFIG`` opens the state, prints ``ready`` and waits for
a line on standard input; at each line it delivers what is due through the configured SMTP
transport, as the service's delivery does (claims under a lease, group commits), until
its claims come back short, and prints ``{"sent": N, "retry": R, "seconds": S}`` as JSON.
End of input ends it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from syndicator.config import load_config
from syndicator.pipeline import deliver_due
from syndicator.state.db import State


def main() -> None:
    config = load_config(Path(sys.argv[1]))
    state = State.open(config.state.url)
    print("ready", flush=True)
    for _ in sys.stdin:
        started = time.perf_counter()
        report = asyncio.run(deliver_due(config, state, clock=lambda: datetime.now(UTC)))
        seconds = time.perf_counter() - started
        print(json.dumps({"sent": report.sent, "retry": report.retry, "seconds": seconds}))
        sys.stdout.flush()
    state.close()


if __name__ == "__main__":
    main()
