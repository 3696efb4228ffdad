"""The ``syndicator`` command line: parse arguments, call the application, print, exit.

Exit codes: 0 success, 1 problems found or the command failed, 2 usage error.
Errors print one line saying what is wrong and how to fix it; ``-v`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from syndicator import __version__
from syndicator.classify.classifier import GLOBAL, Classification, Classifier
from syndicator.config import Config, default_config_path, load_config
from syndicator.cycle import deliver_due, load_subscribers_file, names_from, run_cycle
from syndicator.errors import NotFoundError, SyndicatorError
from syndicator.mail import outbox
from syndicator.mail.mailer import Mailer
from syndicator.mail.outbox import (
    add_subscriber,
    recover_inflight,
    remove_subscriber,
    resubscribe,
    sync_subscribers,
)
from syndicator.mail.signup import open_requests
from syndicator.mail.subscribers import Subscriber, load_subscribers, load_subscribers_csv
from syndicator.mail.unsubscribe import load_secret
from syndicator.models import REGION_SLUGS, RawArticle
from syndicator.state.db import State
from syndicator.state.readers import rotated_private_feeds
from syndicator.store.files import read_file, scan

log = logging.getLogger("syndicator")

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


# --- plumbing ------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="configuration file (default: $SYNDICATOR_CONFIG, else "
        "/etc/syndicator/syndicator.toml, else ./config/syndicator.toml)",
    )
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="log lines as text (default) or one JSON object per line, for log shippers",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log more, and show tracebacks of errors",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="syndicator",
        description="Per-region and per-topic feeds and email digests for customs news.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"syndicator {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the service: a cycle every store.reload_interval, and the HTTP server",
        description="Run the service: reload the store and publish feeds every "
        "store.reload_interval seconds, and serve them over HTTP (http.listen), until SIGTERM "
        "or SIGINT. With --once, run one full cycle and exit.",
    )
    run.add_argument("--once", action="store_true", help="run one full cycle, then exit")
    run.set_defaults(handler=cmd_run)

    feeds = commands.add_parser(
        "feeds",
        parents=[common],
        help="reload the store and publish the feeds once; send no mail",
        description="Reload the store and publish every feed, the index page, the OPML file "
        "and the article pages into feeds.output_dir. Only files whose content changed are "
        "rewritten. No mail is sent.",
    )
    feeds.set_defaults(handler=cmd_feeds)

    subscribers = commands.add_parser(
        "subscribers",
        parents=[common],
        help="list, add, remove, import or resubscribe subscribers",
        description="Manage subscribers. Entries of the subscribers file are synced into state "
        "at every cycle (and before these commands); entries added here live in state only.",
    )
    actions = subscribers.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", parents=[common], help="list subscribers with status and filters"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=cmd_subscribers_list)
    adding = actions.add_parser("add", parents=[common], help="add or update a subscriber")
    adding.add_argument("email")
    adding.add_argument("--name", default="")
    adding.add_argument("--region", action="append", default=[], dest="regions")
    adding.add_argument("--topic", action="append", default=[], dest="topics")
    adding.add_argument("--keyword", action="append", default=[], dest="keywords")
    adding.add_argument("--exclude-region", action="append", default=[], dest="exclude_regions")
    adding.add_argument("--exclude-topic", action="append", default=[], dest="exclude_topics")
    adding.add_argument(
        "--cadence", choices=("immediate", "daily", "weekly", "feed"), default="daily"
    )
    adding.add_argument("--hour", type=int, default=8)
    adding.add_argument("--weekday", default="mon")
    adding.add_argument("--timezone", default="UTC")
    adding.set_defaults(handler=cmd_subscribers_add)
    removing = actions.add_parser(
        "remove", parents=[common], help="remove a subscriber added with `add` or `import`"
    )
    removing.add_argument("email")
    removing.set_defaults(handler=cmd_subscribers_remove)
    importing = actions.add_parser(
        "import", parents=[common], help="add subscribers from a TOML or CSV file"
    )
    importing.add_argument("file", type=Path, help="[[subscriber]] TOML, or CSV with a header")
    importing.set_defaults(handler=cmd_subscribers_import)
    again = actions.add_parser(
        "resubscribe", parents=[common], help="lift an unsubscribe or a suspension"
    )
    again.add_argument("email")
    again.set_defaults(handler=cmd_subscribers_resubscribe)

    preview = commands.add_parser(
        "preview",
        parents=[common],
        help="print the next mail for a subscriber; change nothing",
        description="Print the next message a subscriber would receive (the articles matched "
        "for them and not yet sent), as it would be sent. Changes nothing.",
    )
    preview.add_argument("email")
    preview.set_defaults(handler=cmd_preview)

    check = commands.add_parser(
        "check",
        parents=[common],
        help="validate configuration, gazetteer, taxonomy, subscribers and every store file",
        description="Validate the configuration, the gazetteer, the taxonomy, the subscribers "
        "file and every file of the article store. Lists every problem; exit status 1 if any.",
    )
    check.set_defaults(handler=cmd_check)

    articles = commands.add_parser(
        "articles",
        parents=[common],
        help="list known articles with their regions, topics and dates",
        description="List the articles known to the state database, newest first.",
    )
    articles.add_argument("--region", metavar="R", help="only articles of region R")
    articles.add_argument("--topic", metavar="T", help="only articles of topic T")
    articles.add_argument("--json", action="store_true", help="print a JSON array")
    articles.set_defaults(handler=cmd_articles)

    explain = commands.add_parser(
        "explain",
        parents=[common],
        help="show why each region and topic was assigned to an article",
        description="Show the cues behind each region and topic of an article: the words "
        "matched, where, their role (subject, funder, venue ...) and weight.",
    )
    explain.add_argument("article", metavar="ID_OR_TITLE", help="an article id or part of a title")
    explain.set_defaults(handler=cmd_explain)
    return parser


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(verbose: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        # journald adds its own timestamps.
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _load(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or default_config_path()
    return load_config(path)


def _classifier(config: Config) -> Classifier:
    return Classifier.load(config.classify.regions, config.classify.topics)


def _open(args: argparse.Namespace) -> tuple[Config, Classifier, State]:
    """Configuration, classifier and an open state database (the caller closes it)."""
    config = _load(args)
    classifier = _classifier(config)
    return config, classifier, State.open(config.state.url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    _setup_logging(verbose, getattr(args, "log_format", "text"))
    try:
        result: int = args.handler(args)
    except SyndicatorError as exc:
        if verbose:
            log.exception("failed")
        print(f"syndicator: error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `syndicator articles | head`).
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        # A file or directory the configuration names cannot be written or read.
        if verbose:
            log.exception("failed")
        where = f": {exc.filename}" if exc.filename else ""
        print(f"syndicator: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_PROBLEMS
    return result


# --- commands ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config, classifier, state = _open(args)
    try:
        if args.once:
            with state.transaction() as conn:
                recovered = recover_inflight(conn)
            if recovered:
                log.warning("%s messages were in flight at the last stop; sending again", recovered)
            result = run_cycle(config, classifier, state, now=datetime.now(UTC))
            log.info("cycle: %s", result.summary())
            report = asyncio.run(deliver_due(config, state, clock=lambda: datetime.now(UTC)))
            log.info(
                "mail: %s sent, %s to retry, %s failed", report.sent, report.retry, report.failed
            )
            return EXIT_PROBLEMS if result.publish_error else EXIT_OK
        # Imported here: the service's HTTP server and scheduler are not needed for one cycle.
        from syndicator.service.daemon import run_service  # noqa: PLC0415

        return run_service(config, classifier, state)
    finally:
        state.close()


def cmd_feeds(args: argparse.Namespace) -> int:
    config, classifier, state = _open(args)
    try:
        result = run_cycle(config, classifier, state, now=datetime.now(UTC))
    finally:
        state.close()
    if result.publish_error:
        print(f"syndicator: error: {result.publish_error}", file=sys.stderr)
        return EXIT_PROBLEMS
    written = result.publish.written if result.publish else []
    print(
        f"{config.feeds.output_dir}: {len(written)} files written, "
        f"{result.reload.articles} articles"
    )
    return EXIT_OK


def _subscriber_state(args: argparse.Namespace) -> tuple[Config, Classifier, State]:
    """Configuration, classifier and state, with the subscribers file synced."""
    config, classifier, state = _open(args)
    listed, problems, held = load_subscribers_file(config, classifier)
    for problem in problems:
        print(problem, file=sys.stderr)
    if listed is not None:
        with state.transaction() as conn:
            sync_subscribers(conn, listed, now=datetime.now(UTC), held=held)
    return config, classifier, state


def cmd_subscribers_list(args: argparse.Namespace) -> int:
    config, _classifier, state = _subscriber_state(args)
    try:
        with state.engine.connect() as conn:
            records = outbox.subscribers(conn)
            requests = open_requests(
                conn,
                now=datetime.now(UTC),
                ttl=timedelta(hours=config.web.confirm_ttl_hours),
            )
    finally:
        state.close()
    # Web requests waiting for confirmation are listed too, as "pending": they receive
    # nothing but the confirmation mail until then.
    rows: list[dict[str, Any]] = [
        {
            "email": r.email,
            "name": r.name,
            "status": r.status,
            "source": r.source,
            "cadence": r.cadence,
            "regions": list(r.regions),
            "topics": list(r.topics),
            "keywords": list(r.keywords),
            "exclude_regions": list(r.exclude_regions),
            "exclude_topics": list(r.exclude_topics),
            "next_digest_at": r.next_digest_at.isoformat() if r.next_digest_at else None,
            "permanent_failures": r.permanent_failures,
            "added_at": r.added_at.isoformat(),
        }
        for r in records
    ]
    rows += [
        {
            "email": request.email,
            "name": request.subscriber.name,
            "status": "pending",
            "source": outbox.FROM_WEB,
            "cadence": request.subscriber.cadence,
            "regions": list(request.subscriber.regions),
            "topics": list(request.subscriber.topics),
            "keywords": list(request.subscriber.keywords),
            "exclude_regions": list(request.subscriber.exclude_regions),
            "exclude_topics": list(request.subscriber.exclude_topics),
            "next_digest_at": None,
            "permanent_failures": 0,
            "added_at": request.requested_at.isoformat(),
        }
        for request in requests
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for row in rows:
        when = row["cadence"]
        if row["next_digest_at"]:
            when += f", next {datetime.fromisoformat(row['next_digest_at']):%Y-%m-%d %H:%M} UTC"
        filters = "; ".join(
            f"{label} {', '.join(row[key])}"
            for label, key in (
                ("regions", "regions"),
                ("topics", "topics"),
                ("keywords", "keywords"),
                ("not regions", "exclude_regions"),
                ("not topics", "exclude_topics"),
            )
            if row[key]
        )
        failures = f", {row['permanent_failures']} failures" if row["permanent_failures"] else ""
        print(
            f"{row['email']:40} {row['status']:12} {row['source']:4} {when}{failures}\n"
            f"    {filters or 'everything'}"
        )
    print(f"{len(rows)} subscriber{'s' if len(rows) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _subscriber_from_args(args: argparse.Namespace) -> Subscriber:
    try:
        return Subscriber.model_validate(
            {
                key: getattr(args, key)
                for key in (
                    "email",
                    "name",
                    "regions",
                    "topics",
                    "keywords",
                    "exclude_regions",
                    "exclude_topics",
                    "cadence",
                    "hour",
                    "weekday",
                    "timezone",
                )
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise SyndicatorError(f"{field}: {first['msg'].removeprefix('Value error, ')}") from exc


def cmd_subscribers_add(args: argparse.Namespace) -> int:
    subscriber = _subscriber_from_args(args)
    _config, classifier, state = _subscriber_state(args)
    try:
        unknown = [
            t
            for t in subscriber.topics + subscriber.exclude_topics
            if t not in classifier.taxonomy.topics
        ]
        if unknown:
            raise NotFoundError(
                f"unknown topic {unknown[0]!r}",
                hint=f"known topics: {', '.join(classifier.taxonomy.topics)}",
            )
        with state.transaction() as conn:
            outcome = add_subscriber(conn, subscriber, now=datetime.now(UTC))
    finally:
        state.close()
    print(f"{subscriber.email}: {outcome}")
    return EXIT_OK


def cmd_subscribers_remove(args: argparse.Namespace) -> int:
    state = _subscriber_state(args)[2]
    try:
        with state.transaction() as conn:
            remove_subscriber(conn, args.email)
    finally:
        state.close()
    print(f"{args.email}: removed")
    return EXIT_OK


def cmd_subscribers_resubscribe(args: argparse.Namespace) -> int:
    state = _subscriber_state(args)[2]
    try:
        with state.transaction() as conn:
            resubscribe(conn, args.email, now=datetime.now(UTC))
    finally:
        state.close()
    print(f"{args.email}: subscribed again (only articles seen from now on)")
    return EXIT_OK


def cmd_subscribers_import(args: argparse.Namespace) -> int:
    _config, classifier, state = _subscriber_state(args)
    known_topics = set(classifier.taxonomy.topics)
    if args.file.suffix.lower() == ".csv":
        listed, errors = load_subscribers_csv(args.file, known_topics)
    else:
        listed, errors = load_subscribers(args.file, known_topics)
    for error in errors:
        print(error, file=sys.stderr)
    counts: dict[str, int] = {}
    try:
        for subscriber in listed:
            try:
                with state.transaction() as conn:
                    outcome = add_subscriber(conn, subscriber, now=datetime.now(UTC))
            except SyndicatorError as exc:
                print(f"{args.file}: {exc}", file=sys.stderr)
                outcome = "skipped"
            counts[outcome] = counts.get(outcome, 0) + 1
    finally:
        state.close()
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    print(f"{args.file}: {summary or 'nothing imported'}")
    return EXIT_PROBLEMS if errors or counts.get("skipped") else EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    config, classifier, state = _open(args)
    try:
        with state.engine.connect() as conn:
            record = outbox.find_subscriber(conn, args.email)
            articles = outbox.pending_articles(conn, record.id) if record else []
        if record is None:
            raise NotFoundError(
                f"no subscriber {args.email!r} in state",
                hint="entries of the subscribers file are added at the next cycle",
            )
        if not articles:
            due = (
                f"; the next {record.cadence} digest is due "
                f"{record.next_digest_at:%Y-%m-%d %H:%M} UTC"
                if record.next_digest_at
                else ""
            )
            print(f"nothing waiting for {record.email} ({record.status}){due}", file=sys.stderr)
            return EXIT_OK
        with state.engine.connect() as conn:
            secret_row = state.get_meta(conn, "unsubscribe_secret")
            generations = rotated_private_feeds(conn)
        secret = (
            bytes.fromhex(secret_row)
            if secret_row and config.mail.unsubscribe_secret_file is None
            else load_secret(state, config.mail.unsubscribe_secret_file)
        )
    finally:
        state.close()
    mailer = Mailer(config, names_from(classifier), secret)
    mailer.feed_generations = generations
    _, message = mailer(record, articles, record.cadence, datetime.now(UTC))
    sys.stdout.write(message.decode("utf-8").replace("\r\n", "\n"))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args)
    problems: list[str] = []
    try:
        classifier: Classifier | None = _classifier(config)
    except SyndicatorError as exc:
        problems.append(str(exc))
        classifier = None
    if classifier is not None:
        for first, second in classifier.conflicts:
            problems.append(
                f"{config.classify.regions}: cue {second.phrase!r} means both "
                f"{first.target} ({first.entity}) and {second.target} ({second.entity}); "
                "the first is used"
            )
    known_topics = set(classifier.taxonomy.topics) if classifier else None
    subscribers, subscriber_errors = load_subscribers(config.subscribers.file, known_topics)
    problems.extend(str(error) for error in subscriber_errors)
    scanned = scan(config.store.path)
    problems.extend(str(error) for error in scanned.errors)
    article_count = 0
    ids: dict[str, RawArticle] = {}
    for item in scanned.files:
        articles, errors = read_file(item.path)
        problems.extend(str(error) for error in errors)
        for article in articles:
            if classifier is not None and article.topics is not None:
                unknown = [t for t in article.topics if t not in classifier.taxonomy.topics]
                if unknown:
                    problems.append(f"{article.location}: topics: unknown topic {unknown[0]!r}")
            if article.id in ids:
                problems.append(
                    f"{article.location}: duplicate article id {article.id!r} "
                    f"(first at {ids[article.id].location})"
                )
                continue
            ids[article.id] = article
            article_count += 1
    for problem in problems:
        print(problem)
    summary = (
        f"{config.source}: {len(scanned.files)} store files, {article_count} articles, "
        f"{len(subscribers)} subscribers"
    )
    if problems:
        print(f"{summary}; {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        return EXIT_PROBLEMS
    print(f"{summary}; no problems")
    return EXIT_OK


def cmd_articles(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.region and args.region not in REGION_SLUGS:
        raise NotFoundError(
            f"unknown region {args.region!r}", hint=f"known regions: {', '.join(REGION_SLUGS)}"
        )
    if args.topic:
        classifier = _classifier(config)
        if args.topic not in classifier.taxonomy.topics:
            raise NotFoundError(
                f"unknown topic {args.topic!r}",
                hint=f"known topics: {', '.join(classifier.taxonomy.topics)}",
            )
    state = State.open(config.state.url)
    try:
        articles = state.articles(region=args.region, topic=args.topic)
    finally:
        state.close()
    if args.json:
        json.dump([article.as_json() for article in articles], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not articles:
        print(
            "no articles"
            + (" match" if args.region or args.topic else " yet: run `syndicator run --once`"),
            file=sys.stderr,
        )
        return EXIT_OK
    for article in articles:
        print(
            f"{article.published:%Y-%m-%d %H:%M}  {article.title}\n"
            f"    id: {article.id}\n"
            f"    regions: {', '.join(article.regions)}; "
            f"topics: {', '.join(article.topics) or '-'}"
        )
    print(f"{len(articles)} article{'s' if len(articles) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    config, classifier, state = _open(args)
    try:
        found = state.find_articles(args.article)
    finally:
        state.close()
    candidates: list[tuple[str, str, str, tuple[str, ...] | None, tuple[str, ...] | None]] = [
        (article.id, article.title, article.body, None, None) for article in found
    ]
    if not candidates:
        candidates = _store_candidates(config, args.article)
    if not candidates:
        raise NotFoundError(
            f"no article with id or title matching {args.article!r}",
            hint="list them with `syndicator articles`",
        )
    if len(candidates) > 1:
        print(f"{len(candidates)} articles match; explaining the first. Others:")
        for other in candidates[1:6]:
            print(f"    {other[0]}")
        print()
    article_id, title, body, front_regions, front_topics = candidates[0]
    result = classifier.classify(title, body)
    print(
        _explanation(
            classifier,
            article_id=article_id,
            title=title,
            result=result,
            front_regions=front_regions,
            front_topics=front_topics,
        )
    )
    return EXIT_OK


def _store_candidates(
    config: Config, needle: str
) -> list[tuple[str, str, str, tuple[str, ...] | None, tuple[str, ...] | None]]:
    """Articles straight from the store, for articles state has not seen yet."""
    lowered = needle.lower()
    found = []
    for item in scan(config.store.path).files:
        for article in read_file(item.path)[0]:
            if article.id == needle or lowered in article.title.lower():
                found.append(
                    (article.id, article.title, article.body, article.regions, article.topics)
                )
    return found


def _explanation(
    classifier: Classifier,
    *,
    article_id: str,
    title: str,
    result: Classification,
    front_regions: tuple[str, ...] | None,
    front_topics: tuple[str, ...] | None,
) -> str:
    regions = classifier.gazetteer.regions
    lines = [f"{title}", f"id: {article_id}", ""]
    if front_regions is not None:
        lines.append(f"regions: {', '.join(front_regions)} (set in front matter)")
    else:
        named = ", ".join(f"{slug} ({regions[slug].name})" for slug in result.regions)
        lines.append(f"regions: {named} — {result.region_reason}")
    if result.region_scores:
        scores = ", ".join(f"{slug} {score:g}" for slug, score in result.region_scores.items())
        lines.append(f"  scores: {scores}")
    for mention in result.mentions:
        cue = mention.cue
        target = "neutral" if cue.target == "neutral" else cue.target
        what = cue.kind if cue.entity in {"", cue.phrase} else f"{cue.kind} of {cue.entity}"
        if mention.role:
            verdict = f"not counted: {mention.role} ({mention.trigger!r})"
        else:
            verdict = f"weight {mention.weight:g}"
        lines.append(f"  {mention.field:5}  {mention.text!r:32} {target:22} {what}; {verdict}")
    if not result.mentions and result.regions == (GLOBAL,):
        lines.append("  no place, grouping or agency is named")
    lines.append("")
    if front_topics is not None:
        lines.append(f"topics: {', '.join(front_topics) or '-'} (set in front matter)")
    else:
        lines.append(f"topics: {', '.join(result.topics) or '-'}")
    for mention in result.topic_mentions:
        chosen = mention.cue.target in result.topics
        kind = "weak cue" if mention.cue.kind == "weak" else "cue"
        lines.append(
            f"  {mention.field:5}  {mention.text!r:32} {mention.cue.target:22} {kind}, "
            f"weight {mention.weight:g}{'' if chosen else ' (not enough alone)'}"
        )
    return "\n".join(lines)
