#!/usr/bin/env bash
# Dashboard page times over a server data directory grown to 100 000 devices
# (the one `target/release/dashboard --keep DIR` leaves):
# the 10 000 simulated devices' rows copied nine times with new IDs (same
# states, versions, group), then the server restarted on it and each page
# fetched 30 times with curl (time to the last byte).
set -euo pipefail
bin=$1; dir=$2
db=$dir/server/sevenfold.db
sqlite3 "$db" "INSERT INTO devices (id, tenant_id, group_id, public_key_der, endorsement_der, manufacturer_fingerprint, mode, claimed_at, revoked_at, last_seen, attestation_verdict, attested_at, certificate_not_after, runtime_version, app_versions)
 SELECT substr(d.id, 1, 56) || printf('%08x', n.k), d.tenant_id, d.group_id, d.public_key_der, d.endorsement_der, d.manufacturer_fingerprint, d.mode, d.claimed_at, d.revoked_at, d.last_seen, d.attestation_verdict, d.attested_at, d.certificate_not_after, d.runtime_version, d.app_versions
 FROM devices d, (WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 9) SELECT k FROM n) n; ANALYZE;"
sqlite3 "$db" "SELECT count(*) FROM devices"
SEVENFOLD_NONCES_PER_SOURCE=1000000 RUST_LOG=error "$bin" --output json server --listen 127.0.0.1:0 --device-listen 127.0.0.1:0 --data-dir "$dir/server" > "$dir/server.out" &
pid=$!
for _ in $(seq 1 100); do grep -q operator_api "$dir/server.out" 2>/dev/null && break; sleep 0.2; done
url=$(python3 -c "import json,sys; print(json.loads(open('$dir/server.out').readline())['operator_api'])")
token=sf_$(printf '%064d' 7)
hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
sqlite3 "$db" "INSERT OR IGNORE INTO api_tokens (token_hash, user_id, label, created_at) SELECT '$hash', id, 'bench', 0 FROM users WHERE name = 'admin'"
tenant=$(sqlite3 "$db" "SELECT id FROM tenants LIMIT 1")
dep=$(sqlite3 "$db" "SELECT id FROM deployments LIMIT 1")
prob=$(sqlite3 "$db" "SELECT id FROM problems LIMIT 1")
mid=$(sqlite3 "$db" "SELECT id FROM devices ORDER BY id LIMIT 1 OFFSET 50000")
t=/ui/t/$tenant
echo "| page (100 000 devices) | median ms | p95 ms | worst ms |"
echo "|---|---|---|---|"
for page in "$t" "$t/devices" "$t/devices?after=$mid" "$t/devices?state=failing" "$t/devices/$mid" "$t/groups" "$t/deployments/$dep" "$t/problems" "$t/problems/$prob" "/api/v1/tenants/$tenant/devices?limit=50"; do
  times=$(for i in $(seq 1 30); do curl -s -o /dev/null --cacert "$dir/server/tls/ca.pem" -H "cookie: sf_session=$token" -H "authorization: Bearer $token" -w '%{time_total}\n' "$url$page"; done | sort -n)
  python3 - "$page" <<PY
import sys
t=[float(x)*1000 for x in """$times""".split()]
print(f"| {sys.argv[1].replace('$tenant','T')} | {t[len(t)//2]:.1f} | {t[int(len(t)*0.95)]:.1f} | {t[-1]:.1f} |")
PY
done
kill $pid; wait $pid || true
