"""GitHub secret scanning's partner reports: its public keys, the signature check, the report; pure.

GitHub POSTs a JSON array of ``{"token", "type", "url", "source"}`` and signs the raw body with
ECDSA P-256 over SHA-256: ``Github-Public-Key-Identifier`` names the key, and
``Github-Public-Key-Signature`` is the base64 of the DER signature. The keys are GitHub's JSON
document ``{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}``, read at start-up.
Nothing here does I/O: bytes in, keys, reports or a yes/no out.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from thotbot.core.errors import ValidationFailed
from thotbot.core.logsafe import field

__all__ = [
    "IDENTIFIER_HEADER",
    "MAX_REPORTS",
    "MAX_URL",
    "SIGNATURE_HEADER",
    "GitHubKeys",
    "Leak",
    "parse_reports",
    "safe_text",
]

IDENTIFIER_HEADER = "github-public-key-identifier"
SIGNATURE_HEADER = "github-public-key-signature"
#: Entries in one report; GitHub sends a few at a time.
MAX_REPORTS = 1000
#: Characters of a leak's URL kept (and of its source); the rest is cut.
MAX_URL = 2048
_MAX_SOURCE = 100
# A DER ECDSA P-256 signature is at most 72 bytes: 96 base64 characters, with room to spare.
_MAX_SIGNATURE = 200
_MAX_IDENTIFIER = 200


@dataclass(frozen=True, slots=True)
class GitHubKeys:
    """GitHub's secret-scanning public keys, by identifier."""

    keys: dict[str, ec.EllipticCurvePublicKey]

    @classmethod
    def parse(cls, document: bytes) -> GitHubKeys:
        """GitHub's public-keys JSON; ValueError (naming what is wrong, never quoting it) otherwise."""
        try:
            data = json.loads(document)
        except (ValueError, UnicodeDecodeError):
            raise ValueError("is not a JSON document") from None
        entries = data.get("public_keys") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError('holds no "public_keys" list')
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for number, entry in enumerate(entries, 1):
            identifier = entry.get("key_identifier") if isinstance(entry, dict) else None
            pem = entry.get("key") if isinstance(entry, dict) else None
            if not isinstance(identifier, str) or not identifier or not isinstance(pem, str):
                raise ValueError(f'public key {number} lacks a "key_identifier" or a "key"')
            try:
                key = load_pem_public_key(pem.encode())
            except (ValueError, TypeError):
                raise ValueError(f"public key {number} is not a PEM public key") from None
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
                raise ValueError(f"public key {number} is not an ECDSA P-256 key")
            keys[identifier] = key
        return cls(keys)

    def verify(self, identifier: str | None, signature: str | None, body: bytes) -> bool:
        """Whether ``body`` is signed by the key GitHub names; False for anything missing or wrong."""
        if not identifier or not signature or len(signature) > _MAX_SIGNATURE:
            return False
        if len(identifier) > _MAX_IDENTIFIER:
            return False
        key = self.keys.get(identifier)
        if key is None:
            return False
        try:
            der = b64decode(signature, validate=True)
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, _BadSignature):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Leak:
    """One entry of a report. ``url`` and ``source`` are already safe to store, log and mail."""

    token: str
    type: str
    url: str
    source: str


def parse_reports(body: bytes) -> list[Leak]:
    """A signed report's entries, in order; ValidationFailed (quoting nothing) when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("The body must be a JSON array.") from None
    if not isinstance(data, list):
        raise ValidationFailed("The body must be a JSON array.")
    if len(data) > MAX_REPORTS:
        raise ValidationFailed(f"Send at most {MAX_REPORTS} entries at a time.")
    leaks = []
    for number, entry in enumerate(data):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(name), str) for name in ("token", "type", "url", "source")
        ):
            raise ValidationFailed(
                f"Entry {number} must be an object with string token, type, url and source.",
                field=f"{number}",
            )
        url, source = safe_text(entry["url"], MAX_URL), safe_text(entry["source"], _MAX_SOURCE)
        leaks.append(Leak(entry["token"], entry["type"], url, source))
    return leaks


def safe_text(text: str, limit: int) -> str:
    """The sender's text as it may be stored, logged and mailed: key material redacted, control,
    line-breaking and bidirectional characters escaped, quotes and backslashes too, then cut."""
    return field(text)[:limit]
