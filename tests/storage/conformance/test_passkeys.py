"""Passkeys and WebAuthn challenges, on every store backend."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_user
from thotbot.core.errors import Conflict, NotFound
from thotbot.services import Services
from thotbot.storage import AccountRecord
from thotbot.storage.passkeys import PasskeyRecord

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _add(
    services: Services,
    account: AccountRecord,
    credential: bytes = b"cred-1",
    *,
    sign_count: int = 0,
    transports: Sequence[str] = (),
    now: datetime | None = None,
) -> PasskeyRecord:
    return services.passkeys.add(
        account.id,
        credential_id=credential,
        public_key=b"cose",
        sign_count=sign_count,
        name="laptop",
        transports=transports,
        now=now,
    )


class TestPasskeyStore:
    def test_add_find_and_list(self, services: Services) -> None:
        account, other = make_user(services), make_user(services)
        second = _add(services, account, b"cred-2", now=T0 + MINUTE, transports=["usb", "nfc"])
        first = _add(services, account, b"cred-1", now=T0)
        _add(services, other, b"cred-3")

        assert first.id.startswith("psk_")
        assert (second.transports, second.sign_count, second.last_used_at) == (("usb", "nfc"), 0, None)
        assert services.passkeys.list_for_account(account.id) == [first, second]
        assert services.passkeys.find(first.id, account_id=account.id) == first
        assert services.passkeys.find_by_credential_id(b"cred-2") == second
        assert services.passkeys.find_by_credential_id(b"nowhere") is None

    @pytest.mark.parametrize("passkey_id", ["psk_0123456789abcdef", "psk_\x00", "x" * 300, ""])
    def test_find_of_an_unknown_id_is_none(self, services: Services, passkey_id: str) -> None:
        assert services.passkeys.find(passkey_id, account_id=make_user(services).id) is None

    def test_another_account_cannot_see_or_change_it(self, services: Services) -> None:
        owner, other = make_user(services), make_user(services)
        passkey = _add(services, owner)

        assert services.passkeys.find(passkey.id, account_id=other.id) is None
        with pytest.raises(NotFound) as exc_info:
            services.passkeys.rename(passkey.id, "mine now", account_id=other.id)
        assert passkey.id in exc_info.value.detail
        with pytest.raises(NotFound):
            services.passkeys.remove(passkey.id, account_id=other.id)
        assert services.passkeys.list_for_account(owner.id) == [passkey]

    def test_one_credential_is_registered_once(self, services: Services) -> None:
        _add(services, make_user(services), b"cred-1")

        with pytest.raises(Conflict) as exc_info:
            _add(services, make_user(services), b"cred-1")

        assert exc_info.value.extra == {"field": "credential"}

    def test_rename(self, services: Services) -> None:
        account = make_user(services)
        passkey = _add(services, account)

        renamed = services.passkeys.rename(passkey.id, "phone", account_id=account.id)

        assert renamed.name == "phone"
        assert services.passkeys.find(passkey.id, account_id=account.id) == renamed

    def test_remove_ends_the_sessions_it_signed_in(self, services: Services) -> None:
        account = make_user(services)
        passkey = _add(services, account)
        _, by_passkey = services.web_sessions.create(account.id, passkey_id=passkey.id)
        _, by_password = services.web_sessions.create(account.id)

        assert services.passkeys.remove(passkey.id, account_id=account.id) == passkey

        assert services.passkeys.list_for_account(account.id) == []
        assert services.web_sessions.find(by_passkey.id) is None
        assert services.web_sessions.find(by_password.id) is not None
        with pytest.raises(NotFound):
            services.passkeys.remove(passkey.id, account_id=account.id)

    @pytest.mark.parametrize(
        ("stored", "sent", "accepted"),
        [(5, 6, True), (5, 5, False), (5, 4, False), (5, 0, False), (0, 0, True), (0, 3, True)],
    )
    def test_record_use_needs_the_counter_to_move_on(
        self, services: Services, stored: int, sent: int, accepted: bool
    ) -> None:
        account = make_user(services)
        passkey = _add(services, account, sign_count=stored)

        assert services.passkeys.record_use(passkey.id, sent, now=T0) is accepted

        found = services.passkeys.find(passkey.id, account_id=account.id)
        assert found is not None
        assert (found.sign_count, found.last_used_at) == ((sent, T0) if accepted else (stored, None))

    def test_record_use_of_an_unknown_passkey_is_false(self, services: Services) -> None:
        assert services.passkeys.record_use("psk_0123456789abcdef", 1) is False


class TestChallengeStore:
    def test_a_challenge_is_taken_once(self, services: Services) -> None:
        account = make_user(services)
        made = services.challenges.create(
            "registration", b"\x01" * 32, account_id=account.id, lifetime=MINUTE, now=T0
        )

        taken = services.challenges.take(made.id)

        assert taken == made
        assert (taken.purpose, taken.account_id, taken.challenge) == (
            "registration",
            account.id,
            b"\x01" * 32,
        )
        assert taken.expires_at == T0 + MINUTE
        assert services.challenges.take(made.id) is None

    @pytest.mark.parametrize("challenge_id", ["", "unknown", "x" * 65, "nul\x00", "sp ace"])
    def test_an_unknown_challenge_is_none(self, services: Services, challenge_id: str) -> None:
        assert services.challenges.take(challenge_id) is None

    def test_expired_challenges_are_swept_as_new_ones_come(self, services: Services) -> None:
        old = services.challenges.create("authentication", b"old", account_id=None, lifetime=MINUTE, now=T0)
        kept = services.challenges.create(
            "authentication", b"kept", account_id=None, lifetime=3 * MINUTE, now=T0
        )

        services.challenges.create(
            "authentication", b"new", account_id=None, lifetime=MINUTE, now=T0 + MINUTE
        )

        assert services.challenges.take(old.id) is None
        assert services.challenges.take(kept.id) == kept
