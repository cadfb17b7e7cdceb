"""One key written every way it can reach a sink: the corpus every redaction test runs through."""

from __future__ import annotations

from thotbot.core import keys

__all__ = ["encodings", "leaks"]


def _pct(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


def _json_u(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def _html_dec(text: str) -> str:
    return "".join(f"&#{ord(c)};" for c in text)


def encodings(raw: str) -> dict[str, str]:
    """Each name to ``raw`` written that way; ``raw`` is a key (built at run time by the caller)."""
    secret = raw[len(keys.PREFIX) :]
    return {
        "literal": raw,
        "upper case": raw.upper(),
        "mixed case": "Thot_AK_" + secret.upper()[:48] + secret[48:],
        "%5F once": "thot%5Fak%5f" + secret,
        "%255F twice": "thot%255Fak_" + secret,
        "%25255F three times": "thot%25255Fak%25255F" + secret,
        "%74 first letter": "%74hot_ak_" + secret,
        "fully percent-encoded": _pct(raw),
        "fully percent-encoded twice": _pct(_pct(raw)),
        "bare secret": secret,
        "bare secret, upper case": secret.upper(),
        "bare secret, percent-encoded": _pct(secret),
        "HTML decimal references": _html_dec(raw),
        "HTML hex references": "thot&#x5f;ak&#X5F;" + secret,
        "HTML named references": "thot&lowbar;ak&UnderBar;" + secret,
        "HTML-escaped reference": "&amp;#116;hot_ak_" + secret,
        "JSON \\u escapes": _json_u(raw),
        "JSON \\u in JSON": "\\\\u0074hot\\\\u005fak_" + secret,
        "a mix": "%74&#104;o\\u0074%255Fak&lowbar;" + _pct(secret[:10]) + secret[10:],
    }


def leaks(raw: str, text: str) -> list[str]:
    """What of ``raw`` shows in ``text``: a quarter of its secret in clear, or any encoded form's tail."""
    secret = raw[len(keys.PREFIX) :]
    lowered = text.lower()
    found = [f"secret[{i}:{i + 24}]" for i in range(0, len(secret), 24) if secret[i : i + 24] in lowered]
    for name, encoded in encodings(raw).items():
        # The end of each form is the end of the secret, written that way.
        if encoded[-40:].lower() in lowered:
            found.append(name)
    return found
