"""Editors' corrections: the file, and what a change to it does to a running installation."""

from __future__ import annotations

import json
from pathlib import Path

from syndicator.classify.corrections import Corrections
from syndicator.models import REGION_SLUGS
from tests.conftest import SAMPLE_STORE, write
from tests.test_cli import syndicator

REGIONS = frozenset(REGION_SLUGS)
TOPICS = frozenset({"aeo", "transit", "risk-management"})


def test_bad_entries_are_one_line_each_and_the_rest_apply(tmp_path: Path) -> None:
    path = write(
        tmp_path / "corrections.toml",
        """
        [[correction]]
        article = "kra-egms-2024"
        regions = ["east-southern-africa"]

        [[correction]]
        article = "Chile Launches AEO Programme"
        regions = ["atlantis"]

        [[correction]]
        article = "Peru Pilots Transit"
        topics = ["no-such-topic"]

        [[correction]]
        regions = ["europe"]

        [[correction]]
        article = "Mexico Adopts Risk Profiles"
        topics = ["risk-management"]
        colour = "red"

        [[correction]]
        article = "Kenya: A Story"
        note = "nothing set"

        [[correction]]
        article = "  Chile launches AEO programme! "
        topics = ["aeo"]
        note = "same article as line 6, by its title"
        """,
    )
    corrections = Corrections.load(path, REGIONS, TOPICS)
    assert corrections.problems == [
        f"{path}:5: correction[1].regions: unknown region 'atlantis'; known: "
        + ", ".join(sorted(REGIONS)),
        f"{path}:9: correction[2].topics: unknown topic 'no-such-topic'; known: "
        "aeo, risk-management, transit",
        f"{path}:13: correction[3].article: name the article by its id or its title",
        f"{path}:16: correction[4].colour: unknown key; use article, regions, topics, note",
        f"{path}:21: correction[5]: set regions, topics or both",
    ]
    assert [entry.article for entry in corrections.entries] == [
        "kra-egms-2024",
        "Chile launches AEO programme!",
    ]
    # By id, or by a title written any way that gives the same id.
    found = corrections.find("kra-egms-2024", "Anything")
    assert found is not None
    assert found.regions == ("east-southern-africa",)
    assert found.topics is None
    by_title = corrections.find("chile-launches-aeo-programme", "Chile Launches AEO Programme")
    assert by_title is not None
    assert by_title.topics == ("aeo",)
    assert by_title.line == 25
    assert corrections.find("other", "Other") is None
    assert [c.article for c in corrections.unknown({"kra-egms-2024"})] == [
        "Chile launches AEO programme!"
    ]


