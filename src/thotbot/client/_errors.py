"""The exceptions the client raises: one class per error code of the API, grouped by status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "APIError",
    "AccountDisabled",
    "AuthenticationError",
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "EmailNotVerified",
    "ExpiredAPIKey",
    "IPNotAllowed",
    "InsufficientScope",
    "InvalidAPIKey",
    "InvalidSignature",
    "MalformedAPIKey",
    "MissingAPIKey",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RestrictedEndpoint",
    "RevokedAPIKey",
    "ServerError",
    "ServiceUnavailable",
    "SessionCookieNotAccepted",
    "ThotbotClientError",
    "TransportError",
    "UnexpectedResponse",
    "UnsupportedAuthScheme",
    "ValidationError",
    "error_for",
]


class ThotbotClientError(Exception):
    """Base of everything the client raises on purpose."""


class ConfigurationError(ThotbotClientError, ValueError):
    """The client cannot be built as asked: no API key given and none in THOTBOT_API_KEY, a bad URL."""


class TransportError(ThotbotClientError):
    """No answer from the server: it could not be reached, the connection broke, or it timed out."""


class UnexpectedResponse(ThotbotClientError):
    """The server answered with a success, but not in the shape this client knows."""


class APIError(ThotbotClientError):
    """The server refused the request with an RFC 9457 problem (``application/problem+json``).

    ``code`` is the problem's stable code (``revoked_api_key``), ``status`` the HTTP status, and
    ``detail`` says what to do about it. ``headers`` are the response's headers (``RateLimit-*``,
    ``WWW-Authenticate``, ...); ``retry_after`` is its ``Retry-After`` in seconds, or None.
    """

    #: The code this class stands for (None for a class that groups codes by status).
    code_name: ClassVar[str | None] = None

    def __init__(
        self,
        code: str,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str | None = None,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, status, detail)
        self.code = code
        self.status = status
        self.detail = detail
        self.title = title
        self.type = type
        self.instance = instance
        self.headers: Mapping[str, str] = dict(headers or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, detail={self.detail!r})"


class BadRequest(APIError):
    """400: the request itself is wrong (not valid HTTP, a key in the URL)."""


class AuthenticationError(APIError):
    """401: the request did not prove who it comes from; the key is missing, wrong or no longer valid."""


class MissingAPIKey(AuthenticationError):
    code_name = "missing_api_key"


class UnsupportedAuthScheme(AuthenticationError):
    code_name = "unsupported_auth_scheme"


class SessionCookieNotAccepted(AuthenticationError):
    code_name = "session_cookie_not_accepted"


class MalformedAPIKey(AuthenticationError):
    code_name = "malformed_api_key"


class InvalidAPIKey(AuthenticationError):
    code_name = "invalid_api_key"


class ExpiredAPIKey(AuthenticationError):
    code_name = "expired_api_key"


class RevokedAPIKey(AuthenticationError):
    code_name = "revoked_api_key"


class InvalidSignature(AuthenticationError):
    """A secret-scanning report not signed by a configured GitHub key (that endpoint is GitHub's)."""

    code_name = "invalid_signature"


class PermissionDenied(APIError):
    """403: the key is valid, but may not do this."""


class RestrictedEndpoint(PermissionDenied):
    code_name = "restricted_endpoint"


class InsufficientScope(PermissionDenied):
    code_name = "insufficient_scope"


class AccountDisabled(PermissionDenied):
    code_name = "account_disabled"


class IPNotAllowed(PermissionDenied):
    code_name = "ip_not_allowed"


class EmailNotVerified(PermissionDenied):
    code_name = "email_not_verified"


class NotFound(APIError):
    """404: nothing at that address, or no such key among the account's own."""


class Conflict(APIError):
    """409: that already exists."""


class ValidationError(APIError):
    """422: the request body or a parameter is not valid."""


class RateLimited(APIError):
    """429: too many requests; ``retry_after`` says how many seconds to wait."""


class ServerError(APIError):
    """5xx: something went wrong on the server's side."""


class ServiceUnavailable(ServerError):
    """503: the server cannot take the request right now (database unreachable, connections full)."""


_BY_CODE: dict[str, type[APIError]] = {
    cls.code_name: cls
    for cls in (
        MissingAPIKey,
        UnsupportedAuthScheme,
        SessionCookieNotAccepted,
        MalformedAPIKey,
        InvalidAPIKey,
        ExpiredAPIKey,
        RevokedAPIKey,
        InvalidSignature,
        RestrictedEndpoint,
        InsufficientScope,
        AccountDisabled,
        IPNotAllowed,
        EmailNotVerified,
    )
    if cls.code_name is not None
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(code: str, status: int) -> type[APIError]:
    """The class for a problem: by its code when this client knows it, else by its status."""
    known = _BY_CODE.get(code)
    if known is not None:
        return known
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else APIError
