#!/usr/bin/env bash
# The 14-day error report over one million stored failure records, end to
# end: `sevenfold error-report --format csv` (the real CLI, HTTPS, the
# server's streamed export) against `sevenfold server` on SQLite, timed to
# the last byte written, next to baselines in the same run on the same
# database: the sqlite3 shell printing the report's query as CSV, and
# `cat` of the finished CSV file.
#
#   cargo build --release -p sevenfold-cli
#   cargo build --release -p sevenfold-bench --no-default-features --bin failures
#   scripts/error-report-1m.sh [RUNS]
#
# Environment: SEVENFOLD_BIN (default target/release/sevenfold), FAILURES_BIN
# (default target/release/failures), RECORDS (default 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SEVENFOLD_BIN:-target/release/sevenfold}
failures=${FAILURES_BIN:-target/release/failures}
runs=${1:-5}
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

echo "== ${RECORDS:-1000000} records through the store's ingest (the failures benchmark)"
"$failures" --backend sqlite --records "${RECORDS:-1000000}" --keep-sqlite "$dir/data"
db=$dir/data/sevenfold.db

RUST_LOG=error "$bin" --output json server --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 \
    --data-dir "$dir/data" > "$dir/server.out" &
pid=$!
for _ in $(seq 1 300); do grep -q operator_api "$dir/server.out" 2>/dev/null && break; sleep 0.2; done
ready=$(head -n 1 "$dir/server.out")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$ready" "$1"; }
export SEVENFOLD_SERVER SEVENFOLD_TOKEN SEVENFOLD_CA SEVENFOLD_TENANT=bench
SEVENFOLD_SERVER=$(field operator_api)
SEVENFOLD_TOKEN=$(field bootstrap_token)
SEVENFOLD_CA=$dir/data/tls/ca.pem

tenant=$(sqlite3 "$db" "SELECT id FROM tenants WHERE name = 'bench'")
# The benchmark made its tenant in the store directly: give the server's
# bootstrap administrator a role in it.
sqlite3 "$db" "INSERT OR IGNORE INTO roles (tenant_id, user_id, role) SELECT '$tenant', id, 'administrator' FROM users"
since=$(( ($(date +%s) - 14 * 86400) * 1000 ))
query="SELECT r.received_at, r.at, r.device_id, d.group_id, r.component_id, r.component_version,
  r.kind, r.reason, r.problem_id, r.record_id FROM failure_reports r LEFT JOIN devices d
  ON d.id = r.device_id AND d.tenant_id = r.tenant_id
  WHERE r.tenant_id = '$tenant' AND r.received_at >= $since AND r.kind <> 'heartbeat'
  ORDER BY r.received_at DESC, r.device_id DESC, r.record_id DESC"

# Wall-clock seconds a command takes (bash's microsecond clock).
timed() {
    local start=$EPOCHREALTIME
    "$@"
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$EPOCHREALTIME"
}

echo "== the report, $runs runs each (seconds, wall clock)"
for i in $(seq 1 "$runs"); do
    cli=$(timed sh -c '"$0" error-report --days 14 --format csv > "$1"' "$bin" "$dir/report.csv")
    shell=$(timed sh -c 'sqlite3 -csv "$0" "$1" > /dev/null' "$db" "$query")
    copy=$(timed sh -c 'cat "$0" > /dev/null' "$dir/report.csv")
    echo "run $i: sevenfold error-report $cli | sqlite3 -csv, same query $shell | cat of the CSV $copy"
done
rows=$(( $(wc -l < "$dir/report.csv") - 1 ))
echo "rows: $rows, bytes: $(wc -c < "$dir/report.csv")"
[ "$rows" -eq "${RECORDS:-1000000}" ] || { echo "error: the report has $rows rows" >&2; exit 1; }
