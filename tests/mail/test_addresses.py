"""One normalisation of email addresses, shared by validation, rate limits and storage."""

from __future__ import annotations

import pytest

from syndicator.mail.addresses import AddressError, address_key, normalize_address


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
        ("josé@example.org", "non-ASCII"),
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
