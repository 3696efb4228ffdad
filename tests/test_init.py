"""``syndicator init``: a new site that works as written, from the installed package alone."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import syndicator


def test_init_example_site_checks_runs_and_mails(tmp_path: Path) -> None:
    # Run from an empty directory: nothing of the repository's config/ is at hand.
    work = tmp_path / "work"
    work.mkdir()
    result = syndicator("init", "site", "--example", cwd=work)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "wrote a new site into site, with the example articles and subscribers"
    commands = [line.split("#")[0].strip() for line in lines[2:]]
    assert commands == [
        "syndicator --config site/syndicator.toml check",
        "syndicator --config site/syndicator.toml run --once",
        "syndicator --config site/syndicator.toml run",
    ]
    site = work / "site"
    assert sorted(path.name for path in site.iterdir()) == [
        "articles",
        "feeds",
        "mail",
        "state",
        "subscribers.toml",
        "syndicator.toml",
    ]
    assert "# " in (site / "syndicator.toml").read_text()  # commented
    # The printed commands work as printed, from where init was run.
    check = syndicator(*commands[0].split()[1:], cwd=work)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "10 articles, 3 subscribers; no problems" in check.stdout
    assert "(shipped with syndicator)" in check.stdout
    once = syndicator(*commands[1].split()[1:], cwd=work)
    assert once.returncode == 0, once.stderr
    assert (site / "feeds" / "americas.atom").is_file()
    assert (site / "state" / "syndicator.db").is_file()
    # A new article after the first cycle reaches the example's immediate subscriber.
    (site / "articles" / "chile.txt").write_text(
        "Chile Launches AEO Programme\n\nChile Launches AEO Programme\n\nChile's customs.\n"
    )
    again = syndicator(*commands[1].split()[1:], cwd=work)
    assert again.returncode == 0, again.stderr
    mailed = [path.read_bytes() for path in (site / "mail" / "new").iterdir()]
    assert any(
        b"To: americas-desk@example.org" in mail and b"Chile Launches AEO Programme" in mail
        for mail in mailed
    )


def test_init_without_example_is_an_empty_site_that_checks(tmp_path: Path) -> None:
    result = syndicator("init", str(tmp_path / "empty"))
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "empty" / "articles").iterdir()) == []
    check = syndicator("--config", str(tmp_path / "empty" / "syndicator.toml"), "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 articles, 0 subscribers; no problems" in check.stdout


def test_init_never_overwrites(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "syndicator.toml").write_text("# mine\n")
    result = syndicator("init", str(site), "--example")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"syndicator: error: {site} already exists and is not an empty directory "
        "(give a new directory; init never overwrites anything)"
    )
    assert [path.name for path in site.iterdir()] == ["syndicator.toml"]
    assert (site / "syndicator.toml").read_text() == "# mine\n"
    # A file in the way is refused the same way; an empty directory is used.
    (tmp_path / "file").write_text("x")
    assert syndicator("init", str(tmp_path / "file")).returncode == 1
    (tmp_path / "empty").mkdir()
    assert syndicator("init", str(tmp_path / "empty")).returncode == 0
    assert (tmp_path / "empty" / "syndicator.toml").is_file()
