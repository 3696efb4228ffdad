"""The service: scheduled cycles, digests and retries, and the HTTP server, in one process.

APScheduler's ``AsyncIOScheduler`` runs the jobs in the event loop, with its
defaults spelled out (``coalesce``, ``max_instances=1``, and a misfire grace time
that suits the interval: its default of one second silently skips late runs):

* ``cycle``: reload, publish, match and queue, then deliver — at start and every
  ``store.reload_interval``;
* ``mail``: every minute, queue the digests that fell due and deliver what is due
  (including retries whose backoff expired), so a digest goes out within a
  minute of its time;
* ``watchdog``: ``WATCHDOG=1`` to systemd at half of ``$WATCHDOG_USEC``, from the
  loop itself, so a stuck loop stops the pings.

The two working jobs share a lock: cycles never overlap each other or a
delivery run. When a subscription page queues a mail (a confirmation link), the mail
job is run at once rather than at its next minute.

Signal handlers set flags and wake the main task, which acts (the one thing a handler does
itself is cancel the job in flight at a second SIGINT): SIGTERM or SIGINT
stop taking new work, let the batch in flight finish (or abandon it after a timeout; it
is sent again at the next start), close the HTTP server and the database and return 0;
a second SIGINT abandons the work in flight at once, then closes the same way and returns
130; SIGHUP re-reads the configuration and applies it if it
is valid, keeping the running one otherwise (the subscription pages included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from watchfiles import awatch

from syndicator.classify.classifier import Classifier
from syndicator.config import Config, load_config
from syndicator.errors import SyndicatorError
from syndicator.mail.deliver import DeliveryReport
from syndicator.mail.signup import SignupDesk, SignupSettings
from syndicator.mail.unsubscribe import UnsubscribeDesk, load_secret
from syndicator.metrics import Metrics
from syndicator.pipeline import CycleResult, Pipeline, names_from, site_from_config
from syndicator.publish.publisher import PageOnDemand
from syndicator.service.systemd import Notifier
from syndicator.state import coordination
from syndicator.state.db import State
from syndicator.state.outbox import count_by_status, release_inflight
from syndicator.web.app import Health, create_app, serve
from syndicator.web.filter_feeds import ReaderFeeds, cache_seconds
from syndicator.web.polling import PollLimit
from syndicator.web.subscriptions import SubscriptionPages

log = logging.getLogger(__name__)

MAIL_INTERVAL = 60  # seconds between digest and retry checks
STOP_TIMEOUT = 30.0  # seconds the work in flight may take to finish after SIGTERM


class Coalescing:
    """Runs ``job`` once at a time: asking while it runs (or waits) makes one more run,
    however often it was asked, so bursts queue instead of piling up or being refused."""

    def __init__(self, job: Callable[[], Awaitable[object]], stopping: Callable[[], bool]) -> None:
        self.job = job
        self.stopping = stopping
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        if self.stopping():
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self._again = True
        while self._again and not self.stopping():
            self._again = False
            await self.job()

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Service:
    """One running instance: its pipeline (configuration, state, clock), jobs, health and
    the HTTP server. ``clock`` gives the time for everything it does."""

    def __init__(
        self,
        config: Config,
        classifier: Classifier,
        state: State,
        *,
        clock: Callable[[], datetime],
        config_path: Path | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.pipeline = Pipeline(config, classifier, state, clock=clock)
        self.clock = clock
        self.state = state
        self.config_path = config_path or config.source
        self.notifier = notifier or Notifier()
        self.health = Health(interval=float(config.store.reload_interval))
        self.metrics = Metrics()
        self.busy = asyncio.Lock()
        # Held while a heartbeat is being written: the shutdown waits for it instead of
        # letting the scheduler cancel it in the middle.
        self._beating = asyncio.Lock()
        self.wake = asyncio.Event()
        self.stopping = False
        self.reload_requested = False
        self.interrupts = 0
        # A second SIGINT: stop without waiting for the work in flight.
        self.forced = asyncio.Event()
        self._working: asyncio.Task[Any] | None = None
        self.scheduler: Any = None
        self._runner: web.AppRunner | None = None
        self._listen = ""
        self._secret = b""
        self._pages: tuple[Config, Classifier, PageOnDemand] | None = None
        self._feeds: ReaderFeeds | None = None
        self._subscriptions: SubscriptionPages | None = None
        if config.service.instance_id:
            state.instance_id = config.service.instance_id
        self.instance_id = state.instance_id
        self.roles = config.service.roles
        # The scheduler and the pages only ask for runs; these run them one at a time.
        self._cycles = Coalescing(self.cycle, lambda: self.stopping)
        self._mails = Coalescing(self.mail, lambda: self.stopping)

    @property
    def config(self) -> Config:
        return self.pipeline.config

    @property
    def classifier(self) -> Classifier:
        return self.pipeline.classifier

    # --- signals: flags only ---------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested = True
        else:
            if signum == signal.SIGINT:
                self.interrupts += 1
                if self.interrupts > 1:
                    log.warning("second SIGINT: abandoning the work in flight")
                    self.forced.set()
                    # Its messages stay in 'sending' and go out again at the next start; a
                    # cycle's worker thread still finishes its own transaction.
                    if self._working is not None and not self._working.done():
                        self._working.cancel()
            self.stopping = True
        self.wake.set()

    # --- jobs ------------------------------------------------------------------------------

    async def cycle(self) -> CycleResult | None:
        """Reload, publish, match and queue (in a worker thread), then deliver."""
        if self.stopping:
            return None
        async with self.busy:
            if self.stopping:  # asked to stop while waiting for the work in flight
                return None
            self._working = asyncio.current_task()
            try:
                return await self._cycle()
            finally:
                self._working = None

    async def _cycle(self) -> CycleResult | None:
        started = time.perf_counter()
        try:
            if "cycle" in self.roles:
                result = await asyncio.to_thread(self.pipeline.cycle, now=self.clock())
            else:
                # The store and the queue are other instances' work; this one publishes
                # its own files when they fall behind the database.
                result = await asyncio.to_thread(self.pipeline.catch_up)
        except SyndicatorError as exc:
            log.error("cycle failed: %s", exc)
            self._record(ok=False, started=started, error=str(exc))
            return None
        except Exception as exc:
            log.exception("cycle failed")
            self._record(ok=False, started=started, error=repr(exc))
            return None
        report = await self._deliver()
        duration = time.perf_counter() - started
        if result.skipped:
            log.info(
                "cycle: %s; mail %s sent, %s to retry, %s failed",
                result.summary(),
                report.sent,
                report.retry,
                report.failed,
            )
            self._record(ok=not result.publish_error, started=started, error=result.publish_error)
            return result
        line = (
            f"{result.summary()}; mail {report.sent} sent, {report.retry} to retry, "
            f"{report.failed} failed; {duration:.2f}s"
        )
        log.info("cycle: %s", line)
        self.notifier.status(line[:200])
        self._record(
            ok=not result.publish_error,
            started=started,
            articles=result.reload.articles,
            feeds_written=len(result.publish.written) if result.publish else 0,
            error=result.publish_error,
        )
        return result

    async def mail(self) -> None:
        """Queue the digests that fell due, then deliver what is due."""
        if self.stopping:
            return
        async with self.busy:
            if self.stopping:
                return
            self._working = asyncio.current_task()
            try:
                await self._mail()
            finally:
                self._working = None

    async def _mail(self) -> None:
        try:
            queued = (
                await asyncio.to_thread(self.pipeline.queue_mail, now=self.clock())
                if "cycle" in self.roles
                else []
            )
        except SyndicatorError as exc:
            log.error("queueing mail failed: %s", exc)
            return
        report = await self._deliver()
        if queued or report.sent or report.retry or report.failed:
            log.info(
                "mail: %s queued, %s sent, %s to retry, %s failed",
                len(queued),
                report.sent,
                report.retry,
                report.failed,
            )

    async def _deliver(self) -> DeliveryReport:
        if "deliver" not in self.roles:
            return DeliveryReport()
        try:
            report = await self.pipeline.deliver(should_stop=lambda: self.stopping)
        except SyndicatorError as exc:
            log.error("delivery failed: %s", exc)
            return DeliveryReport()
        self.metrics.record_mail("sent", report.sent)
        self.metrics.record_mail("retry", report.retry)
        self.metrics.record_mail("failed", report.failed)
        with contextlib.suppress(SyndicatorError), self.state.engine.connect() as conn:
            self.metrics.set_outbox(count_by_status(conn))
        self._show_deliverability()
        return report

    def _show_deliverability(self) -> None:
        """Bounces, complaints and the breaker's state, into /metrics and /healthz."""
        from syndicator.mail import breaker  # noqa: PLC0415

        try:
            now = breaker.snapshot(self.state, self.config.bounces.window)
        except SyndicatorError as exc:
            log.error("cannot read bounce statistics: %s", exc)
            return
        self.metrics.set_deliverability(
            now.counts,
            bounce_rate=now.rates.bounce_rate,
            complaint_rate=now.rates.complaint_rate,
            paused=now.paused is not None,
        )
        self.health.mail_paused = now.paused or ""

    def _record(
        self,
        *,
        ok: bool,
        started: float,
        articles: int | None = None,
        feeds_written: int = 0,
        error: str = "",
    ) -> None:
        finished = self.clock()
        count = self.health.articles if articles is None else articles
        self.health.record(ok, finished, articles=count, error=error)
        self.metrics.record_cycle(
            ok=ok,
            duration=time.perf_counter() - started,
            articles=count,
            feeds_written=feeds_written,
            finished_at=finished,
        )

    async def _watch(self) -> None:
        """store.watch: a cycle as soon as the store changes (debounced), besides the interval."""
        path = self.config.store.path
        try:
            async for changes in awatch(path, debounce=1000, recursive=True):
                log.debug("store changed (%s paths): cycling now", len(changes))
                if self.scheduler is not None and not self.stopping:
                    self.scheduler.modify_job("cycle", next_run_time=self.clock())
        except (OSError, RuntimeError) as exc:
            log.warning("cannot watch %s (%s); the interval still applies", path, exc)

    async def _watchdog(self) -> None:
        # A coroutine, run in the event loop: never in the middle of something when the
        # scheduler shuts down (it cancels the jobs it still runs).
        self.notifier.watchdog()

    async def _heartbeat(self) -> None:
        """Beat this instance's heartbeat; note who else is alive (health, metrics)."""
        if self.stopping:
            return
        async with self._beating:
            now = self.clock()
            try:
                found = await asyncio.to_thread(self._beat, now)
            except SyndicatorError as exc:
                log.warning("heartbeat failed: %s", exc)
                return
        period = timedelta(seconds=self.config.service.heartbeat_seconds)
        live = [instance for instance in found if instance.alive(now, period)]
        by_role = {
            role: sum(role in instance.roles for instance in live) for role in coordination.ROLES
        }
        self.metrics.set_instances(by_role)
        self.health.cycle_instances = by_role["cycle"]

    def _beat(self, now: datetime) -> list[coordination.InstanceRecord]:
        coordination.heartbeat(self.state, self.instance_id, now=now)
        with self.state.engine.connect() as conn:
            return coordination.instances(conn)

    def _mail_soon(self) -> None:
        """A subscription page queued a mail: run the mail job now, not at its next minute."""
        self._mails.request()

    async def _cycle_due(self) -> None:
        """The scheduler's cycle job: ask for a cycle and return at once. A job that waited
        for the work in flight would meet its one-instance limit and log a warning."""
        self._cycles.request()

    async def _mail_due(self) -> None:
        self._mails.request()

    # --- HTTP ------------------------------------------------------------------------------

    def _subscription_pages(self, config: Config, classifier: Classifier) -> SubscriptionPages:
        """The subscription pages, made once and reconfigured by a reload."""
        settings = SignupSettings.from_config(config, names_from(classifier))
        if self._subscriptions is None:
            self._subscriptions = SubscriptionPages(
                SignupDesk(self.state, self._secret, self.clock, settings),
                enabled=config.web.subscribe,
                on_queued=self._mail_soon,
            )
        else:
            self._subscriptions.reconfigure(settings, enabled=config.web.subscribe)
        return self._subscriptions

    def _reader_feeds(self, config: Config, classifier: Classifier) -> ReaderFeeds:
        """Filter and private feeds, made once and reconfigured by a reload."""
        site, names = site_from_config(config), names_from(classifier)
        max_items, seconds = config.feeds.max_items, cache_seconds(config)
        if self._feeds is None:
            self._feeds = ReaderFeeds(
                self.state,
                site=site,
                names=names,
                max_items=max_items,
                secret=self._secret,
                cache_seconds=seconds,
            )
        else:
            self._feeds.reconfigure(
                site=site, names=names, max_items=max_items, cache_seconds=seconds
            )
        return self._feeds

    async def _serve(self, config: Config) -> web.AppRunner:
        polls = (
            PollLimit(
                config.feeds.polls_per_interval,
                config.store.reload_interval,
                trust_forwarded_for=config.web.trust_forwarded_for,
            )
            if config.feeds.polls_per_interval
            else None
        )
        app = create_app(
            reader_feeds=self._reader_feeds(config, self.classifier),
            cache_seconds=cache_seconds(config),
            polls=polls,
            output_dir=config.feeds.output_dir,
            health=self.health,
            metrics=self.metrics,
            clock=self.clock,
            unsubscribe=UnsubscribeDesk(self.state, self._secret, self.clock),
            subscriptions=self._subscription_pages(config, self.classifier),
            site_title=config.site.title,
            language=config.site.language,
            base_path=urlsplit(config.site.base_url).path or "/",
            write_page=self._write_page,
        )
        runner = await serve(app, config.http.host, config.http.port)
        log.info("serving http://%s/", config.http.listen)
        return runner

    # --- reload ----------------------------------------------------------------------------

    def _write_page(self, article_id: str) -> bool:
        """Write an article's page on request, with the configuration running now."""
        config, classifier = self.config, self.classifier
        if self._pages is None or self._pages[0] is not config or self._pages[1] is not classifier:
            self._pages = (config, classifier, self.pipeline.page_writer())
        return self._pages[2].write(article_id)

    async def reload(self) -> None:
        """Re-read the configuration; apply it if valid, keep the running one if not."""
        self.notifier.reloading()
        path = self.config_path
        try:
            if path is None:
                raise SyndicatorError("no configuration file to re-read")
            config = await asyncio.to_thread(load_config, path)
            classifier = await asyncio.to_thread(
                Classifier.load,
                config.classify.regions,
                config.classify.topics,
                config.classify.corrections,
            )
        except SyndicatorError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready("reload failed; running the previous configuration")
            return
        async with self.busy:
            if config.state.url != self.config.state.url:
                log.warning("state.url changed: that takes effect at the next restart")
                config = config.model_copy(update={"state": self.config.state})
            previous = self.config
            self.pipeline.configure(config, classifier)
            self.health.interval = float(config.store.reload_interval)
            if self._subscriptions is not None:
                self._subscription_pages(config, classifier)
            if self._feeds is not None:
                self._reader_feeds(config, classifier)
            try:
                await self._rebind(previous, config)
            except SyndicatorError as exc:
                log.error("%s; still serving on %s", exc, previous.http.listen)
        self.scheduler.reschedule_job(
            "cycle", trigger="interval", seconds=config.store.reload_interval
        )
        # A cycle right away applies the rest: store, feeds, subscribers file.
        self.scheduler.modify_job("cycle", next_run_time=self.clock())
        log.info("configuration reloaded from %s", path)
        self.notifier.ready("configuration reloaded")

    def _serves_http(self, config: Config) -> bool:
        return config.http.enabled and "web" in self.roles

    async def _rebind(self, previous: Config, config: Config) -> None:
        same = (previous.http.enabled, previous.http.listen) == (
            config.http.enabled,
            config.http.listen,
        )
        if same and self._runner is not None:
            return
        old = self._runner
        self._runner = await self._serve(config) if self._serves_http(config) else None
        if old is not None:
            await old.cleanup()

    # --- the main task ---------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            coordination.register_instance(
                self.state, self.instance_id, self.roles, now=self.clock()
            )
            with self.state.transaction() as conn:
                recovered = release_inflight(conn, me=self.instance_id)
            if recovered:
                log.warning("%s messages were in flight at the last stop; sending again", recovered)
            self._secret = load_secret(self.state, self.config.mail.unsubscribe_secret_file)
            if self._serves_http(self.config):
                self._runner = await self._serve(self.config)
            await self._heartbeat()
            # In a task of its own, which a second SIGINT may cancel.
            first = asyncio.create_task(self.cycle())
            await asyncio.wait({first})
            if not first.cancelled():
                first.result()
            self.notifier.ready(f"running; {self.health.articles} articles")
            self._start_scheduler()
            if not self.stopping:
                await self._prime()
            watcher = asyncio.create_task(self._watch()) if self.config.store.watch else None
            while not self.stopping:
                await self.wake.wait()
                self.wake.clear()
                if self.reload_requested and not self.stopping:
                    self.reload_requested = False
                    await self.reload()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        finally:
            await self._shutdown()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        if self.forced.is_set():
            log.info("stopped (interrupted twice)")
            return 130
        log.info("stopped")
        return 0

    async def _prime(self) -> None:
        """Load the article catalogue publishing keeps, unless the first cycle did."""
        async with self.busy:
            try:
                await asyncio.to_thread(self.pipeline.prime)
            except SyndicatorError as exc:
                log.warning("cannot load the article catalogue yet: %s", exc)

    def _start_scheduler(self) -> None:
        interval = self.config.store.reload_interval
        if not log.isEnabledFor(logging.DEBUG):
            # "Running job ..." and "... executed successfully" for every run: the cycle
            # logs one line of its own. Its warnings and errors still come through.
            logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,  # many missed runs: run once
                "max_instances": 1,  # never overlap a job with itself
                "misfire_grace_time": max(interval, MAIL_INTERVAL),  # late is better than never
            },
        )
        self.scheduler.add_job(
            self._cycle_due,
            "interval",
            seconds=interval,
            id="cycle",
            next_run_time=self.clock() + timedelta(seconds=interval),
        )
        self.scheduler.add_job(self._mail_due, "interval", seconds=MAIL_INTERVAL, id="mail")
        self.scheduler.add_job(
            self._heartbeat,
            "interval",
            seconds=self.config.service.heartbeat_seconds,
            id="heartbeat",
        )
        if self.notifier.watchdog_interval:
            self.scheduler.add_job(
                self._watchdog,
                "interval",
                seconds=self.notifier.watchdog_interval,
                id="watchdog",
                next_run_time=self.clock(),
            )
        self.scheduler.start()

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        self.stopping = True
        if self.scheduler is not None and self.scheduler.running:
            # No new runs; the run in flight is not cancelled by the scheduler but sees
            # ``stopping``.
            self.scheduler.pause()
        # Let the work in flight finish (a second SIGINT has cancelled it); past the timeout,
        # abandon it (its messages stay in 'sending' under this instance's lease and go out
        # again, with the same Message-ID, at the next start or when the lease expires).
        try:
            await asyncio.wait_for(self.busy.acquire(), timeout=STOP_TIMEOUT)
        except TimeoutError:
            log.warning("work still running after %ss: abandoning it", STOP_TIMEOUT)
        else:
            self.busy.release()
        if self.scheduler is not None and self.scheduler.running:
            # The scheduler's shutdown cancels the jobs still running: let a heartbeat in
            # flight finish first (it logs its own failure; cancelled, it would be logged
            # with a traceback).
            try:
                await asyncio.wait_for(self._beating.acquire(), timeout=STOP_TIMEOUT)
            except TimeoutError:
                log.warning("heartbeat still running after %ss: abandoning it", STOP_TIMEOUT)
            else:
                self._beating.release()
            self.scheduler.shutdown(wait=False)
        # Runs asked for and not started were waiting for the work above: drop them.
        await self._cycles.cancel()
        await self._mails.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(SyndicatorError):
            await asyncio.to_thread(coordination.unregister_instance, self.state, self.instance_id)
        self.state.close()


def run_service(
    config: Config, classifier: Classifier, state: State, *, clock: Callable[[], datetime]
) -> int:
    return asyncio.run(Service(config, classifier, state, clock=clock).run())
