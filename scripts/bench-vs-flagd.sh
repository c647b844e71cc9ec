#!/usr/bin/env bash
# flagpole against flagd, side by side in one run, through a neutral load generator (ghz, from the Go
# module proxy): the rows of BENCHMARKS.md "flagpole and flagd side by side".
#
#   FLAGD_BIN=/path/to/flagd scripts/bench-vs-flagd.sh [ROUNDS] [SECONDS]
#
# FLAGD_BIN is a flagd binary you built yourself from its release tag (this script never downloads one);
# without it only flagpole is measured and the ratios are left out. Each round starts each daemon afresh
# with the same command line (flagd's flags: flagpole is a drop-in), pinned to core 0, ghz pinned to core 1,
# the daemons alternating so that drift on a shared machine hits both alike. Per daemon and round:
#   - idle RSS with the 100-flag document, two seconds after /readyz;
#   - daemon CPU per request (utime + stime over the run / requests answered) for gRPC ResolveBoolean,
#     ResolveString with targeting on a 5-attribute context, and ResolveAll, 50 concurrent calls over 4
#     connections, SECONDS each, after a one-second warm-up;
#   - with the 10,000-flag document: start → first successful evaluation, and RSS three seconds later;
#   - 1,000 EventStream subscribers (loadgen, 10 HTTP/2 connections) while the 100-flag file is replaced
#     by rename 20 times: p99 of file write → `configuration_change` over every subscriber, and the
#     daemon's RSS while they stay connected;
#   - open loop, one connection (what an OpenFeature SDK holds): the daemon's maximum ResolveBoolean rate
#     with 32 callers (loadgen, closed loop), then p99 latency at half of that rate, measured from each
#     call's scheduled start (no coordinated omission).
# Prints one line per measurement and a table of medians (with flagd / flagpole ratios).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
seconds=${2:-10}
GHZ=$(scripts/ghz.sh)
cargo build --release --quiet -p flagpole --bin flagpole --example loadgen
FLAGPOLE="$PWD/target/release/flagpole"
LOADGEN="$PWD/target/release/examples/loadgen"
daemons=("flagpole=$FLAGPOLE")
if [[ -n "${FLAGD_BIN:-}" ]]; then
    [[ -x "$FLAGD_BIN" ]] || { echo "bench-vs-flagd: FLAGD_BIN=$FLAGD_BIN is not executable" >&2; exit 1; }
    daemons+=("flagd=$FLAGD_BIN")
else
    echo "bench-vs-flagd: FLAGD_BIN not set: measuring flagpole only" >&2
fi

work=$(mktemp -d)
pid=""
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$LOADGEN" --write-flag-file "$work/flags100.json" >/dev/null
"$LOADGEN" --write-flag-file "$work/flags10k.json" --flag-count 10000 >/dev/null
results="$work/results"
: >"$results"

P=18013 M=18014 S=18015 R=18016
start_daemon() { # BIN FILE
    taskset -c 0 "$1" start --port $P --management-port $M --sync-port $S --ofrep-port $R \
        --uri "file:$2" >"$work/daemon.log" 2>&1 &
    pid=$!
}
stop_daemon() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    sleep 0.3
}
wait_ready() {
    for _ in $(seq 500); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$M/readyz") == 200 ]] && return 0
        sleep 0.01
    done
    cat "$work/daemon.log" >&2
    return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
record() { echo "$1 $2 $3" >>"$results"; echo "round $round $1 $2 = $3"; }

context='{"targetingKey":"user-7","email":"user7@example.com","country":"de","plan":"pro","age":30}'
ghz_run() { # METHOD DATA: prints requests answered
    taskset -c 1 "$GHZ" --insecure --proto proto/proto/flagd/evaluation/v1/evaluation.proto \
        --import-paths proto/proto --call "flagd.evaluation.v1.Service/$1" -d "$2" \
        --connections 4 -c 50 -z "${seconds}s" --format json 127.0.0.1:$P 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(v for k,v in r.get("statusCodeDistribution",{}).items() if k=="OK"))'
}
per_request() { # METHOD DATA: µs of daemon CPU per answered request
    local before after answered
    before=$(cpu_ticks)
    answered=$(ghz_run "$1" "$2")
    after=$(cpu_ticks)
    python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / max($answered, 1), 1))"
}

