"""Subscribers: who gets mail about what, read from the operator's subscribers file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syndicator import __version__
from syndicator.errors import ConfigError, ErrorKind
from syndicator.mail.addresses import AddressError, normalize_address
from syndicator.models import REGION_SLUGS

# Control characters (C0, DEL, C1), line and paragraph separators, and the invisible
# bidi and zero-width format characters: none belongs in a name or a keyword, and they
# could rewrite an operator's terminal or a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# IANA zone names are at most 32 characters ("America/Argentina/ComodRivadavia") of
# letters, digits, "_", "+" and "-", in parts joined by "/"; anything else is refused
# before ZoneInfo sees it (a long name is a file-system error there, not a lookup miss).
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+-]{1,64}(/[A-Za-z0-9_+-]{1,64}){0,3}$")
MAX_ZONE_NAME = 64
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Subscriber(BaseModel):
    """One subscriber and their filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str
    name: str = ""
    regions: list[str] = []
    topics: list[str] = []
    keywords: list[str] = []
    exclude_regions: list[str] = []
    exclude_topics: list[str] = []
    # "feed": no mail at all, only the private feed (the address is still confirmed).
    cadence: Literal["immediate", "daily", "weekly", "feed"] = "daily"
    hour: Annotated[int, Field(ge=0, le=23)] = 8
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    timezone: str = "UTC"
    # A digest's table of contents: grouped by region, or by topic.
    group_by: Literal["region", "topic"] = "region"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return normalize_address(value)
        except AddressError as exc:
            raise ValueError(exc.message) from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must be one line of text (no line breaks or control characters)")
        return value.strip()

    @field_validator("regions", "exclude_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        for slug in value:
            if slug not in REGION_SLUGS:
                raise ValueError(
                    f"unknown region {shorten(slug)}; known: {', '.join(REGION_SLUGS)}"
                )
        return value

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        for keyword in value:
            if _CONTROL.search(keyword) or not keyword.strip():
                raise ValueError(
                    f"keyword {shorten(keyword)} must be non-empty text on one line, "
                    "without control characters"
                )
        return [keyword.strip() for keyword in value]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone, else ValueError saying so (never OSError)."""
    value = value.strip()
    problem = f"unknown time zone {shorten(value)}; use an IANA name such as Europe/Brussels"
    if not _ZONE_NAME.match(value):
        raise ValueError(problem)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(problem) from None
    return value


def shorten(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message: control characters escaped, at most ``limit`` shown."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


class SubscriberEntryError(ConfigError):
    """One entry of a subscribers file is invalid; ``address`` is the address it gives, if any.

    The subscription of that address is kept as it was until the entry is fixed.
    """

    def __init__(self, message: str, *, address: str, path: Path, line: int | None) -> None:
        self.address = address
        super().__init__(message, path=path, line=line, kind=ErrorKind.INVALID)


# What makes a subscribers file unusable as a whole (when it gives no valid entry either):
# its entries cannot be known, so the subscriptions in state stay as they are instead of
# being removed. Problems with single entries (:class:`SubscriberEntryError`) or with a
# table of unknown name leave the rest of the file usable.
FILE_UNUSABLE = frozenset(
    {
        ErrorKind.NOT_FOUND,
        ErrorKind.UNREADABLE,
        ErrorKind.NOT_A_FILE,
        ErrorKind.ENCODING,
        ErrorKind.INVALID,
    }
)


def file_unusable(listed: list[Subscriber], errors: list[ConfigError]) -> bool:
    """True when the subscribers file gave no valid entry because of a problem with the
    whole file (decided on each error's kind and class, never on its wording)."""
    return not listed and any(
        error.kind in FILE_UNUSABLE and not isinstance(error, SubscriberEntryError)
        for error in errors
    )


def held_addresses(errors: list[ConfigError]) -> frozenset[str]:
    """The (lower-cased) addresses whose entries are invalid: their subscriptions stay."""
    return frozenset(
        error.address.lower()
        for error in errors
        if isinstance(error, SubscriberEntryError) and error.address
    )


def check_entry(
    entry: Any, known_topics: set[str] | None
) -> tuple[Subscriber | None, dict[str, str]]:
    """A subscriber from one entry (file table, CSV row or web form), or every problem.

    Problems map the field (``email``, ``hour``, ``keywords.2`` ...) to what is wrong with
    it, first problem first.
    """
    problems: dict[str, str] = {}
    subscriber: Subscriber | None = None
    try:
        subscriber = Subscriber.model_validate(entry)
    except ValidationError as exc:
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "entry"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            problems.setdefault(key, message)
    if known_topics is not None and isinstance(entry, dict):
        for key in ("topics", "exclude_topics"):
            given = entry.get(key)
            if not isinstance(given, list) or key in problems:
                continue
            unknown = [t for t in given if isinstance(t, str) and t not in known_topics]
            if unknown:
                problems[key] = f"unknown topic {shorten(unknown[0])}"
    if problems:
        return None, problems
    return subscriber, {}


def _validated(
    entry: Any, known_topics: set[str] | None
) -> tuple[Subscriber, str] | tuple[None, str]:
    """A subscriber from one entry (file table or CSV row), or what is wrong: "key: why"."""
    subscriber, problems = check_entry(entry, known_topics)
    if subscriber is None:
        key, message = next(iter(problems.items()))
        return None, f"{key}: {message}"
    return subscriber, ""


def load_subscribers(
    path: Path, known_topics: set[str] | None = None
) -> tuple[list[Subscriber], list[ConfigError]]:
    """Read the subscribers file; each bad entry is one error naming it, the rest are kept."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], [
            ConfigError(
                "subscribers file not found",
                path=path,
                hint="set subscribers.file",
                kind=ErrorKind.NOT_FOUND,
            )
        ]
    except IsADirectoryError as exc:
        return [], [
            ConfigError(
                f"cannot read subscribers file: {exc}", path=path, kind=ErrorKind.NOT_A_FILE
            )
        ]
    except OSError as exc:
        return [], [
            ConfigError(
                f"cannot read subscribers file: {exc}", path=path, kind=ErrorKind.UNREADABLE
            )
        ]
    except UnicodeDecodeError as exc:
        return [], [
            ConfigError(f"cannot read subscribers file: {exc}", path=path, kind=ErrorKind.ENCODING)
        ]
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        return [], [
            ConfigError(
                f"invalid TOML: {message}",
                path=path,
                line=int(found.group(1)) if found else None,
                kind=ErrorKind.INVALID,
            )
        ]
    entries = data.get("subscriber", [])
    errors: list[ConfigError] = []
    unknown = sorted(set(data) - {"subscriber"})
    if unknown:
        errors.append(
            ConfigError(
                f"unknown table {unknown[0]!r}; entries are [[subscriber]] tables",
                path=path,
                kind=ErrorKind.UNKNOWN_NAME,
            )
        )
    if not isinstance(entries, list):
        return [], [
            *errors,
            ConfigError(
                "'subscriber' must be an array of tables [[subscriber]]",
                path=path,
                kind=ErrorKind.INVALID,
            ),
        ]
    lines = _entry_lines(path)
    subscribers: list[Subscriber] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        label = f"subscriber[{index}]"
        address = ""
        if isinstance(entry, dict) and isinstance(entry.get("email"), str):
            address = entry["email"].strip()
            label += f" ({address[:80]!r})"
        line = lines[index] if index < len(lines) else None
        subscriber, problem = _validated(entry, known_topics)
        if subscriber is None:
            errors.append(
                SubscriberEntryError(f"{label}.{problem}", address=address, path=path, line=line)
            )
            continue
        if subscriber.email.lower() in seen:
            errors.append(
                ConfigError(
                    f"{label}: address listed twice; the first entry is used",
                    path=path,
                    line=line,
                    kind=ErrorKind.DUPLICATE,
                )
            )
            continue
        seen.add(subscriber.email.lower())
        subscribers.append(subscriber)
    return subscribers, errors


def _entry_lines(path: Path) -> list[int]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip().startswith("[[subscriber]]")
    ]


_LIST_FIELDS = ("regions", "topics", "keywords", "exclude_regions", "exclude_topics")


def load_subscribers_csv(
    path: Path, known_topics: set[str] | None = None
) -> tuple[list[Subscriber], list[ConfigError]]:
    """Subscribers from CSV with a header row naming the same fields as the TOML file.

    List fields (regions, topics, keywords, exclusions) separate values with ``;``.
    Each bad row is one error naming its line; the other rows are kept.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        return [], [ConfigError(f"cannot read: {exc}", path=path, kind=ErrorKind.NOT_FOUND)]
    except OSError as exc:
        return [], [ConfigError(f"cannot read: {exc}", path=path, kind=ErrorKind.UNREADABLE)]
    except UnicodeDecodeError as exc:
        return [], [ConfigError(f"cannot read: {exc}", path=path, kind=ErrorKind.ENCODING)]
    reader = csv.DictReader(io.StringIO(text))
    known = set(Subscriber.model_fields)
    unknown = [name for name in reader.fieldnames or [] if name not in known]
    if unknown or not reader.fieldnames or "email" not in reader.fieldnames:
        return [], [
            ConfigError(
                f"header must name email and any of {', '.join(sorted(known - {'email'}))}"
                + (f"; unknown column {unknown[0]!r}" if unknown else ""),
                path=path,
                line=1,
            )
        ]
    subscribers: list[Subscriber] = []
    errors: list[ConfigError] = []
    for row in reader:
        line = reader.line_num
        entry: dict[str, Any] = {}
        for key, value in row.items():
            if key is None or value is None or value.strip() == "":
                continue
            if key in _LIST_FIELDS:
                entry[key] = [part.strip() for part in value.split(";") if part.strip()]
            else:
                entry[key] = value.strip()
        subscriber, problem = _validated(entry, known_topics)
        if subscriber is None:
            errors.append(ConfigError(problem, path=path, line=line))
            continue
        subscribers.append(subscriber)
    return subscribers, errors


class SubscribersFile(NamedTuple):
    """The subscribers file as read: see :func:`load_subscribers_file`."""

    listed: list[Subscriber] | None
    problems: list[str]
    held: frozenset[str]
    # What the parse was made of (:func:`file_signature`), None when it could not be read.
    signature: str | None


def file_signature(path: Path, known_topics: Collection[str]) -> str | None:
    """A digest of everything a parse of the subscribers file depends on: this version of
    the code, the file's path and bytes and the topics known; None when it cannot be read.

    Taken before the file is parsed, so a file changed during the parse is never taken
    for the one that was synced: at worst it is synced once more.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256()
    for part in (__version__, str(path), "\n".join(sorted(known_topics))):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def load_subscribers_file(path: Path, known_topics: Collection[str]) -> SubscribersFile:
    """The subscribers file's valid entries (None when the file cannot be used at all), its
    problems, the addresses of its invalid entries (they keep their subscriptions), and
    the file's signature."""
    signature = file_signature(path, known_topics)
    listed_all, errors = load_subscribers(path, set(known_topics))
    problems = [str(error) for error in errors]
    unusable = file_unusable(listed_all, errors)
    return SubscribersFile(
        None if unusable else listed_all, problems, held_addresses(list(errors)), signature
    )


def stored_settings(settings: str) -> Subscriber:
    """Subscriber settings stored as JSON (a sign-up request), for listing: validated if
    they still pass, else as they are (stored under older rules)."""
    try:
        return Subscriber.model_validate_json(settings)
    except ValidationError:
        return Subscriber.model_construct(**json.loads(settings))
