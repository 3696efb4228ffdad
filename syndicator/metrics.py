"""Prometheus metrics of the daemon, in a registry of their own.

Every :class:`Metrics` owns a fresh ``CollectorRegistry`` instead of the process-wide default,
so two daemons (or two tests) in one process never collide over metric names. The daemon
records what happened; :meth:`Metrics.render` produces the text the ``/metrics`` endpoint
serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MailOutcome = Literal["sent", "failed", "retry"]

# A cycle takes from well under a second (a quiet store) to minutes (a first run over a
# large archive with mail to send).
CYCLE_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The daemon's counters and gauges; nothing here reads the clock."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cycles = Counter(
            "syndicator_cycles",
            "Cycles run, by outcome (ok or failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.cycle_duration = Histogram(
            "syndicator_cycle_duration_seconds",
            "Time taken by one cycle, successful or not.",
            buckets=CYCLE_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.articles = Gauge(
            "syndicator_articles",
            "Articles known after the last cycle.",
            registry=self.registry,
        )
        self.feeds_written = Counter(
            "syndicator_feeds_written",
            "Feed files written (files left unchanged are not counted).",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "syndicator_last_cycle_success_timestamp_seconds",
            "Unix time at which the last successful cycle finished (0: none yet).",
            registry=self.registry,
        )
        self.mails = Counter(
            "syndicator_mails",
            "Mails handed to the transport, by outcome (sent, failed or retry).",
            ["outcome"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "syndicator_outbox_messages",
            "Messages in the outbox, by status.",
            ["status"],
            registry=self.registry,
        )
        self.bounces = Gauge(
            "syndicator_bounce_reports",
            "Bounces and complaints about our messages recorded in state, by kind "
            "(hard, soft, complaint).",
            ["kind"],
            registry=self.registry,
        )
        self.recent_rate = Gauge(
            "syndicator_recent_rate",
            "Share of the last bounces.window messages sent that hard-bounced (kind=bounce) "
            "or drew a complaint (kind=complaint).",
            ["kind"],
            registry=self.registry,
        )
        self.sending_paused = Gauge(
            "syndicator_sending_paused",
            "1 while the reputation circuit breaker holds sending (mail is still queued).",
            registry=self.registry,
        )
        for kind in ("hard", "soft", "complaint"):
            self.bounces.labels(kind=kind)
        for rate_kind in ("bounce", "complaint"):
            self.recent_rate.labels(kind=rate_kind)
        self.instances = Gauge(
            "syndicator_instances",
            "Live instances sharing the state database, by role (cycle, deliver, web).",
            ["role"],
            registry=self.registry,
        )
        self.cycle_held = Gauge(
            "syndicator_cycle_holder",
            "1 while this instance is running the cycle, else 0.",
            registry=self.registry,
        )
        # Export every series from the start, so that rate() and alerts see a 0 rather than
        # no data before the first failure.
        for outcome in ("ok", "failed"):
            self.cycles.labels(outcome=outcome)
        for mail_outcome in ("sent", "failed", "retry"):
            self.mails.labels(outcome=mail_outcome)

    def record_cycle(
        self,
        *,
        ok: bool,
        duration: float,
        articles: int,
        feeds_written: int,
        finished_at: datetime,
    ) -> None:
        """Record one finished cycle; ``finished_at`` must be timezone-aware."""
        if finished_at.tzinfo is None:
            raise ValueError("finished_at must be timezone-aware (e.g. datetime.now(UTC))")
        self.cycles.labels(outcome="ok" if ok else "failed").inc()
        self.cycle_duration.observe(max(duration, 0.0))
        self.articles.set(articles)
        self.feeds_written.inc(max(feeds_written, 0))
        if ok:
            self.last_success.set(finished_at.timestamp())

    def record_mail(self, outcome: MailOutcome, count: int = 1) -> None:
        """Count ``count`` mails that were sent, failed for good, or will be retried."""
        self.mails.labels(outcome=outcome).inc(count)

    def set_outbox(self, counts: Mapping[str, int]) -> None:
        """Set the outbox gauge from ``{status: number of messages}``.

        Statuses missing from ``counts`` but exported before are set to 0, so a drained
        queue shows 0 instead of its last non-zero value.
        """
        for status in self._outbox_statuses():
            if status not in counts:
                self.outbox.labels(status=status).set(0)
        for status, number in counts.items():
            self.outbox.labels(status=status).set(number)

    def set_deliverability(
        self,
        counts: Mapping[str, int],
        *,
        bounce_rate: float,
        complaint_rate: float,
        paused: bool,
    ) -> None:
        """Bounce and complaint counts by kind, the recent rates, and the breaker's state."""
        for kind in ("hard", "soft", "complaint"):
            self.bounces.labels(kind=kind).set(counts.get(kind, 0))
        self.recent_rate.labels(kind="bounce").set(bounce_rate)
        self.recent_rate.labels(kind="complaint").set(complaint_rate)
        self.sending_paused.set(1 if paused else 0)

    def set_instances(self, by_role: Mapping[str, int]) -> None:
        """Set the live instances gauge from ``{role: number of live instances}``."""
        for role in ("cycle", "deliver", "web"):
            self.instances.labels(role=role).set(by_role.get(role, 0))

    def _outbox_statuses(self) -> list[str]:
        return [
            sample.labels["status"]
            for metric in self.outbox.collect()
            for sample in metric.samples
            if "status" in sample.labels
        ]

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every metric, and its ``Content-Type``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
