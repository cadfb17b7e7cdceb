from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thotbot.core.useragents import (
    MAX_APP,
    MAX_CONTACT,
    MAX_LENGTH,
    MAX_VERSION,
    ParsedUserAgent,
    UAClass,
    classify,
    clean,
    describe,
    parse,
)

D, G, B, M = UAClass.DESCRIPTIVE, UAClass.GENERIC, UAClass.BROWSER, UAClass.MISSING

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
EDGE = CHROME + " Edg/126.0.2592.87"


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        # Our own format, as the documentation asks for it.
        ("acme-sync/2.3.1 (ops@acme.example)", ("acme-sync", "2.3.1", "ops@acme.example", D)),
        ("bot/1.0 (+https://acme.example/bot)", ("bot", "1.0", "https://acme.example/bot", D)),
        ("my-app/1.0.0", ("my-app", "1.0.0", None, D)),
        ("my-app", ("my-app", None, None, D)),
        ("your-app-name/version (you@example.com)", ("your-app-name", "version", "you@example.com", D)),
        ("acme/2.0 (contact: ops@acme.example)", ("acme", "2.0", "ops@acme.example", D)),
        ("acme/2.0 (mailto:ops@acme.example)", ("acme", "2.0", "ops@acme.example", D)),
        ("acme/2.0 (https://acme.example; ops@acme.example)", ("acme", "2.0", "ops@acme.example", D)),
        ("acme/2.0 (http://acme.example/contact.)", ("acme", "2.0", "http://acme.example/contact", D)),
        ("acme/2.0 +https://acme.example/bot", ("acme", "2.0", "https://acme.example/bot", D)),
        ("acme/2.0 ops@acme.example", ("acme", "2.0", "ops@acme.example", D)),
        ("acme-sync/2.3.1 python-requests/2.32.3", ("acme-sync", "2.3.1", None, D)),
        ("okhttp/4.12.0 acme-android/3.1", ("acme-android", "3.1", None, D)),
        ("MyApp/1.2 CFNetwork/1494.0.7 Darwin/23.4.0", ("MyApp", "1.2", None, D)),
        ("Acme Sync/4 (ops@acme.example)", ("Acme", None, "ops@acme.example", D)),
        ("acme/1.0 (Linux; x86_64) (ops@acme.example)", ("acme", "1.0", "ops@acme.example", D)),
        ("acme/1.0 (a (nested) comment; ops@acme.example)", ("acme", "1.0", "ops@acme.example", D)),
        ("acme/1.0 (unterminated ops@acme.example", ("acme", "1.0", "ops@acme.example", D)),
        ("acme/1.0) stray", ("acme", "1.0", None, D)),
        ("  acme/1.0  ", ("acme", "1.0", None, D)),
        ("acme/ (ops@acme.example)", ("acme", None, "ops@acme.example", D)),
        ("node@18 acme/1", ("acme", "1", None, D)),
        ("GitHub-Hookshot/a1b2c3", ("GitHub-Hookshot", "a1b2c3", None, D)),
        ("WordPress/6.5; https://blog.example", ("WordPress", "6.5", "https://blog.example", D)),
        ("(ops@acme.example)", (None, None, "ops@acme.example", D)),
        # A library default with a contact email is reachable: descriptive, app from the library.
        ("curl/8.5.0 (ops@acme.example)", ("curl", "8.5.0", "ops@acme.example", D)),
        # Library defaults, with and without versions.
        ("curl/8.5.0", ("curl", "8.5.0", None, G)),
        ("curl", ("curl", None, None, G)),
        ("python-requests/2.32.3", ("python-requests", "2.32.3", None, G)),
        ("python-requests/2.32", ("python-requests", "2.32", None, G)),
        ("python-httpx/0.28.1", ("python-httpx", "0.28.1", None, G)),
        ("python-httpx", ("python-httpx", None, None, G)),
        # thotbot.client's own product: generic alone, the app's name when the client is given one.
        ("thotbot-python/0.1.0", ("thotbot-python", "0.1.0", None, G)),
        ("acme/2.3.1 (ops@acme.example) thotbot-python/0.1.0", ("acme", "2.3.1", "ops@acme.example", D)),
        ("thotbot-cli/0.1.0 thotbot-python/0.1.0", ("thotbot-cli", "0.1.0", None, D)),
        ("Python-urllib/3.11", ("Python-urllib", "3.11", None, G)),
        ("python-urllib3/2.2.1", ("python-urllib3", "2.2.1", None, G)),
        ("Python/3.11 aiohttp/3.9.5", ("aiohttp", "3.9.5", None, G)),
        ("aiohttp/3.9", ("aiohttp", "3.9", None, G)),
        ("node", ("node", None, None, G)),
        ("Node.js/20", ("Node.js", "20", None, G)),
        ("node-fetch", ("node-fetch", None, None, G)),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", (
            "node-fetch", "1.0", "https://github.com/bitinn/node-fetch", G,
        )),
        ("undici", ("undici", None, None, G)),
        ("axios/1.7.2", ("axios", "1.7.2", None, G)),
        ("axios/1.7", ("axios", "1.7", None, G)),
        ("got (https://github.com/sindresorhus/got)", (
            "got", None, "https://github.com/sindresorhus/got", G,
        )),
        ("Deno/1.44.0", ("Deno", "1.44.0", None, G)),
        ("Bun/1.1.13", ("Bun", "1.1.13", None, G)),
        ("Go-http-client/1.1", ("Go-http-client", "1.1", None, G)),
        ("Go-http-client/2.0", ("Go-http-client", "2.0", None, G)),
        ("okhttp/4.12.0", ("okhttp", "4.12.0", None, G)),
        ("okhttp", ("okhttp", None, None, G)),
        ("Java/17.0.1", ("Java", "17.0.1", None, G)),
        ("Java-http-client/21.0.2", ("Java-http-client", "21.0.2", None, G)),
        ("Apache-HttpClient/4.5.14 (Java/17.0.9)", ("Apache-HttpClient", "4.5.14", None, G)),
        ("Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A)", ("Dalvik", "2.1.0", None, G)),
        ("Wget/1.21.4", ("Wget", "1.21.4", None, G)),
        ("PostmanRuntime/7.39.0", ("PostmanRuntime", "7.39.0", None, G)),
        ("insomnia/9.2.0", ("insomnia", "9.2.0", None, G)),
        ("HTTPie/3.2.2", ("HTTPie", "3.2.2", None, G)),
        ("libwww-perl/6.72", ("libwww-perl", "6.72", None, G)),
        ("Ruby", ("Ruby", None, None, G)),
        ("Faraday v2.9.0", ("Faraday", "v2.9.0", None, G)),
        ("rest-client/2.1.0 (linux x86_64) ruby/3.2.2p53", ("rest-client", "2.1.0", None, G)),
        ("Typhoeus - https://github.com/typhoeus/typhoeus", (
            "Typhoeus", None, "https://github.com/typhoeus/typhoeus", G,
        )),
        ("GuzzleHttp/7", ("GuzzleHttp", "7", None, G)),
        ("Dart/3.3 (dart:io)", ("Dart", "3.3", None, G)),
        ("lua-resty-http/0.17.1 (Lua) ngx_lua/10026", ("lua-resty-http", "0.17.1", None, G)),
        ("RestSharp/110.2.0.0", ("RestSharp", "110.2.0.0", None, G)),
        ("Scrapy/2.11.2 (+https://scrapy.org)", ("Scrapy", "2.11.2", "https://scrapy.org", G)),
        ("curl/8.5.0 (+https://acme.example)", ("curl", "8.5.0", "https://acme.example", G)),
        ("(compatible)", (None, None, None, G)),
        # PowerShell's Invoke-WebRequest starts like a browser but is a tool's default.
        ("Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.22631; en-US) PowerShell/7.4.2", (
            "PowerShell", "7.4.2", None, G,
        )),
        # Browsers: app and version from ua-parser.
        (CHROME, ("Chrome", "126.0.0.0", None, B)),
        (FIREFOX, ("Firefox", "128.0", None, B)),
        (SAFARI, ("Safari", "17.5", None, B)),
        (EDGE, ("Edge", "126.0.2592.87", None, B)),
        ("Opera/9.80 (Windows NT 6.1) Presto/2.12.388 Version/12.16", ("Opera", "12.16", None, B)),
        ("Mozilla/5.0", ("Mozilla", "5.0", None, B)),
        ("mozilla", ("mozilla", None, None, B)),
        # A crawler that names itself and a contact is reachable.
        ("Mozilla/5.0 (compatible; acme-bot/1.0; +https://acme.example/bot)", (
            "acme-bot", "1.0", "https://acme.example/bot", D,
        )),
        # Missing.
        (None, (None, None, None, M)),
        ("", (None, None, None, M)),
        ("   ", (None, None, None, M)),
        ("-", (None, None, None, M)),
        ("null", (None, None, None, M)),
        ("Unknown", (None, None, None, M)),
        ("undefined", (None, None, None, M)),
        ("N/A", (None, None, None, M)),
        ("1.0", (None, None, None, M)),
        ("*", (None, None, None, M)),
        ("\x00\x01", (None, None, None, M)),
    ],
)  # fmt: skip
def test_parse(user_agent: str | None, expected: tuple[str | None, str | None, str | None, UAClass]) -> None:
    parsed = parse(user_agent)

    assert (parsed.app, parsed.version, parsed.contact, parsed.ua_class) == expected
    assert classify(user_agent) == expected[3]


