from __future__ import annotations

import re
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from tests.dashboard.helpers import create_key, csrf_token, field_errors, form_token, sign_up
from tests.factories import bearer, make_api_key
from thotbot.core.dates import utcnow
from thotbot.core.identity import Actor
from thotbot.services import Services
from thotbot.storage import KeyUsage
from thotbot.storage.models import Base
from thotbot.storage.usage import UsageBatch


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    sign_up(client, "keys@example.com")
    return client


def _account_id(services: Services) -> str:
    return services.users.get_by_email("keys@example.com").id


def _database_text(services: Services) -> str:
    """Every value of every row of every table, as text."""
    parts: list[str] = []
    with services.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(table.select()):
                parts.extend(value.hex() if isinstance(value, bytes) else str(value) for value in row)
    return "\n".join(parts)


class TestList:
    def test_empty_state_tells_a_newcomer_what_to_do(self, signed_in: TestClient) -> None:
        page = signed_in.get("/dashboard/api-keys")

        assert page.headers["cache-control"] == "no-store"
        assert "No API keys yet" in page.text
        assert ">Create New Key</button>" in page.text

    def test_shows_every_column(self, signed_in: TestClient, services: Services) -> None:
        account_id = _account_id(services)
        _, record = services.keys.create(
            account_id, "billing server", expires_at=utcnow() + timedelta(days=3)
        )
        services.usage.write(UsageBatch(last_used={record.id: KeyUsage(utcnow(), "billing/2.1")}))

        page = signed_in.get("/dashboard/api-keys").text

        for text in (
            "billing server",
            record.hint,
            "billing/2.1",
            "in 3 days",
            "just now",
            "Active",
            "Revoke",
        ):
            assert text in page
        for column in ("Name", "Key", "Created", "Last used", "Last User-Agent", "Expires", "State"):
            assert f'<th scope="col">{column}</th>' in page
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page), "absolute dates are shown too"

    def test_states(self, signed_in: TestClient, services: Services) -> None:
        account_id = _account_id(services)
        services.keys.create(account_id, "old", expires_at=utcnow() - timedelta(days=1))
        _, revoked = services.keys.create(account_id, "gone")
        services.keys.revoke(revoked.id)

        page = signed_in.get("/dashboard/api-keys").text

        assert "badge-expired" in page
        assert "badge-revoked" in page

    def test_revoked_keys_say_how(self, signed_in: TestClient, services: Services) -> None:
        account_id = _account_id(services)
        _, mine = services.keys.create(account_id, "mine")
        _, operators = services.keys.create(account_id, "operators")
        leaked_raw, leaked = services.keys.create(account_id, "leaked")
        services.key_lifecycle.revoke_as_operator(operators.id)
        services.key_lifecycle.revoke_leaked([leaked_raw], Actor("revoke-leaked"))
        page = signed_in.get(f"/dashboard/api-keys/{mine.id}/revoke").text
        signed_in.post(f"/dashboard/api-keys/{mine.id}/revoke", data={"csrf_token": csrf_token(page)})

        listed = signed_in.get("/dashboard/api-keys").text

        for record, phrase in (
            (mine, "revoked by you"),
            (operators, "revoked by the operator"),
            (leaked, "revoked as leaked"),
        ):
            row = re.search(rf'data-key-id="{record.id}">(.*?)</tr>', listed, re.S)
            assert row is not None
            assert f'<span class="muted revoked-reason">{phrase}</span>' in row.group(1)
            detail = signed_in.get(f"/dashboard/api-keys/{record.id}").text
            assert f'<span class="revoked-reason">({phrase})</span>' in detail

    def test_another_accounts_keys_are_invisible(self, signed_in: TestClient, services: Services) -> None:
        _, theirs = make_api_key(services, name="someone else's")

        assert "someone else" not in signed_in.get("/dashboard/api-keys").text
        assert signed_in.get(f"/dashboard/api-keys/{theirs.id}").status_code == 404
        assert signed_in.get(f"/dashboard/api-keys/{theirs.id}/revoke").status_code == 404


