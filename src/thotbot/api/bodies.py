"""Reading and validating JSON request bodies."""

from __future__ import annotations

import json

from starlette.requests import Request

from thotbot.core.errors import ValidationFailed

__all__ = ["read_json_object", "required_str"]


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
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"'{name}' is required and must be a non-empty string.", field=name)
    value = value.strip()
    if "\x00" in value:
        raise ValidationFailed(f"'{name}' must not contain NUL characters.", field=name)
    if len(value) > max_length:
        raise ValidationFailed(f"'{name}' must be at most {max_length} characters.", field=name)
    return value
