"""Client addresses as the limits count them: an IPv4 address alone, an IPv6 client by its /64."""

from __future__ import annotations

import ipaddress

__all__ = ["address_bucket"]


def address_bucket(address: str) -> str:
    """The unit one client is counted in.

    An IPv6 host is usually handed a whole /64, so counting single IPv6 addresses would let one
    client rotate through billions of them; it is counted by its /64 instead. An IPv4-mapped IPv6
    address counts as its IPv4 address. Anything that is not an address is returned as it is.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