def test_parse_cuts_long_input_before_looking_at_it() -> None:
    contact_after_the_cut = "a" * MAX_LENGTH + " (ops@acme.example)"

    parsed = parse(contact_after_the_cut)

    assert parsed.contact is None
    assert parsed.app == "a" * MAX_APP


def test_parse_bounds_every_field() -> None:
    contact = ("b" * 200 + "@" + "c" * 60 + ".example")[:MAX_CONTACT]

    parsed = parse(f"{'a' * 70}/{'1' * 40} ({'b' * 200}@{'c' * 60}.example)")

    assert (parsed.app, parsed.version, parsed.contact) == ("a" * MAX_APP, "1" * MAX_VERSION, contact)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("  \t ", None),
        (" acme/1.0 ", "acme/1.0"),
        ("acme/1.0\x00\n(x)", "acme/1.0\ufffd\ufffd(x)"),
        ("acme/1.0 \ud800", "acme/1.0 \ufffd"),
        ("x" * (MAX_LENGTH + 10), "x" * MAX_LENGTH),
    ],
)
def test_clean(raw: str | None, expected: str | None) -> None:
    assert clean(raw) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(), st.from_regex(r"[\w\-./ ();:@+]{0,80}", fullmatch=True)))
def test_parse_never_raises(user_agent: str | None) -> None:
    parsed = parse(user_agent)

    assert isinstance(parsed, ParsedUserAgent)
    assert parsed.ua_class == classify(user_agent)
    assert parsed.app is None or 0 < len(parsed.app) <= MAX_APP
    assert parsed.version is None or 0 < len(parsed.version) <= MAX_VERSION
    assert parsed.contact is None or 0 < len(parsed.contact) <= MAX_CONTACT


