"""WebAuthn ceremonies against a software authenticator, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from webauthn.helpers import bytes_to_base64url

from tests.authenticator import SoftAuthenticator
from tests.factories import make_user
from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, ValidationFailed
from thotbot.passkey_ceremonies import PasskeyChallengeInvalid, PasskeyRefused
from thotbot.services import Services
from thotbot.storage import AccountRecord
from thotbot.storage.models import WebAuthnChallenge
from thotbot.storage.passkeys import PasskeyRecord

ORIGIN = "http://localhost:8000"  # the default THOTBOT_PUBLIC_URL


def _register(services: Services, account: AccountRecord, authenticator: SoftAuthenticator) -> PasskeyRecord:
    ceremony = services.passkey_ceremonies.registration_options(account)
    credential = authenticator.create(ceremony.options)
    return services.passkey_ceremonies.register(account.id, ceremony.challenge_id, credential, name="laptop")


def _sign_in(services: Services, authenticator: SoftAuthenticator, **answer: Any) -> PasskeyRecord:
    ceremony = services.passkey_ceremonies.authentication_options()
    return services.passkey_ceremonies.authenticate(
        ceremony.challenge_id, authenticator.get(ceremony.options, **answer)
    )


def _challenges(services: Services) -> int:
    with services.db() as session:
        return session.scalar(select(func.count()).select_from(WebAuthnChallenge)) or 0


def test_registration_options_ask_for_a_discoverable_credential(services: Services) -> None:
    account = make_user(services)

    ceremony = services.passkey_ceremonies.registration_options(account)

    options = ceremony.options
    assert options["rp"] == {"id": "localhost", "name": "Thotbot"}
    assert options["user"]["name"] == account.email
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
    }
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []
    assert {"alg": -7, "type": "public-key"} in options["pubKeyCredParams"]
    assert ceremony.expires_at - utcnow() <= timedelta(minutes=5)
    assert _challenges(services) == 1


def test_register_stores_the_passkey(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)

    passkey = _register(services, account, authenticator)

    assert passkey.account_id == account.id
    assert passkey.credential_id == authenticator.credential_id
    assert passkey.name == "laptop"
    assert passkey.sign_count == 0
    assert passkey.last_used_at is None
    assert passkey.transports == ("hybrid", "internal")  # known values only
    assert services.passkeys.list_for_account(account.id) == [passkey]
    assert _challenges(services) == 0  # spent


def test_registration_excludes_the_accounts_existing_passkeys(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)

    options = services.passkey_ceremonies.registration_options(account).options

    assert [c["id"] for c in options["excludeCredentials"]] == [
        bytes_to_base64url(authenticator.credential_id)
    ]
    assert options["excludeCredentials"][0]["transports"] == ["hybrid", "internal"]


def test_the_same_credential_cannot_be_registered_twice(services: Services) -> None:
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, make_user(services), authenticator)

    with pytest.raises(Conflict):
        _register(services, make_user(services), authenticator)


def test_sign_in_with_the_passkey_alone(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)

    ceremony = services.passkey_ceremonies.authentication_options()
    passkey = services.passkey_ceremonies.authenticate(
        ceremony.challenge_id, authenticator.get(ceremony.options)
    )

    assert "allowCredentials" not in ceremony.options  # nothing to type: the browser offers it
    assert ceremony.options["rpId"] == "localhost"
    assert ceremony.options["userVerification"] == "required"
    assert passkey.account_id == account.id
    assert passkey.sign_count == 1
    stored = services.passkeys.find(passkey.id, account_id=account.id)
    assert stored is not None
    assert stored.sign_count == 1
    assert stored.last_used_at is not None


def test_a_passkey_registered_without_user_verification_is_refused(services: Services) -> None:
    account = make_user(services)
    ceremony = services.passkey_ceremonies.registration_options(account)
    credential = SoftAuthenticator(ORIGIN).create(ceremony.options, user_verified=False)

    with pytest.raises(PasskeyRefused) as exc_info:
        services.passkey_ceremonies.register(account.id, ceremony.challenge_id, credential, name="key")

    assert "user verification" in str(exc_info.value.detail).lower()
    assert services.passkeys.list_for_account(account.id) == []


def test_a_sign_in_without_user_verification_is_refused(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    passkey = _register(services, account, authenticator)

    with pytest.raises(PasskeyRefused) as exc_info:
        _sign_in(services, authenticator, user_verified=False)

    assert "user verification" in str(exc_info.value.detail).lower()
    stored = services.passkeys.find(passkey.id, account_id=account.id)
    assert stored is not None
    assert stored.last_used_at is None


def test_a_fresh_sign_in_lists_only_that_accounts_passkeys(services: Services) -> None:
    account, other = make_user(services), make_user(services)
    mine, theirs = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    _register(services, account, mine)
    _register(services, other, theirs)

    ceremony = services.passkey_ceremonies.authentication_options(account_id=account.id)

    assert [c["id"] for c in ceremony.options["allowCredentials"]] == [bytes_to_base64url(mine.credential_id)]
    with pytest.raises(PasskeyRefused):
        services.passkey_ceremonies.authenticate(
            ceremony.challenge_id, theirs.get(ceremony.options), account_id=account.id
        )


def test_a_challenge_is_single_use(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)
    ceremony = services.passkey_ceremonies.authentication_options()
    services.passkey_ceremonies.authenticate(ceremony.challenge_id, authenticator.get(ceremony.options))

    with pytest.raises(PasskeyChallengeInvalid) as exc_info:
        services.passkey_ceremonies.authenticate(ceremony.challenge_id, authenticator.get(ceremony.options))

    assert exc_info.value.extra == {"field": "challenge_id"}
    assert isinstance(exc_info.value, ValidationFailed)


def test_a_failed_attempt_spends_the_challenge_too(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)
    ceremony = services.passkey_ceremonies.authentication_options()
    with pytest.raises(PasskeyRefused):
        services.passkey_ceremonies.authenticate(
            ceremony.challenge_id, authenticator.get(ceremony.options, origin="https://evil.example")
        )

    with pytest.raises(PasskeyChallengeInvalid):
        services.passkey_ceremonies.authenticate(ceremony.challenge_id, authenticator.get(ceremony.options))


def test_an_expired_challenge_is_refused(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)
    ceremony = services.passkey_ceremonies.authentication_options(now=utcnow() - timedelta(minutes=6))

    with pytest.raises(PasskeyChallengeInvalid):
        services.passkey_ceremonies.authenticate(ceremony.challenge_id, authenticator.get(ceremony.options))


def test_an_expired_registration_challenge_is_refused(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    ceremony = services.passkey_ceremonies.registration_options(account, now=utcnow() - timedelta(minutes=6))

    with pytest.raises(PasskeyChallengeInvalid):
        services.passkey_ceremonies.register(
            account.id, ceremony.challenge_id, authenticator.create(ceremony.options), name="x"
        )

    assert services.passkeys.list_for_account(account.id) == []


@pytest.mark.parametrize("challenge_id", [None, 42, "", "no-such-challenge", "x" * 500, "ab\u0000cd", "é"])
def test_an_unknown_challenge_is_refused(services: Services, challenge_id: object) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    options = services.passkey_ceremonies.registration_options(account).options

    with pytest.raises(PasskeyChallengeInvalid):
        services.passkey_ceremonies.register(
            account.id, challenge_id, authenticator.create(options), name="x"
        )


def test_a_registration_challenge_belongs_to_its_account(services: Services) -> None:
    account, intruder = make_user(services), make_user(services)
    ceremony = services.passkey_ceremonies.registration_options(account)

    with pytest.raises(PasskeyChallengeInvalid):
        services.passkey_ceremonies.register(
            intruder.id, ceremony.challenge_id, SoftAuthenticator(ORIGIN).create(ceremony.options), name="x"
        )


def test_a_registration_challenge_cannot_sign_in(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)
    ceremony = services.passkey_ceremonies.registration_options(account)

    with pytest.raises(PasskeyChallengeInvalid):
        services.passkey_ceremonies.authenticate(
            ceremony.challenge_id, authenticator.get({**ceremony.options, "rpId": "localhost"})
        )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin"),
        ({"origin": "http://localhost:8001"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID"),
    ],
)
def test_registration_from_another_origin_or_rp_is_refused(
    services: Services, answer: dict[str, str], reason: str
) -> None:
    account = make_user(services)
    ceremony = services.passkey_ceremonies.registration_options(account)
    credential = SoftAuthenticator(ORIGIN).create(
        ceremony.options, origin=answer.get("origin"), rp_id=answer.get("rp_id")
    )

    with pytest.raises(PasskeyRefused) as exc_info:
        services.passkey_ceremonies.register(account.id, ceremony.challenge_id, credential, name="x")

    assert reason in exc_info.value.detail
    assert services.passkeys.list_for_account(account.id) == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [({"origin": "https://evil.example"}, "origin"), ({"rp_id": "evil.example"}, "RP ID")],
)
def test_sign_in_from_another_origin_or_rp_is_refused(
    services: Services, answer: dict[str, str], reason: str
) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)

    with pytest.raises(PasskeyRefused) as exc_info:
        _sign_in(services, authenticator, **answer)

    assert reason in exc_info.value.detail


def test_a_counter_that_does_not_increase_is_refused(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    passkey = _register(services, account, authenticator)
    _sign_in(services, authenticator, sign_count=5)

    with pytest.raises(PasskeyRefused):
        _sign_in(services, authenticator, sign_count=5)
    with pytest.raises(PasskeyRefused):
        _sign_in(services, authenticator, sign_count=3)
    with pytest.raises(PasskeyRefused):
        _sign_in(services, authenticator, sign_count=0)

    assert _sign_in(services, authenticator, sign_count=6).sign_count == 6
    stored = services.passkeys.find(passkey.id, account_id=account.id)
    assert stored is not None
    assert stored.sign_count == 6


def test_an_authenticator_without_a_counter_keeps_working(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN, counter_step=0)
    _register(services, account, authenticator)

    assert _sign_in(services, authenticator).sign_count == 0
    assert _sign_in(services, authenticator).sign_count == 0


def test_the_counter_is_checked_again_when_stored(services: Services) -> None:
    # Two requests with the same counter verified at once: the stored counter lets one through.
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    passkey = _register(services, account, authenticator)

    assert services.passkeys.record_use(passkey.id, 7)
    assert not services.passkeys.record_use(passkey.id, 7)
    assert not services.passkeys.record_use(passkey.id, 0)


def test_a_removed_passkey_cannot_sign_in(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    passkey = _register(services, account, authenticator)
    services.passkeys.remove(passkey.id, account_id=account.id)

    with pytest.raises(PasskeyRefused):
        _sign_in(services, authenticator)


def test_an_answer_for_another_user_handle_is_refused(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)

    with pytest.raises(PasskeyRefused):
        _sign_in(services, authenticator, user_handle=b"acct_0000000000000000")


def test_a_signature_by_another_key_is_refused(services: Services) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)
    impostor = SoftAuthenticator(ORIGIN)
    impostor.credential_id, impostor.user_handle = authenticator.credential_id, authenticator.user_handle

    with pytest.raises(PasskeyRefused):
        _sign_in(services, impostor)


@pytest.mark.parametrize(
    "credential",
    [
        None,
        "not json",
        "[]",
        {},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {}},
        {
            "id": "!!",
            "rawId": "!!",
            "type": "public-key",
            "response": {"clientDataJSON": "!!", "attestationObject": "!!"},
        },
        {
            "id": "AA",
            "rawId": "AA",
            "type": "public-key",
            "response": {"clientDataJSON": "e30", "attestationObject": "oA"},
        },
    ],
)
def test_malformed_registration_answers_are_refused_cleanly(services: Services, credential: object) -> None:
    account = make_user(services)
    ceremony = services.passkey_ceremonies.registration_options(account)

    with pytest.raises(PasskeyRefused):
        services.passkey_ceremonies.register(account.id, ceremony.challenge_id, credential, name="x")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: {**c, "rawId": "!!"},
        lambda c: {**c, "response": "nope"},
        lambda c: {**c, "response": {**c["response"], "signature": "AAAA"}},
        lambda c: {**c, "response": {**c["response"], "authenticatorData": "AAAA"}},
        lambda c: {**c, "response": {**c["response"], "clientDataJSON": "bm90IGpzb24"}},
        lambda c: {**c, "response": {**c["response"], "userHandle": 7}},
    ],
)
def test_malformed_sign_in_answers_are_refused_cleanly(services: Services, mangle: Any) -> None:
    account = make_user(services)
    authenticator = SoftAuthenticator(ORIGIN)
    _register(services, account, authenticator)
    ceremony = services.passkey_ceremonies.authentication_options()

    with pytest.raises(PasskeyRefused):
        services.passkey_ceremonies.authenticate(
            ceremony.challenge_id, mangle(authenticator.get(ceremony.options))
        )


def test_expired_challenges_are_swept(services: Services) -> None:
    account = make_user(services)
    services.passkey_ceremonies.registration_options(account, now=utcnow() - timedelta(hours=1))
    assert _challenges(services) == 1

    services.passkey_ceremonies.authentication_options()

    assert _challenges(services) == 1
