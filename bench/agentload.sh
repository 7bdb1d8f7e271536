#!/usr/bin/env bash
# One self-hosted agent with 10,000 monitors on 5-minute schedules against
# a loopback TLS farm: does every monitor keep its schedule (lag < 30 s),
# and how much memory does the agent use? Traffic stays on 127.0.0.1.
#   bash bench/agentload.sh            (DURATION=660 seconds by default)
set -euo pipefail
N=${N:-10000}; ENDPOINTS=${ENDPOINTS:-2000}; DURATION=${DURATION:-660}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
ulimit -n 65536 2>/dev/null || true
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/certmon" ./cmd/certmon
go build -o "$tmp/tlsfarm" ./bench/tlsfarm
"$tmp/tlsfarm" -n "$ENDPOINTS" -out "$tmp/farm" > "$tmp/farm.log" 2>&1 &
until grep -q ready "$tmp/farm.log"; do sleep 0.2; done
TOKEN=agentload-token-0123456789
CERTMON_BOOTSTRAP_TOKEN=$TOKEN CERTMON_CHECK_REVOCATION=off "$tmp/certmon" server --listen 127.0.0.1:0 --data "$tmp/data" > "$tmp/server.out" 2> "$tmp/server.log" &
until grep -q listening "$tmp/server.out"; do sleep 0.2; done
BASE=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/server.out")
python3 - "$BASE" "$TOKEN" "$tmp" "$N" <<'PY'
import json, sys, urllib.request
base, token, tmp, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
agent = call("POST", "/api/v1/agents", {"name": "load", "pool": "load"})
open(tmp + "/agent.env", "w").write(f"CERTMON_SERVER={base}\nCERTMON_AGENT_ID={agent['id']}\nCERTMON_AGENT_KEY={agent['key']}\n")
targets = open(tmp + "/farm/targets.txt").read().split()
ca = open(tmp + "/farm/ca.pem").read()
for i in range(n):
    call("POST", "/api/v1/monitors", {"target": targets[i % len(targets)], "schedule": "5m", "agent_pool": "load", "ca_pem": ca})
PY
chmod 600 "$tmp/agent.env"
"$tmp/certmon" agent --env-file "$tmp/agent.env" --spool-dir "$tmp/spool" > "$tmp/agent.log" 2>&1 &
AGENT=$!
start=$(date +%s); maxrss=0; maxlag=0
while [ $(( $(date +%s) - start )) -lt "$DURATION" ]; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$AGENT/status); [ "$rss" -gt "$maxrss" ] && maxrss=$rss
  lag=$(curl -s "$BASE/metrics" | awk '/^certmon_scheduler_lag_seconds / {print $2}')
  maxlag=$(python3 -c "print(max($maxlag, ${lag:-0}))")
  sleep 5
done
python3 - "$BASE" "$TOKEN" "$N" "$maxrss" "$maxlag" <<'PY'
import json, sys, urllib.request, datetime
base, token, n, maxrss, maxlag = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
now = datetime.datetime.now(datetime.timezone.utc)
stale, ok, cursor, seen = 0, 0, None, 0
while True:
    q = "/api/v1/monitors?limit=1000" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(urllib.request.Request(base + q, headers={"Authorization": "Bearer " + token})))
    for m in page["monitors"]:
        seen += 1
        ok += m["status"] == "OK"
        last = datetime.datetime.fromisoformat(m["last_check_at"].replace("Z", "+00:00")) if m["last_check_at"] else None
        if last is None or (now - last).total_seconds() > 300 + 30:
            stale += 1
    cursor = page["next_cursor"]
    if not cursor:
        break
print(f"monitors {seen}, OK {ok}, not checked within 5 min + 30 s: {stale}")
print(f"max scheduler lag {maxlag:.1f} s, agent peak RSS {maxrss/1024:.1f} MiB")
PY
