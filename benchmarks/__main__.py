"""Run the benchmarks: ``python -m benchmarks [--quick] [--only NAME] [--output results.json]``.

Numbers are only comparable within one run on a shared machine, so every figure
is printed next to a baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    classification,
    deliverability,
    http,
    mail,
    matching,
    pipeline,
    publishing,
    readers,
    startup,
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument(
        "--output", type=Path, default=Path("benchmark-results.json"), help="JSON results file"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark (repeatable): startup, pipeline, classification, "
        "publishing, matching, mail, deliverability, http, readers",
    )
    args = parser.parse_args()
    quick = args.quick
    # name -> what runs it, at the quick or the full size
    suites: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "startup": lambda: startup.run(repeat=3 if quick else 9),
        "pipeline": lambda: (
            pipeline.run(articles=5_000, subscribers=1_000, memory_subscribers=20_000)
            if quick
            else pipeline.run(articles=100_000, subscribers=10_000, memory_subscribers=1_000_000)
        ),
        "classification": lambda: [classification.run(5_000 if quick else 50_000)],
        "publishing": lambda: [
            publishing.run(5_000, 500, 3) if quick else publishing.run(100_000, 5_000, 5)
        ],
        "matching": lambda: [matching.run(100_000 if quick else 1_000_000)],
        "mail": lambda: [mail.run(500, repeat=3) if quick else mail.run(5_000, repeat=5)],
        "deliverability": lambda: [
            deliverability.run_dkim(500 if quick else 5_000, repeat=3 if quick else 5),
            deliverability.run_bounces(2_000 if quick else 20_000, repeat=3 if quick else 5),
        ],
        "http": lambda: [http.run(seconds=2 if quick else 10, connections=20 if quick else 50)],
        # Filter feeds and archives at 100,000 articles in the full run.
        "readers": lambda: [
            *readers.filter_feeds(
                2_000 if quick else 100_000,
                seconds=2 if quick else 10,
                connections=20 if quick else 50,
            ),
            readers.archives(5_000 if quick else 100_000),
        ],
    }
    chosen = args.only or list(suites)
    unknown = [name for name in chosen if name not in suites]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; known: {', '.join(suites)}")
    results = [result for name in chosen for result in suites[name]()]
    print(f"{'benchmark':48} {'seconds':>10} {'baseline s':>11} {'ratio':>7}")
    for result in results:
        seconds = result["baseline_seconds"]
        baseline = "-" if seconds is None else f"{seconds:.4g}"
        print(
            f"{result['name']:48} {result['seconds']:10.4g} {baseline:>11} {result['ratio']:7.2f}"
        )
        details = {
            key: value
            for key, value in result.items()
            if key not in {"name", "seconds", "baseline_seconds", "ratio"}
        }
        for key, value in details.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"    {key}: {shown}")
    machine = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
    }
    args.output.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


raise SystemExit(main())
