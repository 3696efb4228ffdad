"""DKIM signing (RFC 6376, RFC 8463) of every message, with ``dkimpy``.

The message is signed once, as it leaves, after the last change anything makes to it:
:class:`SigningTransport` wraps whichever transport is configured (SMTP or Maildir), so
what a receiver verifies are the bytes that went out. The signature covers From, To,
Subject, Date, Message-ID, List-Id, List-Unsubscribe and List-Unsubscribe-Post (Gmail and
Yahoo honour one-click unsubscribe only when these are signed), plus the MIME headers;
each of those names is signed once more than it occurs, so a copy of one added on the
way (a second ``List-Unsubscribe-Post``, say) breaks the signature instead of slipping in.

Keys: RSA of 2048 bits or more (rsa-sha256), PEM in PKCS#1 or PKCS#8; or Ed25519
(ed25519-sha256), PEM PKCS#8 as ``openssl genpkey -algorithm ed25519`` writes it, or
the base64 seed alone. :func:`dns_record` is the TXT record to publish at
``<selector>._domainkey.<domain>``.
"""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass

import dkim
import nacl.signing
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from syndicator.config import Config, DkimConfig
from syndicator.errors import ConfigError
from syndicator.mail.transport import Delivery, Transport

MIN_RSA_BITS = 2048
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)
_ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112
_RSA_OID = bytes.fromhex("06092a864886f70d010101")  # 1.2.840.113549.1.1.1
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded key: the algorithm, what dkimpy signs with, and the public half."""

    algorithm: str  # "rsa-sha256" | "ed25519-sha256"
    private: bytes  # PEM (RSA) or base64 seed (Ed25519), as dkimpy takes them
    public: bytes  # DER SubjectPublicKeyInfo (RSA) or the raw 32 bytes (Ed25519)
    bits: int

    @property
    def key_type(self) -> str:
        return "rsa" if self.algorithm == "rsa-sha256" else "ed25519"


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_integer(value: int) -> bytes:
    octets = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _der(0x02, octets)


def _rsa_public_der(modulus: int, exponent: int) -> bytes:
    """X.509 SubjectPublicKeyInfo of an RSA key (what the DKIM ``p=`` tag holds)."""
    key = _der(0x30, _der_integer(modulus) + _der_integer(exponent))
    algorithm = _der(0x30, _RSA_OID + b"\x05\x00")
    return _der(0x30, algorithm + _der(0x03, b"\x00" + key))


def parse_key(data: bytes, *, where: str = "mail.dkim.key_file") -> SigningKey:
    """Load a DKIM private key; raises ConfigError saying what is wrong with it."""
    match = _PEM.search(data)
    if match is None:
        seed = _ed25519_seed_from_text(data)
        if seed is None:
            raise ConfigError(
                "not a PEM private key nor a base64 Ed25519 seed",
                key=where,
                hint="openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem",
            )
        return _ed25519(seed)
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except ValueError as exc:
        raise ConfigError(f"the PEM key is not valid base64: {exc}", key=where) from exc
    if _ED25519_OID in der[:16] and len(der) >= 48:
        return _ed25519(der[-32:])
    try:
        rsa = parse_pem_private_key(
            b"-----BEGIN RSA PRIVATE KEY-----\n"
            + base64.b64encode(der)
            + b"\n-----END RSA PRIVATE KEY-----"
        )
    except (UnparsableKeyError, ValueError, IndexError) as exc:
        raise ConfigError(f"cannot read the key: {exc}".splitlines()[0], key=where) from exc
    modulus, exponent = int(rsa["modulus"]), int(rsa["publicExponent"])
    bits = modulus.bit_length()
    if bits < MIN_RSA_BITS:
        raise ConfigError(
            f"the RSA key has {bits} bits; DKIM needs at least {MIN_RSA_BITS}",
            key=where,
            hint="generate a 2048-bit (or Ed25519) key",
        )
    pem = (
        b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"
    )
    return SigningKey("rsa-sha256", pem, _rsa_public_der(modulus, exponent), bits)


def _ed25519_seed_from_text(data: bytes) -> bytes | None:
    try:
        seed = base64.b64decode(b"".join(data.split()), validate=True)
    except ValueError:
        return None
    return seed if len(seed) == 32 else None


def _ed25519(seed: bytes) -> SigningKey:
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    return SigningKey("ed25519-sha256", base64.b64encode(seed), public, 256)


def load_key(dkim_config: DkimConfig) -> SigningKey:
    if dkim_config.key_file is None:
        raise ConfigError("is required when mail.dkim.domain is set", key="mail.dkim.key_file")
    if not dkim_config.selector:
        raise ConfigError("is required when mail.dkim.domain is set", key="mail.dkim.selector")
    try:
        data = dkim_config.key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {dkim_config.key_file}: {exc.strerror}", key="mail.dkim.key_file"
        ) from exc
    return parse_key(data)


def dns_name(dkim_config: DkimConfig) -> str:
    return f"{dkim_config.selector}._domainkey.{dkim_config.domain}"


def dns_record(key: SigningKey) -> str:
    """The TXT record's value for the public half of ``key``."""
    return f"v=DKIM1; k={key.key_type}; p={base64.b64encode(key.public).decode('ascii')}"


class Signer:
    """Signs serialised messages with one key for one domain and selector."""

    def __init__(self, key: SigningKey, *, domain: str, selector: str) -> None:
        self.key = key
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self._headers = [name.lower().encode("ascii") for name in SIGNED_HEADERS]

    def sign(self, message: bytes) -> bytes:
        """``message`` with a DKIM-Signature header on top."""
        head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        present = [
            line.split(b":", 1)[0].strip().lower()
            for line in re.split(rb"\r?\n", head)
            if line and line[:1] not in (b" ", b"\t")
        ]
        # Each name as many times as it occurs, plus once more: nothing can be added.
        include = [name for name in self._headers for _ in range(present.count(name) + 1)]
        header = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.key.private,
            signature_algorithm=self.key.algorithm.encode("ascii"),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
        return bytes(header) + message


def signer_from_config(config: Config) -> Signer | None:
    if not config.mail.dkim.enabled:
        return None
    key = load_key(config.mail.dkim)
    return Signer(key, domain=config.mail.dkim.domain, selector=config.mail.dkim.selector)


class SigningTransport:
    """A transport that signs each message, then hands it to ``inner``."""

    def __init__(self, inner: Transport, signer: Signer) -> None:
        self.inner = inner
        self.signer = signer

    def __repr__(self) -> str:
        return f"SigningTransport({self.inner!r})"

    async def send(self, message: bytes, *, sender: str, recipient: str) -> Delivery:
        # RSA signing is tens of milliseconds of CPU: in a thread, so the event loop (the
        # HTTP server, the other connections) keeps its turn.
        signed = await asyncio.to_thread(self.signer.sign, message)
        return await self.inner.send(signed, sender=sender, recipient=recipient)

    async def close(self) -> None:
        await self.inner.close()
