"""The errors syndicator reports to people.

Every error says what is wrong and, where it can, where (file and line, key or
address) and how to fix it. ``str(error)`` is the one line the command line
prints, for people only: code that decides what to do with an error reads its
``kind``, never its text, so a message can be reworded freely.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any


class ErrorKind(StrEnum):
    """What went wrong, as the code tells cases apart (the message says it to people)."""

    NOT_FOUND = "not-found"  # the file or directory named does not exist
    UNREADABLE = "unreadable"  # it exists, but cannot be opened, listed or read
    VANISHED = "vanished"  # it was listed, then was gone when read: try again later
    NOT_A_FILE = "not-a-file"  # a directory (or other non-file) where a file was expected
    LINK_LOOP = "link-loop"  # a directory reached again through a symbolic link
    BROKEN_LINK = "broken-link"  # a symbolic link that points nowhere
    EMPTY = "empty"  # nothing in it
    BINARY = "binary"  # not text at all
    ENCODING = "encoding"  # text, but not valid UTF-8
    INVALID = "invalid"  # readable, but not in the expected form (syntax, a field, a value)
    TOO_LARGE = "too-large"  # beyond a size limit
    DUPLICATE = "duplicate"  # the same identity seen twice
    UNKNOWN_NAME = "unknown-name"  # names a region, topic, or other thing that does not exist


class SyndicatorError(Exception):
    """Base of every error syndicator reports to the user."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SyndicatorError, ValueError):
    """The configuration (or a file it names) is invalid."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        line: int | None = None,
        key: str = "",
        hint: str = "",
        kind: ErrorKind = ErrorKind.INVALID,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.kind = kind
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line else f"{path}: "
        what = f"{key}: {message}" if key else message
        super().__init__(f"{where}{what}", hint=hint)


class StoreError(SyndicatorError):
    """One problem with one file of the article store; that file or article is skipped.

    ``kind`` says what happened, for the code that decides what follows: a file that
    is :attr:`ErrorKind.UNREADABLE` or :attr:`ErrorKind.VANISHED` keeps its articles.
    """

    def __init__(
        self,
        path: Path,
        message: str,
        *,
        kind: ErrorKind = ErrorKind.INVALID,
        line: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.kind = kind
        self.detail = message
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by the worker processes that read the store.
        return (_store_error, (self.path, self.detail, self.kind, self.line))


def _store_error(path: Path, message: str, kind: ErrorKind, line: int | None) -> StoreError:
    return StoreError(path, message, kind=kind, line=line)


class StateError(SyndicatorError, RuntimeError):
    """The state database cannot be used."""


class NotFoundError(SyndicatorError, LookupError):
    """Something the user asked for does not exist."""
