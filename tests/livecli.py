"""A real `thotbot serve` with an account, and the CLI run against its database, for end-to-end tests."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.factories import make_user
from tests.live import LiveServer, start_server
from thotbot import mail
from thotbot.__main__ import main as thotbot_main
from thotbot.config import load_settings
from thotbot.core import keys
from thotbot.services import build_services

__all__ = ["EMAIL", "PASSWORD", "Deployment", "deploy", "run_in_process"]

THOTBOT = str(Path(sys.executable).parent / "thotbot")
EMAIL = "ops@example.com"
PASSWORD = "a long enough password"


@dataclass
class Deployment(LiveServer):
    #: Where its SQLite database is.
    data: Path = Path()

    def cli(
        self, *args: str, stdin: str | None = None, process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI against the same database, with the server's environment: in this process
        (a `thotbot` process takes a second or two to start), or with ``process`` in another one,
        as an operator's shell runs it."""
        if process:
            return subprocess.run(
                [THOTBOT, *args],
                input=stdin,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        return run_in_process(args, self.env, stdin)

    def create_key(self, name: str, *extra: str, process: bool = False) -> str:
        done = self.cli("keys", "create", "--user", EMAIL, "--name", name, *extra, process=process)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def key_id(self, raw: str) -> str:
        """The key's id, read from the database (a CLI process would take a second or two to start)."""
        database = sqlite3.connect(f"file:{self.data / 'thotbot.db'}?mode=ro", uri=True)
        try:
            query = "SELECT id FROM api_keys WHERE key_hash = ?"
            [(key_id,)] = database.execute(query, (keys.hash_key(raw),))
        finally:
            database.close()
        return str(key_id)

    def stored(self) -> str:
        """Every file of the SQLite database (the -wal and -shm too), as text."""
        return "".join(p.read_bytes().decode("latin-1") for p in sorted(self.data.glob("thotbot.db*")))


def deploy(
    workdir: Path,
    settings: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    workers: int = 1,
    public_url: bool = False,
) -> Deployment:
    """A server on SQLite under ``workdir``, with lenient rate limits, and the account EMAIL."""
    data = workdir / "data"
    server = start_server(
        workdir,
        {
            "THOTBOT_DATABASE_URL": f"sqlite:///{data / 'thotbot.db'}",
            # Every request comes from one address here; the limits have their own tests.
            "THOTBOT_RATE_LIMIT": "100000/minute",
            "THOTBOT_ANON_RATE_LIMIT": "100000/minute",
            **settings,
        },
        host=host,
        workers=workers,
        public_url=public_url,
    )
    # The server has migrated the database: the account is made in process, through the same stores
    # and as `thotbot users create` makes it (that has its own tests; another CLI process would take
    # seconds to start).
    services = build_services(load_settings(database_url=server.env["THOTBOT_DATABASE_URL"]))
    try:
        account = make_user(services, EMAIL, password=PASSWORD)
        services.security_log.record(
            account.id, "account.created", actor="operator", detail="created with the CLI"
        )
    finally:
        services.engine.dispose()
    return Deployment(server.process, server.port, server.log, server.env, server.host, data=data)


def run_in_process(
    args: Sequence[str], env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`thotbot ARGS` called in this process as the command would run it: with exactly ``env`` as
    its environment, ``stdin`` as its standard input, its output captured, no logging set up (as in
    a fresh process: what it logs goes to its stderr) and the mail it queued delivered before it
    returns (as at its exit). The environment, sys.argv, the standard streams and every logger are
    restored afterwards, so nothing of the run stays in this process."""
    assert list(args[:1]) != ["serve"], "serve runs until stopped: start_server starts one"
    command = [THOTBOT, *args]
    out, err = io.StringIO(), io.StringIO()
    mailers = set(mail._live)  # as at exit: the mailers this run starts are closed
    with (
        _environment(env),
        _fresh_logging(),
        _swapped(sys, "argv", command),
        _swapped(sys, "stdin", io.StringIO(stdin or "")),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = thotbot_main(list(args))
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = _exit_status(exc.code)
        except Exception:  # as the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        finally:
            for mailer in set(mail._live) - mailers:
                mailer.close()
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ is exactly ``env`` inside, and exactly what it was before after."""
    before = dict(os.environ)
    _set_environ(env)
    try:
        yield
    finally:
        _set_environ(before)


def _set_environ(env: Mapping[str, str]) -> None:
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@contextlib.contextmanager
def _fresh_logging() -> Iterator[None]:
    """No handler on the root logger inside (as in a new process: pytest's own are put back after),
    and every logger's handlers, level, propagation and state as they were, after."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    saved = {
        logger: (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
        for logger in loggers
        if isinstance(logger, logging.Logger)
    }
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger in logging.Logger.manager.loggerDict.values():
            if isinstance(logger, logging.Logger) and logger not in saved:
                logger.handlers[:] = []  # a logger first made by this run keeps no handler
        for logger, (handlers, level, propagate, disabled) in saved.items():
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


@contextlib.contextmanager
def _swapped(owner: object, name: str, value: object) -> Iterator[None]:
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)
