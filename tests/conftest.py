"""Shared fixtures: paths of the example configuration, a throwaway installation, and the
state database it uses (SQLite, and PostgreSQL for the tests that touch the database)."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicator.classify.classifier import Classifier
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS, Config
from syndicator.state.db import State
from tests import pg
from tests.smtp_sink import Sink

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE_STORE = ROOT / "articles" / "wco-news-sample.txt"

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday: the tests' "now"


class Clock:
    """A clock the test moves by hand: ``clock.now = ...``; calling it reads the time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user cache directory (``XDG_CACHE_HOME``) of the commands the tests run, in
    process or not: the session's own, not the home of whoever runs the tests."""
    previous = os.environ.get("XDG_CACHE_HOME")
    directory = tmp_path_factory.mktemp("cache-home")
    os.environ["XDG_CACHE_HOME"] = str(directory)
    yield directory
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture
def state(config: Config) -> Iterator[State]:
    """The state database of the test module's ``config`` fixture, closed after the test."""
    opened = State.open(config.state.url)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    """The shipped gazetteer and taxonomy (read-only, so one for the whole session)."""
    return Classifier.load(SHIPPED_REGIONS, SHIPPED_TOPICS)


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real SMTP server (aiosmtpd) on a free loopback port, recording what it accepts."""
    with Sink() as running:
        yield running


SQLITE_URL = "sqlite:///../state/syndicator.db"
# Tests of these modules (and folders) run on both databases: every test there that asks
# for ``db_url`` (or for ``install``, which uses it) is run once per database.
BOTH_DATABASES = (
    "tests/state/",
    "tests/test_cycle.py",
    "tests/test_cli.py",
    "tests/mail/test_outbox.py",
    "tests/mail/test_bounces.py",
    "tests/mail/test_bounces_imap.py",
    "tests/mail/test_breaker.py",
    "tests/mail/test_deliverability_cli.py",
    "tests/mail/test_pacing.py",
    "tests/web/test_subscriptions.py",
    "tests/faults/",
    "tests/service/",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" not in metafunc.fixturenames:
        return
    where = Path(metafunc.definition.path).relative_to(ROOT).as_posix()
    both = any(where.startswith(prefix) for prefix in BOTH_DATABASES)
    if metafunc.definition.get_closest_marker("postgresql_only") is not None:
        metafunc.parametrize("db_url", ["postgresql"], indirect=True)
    elif both and metafunc.definition.get_closest_marker("sqlite_only") is None:
        metafunc.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.Cluster | None]:
    """One throwaway PostgreSQL cluster for the whole session (None if not installed)."""
    with pg.cluster() as running:
        yield running


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> str:
    """The ``state.url`` of a test: SQLite in the installation's own directory, or a fresh
    database of the session's PostgreSQL cluster."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        return SQLITE_URL
    cluster = request.getfixturevalue("postgres")
    if cluster is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (initdb, pg_ctl), and CI needs it")
        pytest.skip("PostgreSQL is not installed here (initdb, pg_ctl)")
    return str(cluster.database())


@pytest.fixture
def state_url(tmp_path: Path, db_url: str) -> str:
    """``db_url`` made absolute: a test's own state database, to open directly."""
    if db_url == SQLITE_URL:
        return f"sqlite:///{tmp_path / 'state' / 'syndicator.db'}"
    return db_url


@pytest.fixture
def install(tmp_path: Path, db_url: str) -> Path:
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
            url = "{db_url}"

            [mail]
            maildir = "../mail"
            """
        ).format(db_url=db_url),
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
