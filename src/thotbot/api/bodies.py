"""Reading and validating JSON request bodies."""

from __future__ import annotations

import json
import re

from starlette.requests import Request

from thotbot.core.errors import ValidationFailed

__all__ = ["NAME_PATTERN", "read_json_object", "required_name", "required_str"]

# What a name may not hold: control characters (C0, DEL and C1), the line and paragraph separators,
# the bidirectional formatting characters (they can make a name read as another in mail and logs)
# and the byte order mark. Written so that JavaScript, Python and Rust read the class alike.
_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
#: A name: none of those characters, and one at least that is not a space. The OpenAPI description
#: gives this very pattern (tests/test_openapi.py checks it), so clients validate as the server does.
NAME_PATTERN = rf"^[^{_FORBIDDEN}]*[^\s{_FORBIDDEN}][^{_FORBIDDEN}]*$"
_NAME = re.compile(NAME_PATTERN)


async def read_json_object(request: Request) -> dict[str, object]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]]
        raise ValidationFailed("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    return body


def required_str(body: dict[str, object], name: str, *, max_length: int) -> str:
    """The field, trimmed; at most ``max_length`` characters as sent, as the description's maxLength."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"'{name}' is required and must be a non-empty string.", field=name)
    if len(value) > max_length:
        raise ValidationFailed(f"'{name}' must be at most {max_length} characters.", field=name)
    value = value.strip()
    if "\x00" in value:
        raise ValidationFailed(f"'{name}' must not contain NUL characters.", field=name)
    return value


def required_name(body: dict[str, object], name: str, *, max_length: int) -> str:
    """A name field, trimmed: ``required_str``, and as sent it matches ``NAME_PATTERN``.

    The pattern is tried before trimming, as a client tries the description's: a control character
    at either end (U+001F is a space to ``str.strip``) is refused, not trimmed away.
    """
    value = required_str(body, name, max_length=max_length)
    raw = body[name]
    if not isinstance(raw, str) or not _NAME.fullmatch(raw):
        raise ValidationFailed(
            f"'{name}' must not contain control characters, line separators or bidirectional "
            "formatting characters.",
            field=name,
        )
    return value
