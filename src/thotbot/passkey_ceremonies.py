"""Passkeys: the WebAuthn ceremonies (with the `webauthn` package) to register one and to sign in.

The relying party is THOTBOT_PUBLIC_URL: its host name is the RP id and the URL itself the only
origin accepted. Each ceremony has a challenge kept server side under a random id (handed to the
client with the options); it can be taken once, and only within its lifetime.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, options_to_json_dict
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from thotbot.config import Settings
from thotbot.core.dates import utcnow
from thotbot.core.errors import ValidationFailed
from thotbot.storage import AccountRecord, ChallengeStore, PasskeyStore
from thotbot.storage.passkeys import ChallengeRecord, PasskeyRecord

__all__ = [
    "AUTHENTICATION",
    "CHALLENGE_LIFETIME",
    "REGISTRATION",
    "Ceremony",
    "PasskeyCeremonies",
    "PasskeyChallengeInvalid",
    "PasskeyRefused",
]

REGISTRATION = "registration"
AUTHENTICATION = "authentication"
CHALLENGE_LIFETIME = timedelta(minutes=5)
RP_NAME = "Thotbot"
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
# The library checks what it knows to check and raises WebAuthnException; some malformed input
# (a truncated key, a missing CBOR field) still escapes it as one of these built-in errors.
_MALFORMED = (WebAuthnException, KeyError, IndexError, TypeError, ValueError)


class PasskeyChallengeInvalid(ValidationFailed):
    default_detail = (
        "This passkey request is unknown, expired or was used already; start again to get a new one."
    )


class PasskeyRefused(ValidationFailed):
    default_detail = "The passkey's answer could not be verified."


@dataclass(frozen=True, slots=True)
class Ceremony:
    """What the browser needs to start a ceremony: the options for navigator.credentials."""

    challenge_id: str
    #: PublicKeyCredentialCreationOptions or ...RequestOptions, as JSON (bytes in base64url).
    options: dict[str, Any]
    expires_at: datetime


class PasskeyCeremonies:
    def __init__(
        self,
        *,
        rp_id: str,
        origin: str,
        passkeys: PasskeyStore,
        challenges: ChallengeStore,
        lifetime: timedelta = CHALLENGE_LIFETIME,
    ) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.passkeys = passkeys
        self._challenges = challenges
        self._lifetime = lifetime

    @classmethod
    def from_settings(
        cls, settings: Settings, passkeys: PasskeyStore, challenges: ChallengeStore
    ) -> PasskeyCeremonies:
        return cls(rp_id=settings.rp_id, origin=settings.public_url, passkeys=passkeys, challenges=challenges)

    def registration_options(self, account: AccountRecord, *, now: datetime | None = None) -> Ceremony:
        """Options to create a discoverable credential for this account, excluding those it has."""
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=RP_NAME,
            # The user handle is the account id: random, stable, and no personal data.
            user_id=account.id.encode(),
            user_name=account.email,
            user_display_name=account.email,
            timeout=self._timeout_ms,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                # A passkey signs in alone, as the only factor: the device must check that its
                # owner is present (PIN, fingerprint, face), not merely that someone touched it.
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=self._descriptors(account.id),
        )
        record = self._challenges.create(
            REGISTRATION, options.challenge, account_id=account.id, lifetime=self._lifetime, now=now
        )
        return Ceremony(record.id, options_to_json_dict(options), record.expires_at)

    def register(
        self,
        account_id: str,
        challenge_id: object,
        credential: object,
        *,
        name: str,
        now: datetime | None = None,
    ) -> PasskeyRecord:
        """Verify the browser's answer to registration_options and store the passkey.

        :param credential: the PublicKeyCredential as JSON (a dict, or its text), as
            ``PublicKeyCredential.toJSON()`` gives it.
        """
        challenge = self._take(challenge_id, REGISTRATION, account_id, now)
        answer = _as_dict(credential)
        try:
            verified = verify_registration_response(
                credential=answer,
                expected_challenge=challenge.challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                require_user_verification=True,
            )
        except _MALFORMED as exc:
            raise PasskeyRefused(
                _refusal("The new passkey could not be verified", exc), field="credential"
            ) from None
        return self.passkeys.add(
            account_id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=_transports(answer),
            name=name,
            now=now,
        )

    def authentication_options(
        self, *, account_id: str | None = None, now: datetime | None = None
    ) -> Ceremony:
        """Options to sign in with a passkey.

        With no account (the sign-in page) nothing is listed: the browser offers the discoverable
        credentials it holds for this site, and no email address is typed. With an account (a
        fresh sign-in before a sensitive change), only that account's passkeys are allowed.
        """
        options = generate_authentication_options(
            rp_id=self.rp_id,
            timeout=self._timeout_ms,
            allow_credentials=self._descriptors(account_id) if account_id else None,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        record = self._challenges.create(
            AUTHENTICATION, options.challenge, account_id=account_id, lifetime=self._lifetime, now=now
        )
        as_json = options_to_json_dict(options)
        if not as_json.get("allowCredentials"):
            as_json.pop("allowCredentials", None)  # None listed: any discoverable credential will do.
        return Ceremony(record.id, as_json, record.expires_at)

    def authenticate(
        self,
        challenge_id: object,
        credential: object,
        *,
        account_id: str | None = None,
        now: datetime | None = None,
    ) -> PasskeyRecord:
        """Verify an assertion; returns the passkey (its account_id is who signed in).

        ``account_id`` must be what was given to authentication_options. The signature counter
        must move past the stored one unless both are 0 (authenticators that keep no counter).
        """
        now = now or utcnow()
        challenge = self._take(challenge_id, AUTHENTICATION, account_id, now)
        answer = _as_dict(credential)
        passkey = self._passkey_for(answer, account_id)
        try:
            verified = verify_authentication_response(
                credential=answer,
                expected_challenge=challenge.challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
                # Checked here, whatever the options said: the options travel through the client.
                require_user_verification=True,
            )
        except _MALFORMED as exc:
            raise PasskeyRefused(
                _refusal("The passkey could not be verified", exc), field="credential"
            ) from None
        if not self.passkeys.record_use(passkey.id, verified.new_sign_count, now=now):
            raise PasskeyRefused(
                "The passkey's signature counter went backwards: it may have been cloned. "
                "Remove it on the Security page and add it again.",
                field="credential",
            )
        return dataclasses.replace(passkey, sign_count=verified.new_sign_count, last_used_at=now)

    @property
    def _timeout_ms(self) -> int:
        return int(self._lifetime.total_seconds() * 1000)

    def _descriptors(self, account_id: str) -> list[PublicKeyCredentialDescriptor]:
        return [
            PublicKeyCredentialDescriptor(
                id=p.credential_id,
                transports=[AuthenticatorTransport(t) for t in p.transports if t in _TRANSPORTS] or None,
            )
            for p in self.passkeys.list_for_account(account_id)
        ]

    def _take(
        self, challenge_id: object, purpose: str, account_id: str | None, now: datetime | None
    ) -> ChallengeRecord:
        record = self._challenges.take(challenge_id) if isinstance(challenge_id, str) else None
        if (
            record is None
            or record.purpose != purpose
            or record.account_id != account_id
            or record.expires_at <= (now or utcnow())
        ):
            raise PasskeyChallengeInvalid(field="challenge_id")
        return record

    def _passkey_for(self, answer: Mapping[str, Any], account_id: str | None) -> PasskeyRecord:
        raw_id = answer.get("rawId")
        try:
            credential_id = base64url_to_bytes(raw_id) if isinstance(raw_id, str) else b""
        except ValueError:
            credential_id = b""
        passkey = self.passkeys.find_by_credential_id(credential_id) if credential_id else None
        if passkey is None or (account_id is not None and passkey.account_id != account_id):
            raise PasskeyRefused("This passkey is not registered with this account.", field="credential")
        response = answer.get("response")
        handle = response.get("userHandle") if isinstance(response, dict) else None
        if isinstance(handle, str) and handle:
            try:
                same_user = base64url_to_bytes(handle) == passkey.account_id.encode()
            except ValueError:
                same_user = False
            if not same_user:
                raise PasskeyRefused("The passkey answered for another user.", field="credential")
        return passkey


def _as_dict(credential: object) -> dict[str, Any]:
    if isinstance(credential, str):
        try:
            credential = json.loads(credential)
        except ValueError:
            raise PasskeyRefused("'credential' is not valid JSON.", field="credential") from None
    if not isinstance(credential, dict):
        raise PasskeyRefused(
            "'credential' must be the PublicKeyCredential as a JSON object.", field="credential"
        )
    return credential


def _transports(answer: Mapping[str, Any]) -> list[str]:
    response = answer.get("response")
    listed = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(listed, list):
        return []
    return sorted({t for t in listed if isinstance(t, str) and t in _TRANSPORTS})


def _refusal(what: str, exc: Exception) -> str:
    # The library's messages say what did not match (origin, RP id, challenge, counter) and hold
    # no secret; keep the first line, bounded.
    reason = (str(exc).splitlines() or [""])[0][:200]
    return f"{what}: {reason}" if reason else f"{what}."
