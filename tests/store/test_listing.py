"""The store's listing kept between cycles gives what a full scan gives, after any change.

Real directories, files, links and a real inotify watch: after random changes the kept
listing must equal :func:`scan` while the store was listed whole only once.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.store import listing as listing_module
from syndicator.store.files import ScanResult, scan
from syndicator.store.listing import StoreListing, _Inotify, file_system_type, watchable

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
NAMES = ("a.txt", "b.md", "c.markdown", "D.TXT", "e.jpg", ".hidden.md", "#x.md#", "f.md~", "g")
DIRS = ("2026", "03", "x", ".git", "#tmp")


def _article(chooser: random.Random) -> str:
    title = f"Customs Article {chooser.randrange(10**6)}"
    return f"{title}\n\n{title}\n\n" + "Body text. " * chooser.randrange(1, 30) + "\n"


def _same(listed: ScanResult, root: Path) -> None:
    scanned = scan(root)
    assert listed.files == scanned.files
    assert sorted((str(e.path), e.kind, e.message) for e in listed.errors) == sorted(
        (str(e.path), e.kind, e.message) for e in scanned.errors
    )


class _Changes:
    """Random changes to a store, as editors, archivers and sync tools make them."""

    def __init__(self, root: Path, outside: Path, seed: int) -> None:
        self.root, self.outside = root, outside
        self.chooser = random.Random(seed)

    def _dirs(self) -> list[Path]:
        found = [self.root]
        for path, dirnames, _ in os.walk(self.root):
            found.extend(Path(path, name) for name in dirnames)
        return [d for d in found if d.is_dir() and not d.is_symlink()]

    def _files(self) -> list[Path]:
        return [
            Path(path, name)
            for path, _, names in os.walk(self.root)
            for name in names
            if not Path(path, name).is_symlink()
        ]

    def one(self) -> str:
        pick = self.chooser.choice
        kind = pick(
            [
                "write",
                "write",
                "append",
                "rewrite",
                "touch",
                "delete",
                "mkdir",
                "rmtree",
                "rename",
                "rename-dir",
                "atomic-save",
                "link-file",
                "link-dir",
                "dangling",
                "loop",
                "outside",
                "outside-gone",
            ]
        )
        files, dirs = self._files(), self._dirs()
        if kind == "write" or (not files and kind in {"append", "rewrite", "touch", "delete"}):
            (pick(dirs) / pick(NAMES)).write_text(_article(self.chooser), encoding="utf-8")
        elif kind == "append":
            with pick(files).open("a", encoding="utf-8") as handle:
                handle.write("More text.\n")
        elif kind == "rewrite":  # same size, new bytes, in place
            target = pick(files)
            target.write_bytes(target.read_bytes().swapcase())
        elif kind == "touch":
            stamp = self.chooser.randrange(10**9, 2 * 10**9)
            os.utime(pick(files), (stamp, stamp))
        elif kind == "delete":
            pick(files).unlink()
        elif kind == "mkdir":
            made = pick(dirs) / pick(DIRS)
            made.mkdir(exist_ok=True)
            (made / pick(NAMES)).write_text(_article(self.chooser), encoding="utf-8")
        elif kind == "rmtree" and len(dirs) > 1:
            shutil.rmtree(pick(dirs[1:]))
        elif kind == "rename" and files:
            source = pick(files)
            source.rename(pick(dirs) / pick(NAMES))
        elif kind == "rename-dir" and len(dirs) > 1:
            source = pick(dirs[1:])
            into = [d for d in dirs if d != source and source not in d.parents]
            target = pick(into) / pick(DIRS)
            if not target.exists():
                source.rename(target)
        elif kind == "atomic-save" and files:  # write aside, then rename over the file
            target = pick(files)
            aside = target.with_name(f".{target.name}.tmp")
            aside.write_text(_article(self.chooser), encoding="utf-8")
            aside.replace(target)
        elif kind == "link-file":
            target = self.outside / pick(("one.md", "two.txt"))
            target.write_text(_article(self.chooser), encoding="utf-8")
            link = pick(dirs) / f"link-{self.chooser.randrange(5)}.md"
            if not link.exists() and not link.is_symlink():
                link.symlink_to(target)
        elif kind == "link-dir":  # one link at most to the outside directory
            if not any(p.is_symlink() and p.name == "shared" for d in dirs for p in d.iterdir()):
                (self.outside / "shared").mkdir(exist_ok=True)
                link = pick(dirs) / "shared"
                if not link.exists() and not link.is_symlink():
                    link.symlink_to(self.outside / "shared")
        elif kind == "dangling":
            link = pick(dirs) / f"gone-{self.chooser.randrange(3)}.md"
            if not link.exists() and not link.is_symlink():
                link.symlink_to(self.outside / "nowhere.md")
        elif kind == "loop":
            link = pick(dirs) / "loop"
            if not link.exists() and not link.is_symlink():
                link.symlink_to(self.root)
        elif kind == "outside":  # what links point at changes out of the store's sight
            shared = self.outside / "shared"
            shared.mkdir(exist_ok=True)
            (shared / pick(NAMES)).write_text(_article(self.chooser), encoding="utf-8")
            for name in ("one.md", "two.txt"):
                if (self.outside / name).exists() and self.chooser.random() < 0.5:
                    with (self.outside / name).open("a", encoding="utf-8") as handle:
                        handle.write("Later.\n")
        elif kind == "outside-gone" and (self.outside / "shared").exists():
            if self.chooser.random() < 0.5:
                shutil.rmtree(self.outside / "shared")
            else:  # moved aside, another made in its place
                aside = self.outside / f"old-{self.chooser.randrange(10**6)}"
                (self.outside / "shared").rename(aside)
                (self.outside / "shared").mkdir()
                (self.outside / "shared" / "new.md").write_text("# New\n\nBody.\n")
        return kind


@pytest.mark.parametrize("seed", range(100))
def test_after_random_changes_the_kept_listing_is_the_full_scan(tmp_path: Path, seed: int) -> None:
    root, outside = tmp_path / "store", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "first.txt").write_text("Title\n\nTitle\n\nBody.\n", encoding="utf-8")
    changes = _Changes(root, outside, seed)
    listing = StoreListing()
    _same(listing.scan(root, now=NOW), root)
    done = []
    for step in range(30):
        for _ in range(changes.chooser.randrange(1, 4)):
            done.append(changes.one())
        listed = listing.scan(root, now=NOW + timedelta(seconds=step))
        _same(listed, root)
    assert listing.full_listings == 1, done  # every listing after the first from events
    listing.close()


def test_a_change_is_in_the_very_next_listing(tmp_path: Path) -> None:
    """The kernel queues the event before the write returns: nothing to wait for."""
    listing = StoreListing()
    listing.scan(tmp_path, now=NOW)
    for number in range(200):
        path = tmp_path / f"new-{number}.txt"
        path.write_text(f"T{number}\n\nT{number}\n\nBody.\n", encoding="utf-8")
        listed = listing.scan(tmp_path, now=NOW)
        assert str(path) in {item.location for item in listed.files}
        assert len(listed.files) == number + 1
    assert listing.full_listings == 1
    assert listing.looked_at == 1  # the one file written, not the 200


def test_a_new_tree_is_watched_from_the_moment_it_is_listed(tmp_path: Path) -> None:
    listing = StoreListing()
    listing.scan(tmp_path, now=NOW)
    deep = tmp_path / "2026" / "12" / "03"
    deep.mkdir(parents=True)
    (deep / "a.md").write_text("# A\n\nBody.\n", encoding="utf-8")
    _same(listing.scan(tmp_path, now=NOW), tmp_path)
    (deep / "b.md").write_text("# B\n\nBody.\n", encoding="utf-8")
    (deep / "a.md").unlink()
    listed = listing.scan(tmp_path, now=NOW)
    assert [item.location for item in listed.files] == [str(deep / "b.md")]
    assert listing.full_listings == 1


def test_an_overflowing_queue_makes_a_whole_listing(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text(encoding="ascii"))
    listing = StoreListing()
    listing.scan(tmp_path, now=NOW)
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    with one.open("w", encoding="utf-8") as first, two.open("w", encoding="utf-8") as second:
        for _ in range(limit // 2 + 10):  # alternating: the kernel merges no two in a row
            first.write("x")
            first.flush()
            second.write("y")
            second.flush()
    _same(listing.scan(tmp_path, now=NOW), tmp_path)
    assert listing.full_listings == 2
    (tmp_path / "three.txt").write_text("T\n\nT\n\nBody.\n", encoding="utf-8")
    _same(listing.scan(tmp_path, now=NOW), tmp_path)
    assert listing.full_listings == 2  # watching again


def test_a_root_removed_and_made_again_is_listed_whole(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "a.txt").write_text("A\n\nA\n\nBody.\n", encoding="utf-8")
    listing = StoreListing()
    listing.scan(root, now=NOW)
    shutil.rmtree(root)
    _same(listing.scan(root, now=NOW), root)  # not found
    root.mkdir()
    (root / "b.txt").write_text("B\n\nB\n\nBody.\n", encoding="utf-8")
    _same(listing.scan(root, now=NOW), root)
    moved = tmp_path / "moved"
    root.rename(moved)
    root.mkdir()
    _same(listing.scan(root, now=NOW), root)
    assert listing.full_listings == 4
    assert (
        listing.scan(tmp_path / "moved", now=NOW).files == scan(moved).files
    )  # another root: whole


def test_a_root_that_is_a_link_is_followed_to_where_it_leads(tmp_path: Path) -> None:
    """Deployments switch a link to a new release of the store: no event says so."""
    first, second, root = tmp_path / "v1", tmp_path / "v2", tmp_path / "store"
    for release in (first, second):
        release.mkdir()
        (release / f"{release.name}.txt").write_text("A\n\nA\n\nBody.\n", encoding="utf-8")
    root.symlink_to(first)
    listing = StoreListing()
    _same(listing.scan(root, now=NOW), root)
    (first / "more.md").write_text("# More\n\nBody.\n", encoding="utf-8")
    _same(listing.scan(root, now=NOW), root)
    assert listing.full_listings == 1
    aside = tmp_path / "next"
    aside.symlink_to(second)
    aside.replace(root)
    _same(listing.scan(root, now=NOW), root)
    assert listing.full_listings == 2


def test_a_link_whose_target_s_parent_was_swapped_is_walked_again(tmp_path: Path) -> None:
    """No event reaches the store when a directory above a link's target is renamed."""
    root, releases = tmp_path / "store", tmp_path / "releases"
    (releases / "current" / "news").mkdir(parents=True)
    (releases / "current" / "news" / "old.txt").write_text("O\n\nO\n\nBody.\n", "utf-8")
    root.mkdir()
    (root / "news").symlink_to(releases / "current" / "news")
    listing = StoreListing()
    _same(listing.scan(root, now=NOW), root)
    (releases / "current").rename(releases / "previous")
    (releases / "current" / "news").mkdir(parents=True)
    (releases / "current" / "news" / "new.txt").write_text("N\n\nN\n\nBody.\n", "utf-8")
    listed = listing.scan(root, now=NOW)
    _same(listed, root)
    assert [item.location for item in listed.files] == [str(root / "news" / "new.txt")]
    assert listing.full_listings == 1


