"""Bad store input: generated digests and front matter, and files no editor should write.

Nothing crashes; each problem is reported once, naming its path (and line where there is
one); the valid articles beside the bad ones are still published and mailed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syndicator.classify.classifier import Classifier
from syndicator.config import load_config
from syndicator.models import ARTICLE_ID
from syndicator.pipeline import deliver_due, run_cycle
from syndicator.state.db import State
from syndicator.store.files import parse_bytes
from tests.conftest import T0
from tests.faults.helpers import ENV, command, immediate, run, use_smtp, with_sample_store
from tests.smtp_sink import Sink

pytestmark = pytest.mark.faults

VIRTUAL = Path("/store/generated.txt")
_UNWANTED = {chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]}


def assert_sound(path: Path, data: bytes) -> None:
    """What parsing any bytes must give: no exception, errors naming the path, clean
    articles."""
    articles, errors = parse_bytes(path, data)
    for error in errors:
        assert str(error).startswith(f"{path}:") or str(error).startswith(f"{path} ")
        assert error.line is None or error.line >= 1
        assert "\n" not in str(error).removeprefix(str(path))[:1]
    for article in articles:
        assert article.title.strip() and article.body.strip()
        assert not set(article.title) & (_UNWANTED | {"\n", "\r"})
        assert not set(article.body) & _UNWANTED
        assert ARTICLE_ID.fullmatch(article.id)
        article.body.encode("utf-8")  # no lone surrogates left from undecodable bytes
        article.title.encode("utf-8")


# --- generated input ---------------------------------------------------------------------

line_ending = st.sampled_from(["\n", "\r\n", "\r"])
anything = st.text(st.characters(codec="utf-8"), max_size=200)
words = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyzéüß", min_size=1, max_size=10), min_size=1, max_size=8
).map(" ".join)


# Text of any characters, or bytes that need not be UTF-8 at all.
some_bytes = st.one_of(
    anything.map(lambda text: text.encode("utf-8", "surrogatepass")), st.binary(max_size=80)
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(some_bytes, some_bytes, st.booleans()), max_size=6),
    line_ending,
    st.booleans(),
    st.binary(max_size=64),
)
def test_any_digest_text_parses_without_crashing(
    parts: list[tuple[bytes, bytes, bool]], newline: str, bom: bool, junk: bytes
) -> None:
    end = newline.encode()
    data = b"\xef\xbb\xbf" if bom else b""
    for title, body, blank in parts:
        gap = end * 2 if blank else end
        data += title + gap + title + gap + body + end + end
    assert_sound(VIRTUAL, data + junk)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(words, words), min_size=1, max_size=5, unique_by=lambda p: p[0]),
    line_ending,
    st.booleans(),
    st.booleans(),
)
def test_valid_digests_survive_line_endings_bom_and_missing_blank_lines(
    articles: list[tuple[str, str]], newline: str, bom: bool, blank: bool
) -> None:
    titles = {title for title, _ in articles}
    articles = [(title, body) for title, body in articles if body not in titles]
    gap = newline * 2 if blank else newline
    text = "".join(f"{t}{gap}{t}{gap}Body: {b}.{newline}{gap}" for t, b in articles)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    found, errors = parse_bytes(VIRTUAL, data)
    assert errors == []
    assert [(a.title, a.body) for a in found] == [(t, f"Body: {b}.") for t, b in articles]


front_value = st.one_of(
    anything,
    st.integers(),
    st.lists(anything, max_size=3),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.booleans(),
)
front_key = st.one_of(
    st.sampled_from(
        ["id", "title", "date", "updated", "link", "regions", "topics", "summary", "author"]
    ),
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
)


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value.isoformat() if hasattr(value, "isoformat") else value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(front_key, front_value, max_size=6),
    anything,
    st.sampled_from(["toml", "yaml", "raw"]),
    line_ending,
    st.booleans(),
)
def test_any_front_matter_parses_without_crashing(
    matter: dict[str, object], body: str, kind: str, newline: str, closed: bool
) -> None:
    if kind == "toml":
        header = newline.join(f"{key} = {toml_value(value)}" for key, value in matter.items())
        fence = "+++"
    elif kind == "yaml":
        header = newline.join(
            f"{key}: {json.dumps(value, default=str)}" for key, value in matter.items()
        )
        fence = "---"
    else:  # whatever text sits between the fences
        header = newline.join(str(value) for value in matter.values())
        fence = "+++"
    closing = f"{fence}{newline}" if closed else ""
    text = f"{fence}{newline}{header}{newline}{closing}{body}{newline}"
    data = text.encode("utf-8", "surrogatepass")
    for path in (Path("/store/generated.md"), VIRTUAL):
        articles, errors = parse_bytes(path, data)
        assert_sound(path, data)
        assert len(articles) + len(errors) >= 1  # an article, or a reason why not
        if articles:
            assert len(articles) == 1


def test_an_enormous_line_is_reported_not_published(tmp_path: Path) -> None:
    title = "Kenya " + "x" * 2_000_000
    data = f"{title}\n\n{title}\n\nBody.\n\nShort Title\n\nShort Title\n\nShort body.\n".encode()
    articles, errors = parse_bytes(tmp_path / "long.txt", data)
    assert [a.title for a in articles] == ["Short Title"]
    (error,) = errors
    assert str(error).startswith(f"{tmp_path / 'long.txt'}:1: ")
    assert "too long" in str(error)


# --- bad files in a real store, through a whole cycle ----------------------------------------

AMERICAS = ["desk@example.org"]


def problems_logged(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]


def reported_once(messages: list[str], path: Path, needle: str) -> None:
    about = [m for m in messages if m.startswith(f"{path}:") or m.startswith(f"{path} ")]
    assert len(about) == 1, (path, about)
    assert needle in about[0], about[0]


def test_bad_files_beside_good_ones_through_a_cycle(
    install: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    with Sink() as sink:
        config = load_config(
            use_smtp(install, sink.port, immediate(AMERICAS, regions='["americas"]'))
        )
        store = with_sample_store(install)
        state = State.open(config.state.url)
        try:
            run_cycle(config, classifier, state, now=T0)
            titles = {
                "bom": "Peru Opens Green Lane",
                "crlf": "Chile Launches AEO Programme",
                "cr": "Mexico Extends Single Window",
                "huge": "Brazil Trains Customs Brokers",
            }
            bad = {
                store / "binary.txt": (
                    b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 40,
                    "binary",
                ),
                store / "latin1.txt": (
                    "Café in Bogotá\n\nCafé in Bogotá\n\nColombia.\n".encode("latin-1"),
                    "invalid UTF-8",
                ),
                store / "empty.md": (b"", "empty file"),
                store / "control.txt": (b"Only Control\n\nOnly Control\n\n\x1b\x07\n", "control"),
            }
            for path, (data, _) in bad.items():
                path.write_bytes(data)
            good = f"{titles['bom']}\n\n{titles['bom']}\n\nPeru's customs opened it.\n"
            (store / "bom.txt").write_bytes(b"\xef\xbb\xbf" + good.encode())
            good = f"{titles['crlf']}\n\n{titles['crlf']}\n\nChile's customs did.\n"
            (store / "crlf.txt").write_bytes(good.replace("\n", "\r\n").encode())
            good = f"{titles['cr']}\n\n{titles['cr']}\n\nMexico's customs did.\n"
            (store / "cr.txt").write_bytes(good.replace("\n", "\r").encode())
            huge = store / "huge.txt"
            write_huge(huge, titles["huge"])
            (store / "loop").symlink_to(store)
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
                asyncio.run(deliver_due(config, state, clock=lambda: T0 + timedelta(minutes=1)))
            messages = problems_logged(caplog.records)
            for path, (_, needle) in bad.items():
                reported_once(messages, path, needle)
            reported_once(messages, huge, "too long")
            reported_once(messages, store / "loop", "symbolic link loop")
            assert len(messages) == len(bad) + 2, messages
            feed = (config.feeds.output_dir / "americas.atom").read_text()
            assert all(title in feed for title in titles.values())
            (mail,) = sink.received
            text = mail.message.get_body(preferencelist=("plain",))
            assert text is not None
            assert all(title in text.get_content() for title in titles.values())
            # An unchanged store is not read again, and its problems are not reported again.
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=2))
            assert result.reload.files_read == 0
            assert [m for m in problems_logged(caplog.records) if "loop" not in m] == []
        finally:
            state.close()


def write_huge(path: Path, title: str) -> None:
    """A 50 MB digest: one short article, then one whose body runs on for 50 MB."""
    paragraph = "".join(
        f"Line {n} of a runaway report on customs transit, risk and revenue matters.\n"
        for n in range(1000)
    )
    with path.open("w", encoding="utf-8") as handle:
        handle.write(f"{title}\n\n{title}\n\nBrazil's brokers were trained.\n\n")
        handle.write("Runaway Report\n\nRunaway Report\n\n")
        for _ in range(50 * 1024 * 1024 // len(paragraph) + 1):
            handle.write(paragraph + "\n")
    assert path.stat().st_size >= 50 * 1024 * 1024


def test_one_hundred_thousand_tiny_files(
    install: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(install)
    store = config.store.path
    (store / "seed.txt").write_text("Seed Story\n\nSeed Story\n\nKenya news.\n")
    state = State.open(config.state.url)
    try:
        run_cycle(config, classifier, state, now=T0)  # the baseline
        count = 100_000
        for number in range(count):
            directory = store / f"d{number // 1000:03}"
            if number % 1000 == 0:
                directory.mkdir()
            # Half empty, half a line that is no article; three real articles among them.
            data = b"" if number % 2 else f"note {number}\n".encode()
            if number in (7, 50_001, 99_998):
                data = f"Chile Story {number}\n\nChile Story {number}\n\nChile.\n".encode()
            fd = os.open(directory / f"f{number:06}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, data)
            os.close(fd)
        with caplog.at_level(logging.WARNING):
            result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=1))
        assert result.reload.files == count + 1
        assert sorted(result.reload.new) == [f"chile-story-{n}" for n in (50_001, 7, 99_998)]
        messages = problems_logged(caplog.records)
        assert len(messages) == count - 3
        assert len({m.split(":", 1)[0] for m in messages}) == count - 3  # once per file
        assert "Chile Story 99998" in (config.feeds.output_dir / "americas.atom").read_text()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=2))
        assert again.reload.files_read == 0
        assert problems_logged(caplog.records) == []
    finally:
        state.close()


def test_files_deleted_and_rewritten_during_scans(install: Path, classifier: Classifier) -> None:
    """A writer churns files (non-atomically) while cycles run; the stable articles stay,
    no cycle fails, and once the churn stops one cycle brings state in line with the store."""
    config = load_config(install)
    store = config.store.path
    for number in range(50):
        (store / f"stable{number:02}.txt").write_text(
            f"Stable Story {number}\n\nStable Story {number}\n\nKenya news {number}.\n"
        )
    state = State.open(config.state.url)
    stop = threading.Event()

    def churn() -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            for number in range(20):
                path = store / f"churn{number:02}.txt"
                if (turn + number) % 3 == 0:
                    path.unlink(missing_ok=True)
                else:
                    with path.open("w") as handle:  # truncate, then write: readers see halves
                        handle.write(f"Churn Story {number}\n\nChurn Story {number}\n\n")
                        handle.flush()
                        handle.write(f"Version {turn}.\n")
            (store / "moving").mkdir(exist_ok=True)
            shutil.rmtree(store / "moving", ignore_errors=True)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for minute in range(15):
            result = run_cycle(config, classifier, state, now=T0 + timedelta(minutes=minute))
            ids = {a.id for a in state.articles()}
            assert {f"stable-story-{n}" for n in range(50)} <= ids
            assert result.reload.articles >= 50
    finally:
        stop.set()
        worker.join()
    try:
        for number in range(20):
            path = store / f"churn{number:02}.txt"
            if number % 2:
                path.unlink(missing_ok=True)
            else:
                path.write_text(f"Churn Story {number}\n\nChurn Story {number}\n\nFinal.\n")
        os.utime(store, None)
        run_cycle(config, classifier, state, now=T0 + timedelta(hours=1))
        bodies = {a.id: a.body for a in state.articles()}
        churned = {key: body for key, body in bodies.items() if key.startswith("churn")}
        assert churned == {f"churn-story-{n}": "Final." for n in range(0, 20, 2)}
        assert len(bodies) == 60
    finally:
        state.close()


# Root reads anything: without these two capabilities it obeys permissions like anyone.
DROP_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


# Run in a subprocess before the command: every error message is reworded beyond
# recognition (upper case, reversed), so no decision can rest on its words.
REWORD_MESSAGES = """
import sys
from syndicator import errors
from syndicator.cli import main

