"""Reading the article store.

The store is a directory (scanned recursively) or a single file, in two formats:

* **digest text** (``.txt``): a title line, a blank line, the same title again, a
  blank line, then the body paragraph(s); the next article starts at the next
  repeated title;
* **one article per file** (``.md``, ``.markdown``, or ``.txt`` starting with front
  matter): TOML front matter between ``+++`` lines or YAML between ``---`` lines,
  then the body in Markdown or plain text.

Parsing is pure (:func:`parse_text` takes the file's bytes); :func:`scan` and
:func:`read_file` are the thin I/O layer. Every problem becomes a
:class:`StoreError` naming ``path:line``; the rest of the file, and every other
file, is still read.
"""

from __future__ import annotations

import gc
import os
import re
import stat as stat_module
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syndicator.errors import ErrorKind, StoreError
from syndicator.models import ARTICLE_ID, REGION_SLUGS, RawArticle, derive_id

DIGEST_SUFFIXES = frozenset({".txt"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
STORE_SUFFIXES = DIGEST_SUFFIXES | MARKDOWN_SUFFIXES
_BINARY_SNIFF = 8192
# Title and body together; far beyond any news article, and small enough that one runaway
# file cannot bloat every feed and mail it would appear in.
MAX_ARTICLE_CHARS = 1_000_000
_BAD_CHAR = re.compile(r"[\udc80-\udcff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FileStat(NamedTuple):
    """What a rescan compares: a file is re-read only when its size or mtime changed.
    (A tuple: a scan makes one per store file, every cycle.)"""

    location: str  # the path, as text (what state records)
    size: int
    mtime_ns: int

    @property
    def path(self) -> Path:
        return Path(self.location)


@dataclass(slots=True)
class ScanResult:
    files: list[FileStat]
    errors: list[StoreError]


def scan(root: Path) -> ScanResult:
    """List the store's article files, sorted by path, with their size and mtime.

    Hidden files and directories, editor backups and files of other types are
    passed over. Symbolic links are followed, but a directory is never entered
    twice, so link loops end. A directory or file that cannot be read, or that
    vanishes during the scan, is reported and skipped.
    """
    files: list[FileStat] = []
    errors: list[StoreError] = []
    try:
        root_stat = root.stat()
    except FileNotFoundError:
        errors.append(
            StoreError(root, "article store not found (check store.path)", kind=ErrorKind.NOT_FOUND)
        )
        return ScanResult(files, errors)
    except OSError as exc:
        errors.append(
            StoreError(
                root,
                f"cannot open article store: {exc.strerror}",
                kind=ErrorKind.UNREADABLE,
            )
        )
        return ScanResult(files, errors)
    if stat_module.S_ISREG(root_stat.st_mode):
        return ScanResult([FileStat(str(root), root_stat.st_size, root_stat.st_mtime_ns)], errors)
    with collector_paused():
        walk(root, set(), files, errors)
    files.sort(key=_location)
    return ScanResult(files, errors)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (reference counting still frees), as the scan
    makes one object per store file, all kept until the caller is done with them: else the
    collections their number sets off move them to the oldest generation, and that sets
    off a full collection of everything a long-lived process keeps, at every cycle."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_location = attrgetter("location")
_by_name = attrgetter("name")


def is_article_name(name: str) -> bool:
    """A store file's name: one of the store's suffixes (without a dot, the last character
    is no suffix either), and no editor leftover ("#draft.md#", "a.md~")."""
    return name[0] != "#" and name[name.rfind(".") :].lower() in STORE_SUFFIXES


def _cannot(path: str | Path, what: str, exc: OSError) -> StoreError:
    return StoreError(Path(path), f"{what}: {exc.strerror}", kind=ErrorKind.UNREADABLE)


def _broken_link(path: str) -> StoreError:
    return StoreError(Path(path), "symbolic link points nowhere", kind=ErrorKind.BROKEN_LINK)


def walk(
    directory: Path,
    seen_dirs: set[tuple[int, int]],
    files: list[FileStat],
    errors: list[StoreError],
    *,
    entering: Callable[[Path, tuple[int, int]], None] | None = None,
    links: set[str] | None = None,
) -> None:
    """Add the article files under ``directory`` to ``files``, each directory's in name
    order. Every cycle stats every store file, so the loop over them is kept lean.

    ``entering`` is told of each directory about to be listed, and ``links`` given every
    symbolic link met, whatever it points at (what a listing kept between cycles needs)."""
    try:
        dir_stat = directory.stat()
    except OSError as exc:
        errors.append(_cannot(directory, "cannot open directory", exc))
        return
    key = (dir_stat.st_dev, dir_stat.st_ino)
    if key in seen_dirs:
        errors.append(
            StoreError(
                directory,
                "directory already scanned (symbolic link loop?)",
                kind=ErrorKind.LINK_LOOP,
            )
        )
        return
    seen_dirs.add(key)
    if entering is not None:
        entering(directory, key)
    try:
        with os.scandir(directory) as entries:
            children = sorted(entries, key=_by_name)
    except OSError as exc:
        errors.append(_cannot(directory, "cannot list directory", exc))
        return
    is_regular = stat_module.S_ISREG
    for entry in children:
        name = entry.name
        if name.startswith("."):
            continue
        try:
            if entry.is_dir():
                if links is not None and entry.is_symlink():
                    links.add(entry.path)
                walk(Path(entry.path), seen_dirs, files, errors, entering=entering, links=links)
                continue
            if not is_article_name(name):
                if links is not None and entry.is_symlink():
                    links.add(entry.path)
                continue
            entry_stat = entry.stat()
        except FileNotFoundError:
            # A dangling link, or a file deleted while we were scanning.
            if entry.is_symlink():
                errors.append(_broken_link(entry.path))
                if links is not None:
                    links.add(entry.path)
            continue
        except OSError as exc:
            errors.append(_cannot(entry.path, "cannot read", exc))
            continue
        if is_regular(entry_stat.st_mode):
            files.append(FileStat(entry.path, entry_stat.st_size, entry_stat.st_mtime_ns))
            if links is not None and entry.is_symlink():
                links.add(entry.path)


def list_path(
    path: str,
    seen_dirs: set[tuple[int, int]],
    files: list[FileStat],
    errors: list[StoreError],
    *,
    entering: Callable[[Path, tuple[int, int]], None] | None = None,
    links: set[str] | None = None,
) -> None:
    """What a scan finds at ``path`` inside the store, found again on its own: the file,
    the directory walked (as :func:`walk` does for each entry of a directory), or
    nothing (a hidden name, another type of file, or nothing there any more)."""
    found = Path(path)
    if found.name.startswith("."):
        return
    try:
        entry_stat = found.stat()
    except FileNotFoundError:
        if found.is_symlink():
            if links is not None:
                links.add(path)
            if is_article_name(found.name):
                errors.append(_broken_link(path))
        return
    except OSError as exc:
        errors.append(_cannot(path, "cannot read", exc))
        return
    if links is not None and found.is_symlink():
        links.add(path)
    if stat_module.S_ISDIR(entry_stat.st_mode):
        walk(found, seen_dirs, files, errors, entering=entering, links=links)
    elif is_article_name(found.name) and stat_module.S_ISREG(entry_stat.st_mode):
        files.append(FileStat(path, entry_stat.st_size, entry_stat.st_mtime_ns))


def read_file(path: Path) -> tuple[list[RawArticle], list[StoreError]]:
    """Read and parse one store file; a file that cannot be read is one error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], [
            StoreError(
                path,
                "file vanished during the scan; it is read again next cycle",
                kind=ErrorKind.VANISHED,
            )
        ]
    except IsADirectoryError:
        return [], [
            StoreError(path, "is a directory, not an article file", kind=ErrorKind.NOT_A_FILE)
        ]
    except OSError as exc:
        return [], [StoreError(path, f"cannot read: {exc.strerror}", kind=ErrorKind.UNREADABLE)]
    return parse_bytes(path, data)


def parse_bytes(path: Path, data: bytes) -> tuple[list[RawArticle], list[StoreError]]:
    """Parse the bytes of one store file (pure: no file system access)."""
    if not data.strip():
        return [], [StoreError(path, "empty file", kind=ErrorKind.EMPTY, line=1)]
    if b"\x00" in data[:_BINARY_SNIFF]:
        return [], [
            StoreError(
                path,
                "binary file, not text; remove it from the store",
                kind=ErrorKind.BINARY,
            )
        ]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="surrogateescape")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    errors: list[StoreError] = []
    if _BAD_CHAR.search(text):
        first = _BAD_CHAR.search(text)
        assert first is not None
        line = text.count("\n", 0, first.start()) + 1
        offset = len(text[: first.start()].encode("utf-8", errors="surrogateescape"))
        errors.append(
            StoreError(
                path,
                f"invalid UTF-8 at byte {offset}; save the file as UTF-8 "
                "(articles containing the bad bytes are skipped)",
                kind=ErrorKind.ENCODING,
                line=line,
            )
        )
    if text.startswith(("+++\n", "---\n")):
        articles, more = parse_front_matter_file(path, text)
    elif path.suffix.lower() in MARKDOWN_SUFFIXES:
        articles, more = parse_markdown_file(path, text)
    else:
        articles, more = parse_digest(path, text)
    errors.extend(more)
    kept = []
    for article in articles:
        if _BAD_CHAR.search(article.title) or _BAD_CHAR.search(article.body):
            continue
        size = len(article.title) + len(article.body)
        if size > MAX_ARTICLE_CHARS:
            errors.append(
                StoreError(
                    path,
                    f"article {article.title[:60]!r} is too long ({size:,} characters, the "
                    f"limit is {MAX_ARTICLE_CHARS:,}); skipped",
                    kind=ErrorKind.TOO_LARGE,
                    line=article.line,
                )
            )
            continue
        cleaned = _clean(article)
        if not cleaned.title or not cleaned.body.strip():
            # Nothing left once control characters are gone.
            what = "title" if not cleaned.title else "body"
            errors.append(
                StoreError(
                    path,
                    f"article {cleaned.title[:60]!r} has no {what} but control characters; skipped",
                    line=article.line,
                )
            )
            continue
        kept.append(cleaned)
    return kept, errors


def _clean(article: RawArticle) -> RawArticle:
    """Drop control characters that no reader wants (they also break XML)."""
    title = " ".join(_CONTROL.sub(" ", article.title).split())
    body = _CONTROL.sub("", article.body)
    if title == article.title and body == article.body:
        return article
    return RawArticle(
        id=article.id,
        title=title,
        body=body,
        source=article.source,
        line=article.line,
        summary=article.summary,
        link=article.link,
        author=article.author,
        date=article.date,
        updated=article.updated,
        regions=article.regions,
        topics=article.topics,
        format=article.format,
    )


# --- digest text ---------------------------------------------------------------------------


def parse_digest(path: Path, text: str) -> tuple[list[RawArticle], list[StoreError]]:
    """Parse the digest format: title, blank, the same title, blank, body paragraphs.

    An article starts wherever a non-blank line is repeated as the next
    non-blank line. Missing blank lines are tolerated.
    """
    lines = text.split("\n")
    stripped = [line.strip() for line in lines]
    starts: list[tuple[int, int]] = []  # (title line index, first line after the repeat)
    index = 0
    count = len(lines)
    while index < count:
        if stripped[index]:
            following = index + 1
            while following < count and not stripped[following]:
                following += 1
            if following < count and stripped[following] == stripped[index]:
                starts.append((index, following + 1))
                index = following + 1
                continue
        index += 1
    errors: list[StoreError] = []
    if not starts:
        errors.append(
            StoreError(
                path,
                "no article found: expected a title line, a blank line, the same title "
                "again, a blank line and the body (or front matter between +++ or --- lines)",
                line=1,
            )
        )
        return [], errors
    first_text = next((i for i, value in enumerate(stripped) if value), 0)
    if first_text < starts[0][0]:
        errors.append(
            StoreError(
                path,
                "text before the first article is not part of any article and is ignored",
                line=first_text + 1,
            )
        )
    articles: list[RawArticle] = []
    for number, (title_index, body_start) in enumerate(starts):
        body_end = starts[number + 1][0] if number + 1 < len(starts) else count
        title = stripped[title_index]
        body = _paragraphs(lines[body_start:body_end])
        if not body:
            errors.append(
                StoreError(
                    path,
                    f"article {title[:60]!r} has a title but no body; skipped",
                    line=title_index + 1,
                )
            )
            continue
        articles.append(
            RawArticle(
                id=derive_id(title),
                title=title,
                body=body,
                source=path,
                line=title_index + 1,
            )
        )
    return articles, errors


def _paragraphs(lines: list[str]) -> str:
    """Join lines into paragraphs separated by one blank line, trimming the ends."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return "\n\n".join(paragraphs)


# --- one article per file ------------------------------------------------------------------


class FrontMatter(BaseModel):
    """The keys front matter may carry; anything else is a mistake worth reporting."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str | None, Field(pattern=ARTICLE_ID.pattern)] = None
    title: str | None = None
    date: datetime | None = None
    updated: datetime | None = None
    link: str = ""
    regions: list[str] | None = None
    topics: list[str] | None = None
    summary: str = ""
    author: str = ""

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("date", "updated", mode="before")
    @classmethod
    def _aware(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time.min, tzinfo=UTC)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a date; use ISO 8601, e.g. 2024-05-01 or "
                    "2024-05-01T09:30:00+02:00"
                ) from None
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("link")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an absolute http(s) URL")
        if re.search(r"\s", value):
            raise ValueError("must not contain spaces or line breaks")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [slug for slug in value if slug not in REGION_SLUGS]
        if unknown:
            raise ValueError(
                f"unknown region {unknown[0]!r}; known regions: {', '.join(REGION_SLUGS)}"
            )
        return value

    @field_validator("title", "summary", "author")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return " ".join(value.split()) if value else value


def _split_front_matter(path: Path, text: str) -> tuple[str, str, int, str]:
    """Return (kind, front matter text, line of the body, body)."""
    fence = text[:3]
    lines = text.split("\n")
    for index in range(1, len(lines)):
        if lines[index].rstrip() == fence:
            return (
                "toml" if fence == "+++" else "yaml",
                "\n".join(lines[1:index]),
                index + 2,
                "\n".join(lines[index + 1 :]),
            )
    raise StoreError(path, f"front matter opened with {fence} is never closed", line=1)


def parse_front_matter_file(path: Path, text: str) -> tuple[list[RawArticle], list[StoreError]]:
    try:
        kind, header, body_line, body = _split_front_matter(path, text)
        data = _load_front_matter(path, kind, header)
        matter = FrontMatter.model_validate(data)
    except StoreError as exc:
        return [], [exc]
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "front matter"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = (
                "unknown front matter key; known keys: id, title, date, updated, link, "
                "regions, topics, summary, author"
            )
        line = _front_matter_line(text, str(first["loc"][0]) if first["loc"] else "")
        return [], [StoreError(path, f"{key}: {message}", line=line)]
    return _article_from_parts(path, matter, body, body_line)


def _front_matter_line(text: str, key: str) -> int:
    for number, line in enumerate(text.split("\n")[1:], start=2):
        if re.match(rf"^\s*{re.escape(key)}\s*[:=]", line):
            return number
    return 1


def _load_front_matter(path: Path, kind: str, header: str) -> dict[str, Any]:
    try:
        if kind == "toml":
            data: Any = tomllib.loads(header)
        else:
            data = _load_yaml(path, header) if header.strip() else {}
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        if match:
            line = int(match.group(1)) + 1
        elif "end of document" in str(exc):
            line = header.count("\n") + 2
        else:
            line = 1
        message = re.sub(r"\s*\((at line \d+, column \d+|at end of document)\)", "", str(exc))
        raise StoreError(path, f"invalid TOML front matter: {message}", line=line) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StoreError(path, "front matter must be a table of keys and values", line=1)
    return data


# The front matter most archives carry (Hugo, Jekyll): one "key: value" per line, each value
# a string or a date. Read without a YAML parser when every line is one of these and YAML
# would read it the same way; anything else (lists, comments, escapes, a plain value YAML
# would turn into a number, a boolean or null...) goes to the YAML parser.
_SIMPLE_KEYS = frozenset({"id", "title", "date", "updated", "link", "summary", "author"})
_DATE_KEYS = frozenset({"date", "updated"})
_SIMPLE_LINE = re.compile(r"([a-z]+): (\S.*)")
# Timestamps that YAML and ``datetime.fromisoformat`` (the front matter's date check) read
# to the same moment.
_ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\d(?:T\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)?)?")
# Plain (unquoted) words YAML 1.1 reads as booleans or null.
_YAML_WORDS = frozenset(
    form
    for word in ("yes", "no", "true", "false", "on", "off", "null", "y", "n")
    for form in (word, word.capitalize(), word.upper())
)


def _simple_yaml(header: str) -> dict[str, str] | None:
    """``header`` as YAML would read it, when it is simple enough; else None."""
    data: dict[str, str] = {}
    for line in header.split("\n"):
        match = _SIMPLE_LINE.fullmatch(line)
        if match is None or not line.isprintable():
            return None
        key, value = match.groups()
        if key not in _SIMPLE_KEYS or key in data:
            return None
        first, last = value[0], value[-1]
        if first == '"':
            if last != '"' or len(value) < 2 or '"' in value[1:-1] or "\\" in value:
                return None
            value = value[1:-1]
        elif first == "'":
            if last != "'" or len(value) < 2 or "'" in value[1:-1]:
                return None
            value = value[1:-1]
        elif key in _DATE_KEYS and _ISO_MOMENT.fullmatch(value):
            pass  # checked and converted by FrontMatter, as YAML's timestamp would be
        elif (
            not first.isalpha()
            or not first.isascii()
            or value in _YAML_WORDS
            or ": " in value
            or " #" in value
            or last in ": "
        ):
            return None
        data[key] = value
    return data


def _load_yaml(path: Path, header: str) -> Any:
    """YAML front matter, parsed safely (plain data, no Python objects).

    libyaml's loader (``yaml.CSafeLoader``) is about seven times faster than the pure Python
    one on a small header; PyYAML built without libyaml has only the latter. Imported here:
    a store with no YAML front matter never loads it.
    """
    simple = _simple_yaml(header)
    if simple is not None:
        return simple
    import yaml  # noqa: PLC0415

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(header, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "syntax error"
        raise StoreError(path, f"invalid YAML front matter: {problem}", line=line) from exc


def parse_markdown_file(path: Path, text: str) -> tuple[list[RawArticle], list[StoreError]]:
    """A Markdown file without front matter: the first heading (or line) is the title."""
    return _article_from_parts(path, FrontMatter(), text, 1)


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


def _article_from_parts(
    path: Path, matter: FrontMatter, body: str, body_line: int
) -> tuple[list[RawArticle], list[StoreError]]:
    lines = body.split("\n")
    title = matter.title or ""
    title_line = 1
    if not title:
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            heading = _HEADING.match(line)
            title = heading.group(1) if heading else line.strip()
            title_line = body_line + index
            lines = lines[index + 1 :]
            break
    body_text = _paragraphs(lines)
    if not title:
        return [], [StoreError(path, "no title: add 'title' to the front matter", line=1)]
    if not body_text:
        return [], [
            StoreError(path, f"article {title[:60]!r} has no body; skipped", line=title_line)
        ]
    article = RawArticle(
        id=matter.id or derive_id(title),
        title=title,
        body=body_text,
        source=path,
        line=title_line if not matter.title else 1,
        summary=matter.summary,
        link=matter.link,
        author=matter.author,
        date=matter.date,
        updated=matter.updated,
        regions=tuple(dict.fromkeys(matter.regions)) if matter.regions is not None else None,
        topics=tuple(dict.fromkeys(matter.topics)) if matter.topics is not None else None,
        format="markdown" if path.suffix.lower() in MARKDOWN_SUFFIXES else "text",
    )
    return [article], []
