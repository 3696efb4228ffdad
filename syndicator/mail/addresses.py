"""Email addresses: the one normalisation every part of syndicator uses.

An address is accepted in one spelling only, so that one mailbox is one subscriber, one
rate-limit bucket and one suppression entry:

* surrounding white space is dropped; any other white space, control character, comment
  ``(...)``, quoted string, angle bracket, or route is refused (RFC 5322 allows comments and
  quoting, and real servers deliver ``victim(1)@example.org`` to ``victim@example.org``,
  which would give one mailbox many spellings);
* the local part (before the ``@``) is a dot-atom of ASCII characters (RFC 5321 section
  4.1.2), at most 64 characters, and keeps its case;
* the domain is lower-cased, loses one trailing dot (``example.org.`` is the same host as
  ``example.org``), has at least two labels and is stored in its ASCII form: an
  internationalised domain becomes its ``xn--`` spelling;
* the whole is at most 254 characters (RFC 5321 section 4.5.3.1.3, minus the brackets).

A non-ASCII local part (``josé@example.org``) needs SMTPUTF8 end to end (RFC 6531); the
mail we build is ASCII-only, so such an address is refused with a message that says so,
never accepted and then dropped.
"""

from __future__ import annotations

import re

from syndicator.errors import SyndicatorError

MAX_LENGTH = 254
MAX_LOCAL_LENGTH = 64

# RFC 5322 atext: the characters of a dot-atom, besides the dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Anything that is not a visible character: C0/C1 controls, DEL, white space, line and
# paragraph separators, and the invisible format characters (zero-width, bidi controls).
_INVISIBLE = re.compile(
    r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]"
)


def _refused(shown: str, why: str, *, address: str) -> AddressError:
    return AddressError(f"{shown} is not an email address: {why}", address=address)


class AddressError(SyndicatorError, ValueError):
    """``address`` is not an email address syndicator accepts; the message says why."""

    def __init__(self, message: str, *, address: str) -> None:
        self.address = address
        super().__init__(message)


def normalize_address(text: str) -> str:
    """The one spelling of the address ``text``, or :class:`AddressError` saying what is wrong.

    >>> normalize_address("  Jane.Doe@Example.ORG. ")
    'Jane.Doe@example.org'
    """
    value = text.strip()
    shown = repr(value[:80])
    if not value:
        raise AddressError("an email address is required", address=value)
    if len(value) > MAX_LENGTH:
        raise _refused(
            shown,
            f"longer than {MAX_LENGTH} characters",
            address=value[:MAX_LENGTH],
        )
    if _INVISIBLE.search(value):
        raise _refused(
            shown,
            "it contains spaces or control characters; give the address alone, "
            "e.g. jane@example.org",
            address=value,
        )
    if value.count("@") != 1:
        raise _refused(
            shown,
            "it needs exactly one @, e.g. jane@example.org",
            address=value,
        )
    local, domain = value.split("@")
    if any(char in value for char in '()<>[]",;:\\'):
        raise _refused(
            shown,
            "comments, quotes, brackets and display names are not accepted; "
            "give the address alone, e.g. jane@example.org",
            address=value,
        )
    if not local.isascii():
        raise _refused(
            shown,
            "letters outside ASCII before the @ are not supported (mail to them needs "
            "SMTPUTF8); please give an ASCII address",
            address=value,
        )
    if not _LOCAL.match(local):
        raise _refused(
            shown,
            "the part before the @ must be letters, digits or !#$%&'*+/=?^_`{|}~-, "
            "with single dots between them",
            address=value,
        )
    if len(local) > MAX_LOCAL_LENGTH:
        raise _refused(
            shown,
            f"the part before the @ is longer than {MAX_LOCAL_LENGTH} characters",
            address=value,
        )
    return f"{local}@{_normalize_domain(domain, shown, value)}"


def _normalize_domain(domain: str, shown: str, value: str) -> str:
    host = domain.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refused(shown, f"{domain!r} is not a valid domain", address=value) from None
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise _refused(
            shown,
            "the part after the @ must be a domain such as example.org",
            address=value,
        )
    if labels[-1].isdigit():
        raise _refused(shown, f"{domain!r} is not a domain name", address=value)
    return host


def address_key(address: str) -> str:
    """The key two spellings of one mailbox share: the normalised address, lower-cased.

    Used wherever addresses are compared (duplicates, rate limits, suppression).
    """
    return normalize_address(address).lower()


def lookup_address(text: str) -> str:
    """``text`` normalised for finding a stored subscriber, or as given when it is no valid
    address (an entry stored before today's rules may still be named that way)."""
    try:
        return normalize_address(text)
    except AddressError:
        return text.strip()
