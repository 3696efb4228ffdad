"""What the fault tests share: installations mailing through a sink, and real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from syndicator.config import load_config
from syndicator.state.db import State
from tests.conftest import SAMPLE_STORE, write

PYTHON = sys.executable
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def command(config: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "syndicator", "--config", str(config), *args]


def run(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a syndicator command to its end; its output is returned, not checked."""
    return subprocess.run(
        command(config, *args),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def use_smtp(install: Path, port: int, subscribers: str, **smtp: object) -> Path:
    """Make the test installation mail through the SMTP server on ``port``."""
    (install.parent / "subscribers.toml").write_text(textwrap.dedent(subscribers))
    text = install.read_text().replace(
        "[mail]\n", '[mail]\ntransport = "smtp"\nfrom = "WCO News <news@example.org>"\n'
    )
    settings = {"host": "127.0.0.1", "port": port, "timeout": 5, **smtp}
    lines = "".join(
        f"{key} = {value!r}\n" if isinstance(value, str) else f"{key} = {value}\n"
        for key, value in settings.items()
    ).replace("'", '"')
    install.write_text(f"{text}\n[mail.smtp]\n{lines}")
    return install


def with_sample_store(install: Path) -> Path:
    store = install.parent.parent / "articles"
    (store / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return store


def immediate(addresses: list[str], **fields: str) -> str:
    extra = "".join(f"{key} = {value}\n" for key, value in fields.items())  # TOML values
    return "".join(
        f'[[subscriber]]\nemail = "{address}"\ncadence = "immediate"\n{extra}\n'
        for address in addresses
    )


def add_article(store: Path, name: str, title: str, body: str) -> Path:
    return write(store / name, f"{title}\n\n{title}\n\n{body}\n")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def query(config: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` run on the installation's state database (SQLite or PostgreSQL)."""
    engine = create_engine(load_config(config).state.url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def integrity_ok(config: Path) -> bool:
    """SQLite's ``PRAGMA integrity_check`` (PostgreSQL has no such check to run)."""
    state = State.open(load_config(config).state.url)
    try:
        return state.integrity_ok()
    finally:
        state.close()