original = errors.SyndicatorError.__init__


def reworded(self, message, *, hint=""):
    original(self, "reworded " + message.upper()[::-1], hint=hint)


errors.SyndicatorError.__init__ = reworded
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("reword", [False, True], ids=["messages", "reworded"])
def test_unreadable_file_and_directory(install: Path, reword: bool) -> None:
    """Real permissions; when the tests run as root, the cycle runs without the
    capabilities that let root ignore them. Reworded messages change no decision."""
    store = install.parent.parent / "articles"
    (store / "open.txt").write_text("Chile Story\n\nChile Story\n\nChile news.\n")
    secret = store / "secret.txt"
    secret.write_text("Peru Story\n\nPeru Story\n\nPeru news.\n")
    locked = store / "locked"
    locked.mkdir()
    (locked / "inner.txt").write_text("Mexico Story\n\nMexico Story\n\nMexico.\n")
    prefix = DROP_OVERRIDES if os.geteuid() == 0 else []
    first = run(install, "run", "--once")
    assert first.returncode == 0, first.stderr
    (store / "open.txt").write_text("Chile Story\n\nChile Story\n\nChile news, edited.\n")
    secret.write_text("Peru Story\n\nPeru Story\n\nPeru news, edited.\n")
    secret.chmod(0o000)
    locked.chmod(0o000)
    second = command(install, "run", "--once")
    if reword:
        second[1:3] = ["-c", REWORD_MESSAGES]
    try:
        result = subprocess.run(
            [*prefix, *second],
            check=False,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
    finally:
        locked.chmod(0o755)
        secret.chmod(0o644)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    if reword:
        reversed_secret = str(secret).upper()[::-1]
        assert sum(reversed_secret in line for line in lines) == 1, result.stderr
        assert "cannot" not in result.stderr, result.stderr
        assert sum(str(locked).upper()[::-1] in line for line in lines) == 1, result.stderr
    else:
        assert sum(str(secret) in line for line in lines) == 1, result.stderr
        assert any(f"{secret}: cannot read: Permission denied" in line for line in lines)
        assert sum(str(locked) in line for line in lines) == 1, result.stderr
    # Out of sight is not gone: what could not be read keeps its articles, as they were.
    feed = (install.parent.parent / "feeds" / "all.atom").read_text()
    assert "Chile news, edited." in feed
    assert "Peru news." in feed and "Peru news, edited." not in feed
    assert "Mexico Story" in feed, result.stderr
