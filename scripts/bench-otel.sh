#!/usr/bin/env bash
# What OpenTelemetry costs on the request path (BENCHMARKS.md "OpenTelemetry"): daemon CPU per request for
# gRPC ResolveBoolean and ResolveString with targeting (ghz, 50 concurrent calls over 4 connections), and
# the idle RSS, for these configurations, interleaved ROUNDS times:
#   before   BEFORE_BIN (a flagpole built before telemetry existed), nothing exported
#   off      this build, nothing exported
#   on-1.0   traces (every request sampled) and metrics pushed over OTLP/gRPC to a real Jaeger
#   on-0.1   the same with OTEL_TRACES_SAMPLER=traceidratio, ratio 0.1
#   down-1.0 every request sampled, the collector's port closed (every export fails)
# The daemon runs on core 0; ghz and Jaeger share core 1, so the figure is the daemon's own CPU, whatever
# the collector costs. Jaeger is the one the tests use (scripts/install-test-clients.sh builds it).
#
#   BEFORE_BIN=/path/to/old/flagpole scripts/bench-otel.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
seconds=${2:-8}
GHZ=$(scripts/ghz.sh)
JAEGER="${FLAGPOLE_TEST_CLIENTS_DIR:-$PWD/target/test-clients}/jaeger/jaeger"
[[ -x "$JAEGER" ]] || ./scripts/install-test-clients.sh >&2
cargo build --release --quiet -p flagpole --bin flagpole --example loadgen
FLAGPOLE="$PWD/target/release/flagpole"
LOADGEN="$PWD/target/release/examples/loadgen"
configs=(off on-1.0 on-0.1 down-1.0)
if [[ -n "${BEFORE_BIN:-}" ]]; then
    configs=(before "${configs[@]}")
else
    echo "bench-otel: BEFORE_BIN not set: no 'before' column" >&2
fi

work=$(mktemp -d)
pid="" jaeger=""
trap 'kill $pid $jaeger 2>/dev/null || true; rm -rf "$work"' EXIT
"$LOADGEN" --write-flag-file "$work/flags.json" >/dev/null
results="$work/results"
: >"$results"

P=18013 M=18014 S=18015 R=18016 OTLP=18317 CLOSED=18318
cat >"$work/jaeger.yaml" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces: {receivers: [otlp], exporters: [jaeger_storage_exporter]}
    metrics: {receivers: [otlp], exporters: [prometheus]}
  telemetry: {metrics: {level: none}, logs: {level: warn}}
extensions:
  jaeger_query: {storage: {traces: mem}, http: {endpoint: 127.0.0.1:18686}, grpc: {endpoint: 127.0.0.1:18685}}
  jaeger_storage: {backends: {mem: {memory: {max_traces: 100000}}}}
receivers:
  otlp: {protocols: {grpc: {endpoint: 127.0.0.1:$OTLP}}}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
  prometheus: {endpoint: 127.0.0.1:18889}
EOF
taskset -c 1 "$JAEGER" --config "file:$work/jaeger.yaml" >"$work/jaeger.log" 2>&1 &
jaeger=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18686/api/services >/dev/null && break; sleep 0.1; done

start_daemon() { # CONFIG
    local bin=$FLAGPOLE args=() env=()
    case $1 in
    before) bin=$BEFORE_BIN ;;
    off) ;;
    on-1.0) args=(--metrics-exporter otel --otel-collector-uri "127.0.0.1:$OTLP") ;;
    on-0.1) args=(--metrics-exporter otel --otel-collector-uri "127.0.0.1:$OTLP")
        env=(OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1) ;;
    down-1.0) args=(--metrics-exporter otel --otel-collector-uri "127.0.0.1:$CLOSED") ;;
    esac
    env "${env[@]}" taskset -c 0 "$bin" start --port $P --management-port $M --sync-port $S --ofrep-port $R \
        --uri "file:$work/flags.json" "${args[@]}" >"$work/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 500); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$M/readyz") == 200 ]] && return 0
        sleep 0.01
    done
    cat "$work/daemon.log" >&2
    return 1
}
stop_daemon() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    sleep 0.3
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
    python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / max($answered, 1), 2))"
}

for round in $(seq "$rounds"); do
    for config in "${configs[@]}"; do
        start_daemon "$config"
        sleep 2
        record "$config" idle_rss_kb "$(rss_kb)"
        seconds=1 ghz_run ResolveBoolean "{\"flagKey\":\"loadgen-bool\",\"context\":$context}" >/dev/null
        record "$config" cpu_us_ResolveBoolean "$(per_request ResolveBoolean "{\"flagKey\":\"loadgen-bool\",\"context\":$context}")"
        record "$config" cpu_us_ResolveString_targeting "$(per_request ResolveString "{\"flagKey\":\"loadgen-string\",\"context\":$context}")"
        record "$config" dropped "$(curl -s "http://127.0.0.1:$M/metrics" | awk '/^flagpole_otel_dropped_total/ {s += $NF} END {print s + 0}')"
        stop_daemon
    done
done

echo
echo "Medians of $rounds rounds ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)):"
python3 - "$results" "${configs[@]}" <<'PY'
import collections, statistics, sys
values = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, measure, value = line.split()
    values[(measure, name)].append(float(value))
configs = sys.argv[2:]
print("| measure | " + " | ".join(configs) + " |")
print("|---" * (len(configs) + 1) + "|")
for m in sorted({m for m, _ in values}):
    cells = []
    for c in configs:
        v = values.get((m, c), [])
        cells.append(f"{statistics.median(v):g} ({min(v):g}–{max(v):g})" if v else "—")
    print(f"| {m} | " + " | ".join(cells) + " |")
PY