class TestCreate:
    def test_shows_the_key_once_and_it_works(self, signed_in: TestClient, services: Services) -> None:
        raw, page = create_key(signed_in, "laptop")

        assert "It will not be shown again" in page
        assert 'data-copy-target="new-key"' in page
        assert signed_in.get("/v1/version", headers=bearer(raw)).status_code == 200
        [record] = services.keys.list_for_account(_account_id(services))
        assert record.name == "laptop"
        assert record.read_only is False

    def test_the_key_page_is_never_stored(self, signed_in: TestClient) -> None:
        page = signed_in.get("/dashboard/api-keys/new")
        response = signed_in.post(
            "/dashboard/api-keys/new",
            data={
                "csrf_token": csrf_token(page.text),
                "form_token": form_token(page.text),
                "name": "n",
                "expiry": "never",
                "access": "full",
            },
        )

        assert response.headers["cache-control"] == "no-store"
        assert "thot_ak_" not in response.headers.get("location", "")
        assert "thot_ak_" not in str(response.url)

    def test_the_key_is_nowhere_afterwards(self, signed_in: TestClient, services: Services) -> None:
        raw, _ = create_key(signed_in, "secret one")
        [record] = services.keys.list_for_account(_account_id(services))

        for path in (
            "/dashboard",
            "/dashboard/api-keys",
            "/dashboard/api-keys/new",
            f"/dashboard/api-keys/{record.id}",
            f"/dashboard/api-keys/{record.id}/revoke",
            "/dashboard/security",
        ):
            assert raw not in signed_in.get(path).text, path
        assert raw not in str(signed_in.cookies)
        assert raw not in _database_text(services)

    def test_posting_the_same_form_again_shows_nothing_and_creates_nothing(
        self, signed_in: TestClient, services: Services
    ) -> None:
        page = signed_in.get("/dashboard/api-keys/new").text
        data = {
            "csrf_token": csrf_token(page),
            "form_token": form_token(page),
            "name": "once",
            "expiry": "30",
            "access": "full",
        }
        first = signed_in.post("/dashboard/api-keys/new", data=data)
        raw = re.search("thot" + r"_ak_[0-9a-f]{96}", first.text)
        assert raw is not None

        again = signed_in.post("/dashboard/api-keys/new", data=data)

        assert again.status_code == 409
        assert "This key was already shown" in again.text
        assert raw.group(0) not in again.text
        assert re.search("thot" + r"_ak_[0-9a-f]{96}", again.text) is None
        assert len(services.keys.list_for_account(_account_id(services))) == 1

    @pytest.mark.parametrize(
        ("expiry", "days"),
        [("30", 30), ("90", 90), ("365", 365), ("never", None)],
    )
    def test_expiry_choices(
        self, signed_in: TestClient, services: Services, expiry: str, days: int | None
    ) -> None:
        before = utcnow()
        create_key(signed_in, expiry=expiry)

        [record] = services.keys.list_for_account(_account_id(services))
        if days is None:
            assert record.expires_at is None
        else:
            assert record.expires_at is not None
            assert before + timedelta(days=days) <= record.expires_at <= utcnow() + timedelta(days=days)

    def test_expiry_on_a_date_lasts_through_that_day(self, signed_in: TestClient, services: Services) -> None:
        day = (utcnow() + timedelta(days=10)).date()

        create_key(signed_in, expiry="date", expiry_date=day.isoformat())

        [record] = services.keys.list_for_account(_account_id(services))
        assert record.expires_at is not None
        assert record.expires_at.date() == day + timedelta(days=1)
        assert (record.expires_at.hour, record.expires_at.minute) == (0, 0)

    def test_read_only(self, signed_in: TestClient, services: Services) -> None:
        raw, page = create_key(signed_in, access="read_only")

        assert "Read-only" in page
        [record] = services.keys.list_for_account(_account_id(services))
        assert record.read_only is True
        assert signed_in.get("/v1/keys", headers=bearer(raw)).status_code == 200
        refused = signed_in.delete(f"/v1/keys/{record.id}", headers=bearer(raw))
        assert refused.status_code == 403
        assert refused.json()["code"] == "insufficient_scope"

    @pytest.mark.parametrize(
        ("data", "field", "message"),
        [
            ({"name": "  ", "expiry": "30", "access": "full"}, "name", "Give the key a name"),
            ({"name": "x" * 101, "expiry": "30", "access": "full"}, "name", "at most 100"),
            ({"name": "n", "expiry": "5", "access": "full"}, "expiry", "Choose when the key expires"),
            (
                {"name": "n", "expiry": "date", "expiry_date": "soon", "access": "full"},
                "expiry_date",
                "2027-01-31",
            ),
            (
                {"name": "n", "expiry": "date", "expiry_date": "2001-01-01", "access": "full"},
                "expiry_date",
                "after",
            ),
            ({"name": "n", "expiry": "30", "access": "admin"}, "access", "full access or read-only"),
        ],
    )
    def test_errors_are_shown_next_to_their_field(
        self, signed_in: TestClient, services: Services, data: dict[str, str], field: str, message: str
    ) -> None:
        page = signed_in.get("/dashboard/api-keys/new").text

        response = signed_in.post(
            "/dashboard/api-keys/new",
            data={"csrf_token": csrf_token(page), "form_token": form_token(page), **data},
        )

        assert response.status_code == 400
        assert message in field_errors(response.text)[field]
        assert services.keys.list_for_account(_account_id(services)) == []


