#!/usr/bin/env bash
# certmon check throughput against the plain Go reference (docs/benchmarks.md).
#
# Builds certmon, bench/tlsfarm and bench/tlsref; starts the loopback TLS farm
# in a separate process (distinct chains, then shared chains); in each mode
# runs, R times, the reference and
#   certmon check --file targets.txt --ca-file ca.pem --concurrency 200 \
#     --revocation off --output json --retries 0
# each under GNU time, and prints a markdown table of the medians:
# endpoints/s, CPU seconds (user+sys) per 1,000 probes and peak RSS.
# Every certmon run must print N JSON lines, all "status":"OK", and every
# reference run must report 0 errors, or the script fails.
#
# Usage: bash bench/run.sh
# Environment: N (endpoints, 2000), R (repetitions, 3), CONC (200),
#   KEY (ecdsa|rsa, ecdsa), MODES ("distinct shared"), WARMUP (1: one
#   unmeasured reference pass per farm), FARM_FLAGS (extra tlsfarm flags),
#   KEEP (1: keep the work directory), QUIET_WAIT (seconds to wait, before
#   each run, for the machine to be idle: 300), MAX_BG (CPU seconds other
#   processes may use during a run before it is redone: 0.3), TRIES (5),
#   CERTMON (a prebuilt certmon binary to measure instead of building
#   ./cmd/certmon, e.g. a variant under test).
set -euo pipefail

N=${N:-2000}
R=${R:-3}
CONC=${CONC:-200}
KEY=${KEY:-ecdsa}
MODES=${MODES:-"distinct shared"}
WARMUP=${WARMUP:-1}
FARM_FLAGS=${FARM_FLAGS:-}
KEEP=${KEEP:-0}
QUIET_WAIT=${QUIET_WAIT:-300}
MAX_BG=${MAX_BG:-0.3}
TRIES=${TRIES:-5}
TIME=/usr/bin/time

die() {
	echo "run.sh: $*" >&2
	exit 1
}
log() { echo "run.sh: $*" >&2; }

cd "$(dirname "$0")/.."
[[ -x $TIME ]] || die "GNU time not found at $TIME"

# 2000 listeners in the farm plus 200 connections (and their server ends):
# make room in this shell, whose limit the clients inherit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= N + CONC + 256)) || die "ulimit -n is $(ulimit -n), too low for N=$N"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/certmon-bench.XXXXXX")
FARM_PID=""

