"""The store's listing kept between cycles: listed whole once, then only what changed.

:func:`~syndicator.store.files.scan` stats every store file, which at a hundred thousand
articles is most of a cycle in which one article was added. :class:`StoreListing` keeps
the last listing and a Linux inotify watch on every directory of the store. At each
listing it reads the events the kernel queued since the last one and looks again only at
the paths they name. The kernel queues an event before the call that caused it returns,
so every change finished before a listing begins is in it: there is no delay to wait out.

The store is listed whole, as :func:`scan` does, the first time; when the kernel's queue
overflowed or a watch could not be added (``fs.inotify.max_user_watches``); when the root
moved or changed; at least every ``full_every`` (a check on the watch, whatever happens);
and always where no watch can be trusted: on other systems, and on network and FUSE file
systems, where what other hosts change raises no event here. What a symbolic link points
at can change out of sight: each link is stat'ed at every listing (a file, or nothing,
looked at again; a directory walked again when the link leads to another one). A
directory reachable by two paths is listed under the one that found it first.

The result is the same as :func:`scan`'s (the tests check it after random changes), so
the cycle cannot tell which listing it got.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import logging
import os
import struct
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from syndicator.errors import StoreError
from syndicator.store.files import (
    FileStat,
    ScanResult,
    collector_paused,
    list_path,
    scan,
    walk,
)

log = logging.getLogger(__name__)

# From <sys/inotify.h> (the same on every Linux architecture).
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
_WATCHED = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows

# File systems where an inotify watch sees every change: what is on the machine's own
# disks or memory. Not NFS, SMB, FUSE or cluster file systems, whose other clients'
# changes raise no event here.
LOCAL_FILE_SYSTEMS = frozenset(
    {
        "bcachefs",
        "btrfs",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "jfs",
        "nilfs2",
        "overlay",
        "ramfs",
        "reiserfs",
        "tmpfs",
        "xfs",
        "zfs",
    }
)
FULL_EVERY = timedelta(hours=1)


def file_system_type(path: str, mountinfo: str) -> str | None:
    """The type of the file system ``path`` (absolute, links resolved) is on, from the
    text of ``/proc/self/mountinfo``: the last mount whose point holds the path."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        try:
            point = _unescape(fields[4])
            fs_type = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        if path == point or path.startswith(point.rstrip("/") + "/"):
            found = fs_type  # later mounts are on top of earlier ones
    return found


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a path as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def watchable(root: Path) -> str:
    """Why an inotify watch on ``root`` cannot be trusted to see every change ("" when it
    can)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "not Linux (no /proc/self/mountinfo)"
    fs_type = file_system_type(os.path.realpath(root), mountinfo)
    if fs_type not in LOCAL_FILE_SYSTEMS:
        return f"on a {fs_type or 'unknown'} file system"
    return ""


class _Inotify:
    """An inotify instance: a non-blocking descriptor closed with this object."""

    _libc: ctypes.CDLL | None = None

    def __init__(self) -> None:
        if _Inotify._libc is None:
            _Inotify._libc = ctypes.CDLL(None, use_errno=True)
        self._lib = _Inotify._libc
        fd = self._lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _oserror()
        self.fd = fd
        self._closer = weakref.finalize(self, os.close, fd)

    def add(self, path: Path) -> int:
        wd = int(self._lib.inotify_add_watch(self.fd, os.fsencode(path), _WATCHED))
        if wd < 0:
            raise _oserror()
        return wd

    def remove(self, wd: int) -> None:
        self._lib.inotify_rm_watch(self.fd, wd)  # gone already when its directory is

    def read(self) -> list[tuple[int, int, str]]:
        """Every event queued: (watch, mask, name), in order; [] when none."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return events
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = os.fsdecode(data[offset : offset + length].rstrip(b"\0"))
                offset += length
                events.append((wd, mask, name))

    def close(self) -> None:
        self._closer()


def _oserror() -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


class WatchLimit(Exception):
    """A directory could not be watched for want of watches or memory."""


@dataclass(slots=True)
class _Directory:
    wd: int
    key: tuple[int, int]


