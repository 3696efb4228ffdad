"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary directory,
listening only on a Unix socket there, stopped at the end of the session.

Debian keeps the server programs in ``/usr/lib/postgresql/<version>/bin``; ``PG_BINDIR``
names another place. As root the cluster runs as the ``postgres`` user (the server refuses
to run as root). Without the programs the tests that need PostgreSQL are skipped, except
under ``CI=true``, where that is an error.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SERVER_USER = "postgres"


def bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return Path(configured)
    found = shutil.which("pg_ctl")
    if found and Path(found).with_name("initdb").exists():
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


class Cluster:
    """A running PostgreSQL cluster; ``database()`` gives a fresh, empty database's URL.

    ``durable=False`` (the tests) turns fsync off for speed; ``durable=True`` (the
    benchmarks) keeps PostgreSQL's defaults, as an operator runs it.
    """

    def __init__(self, programs: Path, root: Path, *, durable: bool = False) -> None:
        self.programs = programs
        self.root = root
        self.durable = durable
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = 5432
        self._names = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, *args], check=True, capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._as_user:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            str(self.programs / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            SERVER_USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        # Only a socket in our own directory: nothing else on the machine can collide with
        # it, and no TCP port is taken. Durability against power loss is not what the
        # tests check (process kills keep the OS cache), so there fsync is off for speed.
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}' "
            f"-c port={self.port} -c max_connections=300"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.programs / "pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.root / "server.log"),
            "--options",
            options,
            "--wait",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(
                str(self.programs / "pg_ctl"),
                "--pgdata",
                str(self.data),
                "--mode",
                "immediate",
                "--wait",
                "stop",
            )

    def url(self, database: str) -> str:
        return (
            f"postgresql+psycopg://{SERVER_USER}@/{database}?host={self.sockets}&port={self.port}"
        )

    def database(self) -> str:
        """Create a new empty database; return its SQLAlchemy URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            host=str(self.sockets),
            port=self.port,
            user=SERVER_USER,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)


@contextlib.contextmanager
def cluster(*, durable: bool = False) -> Iterator[Cluster | None]:
    """A started cluster for the session, or None when PostgreSQL is not installed here."""
    programs = bindir()
    if programs is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="syndicator-pg-"))
    root.chmod(0o755)
    running = Cluster(programs, root, durable=durable)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)
