from __future__ import annotations

import pytest

from thotbot.core.revocation import RevokedReason, revocation_phrase


@pytest.mark.parametrize(
    ("reason", "to_owner", "expected"),
    [
        (RevokedReason.OWNER, True, "revoked by you"),
        (RevokedReason.OWNER, False, "revoked by the owner"),
        (RevokedReason.OPERATOR, True, "revoked by the operator"),
        (RevokedReason.OPERATOR, False, "revoked by the operator"),
        (RevokedReason.LEAKED, True, "revoked as leaked"),
        (RevokedReason.LEAKED, False, "revoked as leaked"),
        ("leaked", True, "revoked as leaked"),  # as read back from the database: a plain str
        (None, True, "revoked"),
        ("rolled", False, "revoked"),  # a value no version writes: nothing more is claimed
    ],
)
def test_revocation_phrase(reason: str | None, to_owner: bool, expected: str) -> None:
    assert revocation_phrase(reason, to_owner=to_owner) == expected


def test_the_stored_values_never_change() -> None:
    # Rows written by earlier versions hold these; changing one needs a data migration.
    assert [r.value for r in RevokedReason] == ["revoked", "revoked by operator", "leaked"]
