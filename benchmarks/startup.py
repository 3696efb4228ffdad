"""How long an operator waits for a command to answer, against starting Python at all.

The example configuration (``config/`` and ``articles/`` of this repository) is copied to a
temporary directory and one cycle is run, so state holds the example's articles. Then each
command is started as a fresh process, as an operator types it, several times; the median
is compared with the median of ``python -c pass`` measured in the same run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent

# (row name, arguments, target in seconds, whether the target is over the baseline)
COMMANDS: tuple[tuple[str, tuple[str, ...], float, bool], ...] = (
    ("--help", ("--help",), 0.15, True),
    ("--version", ("--version",), 0.15, True),
    ("check", ("check",), 0.5, False),
    ("articles", ("articles",), 0.5, False),
    ("explain", ("explain", "Uzbekistan"), 0.5, False),
    ("subscribers list", ("subscribers", "list"), 0.5, False),
)


def _seconds(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - started


def _median(command: list[str], cwd: Path, repeat: int) -> float:
    _seconds(command, cwd)  # the first start warms the file cache
    return statistics.median(_seconds(command, cwd) for _ in range(repeat))


def run(repeat: int) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="syndicator-startup-"))
    try:
        shutil.copytree(REPOSITORY / "config", root / "config")
        shutil.copytree(REPOSITORY / "articles", root / "articles")
        syndicator = [sys.executable, "-m", "syndicator", "--config", "config/syndicator.toml"]
        subprocess.run([*syndicator, "run", "--once"], cwd=root, capture_output=True, check=True)
        baseline = _median([sys.executable, "-c", "pass"], root, repeat)
        results = []
        for name, arguments, target, over_baseline in COMMANDS:
            seconds = _median([*syndicator, *arguments], root, repeat)
            limit = baseline + target if over_baseline else target
            results.append(
                {
                    "name": f"start-up: syndicator {name}",
                    "seconds": seconds,
                    "baseline": "python -c pass",
                    "baseline_seconds": baseline,
                    "ratio": seconds / baseline,
                    "over_baseline_seconds": seconds - baseline,
                    "target": (
                        f"within {target} s of the baseline"
                        if over_baseline
                        else f"within {target} s"
                    ),
                    "met": seconds <= limit,
                }
            )
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)
