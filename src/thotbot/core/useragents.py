"""User-Agent strings parsed into app, version and contact, and classified; pure, no I/O.

The format we ask clients for is ``app-name/version (contact)``, where the contact is an email
address or a URL (``acme-sync/2.3.1 (ops@acme.example)``, ``bot/1.0 (+https://acme.example/bot)``).
The rules, in order:

- **missing**: no header, a blank one, a placeholder (``-``, ``null``, ``unknown``...) or nothing
  with a letter in it.
- **browser-like**: the first product is ``Mozilla`` or ``Opera``, unless a product in it is a
  library's (PowerShell's ``Mozilla/5.0 (...) PowerShell/7.4``: generic) or it carries a contact (a
  crawler naming itself, ``Mozilla/5.0 (compatible; acme-bot/1.0; +https://acme.example/bot)``:
  descriptive). The app and version of a browser come from ua-parser (``Chrome``, ``126.0.0.0``).
- **generic**: every product is a library, tool or runtime default (``curl/8.5.0``,
  ``python-requests/2.32``, ``Python/3.11 aiohttp/3.9``, ``node``...) and there is no contact
  email. A URL alone does not count: library defaults carry their own home page
  (``node-fetch/1.0 (+https://github.com/bitinn/node-fetch)``).
- **descriptive**: anything else, that is, a product of the client's own, or a contact email. The
  app is the first product that is not a library's.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

import ua_parser

from thotbot.core.redaction import redact_cut

__all__ = [
    "MAX_LENGTH",
    "ParsedUserAgent",
    "UAClass",
    "classify",
    "clean",
    "describe",
    "parse",
]

#: Longer User-Agents are cut to this many characters before anything else looks at them.
MAX_LENGTH = 512
MAX_APP = 64
MAX_VERSION = 32
MAX_CONTACT = 254


class UAClass(StrEnum):
    DESCRIPTIVE = "descriptive"
    GENERIC = "generic"
    BROWSER = "browser-like"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class ParsedUserAgent:
    app: str | None
    version: str | None
    contact: str | None
    ua_class: UAClass


_MISSING = ParsedUserAgent(None, None, None, UAClass.MISSING)

#: Lower-case product names that libraries, tools and runtimes send by default.
GENERIC_PRODUCTS = frozenset(
    {
        # command-line tools and API clients
        "curl", "libcurl", "wget", "wget2", "httpie", "postmanruntime", "insomnia", "paw", "bruno",
        "powershell", "windowspowershell", "winhttp", "microsoft-cryptoapi",
        # Python
        "python", "cpython", "pypy", "python-requests", "requests", "python-httpx", "httpx",
        "python-urllib", "python-urllib3", "urllib3", "urllib", "aiohttp", "python-aiohttp",
        "httplib2", "python-httplib2", "tornado", "twisted", "treq", "scrapy", "pycurl",
        "thotbot-python",  # thotbot.client's own, sent after the app's product when it is given one
        # JavaScript
        "node", "node.js", "nodejs", "node-fetch", "undici", "axios", "got", "superagent", "needle",
        "deno", "bun", "ky", "ofetch", "request", "node-superagent",
        # Go, Rust
        "go", "go-http-client", "go-resty", "resty", "fasthttp", "grpc-go", "rust", "reqwest", "hyper",
        "ureq", "isahc", "surf",
        # JVM, Android, Apple
        "java", "java-http-client", "apache-httpclient", "apache-httpasyncclient", "jakarta",
        "okhttp", "dalvik", "ahc", "reactornetty", "jetty", "ktor-client", "spring", "cfnetwork",
        "darwin", "nsurlsession", "alamofire",
        # Ruby, PHP, Perl, Elixir, Lua, Dart, .NET
        "ruby", "faraday", "rest-client", "httparty", "typhoeus", "excon", "httpclient", "net-http",
        "php", "guzzlehttp", "guzzle", "symfony", "wordpress-http", "perl", "libwww-perl", "lwp",
        "lwp::simple", "mojolicious", "hackney", "req", "finch", "mint", "httpoison", "tesla", "lua",
        "lua-resty-http", "ngx_lua", "luasocket", "dart", "dart:io", "restsharp", ".net", "dotnet",
        "microsoft.net", "system.net.http",
    }
)  # fmt: skip
_BROWSER_PRODUCTS = frozenset({"mozilla", "opera"})
_PLACEHOLDERS = frozenset(
    {"-", "null", "(null)", "none", "nil", "undefined", "unknown", "n/a", "na", "user-agent", "useragent"}
)
# A comment is parenthesised (one level of nesting kept whole); anything else up to a space or a
# parenthesis is a product. Every alternative starts with a different character and nothing after a
# repetition can fail, so the engine never backtracks.
_TOKEN = re.compile(r"\((?:[^()]+|\([^()]*\))*\)?|[^\s()]+")
_EMAIL = re.compile(r"[\w.+%-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*", re.ASCII)
_URL = re.compile(r"https?://[^\s;,()<>\"']+", re.ASCII | re.IGNORECASE)
_VERSION_ONLY = re.compile(r"[vV]?\d[\w.+-]*")
_LETTER = re.compile(r"[A-Za-z]")
# Control characters (C0, DEL, C1: a raw header byte 0x85 or 0x9b arrives as one), and lone
# surrogates (which no database encoding accepts).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TRIM = ";,:'\"-"
#: What a description shown to people (in a mail) may hold of the sender's text: no markup, no quotes.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9 ._+-]")
MAX_DESCRIPTION = 60


@dataclass(frozen=True, slots=True)
class _Product:
    name: str
    version: str | None

    @property
    def generic(self) -> bool:
        return self.name.lower() in GENERIC_PRODUCTS


@dataclass(frozen=True, slots=True)
class _Scan:
    products: tuple[_Product, ...]
    email: str | None
    url: str | None

    @property
    def contact(self) -> str | None:
        return self.email or self.url


def clean(user_agent: str | None) -> str | None:
    """Cut a User-Agent to MAX_LENGTH, redact anything key-shaped, replace control characters."""
    if user_agent is None:
        return None
    text = redact_cut(user_agent.strip(), MAX_LENGTH)
    if not text.isprintable():  # a quick test first: almost every User-Agent is
        text = _CONTROL.sub("\ufffd", text)
    return text or None


def classify(user_agent: str | None) -> UAClass:
    """The class alone: cheap (no browser database), for the request path."""
    return _classify(clean(user_agent))


def parse(user_agent: str | None) -> ParsedUserAgent:
    return _parse(clean(user_agent))


def describe(user_agent: str | None) -> str:
    """A short plain description for people, never the sender's raw text: "Chrome 126 on Windows",
    "acme-sync 2.3.1", or "an unidentified client". Only letters, digits and ``._+-`` survive, so
    no markup, quote, control character or pasted key (redacted first by ``clean``) gets through."""
    return _describe(clean(user_agent))


@functools.lru_cache(maxsize=1024)
def _describe(text: str | None) -> str:
    parsed = _parse(text)
    if text is None or parsed.app is None:
        return "an unidentified client"
    app = _safe(parsed.app)
    browser = parsed.ua_class == UAClass.BROWSER
    # A browser's major version is enough to recognise it; an app's whole version is its own.
    version = _safe((parsed.version or "").split(".")[0] if browser else parsed.version)
    name = f"{app} {version}".strip() if app else "an unidentified client"
    if browser:
        system = ua_parser.parse_os(text)
        family = _safe(system.family) if system is not None and system.family != "Other" else ""
        if family:
            name = f"{name} on {family}"
    return name[:MAX_DESCRIPTION].strip()


def _safe(value: str | None) -> str:
    return " ".join(_SAFE_NAME.sub("", value or "").split())


@functools.lru_cache(maxsize=4096)
def _classify(text: str | None) -> UAClass:
    if text is None or _is_placeholder(text):
        return UAClass.MISSING
    return _class_of(_scan(text))


@functools.lru_cache(maxsize=4096)
def _parse(text: str | None) -> ParsedUserAgent:
    if text is None or _is_placeholder(text):
        return _MISSING
    scan = _scan(text)
    ua_class = _class_of(scan)
    products = scan.products
    app: str | None = None
    version: str | None = None
    if ua_class == UAClass.GENERIC:
        if products:
            first = _library([p for p in products if p.generic] or list(products))
            app, version = first.name, first.version
    elif products and products[0].name.lower() in _BROWSER_PRODUCTS:
        app, version = _browser(text, products[0])
    elif products:
        first = next((p for p in products if not p.generic), None) or _library(list(products))
        app, version = first.name, first.version
    return ParsedUserAgent(
        app=_bounded(app, MAX_APP),
        version=_bounded(version, MAX_VERSION),
        contact=_bounded(scan.contact, MAX_CONTACT),
        ua_class=ua_class,
    )


def _is_placeholder(text: str) -> bool:
    return text.lower() in _PLACEHOLDERS or _LETTER.search(text) is None


def _class_of(scan: _Scan) -> UAClass:
    products = scan.products
    if products and products[0].name.lower() in _BROWSER_PRODUCTS:
        if any(p.generic for p in products):
            return UAClass.GENERIC
        return UAClass.DESCRIPTIVE if scan.contact else UAClass.BROWSER
    if scan.email or any(not p.generic for p in products):
        return UAClass.DESCRIPTIVE
    return UAClass.GENERIC


def _scan(text: str) -> _Scan:
    products: list[_Product] = []
    email: str | None = None
    url: str | None = None
    for token in _TOKEN.findall(text):
        if token.startswith("("):
            email = email or _first(_EMAIL, token)
            url = url or _first(_URL, token)
            continue
        if "@" in token or "://" in token:
            # A contact outside parentheses: `bot/1.0 +https://acme.example/bot`.
            email = email or _first(_EMAIL, token)
            url = url or _first(_URL, token)
            continue
        name, _, version = token.partition("/")
        name = name.strip(_TRIM)
        version = version.strip(_TRIM)
        if _VERSION_ONLY.fullmatch(token.strip(_TRIM)):
            # `Faraday v2.9.0`: a bare version belongs to the product before it.
            if products and products[-1].version is None:
                products[-1] = _Product(products[-1].name, token.strip(_TRIM))
            continue
        if _LETTER.search(name):
            products.append(_Product(name, version or None))
    return _Scan(tuple(products), email, url)


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(0).rstrip(".") if match else None


def _library(products: list[_Product]) -> _Product:
    """For a generic User-Agent, prefer the library (`aiohttp`) to the runtime (`Python`)."""
    runtimes = ("python", "cpython", "pypy", "java", "ruby", "perl", "php", "darwin", "lua", "go", "rust")
    return next((p for p in products if p.name.lower() not in runtimes), products[0])


def _browser(text: str, first: _Product) -> tuple[str | None, str | None]:
    found = ua_parser.parse_user_agent(text)
    if found is None or found.family == "Other":
        return first.name, first.version
    parts = (found.major, found.minor, found.patch, found.patch_minor)
    version = ".".join(p for p in parts if p is not None) or None
    return found.family, version


def _bounded(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    return value[:limit]