stop_farm() {
	if [[ -n $FARM_PID ]]; then
		kill -TERM "$FARM_PID" 2>/dev/null || true
		local i
		for ((i = 0; i < 50; i++)); do
			kill -0 "$FARM_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$FARM_PID" 2>/dev/null || true
		wait "$FARM_PID" 2>/dev/null || true
		FARM_PID=""
	fi
}
cleanup() {
	stop_farm
	if [[ $KEEP == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building into $TMP"
if [[ -n ${CERTMON:-} ]]; then
	cp "$CERTMON" "$TMP/certmon"
else
	go build -o "$TMP/certmon" ./cmd/certmon
fi
go build -o "$TMP/tlsfarm" ./bench/tlsfarm
go build -o "$TMP/tlsref" ./bench/tlsref

# start_farm MODE: start the farm in its own process, wait for "ready".
start_farm() {
	local mode=$1 dir="$TMP/$1" flags=(-n "$N" -key "$KEY" -out "$TMP/$1")
	[[ $mode == shared ]] && flags+=(-shared)
	# shellcheck disable=SC2206 # FARM_FLAGS is meant to split
	flags+=($FARM_FLAGS)
	mkdir -p "$dir"
	"$TMP/tlsfarm" "${flags[@]}" >"$dir/farm.out" 2>"$dir/farm.err" &
	FARM_PID=$!
	local i
	for ((i = 0; i < 1200; i++)); do
		grep -qx ready "$dir/farm.out" 2>/dev/null && break
		kill -0 "$FARM_PID" 2>/dev/null || {
			cat "$dir/farm.err" >&2
			die "tlsfarm exited before ready"
		}
		sleep 0.1
	done
	grep -qx ready "$dir/farm.out" || die "tlsfarm not ready after 120s"
	(($(wc -l <"$dir/targets.txt") == N)) || die "targets.txt has not $N lines"
	log "$(head -1 "$dir/farm.err")"
}

# finish_farm MODE: stop the farm and check it saw only full handshakes.
finish_farm() {
	local dir="$TMP/$1" summary
	stop_farm
	summary=$(grep 'handshakes ok=' "$dir/farm.err" || true)
	log "${summary:-tlsfarm: no handshake summary}"
	[[ $summary == *" failed=0 resumed=0" ]] || die "farm saw failed or resumed handshakes: $summary"
}

# busy_ticks: CPU ticks (USER_HZ) the whole machine spent busy, steal included.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# farm_ticks: CPU ticks the farm process has used.
farm_ticks() { awk '{print $14 + $15}' "/proc/$FARM_PID/stat"; }
TICK=$(getconf CLK_TCK)

# wait_quiet: other work on this machine skews the numbers; wait (up to
# QUIET_WAIT seconds) for a second in which less than 10% of it is busy.
wait_quiet() {
	local i b0 b1 limit
	limit=$((TICK * $(nproc) / 10))
	for ((i = 0; i < QUIET_WAIT; i++)); do
		b0=$(busy_ticks)
		sleep 1
		b1=$(busy_ticks)
		((b1 - b0 < limit)) && return 0
	done
	log "warning: the machine stayed busy for ${QUIET_WAIT}s; measuring anyway"
}

# measure MODE REP PROGRAM: one timed run, repeated (up to TRIES times) while
# other processes took more than MAX_BG CPU seconds during it; appends a row
# to results.tsv: mode program rep wall_s cpu_s maxrss_kb background_cpu_s
measure() {
	local mode=$1 rep=$2 prog=$3 dir="$TMP/$1" t0 t1 rc try row
	local tfile="$dir/time.$prog.$rep" out="$dir/out.$prog.$rep"
	local b0 b1 f0 f1 user sys rss
	for ((try = 1; try <= TRIES; try++)); do
		wait_quiet
		rc=0
		b0=$(busy_ticks) f0=$(farm_ticks) t0=$(date +%s%N)
		if [[ $prog == reference ]]; then
			(cd "$dir" && $TIME -v -o "$tfile" "$TMP/tlsref" -targets targets.txt -ca ca.pem -c "$CONC" >"$out" 2>"$out.err") || rc=$?
		else
			(cd "$dir" && $TIME -v -o "$tfile" "$TMP/certmon" check --file targets.txt --ca-file ca.pem \
				--concurrency "$CONC" --revocation off --output json --retries 0 >"$out" 2>"$out.err") || rc=$?
		fi
		t1=$(date +%s%N) b1=$(busy_ticks) f1=$(farm_ticks)
		validate "$prog" "$rc" "$out"
		user=$(awk -F': ' '/User time \(seconds\)/ {print $2}' "$tfile")
		sys=$(awk -F': ' '/System time \(seconds\)/ {print $2}' "$tfile")
		rss=$(awk -F': ' '/Maximum resident set size \(kbytes\)/ {print $2}' "$tfile")
		row=$(awk -v m="$mode" -v p="$prog" -v r="$rep" -v t0="$t0" -v t1="$t1" -v u="$user" -v s="$sys" -v k="$rss" \
			-v b="$((b1 - b0))" -v f="$((f1 - f0))" -v hz="$TICK" 'BEGIN {
			bg = (b - f) / hz - (u + s); if (bg < 0) bg = 0
			printf "%s\t%s\t%s\t%.4f\t%.2f\t%d\t%.2f\t%.2f\n", m, p, r, (t1 - t0) / 1e9, u + s, k, bg, f / hz
		}')
		IFS=$'\t' read -r _ _ _ wall cpu _ bg fcpu <<<"$row"
		awk -v m="$mode" -v p="$prog" -v r="$rep" -v w="$wall" -v c="$cpu" -v k="$rss" -v bg="$bg" -v f="$fcpu" -v n="$N" -v t="$try" 'BEGIN {
			printf "run.sh:   %-8s %-9s rep %s try %d: %6.3f s wall, %6.0f endpoints/s, %5.2f CPU s, %5.1f MiB; farm %.2f CPU s, others %.2f CPU s\n",
				m, p, r, t, w, n / w, c, k / 1024, f, bg > "/dev/stderr"
		}'
		if awk -v bg="$bg" -v max="$MAX_BG" 'BEGIN { exit !(bg <= max) }' || ((try == TRIES)); then
			((try == TRIES)) && awk -v bg="$bg" -v max="$MAX_BG" 'BEGIN { exit !(bg > max) }' &&
				log "warning: kept a run disturbed by ${bg} CPU s of other work"
			cut -f1-7 <<<"$row" >>"$TMP/results.tsv"
			return
		fi
	done
}

# validate PROGRAM EXIT_CODE OUTPUT: a run that measured errors is worthless.
validate() {
	local prog=$1 rc=$2 out=$3
	if [[ $prog == reference ]]; then
		if ((rc != 0)) || ! grep -q "^endpoints=$N errors=0 " "$out"; then
			cat "$out" "$out.err" >&2
			die "reference run failed (exit $rc)"
		fi
		return
	fi
	local lines ok
	lines=$(wc -l <"$out")
	ok=$(grep -c '"status":"OK"' "$out" || true)
	if ((rc != 0 || lines != N || ok != N)); then
		head -c 2000 "$out.err" >&2
		grep -v '"status":"OK"' "$out" | head -3 | cut -c 1-1500 >&2 || true
		die "certmon run failed: exit $rc, $lines lines, $ok with status OK, want $N"
	fi
}

for mode in $MODES; do
	start_farm "$mode"
	if [[ $WARMUP == 1 ]]; then
		(cd "$TMP/$mode" && "$TMP/tlsref" -targets targets.txt -ca ca.pem -c "$CONC" >/dev/null) || die "warm-up reference run failed"
	fi
	for ((rep = 1; rep <= R; rep++)); do
		# Alternate the order so neither program always runs first.
		if ((rep % 2)); then
			measure "$mode" "$rep" reference
			measure "$mode" "$rep" certmon
		else
			measure "$mode" "$rep" certmon
			measure "$mode" "$rep" reference
		fi
	done
	finish_farm "$mode"
done

model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
echo "Machine: $(nproc) CPUs ($model), $mem RAM, $(go version | cut -d' ' -f3-), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "Run: N=$N endpoints, $KEY leaf keys, concurrency $CONC, median of R=$R runs (full TLS handshakes on loopback, farm in a separate process)"
echo
# Medians per (mode, program) of each metric; endpoints/s from the median
# wall. "other CPU s": CPU time used during a run by processes other than
# the measured program and the farm (noise; runs above MAX_BG were redone).
awk -F'\t' -v n="$N" -v modes="$MODES" '
function median(list,   a, k, i, j, t) {
	k = split(list, a, " ")
	for (i = 2; i <= k; i++) {
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
{ k = $1 SUBSEP $2; wall[k] = wall[k] " " $4; cpu[k] = cpu[k] " " $5; rss[k] = rss[k] " " $6; bg[k] = bg[k] " " $7 }
END {
	print "| chains | program | endpoints/s | CPU s per 1,000 probes | peak RSS (MiB) | wall (s) | endpoints/s vs reference | other CPU s |"
	print "|---|---|---:|---:|---:|---:|---:|---:|"
	nm = split(modes, ms, " "); split("reference certmon", ps, " ")
	for (i = 1; i <= nm; i++) {
		refw = median(wall[ms[i] SUBSEP "reference"])
		for (j = 1; j <= 2; j++) {
			k = ms[i] SUBSEP ps[j]
			if (!(k in wall)) continue
			w = median(wall[k])
			printf "| %s | %s | %.0f | %.3f | %.1f | %.3f | %.2f× | %.2f |\n", ms[i], ps[j], n / w, median(cpu[k]) / n * 1000, median(rss[k]) / 1024, w, refw / w, median(bg[k])
		}
	}
}' "$TMP/results.tsv"
