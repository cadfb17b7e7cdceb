"""The Python client of the Thotbot API: ``Client`` (blocking) and ``AsyncClient`` (asyncio), on httpx.

    from thotbot.client import Client

    with Client(app="acme-sync", version="2.3.1", contact="ops@acme.example") as client:
        print(client.me().key.name)

The key comes from ``api_key`` or ``THOTBOT_API_KEY``; the server from ``base_url`` or
``THOTBOT_API_URL`` (default ``http://localhost:8000``). Answers are frozen dataclasses
(``Version``, ``Me``, ``Account``, ``Key``, ``KeyRequest``) with the API's field names and aware datetimes.

The API key is sent only in the ``Authorization`` header, to ``base_url``; it is never in a URL, a
log line, a repr or an exception (the client's repr shows the key's hint, ``thot_ak_1a2b…9f0e``).

Errors, each carrying the problem's ``code``, ``status``, ``detail``, ``title``, ``type``,
``instance``, the response ``headers`` and ``retry_after``::

    ThotbotClientError
    ├── ConfigurationError          no api_key, none in THOTBOT_API_KEY, a bad base_url (a ValueError)
    ├── TransportError              no answer: connection refused or broken, timeout
    ├── UnexpectedResponse          a success in a shape this client does not know, a redirect
    └── APIError                    the server's problem+json; unknown codes map by status
        ├── BadRequest              400: bad_request, api_key_in_url
        ├── AuthenticationError     401
        │   ├── MissingAPIKey           missing_api_key
        │   ├── UnsupportedAuthScheme   unsupported_auth_scheme
        │   ├── SessionCookieNotAccepted session_cookie_not_accepted
        │   ├── MalformedAPIKey         malformed_api_key
        │   ├── InvalidAPIKey           invalid_api_key
        │   ├── ExpiredAPIKey           expired_api_key
        │   ├── RevokedAPIKey           revoked_api_key
        │   └── InvalidSignature        invalid_signature (GitHub's secret-scanning reports only)
        ├── PermissionDenied        403
        │   ├── RestrictedEndpoint      restricted_endpoint
        │   ├── InsufficientScope       insufficient_scope (a read-only key)
        │   ├── AccountDisabled         account_disabled
        │   ├── IPNotAllowed            ip_not_allowed
        │   └── EmailNotVerified        email_not_verified
        ├── NotFound                404: not_found
        ├── Conflict                409: conflict
        ├── ValidationError         422: validation_error
        ├── RateLimited             429: rate_limited (retry_after)
        └── ServerError             5xx: internal_error
            └── ServiceUnavailable  503: service_unavailable, too_many_connections

Retries: a call whose repetition has the effect of one call (GET, and also DELETE of a key and
revoke_leaked, since revoking twice revokes once) is sent again, at most ``max_retries`` times
(default 2), after a 429, a 503 or a transport error. It waits ``Retry-After`` when the answer has
one (plus up to a tenth more, at random), else an exponential backoff with jitter (up to 0.5 s, 1 s,
2 s ... 8 s). A ``Retry-After`` over 60 seconds is not waited out: the error is raised at once.

This package imports httpx and nothing of the server: it runs wherever ``thotbot`` is installed.
"""

from __future__ import annotations

from thotbot.client._async import AsyncClient
from thotbot.client._base import UserAgentWarning
from thotbot.client._errors import (
    AccountDisabled,
    APIError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    Conflict,
    EmailNotVerified,
    ExpiredAPIKey,
    InsufficientScope,
    InvalidAPIKey,
    InvalidSignature,
    IPNotAllowed,
    MalformedAPIKey,
    MissingAPIKey,
    NotFound,
    PermissionDenied,
    RateLimited,
    RestrictedEndpoint,
    RevokedAPIKey,
    ServerError,
    ServiceUnavailable,
    SessionCookieNotAccepted,
    ThotbotClientError,
    TransportError,
    UnexpectedResponse,
    UnsupportedAuthScheme,
    ValidationError,
)
from thotbot.client._models import Account, Key, KeyRequest, Me, Version
from thotbot.client._sync import Client

__all__ = [
    "APIError",
    "Account",
    "AccountDisabled",
    "AsyncClient",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "ConfigurationError",
    "Conflict",
    "EmailNotVerified",
    "ExpiredAPIKey",
    "IPNotAllowed",
    "InsufficientScope",
    "InvalidAPIKey",
    "InvalidSignature",
    "Key",
    "KeyRequest",
    "MalformedAPIKey",
    "Me",
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
    "UserAgentWarning",
    "ValidationError",
    "Version",
]
