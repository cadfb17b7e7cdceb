"""The ThotbotError family: each class knows its HTTP status, stable code and title."""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "APIKeyInURL",
    "AccountDisabled",
    "AuthenticationError",
    "ConfigError",
    "Conflict",
    "ContentTooLarge",
    "DatabaseUnavailable",
    "DuplicateAuthorization",
    "EmailNotVerified",
    "ExpiredAPIKey",
    "IPNotAllowed",
    "InsufficientScope",
    "InvalidAPIKey",
    "InvalidSignature",
    "MalformedAPIKey",
    "MethodNotAllowed",
    "MissingAPIKey",
    "NotFound",
    "RateLimited",
    "RestrictedEndpoint",
    "RevokedAPIKey",
    "SessionCookieNotAccepted",
    "ThotbotError",
    "UnsupportedAuthScheme",
    "ValidationFailed",
]

PROBLEM_BASE = "https://thotbot.cc/problems/"


class ThotbotError(Exception):
    """Base of every error Thotbot raises on purpose; rendered as RFC 9457 at the edge."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "Something went wrong on our side."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        self.extra = extra
        super().__init__(self.detail)

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code.replace("_", "-")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


class ConfigError(ThotbotError):
    code = "config_error"
    title = "Invalid setting"


class DatabaseUnavailable(ThotbotError):
    status = 503
    code = "service_unavailable"
    title = "Service temporarily unavailable"
    default_detail = "The service cannot reach its database right now; retry in a few seconds."


class NotFound(ThotbotError):
    status = 404
    code = "not_found"
    title = "Not found"
    default_detail = "There is nothing at this address."


class ValidationFailed(ThotbotError):
    status = 422
    code = "validation_error"
    title = "Validation error"
    default_detail = "The request body is not valid."


class Conflict(ThotbotError):
    status = 409
    code = "conflict"
    title = "Conflict"
    default_detail = "That already exists."


class AuthenticationError(ThotbotError):
    """A 401: the request did not prove who it comes from."""

    status = 401
    #: The RFC 6750 ``error`` attribute of the ``WWW-Authenticate`` challenge; None when the request
    #: carried no credentials at all, which RFC 6750 section 3.1 answers with no error information.
    bearer_error: ClassVar[str | None] = "invalid_token"


class MissingAPIKey(AuthenticationError):
    code = "missing_api_key"
    title = "Missing API key"
    bearer_error = None
    default_detail = (
        "This endpoint needs an API key: send it as 'Authorization: Bearer thot_ak_...'. "
        "Create one on the dashboard under API Keys."
    )


class UnsupportedAuthScheme(AuthenticationError):
    code = "unsupported_auth_scheme"
    title = "Unsupported authorization scheme"
    bearer_error = None
    default_detail = "Only the Bearer scheme is accepted: 'Authorization: Bearer thot_ak_...'."


class SessionCookieNotAccepted(AuthenticationError):
    code = "session_cookie_not_accepted"
    title = "Session cookies do not work on the API"
    bearer_error = None
    default_detail = (
        "The API does not accept the dashboard's session cookie. Create an API key on the "
        "dashboard under API Keys and send it as 'Authorization: Bearer thot_ak_...'."
    )


class MalformedAPIKey(AuthenticationError):
    code = "malformed_api_key"
    title = "Malformed API key"
    default_detail = (
        "The bearer token is not a Thotbot API key: keys are 'thot_ak_' followed by "
        "96 lowercase hexadecimal digits. Check that it was copied whole."
    )


class DuplicateAuthorization(MalformedAPIKey):
    """Two ``Authorization`` headers: refused rather than picking one, as a malformed request."""

    bearer_error = "invalid_request"
    default_detail = "Send exactly one Authorization header."


class InvalidAPIKey(AuthenticationError):
    code = "invalid_api_key"
    title = "Invalid API key"
    default_detail = "No such API key. It may have been deleted, or it belongs to another installation."


class ExpiredAPIKey(AuthenticationError):
    code = "expired_api_key"
    title = "Expired API key"
    default_detail = "This API key has expired. Create a new one on the dashboard under API Keys."


class RevokedAPIKey(AuthenticationError):
    code = "revoked_api_key"
    title = "Revoked API key"
    default_detail = "This API key has been revoked. Create a new one on the dashboard under API Keys."


class InvalidSignature(AuthenticationError):
    """A secret-scanning report not signed by one of the configured GitHub keys: nothing was done."""

    code = "invalid_signature"
    title = "Invalid signature"
    bearer_error = None
    default_detail = (
        "This report is not signed by a known GitHub secret-scanning key: send the "
        "Github-Public-Key-Identifier and Github-Public-Key-Signature headers of the raw body."
    )


class APIKeyInURL(ThotbotError):
    status = 400
    code = "api_key_in_url"
    title = "API key in URL"
    default_detail = (
        "An API key was sent in the URL, where it ends up in logs and browser history. "
        "Send it only in the 'Authorization: Bearer' header, and consider rolling this key."
    )


class RestrictedEndpoint(ThotbotError):
    status = 403
    code = "restricted_endpoint"
    title = "Restricted endpoint"
    default_detail = (
        "This endpoint can change how the account is secured, so API keys cannot call it. "
        "Use the dashboard (Security) instead. If you need programmatic access and understand "
        "the risks, contact the operator: access can be arranged for one key."
    )


class AccountDisabled(ThotbotError):
    """The key is fine, but the operator disabled its account: a 403, like Stripe's locked account."""

    status = 403
    code = "account_disabled"
    title = "Account disabled"
    default_detail = (
        "The account this API key belongs to has been disabled by the operator, so its keys are "
        "refused. Contact the operator."
    )


class IPNotAllowed(ThotbotError):
    """The key is fine, but the operator allowed it only from some networks, and not this one."""

    status = 403
    code = "ip_not_allowed"
    title = "IP address not allowed"
    default_detail = "This API key may not be used from this address."

    def __init__(self, address: str) -> None:
        super().__init__(
            f"This API key may only be used from the networks on its allowlist, and this request came "
            f"from {address}. The list is on the key's page in the dashboard (API Keys)."
        )


class EmailNotVerified(ThotbotError):
    status = 403
    code = "email_not_verified"
    title = "Email address not verified"
    default_detail = (
        "This account's email address is not verified yet, so it cannot create API keys. Follow "
        "the link mailed at sign-up, or send a new one from the dashboard (API Keys)."
    )


class InsufficientScope(ThotbotError):
    status = 403
    code = "insufficient_scope"
    title = "Insufficient scope"
    default_detail = "This API key is read-only: it may only make GET and HEAD requests."


class RateLimited(ThotbotError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"
    default_detail = "Rate limit exceeded; retry after the number of seconds in Retry-After."

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class MethodNotAllowed(ThotbotError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"
    default_detail = "This endpoint does not accept that HTTP method."


class ContentTooLarge(ThotbotError):
    status = 413
    code = "content_too_large"
    title = "Content too large"
    default_detail = "The request body is larger than the 1 MiB this API accepts."
