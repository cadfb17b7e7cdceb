"""address_bucket: IPv4 alone, IPv6 by its /64."""

from __future__ import annotations

import pytest

from thotbot.core.clientaddr import address_bucket


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
        ("::1", "::/64"),
        ("-", "-"),
        ("not an address", "not an address"),
    ],
)
def test_address_bucket(address: str, expected: str) -> None:
    assert address_bucket(address) == expected


def test_address_bucket_separates_networks() -> None:
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")
