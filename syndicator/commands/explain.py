"""``explain ID_OR_TITLE``: why an article has its regions and topics."""

from __future__ import annotations

import argparse

from syndicator.classify.classifier import GLOBAL, Classification, Classifier
from syndicator.commands.common import EXIT_OK, classifier_of, load
from syndicator.config import Config
from syndicator.errors import NotFoundError
from syndicator.state import lookup


def cmd_explain(args: argparse.Namespace) -> int:
    config = load(args)
    classifier = classifier_of(config)
    found = lookup.find_articles(config.state.url, args.article)
    if found is None:
        from syndicator.state.db import State  # noqa: PLC0415

        state = State.open(config.state.url)
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
    from syndicator.store.files import read_file, scan  # noqa: PLC0415

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
    correction = classifier.corrections.find(article_id, title)
    corrected = ""
    if correction is not None:
        where = correction.where(classifier.corrections.path)
        corrected = f"set by a correction, {where}" + (
            f": {correction.note}" if correction.note else ""
        )
    named = ", ".join(f"{slug} ({regions[slug].name})" for slug in result.regions)
    if correction is not None and correction.regions is not None:
        lines.append(f"regions: {', '.join(correction.regions)} ({corrected})")
        lines.append(f"  classification alone: {named} — {result.region_reason}")
    elif front_regions is not None:
        lines.append(f"regions: {', '.join(front_regions)} (set in front matter)")
    else:
        lines.append(f"regions: {named} — {result.region_reason}")
    lines.append(f"  margin: {result.margin:g}")
    for reason in result.doubts:
        lines.append(f"  review: {reason}")
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
    if correction is not None and correction.topics is not None:
        lines.append(f"topics: {', '.join(correction.topics) or '-'} ({corrected})")
        lines.append(f"  classification alone: {', '.join(result.topics) or '-'}")
    elif front_topics is not None:
        lines.append(f"topics: {', '.join(front_topics) or '-'} (set in front matter)")
    else:
        lines.append(f"topics: {', '.join(result.topics) or '-'}")
    for mention in result.topic_mentions:
        chosen = mention.cue.target in result.topics
        kind = "weak cue" if mention.cue.kind == "weak" else "cue"
        if mention.role:
            kind = f"{kind}, {mention.role}"
        lines.append(
            f"  {mention.field:5}  {mention.text!r:32} {mention.cue.target:22} {kind}, "
            f"weight {mention.weight:g}{'' if chosen else ' (not enough alone)'}"
        )
    return "\n".join(lines)
