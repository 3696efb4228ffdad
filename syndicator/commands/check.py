"""``check``: validate the configuration, the classifier's files, subscribers and the store."""

from __future__ import annotations

import argparse

from syndicator.classify.classifier import Classifier
from syndicator.commands.common import EXIT_OK, EXIT_PROBLEMS, classifier_of, load
from syndicator.errors import SyndicatorError
from syndicator.mail.subscribers import load_subscribers
from syndicator.models import RawArticle, derive_id
from syndicator.store.files import read_file, scan


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args)
    problems: list[str] = []
    try:
        classifier: Classifier | None = classifier_of(config)
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
    if classifier is not None:
        problems.extend(classifier.corrections.problems)
        path = classifier.corrections.path
        known = set(ids) | {derive_id(article.title) for article in ids.values()}
        for correction in classifier.corrections.unknown(known):
            problems.append(
                f"{path}:{correction.line}: correction for {correction.article!r} names no "
                "article of the store (check its id or title)"
            )
    if config.mail.dkim.enabled:
        from syndicator.mail.dkim import dns_name, dns_record, load_key  # noqa: PLC0415

        try:
            dkim_key = load_key(config.mail.dkim)
        except SyndicatorError as exc:
            problems.append(f"{config.source}: {exc}")
        else:
            print(
                f"DKIM: {dkim_key.algorithm}, {dkim_key.bits} bits; publish this TXT record:\n"
                f'{dns_name(config.mail.dkim)}. IN TXT "{dns_record(dkim_key)}"'
            )
    for problem in problems:
        print(problem)
    for what, key, path, shipped in (
        ("gazetteer", "classify.regions", config.classify.regions, config.classify.shipped_regions),
        ("taxonomy", "classify.topics", config.classify.topics, config.classify.shipped_topics),
    ):
        print(f"{what}: {path} ({'shipped with syndicator' if shipped else 'from ' + key})")
    summary = (
        f"{config.source}: {len(scanned.files)} store files, {article_count} articles, "
        f"{len(subscribers)} subscribers"
    )
    if problems:
        print(f"{summary}; {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        return EXIT_PROBLEMS
    print(f"{summary}; no problems")
    return EXIT_OK
