"""``articles``: the articles known to the state database."""

from __future__ import annotations

import argparse
import json
import sys

from syndicator.classify.classifier import Taxonomy
from syndicator.commands.common import EXIT_OK, load
from syndicator.errors import NotFoundError
from syndicator.models import REGION_SLUGS
from syndicator.state.db import State


def cmd_articles(args: argparse.Namespace) -> int:
    config = load(args)
    if args.region and args.region not in REGION_SLUGS:
        raise NotFoundError(
            f"unknown region {args.region!r}", hint=f"known regions: {', '.join(REGION_SLUGS)}"
        )
    if args.topic:
        taxonomy = Taxonomy.load(config.classify.topics)
        if args.topic not in taxonomy.topics:
            raise NotFoundError(
                f"unknown topic {args.topic!r}",
                hint=f"known topics: {', '.join(taxonomy.topics)}",
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
