"""IP allowlists: what the operator may write, and how a client address is matched."""

from __future__ import annotations

import pytest

from thotbot.core.errors import ValidationFailed
from thotbot.core.networks import MAX_NETWORKS, AllowedNetworks, allowed_networks, parse_networks


def test_entries_are_normalised_sorted_and_deduplicated() -> None:
    parsed = parse_networks(
        [" 2001:DB8::/32", "192.0.2.0/24", "198.51.100.7", "::1", "192.0.2.0/24", "", "2001:db8:0::/32"]
    )

    assert parsed == ("192.0.2.0/24", "198.51.100.7/32", "::1/128", "2001:db8::/32")


def test_nothing_means_any_address() -> None:
    assert parse_networks([]) == ()
    assert allowed_networks(()) is None


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("10.0.0.5/24", "has host bits set: did you mean 10.0.0.0/24?"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
        ("10.0.0.0/33", "10.0.0.0/33 is not an IP address or CIDR network"),
        ("example.com", "example.com is not an IP address"),
        ("256.1.1.1", "256.1.1.1 is not"),
        ("1.2.3.4/-1", "1.2.3.4/-1 is not"),
        ("x" * 500, "is not an IP address"),
        ("10.0.0.0/8\x00", "is not an IP address"),
    ],
)
def test_a_bad_entry_is_named(entry: str, says: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_networks(["192.0.2.0/24", entry])

    assert says in raised.value.detail
    assert "\n" not in raised.value.detail
    assert len(raised.value.detail) < 200


def test_the_list_is_bounded() -> None:
    entries = [f"10.0.{n}.0/24" for n in range(MAX_NETWORKS + 1)]

    assert len(parse_networks(entries[:MAX_NETWORKS])) == MAX_NETWORKS
    with pytest.raises(ValidationFailed, match=f"at most {MAX_NETWORKS}"):
        parse_networks(entries)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("192.0.2.1", True),
        ("192.0.2.255", True),
        ("192.0.3.0", False),
        ("198.51.100.7", True),
        ("198.51.100.8", False),
        ("::ffff:192.0.2.9", True),  # an IPv4-mapped address is its IPv4 address
        ("::ffff:203.0.113.1", False),
        ("::1", True),
        ("::2", False),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("-", False),  # no address known: outside
        ("not an address", False),
    ],
)
def test_an_address_is_inside_or_out(address: str, allowed: bool) -> None:
    networks = AllowedNetworks(parse_networks(["192.0.2.0/24", "198.51.100.7", "::1", "2001:db8::/32"]))

    assert networks.allows(address) is allowed


def test_only_ipv6_networks_refuse_every_ipv4_client() -> None:
    networks = AllowedNetworks(parse_networks(["::/0"]))

    assert networks.allows("2001:db8::1")
    assert not networks.allows("127.0.0.1")


def test_keys_with_the_same_list_share_one() -> None:
    assert allowed_networks(("10.0.0.0/8",)) is allowed_networks(("10.0.0.0/8",))
