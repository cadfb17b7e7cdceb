"""The client behind trusted reverse proxies: X-Forwarded-For (or RFC 7239 Forwarded), right to left.

Only a request whose TCP peer is one of THOTBOT_TRUSTED_PROXIES may name another client; from
anyone else the headers are ignored, since anyone can send them. The proxy appends the address it
saw to whatever the client sent, so the list is read from the right: the first address that is not
itself a trusted proxy is the client. Whatever the client wrote further left is never reached.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ForwardedClientMiddleware",
    "TrustedProxies",
    "forwarded_scope",
    "parse_forwarded",
    "parse_x_forwarded_for",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Longer header values are not read at all: no proxy chain is that long.
MAX_HEADER = 2048
_PEER_CACHE_SIZE = 1024
# One forwarded-pair of RFC 7239: token "=" ( token / quoted-string ), then a separator or the end.
_PAIR = re.compile(
    r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]*)\s*([;,]|\Z)"""
)


class TrustedProxies:
    """The addresses and networks of THOTBOT_TRUSTED_PROXIES, with a cache of peers already judged."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks = tuple(networks)
        self._peers: dict[str, bool] = {}

    @classmethod
    def parse(cls, value: str) -> TrustedProxies:
        """From "10.0.0.1, 192.168.0.0/16, ::1"; raises ValueError naming the bad entry."""
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR, such as 10.0.0.0/8") from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, peer: str) -> bool:
        """Whether this TCP peer (scope["client"][0]) is one of the proxies."""
        # The peer is nearly always one of a few proxies: remember the verdict, bounded.
        known = self._peers.get(peer)
        if known is None:
            ip = _address(peer)
            known = ip is not None and self._trusted(ip)
            if len(self._peers) >= _PEER_CACHE_SIZE:
                self._peers.clear()
            self._peers[peer] = known
        return known

    def _trusted(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded: list[IPAddress]) -> IPAddress | None:
        """The right-most address of the chain that is not a trusted proxy (None: keep the peer)."""
        if not forwarded or not self.trusts(peer):
            return None
        for ip in reversed(forwarded):
            if not self._trusted(ip):
                return ip
        # Every hop is one of ours (a request from the proxy's own host): the first one it names.
        return forwarded[0]


class ForwardedClientMiddleware:
    """Pure ASGI: the application behind it sees the client a trusted proxy names."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(forwarded_scope(scope, self.trusted), receive, send)


def forwarded_scope(scope: Scope, trusted: TrustedProxies) -> Scope:
    """The scope as the application should see it: a copy with the client (and scheme) a trusted
    proxy named, else the scope itself. Malformed headers are ignored: the peer stays the client."""
    if scope["type"] not in ("http", "websocket"):
        return scope
    peer = scope.get("client")
    if not peer or not trusted.trusts(peer[0]):
        return scope
    x_forwarded_for: list[bytes] = []
    forwarded: list[bytes] = []
    proto: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            x_forwarded_for.append(value)
        elif name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-proto":
            proto = value
    # X-Forwarded-For first: it is what nginx, HAProxy and the cloud balancers set, and they pass
    # a client's own Forwarded header through untouched.
    if x_forwarded_for:
        chain = parse_x_forwarded_for(b",".join(x_forwarded_for))
    else:
        chain = parse_forwarded(b",".join(forwarded)) if forwarded else None
    scope = dict(scope)
    client = trusted.client(peer[0], chain) if chain else None
    if client is not None:
        # The proxy does not say which port the client used.
        scope["client"] = (str(client), 0)
    scheme = _scheme(proto, scope["type"]) if proto is not None else None
    if scheme is not None:
        scope["scheme"] = scheme
    return scope


def parse_x_forwarded_for(value: bytes) -> list[IPAddress] | None:
    """'client, proxy1, proxy2' as addresses, left to right; None if any entry is not one."""
    if len(value) > MAX_HEADER:
        return None
    chain: list[IPAddress] = []
    for entry in value.decode("latin-1").split(","):
        ip = _address(_strip_port(entry.strip()))
        if ip is None:
            return None
        chain.append(ip)
    return chain


def parse_forwarded(value: bytes) -> list[IPAddress] | None:
    """The for= addresses of an RFC 7239 Forwarded header, left to right; None if malformed.

    An element without for=, or with an obfuscated or "unknown" one, makes the whole header
    unusable: the hop that wrote it did not say who its client was.
    """
    if len(value) > MAX_HEADER:
        return None
    text = value.decode("latin-1")
    chain: list[IPAddress] = []
    position = 0
    current: IPAddress | None = None
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None or match.end() == position:
            return None
        name, raw, separator = match.groups()
        if name.lower() == "for":
            current = _address(_strip_port(_unquote(raw)))
            if current is None:
                return None
        position = match.end()
        if separator != ";":
            if current is None:
                return None
            chain.append(current)
            current = None
            if separator == "" and position < len(text):
                return None
    return chain or None


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _strip_port(entry: str) -> str:
    """'[2001:db8::1]:4711' and '192.0.2.1:4711' to their address; a bare IPv6 address as it is."""
    if entry.startswith("["):
        address, bracket, port = entry[1:].partition("]")
        return address if bracket and (not port or port.startswith(":")) else ""
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _scheme(proto: bytes, kind: str) -> str | None:
    # The right-most value is the one our proxy wrote; anything but http or https is ignored.
    value = proto.rsplit(b",", 1)[-1].strip().lower()
    if value == b"https":
        return "https" if kind == "http" else "wss"
    if value == b"http":
        return "http" if kind == "http" else "ws"
    return None