def test_without_watches_left_the_store_is_listed_whole_and_watched_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Running out of fs.inotify.max_user_watches (a limit for the whole machine, not
    lowered here) degrades to whole listings, with one warning."""

    def no_watches_left(self: object, path: Path) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "2026").mkdir()
    (tmp_path / "2026" / "a.txt").write_text("A\n\nA\n\nBody.\n", encoding="utf-8")
    listing = StoreListing(full_every=timedelta(minutes=10))
    with monkeypatch.context() as patched:
        patched.setattr(_Inotify, "add", no_watches_left)
        for minute in range(3):
            (tmp_path / f"{minute}.md").write_text("# T\n\nBody.\n", encoding="utf-8")
            _same(listing.scan(tmp_path, now=NOW + timedelta(minutes=minute)), tmp_path)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "fs.inotify.max_user_watches" in warnings[0].getMessage()
    assert listing.full_listings == 3
    # Watches again once full_every has passed since it gave up, and from events after.
    _same(listing.scan(tmp_path, now=NOW + timedelta(minutes=10)), tmp_path)
    (tmp_path / "2026" / "b.txt").write_text("B\n\nB\n\nBody.\n", encoding="utf-8")
    _same(listing.scan(tmp_path, now=NOW + timedelta(minutes=11)), tmp_path)
    assert listing.full_listings == 4


def test_the_store_is_listed_whole_again_after_full_every(tmp_path: Path) -> None:
    listing = StoreListing(full_every=timedelta(minutes=10))
    listing.scan(tmp_path, now=NOW)
    listing.scan(tmp_path, now=NOW + timedelta(minutes=9))
    assert listing.full_listings == 1
    listing.scan(tmp_path, now=NOW + timedelta(minutes=10))
    assert listing.full_listings == 2
    listing.scan(tmp_path, now=NOW + timedelta(minutes=11))
    assert listing.full_listings == 2


def test_a_single_file_store_and_a_missing_one_are_scanned(tmp_path: Path) -> None:
    single = tmp_path / "news.txt"
    single.write_text("A\n\nA\n\nBody.\n", encoding="utf-8")
    listing = StoreListing()
    for _ in range(2):
        _same(listing.scan(single, now=NOW), single)
    single.write_text("A\n\nA\n\nA longer body.\n", encoding="utf-8")
    _same(listing.scan(single, now=NOW), single)
    _same(listing.scan(tmp_path / "missing", now=NOW), tmp_path / "missing")


MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /srv rw,relatime shared:2 - xfs /dev/sdb1 rw
31 30 0:40 / /srv/news\040feeds rw,relatime shared:3 - nfs4 host:/export rw,vers=4.2
32 22 0:41 / /tmp rw,nosuid - tmpfs tmpfs rw
33 31 0:42 / /srv/news\040feeds/local rw - fuse.sshfs host:/x rw
"""


