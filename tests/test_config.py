"""Configuration: the example loads, paths resolve, and every mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndicator.config import SHIPPED_REGIONS, default_config_path, load_config
from syndicator.errors import ConfigError
from tests.conftest import CONFIG_DIR, ROOT, write


def test_example_configuration_loads_with_absolute_paths() -> None:
    config = load_config(CONFIG_DIR / "syndicator.toml")
    assert config.site.base_url.endswith("/")
    assert config.store.path == ROOT / "articles"
    assert config.feeds.output_dir == ROOT / "feeds"
    assert config.mail.maildir == ROOT / "mail"
    assert config.state.url == f"sqlite:///{ROOT / 'state' / 'syndicator.db'}"
    assert config.subscribers.file == CONFIG_DIR / "subscribers.toml"
    assert config.classify.regions == SHIPPED_REGIONS
    assert config.mail.transport == "maildir"
    assert config.http.port == 8080


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path / "etc" / "s.toml",
        """
        [store]
        path = "store"
        [state]
        url = "sqlite:///db/state.db"
        """,
    )
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.store.path == tmp_path / "etc" / "store"
    assert config.state.url == f"sqlite:///{tmp_path / 'etc' / 'db' / 'state.db'}"
    absolute = write(tmp_path / "abs.toml", '[state]\nurl = "sqlite:////var/lib/x.db"\n')
    assert load_config(absolute).state.url == "sqlite:////var/lib/x.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[store]\nreload_intervall = 5\n", ":2: store.reload_intervall: unknown key"),
        ("[stor]\npath = 'x'\n", ":1: stor: unknown key"),
        ("[store]\nreload_interval = 0\n", ":2: store.reload_interval: Input should be greater"),
        ("[store]\nreload_interval = 'soon'\n", ":2: store.reload_interval: Input should be"),
        ("[site]\nbase_url = 'news.example.org'\n", ":2: site.base_url: 'news.example.org' is"),
        ("[mail]\ntransport = 'pigeon'\n", ":2: mail.transport: Input should be 'maildir'"),
        ("[mail.smtp]\nsecurity = 'ssl'\n", ":2: mail.smtp.security: Input should be"),
        ("[mail.smtp]\nport = 70000\n", ":2: mail.smtp.port: Input should be less"),
        ("[http]\nlisten = '8080'\n", ":2: http.listen: '8080' is not HOST:PORT"),
        ('[site]\ntitle = "a\\nb"\n', ":2: site.title: must be a single line"),
        ("[store]\npath = \n", ":2: invalid TOML: Invalid value"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_missing_config_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*--config PATH or set SYNDICATOR_CONFIG"):
        load_config(tmp_path / "nope.toml")


def test_default_config_path_prefers_the_environment() -> None:
    assert default_config_path({"SYNDICATOR_CONFIG": "/x/y.toml"}) == Path("/x/y.toml")


def test_smtp_password_from_environment_credential_or_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret", "s3cret\n")
    path = write(tmp_path / "c.toml", '[mail.smtp]\nusername = "u"\npassword_file = "secret"\n')
    config = load_config(path)
    assert config.smtp_password({}) == "s3cret"
    assert config.smtp_password({"SYNDICATOR_SMTP_PASSWORD": "from-env"}) == "from-env"
    credentials = tmp_path / "creds"
    write(credentials / "smtp-password", "from-credential\n")
    assert config.smtp_password({"CREDENTIALS_DIRECTORY": str(credentials)}) == "from-credential"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"mail\.smtp\.password_file: cannot read"):
        config.smtp_password({})
    assert load_config(write(tmp_path / "d.toml", "")).smtp_password({}) == ""


def test_imap_password_from_environment_credential_or_file(tmp_path: Path) -> None:
    secret = write(tmp_path / "imap-secret", "imap-s3cret\n")
    path = write(
        tmp_path / "c.toml",
        '[bounces.imap]\nhost = "imap.example.org"\nusername = "bounces"\n'
        'password_file = "imap-secret"\n',
    )
    config = load_config(path)
    assert config.imap_password({}) == "imap-s3cret"
    assert config.imap_password({"SYNDICATOR_IMAP_PASSWORD": "from-env"}) == "from-env"
    credentials = tmp_path / "creds"
    write(credentials / "imap-password", "from-credential\n")
    assert config.imap_password({"CREDENTIALS_DIRECTORY": str(credentials)}) == "from-credential"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"bounces\.imap\.password_file: cannot read"):
        config.imap_password({})
