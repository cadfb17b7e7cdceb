"""The dashboard's cookie names: ``__Host-`` prefixed when the public URL is https."""

from __future__ import annotations

__all__ = [
    "CSRF_COOKIE",
    "FLASH_COOKIE",
    "HOST_PREFIX",
    "SESSION_COOKIE",
    "SESSION_COOKIE_NAMES",
    "cookie_name",
]

SESSION_COOKIE = "thotbot_session"
CSRF_COOKIE = "thotbot_csrf"
FLASH_COOKIE = "thotbot_flash"
HOST_PREFIX = "__Host-"
#: Both spellings of the session cookie, for the API guard that refuses it whatever the setting.
SESSION_COOKIE_NAMES = (SESSION_COOKIE, HOST_PREFIX + SESSION_COOKIE)


def cookie_name(name: str, secure: bool) -> str:
    """The name a cookie goes by: on https, with the prefix.

    A browser keeps a ``__Host-`` cookie only if it is Secure, has ``Path=/`` and no ``Domain``, so
    neither a sibling subdomain nor a plain-http page can plant or overwrite it (cookie tossing).
    """
    return HOST_PREFIX + name if secure else name
