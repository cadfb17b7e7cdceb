"""The client behind trusted reverse proxies, pure: THOTBOT_TRUSTED_PROXIES and the headers, parsed.

X-Forwarded-For (or RFC 7239 Forwarded) is read right to left. The ASGI step that applies it to a
request is ``thotbot.web.proxies``; the settings validate THOTBOT_TRUSTED_PROXIES with this module.

Only a request whose TCP peer is one of THOTBOT_TRUSTED_PROXIES may name another client; from
anyone else the headers are ignored, since anyone can send them. The proxy appends the address it
saw to whatever the client sent, so the list is read from the right: the first address that is not
itself a trusted proxy is the client. Whatever the client wrote further left is never reached.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["MAX_HOPS", "TrustedProxies", "parse_forwarded", "parse_x_forwarded_for"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Hops read from the right of a header, at most: no chain of proxies is longer, and a client
#: that pads the header costs no more than this.
MAX_HOPS = 16
_PEER_CACHE_SIZE = 1024


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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustedProxies) and other.networks == self.networks

    def __hash__(self) -> int:
        return hash(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({', '.join(map(str, self.networks))!r})"

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

    def client(self, peer: str, hops: list[str]) -> IPAddress | None:
        """The right-most hop that is not a trusted proxy (None: keep the peer).

        Only the hops our proxies wrote are read: the walk stops at the first other address, so
        whatever the client put further left, however malformed, is never looked at. A hop that
        a trusted proxy wrote but is not an address leaves the peer as the client.
        """
        if not hops or not self.trusts(peer):
            return None
        ip: IPAddress | None = None
        for hop in reversed(hops):
            ip = _address(hop)
            if ip is None:
                return None
            if not self._trusted(ip):
                return ip
        # Every hop is one of ours (a request from a proxy's own host): the left-most one.
        return ip


def parse_x_forwarded_for(value: bytes) -> list[str]:
    """'client, proxy1, proxy2' to its right-most MAX_HOPS addresses, ports removed, left to right."""
    return [_strip_port(hop.strip()) for hop in _right_most(value)]


def parse_forwarded(value: bytes) -> list[str]:
    """The for= of each RFC 7239 Forwarded element, like parse_x_forwarded_for ('' if it has none).

    "unknown" and obfuscated identifiers ("_hidden") are kept as they are: they are not addresses,
    so a walk that reaches one keeps the peer as the client.
    """
    hops: list[str] = []
    for element in _right_most(value):
        found = ""
        for pair in element.split(";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                found = _strip_port(_unquote(raw.strip()))
        hops.append(found)
    return hops


def _right_most(value: bytes) -> list[str]:
    return value.decode("latin-1").rsplit(",", MAX_HOPS)[-MAX_HOPS:]


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace("\\", "")
    return raw


def _strip_port(hop: str) -> str:
    """'[2001:db8::1]:4711' and '192.0.2.1:4711' to their address; a bare IPv6 address as it is."""
    if hop.startswith("["):
        address, bracket, port = hop[1:].partition("]")
        return address if bracket and (not port or port.startswith(":")) else ""
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
