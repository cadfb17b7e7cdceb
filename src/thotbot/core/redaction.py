"""Key material in free text, in any encoding, found and replaced before any sink; pure, no I/O.

A key reaches text we write (logs, mail, problem documents, the security log) in many shapes:
``thot_ak_`` and its hex in any case, percent-encoded once or many times (``thot%5Fak_``,
``thot%255Fak_``, ``%74%68%6F%74...``), as HTML character references (``&#116;``, ``&#x5f;``,
``&lowbar;``), as JSON ``\\u0074`` escapes, or as its 96 hex digits alone. ``redact`` decodes
every such escape (any mix, nested up to eight times, with ``%25`` chains at any depth) while
remembering where each decoded character came from, finds key material in the decoded text, and
replaces the original span of each finding:

- ``thot_ak_`` and the word characters after it (a whole key or a cut one) become
  ``thot_ak_[redacted]``; the prefix alone (``Bearer thot_ak_...`` in a help text) and a key's
  hint (``thot_ak_0123…cdef``) are no secret and stay;
- a run of 96 or more hex digits, digits and letters mixed (a key's secret without its prefix),
  becomes ``[redacted]``.

``+`` and spaces are not decoded: neither can be part of a key, so a key split by them is two
harmless halves unless one half is itself 96 hex digits. Text with no ``%``, ``&`` or backslash
skips the decoding and costs one regular-expression scan.
"""

from __future__ import annotations

import re

from thotbot.core.keys import HEX_DIGITS, KEY_LENGTH, PREFIX

__all__ = ["BARE_MARK", "KEY_MARK", "holds_key", "redact", "redact_cut"]

KEY_MARK = PREFIX + "[redacted]"
BARE_MARK = "[redacted]"

# A hint (``thot_ak_0123…cdef``: 4 of the 96 digits, shown on purpose) is no finding.
_KEY = re.compile(rf"{PREFIX}(?![0-9a-f]{{4}}…)\w+|[0-9a-f]{{{HEX_DIGITS},}}", re.IGNORECASE)
# Every repetition is bounded or cannot fail after it: a long run of backslashes or zeros costs
# linear time (an unbounded \\+ before [uU] made 20 000 backslashes take seconds).
_ESCAPE = re.compile(
    r"%(?:25)*(?P<pct>[0-9A-Fa-f]{2})"  # %74, %2574, %252574...
    r"|\\{1,8}[uU](?P<uni>[0-9A-Fa-f]{4})"  # JSON \u0074, and \\u0074 from JSON inside JSON
    r"|\\{1,8}x(?P<byte>[0-9A-Fa-f]{2})"  # \x74, as Python and C write it
    r"|&#[xX]0*(?P<hexref>[0-9A-Fa-f]{1,6});?"  # &#x74;
    r"|&#0*(?P<decref>[0-9]{1,7});?"  # &#116;
    r"|&(?P<named>[A-Za-z]{2,8});"  # &lowbar; &amp;
)
# The HTML named references that spell a key's characters, or an escape of one (&amp;#116;).
_NAMED = {"lowbar": "_", "underbar": "_", "amp": "&", "percnt": "%", "bsol": "\\", "num": "#"}
# Each pass undoes one layer; a %25 chain is undone whole in one pass whatever its depth.
_MAX_PASSES = 8


def redact(text: str) -> str:
    """``text`` with every piece of key material, in any encoding, replaced by a mark."""
    spans = _findings(text)
    if not spans:
        return text
    parts: list[str] = []
    position = 0
    for start, end, prefixed in spans:
        parts.append(text[position:start])
        parts.append(KEY_MARK if prefixed else BARE_MARK)
        position = end
    parts.append(text[position:])
    return "".join(parts)


def redact_cut(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, redacted before the cut.

    Cut first, a 96-hex secret across the limit would keep its first digits, too few to be found.
    """
    return redact(text[: limit + KEY_LENGTH])[:limit]


def holds_key(text: str) -> bool:
    """True if ``text`` holds ``thot_ak_`` in any case and any encoding: it starts like a key."""
    if _escaped(text):
        text = _decode(text)[0]
    return PREFIX in text.lower()


def _escaped(text: str) -> bool:
    return "%" in text or "&" in text or "\\" in text


def _findings(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, prefixed) in ``text`` of each piece of key material, in order, not overlapping."""
    if not _escaped(text):
        if len(text) < HEX_DIGITS and PREFIX not in text.lower():
            return []  # The common case, without a regular expression.
        return [(m.start(), m.end(), _prefixed(m.group())) for m in _KEY.finditer(text) if _secret(m)]
    decoded, starts, ends = _decode(text)
    return [
        (starts[m.start()], ends[m.end() - 1], _prefixed(m.group()))
        for m in _KEY.finditer(decoded)
        if _secret(m)
    ]


def _secret(match: re.Match[str]) -> bool:
    """A prefixed finding, or a hex run with both digits and letters in it, as random ones have.

    96 random hex digits are all digits or all letters with odds below 1 in 10^19; a run that is
    (``aaaa...``, ``0000...``, padding) is left alone.
    """
    found = match.group()
    if _prefixed(found):
        return True
    return not found.isdigit() and any(c.isdigit() for c in found)


def _prefixed(found: str) -> bool:
    return found[: len(PREFIX)].lower() == PREFIX


def _decode(text: str) -> tuple[str, list[int], list[int]]:
    """The text with every escape undone, and for each of its characters the span it came from."""
    starts = list(range(len(text)))
    ends = list(range(1, len(text) + 1))
    for _ in range(_MAX_PASSES):
        step = _decode_once(text, starts, ends)
        if step is None:
            break
        text, starts, ends = step
    return text, starts, ends


def _decode_once(text: str, starts: list[int], ends: list[int]) -> tuple[str, list[int], list[int]] | None:
    parts: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    position = 0
    for match in _ESCAPE.finditer(text):
        char = _char(match)
        if char is None:
            continue  # Not an escape after all (&nbsp;, &#x110000;): left as it is.
        start, end = match.span()
        parts.append(text[position:start])
        new_starts.extend(starts[position:start])
        new_ends.extend(ends[position:start])
        parts.append(char)
        new_starts.append(starts[start])
        new_ends.append(ends[end - 1])
        position = end
    if not parts:
        return None
    parts.append(text[position:])
    new_starts.extend(starts[position:])
    new_ends.extend(ends[position:])
    return "".join(parts), new_starts, new_ends


def _char(match: re.Match[str]) -> str | None:
    kind = match.lastgroup
    value = match.group(kind) if kind else None
    if value is None:
        return None
    if kind == "named":
        return _NAMED.get(value.lower())
    code = int(value, 10 if kind == "decref" else 16)
    return chr(code) if code <= 0x10FFFF else None
