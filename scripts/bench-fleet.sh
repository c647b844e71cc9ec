#!/usr/bin/env bash
# A fleet on one machine (BENCHMARKS.md "A fleet of sidecars"): one hub serving a 100-flag file, SIDECARS
# daemons chained from it over grpc sync (`--uri grpc://127.0.0.1:HUB_SYNC_PORT`, what a sidecar next to
# each application does), and SUBSCRIBERS EventStream subscribers on each sidecar (loadgen's events mode
# over every sidecar's address). The load generator edits the hub's file EDITS times (atomic rename, one
# edit every INTERVAL_MS) and reports, per edit, when the last of all subscribers saw it (p50, p99, max),
# besides each subscriber's latency. Also: the hub's CPU over the run and its RSS, the sidecars' median RSS.
#
#   scripts/bench-fleet.sh [SIDECARS] [SUBSCRIBERS] [EDITS] [INTERVAL_MS]
set -euo pipefail
cd "$(dirname "$0")/.."

sidecars=${1:-100}
subscribers=${2:-10}
edits=${3:-20}
interval=${4:-1000}
cargo build --release --quiet -p flagpole --bin flagpole --example loadgen
FLAGPOLE="$PWD/target/release/flagpole"
LOADGEN="$PWD/target/release/examples/loadgen"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$LOADGEN" --write-flag-file "$work/flags.json" >/dev/null

base=21000
"$FLAGPOLE" start -p $base -m $((base + 1)) -g $((base + 2)) -r $((base + 3)) --uri "file:$work/flags.json" \
    >"$work/hub.log" 2>&1 &
hub=$!
pids+=("$hub")
ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz") == 200 ]]; }
for _ in $(seq 300); do ready $((base + 1)) && break; sleep 0.02; done

addrs=()
for i in $(seq 1 "$sidecars"); do
    p=$((base + 4 * i))
    "$FLAGPOLE" start -p $p -m $((p + 1)) -g $((p + 2)) -r $((p + 3)) \
        --uri "grpc://127.0.0.1:$((base + 2))" >"$work/sidecar-$i.log" 2>&1 &
    pids+=("$!")
    addrs+=("http://127.0.0.1:$p")
done
started=$(date +%s%N)
for i in $(seq 1 "$sidecars"); do
    p=$((base + 4 * i))
    until ready $((p + 1)); do
        sleep 0.02
        if (($(date +%s%N) - started > 60000000000)); then
            echo "sidecar $i not ready" >&2
            tail "$work/sidecar-$i.log" >&2
            exit 1
        fi
    done
done
echo "fleet: hub + $sidecars sidecars ready in $((($(date +%s%N) - started) / 1000000)) ms"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hub_before=$(ticks "$hub")
all=$(IFS=,; echo "${addrs[*]}")
"$LOADGEN" --addr "$all" --rpc events --subscribers $((sidecars * subscribers)) \
    --flag-file "$work/flags.json" --edits "$edits" --edit-interval-ms "$interval" | tee "$work/loadgen.out"
hub_after=$(ticks "$hub")
clk=$(getconf CLK_TCK)
echo "hub: cpu $(python3 -c "print(round(($hub_after - $hub_before) * 1000 / $clk))") ms over the run" \
    "($(python3 -c "print(round(($hub_after - $hub_before) * 1000 / $clk / $edits, 1))") ms per edit)," \
    "rss $(($(rss_kb "$hub") / 1024)) MB"
sidecar_rss=$(for pid in "${pids[@]:1}"; do rss_kb "$pid"; done | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
echo "sidecars: median rss $((sidecar_rss / 1024)) MB, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
