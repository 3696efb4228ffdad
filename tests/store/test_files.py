"""Reading the article store: both formats, identity, and every kind of bad input."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndicator.models import derive_id
from syndicator.store import files
from syndicator.store.files import parse_bytes, read_file, scan
from tests.conftest import SAMPLE_STORE, write

DIGEST = """\
First Title

First Title

First body paragraph.

Second paragraph of the first article.

Second Title

Second Title

Body of the second article.
"""


def test_digest_format_splits_at_repeated_titles(tmp_path: Path) -> None:
    path = write(tmp_path / "digest.txt", DIGEST)
    articles, errors = read_file(path)
    assert errors == []
    assert [a.title for a in articles] == ["First Title", "Second Title"]
    assert articles[0].body == "First body paragraph.\n\nSecond paragraph of the first article."
    assert articles[1].body == "Body of the second article."
    assert [a.line for a in articles] == [1, 9]
    assert articles[0].id == "first-title"


def test_sample_store_has_ten_articles() -> None:
    articles, errors = read_file(SAMPLE_STORE)
    assert errors == []
    assert len(articles) == 10
    assert len({a.id for a in articles}) == 10
    assert all(a.body and a.title for a in articles)


def test_identity_is_stable_across_case_spacing_and_accents() -> None:
    assert derive_id("Côte d'Ivoire  Launches AEO") == derive_id("COTE D'IVOIRE launches aeo")
    assert derive_id("A" * 500) != derive_id("A" * 499 + "B")
    assert len(derive_id("word " * 200)) <= 105
    assert derive_id("!!!").startswith("article-")


def test_missing_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path / "tight.txt", "Tight Title\nTight Title\nThe body.\n")
    articles, errors = read_file(path)
    assert errors == []
    assert [(a.title, a.body) for a in articles] == [("Tight Title", "The body.")]


def test_crlf_cr_and_bom_are_read(tmp_path: Path) -> None:
    for name, data in {
        "crlf.txt": DIGEST.replace("\n", "\r\n").encode(),
        "cr.txt": DIGEST.replace("\n", "\r").encode(),
        "bom.txt": b"\xef\xbb\xbf" + DIGEST.encode(),
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        articles, errors = read_file(path)
        assert errors == [], name
        assert [a.title for a in articles] == ["First Title", "Second Title"], name
        assert (
            articles[0].content_hash
            == read_file(write(tmp_path / "plain.txt", DIGEST))[0][0].content_hash
        )


def test_toml_front_matter(tmp_path: Path) -> None:
    path = write(
        tmp_path / "kenya.md",
        """
        +++
        id = "kra-egms-2024"
        title = "KRA Extends Electronic Cargo Tracking"
        date = 2024-05-01T09:30:00+03:00
        link = "https://www.kra.go.ke/news/egms"
        regions = ["east-southern-africa"]
        topics = ["transit"]
        summary = "Tracking extended."
        author = "KRA Press Office"
        +++
        The Kenya Revenue Authority has extended **tracking**.
        """,
    )
    (article,), errors = read_file(path)
    assert errors == []
    assert article.id == "kra-egms-2024"
    assert article.title == "KRA Extends Electronic Cargo Tracking"
    assert article.date == datetime(2024, 5, 1, 6, 30, tzinfo=UTC)
    assert article.regions == ("east-southern-africa",)
    assert article.topics == ("transit",)
    assert article.body == "The Kenya Revenue Authority has extended **tracking**."
    assert article.author == "KRA Press Office"


def test_yaml_front_matter_with_date_only_and_heading_title(tmp_path: Path) -> None:
    path = write(
        tmp_path / "y.md",
        """
        ---
        date: 2024-05-02
        topics: [aeo]
        ---
        # Ghana Launches AEO Programme

        Body text.
        """,
    )
    (article,), errors = read_file(path)
    assert errors == []
    assert article.title == "Ghana Launches AEO Programme"
    assert article.id == "ghana-launches-aeo-programme"
    assert article.date == datetime(2024, 5, 2, tzinfo=UTC)
    assert article.regions is None
    assert article.topics == ("aeo",)
    assert article.body == "Body text."


def test_markdown_without_front_matter(tmp_path: Path) -> None:
    path = write(tmp_path / "plain.md", "# A Heading\n\nSome body.\n")
    (article,), errors = read_file(path)
    assert errors == []
    assert (article.title, article.body) == ("A Heading", "Some body.")


@pytest.mark.parametrize(
    ("name", "data", "message", "line"),
    [
        ("empty.txt", b"", "empty file", 1),
        ("blank.txt", b"\n\n  \n", "empty file", 1),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary file", None),
        ("noarticle.txt", b"Just one line of text\nand another\n", "no article found", 1),
        ("nobody.txt", b"Lonely Title\n\nLonely Title\n\n", "has a title but no body", 1),
        ("unclosed.md", b"+++\ntitle = 'x'\nbody\n", "never closed", 1),
        ("badtoml.md", b"+++\ntitle = 'x'\ndate = = 3\n+++\nbody\n", "invalid TOML", 3),
        ("badyaml.md", b"---\ntitle: [unclosed\n---\nbody\n", "invalid YAML", None),
        ("unknown.md", b"+++\ntitle = 'x'\ncolour = 'red'\n+++\nbody\n", "unknown front", 3),
        ("baddate.md", b"+++\ntitle = 'x'\ndate = 'yesterday'\n+++\nbody\n", "not a date", 3),
        ("badlink.md", b"+++\ntitle = 'x'\nlink = '/relative'\n+++\nbody\n", "absolute", 3),
        ("badregion.md", b"+++\ntitle = 'x'\nregions = ['mars']\n+++\nb\n", "unknown region", 3),
        ("badid.md", b"+++\nid = 'has space'\ntitle = 'x'\n+++\nbody\n", "id", 2),
        ("notitle.md", b"+++\nauthor = 'me'\n+++\n\n", "no title", 1),
        ("listfm.md", b"---\n- a\n- b\n---\nbody\n", "table of keys", 1),
    ],
)
def test_bad_input_is_reported_with_path_and_line(
    tmp_path: Path, name: str, data: bytes, message: str, line: int | None
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    articles, errors = read_file(path)
    assert articles == []
    assert len(errors) == 1
    (error,) = errors
    assert message in str(error)
    assert str(error).startswith(str(path))
    if line is not None:
        assert error.line == line
        assert str(error).startswith(f"{path}:{line}: ")


def test_invalid_utf8_skips_only_the_affected_article(tmp_path: Path) -> None:
    data = DIGEST.encode().replace(b"Body of the second", b"Body \xff\xfe of the second")
    path = tmp_path / "mixed.txt"
    path.write_bytes(data)
    articles, errors = read_file(path)
    assert [a.title for a in articles] == ["First Title"]
    assert len(errors) == 1
    assert "invalid UTF-8" in str(errors[0])
    assert errors[0].line == 13


def test_text_before_first_article_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "preamble.txt", "Stray preamble line.\n\n" + DIGEST)
    articles, errors = read_file(path)
    assert len(articles) == 2
    assert len(errors) == 1
    assert "before the first article" in str(errors[0])
    assert errors[0].line == 1


def test_control_characters_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "ctl.md"
    path.write_bytes(b'+++\ntitle = "Bell \\u0007 title"\n+++\nBody\x0b with \x1b control.\n')
    (article,), errors = read_file(path)
    assert errors == []
    assert article.title == "Bell title"
    assert article.body.split() == ["Body", "with", "control."]


def test_vanished_file_is_reported(tmp_path: Path) -> None:
    articles, errors = read_file(tmp_path / "gone.txt")
    assert articles == []
    assert "vanished" in str(errors[0])


def test_unreadable_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom permissions do not stop reading: raise the error
    # the operating system would give instead.
    path = write(tmp_path / "secret.txt", DIGEST)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    articles, errors = read_file(path)
    assert articles == []
    assert str(errors[0]) == f"{path}: cannot read: Permission denied"


def test_scan_is_recursive_sorted_and_skips_other_files(tmp_path: Path) -> None:
    write(tmp_path / "b" / "two.txt", DIGEST)
    write(tmp_path / "a" / "one.md", "# One\n\nBody.\n")
    write(tmp_path / ".hidden" / "three.txt", DIGEST)
    write(tmp_path / "a" / ".draft.md", "# Draft\n\nBody.\n")
    write(tmp_path / "a" / "backup.md~", "# Backup\n\nBody.\n")
    write(tmp_path / "notes.json", "{}")
    result = scan(tmp_path)
    assert result.errors == []
    assert [f.path.relative_to(tmp_path).as_posix() for f in result.files] == [
        "a/one.md",
        "b/two.txt",
    ]
    assert all(f.size > 0 and f.mtime_ns > 0 for f in result.files)


def test_scan_survives_symlink_loops_and_dangling_links(tmp_path: Path) -> None:
    write(tmp_path / "store" / "one.txt", DIGEST)
    (tmp_path / "store" / "loop").symlink_to(tmp_path / "store")
    (tmp_path / "store" / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    result = scan(tmp_path / "store")
    assert [f.path.name for f in result.files] == ["one.txt"]
    messages = [str(e) for e in result.errors]
    assert any("loop" in m for m in messages)
    assert any("points nowhere" in m for m in messages)


def test_scan_of_single_file_and_missing_store(tmp_path: Path) -> None:
    path = write(tmp_path / "one.txt", DIGEST)
    assert [f.path for f in scan(path).files] == [path]
    missing = scan(tmp_path / "missing")
    assert missing.files == []
    assert "not found" in str(missing.errors[0])


def test_parse_bytes_is_pure(tmp_path: Path) -> None:
    # No file needs to exist: parsing works on bytes alone.
    articles, errors = parse_bytes(tmp_path / "virtual.txt", DIGEST.encode())
    assert errors == []
    assert len(articles) == 2
    assert not (tmp_path / "virtual.txt").exists()
    assert list(tmp_path.iterdir()) == []


# --- simple YAML front matter read without a YAML parser -------------------------------------

_YAML_VALUES = st.one_of(
    st.sampled_from(
        [
            "Kenya Extends Cargo Tracking",
            '"Quoted: with a colon # and hash"',
            "'single quoted'",
            "'it''s'",
            '"escaped \\" quote"',
            "yes",
            "No",
            "null",
            "~",
            "12",
            "3.5",
            "2024-05-01",
            "2024-05-01T09:30:00+03:00",
            "2024-05-01T09:30:00Z",
            "2024-05-01T09:30:00.25",
            "2024-5-1",
            "2024-05-01 09:30:00 +3",
            "Title: with colon",
            "Title # comment",
            "trailing space ",
            "O'Brien Says [draft], {x}",
            "https://example.org/a:b?c=d",
            "Ünïcode Tïtle",
            "!tag value",
            "&anchor value",
            "[a, b]",
            "tab\there",
            "",
        ]
    ),
    st.text(min_size=1, max_size=12),
)
_YAML_KEYS = st.sampled_from(
    ["id", "title", "date", "updated", "link", "summary", "author", "regions", "tags"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_YAML_KEYS, _YAML_VALUES), min_size=1, max_size=4))
def test_simple_yaml_front_matter_reads_as_yaml_does(lines: list[tuple[str, str]]) -> None:
    """Front matter read by the shortcut gives the same article, or the same error, as YAML."""
    header = "\n".join(f"{key}: {value}" for key, value in lines)
    data = f"---\n{header}\n---\nThe body.\n".encode()
    fast_articles, fast_errors = parse_bytes(Path("a.md"), data)
    with _pure_yaml_only():
        slow_articles, slow_errors = parse_bytes(Path("a.md"), data)
    assert fast_articles == slow_articles
    assert [str(error) for error in fast_errors] == [str(error) for error in slow_errors]


@contextlib.contextmanager
def _pure_yaml_only() -> Iterator[None]:
    """Front matter parsed by PyYAML's own loader, with no shortcut."""
    original = files._simple_yaml
    files._simple_yaml = lambda header: None
    try:
        yield
    finally:
        files._simple_yaml = original


def test_simple_yaml_front_matter_takes_the_shortcut() -> None:
    header = 'title: "Kenya: Cargo"\ndate: 2024-05-01T09:30:00+03:00\nauthor: Press office'
    assert files._simple_yaml(header) == {
        "title": "Kenya: Cargo",
        "date": "2024-05-01T09:30:00+03:00",
        "author": "Press office",
    }
    for other in ("regions: [europe]", "title: yes", "id: 12", "title: a # b", "x: y"):
        assert files._simple_yaml(other) is None, other
