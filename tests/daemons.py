"""Finding a system daemon the tests start a private instance of (Postfix, Dovecot)."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest


def require_daemon(name: str, package: str, users: tuple[str, ...]) -> str:
    """The daemon's command; skips the test where it cannot run (not installed, not root,
    a system user missing), and fails instead in CI."""
    command = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    problem = ""
    if command is None:
        problem = f"{name} is not installed (apt-get install {package})"
    elif os.geteuid() != 0:
        problem = f"a private {name} needs root"
    else:
        for user in users:
            try:
                pwd.getpwnam(user)
            except KeyError:
                problem = f"there is no {user!r} user"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    assert command is not None
    return command
