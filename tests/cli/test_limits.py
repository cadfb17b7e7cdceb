from __future__ import annotations

import resource

import pytest

from thotbot.cli._limits import HEAD_BYTES, LINE_BYTES, ConnectionLimits, default_max_connections


@pytest.mark.parametrize(
    ("soft_limit", "expected"),
    [
        (256, 128),  # `ulimit -n 256`: 128 descriptors stay free
        (1024, 768),  # the common default: a quarter stays free
        (20_000, 10_000),  # capped
        (resource.RLIM_INFINITY, 10_000),
        (40, 16),  # absurdly low: still a few
        (600, 450),  # a quarter, once it is more than 128
    ],
)
def test_default_max_connections_leaves_room_for_other_files(soft_limit: int, expected: int) -> None:
    assert default_max_connections(soft_limit) == expected


def test_default_max_connections_reads_this_process_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    assert default_max_connections() == default_max_connections(soft)


def test_the_defaults_are_the_documented_ones() -> None:
    limits = ConnectionLimits()

    assert (limits.head_bytes, limits.line_bytes) == (HEAD_BYTES, LINE_BYTES) == (64 * 1024, 16 * 1024)
    assert (limits.header_timeout, limits.keep_alive_timeout) == (10, 5)
