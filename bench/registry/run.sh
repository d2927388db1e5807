#!/usr/bin/env bash
# Registry: driftline's registry on SQLite and on PostgreSQL vs an MLflow
# tracking server (SQLite backend store), all on loopback, in one run. Each logs
# the same records — 1 000 versions of one model with lineage, gate metrics, a
# 20-epoch training curve and a champion change each — then times the model's
# history (1 000 versions with gate metrics). Prints one JSON line per side and
# a summary table; RESULTS.md has the figures and the method.
#
#   bash bench/registry/run.sh            # from anywhere
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/registry
WORK=$PWD/$HERE/work
rm -rf "$WORK"
mkdir -p "$WORK"

# MLflow from PyPI, in a venv of its own.
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/.venv/bin/python" -c 'import mlflow' 2>/dev/null; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# PostgreSQL refuses to run as root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PG_BIN" ]; then
  echo "PostgreSQL not found: apt-get install -y postgresql" >&2
  exit 1
fi
PGDIR=$(mktemp -d)
[ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
PGPORT=$(free_port)
MLPORT=$(free_port)
MLFLOW_PID=
cleanup() {
  [ -n "$MLFLOW_PID" ] && kill "$MLFLOW_PID" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
}
trap cleanup EXIT

# A throwaway PostgreSQL with its default durability (fsync, synchronous commit).
as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U driftline -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null

# The MLflow tracking server, one worker, SQLite backend store in WORK.
"$HERE/.venv/bin/mlflow" server --host 127.0.0.1 --port "$MLPORT" --workers 1 \
  --backend-store-uri "sqlite:///$WORK/mlflow.db" \
  --default-artifact-root "$WORK/mlartifacts" >"$WORK/mlflow-server.log" 2>&1 &
MLFLOW_PID=$!
# Wait until it serves: its start-up (imports, workers) would otherwise load
# the CPU while driftline's side runs.
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$MLPORT/health" >/dev/null 2>&1 && break
  sleep 1
done

# driftline's own code at opt-level 3 as in a release build (see bench/build.sh).
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --quiet --example registry_bench -- \
  "sqlite://$WORK/registry.db" "postgres://driftline@127.0.0.1:$PGPORT/postgres" \
  | tee "$WORK/driftline.jsonl"

"$HERE/.venv/bin/python" "$HERE/mlflow_bench.py" "http://127.0.0.1:$MLPORT" | tee "$WORK/mlflow.jsonl"

python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
rows = [json.loads(l) for l in open(f"{work}/driftline.jsonl")]
ml = json.loads(open(f"{work}/mlflow.jsonl").read())
print()
print(f"| side | records/s | history of 1 000 versions, p50 / p95 |")
print(f"|---|---|---|")
for r in rows:
    print(f"| driftline {r['backend']}, buffered writer | {r['buffered_writer_records_per_s']:,.0f} "
          f"({r['buffered_writer_records_per_s'] / ml['records_per_s']:.1f}x MLflow) | "
          f"{r['history_1000_ms_p50']:.1f} / {r['history_1000_ms_p95']:.1f} ms "
          f"(1/{ml['history_1000_ms_p50'] / r['history_1000_ms_p50']:.0f} of MLflow's p50) |")
    print(f"| driftline {r['backend']}, one transaction per version | "
          f"{r['per_version_tx_records_per_s']:,.0f} "
          f"({r['per_version_tx_records_per_s'] / ml['records_per_s']:.1f}x MLflow) | same table |")
print(f"| MLflow tracking server ({ml['http_calls']} HTTP calls) | {ml['records_per_s']:,.0f} | "
      f"{ml['history_1000_ms_p50']:.1f} / {ml['history_1000_ms_p95']:.1f} ms |")
EOF
