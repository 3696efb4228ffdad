"""The command line end to end, as a real subprocess."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from syndicator.cli import _handler, build_parser
from syndicator.config import SHIPPED_REGIONS, SHIPPED_TOPICS
from syndicator.state.db import State
from syndicator.state.subscribers import find_subscriber, mark_removed
from tests.conftest import SAMPLE_STORE, write


def syndicator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syndicator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def sample_install(install: Path) -> Path:
    (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    return install


@pytest.mark.parametrize("command", [[], ["run"], ["check"], ["articles"], ["explain"]])
def test_help_on_every_command(command: list[str]) -> None:
    result = syndicator(*command, "--help")
    assert result.returncode == 0
    assert "usage: syndicator" in result.stdout
    assert "--config" in result.stdout


def test_usage_errors_exit_2() -> None:
    assert syndicator().returncode == 2
    assert syndicator("frobnicate").returncode == 2
    assert syndicator("articles", "--colour").returncode == 2
    assert syndicator("explain").returncode == 2


def test_run_once_then_articles_json(sample_install: Path) -> None:
    run = syndicator("--config", str(sample_install), "run", "--once")
    assert run.returncode == 0, run.stderr
    assert "10 articles (10 new, 0 updated, 0 removed)" in run.stderr
    listed = syndicator("articles", "--json", "--config", str(sample_install))
    assert listed.returncode == 0, listed.stderr
    articles = json.loads(listed.stdout)
    assert len(articles) == 10
    first = articles[0]
    assert {"id", "title", "regions", "topics", "published", "updated", "source"} <= set(first)
    assert first["title"].startswith("Colombia Adopts")
    assert first["regions"] == ["americas"]
    assert first["source"].endswith("sample.txt:1")
    # The second cycle finds nothing new.
    again = syndicator("--config", str(sample_install), "run", "--once")
    assert "(0 new, 0 updated, 0 removed), 0/1 files read" in again.stderr


def test_articles_filters_and_text_output(sample_install: Path) -> None:
    assert syndicator("--config", str(sample_install), "run", "--once").returncode == 0
    europe = syndicator("--config", str(sample_install), "articles", "--region", "europe")
    assert europe.returncode == 0
    assert "Uzbekistans" in europe.stdout
    assert "Colombia" not in europe.stdout
    topic = syndicator(
        "--config", str(sample_install), "articles", "--topic", "plant-health", "--json"
    )
    assert [a["title"] for a in json.loads(topic.stdout)] == [
        "WCO and IPPC Boost Global Trade with Stricter Plant Health Rules"
    ]
    unknown = syndicator("--config", str(sample_install), "articles", "--region", "mars")
    assert unknown.returncode == 1
    assert "unknown region 'mars'" in unknown.stderr


def test_explain_shows_cues_roles_and_weights(sample_install: Path) -> None:
    # Works before any cycle (straight from the store) and after (from state).
    for _ in range(2):
        result = syndicator("--config", str(sample_install), "explain", "Uzbekistans")
        assert result.returncode == 0, result.stderr
        assert "regions: europe" in result.stdout
        assert "'uzbekistans'" in result.stdout
        assert "weight 3" in result.stdout
        syndicator("--config", str(sample_install), "run", "--once")
    missing = syndicator("--config", str(sample_install), "explain", "no such article")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1


def test_check_passes_on_the_example_configuration() -> None:
    result = syndicator("check", cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems" in result.stdout


def test_check_names_the_gazetteer_and_taxonomy_in_use(tmp_path: Path) -> None:
    # A configuration with no [classify] table classifies with the files shipped in the
    # package; one that names its own file uses it instead, and check says which.
    config = write(tmp_path / "site" / "syndicator.toml", '[store]\npath = "articles"\n')
    (tmp_path / "site" / "articles").mkdir()
    (tmp_path / "site" / "subscribers.toml").write_text("")
    shipped = syndicator("--config", str(config), "check")
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert f"gazetteer: {SHIPPED_REGIONS} (shipped with syndicator)" in shipped.stdout
    assert f"taxonomy: {SHIPPED_TOPICS} (shipped with syndicator)" in shipped.stdout

    own = tmp_path / "site" / "my-topics.toml"
    own.write_text('[[topic]]\nslug = "tariffs"\nname = "Tariffs"\ncues = ["tariff"]\n')
    config.write_text(config.read_text() + '[classify]\ntopics = "my-topics.toml"\n')
    replaced = syndicator("--config", str(config), "check")
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert f"taxonomy: {own} (from classify.topics)" in replaced.stdout
    assert f"gazetteer: {SHIPPED_REGIONS} (shipped with syndicator)" in replaced.stdout
    write(tmp_path / "site" / "articles" / "a.md", '+++\ntitle = "T"\ntopics = ["aeo"]\n+++\nB\n')
    unknown = syndicator("--config", str(config), "check")
    assert unknown.returncode == 1
    assert "topics: unknown topic 'aeo'" in unknown.stdout


def test_check_lists_every_problem(sample_install: Path) -> None:
    store = sample_install.parent.parent / "articles"
    (store / "binary.txt").write_bytes(b"\x00\x01")
    write(store / "broken.md", "+++\ntitle = \n+++\nBody\n")
    write(sample_install.parent / "subscribers.toml", '[[subscriber]]\nemail = "not-an-address"\n')
    result = syndicator("--config", str(sample_install), "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("binary.txt: binary file" in line for line in lines)
    assert any("broken.md:2: invalid TOML front matter" in line for line in lines)
    assert any(
        "subscribers.toml:1: subscriber[0] ('not-an-address').email:" in line for line in lines
    )
    assert lines[-1].endswith("3 problems")


def test_config_error_is_one_line_and_verbose_adds_traceback(tmp_path: Path) -> None:
    config = write(tmp_path / "bad.toml", "[store]\nreload_interval = -1\n")
    result = syndicator("--config", str(config), "run", "--once")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"syndicator: error: {config}:2: store.reload_interval: Input should be greater than 0"
    )
    verbose = syndicator("-v", "--config", str(config), "run", "--once")
    assert "Traceback" in verbose.stderr


def test_config_from_environment(sample_install: Path) -> None:
    result = syndicator("run", "--once", env={"SYNDICATOR_CONFIG": str(sample_install)})
    assert result.returncode == 0, result.stderr


def test_concurrent_commands_do_not_corrupt_state(sample_install: Path, state_url: str) -> None:
    store = sample_install.parent.parent / "articles"
    for index in range(30):
        write(
            store / f"extra-{index:02}.txt",
            f"Kenya Story {index}\n\nKenya Story {index}\n\nBody.\n",
        )
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "syndicator", "--config", str(sample_install), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in (["run", "--once"], ["run", "--once"], ["articles", "--json"])
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    state = State.open(state_url)
    try:
        assert state.integrity_ok()
        articles = state.articles()
        assert len(articles) == 40
        assert len({a.seq for a in articles}) == 40
    finally:
        state.close()


def test_json_log_format(sample_install: Path) -> None:
    result = syndicator("--log-format", "json", "--config", str(sample_install), "run", "--once")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(line["message"].startswith("cycle: 10 articles") for line in lines)


def test_unwritable_output_is_one_line_and_exit_1(sample_install: Path) -> None:
    output = sample_install.parent.parent / "feeds"
    output.write_text("a file where the feeds directory should be\n")
    result = syndicator("--config", str(sample_install), "feeds")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("syndicator: error: ")
    assert "Traceback" not in result.stderr


# Modules that take tens to hundreds of milliseconds to import. The command line must not load
# any of them before it knows which command runs, so `--help`, `--version` and usage errors
# answer at once; each command imports what it needs.
HEAVY_MODULES = (
    "aiohttp",
    "aiosmtplib",
    "ahocorasick",
    "apscheduler",
    "feedgen",
    "jinja2",
    "lxml",
    "nh3",
    "numpy",
    "pydantic",
    "sqlalchemy",
    "yaml",
    "syndicator.classify",
    "syndicator.config",
    "syndicator.pipeline",
    "syndicator.mail",
    "syndicator.publish",
    "syndicator.service",
    "syndicator.state",
    "syndicator.store",
    "syndicator.web",
)

_LOADED = """
import json, sys
{code}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _LOADED.format(code=code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def _heavy(loaded: set[str]) -> list[str]:
    return sorted(
        name
        for name in loaded
        if any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY_MODULES)
    )


