"""Shared fixtures: paths of the example configuration and a throwaway installation."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE_STORE = ROOT / "articles" / "wco-news-sample.txt"


@pytest.fixture
def install(tmp_path: Path) -> Path:
    """A copy of the example configuration in ``tmp_path/config`` with its own store and state.

    Returns the path of the configuration file; the store is ``tmp_path/articles``.
    """
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copy(CONFIG_DIR / "subscribers.toml", config_dir / "subscribers.toml")
    (tmp_path / "articles").mkdir()
    config = config_dir / "syndicator.toml"
    config.write_text(
        textwrap.dedent(
            """
            [site]
            title = "WCO News"
            base_url = "https://news.example.org/"

            [store]
            path = "../articles"
            reload_interval = 1

            [feeds]
            output_dir = "../feeds"

            [state]
            url = "sqlite:///../state/syndicator.db"

            [mail]
            maildir = "../mail"
            """
        ),
        encoding="utf-8",
    )
    return config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite golden files from current output"
    )
