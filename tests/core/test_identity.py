from __future__ import annotations

import pytest

from thotbot.core.identity import (
    GRANTABLE,
    PERMISSION_AUTH_METHODS,
    AuthMethod,
    Identity,
    Permission,
    is_restricted,
    permits,
)

KEY = Identity(account_id="acct_1", method=AuthMethod.API_KEY, key_id="key_1")
READ_ONLY_KEY = Identity(account_id="acct_1", method=AuthMethod.API_KEY, key_id="key_2", read_only=True)
GRANTED_KEY = Identity(
    account_id="acct_1",
    method=AuthMethod.API_KEY,
    key_id="key_3",
    grants=frozenset({Permission.ACCOUNT_SECURITY.value}),
)
SESSION = Identity(account_id="acct_1", method=AuthMethod.SESSION)


@pytest.mark.parametrize(
    ("identity", "permission", "expected"),
    [
        (KEY, Permission.ACCOUNT_SECURITY, False),
        (READ_ONLY_KEY, Permission.ACCOUNT_SECURITY, False),
        (GRANTED_KEY, Permission.ACCOUNT_SECURITY, True),
        (SESSION, Permission.ACCOUNT_SECURITY, True),
    ],
)
def test_permits(identity: Identity, permission: Permission, expected: bool) -> None:
    assert permits(identity, permission) is expected


def test_unlisted_permissions_are_session_only() -> None:
    unlisted = [p for p in Permission if p not in PERMISSION_AUTH_METHODS]

    assert unlisted == [Permission.ACCOUNT_SECURITY]
    for permission in unlisted:
        assert not permits(KEY, permission)
        assert permits(SESSION, permission)


def test_an_unknown_grant_permits_nothing_more() -> None:
    identity = Identity(
        account_id="acct_1", method=AuthMethod.API_KEY, key_id="key_4", grants=frozenset({"admin", "*"})
    )

    assert not permits(identity, Permission.ACCOUNT_SECURITY)


def test_grantable() -> None:
    assert frozenset({"account:security"}) == GRANTABLE


def test_identity_is_frozen() -> None:
    with pytest.raises(AttributeError):
        KEY.account_id = "acct_2"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PUT", "/v1/account/email", True),
        ("PUT", "/v1/account/password", True),
        ("GET", "/v1/account/passkeys", True),
        ("DELETE", "/v1/account/passkeys/pk_1", True),
        ("PATCH", "/v1/account", True),  # a probe at a method no route has is an attempt all the same
        ("POST", "/v1/keys", True),
        ("POST", "/v1/keys/", True),
        ("GET", "/v1/keys", False),
        ("DELETE", "/v1/keys/key_1", False),
        ("POST", "/v1/keys/revoke-leaked", False),
        ("GET", "/v1/me", False),
        ("GET", "/v1/accounts", False),
    ],
)
def test_is_restricted(method: str, path: str, expected: bool) -> None:
    assert is_restricted(method, path) is expected
