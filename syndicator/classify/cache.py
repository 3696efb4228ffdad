"""The built classifier kept on disk, so that a command need not build it again.

Building the matcher (reading the gazetteer and the taxonomy and compiling the automaton
over every phrase) is most of a short command's work; reading it back takes a fraction of
that. An entry is a pickle, and unpickling runs code, so an entry is only read when it is

* a regular file (not a symbolic link) owned by the user reading it, in a directory owned
  by that user, neither of them writable by group or others: no other user could have
  written it;
* marked with the key it was built for: the bytes of the gazetteer and the taxonomy, and
  the code that builds the matcher (this module's callers name their sources), with the
  Python and pyahocorasick it ran on. A changed file or a new version makes a new key;
* whole: its payload carries a SHA-256 checksum, checked before unpickling.

Anything else (a stale, corrupt, foreign or unreadable entry, a directory that cannot be
made) is a miss: the caller builds and stores afresh. Entries are written atomically (a
temporary file in the same directory, fsync, ``os.replace``), one per pair of files, so a
reader never sees half an entry and the directory does not grow with every edit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_MAGIC = b"syndicator classifier cache 1\n"
# Group or others may write: such a file or directory is never trusted.
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def default_directory() -> Path | None:
    """``$XDG_CACHE_HOME/syndicator``, else ``~/.cache/syndicator`` (None without a home)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", ""))
    if base.is_absolute():
        return base / "syndicator"
    home = Path(os.environ.get("HOME", ""))
    if not home.is_absolute():
        return None
    return home / ".cache" / "syndicator"


def cache_key(sources: Iterable[bytes]) -> str:
    """The key of an entry built from ``sources`` (file contents, code), on this Python."""
    digest = hashlib.sha256(_MAGIC)
    digest.update(
        f"{sys.implementation.cache_tag} {sys.hexversion} {pickle.HIGHEST_PROTOCOL}".encode()
    )
    for source in sources:
        digest.update(hashlib.sha256(source).digest())
    return digest.hexdigest()


def entry_path(directory: Path, paths: Iterable[Path]) -> Path:
    """Where the entry built from the files ``paths`` lives: one entry per set of files."""
    named = "\0".join(str(path.resolve()) for path in paths)
    return directory / f"classifier-{hashlib.sha256(named.encode()).hexdigest()[:32]}.pickle"


def _owned_by_me(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & _WRITABLE_BY_OTHERS


def _trusted_directory(directory: Path) -> bool:
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and _owned_by_me(info)


def read(path: Path, key: str) -> Any | None:
    """The object stored at ``path`` for ``key``, or None if there is none to trust."""
    if not hasattr(os, "geteuid") or not _trusted_directory(path.parent):
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or not _owned_by_me(info):
            log.debug("%s: not owned by this user or writable by others; not used", path)
            return None
        try:
            data = handle.read()
        except OSError:
            return None
    header = _MAGIC + key.encode() + b"\n"
    checksum_end = len(header) + 65
    if not data.startswith(header) or len(data) < checksum_end:
        return None  # another key (a stale entry), another format, or cut short
    checksum, payload = data[len(header) : checksum_end - 1], data[checksum_end:]
    if data[checksum_end - 1 : checksum_end] != b"\n" or (
        hashlib.sha256(payload).hexdigest().encode() != checksum
    ):
        log.debug("%s: checksum mismatch; rebuilding", path)
        return None
    try:
        return pickle.loads(payload)  # noqa: S301 - our own file, checked above
    except Exception:  # a damaged entry is a miss, whatever it raises
        log.debug("%s: unreadable; rebuilding", path, exc_info=True)
        return None


def write(path: Path, key: str, value: Any) -> None:
    """Store ``value`` at ``path`` for ``key``; a directory that cannot be used is skipped."""
    if not hasattr(os, "geteuid"):
        return
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        log.debug("cannot create the cache directory %s: %s", directory, exc)
        return
    if not _trusted_directory(directory):
        log.debug("%s: not owned by this user or writable by others; not used", directory)
        return
    import tempfile  # noqa: PLC0415 - only a miss writes

    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    checksum = hashlib.sha256(payload).hexdigest().encode()
    try:
        descriptor, name = tempfile.mkstemp(prefix=".classifier-", dir=directory)
    except OSError as exc:
        log.debug("cannot write to the cache directory %s: %s", directory, exc)
        return
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(_MAGIC + key.encode() + b"\n" + checksum + b"\n")
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError as exc:
        log.debug("cannot write the cache entry %s: %s", path, exc)
        with contextlib.suppress(OSError):
            temporary.unlink()
