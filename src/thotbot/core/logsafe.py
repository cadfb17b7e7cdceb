"""Text made safe to write to a log: key material redacted, control characters escaped; pure.

A log line is only evidence if nobody but us can start one. A client controls the request path,
headers and bodies, and ``%0A`` in a path, decoded by the server, would otherwise write a whole
forged line; ``%1b`` would write a raw escape byte that a terminal obeys. So every character that
can end a line or steer a terminal or a reader is written as an escape (``\\n``, ``\\x1b``,
``\\u2028``): C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the
bidirectional overrides that make text read differently than it is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from thotbot.core.redaction import redact

__all__ = ["CONTINUATION", "field", "json_line", "json_string", "record_text"]

#: What starts each line of a multi-line record after its first: no forged record starts so.
CONTINUATION = "    "

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# json.dumps escapes C0 itself, but with ensure_ascii=False writes DEL, C1 and U+2028 as they are.
_UNSAFE_IN_JSON = {
    code: f"\\u{code:04x}"
    for code in [
        *range(0x7F, 0xA0),
        0x2028,
        0x2029,
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ]
}
_UNSAFE_IN_FIELD = re.compile(f'[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}"\\\\]')
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")


def field(text: str) -> str:
    """One field of an access-log line: redacted, escaped, and ``"`` and ``\\`` too, as nginx does."""
    text = redact(text)
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return _UNSAFE_IN_FIELD.sub(_escaped, text)


def json_line(entry: Mapping[str, object]) -> str:
    """One JSON record: the characters JSON may leave raw that a reader or terminal acts on escaped.

    They can only occur inside strings (the rest of the document is ASCII), where ``\\uXXXX`` is
    the same value, so the document still parses to the same thing.
    """
    return _safe(json.dumps(entry, ensure_ascii=False))


def json_string(text: str) -> str:
    """One string as JSON, escaped as ``json_line`` escapes it: for records built piece by piece."""
    return _safe(json.dumps(text, ensure_ascii=False))


def _safe(text: str) -> str:
    # Every character to escape is DEL or beyond ASCII: most lines need no translation at all.
    if text.isascii() and "\x7f" not in text:
        return text
    return text.translate(_UNSAFE_IN_JSON)


def record_text(text: str) -> str:
    """A whole formatted log record: redacted, escaped, and every line after the first indented.

    Tracebacks and mail written to the log keep their lines, but each starts with CONTINUATION, so
    a line break in a value can never begin what looks like another record.
    """
    text = redact(text)
    if not text.isprintable():
        text = _UNSAFE_BUT_NEWLINE.sub(_escaped, text).replace("\n", "\n" + CONTINUATION)
    return text


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
