"""What a cycle does with a broken subscribers file, decided on each error's kind.

Every case runs twice on a fresh installation: once as is, and once with every
message reworded (entry problems worded like file problems and the other way round);
the subscriptions that result must be the same, and as promised.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from syndicator import pipeline
from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.errors import ConfigError, ErrorKind
from syndicator.mail import roster
from syndicator.mail import subscribers as subscribers_file
from syndicator.mail.subscribers import (
    Subscriber,
    SubscriberEntryError,
    file_unusable,
    load_subscribers,
)
from syndicator.state.db import State
from tests.conftest import T0

BOTH = '[[subscriber]]\nemail = "desk@example.org"\n\n[[subscriber]]\nemail = "peer@example.org"\n'
FILE_WORDS = "subscribers file not found; cannot read; invalid TOML; must be an array"


def _write(text: str | bytes) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return apply


def _into_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


# case: (how the file breaks, the statuses that must follow)
CASES: dict[str, tuple[Callable[[Path], None], dict[str, str]]] = {
    "missing": (Path.unlink, {"desk@example.org": "active", "peer@example.org": "active"}),
    "a directory": (_into_directory, {"desk@example.org": "active", "peer@example.org": "active"}),
    "not UTF-8": (
        _write(b'[[subscriber]]\nemail = "desk@example.org"\nname = "\xff"\n'),
        {"desk@example.org": "active", "peer@example.org": "active"},
    ),
    "invalid TOML": (
        _write("[[subscriber]\n"),
        {"desk@example.org": "active", "peer@example.org": "active"},
    ),
    "not an array": (
        _write("subscriber = 1\n"),
        {"desk@example.org": "active", "peer@example.org": "active"},
    ),
    "only an unknown table": (
        _write("[people]\nname = 'x'\n"),
        {"desk@example.org": "removed", "peer@example.org": "removed"},
    ),
    "only bad entries": (
        _write('[[subscriber]]\nemail = "desk@example.org"\ncadence = "hourly"\n'),
        {"desk@example.org": "active", "peer@example.org": "removed"},
    ),
    "one entry, listed twice": (
        _write('[[subscriber]]\nemail = "peer@example.org"\n' * 2),
        {"desk@example.org": "removed", "peer@example.org": "active"},
    ),
}


def reworded(error: ConfigError) -> ConfigError:
    """The same problem (class, kind, place, address) in other words."""
    if isinstance(error, SubscriberEntryError):
        return SubscriberEntryError(
            FILE_WORDS, address=error.address, path=error.path or Path(), line=error.line
        )
    return ConfigError("all is well", path=error.path, line=error.line, kind=error.kind)


def _statuses_after(
    install: Path, classifier: Classifier, breaks: Callable[[Path], None]
) -> dict[str, str]:
    subscribers = install.parent / "subscribers.toml"
    subscribers.write_text(BOTH, encoding="utf-8")
    config = load_config(install)
    state = State.open(config.state.url)
    try:
        pipeline.run_cycle(config, classifier, state, now=T0)
        breaks(subscribers)
        pipeline.run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
        with state.engine.connect() as conn:
            return {record.email: record.status for record in roster.list_subscribers(conn)}
    finally:
        state.close()


@pytest.mark.parametrize("case", list(CASES))
def test_subscribers_file_decisions_do_not_depend_on_wording(
    case: str, tmp_path: Path, classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaks, expected = CASES[case]
    install = _install(tmp_path / "plain")
    assert _statuses_after(install, classifier, breaks) == expected

    real = load_subscribers

    def load_reworded(
        path: Path, known_topics: set[str] | None = None
    ) -> tuple[list[Subscriber], list[ConfigError]]:
        listed, errors = real(path, known_topics)
        return listed, [reworded(error) for error in errors]

    # Where the cycle reads the subscribers file (load_subscribers_file) looks it up.
    monkeypatch.setattr(subscribers_file, "load_subscribers", load_reworded)
    install = _install(tmp_path / "reworded")
    assert _statuses_after(install, classifier, breaks) == expected


def _install(root: Path) -> Path:
    config_dir = root / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (root / "articles").mkdir()
    config = config_dir / "syndicator.toml"
    config.write_text(
        '[site]\ntitle = "WCO News"\nbase_url = "https://news.example.org/"\n'
        '[store]\npath = "../articles"\n[feeds]\noutput_dir = "../feeds"\n'
        '[state]\nurl = "sqlite:///../state/syndicator.db"\n[mail]\nmaildir = "../mail"\n',
        encoding="utf-8",
    )
    return config


def test_each_subscribers_file_problem_has_its_kind(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.toml"
    found: dict[str, list[ErrorKind]] = {}
    for case, (breaks, _) in CASES.items():
        if path.is_dir():
            path.rmdir()
        path.write_text(BOTH, encoding="utf-8")
        breaks(path)
        listed, errors = load_subscribers(path, set())
        found[case] = [error.kind for error in errors]
        whole = case in {"missing", "a directory", "not UTF-8", "invalid TOML", "not an array"}
        assert file_unusable(listed, errors) is whole, case
    assert found == {
        "missing": [ErrorKind.NOT_FOUND],
        "a directory": [ErrorKind.NOT_A_FILE],
        "not UTF-8": [ErrorKind.ENCODING],
        "invalid TOML": [ErrorKind.INVALID],
        "not an array": [ErrorKind.INVALID],
        "only an unknown table": [ErrorKind.UNKNOWN_NAME],
        "only bad entries": [ErrorKind.INVALID],
        "one entry, listed twice": [ErrorKind.DUPLICATE],
    }