@settings(max_examples=20, deadline=None)
@given(st.text(alphabet="a/( )@.:+-;1", min_size=1, max_size=20), st.integers(1, 10_000))
def test_parse_of_200_kilobytes_is_bounded(unit: str, repeat: int) -> None:
    huge = (unit * (200_000 // len(unit) + 1))[:200_000] + str(repeat)

    parsed = parse(huge)

    assert parsed.app is None or len(parsed.app) <= MAX_APP
    assert parsed.version is None or len(parsed.version) <= MAX_VERSION
    assert parsed.contact is None or len(parsed.contact) <= MAX_CONTACT


_KEY = "thot" + "_ak_" + "0123456789abcdef" * 6


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36",
            "Chrome 126 on Windows",
        ),
        ("acme-sync/2.3.1 (ops@acme.example)", "acme-sync 2.3.1"),
        ("curl/8.5.0", "curl 8.5.0"),
        (None, "an unidentified client"),
        ("", "an unidentified client"),
        ("<script>alert(1)</script>", "scriptalert"),
        ('"><img src=x onerror=alert(1)>/1.0', "img"),
        ("evil\r\nBcc: victim@example.com", "evilBcc"),
        (_KEY + " acme/1.0", "thot_ak_redacted"),
    ],
)
def test_describe(user_agent: str | None, expected: str) -> None:
    assert describe(user_agent) == expected


@given(st.one_of(st.none(), st.text(max_size=600)))
def test_describe_is_short_and_plain_whatever_it_is_given(user_agent: str | None) -> None:
    described = describe(user_agent)

    assert 0 < len(described) <= 60
    assert set(described) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._+-")
