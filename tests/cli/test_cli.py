"""The `thotbot` command, in process: exit codes, one-line errors, and the key shown only once."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.factories import make_api_key, make_user
from thotbot import __version__
from thotbot.cli import main
from thotbot.core import keys
from thotbot.core.accounts import verify_password
from thotbot.core.dates import utcnow
from thotbot.core.identity import Actor
from thotbot.services import Services
from thotbot.storage import KeyUsage
from thotbot.storage.usage import UsageBatch

PASSWORD = "a long enough password"


@pytest.fixture(autouse=True)
def _database(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("THOTBOT_DATABASE_URL", database_url)


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("thotbot: error: ")
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


class TestUsersRecovery:
    @pytest.mark.parametrize("command", ["reset-password", "disable", "enable"])
    def test_an_unknown_user_is_a_one_line_error(
        self, capsys: pytest.CaptureFixture[str], command: str
    ) -> None:
        assert main(["users", command, "nobody@example.com"]) == 1

        assert "No account with email 'nobody@example.com'" in _one_line_error(capsys)

    def test_disable_then_enable(self, capsys: pytest.CaptureFixture[str], services: Services) -> None:
        account = make_user(services, "leaving@example.com")
        make_api_key(services, account)
        services.web_sessions.create(account.id)

        assert main(["users", "disable", "leaving@example.com"]) == 0

        assert "disabled leaving@example.com: 1 session(s) ended; its 1 key(s)" in capsys.readouterr().err
        assert services.web_sessions.list_for_account(account.id) == []
        assert services.users.get_by_email("leaving@example.com").disabled
        assert main(["users", "enable", "leaving@example.com"]) == 0
        assert capsys.readouterr().err == "enabled leaving@example.com\n"
        assert not services.users.get_by_email("leaving@example.com").disabled

    def test_reset_password_mails_a_link(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        account = make_user(services, "forgetful@example.com")

        assert main(["users", "reset-password", "forgetful@example.com"]) == 0

        out, err = capsys.readouterr()
        assert out == ""
        assert "mailed a password reset link to forgetful@example.com" in err
        [event] = services.security_log.list_for_account(account.id)
        assert (event.action, event.actor) == ("password.reset_requested", "operator")


class TestUsersCreate:
    def test_creates_an_account_with_the_password_from_stdin(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        _stdin(monkeypatch, PASSWORD + "\n")

        assert main(["users", "create", "Ops@Example.com", "--password-stdin"]) == 0

        out, err = capsys.readouterr()
        account = services.users.get_by_email("ops@example.com")
        assert out == account.id + "\n"
        assert "ops@example.com" in err
        assert PASSWORD not in out + err
        stored = services.users.password_hash(account.id)
        assert verify_password(stored, PASSWORD)
        assert account.is_admin is False
        assert account.verified  # the operator's accounts need no confirmation link
        assert [e.action for e in services.security_log.list_for_account(account.id)] == ["account.created"]

    def test_admin(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        _stdin(monkeypatch, PASSWORD)

        assert main(["users", "create", "root@example.com", "--password-stdin", "--admin"]) == 0

        assert services.users.get_by_email("root@example.com").is_admin is True

    def test_keeps_spaces_inside_the_password_and_drops_only_the_newline(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        _stdin(monkeypatch, "  spaced  password  \r\n")

        assert main(["users", "create", "spaces@example.com", "--password-stdin"]) == 0

        account = services.users.get_by_email("spaces@example.com")
        assert verify_password(services.users.password_hash(account.id), "  spaced  password  ")

    @pytest.mark.parametrize(
        ("argv", "stdin", "message"),
        [
            (["users", "create", "a@example.com"], PASSWORD, "--password-stdin"),
            (["users", "create", "a@example.com", "--password-stdin"], "short\n", "at least"),
            (["users", "create", "a@example.com", "--password-stdin"], "", "at least"),
            (["users", "create", "not-an-email", "--password-stdin"], PASSWORD, "valid email"),
            (["users", "create", "a@example.com", "--password-stdin"], "password1234\n", "too easy"),
        ],
    )
    def test_user_errors(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        services: Services,
        argv: list[str],
        stdin: str,
        message: str,
    ) -> None:
        _stdin(monkeypatch, stdin)

        assert main(argv) == 1

        assert message in _one_line_error(capsys)
        assert services.users.count() == 0

    def test_duplicate(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        make_user(services, "dup@example.com")
        _stdin(monkeypatch, PASSWORD)

        assert main(["users", "create", "DUP@example.com", "--password-stdin"]) == 1

        assert "already exists" in _one_line_error(capsys)
        assert services.users.count() == 1


class TestKeysCreate:
    def test_prints_only_the_key_on_stdout(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        account = make_user(services, "dev@example.com")

        assert main(["keys", "create", "--user", "dev@example.com", "--name", "laptop"]) == 0

        out, err = capsys.readouterr()
        raw = out.removesuffix("\n")
        assert out == raw + "\n"
        parsed = keys.parse(raw)
        [record] = services.keys.list_for_account(account.id)
        assert record.name == "laptop"
        assert record.hint == parsed.hint
        assert services.keys.find_by_hash(parsed.digest) == record
        assert raw not in err
        assert record.id in err
        assert "not be shown again" in err
        events = services.security_log.list_for_account(account.id)
        assert "key.created" in [e.action for e in events]
        assert all(raw not in e.detail for e in events)

    def test_with_expiry_and_read_only(self, capsys: pytest.CaptureFixture[str], services: Services) -> None:
        account = make_user(services, "dev@example.com")

        argv = ["keys", "create", "--user", "dev@example.com", "--name", "ci", "--read-only"]
        assert main([*argv, "--expires-at", "2031-01-31T12:00:00+01:00"]) == 0

        [record] = services.keys.list_for_account(account.id)
        assert record.read_only is True
        assert record.expires_at is not None
        assert record.expires_at.isoformat() == "2031-01-31T11:00:00+00:00"

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            (["--expires-at", "next tuesday"], "--expires-at"),
            (["--expires-at", "2001-01-01"], "future"),
            (["--expires-at", "9999-12-31T23:59:59-01:00"], "too far"),
            (["--name", ""], "--name"),
            (["--name", "x" * 101], "--name"),
            (["--name", "bell\x07here"], "--name"),
        ],
    )
    def test_user_errors(
        self, capsys: pytest.CaptureFixture[str], services: Services, extra: list[str], message: str
    ) -> None:
        account = make_user(services, "dev@example.com")

        assert main(["keys", "create", "--user", "dev@example.com", "--name", "ci", *extra]) == 1

        assert message in _one_line_error(capsys)
        assert services.keys.list_for_account(account.id) == []

    def test_unknown_user(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["keys", "create", "--user", "nobody@example.com", "--name", "ci"]) == 1

        assert "nobody@example.com" in _one_line_error(capsys)


class TestKeysList:
    def test_json_never_contains_the_key(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        account = make_user(services, "dev@example.com")
        raw_a, a = make_api_key(services, account, name="first")
        raw_b, b = make_api_key(services, account, name="second")
        services.keys.revoke(a.id)

        assert main(["keys", "list", "--user", "dev@example.com", "--json"]) == 0

        out, _ = capsys.readouterr()
        listed = json.loads(out)["keys"]
        assert [k["id"] for k in listed] == [b.id, a.id]
        assert [k["state"] for k in listed] == ["active", "revoked"]
        assert listed[0].keys() >= {"id", "name", "hint", "created_at", "last_used_at", "expires_at", "state"}
        for raw in (raw_a, raw_b):
            assert raw not in out
            assert raw[len("thot_ak_") :][4:-4] not in out

    def test_table(self, capsys: pytest.CaptureFixture[str], services: Services) -> None:
        account = make_user(services, "dev@example.com")
        raw, record = make_api_key(services, account, name="laptop")

        assert main(["keys", "list", "--user", "dev@example.com"]) == 0

        out, _ = capsys.readouterr()
        header, row = out.splitlines()
        assert header.split() == [
            "ID", "NAME", "HINT", "CREATED", "LAST", "USED", "EXPIRES", "STATE", "RATE", "LIMIT", "LAST",
            "USER-AGENT",
        ]  # fmt: skip
        assert row.startswith(record.id)
        assert record.hint in row
        assert "never" in row
        assert row.endswith("active  default     -")
        assert raw not in out

    def test_table_and_json_show_a_keys_own_limit(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        account = make_user(services, "dev@example.com")
        _, record = make_api_key(services, account, name="laptop")
        assert main(["keys", "limit", record.id, "100 per minute"]) == 0
        assert "is now limited to 100/minute" in capsys.readouterr().err

        assert main(["keys", "list", "--user", "dev@example.com"]) == 0
        _, row = capsys.readouterr()[0].splitlines()
        assert row.endswith("active  100/minute  -")
        assert main(["keys", "list", "--user", "dev@example.com", "--json"]) == 0
        assert json.loads(capsys.readouterr()[0])["keys"][0]["rate_limit"] == "100/minute"

        assert main(["keys", "limit", record.id, "default"]) == 0
        assert "is now limited to the server's default (600/minute)" in capsys.readouterr().err
        assert services.keys.get(record.id).rate_limit is None
        assert main(["keys", "limit", record.id, "default"]) == 0
        assert "was already limited to the server's default" in capsys.readouterr().err
        events = services.security_log.list_for_account(account.id)
        assert [(e.action, e.actor) for e in events] == [("key.rate_limit_changed", "operator")] * 2

    def test_allow_twice_says_nothing_changed(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        _, record = make_api_key(services)

        assert main(["keys", "allow", record.id, "192.0.2.0/24"]) == 0
        capsys.readouterr()
        assert main(["keys", "allow", record.id, "192.0.2.0/24"]) == 0

        assert "could already be used from 192.0.2.0/24" in capsys.readouterr().err
        events = services.security_log.list_for_account(record.account_id)
        assert [(e.action, e.actor) for e in events] == [("key.networks_changed", "operator")]

    def test_table_says_how_a_key_was_revoked(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        account = make_user(services, "dev@example.com")
        _, by_owner = make_api_key(services, account, name="a")
        _, by_operator = make_api_key(services, account, name="b")
        services.key_lifecycle.revoke(account.id, by_owner.id, Actor.api_key(by_owner.id, None, None))
        assert main(["keys", "revoke", by_operator.id]) == 0
        capsys.readouterr()

        assert main(["keys", "list", "--user", "dev@example.com"]) == 0

        rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
        assert "revoked by the owner" in rows[by_owner.id]
        assert "revoked by the operator" in rows[by_operator.id]

    def test_table_shows_the_last_user_agent(
        self, capsys: pytest.CaptureFixture[str], services: Services
    ) -> None:
        account = make_user(services, "dev@example.com")
        _, record = make_api_key(services, account, name="laptop")
        services.usage.write(
            UsageBatch(last_used={record.id: KeyUsage(utcnow(), "acme-sync/2.3.1 (ops@acme.example)")})
        )

        assert main(["keys", "list", "--user", "dev@example.com"]) == 0

        _, row = capsys.readouterr()[0].splitlines()
        assert row.endswith("active  default     acme-sync/2.3.1 (ops@acme.example)")

    def test_no_keys(self, capsys: pytest.CaptureFixture[str], services: Services) -> None:
        make_user(services, "dev@example.com")

        assert main(["keys", "list", "--user", "dev@example.com"]) == 0

        out, err = capsys.readouterr()
        assert out == ""
        assert "no keys" in err

    def test_unknown_user(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["keys", "list", "--user", "nobody@example.com", "--json"]) == 1

        _one_line_error(capsys)


class TestKeysRevokeAndGrant:
    def test_revoke(self, capsys: pytest.CaptureFixture[str], services: Services) -> None:
        _, record = make_api_key(services)
        seq = services.keys.latest_change()

        assert main(["keys", "revoke", record.id]) == 0

        assert services.keys.get(record.id).revoked_at is not None
        assert services.keys.changes_since(seq)[1] == [record.id]
        assert record.id in capsys.readouterr().err
        assert main(["keys", "revoke", record.id]) == 0
        assert "already revoked" in capsys.readouterr().err

    @pytest.mark.parametrize("key_id", ["key_0000000000000000", "x" * 500])
    def test_revoke_unknown(
        self, capsys: pytest.CaptureFixture[str], services: Services, key_id: str
    ) -> None:
        assert main(["keys", "revoke", key_id]) == 1

        assert "No API key" in _one_line_error(capsys)

    def test_grant(self, capsys: pytest.CaptureFixture[str], services: Services) -> None:
        _, record = make_api_key(services)

        assert main(["keys", "grant", record.id, "account:security"]) == 0

        assert services.keys.get(record.id).grants == frozenset({"account:security"})
        events = services.security_log.list_for_account(record.account_id)
        assert [(e.action, e.actor) for e in events] == [("key.granted", "operator")]

    @pytest.mark.parametrize("grant", ["admin", "account:*", ""])
    def test_grant_unknown_grant(
        self, capsys: pytest.CaptureFixture[str], services: Services, grant: str
    ) -> None:
        _, record = make_api_key(services)

        assert main(["keys", "grant", record.id, grant]) == 1

        assert "account:security" in _one_line_error(capsys)
        assert services.keys.get(record.id).grants == frozenset()

    def test_grant_unknown_key(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["keys", "grant", "key_0000000000000000", "account:security"]) == 1

        _one_line_error(capsys)


class TestUsageAndSettings:
    @pytest.mark.parametrize(
        "argv",
        [
            ["nonsense"],
            ["keys"],
            ["keys", "create", "--user", "a@example.com"],
            ["keys", "revoke"],
            ["users", "create"],
            ["serve", "--port", "eighty"],
            ["db"],
        ],
    )
    def test_wrong_usage_exits_2(self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
        with pytest.raises(SystemExit) as exc_info:
            main(argv)

        assert exc_info.value.code == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert "usage: thotbot" in err
        assert "Traceback" not in err

    def test_no_command_prints_help_and_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2

        assert "usage: thotbot" in capsys.readouterr().err

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exc_info:
            main(["--version"])

        assert exc_info.value.code == 0
        assert capsys.readouterr().out == f"thotbot {__version__}\n"

    def test_db_upgrade(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["db", "upgrade"]) == 0
        assert main(["db", "upgrade"]) == 0  # idempotent

        assert "up to date" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("THOTBOT_LOG_FORMAT", "xml"),
            ("THOTBOT_RATE_LIMIT", "lots"),
            ("THOTBOT_PUBLIC_URL", "localhost"),
            ("THOTBOT_DATABASE_URL", "mysql://root:hunter2hunter2@db/thotbot"),
            ("THOTBOT_DATABASE_URL", "postgresql+psycopg://u:hunter2hunter2@db:port/thotbot"),
        ],
    )
    def test_a_bad_setting_is_one_line_naming_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
    ) -> None:
        with monkeypatch.context() as patch:  # undone before the database fixture cleans up
            patch.setenv(variable, value)
            assert main(["keys", "list", "--user", "a@example.com"]) == 1

        err = _one_line_error(capsys)
        assert err.startswith(f"thotbot: error: {variable}: ")
        assert "hunter2hunter2" not in err

    def test_unreachable_postgresql_is_one_line_without_the_password(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Port 1 on loopback: nothing listens there, the connection is refused at once.
        monkeypatch.setenv(
            "THOTBOT_DATABASE_URL", "postgresql+psycopg://thotbot:hunter2hunter2@127.0.0.1:1/x"
        )

        assert main(["keys", "list", "--user", "a@example.com"]) == 1

        err = _one_line_error(capsys)
        assert "database" in err
        assert "127.0.0.1" in err
        assert "hunter2hunter2" not in err

    def test_unusable_sqlite_path_is_one_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        monkeypatch.setenv("THOTBOT_DATABASE_URL", f"sqlite:///{blocker}/thotbot.db")

        assert main(["db", "upgrade"]) == 1

        assert "THOTBOT_DATABASE_URL" in _one_line_error(capsys)


def test_a_reader_that_goes_away_gets_no_traceback(
    services: Services, sqlite_url: str, tmp_path: Path
) -> None:
    """`thotbot keys list --json | head -c 100`: the pipe closes early; the command stops quietly."""
    import os
    import subprocess
    import sys

    account = make_user(services, "dev@example.com")
    for n in range(300):
        make_api_key(services, account, name=f"key {n}")
    env = dict(os.environ)  # THOTBOT_DATABASE_URL: this test's database (the autouse fixture)
    command = [sys.executable, "-m", "thotbot", "keys", "list", "--user", "dev@example.com", "--json"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.read(100)
        process.stdout.close()  # as `head -c 100` does
        err = process.stderr.read().decode()
        process.wait(timeout=60)

    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
