"""What several commands share: the configuration, the classifier and the state database."""

from __future__ import annotations

import argparse

from syndicator.classify.classifier import Classifier
from syndicator.config import Config, default_config_path, load_config
from syndicator.state.db import State

EXIT_OK = 0
EXIT_PROBLEMS = 1


def load(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or default_config_path()
    return load_config(path)


def classifier_of(config: Config) -> Classifier:
    return Classifier.load(config.classify.regions, config.classify.topics)


def open_all(args: argparse.Namespace) -> tuple[Config, Classifier, State]:
    """Configuration, classifier and an open state database (the caller closes it)."""
    config = load(args)
    classifier = classifier_of(config)
    return config, classifier, State.open(config.state.url)