def test_importing_the_command_line_loads_no_heavy_module() -> None:
    assert _heavy(_modules_after("import syndicator.cli")) == []


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["articles", "--help"], ["frobnicate"]]
)
def test_help_version_and_usage_errors_load_no_heavy_module(argv: list[str]) -> None:
    code = (
        f"from syndicator.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
    )
    assert _heavy(_modules_after(code)) == []


def test_every_command_names_an_importable_function() -> None:
    """The parser names each command's function as "module:function"; every command has
    one, and every one resolves."""
    parser = build_parser()
    handlers: list[str] = []
    pending = [parser]
    while pending:
        current = pending.pop()
        below = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        for action in below:
            pending.extend(action.choices.values())
        if not below:  # a command: it must say which function runs it
            handlers.append(current._defaults["handler"])
    # 14 for the articles, feeds, subscribers, service, init and state commands; 10 for
    # bounces, the sending pause, suppression and data rights. Each its own function.
    assert len(handlers) == len(set(handlers)) == 24
    for name in handlers:
        assert callable(_handler(name)), name


# What the commands that only read or list things never need: the feed renderer, the mail
# composer, the matcher's arrays, the HTTP server and the scheduler.
PUBLISHING_AND_SERVING = (
    "aiohttp",
    "apscheduler",
    "feedgen",
    "jinja2",
    "lxml",
    "markdown_it",
    "nh3",
    "numpy",
    "syndicator.pipeline",
    "syndicator.mail.compose",
    "syndicator.publish",
    "syndicator.service",
    "syndicator.web",
)


