"""Many API keys for one account, fast: the bench's way to fill a key store with N keys.

    python bench/bulk_keys.py --database-url URL --email bench@example.com --count 1000000 \
                              [--keys-in-use 1000 --secrets-file PATH]

The CLI first runs `thotbot db upgrade` (the schema) and `thotbot users create` (one account, with a
random password given on standard input), then inserts ``--count`` keys for that account and writes
the first ``--keys-in-use`` of them, one a line, to ``--secrets-file``, a file only the current user
can read (0600). It prints the account id and the time taken, never a key.

Each key is made as `thotbot keys create` makes one (``thotbot.core.keys``: 384 random bits, its
SHA-256 stored, a hint shown), but the rows go in with SQLAlchemy Core ``insert()`` in chunks of
10,000 (executemany) rather than one ORM transaction each: hundreds of thousands of keys a minute,
where the CLI makes a few a second. Bulk keys get no security-log entry and no ``key_events`` row: a
new key evicts nothing from a cache.

As a module: ``create_keys(url, account_id, count, keep=M)`` returns the first M secrets;
``write_secrets(path, secrets)`` writes them 0600; ``prepare(...)`` does what the CLI does.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from _common import private_file, thotbot_cli
from sqlalchemy import insert, select, text

from thotbot.core import keys
from thotbot.core.dates import utcnow
from thotbot.storage.db import make_engine
from thotbot.storage.models import Account, APIKey

__all__ = ["CHUNK", "account_id_for", "create_keys", "prepare", "write_secrets"]

#: Rows per executemany: large enough that a round trip is rare, small enough to stay a few MB.
CHUNK = 10_000


def _rows(account_id: str, count: int, keep: int, kept: list[str]) -> Iterator[list[dict[str, object]]]:
    """Chunks of ``api_keys`` rows; the first ``keep`` raw keys are appended to ``kept``."""
    now = utcnow()
    chunk: list[dict[str, object]] = []
    for number in range(count):
        raw = keys.generate()
        if number < keep:
            kept.append(raw)
        chunk.append(
            {
                "id": "key_" + secrets.token_hex(8),
                "account_id": account_id,
                "name": f"bench {number + 1}",
                "key_hash": keys.hash_key(raw),
                "hint": keys.hint(raw),
                "read_only": False,
                "grants": "",
                "created_at": now,
            }
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def create_keys(database_url: str, account_id: str, count: int, *, keep: int = 0) -> list[str]:
    """Insert ``count`` keys for ``account_id``; return the raw secrets of the first ``keep`` of them."""
    kept: list[str] = []
    engine = make_engine(database_url)
    try:
        statement = insert(APIKey.__table__)
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                # 3 indexes of random values (id, key_hash, account_id): keep their pages in memory.
                connection.execute(text("PRAGMA cache_size = -500000"))
            for chunk in _rows(account_id, count, keep, kept):
                connection.execute(statement, chunk)
    finally:
        engine.dispose()
    return kept


def account_id_for(database_url: str, email: str) -> str:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(select(Account.id).where(Account.email == email.lower())).scalar()
    finally:
        engine.dispose()
    if found is None:
        raise LookupError(f"no account {email}")
    return str(found)


def write_secrets(path: Path, raw_keys: Sequence[str]) -> None:
    """One key a line in a file only the current user can read or write (0600), made so before any key."""
    private_file(path, "".join(f"{raw}\n" for raw in raw_keys))


def prepare(
    database_url: str, email: str, count: int, keep: int, workdir: Path | None = None
) -> tuple[str, list[str]]:
    """The schema, one account made by the CLI, ``count`` keys for it: (account id, first ``keep`` keys)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    env["THOTBOT_DATABASE_URL"] = database_url
    workdir = workdir or Path.cwd()
    thotbot_cli(["db", "upgrade"], env, workdir)
    password = secrets.token_urlsafe(24)
    account_id = thotbot_cli(["users", "create", email, "--password-stdin"], env, workdir, password)
    return account_id, create_keys(database_url, account_id, count, keep=keep)


def main() -> None:
    parser = argparse.ArgumentParser(description="Create many API keys for one new account, fast.")
    parser.add_argument(
        "--database-url", required=True, help="SQLAlchemy URL (sqlite:///... or postgresql://...)"
    )
    parser.add_argument("--email", default="bench@example.com", help="the account to create")
    parser.add_argument("--count", type=int, required=True, help="keys to create")
    parser.add_argument("--keys-in-use", type=int, default=0, help="how many keys to write to --secrets-file")
    parser.add_argument("--secrets-file", type=Path, help="where the first --keys-in-use keys go (mode 0600)")
    args = parser.parse_args()
    if args.count < 1 or not 0 <= args.keys_in_use <= args.count:
        parser.error("--count must be positive and --keys-in-use between 0 and --count")
    if args.keys_in_use and args.secrets_file is None:
        parser.error("--keys-in-use needs --secrets-file")
    started = time.perf_counter()
    account_id, kept = prepare(args.database_url, args.email, args.count, args.keys_in_use)
    if args.secrets_file is not None:
        write_secrets(args.secrets_file, kept)
    elapsed = time.perf_counter() - started
    print(f"account {account_id}: {args.count} keys in {elapsed:.1f} s ({args.count / elapsed:,.0f} keys/s)")


if __name__ == "__main__":
    main()
