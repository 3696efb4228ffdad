"""The service: cycles on a schedule and the HTTP server, in one asyncio process.

Signal handlers only set a flag; the loop acts on it. A cycle runs in a worker
thread (it reads files and talks to the database), so the HTTP server keeps
answering while it runs. A failing cycle is logged and reported by
``/healthz``; the next one runs on schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime

from aiohttp import web

from syndicator.classify import Classifier
from syndicator.config import Config
from syndicator.cycle import CycleResult, deliver_due, run_cycle
from syndicator.errors import SyndicatorError
from syndicator.metrics import Metrics
from syndicator.notify.outbox import recover_inflight
from syndicator.notify.unsubscribe import UnsubscribeDesk, load_secret
from syndicator.state import State
from syndicator.web import Health, create_app, serve

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class Service:
    """One running instance: configuration, state, health and the HTTP server."""

    def __init__(self, config: Config, classifier: Classifier, state: State) -> None:
        self.config = config
        self.classifier = classifier
        self.state = state
        self.health = Health(interval=float(config.store.reload_interval))
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def _request_stop(self, signum: int) -> None:
        if self.stopping.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stopping.set()

    async def cycle(self) -> CycleResult | None:
        """Run one cycle in a worker thread and record its outcome."""
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(
                run_cycle, self.config, self.classifier, self.state, now=_now()
            )
        except SyndicatorError as exc:
            log.error("cycle failed: %s", exc)
            self._record(ok=False, started=started, articles=self.health.articles, error=str(exc))
            return None
        except Exception as exc:
            log.exception("cycle failed")
            self._record(ok=False, started=started, articles=self.health.articles, error=repr(exc))
            return None
        log.info("cycle: %s", result.summary())
        try:
            report = await deliver_due(
                self.config, self.state, clock=_now, should_stop=self.stopping.is_set
            )
        except SyndicatorError as exc:
            log.error("delivery failed: %s", exc)
        else:
            if report.sent or report.retry or report.failed:
                log.info(
                    "mail: %s sent, %s to retry, %s failed",
                    report.sent,
                    report.retry,
                    report.failed,
                )
            self.metrics.record_mail("sent", report.sent)
            self.metrics.record_mail("retry", report.retry)
            self.metrics.record_mail("failed", report.failed)
        self._record(
            ok=True,
            started=started,
            articles=result.reload.articles,
            feeds_written=len(result.publish.written) if result.publish else 0,
        )
        return result

    def _record(
        self, *, ok: bool, started: float, articles: int, feeds_written: int = 0, error: str = ""
    ) -> None:
        finished = _now()
        self.health.record(ok, finished, articles=articles, error=error)
        self.metrics.record_cycle(
            ok=ok,
            duration=time.perf_counter() - started,
            articles=articles,
            feeds_written=feeds_written,
            finished_at=finished,
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop, signum)
        try:
            if self.config.http.enabled:
                secret = load_secret(self.state, self.config.mail.unsubscribe_secret_file)
                app = create_app(
                    output_dir=self.config.feeds.output_dir,
                    health=self.health,
                    metrics=self.metrics,
                    clock=_now,
                    unsubscribe=UnsubscribeDesk(self.state, secret, _now),
                    site_title=self.config.site.title,
                )
                self._runner = await serve(app, self.config.http.host, self.config.http.port)
                log.info("serving http://%s/", self.config.http.listen)
            with self.state.transaction() as conn:
                recovered = recover_inflight(conn)
            if recovered:
                log.warning("%s messages were in flight at the last stop; sending again", recovered)
            interval = self.config.store.reload_interval
            log.info("cycling every %ss over %s", interval, self.config.store.path)
            while not self.stopping.is_set():
                await self.cycle()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=interval)
        finally:
            if self._runner is not None:
                await self._runner.cleanup()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        log.info("stopped")
        return 0


def run_service(config: Config, classifier: Classifier, state: State) -> int:
    return asyncio.run(Service(config, classifier, state).run())