def test_the_file_system_of_a_path_is_the_last_mount_holding_it() -> None:
    assert file_system_type("/srv/articles", MOUNTINFO) == "xfs"
    assert file_system_type("/srv", MOUNTINFO) == "xfs"
    assert file_system_type("/srvx/articles", MOUNTINFO) == "ext4"
    assert file_system_type("/srv/news feeds/2026", MOUNTINFO) == "nfs4"
    assert file_system_type("/srv/news feeds/local/a", MOUNTINFO) == "fuse.sshfs"
    assert file_system_type("/tmp/store", MOUNTINFO) == "tmpfs"
    assert file_system_type("/x", "garbage\n\n") is None


def test_a_store_on_this_machine_s_disk_is_watched(tmp_path: Path) -> None:
    assert watchable(tmp_path) == ""


def test_a_store_on_a_file_system_not_known_as_local_is_listed_whole_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on NFS: this machine's file system taken off the list of local ones."""
    monkeypatch.setattr(listing_module, "LOCAL_FILE_SYSTEMS", frozenset())
    assert watchable(tmp_path).startswith("on a ")
    listing = StoreListing()
    for number in range(3):
        (tmp_path / f"{number}.md").write_text("# T\n\nBody.\n", encoding="utf-8")
        _same(listing.scan(tmp_path, now=NOW), tmp_path)
    assert listing.full_listings == 3
