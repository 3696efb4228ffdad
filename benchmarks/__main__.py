"""Run the benchmarks: ``python -m benchmarks [--quick] [--output results.json]``.

Numbers are only comparable within one run on a shared machine, so every figure
is printed next to a baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

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
    args = parser.parse_args()
    if args.quick:
        results = [
            *startup.run(repeat=3),
            *pipeline.run(articles=5_000, subscribers=1_000, memory_subscribers=20_000),
            classification.run(5_000),
            publishing.run(5_000, 500, 3),
            matching.run(100_000),
            mail.run(500, repeat=3),
            deliverability.run_dkim(500, repeat=3),
            deliverability.run_bounces(2_000, repeat=3),
            http.run(seconds=2, connections=20),
            readers.filter_feeds(2_000, seconds=2, connections=20),
            readers.archives(5_000),
        ]
    else:
        results = [
            *startup.run(repeat=9),
            *pipeline.run(articles=100_000, subscribers=10_000, memory_subscribers=1_000_000),
            classification.run(50_000),
            publishing.run(100_000, 5_000, 5),
            matching.run(1_000_000),
            mail.run(5_000, repeat=5),
            deliverability.run_dkim(5_000, repeat=5),
            deliverability.run_bounces(20_000, repeat=5),
            http.run(seconds=10, connections=50),
            readers.filter_feeds(20_000, seconds=10, connections=50),
            readers.archives(100_000),
        ]
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
