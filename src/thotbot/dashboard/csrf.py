"""CSRF protection: a secret per session, handed to forms masked so no page repeats its bytes.

Each rendered form gets ``pad + (pad XOR secret)``, base64url-encoded: any of them verifies, and
because the pad is fresh each time, compression side channels (BREACH) learn nothing that repeats.

A visitor not signed in has no session (a page view writes nothing): their forms use a signed
double submit instead (OWASP). A random value lives in an HttpOnly cookie, and the form's secret is
the HMAC of that value under the instances' shared key, bound to its purpose. Another site can
neither read the cookie nor compute the HMAC, and a cookie it manages to plant has no token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from thotbot.core.errors import ThotbotError

__all__ = [
    "CSRFFailed",
    "check_origin",
    "cookie_secret",
    "mask_token",
    "new_cookie_value",
    "plausible_cookie_value",
    "verify_token",
]

#: The HMAC's message starts with this, so a token is never valid for anything else the key signs.
_PURPOSE = b"thotbot csrf double-submit v1\x00"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


class CSRFFailed(ThotbotError):
    status = 403
    code = "csrf_failed"
    title = "This form has expired"
    default_detail = (
        "The form was sent without its security token, or your session has ended. "
        "Nothing was changed. Go back, reload the page and try again."
    )


def new_cookie_value() -> str:
    """A fresh random value for the CSRF cookie: 256 bits."""
    return secrets.token_urlsafe(32)


def plausible_cookie_value(value: str | None) -> bool:
    return value is not None and _COOKIE_VALUE.fullmatch(value) is not None


def cookie_secret(key: bytes, cookie_value: str) -> str:
    """The CSRF secret of a visitor not signed in, as hex: mask it like a session's secret."""
    return hmac.new(key, _PURPOSE + cookie_value.encode("ascii"), hashlib.sha256).hexdigest()


def mask_token(secret: str) -> str:
    raw = bytes.fromhex(secret)
    pad = secrets.token_bytes(len(raw))
    return base64.urlsafe_b64encode(pad + bytes(a ^ b for a, b in zip(pad, raw, strict=True))).decode()


def verify_token(secret: str, token: object) -> None:
    """Raise CSRFFailed unless ``token`` is a masked form of this session's secret."""
    if not isinstance(token, str) or not token or len(token) > 256:
        raise CSRFFailed
    try:
        data = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise CSRFFailed from None
    raw = bytes.fromhex(secret)
    if len(data) != 2 * len(raw):
        raise CSRFFailed
    pad, masked = data[: len(raw)], data[len(raw) :]
    if not hmac.compare_digest(bytes(a ^ b for a, b in zip(pad, masked, strict=True)), raw):
        raise CSRFFailed


def check_origin(origin: str | None, fetch_site: str | None, host: str | None, public_url: str) -> None:
    """Refuse a form posted from another site, as far as the browser tells us.

    The token is the real protection; this is a second, independent one. A request without
    ``Origin`` (old browsers, scripts) is left to the token alone.
    """
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise CSRFFailed("This form was sent from another site, so it was refused. Nothing was changed.")
    if origin is None:
        return
    parts = urlsplit(origin)
    allowed = {_origin(public_url)}
    if host:
        allowed.update({f"http://{host}", f"https://{host}"})
    if origin == "null" or f"{parts.scheme}://{parts.netloc}" not in allowed:
        raise CSRFFailed("This form was sent from another site, so it was refused. Nothing was changed.")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
