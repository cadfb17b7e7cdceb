"""Reading and validating JSON request bodies."""

from __future__ import annotations

import json
import re

from starlette.requests import Request

from thotbot.core.errors import ValidationFailed
from thotbot.core.names import NAME_PATTERN, key_name_problem

__all__ = ["NAME_PATTERN", "read_json_object", "required_name", "required_str"]

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

    The pattern (``thotbot.core.names``, one rule for the API, the dashboard and the CLI) is tried
    before trimming, as a client tries the description's: a control character
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
    problem = key_name_problem(raw)
    if problem is not None:
        raise ValidationFailed(problem, field=name)
    return value
