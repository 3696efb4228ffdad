"""Deliverability costs: DKIM signing in the mail path, and reading bounce reports.

* Mail with DKIM (rsa-sha256, 2048 bits) against the same run without it: the whole
  path of the mail benchmark (compose, store, deliver to an aiosmtpd sink in another
  process, record), measured both ways in the same run, the ratio is with / without.
* Bounce reports read per second (:func:`parse_report`, every shape of the test corpus:
  DSNs, ARF, Exim, qmail, Gmail text, auto-replies) against parsing the same bytes with
  ``email.message_from_bytes`` alone: the ratio is what recognising the report costs on
  top of reading the message at all.
"""

from __future__ import annotations

import asyncio
import email
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.mail import SINK, _install, _reset
from benchmarks.pipeline import free_port
from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.mail.bounces import parse_report
from syndicator.mail.verp import make_token
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state.db import State

_OPENSSL_RSA_2048 = ("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"


def _rounds(config_path: Path, root: Path, count: int, repeat: int) -> list[float]:
    config = load_config(config_path)
    classifier = Classifier.load(config.classify.regions, config.classify.topics)
    state = State.open(config.state.url)
    seconds: list[float] = []
    try:
        now = datetime(2026, 3, 2, 9, tzinfo=UTC)
        run_cycle(config, classifier, state, now=now)
        (root / "articles" / "b.txt").write_text(
            "Kenya Launches Single Window\n\nKenya Launches Single Window\n\nKRA news.\n"
        )
        run_cycle(config, classifier, state, now=now + timedelta(minutes=5))
        due = now + timedelta(hours=1)
        for _ in range(repeat):
            _reset(state, due)
            started = time.perf_counter()
            run_cycle(config, classifier, state, now=due)
            report = asyncio.run(deliver_due(config, state, clock=lambda: due))
            seconds.append(time.perf_counter() - started)
            assert report.sent == count, report
    finally:
        state.close()
    return seconds


def run_dkim(count: int, repeat: int = 3) -> dict[str, Any]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    plain_root = Path(tempfile.mkdtemp(prefix="syndicator-bench-"))
    signed_root = Path(tempfile.mkdtemp(prefix="syndicator-bench-"))
    try:
        key = signed_root / "dkim.pem"
        subprocess.run(
            [*_OPENSSL_RSA_2048, "-out", str(key)],
            capture_output=True,
            check=True,
        )
        plain = _install(plain_root, port, count)
        signed = _install(signed_root, port, count)
        signed.write_text(
            signed.read_text()
            + f'\n[mail.dkim]\ndomain = "example.org"\nselector = "s1"\nkey_file = "{key}"\n'
        )
        without = _rounds(plain, plain_root, count, repeat)
        with_dkim = _rounds(signed, signed_root, count, repeat)
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=30)
        shutil.rmtree(plain_root, ignore_errors=True)
        shutil.rmtree(signed_root, ignore_errors=True)
    seconds = statistics.median(with_dkim)
    baseline_seconds = statistics.median(without)
    return {
        "name": "mail with DKIM (rsa-2048) vs without",
        "messages": count,
        "seconds": seconds,
        "messages_per_second": count / seconds,
        "baseline": "the same mail path without DKIM, same run",
        "baseline_seconds": baseline_seconds,
        "baseline_messages_per_second": count / baseline_seconds,
        "ratio": seconds / baseline_seconds,
    }


def _reports(count: int) -> list[bytes]:
    shapes = sorted(CORPUS.glob("*.eml"))
    secret = b"b" * 32
    reports: list[bytes] = []
    for number in range(count):
        text = shapes[number % len(shapes)].read_text(encoding="utf-8")
        reports.append(
            text.replace("{TOKEN}", make_token(secret, number + 1))
            .replace("{RECIPIENT}", f"reader{number}@example.net")
            .encode("utf-8")
        )
    return reports


def run_bounces(count: int, repeat: int = 3) -> dict[str, Any]:
    reports = _reports(count)
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        kinds = [parse_report(data).kind for data in reports]
        ours.append(time.perf_counter() - started)
        assert len(kinds) == count
        started = time.perf_counter()
        for data in reports:
            email.message_from_bytes(data)
        baseline.append(time.perf_counter() - started)
    seconds = statistics.median(ours)
    baseline_seconds = statistics.median(baseline)
    return {
        "name": "bounce reports parsed per second",
        "reports": count,
        "seconds": seconds,
        "reports_per_second": count / seconds,
        "baseline": "email.message_from_bytes of the same reports",
        "baseline_seconds": baseline_seconds,
        "baseline_reports_per_second": count / baseline_seconds,
        "ratio": seconds / baseline_seconds,
    }
