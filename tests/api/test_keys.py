"""GET /v1/keys, DELETE /v1/keys/{id} and the unauthenticated POST /v1/keys/revoke-leaked."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from tests.api.test_auth import assert_problem, server_log
from tests.factories import bearer, fake_key, make_api_key, make_user
from thotbot.core import keys
from thotbot.services import Services

KEY_FIELDS = {"id", "name", "hint", "created_at", "expires_at", "last_used_at"}


class TestListKeys:
    def test_lists_the_accounts_keys_metadata_only(self, client: TestClient, services: Services) -> None:
        account, other = make_user(services), make_user(services)
        raw, first = make_api_key(services, account, name="first")
        second_raw, second = make_api_key(
            services, account, name="second", expires_at=datetime(2030, 1, 1, tzinfo=UTC), read_only=True
        )
        theirs_raw, _ = make_api_key(services, other)
        services.keys.revoke(second.id)

        response = client.get("/v1/keys", headers=bearer(raw))

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        listed = response.json()["keys"]
        assert [k["id"] for k in listed] == [second.id, first.id]
        for item in listed:
            assert item.keys() >= KEY_FIELDS
        by_id = {k["id"]: k for k in listed}
        assert by_id[first.id]["hint"] == first.hint
        assert by_id[first.id]["state"] == "active"
        assert by_id[second.id]["state"] == "revoked"
        assert by_id[second.id]["expires_at"] == "2030-01-01T00:00:00Z"
        assert by_id[second.id]["read_only"] is True
        for secret in (raw, second_raw, theirs_raw, keys.hash_key(raw).hex()):
            assert secret not in response.text
            assert secret[len("thot_ak_") :][:12] not in response.text

    def test_times_are_iso_8601_utc(self, client: TestClient, services: Services) -> None:
        raw, record = make_api_key(services)

        [item] = client.get("/v1/keys", headers=bearer(raw)).json()["keys"]

        assert item["created_at"].endswith("Z")
        assert datetime.fromisoformat(item["created_at"]) == record.created_at
        assert item["expires_at"] is None


class TestRevokeKey:
    def test_revokes_one_of_the_accounts_keys(
        self, client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        account = make_user(services)
        raw, caller = make_api_key(services, account)
        other_raw, other = make_api_key(services, account)
        assert client.get("/v1/version", headers=bearer(other_raw)).status_code == 200  # now cached

        response = client.delete(f"/v1/keys/{other.id}", headers=bearer(raw))

        assert response.status_code == 204
        assert response.content == b""
        assert response.headers["cache-control"] == "no-store"
        assert services.keys.get(other.id).revoked_at is not None
        # Immediate on this instance: the cached entry is gone.
        assert_problem(client.get("/v1/version", headers=bearer(other_raw)), 401, "revoked_api_key")
        assert client.get("/v1/version", headers=bearer(raw)).status_code == 200
        [event] = [e for e in services.security_log.list_for_account(account.id) if e.action == "key.revoked"]
        assert event.key_id == other.id
        assert event.actor == f"api_key:{caller.id}"
        assert other_raw not in server_log(caplog, services)
        assert other_raw not in event.detail

    def test_a_key_may_revoke_itself(self, client: TestClient, services: Services) -> None:
        raw, record = make_api_key(services)

        response = client.delete(f"/v1/keys/{record.id}", headers=bearer(raw))

        assert response.status_code == 204
        assert_problem(client.get("/v1/version", headers=bearer(raw)), 401, "revoked_api_key")
        assert_problem(client.delete(f"/v1/keys/{record.id}", headers=bearer(raw)), 401, "revoked_api_key")

    def test_revoking_twice_is_fine(self, client: TestClient, services: Services) -> None:
        account = make_user(services)
        raw, _ = make_api_key(services, account)
        _, other = make_api_key(services, account)

        assert client.delete(f"/v1/keys/{other.id}", headers=bearer(raw)).status_code == 204
        assert client.delete(f"/v1/keys/{other.id}", headers=bearer(raw)).status_code == 204

        events = services.security_log.list_for_account(account.id)
        assert [e.key_id for e in events if e.action == "key.revoked"] == [other.id]  # logged once

    def test_another_accounts_key_is_not_found(self, client: TestClient, services: Services) -> None:
        raw, _ = make_api_key(services)
        _, theirs = make_api_key(services)

        response = client.delete(f"/v1/keys/{theirs.id}", headers=bearer(raw))
        missing = client.delete("/v1/keys/key_0123456789abcdef", headers=bearer(raw))

        body = assert_problem(response, 404, "not_found")
        missing_body = assert_problem(missing, 404, "not_found")
        assert services.keys.get(theirs.id).revoked_at is None
        # Someone else's key and no key at all look the same.
        assert str(body["detail"]).replace(theirs.id, "ID") == str(missing_body["detail"]).replace(
            "key_0123456789abcdef", "ID"
        )

    @pytest.mark.parametrize("key_id", ["x" * 2000, "%00", "key_%27%3B--", "..%2F..%2Fetc"])
    def test_odd_ids_are_not_found(self, client: TestClient, services: Services, key_id: str) -> None:
        raw, _ = make_api_key(services)

        response = client.delete(f"/v1/keys/{key_id}", headers=bearer(raw))

        assert response.status_code in (404, 405)
        assert response.headers["content-type"] == "application/problem+json"

    def test_needs_a_key(self, client: TestClient, services: Services) -> None:
        _, record = make_api_key(services)

        assert_problem(client.delete(f"/v1/keys/{record.id}"), 401, "missing_api_key")
        assert services.keys.get(record.id).revoked_at is None


class TestRevokeLeaked:
    def test_same_answer_for_existing_unknown_and_malformed(
        self, client: TestClient, services: Services
    ) -> None:
        raw, record = make_api_key(services)
        bodies = [
            {"keys": [raw]},
            {"keys": [fake_key()]},
            {"keys": ["not a key at all"]},
            {"keys": []},
            {"keys": [raw]},  # again: already revoked
        ]

        responses = [client.post("/v1/keys/revoke-leaked", json=body) for body in bodies]

        for response in responses:
            assert response.status_code == 202
            assert response.json() == {"status": "accepted"}
            assert response.headers["cache-control"] == "no-store"
            assert response.content == responses[0].content
            assert "www-authenticate" not in response.headers
        assert services.keys.get(record.id).revoked_at is not None

    def test_the_key_is_really_revoked_at_once(
        self, client: TestClient, services: Services, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        account = make_user(services)
        raw, record = make_api_key(services, account)
        other_raw, other = make_api_key(services, account)
        assert client.get("/v1/version", headers=bearer(raw)).status_code == 200  # cached

        response = client.post(
            "/v1/keys/revoke-leaked", json={"keys": [f"  {raw}\n", fake_key("b"), "ghp_" + "x" * 36]}
        )

        assert response.status_code == 202
        assert_problem(client.get("/v1/version", headers=bearer(raw)), 401, "revoked_api_key")
        assert client.get("/v1/version", headers=bearer(other_raw)).status_code == 200
        assert services.keys.get(other.id).revoked_at is None
        events = services.security_log.list_for_account(account.id)
        assert [(e.action, e.key_id) for e in events] == [("key.revoked_leaked", record.id)]
        assert raw not in events[0].detail
        assert raw not in server_log(caplog, services)

    def test_needs_no_authentication_and_ignores_any_sent(
        self, client: TestClient, services: Services
    ) -> None:
        raw, record = make_api_key(services)

        response = client.post(
            "/v1/keys/revoke-leaked",
            json={"keys": [raw]},
            headers={"Authorization": "Basic Zm9vOmJhcg==", "Cookie": "thotbot_session=x"},
        )

        assert response.status_code == 202
        assert services.keys.get(record.id).revoked_at is not None

    def test_many_keys_at_once(self, client: TestClient, services: Services) -> None:
        account = make_user(services)
        made = [make_api_key(services, account) for _ in range(3)]
        leaked = [raw for raw, _ in made] + [fake_key(d) for d in "0123456789abcdef"] * 5

        response = client.post("/v1/keys/revoke-leaked", json={"keys": leaked[:100]})

        assert response.status_code == 202
        assert all(services.keys.get(r.id).revoked_at is not None for _, r in made)

    @pytest.mark.parametrize(
        "content",
        [
            pytest.param(b"", id="empty"),
            pytest.param(b"not json", id="not-json"),
            pytest.param(b"\xff\xfe", id="not-utf8"),
            pytest.param(b"[]", id="array"),
            pytest.param(b'"keys"', id="string"),
            pytest.param(b"{}", id="no-keys"),
            pytest.param(b'{"keys": "thot_ak_"}', id="keys-not-a-list"),
            pytest.param(b'{"keys": [1, 2]}', id="not-strings"),
            pytest.param(b'{"keys": [null]}', id="null"),
            pytest.param(b'{"keys": {"a": 1}}', id="object"),
            pytest.param(b'{"keys": [' + b",".join([b'"x"'] * 101) + b"]}", id="over-100"),
            pytest.param(b'{"keys": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}", id="deeply-nested"),
        ],
    )
    def test_validation_errors(self, client: TestClient, services: Services, content: bytes) -> None:
        raw, record = make_api_key(services)

        response = client.post(
            "/v1/keys/revoke-leaked", content=content, headers={"content-type": "application/json"}
        )

        body = assert_problem(response, 422, "validation_error")
        assert len(str(body["detail"])) < 200
        assert services.keys.get(record.id).revoked_at is None
        assert raw not in response.text

    def test_over_100_keys_revokes_none(self, client: TestClient, services: Services) -> None:
        raw, record = make_api_key(services)

        response = client.post("/v1/keys/revoke-leaked", json={"keys": [raw] + [fake_key()] * 100})

        body = assert_problem(response, 422, "validation_error")
        assert "100" in str(body["detail"])
        assert services.keys.get(record.id).revoked_at is None

    def test_only_post(self, client: TestClient) -> None:
        response = client.get("/v1/keys/revoke-leaked")

        # Any other method is an authenticated request like the rest of /v1.
        assert_problem(response, 401, "missing_api_key")


def test_expired_keys_are_listed_as_expired(client: TestClient, services: Services) -> None:
    account = make_user(services)
    raw, _ = make_api_key(services, account)
    _, old = make_api_key(services, account, expires_at=datetime.now(UTC) - timedelta(days=1))

    listed = {k["id"]: k for k in client.get("/v1/keys", headers=bearer(raw)).json()["keys"]}

    assert listed[old.id]["state"] == "expired"


class TestKeyRequests:
    @pytest.mark.parametrize(
        "query", ["limit=0", "limit=201", "limit=abc", "limit=", "limit=1&limit=2", "limit=%EF%BC%91"]
    )
    def test_a_bad_limit_is_a_422_naming_it(self, client: TestClient, services: Services, query: str) -> None:
        raw, key = make_api_key(services)

        response = client.get(f"/v1/keys/{key.id}/requests?{query}", headers=bearer(raw))

        assert_problem(response, 422, "validation_error")
        assert response.json()["field"] == "limit"

    def test_another_accounts_key_and_no_key_answer_alike(
        self, client: TestClient, services: Services
    ) -> None:
        raw, _ = make_api_key(services)
        _, theirs = make_api_key(services)

        other = client.get(f"/v1/keys/{theirs.id}/requests", headers=bearer(raw))
        missing = client.get("/v1/keys/key_0000000000000000/requests", headers=bearer(raw))

        assert_problem(other, 404, "not_found")
        assert_problem(missing, 404, "not_found")
        assert {k: v for k, v in other.json().items() if k != "instance"} == {
            k: v for k, v in missing.json().items() if k != "instance"
        }

    def test_a_new_key_has_an_empty_log(self, client: TestClient, services: Services) -> None:
        raw, key = make_api_key(services)

        response = client.get(f"/v1/keys/{key.id}/requests?limit=5", headers=bearer(raw))

        assert response.status_code == 200
        assert response.json() == {"requests": []}