for round in $(seq "$rounds"); do
    for entry in "${daemons[@]}"; do
        name=${entry%%=*}
        bin=${entry#*=}
        start_daemon "$bin" "$work/flags100.json"
        wait_ready
        sleep 2
        record "$name" idle_rss_100_flags_kb "$(rss_kb)"
        # Warm-up (connections, caches, allocator), not measured.
        seconds=1 ghz_run ResolveBoolean "{\"flagKey\":\"loadgen-bool\",\"context\":$context}" >/dev/null
        record "$name" cpu_us_ResolveBoolean "$(per_request ResolveBoolean "{\"flagKey\":\"loadgen-bool\",\"context\":$context}")"
        record "$name" cpu_us_ResolveString_targeting "$(per_request ResolveString "{\"flagKey\":\"loadgen-string\",\"context\":$context}")"
        record "$name" cpu_us_ResolveAll_100_flags "$(per_request ResolveAll "{\"context\":$context}")"
        stop_daemon

        started=$(date +%s%N)
        start_daemon "$bin" "$work/flags10k.json"
        until curl -sf -X POST "http://127.0.0.1:$P/flagd.evaluation.v1.Service/ResolveBoolean" \
            -H 'Content-Type: application/json' -d '{"flagKey":"loadgen-bool"}' >/dev/null 2>&1; do
            sleep 0.001
            if (($(date +%s%N) - started > 30000000000)); then
                cat "$work/daemon.log" >&2
                exit 1
            fi
        done
        record "$name" start_to_first_evaluation_10k_flags_ms "$(( ($(date +%s%N) - started) / 1000000 ))"
        sleep 3
        record "$name" rss_10k_flags_kb "$(rss_kb)"
        stop_daemon

        # EventStream fan-out: the daemon watches a copy the load generator rewrites.
        cp "$work/flags100.json" "$work/watched.json"
        start_daemon "$bin" "$work/watched.json"
        wait_ready
        taskset -c 1 "$LOADGEN" --addr "http://127.0.0.1:$P" --rpc events --subscribers 1000 \
            --flag-file "$work/watched.json" --edits 20 --hold 5 >"$work/events.out" 2>&1 &
        events=$!
        for _ in $(seq 600); do
            grep -q '^holding' "$work/events.out" && break
            sleep 0.1
        done
        sleep 2
        record "$name" rss_1000_subscribers_kb "$(rss_kb)"
        wait "$events" || { cat "$work/events.out" >&2; exit 1; }
        grep -q ' failed_subscribers=0$' "$work/events.out" || { cat "$work/events.out" >&2; exit 1; }
        record "$name" file_edit_to_event_1000_subscribers_p99_ms \
            "$(sed -n 's/^write_to_event_us .*p99=\([0-9]*\) .*/\1/p' "$work/events.out" | awk '{print $1 / 1000}')"
        stop_daemon

        # Open loop at half of the daemon's own maximum rate, one connection.
        start_daemon "$bin" "$work/flags100.json"
        wait_ready
        max=$(taskset -c 1 "$LOADGEN" --addr "http://127.0.0.1:$P" --connections 1 --concurrency 32 \
            --duration "$seconds" | sed -n 's/^requests=.* throughput=\([0-9]*\) req\/s$/\1/p')
        record "$name" max_rate_one_connection_rps "$max"
        record "$name" open_loop_p99_at_half_max_us "$(taskset -c 1 "$LOADGEN" --addr "http://127.0.0.1:$P" \
            --connections 1 --concurrency 32 --duration "$seconds" --rate $((max / 2)) |
            sed -n 's/^latency_us .*p99=\([0-9]*\) .*/\1/p')"
        stop_daemon
    done
done

echo
echo "Medians of $rounds rounds ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 - "$results" <<'PY'
import collections, statistics, sys
values = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, measure, value = line.split()
    values[(measure, name)].append(float(value))
measures = sorted({m for m, _ in values})
print("| measure | flagpole (median, range) | flagd (median, range) | flagd / flagpole |")
print("|---|---|---|---|")
for m in measures:
    cells = []
    medians = {}
    for name in ("flagpole", "flagd"):
        v = values.get((m, name))
        if v:
            medians[name] = statistics.median(v)
            cells.append(f"{medians[name]:g} ({min(v):g}–{max(v):g})")
        else:
            cells.append("—")
    ratio = f"{medians['flagd'] / medians['flagpole']:.1f}×" if len(medians) == 2 and medians["flagpole"] else "—"
    print(f"| {m} | {cells[0]} | {cells[1]} | {ratio} |")
PY
