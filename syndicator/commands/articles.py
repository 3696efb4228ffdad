"""``articles``: the articles known to the state database."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syndicator.commands.common import EXIT_OK, classifier_of, load
from syndicator.errors import NotFoundError
from syndicator.models import REGION_SLUGS, Article
from syndicator.state import lookup

if TYPE_CHECKING:
    from syndicator.classify.classifier import Classifier


def cmd_articles(args: argparse.Namespace) -> int:
    config = load(args)
    if args.region and args.region not in REGION_SLUGS:
        raise NotFoundError(
            f"unknown region {args.region!r}", hint=f"known regions: {', '.join(REGION_SLUGS)}"
        )
    if args.topic:
        # Only a topic needs the taxonomy, and only the articles to review the classifier.
        from syndicator.classify.taxonomy import Taxonomy  # noqa: PLC0415

        taxonomy = Taxonomy.load(config.classify.topics)
        if args.topic not in taxonomy.topics:
            raise NotFoundError(
                f"unknown topic {args.topic!r}",
                hint=f"known topics: {', '.join(taxonomy.topics)}",
            )
    classifier = classifier_of(config) if args.uncertain else None
    articles = lookup.articles(config.state.url, region=args.region, topic=args.topic)
    if articles is None:
        from syndicator.state.db import State  # noqa: PLC0415

        state = State.open(config.state.url)
        try:
            articles = state.articles(region=args.region, topic=args.topic)
        finally:
            state.close()
    doubts: dict[str, tuple[float, tuple[str, ...]]] = {}
    if args.uncertain and classifier is not None:
        doubts = _doubts_of(classifier, articles)
        articles = [article for article in articles if article.id in doubts]
    if args.json:
        entries = [article.as_json() for article in articles]
        if args.uncertain:
            for article, entry in zip(articles, entries, strict=True):
                entry["margin"], reasons = doubts[article.id]
                entry["doubts"] = list(reasons)
        json.dump(entries, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not articles:
        filtered = args.region or args.topic or args.uncertain
        print(
            "no articles" + (" match" if filtered else " yet: run `syndicator run --once`"),
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
        for reason in doubts.get(article.id, (0.0, ()))[1]:
            print(f"    review: {reason}")
    print(f"{len(articles)} article{'s' if len(articles) != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _doubts_of(
    classifier: Classifier, articles: Sequence[Article]
) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Margin and doubts of each article whose regions classification decided (an article
    whose regions an editor set, by front matter or a correction, needs no review)."""
    found = {}
    for article in articles:
        correction = classifier.corrections.find(article.id, article.title)
        if correction is not None and correction.regions is not None:
            continue
        result = classifier.classify(article.title, article.body)
        if result.doubts and tuple(article.regions) == result.regions:
            found[article.id] = (result.margin, result.doubts)
    return found
