"""What several commands share: the configuration, the classifier and the state database."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syndicator.config import Config, default_config_path, load_config

if TYPE_CHECKING:
    from syndicator.classify.classifier import Classifier
    from syndicator.state.db import State

EXIT_OK = 0
EXIT_PROBLEMS = 1


def now() -> datetime:
    """The real time: read by the commands, and handed to everything below them."""
    return datetime.now(UTC)


def load(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or default_config_path()
    return load_config(path)


def classifier_of(config: Config) -> Classifier:
    """The configured classifier, its built matcher kept in the user's cache directory."""
    from syndicator.classify import cache  # noqa: PLC0415
    from syndicator.classify.classifier import Classifier  # noqa: PLC0415

    return Classifier.load(
        config.classify.regions,
        config.classify.topics,
        config.classify.corrections,
        cache_dir=cache.default_directory(),
    )


def open_all(args: argparse.Namespace) -> tuple[Config, Classifier, State]:
    """Configuration, classifier and an open state database (the caller closes it)."""
    from syndicator.state.db import State  # noqa: PLC0415

    config = load(args)
    classifier = classifier_of(config)
    state = State.open(config.state.url)
    if config.service.instance_id:
        state.instance_id = config.service.instance_id
    return config, classifier, state