class StoreListing:
    """The store's files between cycles (see the module). One per process; not
    thread-safe."""

    def __init__(self, *, full_every: timedelta = FULL_EVERY) -> None:
        self.full_every = full_every
        self.full_listings = 0  # how many times the store was listed whole
        self.looked_at = 0  # paths looked at again by the last listing from events
        self._root: Path | None = None
        self._inotify: _Inotify | None = None
        self._listed_at: datetime | None = None
        self._files: dict[str, FileStat] = {}
        self._sorted: list[FileStat] = []
        self._errors: dict[str, StoreError] = {}
        self._links: set[str] = set()
        self._dirs: dict[str, _Directory] = {}
        self._paths: dict[int, str] = {}  # watch -> directory
        self._seen: set[tuple[int, int]] = set()
        self._warned = False
        self._gave_up_at: datetime | None = None  # the watch failed: not tried again before

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def scan(self, root: Path, *, now: datetime) -> ScanResult:
        """The store's article files, sorted by path, and the problems found: what
        :func:`scan` would return now."""
        if (
            self._inotify is None
            or root != self._root
            or self._listed_at is None
            or abs(now - self._listed_at) >= self.full_every
            or not self._same_root()
        ):
            return self._list_whole(root, now=now)
        paths = self._changed(self._inotify.read())
        if paths is None:
            return self._list_whole(root, now=now)
        paths.update(dict.fromkeys(link for link in self._links if self._moved(link)))
        self.looked_at = len(paths)
        # Forget first what was at every path: a directory gone may have left its inode
        # number to one made since, which must not pass for a directory seen already.
        for path in paths:
            self._forget(path)
        try:
            for path in paths:
                self._look_again(path)
        except WatchLimit as exc:
            log.info("%s: listed whole", exc)
            return self._list_whole(root, now=now)
        return ScanResult(list(self._sorted), [self._errors[path] for path in sorted(self._errors)])

    def _same_root(self) -> bool:
        """The root still leads to the directory watched (a link to it may lead elsewhere
        now: its own directory is not watched)."""
        known = self._dirs.get(str(self._root))
        if known is None or self._root is None:
            return False
        try:
            found = self._root.stat()
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == known.key

    # --- listing whole -----------------------------------------------------------------

    def _list_whole(self, root: Path, *, now: datetime) -> ScanResult:
        self.close()
        self._root, self._listed_at = root, now
        self._files, self._errors, self._links = {}, {}, set()
        self._dirs, self._paths, self._seen = {}, {}, set()
        self.full_listings += 1
        self.looked_at = 0
        why = watchable(root) if root.is_dir() else "not a directory"
        failed = self._gave_up_at
        if not why and failed is not None and abs(now - failed) < self.full_every:
            why = "could not be watched"
        if why:
            log.debug("store %s listed whole at every cycle: %s", root, why)
            return scan(root)
        self._gave_up_at = now  # until the watch is in place
        try:
            self._inotify = _Inotify()
        except (OSError, AttributeError) as exc:
            return self._unwatched(root, f"cannot watch it ({exc})")
        files: list[FileStat] = []
        errors: list[StoreError] = []
        try:
            with collector_paused():
                walk(root, self._seen, files, errors, entering=self._entering, links=self._links)
        except WatchLimit as exc:
            return self._unwatched(root, str(exc))
        if str(root) not in self._dirs:
            return self._unwatched(root, "cannot watch it")
        self._gave_up_at = None
        files.sort(key=_location)
        self._sorted = files
        self._files = {item.location: item for item in files}
        for error in errors:
            self._errors.setdefault(str(error.path), error)
        return ScanResult(list(files), errors)

    def _unwatched(self, root: Path, why: str) -> ScanResult:
        if not self._warned:
            log.warning(
                "store %s is listed whole at every cycle (watching tried again every %s): %s",
                root,
                self.full_every,
                why,
            )
            self._warned = True
        self.close()
        return scan(root)

    def _entering(self, directory: Path, key: tuple[int, int]) -> None:
        """Watch a directory before it is listed: a change while it is, is seen next time."""
        assert self._inotify is not None
        path = str(directory)
        try:
            wd = self._inotify.add(directory)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise WatchLimit(
                    f"cannot watch every directory ({exc.strerror}); raise the Linux limit "
                    "fs.inotify.max_user_watches"
                ) from exc
            # Cannot be read either (listing it says so); a change of its permissions is
            # an event of its parent's.
            self._dirs[path] = _Directory(-1, key)
            return
        self._dirs[path] = _Directory(wd, key)
        self._paths[wd] = path

    # --- what changed ------------------------------------------------------------------

    def _changed(self, events: list[tuple[int, int, str]]) -> dict[str, None] | None:
        """The paths the events name, each once (looking at a path finds what is there
        now); None when only a whole listing will do."""
        assert self._root is not None
        root = str(self._root)
        paths: dict[str, None] = {}
        for wd, mask, name in events:
            if mask & IN_Q_OVERFLOW:
                log.info("the store changed faster than its watch could queue: listed whole")
                return None
            directory = self._paths.get(wd)
            if directory is None:
                continue  # a watch given up on, with the directory it watched
            if name:
                paths[str(Path(directory, name))] = None
            elif directory == root:
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB | IN_IGNORED):
                    return None
            elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                # Gone or moved: its parent says so too, unless it is the target of a
                # link (whose new directory may have been given the same inode number).
                paths[directory] = None
        return paths

    def _moved(self, link: str) -> bool:
        """What a symbolic link points at changes out of the watches' sight: a file (or
        nothing) is looked at again, a directory when the link leads to another one."""
        known = self._dirs.get(link)
        if known is None:
            return True
        try:
            target = Path(link).stat()
        except OSError:
            return True
        return (target.st_dev, target.st_ino) != known.key

    def _look_again(self, path: str) -> None:
        """Drop what is known at ``path`` (and under it) and find it again."""
        self._forget(path)
        files: list[FileStat] = []
        errors: list[StoreError] = []
        list_path(path, self._seen, files, errors, entering=self._entering, links=self._links)
        for item in files:
            self._add(item)
        for error in errors:
            self._errors.setdefault(str(error.path), error)

    def _forget(self, path: str) -> None:
        self._links.discard(path)
        self._errors.pop(path, None)
        if path in self._files:
            self._remove(path)
        if path in self._dirs:
            assert self._inotify is not None
            below = path + "/"
            for directory in [d for d in self._dirs if d == path or d.startswith(below)]:
                known = self._dirs.pop(directory)
                self._seen.discard(known.key)
                if known.wd >= 0:
                    del self._paths[known.wd]
                    self._inotify.remove(known.wd)
            for location in [f for f in self._files if f.startswith(below)]:
                self._remove(location)
            for location in [e for e in self._errors if e.startswith(below)]:
                del self._errors[location]
            self._links = {link for link in self._links if not link.startswith(below)}

    def _add(self, item: FileStat) -> None:
        index = bisect.bisect_left(self._sorted, item.location, key=_location)
        if item.location in self._files:
            self._sorted[index] = item
        else:
            self._sorted.insert(index, item)
        self._files[item.location] = item

    def _remove(self, location: str) -> None:
        del self._files[location]
        index = bisect.bisect_left(self._sorted, location, key=_location)
        del self._sorted[index]


def _location(item: FileStat) -> str:
    return item.location
