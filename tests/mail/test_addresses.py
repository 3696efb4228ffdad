"""One normalisation of email addresses, shared by validation, rate limits and storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syndicator.mail.addresses import AddressError, address_key, normalize_address
from tests.test_cli import syndicator


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("jane@example.org", "jane@example.org"),
        ("  Jane.Doe@Example.ORG  ", "Jane.Doe@example.org"),
        ("victim@example.org.", "victim@example.org"),
        ("a+tag@sub.EXAMPLE.org.", "a+tag@sub.example.org"),
        ("jane@bücher.example", "jane@xn--bcher-kva.example"),
        ("o'brien@example.ie", "o'brien@example.ie"),
    ],
)
def test_one_spelling_per_mailbox(given: str, expected: str) -> None:
    assert normalize_address(given) == expected


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "required"),
        ("victim(1)@example.org", "comments"),
        ("victim@(c)example.org", "comments"),
        ('"victim"@example.org', "quotes"),
        ("Victim <victim@example.org>", "spaces"),
        ("josé@example.org", "outside ASCII"),
        ("jane@example", "domain such as"),
        ("jane@example..org", "domain such as"),
        ("jane@-example.org", "domain such as"),
        ("jane@1.2.3.4", "not a domain name"),
        ("jane..doe@example.org", "single dots"),
        (".jane@example.org", "single dots"),
        ("jane@@example.org", "exactly one @"),
        ("jane@example.org\r\nBcc: x@example.org", "control"),
        ("ja\x1bne@example.org", "control"),
        ("ja\u200bne@example.org", "control"),
        ("a" * 65 + "@example.org", "longer than 64"),
        ("a@" + "b" * 250 + ".org", "longer than 254"),
    ],
)
def test_refused_with_the_reason(given: str, why: str) -> None:
    with pytest.raises(AddressError, match=why.replace("(", r"\(")) as caught:
        normalize_address(given)
    assert "\n" not in str(caught.value)


def test_spellings_of_one_mailbox_share_a_key() -> None:
    assert address_key("Jane@Example.org.") == address_key("jane@example.org") == "jane@example.org"


def test_the_command_line_finds_a_subscriber_by_any_spelling(tmp_path: Path) -> None:
    config = tmp_path / "site" / "syndicator.toml"
    assert syndicator("init", str(config.parent)).returncode == 0
    added = syndicator("--config", str(config), "subscribers", "add", "Ana@Example.ORG.")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("Ana@example.org: ")
    removed = syndicator("--config", str(config), "subscribers", "remove", "ana@EXAMPLE.org.")
    assert removed.returncode == 0, removed.stderr
    listed = syndicator("--config", str(config), "subscribers", "list", "--json")
    assert [row["status"] for row in json.loads(listed.stdout)] in ([], ["removed"])
