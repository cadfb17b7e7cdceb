"""core/scanning.py: GitHub's keys file, the signature check, the report's shape, the safe text."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from thotbot.core.errors import ValidationFailed
from thotbot.core.scanning import MAX_URL, GitHubKeys, parse_reports, safe_text

PRIVATE = ec.generate_private_key(ec.SECP256R1())
PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
KEYS = GitHubKeys.parse(json.dumps({"public_keys": [{"key_identifier": "k1", "key": PEM}]}).encode())


def _sign(body: bytes, key: ec.EllipticCurvePrivateKey = PRIVATE) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


def test_a_body_signed_by_the_named_key_verifies() -> None:
    assert KEYS.verify("k1", _sign(b"[]"), b"[]")


@pytest.mark.parametrize(
    ("identifier", "signature", "body"),
    [
        ("k1", _sign(b"[]"), b"[ ]"),  # changed after signing
        ("k1", _sign(b"[]", ec.generate_private_key(ec.SECP256R1())), b"[]"),  # another key
        ("k2", _sign(b"[]"), b"[]"),  # no such identifier
        (None, _sign(b"[]"), b"[]"),
        ("k1", None, b"[]"),
        ("k1", "", b"[]"),
        ("k1", "%%%not base64%%%", b"[]"),
        ("k1", base64.b64encode(b"\x30\x02\x00\x00").decode(), b"[]"),  # base64, not a signature
        ("k1", "A" * 10_000, b"[]"),
    ],
    ids=[
        "body_changed",
        "another_key",
        "unknown_identifier",
        "no_identifier",
        "no_signature",
        "empty_signature",
        "not_base64",
        "not_a_signature",
        "too_long",
    ],
)
def test_anything_else_does_not(identifier: str | None, signature: str | None, body: bytes) -> None:
    assert KEYS.verify(identifier, signature, body) is False


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (b"\xff", "is not a JSON document"),
        (b"[]", 'holds no "public_keys" list'),
        (b'{"public_keys": [{"key": "x"}]}', 'lacks a "key_identifier"'),
        (b'{"public_keys": [{"key_identifier": "k", "key": "x"}]}', "not a PEM public key"),
    ],
)
def test_a_bad_keys_file_says_what_is_wrong(document: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        GitHubKeys.parse(document)


def test_a_report_keeps_its_order_and_makes_its_text_safe() -> None:
    body = json.dumps(
        [
            {"token": "a", "type": "t", "url": "https://x/1\n\x1b[31m\u202e", "source": "commit"},
            {"token": "b", "type": "t", "url": "https://x/2", "source": "content"},
        ]
    ).encode()

    leaks = parse_reports(body)

    assert [leak.token for leak in leaks] == ["a", "b"]
    assert leaks[0].url == "https://x/1\\n\\x1b[31m\\u202e"
    assert leaks[1].source == "content"


def test_safe_text_redacts_a_key_and_cuts() -> None:
    key = "thot" + "_ak_" + "ab" * 48

    assert key not in safe_text(f"https://x/?k={key}", MAX_URL)
    assert len(safe_text("u" * 10_000, MAX_URL)) == MAX_URL


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'[{"token": "a"}]', b"[1]", b'[{"token": 1, "type": "t", "url": "u", "source": "s"}]'],
)
def test_anything_but_an_array_of_string_entries_is_refused(body: bytes) -> None:
    with pytest.raises(ValidationFailed):
        parse_reports(body)