@pytest.mark.parametrize(
    "module",
    [
        "syndicator.commands.check",
        "syndicator.commands.articles",
        "syndicator.commands.explain",
        "syndicator.commands.subscribers",
    ],
)
def test_listing_commands_load_no_publishing_or_serving_module(module: str) -> None:
    loaded = _modules_after(f"import {module}")
    assert (
        sorted(
            name
            for name in loaded
            if any(
                name == heavy or name.startswith(heavy + ".") for heavy in PUBLISHING_AND_SERVING
            )
        )
        == []
    )


# What each listing command, run, still does without: the state database for `check`; the
# classifier and the store reader for `articles` (only --topic and --uncertain need them);
# the store reader for `explain` of an article state knows (only one it does not know is
# looked for in the store); the store reader and the classifier for `subscribers list`,
# which needs the taxonomy alone. On SQLite, `articles`
# and `explain` read state without SQLAlchemy (`state.lookup`), and so does
# `subscribers list` once state follows the subscribers file (the cycle synced it).
NOT_LOADED_BY_COMMAND = [
    (["check"], ("sqlalchemy", "syndicator.state")),
    (["articles"], ("ahocorasick", "syndicator.classify", "syndicator.store")),
    (["explain", "Uzbekistan"], ("syndicator.store",)),
    (
        ["subscribers", "list"],
        ("ahocorasick", "syndicator.classify.classifier", "syndicator.store"),
    ),
]
NOT_LOADED_ON_SQLITE = {
    "articles": ("sqlalchemy", "syndicator.state.db"),
    "explain": ("sqlalchemy", "syndicator.state.db"),
    "subscribers": ("sqlalchemy", "syndicator.state.db", "syndicator.mail.roster"),
}


@pytest.mark.parametrize(
    ("argv", "unneeded"),
    [pytest.param(argv, unneeded, id=" ".join(argv)) for argv, unneeded in NOT_LOADED_BY_COMMAND],
)
def test_listing_commands_run_without_what_they_do_not_need(
    sample_install: Path, db_url: str, argv: list[str], unneeded: tuple[str, ...]
) -> None:
    run = syndicator("--config", str(sample_install), "run", "--once")
    assert run.returncode == 0, run.stderr
    if db_url.startswith("sqlite:"):
        unneeded += NOT_LOADED_ON_SQLITE.get(argv[0], ())
    code = (
        "from syndicator.cli import main\n"
        f"assert main(['--config', {str(sample_install)!r}, *{argv!r}]) == 0\n"
    )
    loaded = _modules_after(code)
    heavy = (*PUBLISHING_AND_SERVING, *unneeded)
    assert (
        sorted(
            name
            for name in loaded
            if any(name == module or name.startswith(module + ".") for module in heavy)
        )
        == []
    )


