#!/usr/bin/env bash
# `thotbot serve --workers 1` beside `--workers 2`: requests/s, p99 and CPU per request; and bare
# Starlette (bench/auth_throughput.py's, no authentication) with 1 and 2 uvicorn workers, the most
# a second worker can add on this machine while wrk shares its cores.
#
#   bench/workers.sh [ROUNDS] [SECONDS]     (defaults: 2 rounds of 8 s)
#
# SQLite in a temporary directory, no Redis (so two workers share the rate limits through the
# database), 100 keys made by bench/bulk_keys.py and taken in turn by `wrk -t2 -c64`. The keys reach
# wrk through a file only this user can read. CPU is the servers' utime+stime, all processes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
SECONDS_PER_RUN=${2:-8}
PY=.venv/bin/python
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export THOTBOT_DATABASE_URL="sqlite:///$WORK/thotbot.db"
export THOTBOT_RATE_LIMIT=1000000000/minute THOTBOT_ANON_RATE_LIMIT=1000000000/minute
(cd bench && "../$PY" bulk_keys.py --database-url "$THOTBOT_DATABASE_URL" --email bench@example.com \
  --count 100 --keys-in-use 100 --secrets-file "$WORK/keys.txt") >/dev/null
(cd bench && "../$PY" -c "
from pathlib import Path
from _common import keys_script
keys_script(Path('$WORK/keys.lua'), Path('$WORK/keys.txt'), '/v1/version', 'thotbot-bench/1.0 (bench/workers.sh)')")
cpu_ticks() {
  local total=0 fields
  for pid in "$@"; do
    read -r -a fields < <(cut -d')' -f2 "/proc/$pid/stat")
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
# Bare Starlette gets the heap `thotbot serve` gives itself (glibc's malloc on huge pages).
HEAP=$($PY -c "import os; from thotbot.hugepages import tunables_with_huge_pages as t
print(t(os.environ) or os.environ.get('GLIBC_TUNABLES', ''))")
echo "round  server   workers  requests/s  p99  CPU/request"
for round in $(seq "$ROUNDS"); do
  for app in thotbot bare; do
  for workers in 1 2; do
    port=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    if [ "$app" = thotbot ]; then
      "$PY" -m thotbot serve --port "$port" --workers "$workers" >"$WORK/serve.log" 2>&1 &
    else
      GLIBC_TUNABLES=$HEAP "$PY" -m uvicorn --app-dir bench auth_throughput:bare_app --factory \
        --port "$port" --workers "$workers" --http httptools --loop uvloop --no-access-log \
        --no-server-header --log-level warning >"$WORK/serve.log" 2>&1 &
    fi
    server=$!
    # Any answer: bare Starlette has no /healthz.
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
    wrk -t2 -c64 -d2s -s "$WORK/keys.lua" "http://127.0.0.1:$port/v1/version" >/dev/null
    pids=("$server" $(pgrep -P "$server" || true))
    before=$(cpu_ticks "${pids[@]}")
    out=$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/keys.lua" "http://127.0.0.1:$port/v1/version")
    after=$(cpu_ticks "${pids[@]}")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers: $(grep Non-2xx <<<"$out")" >&2; exit 1; fi
    cpu=$($PY -c "print(round(($after - $before) / $(getconf CLK_TCK) / ($rps * $SECONDS_PER_RUN) * 1e6, 1))")
    printf '%5s  %-7s  %7s  %10s  %s  %s us\n' "$round" "$app" "$workers" "$rps" "$p99" "$cpu"
    kill "$server"; wait "$server" 2>/dev/null || true
  done
  done
done
