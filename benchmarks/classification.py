"""Classification throughput: the classifier against a bare Aho-Corasick pass.

Both read the same texts: the editor-labelled articles of ``tests/data`` and the
example store (real prose, with the names, roles and cues the rules weigh), and
as many synthetic articles again. The baseline builds one automaton of every
gazetteer and taxonomy phrase and walks each lower-cased article through it once,
which is the least any cue matcher must do; the classifier also normalises the
text, keeps whole words, gives every place a role and decides. The figure is that of
``decide`` (what reading a store runs); ``classify``, which also keeps the evidence for
``explain``, is shown beside it.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import ahocorasick

from benchmarks.generate import article_texts
from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS
from syndicator.store.files import read_file

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "tests" / "data", ROOT / "articles")


def texts(count: int) -> list[tuple[str, str]]:
    """``count`` (title, body) pairs: the labelled articles, then synthetic ones, repeated."""
    real: list[tuple[str, str]] = []
    for source in SOURCES:
        for path in sorted(source.rglob("*")):
            if path.suffix in {".txt", ".md"} and path.is_file():
                real.extend((a.title, a.body) for a in read_file(path)[0])
    pool = real + list(article_texts(len(real)))
    return [pool[number % len(pool)] for number in range(count)]


def _bare_automaton(classifier: Classifier) -> Any:
    automaton: Any = ahocorasick.Automaton()
    phrases = {cue.phrase.lower() for cue in classifier.gazetteer.cues}
    for topic in classifier.taxonomy.topics.values():
        phrases.update(cue.lower() for cue in (*topic.cues, *topic.weak_cues))
    for phrase in phrases:
        automaton.add_word(phrase, len(phrase))
    automaton.make_automaton()
    return automaton


def _best_of(repeat: int, work: Any) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def run(count: int, repeat: int = 3) -> dict[str, Any]:
    classifier = Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)
    articles = texts(count)
    automaton = _bare_automaton(classifier)

    def decide_all() -> None:
        for title, body in articles:
            classifier.decide(title, body)

    def explain_all() -> None:
        for title, body in articles:
            classifier.classify(title, body)

    def bare_pass() -> None:
        for title, body in articles:
            for _match in automaton.iter(f"{title}\n{body}".lower()):
                pass

    seconds = _best_of(repeat, decide_all)
    explain_seconds = _best_of(repeat, explain_all)
    baseline_seconds = _best_of(repeat, bare_pass)
    return {
        "name": f"classify {count} articles (one core)",
        "seconds": seconds,
        "articles_per_second": count / seconds,
        "with_explanation_articles_per_second": count / explain_seconds,
        "baseline": "bare pyahocorasick pass over the same lower-cased texts",
        "baseline_articles_per_second": count / baseline_seconds,
        "baseline_seconds": baseline_seconds,
        "ratio": seconds / baseline_seconds,
        "target": "articles per second no lower than before the name and topic rules",
    }


def main() -> None:  # pragma: no cover - a convenience for measuring this row alone
    result = run(20_000)
    for key, value in result.items():
        print(f"{key}: {value:,.1f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":  # pragma: no cover
    main()
