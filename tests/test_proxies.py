"""Trusted proxies (core.proxies, web.proxies): which client one names, and that nobody else can."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.core.errors import ConfigError
from thotbot.core.keys import PREFIX
from thotbot.core.proxies import MAX_HOPS, TrustedProxies, parse_forwarded, parse_x_forwarded_for
from thotbot.services import build_services
from thotbot.storage.migrate import upgrade
from thotbot.web.proxies import ForwardedClientMiddleware, forwarded_scope

TRUSTED = TrustedProxies.parse("10.0.0.1, 10.1.0.0/16, fd00::/8")


def _scope(peer: str, *headers: tuple[str, str], kind: str = "http") -> Scope:
    return {
        "type": kind,
        "scheme": "http" if kind == "http" else "ws",
        "client": (peer, 51000),
        "headers": [(n.lower().encode(), v.encode("latin-1")) for n, v in headers],
    }


class TestTrustedProxies:
    def test_parse(self) -> None:
        parsed = TrustedProxies.parse(" 10.0.0.1 ,192.168.0.0/16,, ::1 ")
        assert [str(n) for n in parsed.networks] == ["10.0.0.1/32", "192.168.0.0/16", "::1/128"]

    @pytest.mark.parametrize("value", ["nginx", "10.0.0.0/33", "10.0.0.1 10.0.0.2", "*"])
    def test_parse_refuses(self, value: str) -> None:
        with pytest.raises(ValueError, match="is not an IP address or CIDR"):
            TrustedProxies.parse(value)

    def test_empty_is_false(self) -> None:
        assert not TrustedProxies.parse("")
        assert TRUSTED

    @pytest.mark.parametrize(
        ("peer", "trusted"),
        [
            ("10.0.0.1", True),
            ("10.0.0.2", False),
            ("10.1.255.3", True),
            ("::ffff:10.0.0.1", True),
            ("fd12::1", True),
            ("2001:db8::1", False),
            ("testclient", False),
            ("", False),
        ],
    )
    def test_trusts(self, peer: str, trusted: bool) -> None:
        assert TRUSTED.trusts(peer) is trusted
        assert TRUSTED.trusts(peer) is trusted  # the cached verdict too

    @pytest.mark.parametrize(
        ("hops", "client"),
        [
            (["203.0.113.5"], "203.0.113.5"),
            # What a client wrote on the left is never reached, malformed or not.
            (["198.51.100.1", "203.0.113.5"], "203.0.113.5"),
            (["garbage", "", "203.0.113.5"], "203.0.113.5"),
            # Proxies of ours on the right are skipped.
            (["198.51.100.1", "203.0.113.5", "10.1.0.9", "10.0.0.1"], "203.0.113.5"),
            (["2001:db8::1", "fd00::2"], "2001:db8::1"),
            # Only our proxies: a request from their own hosts.
            (["10.1.0.9", "10.0.0.1"], "10.1.0.9"),
            # Something our proxy wrote is not an address: the peer stays the client.
            (["203.0.113.5", "unknown"], None),
            (["203.0.113.5", "10.0.0.1", ""], None),
            ([""], None),
            ([], None),
        ],
    )
    def test_client_walks_from_the_right(self, hops: list[str], client: str | None) -> None:
        expected = ipaddress.ip_address(client) if client is not None else None
        assert TRUSTED.client("10.0.0.1", hops) == expected

    def test_client_of_an_untrusted_peer_is_none(self) -> None:
        assert TRUSTED.client("203.0.113.9", ["198.51.100.1"]) is None


@pytest.mark.parametrize(
    ("value", "hops"),
    [
        (b"203.0.113.5", ["203.0.113.5"]),
        (b" 203.0.113.5 ,10.0.0.1", ["203.0.113.5", "10.0.0.1"]),
        (b"203.0.113.5:4711, [2001:db8::1]:443, 2001:db8::2", ["203.0.113.5", "2001:db8::1", "2001:db8::2"]),
        (b"[2001:db8::1]", ["2001:db8::1"]),
        (b"unknown, 203.0.113.5", ["unknown", "203.0.113.5"]),
        (b"203.0.113.5, ", ["203.0.113.5", ""]),
        (b"[2001:db8::1, [2001:db8::1]x", ["", ""]),
        (b"\xff\xfe", ["\xff\xfe"]),
    ],
)
def test_parse_x_forwarded_for(value: bytes, hops: list[str]) -> None:
    assert parse_x_forwarded_for(value) == hops


def test_parse_x_forwarded_for_reads_only_the_right_most_hops() -> None:
    padded = b"198.51.100.1, " * 5000 + b"203.0.113.5"
    hops = parse_x_forwarded_for(padded)
    assert len(hops) == MAX_HOPS
    assert hops[-1] == "203.0.113.5"


@pytest.mark.parametrize(
    ("value", "hops"),
    [
        (b"for=192.0.2.60;proto=http;by=203.0.113.43", ["192.0.2.60"]),
        (b'for=192.0.2.43, for="[2001:db8:cafe::17]:4711"', ["192.0.2.43", "2001:db8:cafe::17"]),
        (b'For="192.0.2.43:80" ; proto=https', ["192.0.2.43"]),
        (b"proto=https;for=192.0.2.1,for=198.51.100.2;host=example.com", ["192.0.2.1", "198.51.100.2"]),
        (b"for=unknown", ["unknown"]),
        (b"for=_hidden", ["_hidden"]),
        (b"proto=https", [""]),
        (b'for="192.0.2.1', ['"192.0.2.1']),
        (b"for", [""]),
    ],
)
def test_parse_forwarded(value: bytes, hops: list[str]) -> None:
    assert parse_forwarded(value) == hops


class TestForwardedScope:
    def test_untrusted_peer_keeps_its_address(self) -> None:
        scope = _scope("203.0.113.9", ("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-Proto", "https"))
        assert forwarded_scope(scope, TRUSTED) is scope

    def test_trusted_peer_names_the_client(self) -> None:
        scope = _scope("10.0.0.1", ("X-Forwarded-For", "198.51.100.1, 203.0.113.5"))
        resolved = forwarded_scope(scope, TRUSTED)
        assert resolved["client"] == ("203.0.113.5", 0)
        assert scope["client"] == ("10.0.0.1", 51000)  # a copy: the server's scope is left alone

    def test_headers_repeated_are_one_list(self) -> None:
        scope = _scope("10.0.0.1", ("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.5"))
        assert forwarded_scope(scope, TRUSTED)["client"] == ("203.0.113.5", 0)

    def test_x_forwarded_for_wins_over_a_clients_forwarded(self) -> None:
        scope = _scope("10.0.0.1", ("Forwarded", "for=198.51.100.66"), ("X-Forwarded-For", "203.0.113.5"))
        assert forwarded_scope(scope, TRUSTED)["client"] == ("203.0.113.5", 0)

    def test_a_clients_junk_on_the_left_is_not_read(self) -> None:
        junk = "x" * 10_000 + ", not-an-address, , 203.0.113.5"
        scope = _scope("10.0.0.1", ("X-Forwarded-For", junk))
        assert forwarded_scope(scope, TRUSTED)["client"] == ("203.0.113.5", 0)

    def test_forwarded_alone(self) -> None:
        scope = _scope("10.0.0.1", ("Forwarded", 'for="[2001:db8::7]:1234";proto=https'))
        assert forwarded_scope(scope, TRUSTED)["client"] == ("2001:db8::7", 0)

    @pytest.mark.parametrize("value", ["", "garbage", "203.0.113.5, nope", "1.2.3.4:x:y", "unknown"])
    def test_malformed_keeps_the_peer(self, value: str) -> None:
        scope = _scope("10.0.0.1", ("X-Forwarded-For", value))
        assert forwarded_scope(scope, TRUSTED)["client"] == ("10.0.0.1", 51000)

    @pytest.mark.parametrize(
        ("kind", "proto", "scheme"),
        [
            ("http", "https", "https"),
            ("http", "HTTPS", "https"),
            ("http", "http, https", "https"),
            ("http", "gopher", "http"),
            ("websocket", "https", "wss"),
            ("websocket", "http", "ws"),
        ],
    )
    def test_scheme(self, kind: str, proto: str, scheme: str) -> None:
        scope = _scope("10.0.0.1", ("X-Forwarded-Proto", proto), kind=kind)
        assert forwarded_scope(scope, TRUSTED)["scheme"] == scheme

    def test_lifespan_passes(self) -> None:
        scope: Scope = {"type": "lifespan"}
        assert forwarded_scope(scope, TRUSTED) is scope


@pytest.mark.anyio
async def test_middleware_hands_on_the_resolved_scope() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> dict[str, object]:
        raise AssertionError

    async def send(message: object) -> None:
        raise AssertionError

    middleware = ForwardedClientMiddleware(app, TRUSTED)
    await middleware(_scope("10.0.0.1", ("X-Forwarded-For", "203.0.113.5")), receive, send)
    assert seen[0]["client"] == ("203.0.113.5", 0)


class TestSetting:
    def test_unset_is_none(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("THOTBOT_TRUSTED_PROXIES", raising=False)
        assert not load_settings().proxies

    def test_bad_value_is_one_line_naming_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("THOTBOT_TRUSTED_PROXIES", "127.0.0.1, nginx")
        with pytest.raises(ConfigError) as exc_info:
            load_settings()
        assert str(exc_info.value.detail) == (
            "THOTBOT_TRUSTED_PROXIES: 'nginx' is not an IP address or CIDR, such as 10.0.0.0/8"
        )


@pytest.mark.parametrize(("trusted", "second_status"), [("", 429), ("10.0.0.1", 401)])
def test_the_app_counts_the_client_the_proxy_names(tmp_path: Path, trusted: str, second_status: int) -> None:
    """In process: failures through a trusted proxy count for each client, else for the proxy."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'thotbot.db'}",
        trusted_proxies=trusted,
        anon_rate_limit="1/minute",
    )
    services = build_services(settings)
    upgrade(services.engine)
    bad = {"Authorization": "Bearer " + PREFIX + "ab" * 48}
    with TestClient(create_app(settings, services), client=("10.0.0.1", 50000)) as proxy:
        first = proxy.get("/v1/me", headers={**bad, "X-Forwarded-For": "203.0.113.5"})
        second = proxy.get("/v1/me", headers={**bad, "X-Forwarded-For": "203.0.113.6"})
    services.engine.dispose()
    assert first.status_code == 401
    # Trusted: two clients with one failure each. Not: one address, over its limit of one.
    assert second.status_code == second_status
