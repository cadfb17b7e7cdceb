from __future__ import annotations

import pytest

from thotbot.core import errors
from thotbot.core.errors import (
    APIKeyInURL,
    AuthenticationError,
    ExpiredAPIKey,
    InsufficientScope,
    InvalidAPIKey,
    MalformedAPIKey,
    MissingAPIKey,
    RateLimited,
    RestrictedEndpoint,
    RevokedAPIKey,
    SessionCookieNotAccepted,
    ThotbotError,
    UnsupportedAuthScheme,
)

#: A 401 to a request without credentials: RFC 6750 section 3.1, no ``error`` in the challenge.
NO_ERROR = "(no error)"

# The documented table (docs/API.md): code, status and the RFC 6750 error of each 401.
CONTRACT = [
    (MissingAPIKey, "missing_api_key", 401, NO_ERROR),
    (UnsupportedAuthScheme, "unsupported_auth_scheme", 401, NO_ERROR),
    (SessionCookieNotAccepted, "session_cookie_not_accepted", 401, NO_ERROR),
    (errors.DuplicateAuthorization, "malformed_api_key", 401, "invalid_request"),
    (MalformedAPIKey, "malformed_api_key", 401, "invalid_token"),
    (InvalidAPIKey, "invalid_api_key", 401, "invalid_token"),
    (ExpiredAPIKey, "expired_api_key", 401, "invalid_token"),
    (RevokedAPIKey, "revoked_api_key", 401, "invalid_token"),
    (APIKeyInURL, "api_key_in_url", 400, None),
    (RestrictedEndpoint, "restricted_endpoint", 403, None),
    (InsufficientScope, "insufficient_scope", 403, None),
    (errors.NotFound, "not_found", 404, None),
    (errors.ValidationFailed, "validation_error", 422, None),
]


@pytest.mark.parametrize(("cls", "code", "status", "bearer_error"), CONTRACT)
def test_contract_codes(cls: type[ThotbotError], code: str, status: int, bearer_error: str | None) -> None:
    exc = cls()

    assert exc.code == code
    assert exc.status == status
    assert exc.type_uri == "https://thotbot.cc/problems/" + code.replace("_", "-")
    assert exc.detail == cls.default_detail
    assert exc.title
    if bearer_error is None:
        assert not isinstance(exc, AuthenticationError)
    else:
        assert isinstance(exc, AuthenticationError)
        assert exc.bearer_error == (None if bearer_error == NO_ERROR else bearer_error)


def test_codes_are_unique() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    # A subclass that keeps its parent's code (DuplicateAuthorization) is the same error, told apart
    # only by its challenge.
    codes = [cls.code for cls in classes if cls is not ThotbotError and "code" in vars(cls)]

    assert len(codes) == len(set(codes))


def test_every_exported_class_is_a_thotbot_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), ThotbotError), name


def test_detail_and_extra() -> None:
    with pytest.raises(errors.ValidationFailed) as exc_info:
        raise errors.ValidationFailed("'name' is required.", field="name")

    assert exc_info.value.detail == "'name' is required."
    assert str(exc_info.value) == "'name' is required."
    assert exc_info.value.extra == {"field": "name"}
    assert repr(exc_info.value) == "ValidationFailed(\"'name' is required.\")"


def test_empty_detail_falls_back_to_default() -> None:
    assert errors.NotFound("").detail == errors.NotFound.default_detail


def test_rate_limited_keeps_retry_after() -> None:
    with pytest.raises(RateLimited) as exc_info:
        raise RateLimited(17)

    assert exc_info.value.retry_after == 17
    assert exc_info.value.status == 429
    assert exc_info.value.code == "rate_limited"


def test_base_error_is_a_500() -> None:
    exc = ThotbotError()

    assert exc.status == 500
    assert exc.code == "internal_error"


def test_default_details_never_hold_a_key_shape() -> None:
    for name in errors.__all__:
        detail = getattr(errors, name).default_detail
        assert "thot_ak_" + "0" not in detail
        assert len(detail) < 300


def test_restricted_detail_points_to_dashboard_and_operator() -> None:
    detail = RestrictedEndpoint.default_detail.lower()

    assert "dashboard" in detail
    assert "operator" in detail
