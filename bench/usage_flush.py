"""One usage flush of many keys in use, timed: what the background flush costs the database and its thread.

    python bench/usage_flush.py [--database postgresql|sqlite] [--keys 50000] [--flushes 3]

A temporary database (a new PostgreSQL database at 127.0.0.1:5432, user ``postgres``, dropped
afterwards; or a SQLite file) gets the schema, one account and ``--keys`` keys (bulk_keys.py). Then
``SQLUsageStore.write`` is timed on one batch such as a flush of that many keys makes: for each key
one day's count, one User-Agent, one client address and its last use, so four rows a key. The first
flush inserts every row; the following ones add to existing rows (the server's steady state).
Wall time and this process's CPU time (psycopg's conversions, SQLAlchemy) are printed per flush.

    python bench/usage_flush.py --recorders [--database ...] [--keys 20000] [--flushes 3]

times the two recorders' whole flushes instead (``UsageRecorder._write`` and
``RequestLogRecorder._write``: building the batch from the window, then the store's write), each
key sending one request a flush, all with one User-Agent, as thousands of instances of one
integration do. Printed is the flushing thread's CPU per request (its own time: psycopg's ``wait``
on the database is not counted) and the wall time per request.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from _common import temporary_database
from bulk_keys import create_keys
from sqlalchemy import select

from thotbot.core.dates import utcnow
from thotbot.storage import KeyUsage
from thotbot.storage.db import SessionFactory, make_engine, make_session_factory
from thotbot.storage.migrate import upgrade
from thotbot.storage.models import Account, APIKey
from thotbot.storage.request_log import SQLRequestLog
from thotbot.storage.usage import AgentCount, ClientCount, DayCount, SQLUsageStore, UsageBatch
from thotbot.usage.recorder import UsageRecorder
from thotbot.usage.requests import RequestLogRecorder

USER_AGENT = "acme-sync/2.3.1 (ops@acme.example)"


def batch(key_ids: list[str], shift: int) -> UsageBatch:
    now = utcnow() + timedelta(seconds=shift)
    day = now.date()
    return UsageBatch(
        days=[DayCount(key_id, day, 3) for key_id in key_ids],
        agents=[AgentCount(key_id, "acme-sync/2.3.1 (ops@acme.example)", now, now, 3) for key_id in key_ids],
        clients=[
            ClientCount(key_id, day, hashlib.blake2b(key_id.encode(), digest_size=16).digest(), 3)
            for key_id in key_ids
        ],
        last_used={key_id: KeyUsage(now, "acme-sync/2.3.1 (ops@acme.example)") for key_id in key_ids},
    )


def time_recorders(sessions: SessionFactory, key_ids: list[str], database: str, flushes: int) -> None:
    usage = UsageRecorder(SQLUsageStore(sessions), max_entries=10**7, max_clients=10**7)
    requests = RequestLogRecorder(
        SQLRequestLog(sessions), max_keys=10**7, max_entries=10**7, max_counts=10**7
    )
    print(f"{database}: {len(key_ids)} keys in use, one request each a flush")
    for n in range(flushes):
        now = time.time()
        for i, key_id in enumerate(key_ids):
            at = now + i * 1e-5
            usage.record(key_id, at, USER_AGENT, f"10.0.{i % 200}.{i % 250}")
            requests.record(key_id, at, "GET", "/v1/version", 200, None, USER_AGENT, 0.0004)
        recorders: list[tuple[str, UsageRecorder | RequestLogRecorder]] = [
            ("usage", usage),
            ("request log", requests),
        ]
        for name, recorder in recorders:
            window = recorder._take()
            wall, cpu = time.perf_counter(), time.thread_time()
            recorder._write(window)  # type: ignore[arg-type]
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            per = 1e6 / len(key_ids)
            print(f"flush {n + 1} {name:>11}: {cpu * per:6.1f} us CPU, {wall * per:6.1f} us wall a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--flushes", type=int, default=3)
    parser.add_argument("--recorders", action="store_true", help="time both recorders' flushes per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, temporary_database(args.database, Path(tmp)) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            account = Account(id="acc_bench", email="bench@example.com", created_at=utcnow())
            sessions = make_session_factory(engine)
            with sessions.begin() as session:
                session.add(account)
            create_keys(url, account.id, args.keys)
            with sessions() as session:
                key_ids = list(session.scalars(select(APIKey.id)))
            if args.recorders:
                time_recorders(sessions, key_ids, args.database, args.flushes)
                return
            store = SQLUsageStore(sessions)
            rows = 4 * len(key_ids)
            print(f"{args.database}: {len(key_ids)} keys in use, 4 rows a key ({rows} rows a flush)")
            for n in range(args.flushes):
                flush = batch(key_ids, n)
                wall, cpu = time.perf_counter(), time.process_time()
                store.write(flush)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                kind = "inserts" if n == 0 else "updates"
                print(f"flush {n + 1} ({kind}): {wall * 1000:8.0f} ms wall, {cpu * 1000:8.0f} ms CPU here")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