def test_a_missing_or_broken_file_is_a_configuration_error(tmp_path: Path) -> None:
    import pytest

    from syndicator.errors import ConfigError

    with pytest.raises(ConfigError, match="corrections file not found"):
        Corrections.load(tmp_path / "nowhere.toml", REGIONS, TOPICS)
    broken = write(tmp_path / "broken.toml", "[[correction]\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        Corrections.load(broken, REGIONS, TOPICS)


def _configure(install: Path, subscribers: str) -> Path:
    config = install.read_text(encoding="utf-8")
    install.write_text(
        config + '\n[classify]\ncorrections = "corrections.toml"\n'
        '\n[subscribers]\nfile = "desks.toml"\n',
        encoding="utf-8",
    )
    write(install.parent / "desks.toml", subscribers)
    write(install.parent / "corrections.toml", "# no corrections yet\n")
    return install.parent / "corrections.toml"


def _mails(root: Path) -> list[str]:
    new = root / "mail" / "new"
    return sorted(p.read_text(encoding="utf-8") for p in new.iterdir()) if new.exists() else []


def test_a_correction_republishes_only_what_changed_and_mails_nothing(install: Path) -> None:
    root = install.parent.parent
    (root / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
    corrections = _configure(
        install,
        """
        [[subscriber]]
        email = "europe-desk@example.org"
        regions = ["europe"]
        cadence = "immediate"

        [[subscriber]]
        email = "americas-desk@example.org"
        regions = ["americas"]
        cadence = "immediate"
        """,
    )
    config = str(install)
    assert syndicator("--config", config, "run", "--once").returncode == 0  # the baseline
    write(
        root / "articles" / "new.txt",
        """
        Chile Launches AEO Programme

        Chile Launches AEO Programme

        Chile's National Customs Service launched its AEO programme for exporters.
        """,
    )
    first = syndicator("--config", config, "run", "--once")
    assert first.returncode == 0, first.stderr
    mailed = _mails(root)
    assert len(mailed) == 1
    assert "americas-desk@example.org" in mailed[0]
    feeds = root / "feeds"
    untouched = {
        name: (feeds / name).stat().st_mtime_ns
        for name in ("asia-pacific.atom", "mena.rss", "global.json", "topics/transit.atom")
    }
    before = (feeds / "europe.atom").read_bytes()

    # An editor files the new article under Europe too, and an old one under Europe only.
    write(
        corrections,
        """
        [[correction]]
        article = "chile-launches-aeo-programme"
        regions = ["americas", "europe"]
        note = "an editor's verdict"

        [[correction]]
        article = "Colombia Adopts Mexican Expertise to Modernize Customs Risk Management"
        regions = ["europe"]

        [[correction]]
        article = "No Such Article Anywhere"
        topics = ["aeo"]
        """,
    )
    check = syndicator("--config", config, "check")
    assert check.returncode == 1
    assert (
        f"{corrections}:10: correction for 'No Such Article Anywhere' names no article"
        in check.stdout
    )

    second = syndicator("--config", config, "run", "--once")
    assert second.returncode == 0, second.stderr
    listed = {
        a["id"]: a["regions"]
        for a in json.loads(syndicator("--config", config, "articles", "--json").stdout)
    }
    assert listed["chile-launches-aeo-programme"] == ["americas", "europe"]
    colombia = next(key for key in listed if key.startswith("colombia-adopts"))
    assert listed[colombia] == ["europe"]
    assert (feeds / "europe.atom").read_bytes() != before
    assert b"Chile Launches AEO Programme" in (feeds / "europe.atom").read_bytes()
    assert b"Colombia Adopts" not in (feeds / "americas.atom").read_bytes()
    # Channels the corrections did not touch are not written again ...
    assert {name: (feeds / name).stat().st_mtime_ns for name in untouched} == untouched
    # ... and nobody is mailed an article again, or an old article for the first time.
    assert _mails(root) == mailed

    explained = syndicator("--config", config, "explain", "Chile Launches AEO")
    assert explained.returncode == 0, explained.stderr
    assert "regions: americas, europe (set by a correction" in explained.stdout
    assert "an editor's verdict" in explained.stdout
    assert "classification alone: americas" in explained.stdout


def test_uncertain_articles_list_the_reason_until_an_editor_decides(install: Path) -> None:
    root = install.parent.parent
    corrections = _configure(install, "# nobody\n")
    write(
        root / "articles" / "store.txt",
        """
        Kenya Launches AEO Programme

        Kenya Launches AEO Programme

        The Kenya Revenue Authority launched its AEO programme.

        Officials Review Procedures

        Officials Review Procedures

        The meeting was held in Nairobi with funding from Japan.

        Chile Customs Reports Results

        Chile Customs Reports Results

        Officers in Nairobi, Mombasa and Kampala seized goods. Kenya and Uganda said Tanzania
        would join. Rwanda agreed.
        """,
    )
    config = str(install)
    assert syndicator("--config", config, "run", "--once").returncode == 0
    listed = syndicator("--config", config, "articles", "--uncertain")
    assert listed.returncode == 0, listed.stderr
    assert "Kenya Launches" not in listed.stdout
    assert "review: no subject found" in listed.stdout
    assert "review: conflicting title and body" in listed.stdout
    as_json = json.loads(syndicator("--config", config, "articles", "--uncertain", "--json").stdout)
    assert {a["id"]: a["doubts"][0].split(":")[0] for a in as_json} == {
        "officials-review-procedures": "no subject found",
        "chile-customs-reports-results": "conflicting title and body",
    }
    assert all(0.0 <= a["margin"] <= 1.0 for a in as_json)
    write(
        corrections,
        """
        [[correction]]
        article = "Officials Review Procedures"
        regions = ["east-southern-africa"]
        """,
    )
    assert syndicator("--config", config, "run", "--once").returncode == 0
    after = syndicator("--config", config, "articles", "--uncertain", "--json")
    assert [a["id"] for a in json.loads(after.stdout)] == ["chile-customs-reports-results"]