def test_subscribers_list_syncs_the_file_only_when_state_may_not_follow_it(
    install: Path, state_url: str
) -> None:
    config = str(install)
    subscribers = install.parent / "subscribers.toml"
    subscribers.write_text(
        '[[subscriber]]\nemail = "desk@example.org"\n\n'
        '[[subscriber]]\nemail = "peer@example.org"\ntopics = ["no-such-topic"]\n',
        encoding="utf-8",
    )
    problem = f"{subscribers}:4: subscriber[1] ('peer@example.org')"

    def listed() -> tuple[dict[str, str], str]:
        result = syndicator("--config", config, "subscribers", "list", "--json")
        assert result.returncode == 0, result.stderr
        return {row["email"]: row["status"] for row in json.loads(result.stdout)}, result.stderr

    # Synced, then read as it is (on SQLite without syncing): the same rows, the same problem.
    first, said = listed()
    assert first == {"desk@example.org": "active"} and problem in said
    again, said = listed()
    assert again == first and problem in said
    # Fixed and extended in place: synced again.
    subscribers.write_text(
        '[[subscriber]]\nemail = "desk@example.org"\n\n'
        '[[subscriber]]\nemail = "peer@example.org"\ntopics = ["aeo"]\n',
        encoding="utf-8",
    )
    fixed, said = listed()
    assert fixed == {"desk@example.org": "active", "peer@example.org": "active"}
    assert problem not in said
    # Changed elsewhere since the last sync (here removed by hand from state): synced again,
    # so the file's entry comes back.
    with closing(State.open(state_url)) as state, state.transaction() as conn:
        record = find_subscriber(conn, "peer@example.org")
        assert record is not None
        mark_removed(conn, record.id)
    assert listed()[0] == fixed


def test_digest_grouping_from_the_file_the_command_line_and_in_the_export(install: Path) -> None:
    config = str(install)
    subscribers = install.parent / "subscribers.toml"
    subscribers.write_text(
        '[[subscriber]]\nemail = "desk@example.org"\ncadence = "weekly"\ngroup_by = "topic"\n'
        '\n[[subscriber]]\nemail = "peer@example.org"\ngroup_by = "weekday"\n',
        encoding="utf-8",
    )
    checked = syndicator("--config", config, "check")
    assert checked.returncode == 1
    # One line naming the file, the entry's line and the key.
    assert (
        f"{subscribers}:6: subscriber[1] ('peer@example.org').group_by: "
        "Input should be 'region' or 'topic'"
    ) in checked.stdout + checked.stderr
    added = syndicator(
        "--config", config, "subscribers", "add", "bea@example.org", "--group-by", "topic"
    )
    assert added.returncode == 0, added.stderr
    assert syndicator("--config", config, "subscribers", "add", "cy@example.org").returncode == 0
    wrong = syndicator(
        "--config", config, "subscribers", "add", "dan@example.org", "--group-by", "weekday"
    )
    assert wrong.returncode == 2 and "--group-by" in wrong.stderr
    listed = syndicator("--config", config, "subscribers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    grouping = {row["email"]: row["group_by"] for row in json.loads(listed.stdout)}
    assert grouping == {
        "bea@example.org": "topic",
        "cy@example.org": "region",
        "desk@example.org": "topic",
    }
    text = syndicator("--config", config, "subscribers", "list").stdout
    assert "desk@example.org" in text and "weekly by topic" in text
    # A change of the file's entry reaches state at the next sync.
    subscribers.write_text('[[subscriber]]\nemail = "desk@example.org"\n', encoding="utf-8")
    listed = syndicator("--config", config, "subscribers", "list", "--json")
    desk = next(row for row in json.loads(listed.stdout) if row["email"] == "desk@example.org")
    assert desk["group_by"] == "region"
    exported = syndicator("--config", config, "subscribers", "export", "bea@example.org")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["subscriber"]["group_by"] == "topic"