class TestManage:
    def _detail(self, client: TestClient, services: Services) -> tuple[str, str]:
        [record] = services.keys.list_for_account(_account_id(services))
        return record.id, client.get(f"/dashboard/api-keys/{record.id}").text

    def test_rename(self, signed_in: TestClient, services: Services) -> None:
        create_key(signed_in, "first name")
        key_id, page = self._detail(signed_in, services)

        response = signed_in.post(
            f"/dashboard/api-keys/{key_id}/rename",
            data={"csrf_token": csrf_token(page), "name": "second name"},
        )

        assert "Renamed the key to “second name”" in response.text
        assert services.keys.get(key_id).name == "second name"
        events = services.security_log.list_for_account(_account_id(services))
        assert events[0].action == "key.renamed"
        assert events[0].key_id == key_id

    def test_roll_keeps_the_old_key_until_its_new_expiry(
        self, signed_in: TestClient, services: Services
    ) -> None:
        old_raw, _ = create_key(signed_in, "server", expiry="90")
        key_id, page = self._detail(signed_in, services)

        response = signed_in.post(
            f"/dashboard/api-keys/{key_id}/roll",
            data={"csrf_token": csrf_token(page), "form_token": form_token(page), "old_expires": "1h"},
        )

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        new_raw = re.search("thot" + r"_ak_[0-9a-f]{96}", response.text)
        assert new_raw is not None
        assert new_raw.group(0) != old_raw
        assert signed_in.get("/v1/version", headers=bearer(old_raw)).status_code == 200
        assert signed_in.get("/v1/version", headers=bearer(new_raw.group(0))).status_code == 200
        old = services.keys.get(key_id)
        assert old.expires_at is not None
        assert old.expires_at - utcnow() <= timedelta(hours=1)
        new = next(r for r in services.keys.list_for_account(_account_id(services)) if r.id != key_id)
        assert new.name == "server"
        assert new.expires_at is not None
        assert new.expires_at - utcnow() > timedelta(days=89)
        assert {"key.rolled", "key.created"} <= {
            e.action for e in services.security_log.list_for_account(_account_id(services))[:2]
        }

    def test_roll_now_ends_the_old_key_at_once(self, signed_in: TestClient, services: Services) -> None:
        old_raw, _ = create_key(signed_in, "server")
        key_id, page = self._detail(signed_in, services)

        signed_in.post(
            f"/dashboard/api-keys/{key_id}/roll",
            data={"csrf_token": csrf_token(page), "form_token": form_token(page), "old_expires": "now"},
        )

        refused = signed_in.get("/v1/version", headers=bearer(old_raw))
        assert refused.status_code == 401
        assert refused.json()["code"] == "expired_api_key"

    def test_roll_never_extends_the_old_key(self, signed_in: TestClient, services: Services) -> None:
        account_id = _account_id(services)
        soon = utcnow() + timedelta(minutes=5)
        _, record = services.keys.create(account_id, "short", expires_at=soon)
        page = signed_in.get(f"/dashboard/api-keys/{record.id}").text

        signed_in.post(
            f"/dashboard/api-keys/{record.id}/roll",
            data={"csrf_token": csrf_token(page), "form_token": form_token(page), "old_expires": "7d"},
        )

        assert services.keys.get(record.id).expires_at == soon

    def test_revoke_asks_first(self, signed_in: TestClient, services: Services) -> None:
        raw, _ = create_key(signed_in, "doomed")
        key_id, _ = self._detail(signed_in, services)

        confirm = signed_in.get(f"/dashboard/api-keys/{key_id}/revoke")
        assert "Revoke “doomed”?" in confirm.text
        assert services.keys.get(key_id).revoked_at is None

        response = signed_in.post(
            f"/dashboard/api-keys/{key_id}/revoke", data={"csrf_token": csrf_token(confirm.text)}
        )

        assert response.url.path == "/dashboard/api-keys"
        assert "It no longer works" in response.text
        refused = signed_in.get("/v1/version", headers=bearer(raw))
        assert refused.json()["code"] == "revoked_api_key"
        assert services.security_log.list_for_account(_account_id(services))[0].action == "key.revoked"

    def test_cannot_touch_another_accounts_key(self, signed_in: TestClient, services: Services) -> None:
        _, theirs = make_api_key(services, name="theirs")
        page = signed_in.get("/dashboard/api-keys").text

        for action in ("rename", "revoke"):
            response = signed_in.post(
                f"/dashboard/api-keys/{theirs.id}/{action}",
                data={"csrf_token": csrf_token(page), "name": "mine"},
            )
            assert response.status_code == 404
        assert services.keys.get(theirs.id).name == "theirs"
        assert services.keys.get(theirs.id).revoked_at is None
