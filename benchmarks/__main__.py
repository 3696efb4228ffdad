"""Run the benchmarks: ``python -m benchmarks [--quick] [--only GROUP] [--output results.json]``.

Numbers are only comparable within one run on a shared machine, so every figure
is printed next to a baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Collection
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
    scaleout,
    startup,
)
from tests import pg

GROUPS = (
    "startup",
    "pipeline",
    "classification",
    "publishing",
    "matching",
    "mail",
    "postgresql",
    "deliverability",
    "http",
    "readers",
)


def measure(
    quick: bool, cluster: pg.Cluster | None, only: Collection[str] = GROUPS
) -> list[dict[str, Any]]:
    """The rows of the groups in ``only``. The PostgreSQL rows need ``cluster``: the
    cycles there come with the pipeline's mixed store (the ``postgresql`` group alone
    builds only that store), and mail from several instances."""

    def database() -> str | None:
        return None if cluster is None else cluster.database()

    articles, subscribers = (2_000, 500) if quick else (100_000, 10_000)
    rows: list[dict[str, Any]] = []
    if "startup" in only:
        rows += startup.run(repeat=2 if quick else 9)
    if "pipeline" in only:
        rows += pipeline.run(
            articles=articles,
            subscribers=subscribers,
            memory_subscribers=10_000 if quick else 1_000_000,
            postgresql=database() if "postgresql" in only else None,
        )
    elif "postgresql" in only and cluster is not None:
        rows += pipeline.run(
            articles=articles,
            subscribers=subscribers,
            memory_subscribers=0,
            postgresql=database(),
            every_format=False,
        )
    if "classification" in only:
        rows.append(classification.run(5_000 if quick else 50_000))
    if "publishing" in only:
        rows.append(publishing.run(2_000, 200, 2) if quick else publishing.run(100_000, 5_000, 5))
    if "matching" in only:
        rows.append(matching.run(100_000 if quick else 1_000_000))
    if "mail" in only:
        rows.append(mail.run(500, repeat=3) if quick else mail.run(5_000, repeat=5))
    if "postgresql" in only and cluster is not None:
        rows += scaleout.run(cluster.database(), 500 if quick else 5_000, repeat=1 if quick else 3)
    if "deliverability" in only:
        rows += [
            deliverability.run_dkim(200 if quick else 5_000, repeat=1 if quick else 5),
            deliverability.run_bounces(1_000 if quick else 20_000, repeat=1 if quick else 5),
        ]
    if "http" in only:
        rows.append(http.run(seconds=2 if quick else 10, connections=20 if quick else 50))
    if "readers" in only:
        # Filter feeds and archives at 100,000 articles in the full run.
        rows += [
            *readers.filter_feeds(
                2_000 if quick else 100_000,
                seconds=2 if quick else 10,
                connections=20 if quick else 50,
            ),
            readers.archives(2_000 if quick else 100_000),
        ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument(
        "--output", type=Path, default=Path("benchmark-results.json"), help="JSON results file"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=GROUPS,
        metavar="GROUP",
        help=f"run only this group (repeatable): {', '.join(GROUPS)}",
    )
    args = parser.parse_args()
    only = args.only or GROUPS
    # A PostgreSQL cluster of the benchmarks' own, for the rows of several instances.
    with pg.cluster(durable=True) as cluster:
        if cluster is None and "postgresql" in only:
            if os.environ.get("CI") == "true":
                print("PostgreSQL is not installed (initdb, pg_ctl), and CI needs it")
                return 1
            print("PostgreSQL is not installed (initdb, pg_ctl): its rows are left out")
        results = measure(args.quick, cluster, only)
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
