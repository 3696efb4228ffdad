"""Bad configuration and subscriber files: one line naming the key or the entry, and a
running service that keeps its configuration when a reload brings a bad one.

``tests/test_config.py`` covers unknown keys and sections, TOML syntax, and bad values of
``store.reload_interval``, ``site.base_url``, ``mail.transport``, ``mail.smtp.security``,
``mail.smtp.port``, ``http.listen`` and ``site.title``; here are the other keys.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from syndicator.cli import main
from syndicator.mail.subscribers import load_subscribers
from tests.faults.helpers import (
    ENV,
    add_article,
    command,
    immediate,
    use_smtp,
    wait_for,
    with_sample_store,
)
from tests.smtp_sink import Sink, free_port

pytestmark = pytest.mark.faults


@pytest.mark.parametrize(
    ("section", "setting", "key"),
    [
        ("site", "title = ''", "site.title"),
        ("site", "title = '" + "x" * 201 + "'", "site.title"),
        ("site", "language = 'English!'", "site.language"),
        ("site", 'description = "two\\nlines"', "site.description"),
        ("site", "base_url = 'https://news.example.org/?q=1'", "site.base_url"),
        ("store", "path = 7", "store.path"),
        ("store", "reload_interval = 999999999", "store.reload_interval"),
        ("store", "watch = 'sometimes'", "store.watch"),
        ("feeds", "output_dir = []", "feeds.output_dir"),
        ("feeds", "max_items = 0", "feeds.max_items"),
        ("feeds", "websub_hub = 'hub.example.org'", "feeds.websub_hub"),
        ("feeds", "tag_authority = 'news example'", "feeds.tag_authority"),
        ("feeds", "tag_date = 'last year'", "feeds.tag_date"),
        ("state", "url = 42", "state.url"),
        ("mail", "from = 'nobody'", "mail.from"),
        ("mail", 'from = "News <news@example.org>\\nBcc: x@example.org"', "mail.from"),
        ("mail", "maildir = false", "mail.maildir"),
        ("mail", "list_id = 'not a list id'", "mail.list_id"),
        ("mail.smtp", "host = 25", "mail.smtp.host"),
        ("mail.smtp", "timeout = 0", "mail.smtp.timeout"),
        ("mail.smtp", "timeout = 'slow'", "mail.smtp.timeout"),
        ("mail.smtp", "pool_size = 0", "mail.smtp.pool_size"),
        ("mail.smtp", "username = ['a']", "mail.smtp.username"),
        ("http", "enabled = 'yes please'", "http.enabled"),
        ("http", "listen = 'localhost:99999'", "http.listen"),
        ("subscribers", "file = 3", "subscribers.file"),
        ("classify", "regions = {}", "classify.regions"),
        ("classify", "topics = 1.5", "classify.topics"),
    ],
)
@pytest.mark.usefixtures("restore_logging")
def test_every_invalid_value_is_one_line_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, setting: str, key: str
) -> None:
    config = tmp_path / "syndicator.toml"
    config.write_text(f"[{section}]\n{setting}\n", encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(rf"syndicator: error: {re.escape(str(config))}:2: {key}: .+\n", err), err


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("[state]\nurl = 'nosuchdb://x'", "cannot use state database 'nosuchdb://x'"),
        ("[classify]\nregions = 'missing.toml'", "missing.toml"),
        ("[mail]\nunsubscribe_secret_file = 'missing-secret'", "mail.unsubscribe_secret_file"),
        (
            "[mail]\ntransport = 'smtp'\n[mail.smtp]\npassword_file = 'missing-password'",
            "mail.smtp.password_file",
        ),
    ],
)
@pytest.mark.usefixtures("restore_logging")
def test_files_and_urls_that_cannot_be_used_are_one_line(
    install: Path, capsys: pytest.CaptureFixture[str], setting: str, expected: str
) -> None:
    text = install.read_text()
    for line in setting.split("\n"):
        if line.startswith("["):
            header = line
            continue
        key = line.split(" = ")[0]
        text = re.sub(rf"(?m)^{key} = .*\n", "", text)
        if f"{header}\n" in text:
            text = text.replace(f"{header}\n", f"{header}\n{line}\n", 1)
        else:
            text += f"\n{header}\n{line}\n"
    install.write_text(text)
    assert main(["--config", str(install), "run", "--once"]) == 1
    _, err = capsys.readouterr()
    (line,) = [entry for entry in err.splitlines() if "error" in entry]
    assert line.startswith("syndicator: error: ") and expected in line, err


BAD_ENTRIES = [
    ("email = 'not-an-address'", "subscriber[1] ('not-an-address').email"),
    ("email = 'a@example.org'\ncadence = 'hourly'", "subscriber[2] ('a@example.org').cadence"),
    ("email = 'b@example.org'\nhour = 24", "subscriber[3] ('b@example.org').hour"),
    ("email = 'c@example.org'\nweekday = 'someday'", "subscriber[4] ('c@example.org').weekday"),
    ("email = 'd@example.org'\ntimezone = 'Mars/Base'", "subscriber[5] ('d@example.org').timezone"),
    ("email = 'e@example.org'\nregions = ['atlantis']", "subscriber[6] ('e@example.org').regions"),
    ("email = 'f@example.org'\ntopics = ['astrology']", "subscriber[7] ('f@example.org').topics"),
    ("email = 'g@example.org'\nkeywords = ['']", "subscriber[8] ('g@example.org').keywords"),
    ("email = 'h@example.org'\nname = \"two\\nlines\"", "subscriber[9] ('h@example.org').name"),
    ("email = 'i@example.org'\ncolour = 'red'", "subscriber[10] ('i@example.org').colour"),
    ('email = "j@example.org\\nBcc: x@example.org"', "subscriber[11] ('j@example.org\\nBcc"),
    ("email = 'ok@example.org'", "subscriber[12] ('ok@example.org'): address listed twice"),
]


def test_every_bad_subscriber_entry_is_one_line_naming_it(tmp_path: Path) -> None:
    entries = ["email = 'ok@example.org'", *(entry for entry, _ in BAD_ENTRIES)]
    path = tmp_path / "subscribers.toml"
    path.write_text("".join(f"[[subscriber]]\n{entry}\n\n" for entry in entries))
    topics = {"aeo", "transit"}
    listed, errors = load_subscribers(path, topics)
    assert [s.email for s in listed] == ["ok@example.org"]
    assert len(errors) == len(BAD_ENTRIES)
    starts = [
        n for n, text in enumerate(path.read_text().splitlines(), 1) if text == "[[subscriber]]"
    ]
    for error, line, (_, expected) in zip(errors, starts[1:], BAD_ENTRIES, strict=True):
        assert "\n" not in str(error)
        assert str(error).startswith(f"{path}:{line}: {expected}"), (str(error), line)


# --- SIGHUP with bad files ---------------------------------------------------------------


def test_sighup_with_bad_files_keeps_the_running_configuration(install: Path) -> None:
    port = free_port()
    with Sink() as sink:
        config = use_smtp(install, sink.port, immediate(["desk@example.org", "peer@example.org"]))
        config.write_text(
            config.read_text().replace("reload_interval = 1", "reload_interval = 1")
            + f'\n[http]\nlisten = "127.0.0.1:{port}"\n'
        )
        store = with_sample_store(install)
        subscribers = install.parent / "subscribers.toml"
        index = install.parent.parent / "feeds" / "index.html"
        process = subprocess.Popen(
            command(config, "run"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        log: list[str] = []
        try:
            wait_for(index.is_file, 60, "the first cycle")
            good = config.read_text()
            # A bad value: one line naming file, line and key; the old configuration runs on.
            config.write_text(good.replace('title = "WCO News"', 'title = ""'))
            process.send_signal(signal.SIGHUP)
            add_article(store, "chile.txt", "Chile Launches AEO Programme", "Chile's customs.")
            wait_for(lambda: len(sink.received) >= 2, 60, "mail after a bad reload")
            assert "<h1>WCO News</h1>" in index.read_text()
            config.write_text(good)
            # A bad entry for a subscriber: reported, and that subscriber stays subscribed.
            subscribers.write_text(
                immediate(["peer@example.org"])
                + '[[subscriber]]\nemail = "desk@example.org"\ncadence = "hourly"\n'
            )
            process.send_signal(signal.SIGHUP)
            time.sleep(2.5)  # a couple of cycles with the bad file
            add_article(store, "peru.txt", "Peru Opens Green Lane", "Peru's customs.")
            wait_for(lambda: len(sink.received) >= 4, 60, "mail with a bad subscribers file")
            # Both files fixed: the new configuration is applied.
            subscribers.write_text(immediate(["peer@example.org", "desk@example.org"]))
            config.write_text(good.replace('title = "WCO News"', 'title = "Customs Desk"'))
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: "<h1>Customs Desk</h1>" in index.read_text(), 60, "the good reload")
            assert process.poll() is None
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
            log = err.splitlines()
        received = sorted((r.recipients[0], r.message["Subject"]) for r in sink.received)
    assert process.returncode == 0, err
    assert received == [
        ("desk@example.org", "Chile Launches AEO Programme"),
        ("desk@example.org", "Peru Opens Green Lane"),
        ("peer@example.org", "Chile Launches AEO Programme"),
        ("peer@example.org", "Peru Opens Green Lane"),
    ]
    reload_failed = [line for line in log if "reload failed" in line]
    assert len(reload_failed) == 1, log
    assert f"{config}:" in reload_failed[0] and ": site.title: " in reload_failed[0]
    entry = [line for line in log if "subscriber[1] ('desk@example.org').cadence" in line]
    assert len(entry) == 1, log  # reported once, not at every cycle
    assert str(subscribers) in entry[0]
