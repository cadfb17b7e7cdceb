"""IP allowlists of API keys: parsing the operator's CIDRs, and matching a client address fast.

An entry is an IPv4 or IPv6 network in CIDR notation or a bare address (``/32``, ``/128``). An
entry with host bits set (``10.0.0.5/24``) is refused, not silently widened: it is usually a typo,
and the message names the network it would be. Entries are stored normalised (``ipaddress``'s
compressed form), sorted and without duplicates.

``AllowedNetworks`` is what a cached key carries: each network as two integers, so a request
parses its address once and compares integers. An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``)
is matched as the IPv4 address it carries.
"""

from __future__ import annotations

import functools
import ipaddress
import sys
from collections.abc import Iterable

from thotbot.core.errors import ValidationFailed

__all__ = ["MAX_NETWORKS", "AllowedNetworks", "allowed_networks", "parse_networks"]

#: Entries one key's allowlist may hold.
MAX_NETWORKS = 100
_MAX_ENTRY = 64
#: What interning one list costs (allowed_networks' cache: its link and its slot), measured with
#: tracemalloc (tests/auth/test_cache.py).
_INTERN_BYTES = 120


def parse_networks(entries: Iterable[str]) -> tuple[str, ...]:
    """The entries normalised, sorted and deduplicated; ValidationFailed names the first bad one.

    An empty result means "any address": callers that mean to clear the list say so explicitly.
    """
    found: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        shown = entry if len(entry) <= _MAX_ENTRY and entry.isprintable() else repr(entry[:_MAX_ENTRY])
        if len(entry) > _MAX_ENTRY:
            raise ValidationFailed(f"{shown} is not an IP address or CIDR network")
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValidationFailed(
                    f"{shown} is not an IP address or CIDR network (such as 192.0.2.0/24 or 2001:db8::/32)"
                ) from None
            raise ValidationFailed(
                f"{shown} has host bits set: did you mean {loose.with_prefixlen}?"
            ) from None
        found.add(network)
        if len(found) > MAX_NETWORKS:
            raise ValidationFailed(f"an allowlist holds at most {MAX_NETWORKS} networks")
    ordered = sorted(found, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return tuple(n.with_prefixlen for n in ordered)


class AllowedNetworks:
    """A parsed allowlist: per IP version, (network, mask) integer pairs."""

    __slots__ = ("nbytes", "text", "v4", "v6")

    def __init__(self, networks: tuple[str, ...]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for entry in networks:
            network = ipaddress.ip_network(entry, strict=False)
            pair = (int(network.network_address), int(network.netmask))
            (v4 if network.version == 4 else v6).append(pair)
        self.v4 = tuple(v4)
        self.v6 = tuple(v6)
        #: The normalised entries, for messages and pages.
        self.text = networks
        self.nbytes = _deep_size(self)

    def allows(self, address: str) -> bool:
        """Whether ``address`` (as the guard saw it: the peer, or what a trusted proxy named) is
        inside one of the networks. Anything that is not an address is outside."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.version == 6:
            mapped = ip.ipv4_mapped
            if mapped is None:
                value = int(ip)
                return any(value & mask == net for net, mask in self.v6)
            ip = mapped
        value = int(ip)
        return any(value & mask == net for net, mask in self.v4)

    def __repr__(self) -> str:
        return f"AllowedNetworks({' '.join(self.text)!r})"


@functools.lru_cache(maxsize=1024)
def allowed_networks(networks: tuple[str, ...]) -> AllowedNetworks | None:
    """The parsed allowlist, shared by every cached key with the same one; None for "any"."""
    return AllowedNetworks(networks) if networks else None


def _deep_size(allowed: AllowedNetworks) -> int:
    size = (
        _INTERN_BYTES
        + sys.getsizeof(allowed)
        + sys.getsizeof(allowed.text)
        + sum(sys.getsizeof(t) for t in allowed.text)
    )
    for pairs in (allowed.v4, allowed.v6):
        size += sys.getsizeof(pairs)
        for pair in pairs:
            size += sys.getsizeof(pair) + sum(sys.getsizeof(n) for n in pair)
    return size
