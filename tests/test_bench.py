"""bench/bulk_keys.py, the benchmarks' fast path to many keys: what it makes are real, working keys.

On a real SQLite file and a real PostgreSQL database (the bench's two backends): the keys it inserts
with SQLAlchemy Core authenticate through the real KeyVerifier (the guard's own path: SHA-256, cache,
key store), each under its own record for the one account, and the file it writes their secrets to
is readable by the current user only.
"""

from __future__ import annotations

import importlib.util
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.factories import make_user
from thotbot.auth.cache import KeyCache
from thotbot.auth.verifier import KeyVerifier
from thotbot.core import keys
from thotbot.core.errors import InvalidAPIKey
from thotbot.ratelimit import RateLimiter
from thotbot.services import Services

BENCH = Path(__file__).resolve().parent.parent / "bench"
COUNT = 200


def _bench_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/<name>.py as the benchmarks import it, with bench/ on the path (they import _common)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bulk_keys(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _bench_module("bulk_keys", monkeypatch)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def limiter() -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter("600/minute", "600/minute")
    yield limiter
    await limiter.close()


@pytest.mark.anyio
async def test_bulk_keys_authenticate_through_the_key_verifier(
    bulk_keys: ModuleType, services: Services, database_url: str, limiter: RateLimiter
) -> None:
    account = make_user(services)
    raw_keys: list[str] = bulk_keys.create_keys(database_url, account.id, COUNT, keep=COUNT)
    assert len(set(raw_keys)) == COUNT

    verifier = KeyVerifier(services.keys, KeyCache(), limiter)
    records = {record.id: record for record in services.keys.list_for_account(account.id)}
    assert len(records) == COUNT
    for raw in raw_keys:
        entry = await verifier.verify(b"Bearer " + raw.encode())
        assert entry.account_id == account.id
        assert records[entry.key_id].hint == keys.hint(raw)
        assert entry.revoked_ts is None
        assert entry.expires_ts is None
        assert entry.identity.key_id == entry.key_id
    assert len({(await verifier.verify(b"Bearer " + raw.encode())).key_id for raw in raw_keys}) == COUNT
    with pytest.raises(InvalidAPIKey):
        await verifier.verify(b"Bearer " + keys.generate().encode())


def test_bulk_keys_keeps_only_the_first_keys_asked_for(
    bulk_keys: ModuleType, services: Services, database_url: str
) -> None:
    account = make_user(services)
    kept: list[str] = bulk_keys.create_keys(database_url, account.id, 25, keep=3)
    assert len(kept) == 3
    assert len(services.keys.list_for_account(account.id)) == 25
    by_digest = {services.keys.find_by_hash(keys.hash_key(raw)) for raw in kept}
    assert None not in by_digest
    assert sorted(r.name for r in by_digest if r is not None) == ["bench 1", "bench 2", "bench 3"]


def test_the_secrets_file_is_the_users_alone(bulk_keys: ModuleType, tmp_path: Path) -> None:
    raw_keys = [keys.generate() for _ in range(3)]
    path = tmp_path / "keys.txt"
    path.write_text("older content\n")
    path.chmod(0o644)  # a file left readable by others is made private before a key is written

    bulk_keys.write_secrets(path, raw_keys)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="ascii").splitlines() == raw_keys


def test_ab_takes_two_source_trees_and_refuses_anything_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """bench/ab.py runs two builds from their source trees: a folder without src/thotbot is refused
    by name before anything starts, not by a server that fails to import."""
    ab = _bench_module("ab", monkeypatch)

    assert ab._tree(str(BENCH.parent)) == BENCH.parent
    with pytest.raises(SystemExit, match="not a source tree of Thotbot"):
        ab._tree(str(tmp_path))


def test_loop_stalls_names_the_work_that_overlapped_each_stall(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/loop_stalls.py's report: the lag's percentiles, each kind of work with its CPU time,
    and each stall of 20 ms or more beside the work that ran during it, and only that work."""
    loop_stalls = _bench_module("loop_stalls", monkeypatch)
    lags = [[100.0 + n * 0.002, 0.0005] for n in range(1000)]
    lags[500] = [101.0, 0.060]  # 60 ms from 101.0 s on
    work = [
        ["usage flush", 100.99, 101.2, 0.150],
        ["gc gen 1", 101.01, 101.03, 0.020],
        ["request-log flush", 101.5, 101.6, 0.040],
        ["access-log drain", 100.9, 101.1, None],
    ]
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps({"work": work, "lags": lags}))

    loop_stalls.report(probes)

    said = capsys.readouterr().out
    assert "p50 0.50" in said
    assert "max 60.0" in said
    assert "stalls of 20 ms or more: 1;" in said
    [stall] = [line for line in said.splitlines() if line.startswith("  at ")]
    assert stall.endswith("60.0 ms  gc gen 1, usage flush")
    [usage] = [line for line in said.splitlines() if line.startswith("usage flush")]
    assert usage.split()[2:5] == ["1", "0.15", "150.0"]
