#!/usr/bin/env bash
# A/B of two flagpole builds on the request path: max throughput of gRPC ResolveString with targeting
# (loadgen), gRPC ResolveBoolean, and OFREP single-flag and bulk evaluation (ofrep_load), on the loadgen's
# 100-flag document. The daemon is pinned to core 0 and the load generator to core 1; the two builds
# alternate, ROUNDS times, so drift on a shared machine hits both alike. Prints one line per run.
#
#   scripts/ab-daemon.sh A_DIR B_DIR [ROUNDS] [SECONDS]
#
# A_DIR and B_DIR are target directories of release builds that hold `flagpole`,
# `examples/loadgen` and `examples/ofrep_load`
# (`cargo build --release -p flagpole --bins --examples`).
set -euo pipefail

a=${1:?target dir of build A}
b=${2:?target dir of build B}
rounds=${3:-3}
seconds=${4:-8}
work=$(mktemp -d)
trap 'kill "${daemon:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$a/release/examples/loadgen" --write-flag-file "$work/flags.json" >/dev/null

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

run() { # build label
  local dir=$1 label=$2
  taskset -c 0 "$dir/release/flagpole" start -p 18013 -m 18014 -g 18015 -r 18016 \
    -f "$work/flags.json" --log-format json >"$work/daemon.log" 2>&1 &
  daemon=$!
  for _ in $(seq 100); do port_free 18016 || break; sleep 0.05; done
  sleep 0.3
  local grpc_string grpc_bool ofrep_single ofrep_bulk
  grpc_string=$(taskset -c 1 "$dir/release/examples/loadgen" --addr http://127.0.0.1:18013 \
    --connections 4 --concurrency 64 --duration "$seconds" --rpc string | sed -n 's/.*throughput=\([0-9]*\).*/\1/p')
  grpc_bool=$(taskset -c 1 "$dir/release/examples/loadgen" --addr http://127.0.0.1:18013 \
    --connections 4 --concurrency 64 --duration "$seconds" --rpc bool | sed -n 's/.*throughput=\([0-9]*\).*/\1/p')
  ofrep_single=$(taskset -c 1 "$dir/release/examples/ofrep_load" --addr 127.0.0.1:18016 \
    --connections 32 --duration "$seconds" --mode single --flag loadgen-string | sed -n 's/.*throughput=\([0-9]*\).*/\1/p')
  ofrep_bulk=$(taskset -c 1 "$dir/release/examples/ofrep_load" --addr 127.0.0.1:18016 \
    --connections 8 --duration "$seconds" --mode bulk | sed -n 's/.*throughput=\([0-9]*\).*/\1/p')
  kill "$daemon"; wait "$daemon" 2>/dev/null || true
  for _ in $(seq 100); do port_free 18013 && port_free 18016 && break; sleep 0.05; done
  printf '%s grpc_string=%s grpc_bool=%s ofrep_single=%s ofrep_bulk=%s req/s\n' \
    "$label" "$grpc_string" "$grpc_bool" "$ofrep_single" "$ofrep_bulk"
}

for round in $(seq "$rounds"); do
  run "$a" "round$round A"
  run "$b" "round$round B"
done
