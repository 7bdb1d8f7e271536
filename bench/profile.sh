#!/usr/bin/env bash
# CPU profiles of `certmon check` and of the plain Go reference against the
# loopback TLS farm, to find where certmon spends its time (docs/benchmarks.md).
#
# certmon is profiled through its own run() function: bench/prof/
# certmon_prof_test.go.in is overlaid into ./cmd/certmon (go test -c
# -overlay, nothing under cmd/ is edited) and the test binary runs
#   check --file targets.txt --ca-file ca.pem --concurrency 200
#         --revocation off --output json --retries 0
# LOOPS times under -test.cpuprofile. The reference runs LOOPS times with
# -cpuprofile. Profiles and `pprof -top` listings go to PROF_DIR.
#
# Usage: bash bench/profile.sh
# Environment: MODE (distinct|shared, distinct), N (2000), CONC (200),
#   LOOPS (5), KEY (ecdsa), PROF_DIR (default: a new directory under /tmp).
set -euo pipefail

MODE=${MODE:-distinct}
N=${N:-2000}
CONC=${CONC:-200}
LOOPS=${LOOPS:-5}
KEY=${KEY:-ecdsa}

die() {
	echo "profile.sh: $*" >&2
	exit 1
}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PROF_DIR=${PROF_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/certmon-prof.XXXXXX")}
mkdir -p "$PROF_DIR"
FARM_PID=""
cleanup() {
	if [[ -n $FARM_PID ]]; then
		kill -TERM "$FARM_PID" 2>/dev/null || true
		wait "$FARM_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$PROF_DIR/overlay.json" <<EOF
{"Replace": {"$ROOT/cmd/certmon/zz_benchprof_test.go": "$ROOT/bench/prof/certmon_prof_test.go.in"}}
EOF
go test -c -overlay="$PROF_DIR/overlay.json" -o "$PROF_DIR/certmon.test" ./cmd/certmon
go build -o "$PROF_DIR/tlsfarm" ./bench/tlsfarm
go build -o "$PROF_DIR/tlsref" ./bench/tlsref

farm=(-n "$N" -key "$KEY" -out "$PROF_DIR/farm")
[[ $MODE == shared ]] && farm+=(-shared)
"$PROF_DIR/tlsfarm" "${farm[@]}" >"$PROF_DIR/farm.out" 2>"$PROF_DIR/farm.err" &
FARM_PID=$!
for ((i = 0; i < 1200; i++)); do
	grep -qx ready "$PROF_DIR/farm.out" 2>/dev/null && break
	kill -0 "$FARM_PID" 2>/dev/null || die "tlsfarm exited: $(cat "$PROF_DIR/farm.err")"
	sleep 0.1
done
grep -qx ready "$PROF_DIR/farm.out" || die "tlsfarm not ready"

cd "$PROF_DIR/farm"
refprofs=()
for ((i = 1; i <= LOOPS; i++)); do
	"$PROF_DIR/tlsref" -targets targets.txt -ca ca.pem -c "$CONC" -cpuprofile "$PROF_DIR/ref.$i.prof" >&2
	refprofs+=("$PROF_DIR/ref.$i.prof")
done

CERTMON_PROF_ARGS="check --file targets.txt --ca-file ca.pem --concurrency $CONC --revocation off --output json --retries 0" \
	CERTMON_PROF_LOOPS=$LOOPS CERTMON_PROF_OUT="$PROF_DIR/certmon.json" \
	/usr/bin/time -f "profile.sh: certmon.test: %e s wall for $LOOPS loops, %U user %S sys, %M KB max RSS" \
	"$PROF_DIR/certmon.test" -test.run '^TestBenchProfile$' -test.count=1 \
	-test.cpuprofile "$PROF_DIR/certmon.prof" -test.memprofile "$PROF_DIR/certmon.mem.prof" >&2
ok=$(grep -c '"status":"OK"' "$PROF_DIR/certmon.json" || true)
((ok == N)) || die "certmon: $ok of $N results OK; see $PROF_DIR/certmon.json"

cd "$PROF_DIR"
go tool pprof -top -nodecount=40 certmon.test certmon.prof >certmon.top.txt 2>/dev/null
go tool pprof -top -cum -nodecount=60 certmon.test certmon.prof >certmon.cum.txt 2>/dev/null
go tool pprof -top -nodecount=40 tlsref "${refprofs[@]}" >ref.top.txt 2>/dev/null
go tool pprof -top -cum -nodecount=60 tlsref "${refprofs[@]}" >ref.cum.txt 2>/dev/null
echo "profile.sh: $MODE, N=$N, $LOOPS loops each; profiles and listings in $PROF_DIR"
echo "== certmon (flat) =="
head -30 certmon.top.txt
echo "== reference (flat) =="
head -30 ref.top.txt
