"""What a key's name may be: one rule for the API, the dashboard and the CLI.

A name is shown in mail, in logs and on pages, so it may not hold control characters (C0, DEL and
C1), the line and paragraph separators, the bidirectional formatting characters (they can make a
name read as another) or the byte order mark, and it may not hold an API key. The OpenAPI
description publishes ``NAME_PATTERN`` (tests/test_openapi.py checks it), so clients validate as the
server does; the pattern is written so that JavaScript, Python and Rust read the class alike.
"""

from __future__ import annotations

import re

from thotbot.core.redaction import holds_key, redact

__all__ = ["MAX_KEY_NAME", "NAME_PATTERN", "key_name_problem", "tidy_key_name"]

MAX_KEY_NAME = 100
_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
#: A name: none of those characters, and one at least that is not a space.
NAME_PATTERN = rf"^[^{_FORBIDDEN}]*[^\s{_FORBIDDEN}][^{_FORBIDDEN}]*$"
_ANY_FORBIDDEN = re.compile(f"[{_FORBIDDEN}]")
_TYPED_SPACE = re.compile(r"[ \t\r\n]+")


def tidy_key_name(typed: str) -> str:
    """A name typed in a form or a shell: runs of spaces, tabs and line breaks become one space,
    and the ends are trimmed. Nothing else is touched: what is left must pass ``key_name_problem``.
    The API takes names as sent, so a client's validation against ``NAME_PATTERN`` holds."""
    return _TYPED_SPACE.sub(" ", typed).strip(" ")


def key_name_problem(name: str) -> str | None:
    """Why ``name`` (as given, before any trimming) cannot name a key, in a sentence; None if it can."""
    if not name.strip():
        return "Give the key a name, such as the program or server that will use it."
    if len(name.strip()) > MAX_KEY_NAME:
        return f"Use at most {MAX_KEY_NAME} characters."
    if _ANY_FORBIDDEN.search(name):
        return (
            "The name cannot hold control characters, line separators or bidirectional formatting characters."
        )
    if holds_key(name) or redact(name) != name:
        return "The name cannot hold an API key: it is shown in mail and logs."
    return None
