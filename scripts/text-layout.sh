#!/usr/bin/env bash
# Regenerates daemon/layout/hot-text.ld: the functions a serving daemon runs, which release builds place
# together at the start of the program's code (docs/building.md, "Where the code is placed").
#
#   scripts/text-layout.sh
#
# It builds the release daemon and its load generators, runs the daemon under valgrind's callgrind (which
# records every function executed) through a start and the requests an OpenFeature deployment makes —
# gRPC evaluation (v1 and v2, typed and ResolveAll), EventStream subscribers and a file edit, Connect
# JSON, OFREP single, bulk and change stream, the sync service (FetchAllFlags, SyncFlags), metrics and
# health checks — and writes one linker-script pattern per executed function of the binary. A pattern
# names a function by its mangled path without the hash, without the number link-time optimisation
# appends and without the standard library's crate hashes, so the file stays valid across builds,
# toolchains and the glibc and musl targets until functions are renamed or their generic arguments
# change; rerun it after large changes to the request path or to dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

out=daemon/layout/hot-text.ld
command -v valgrind >/dev/null || { echo "text-layout: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
GHZ=$(scripts/ghz.sh)
cargo build --release --quiet -p flagpole --bin flagpole --example loadgen --example ofrep_load
bin="$PWD/target/release/flagpole"
loadgen="$PWD/target/release/examples/loadgen"
ofrep_load="$PWD/target/release/examples/ofrep_load"

work=$(mktemp -d)
pid=""
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$loadgen" --write-flag-file "$work/flags.json" >/dev/null
# A second source with the other value types and the custom operations.
cat >"$work/more.json" <<'JSON'
{"flags": {
  "layout-int": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "one",
    "targeting": {"fractional": [{"var": "targetingKey"}, ["one", 50], ["two", 50]]}},
  "layout-float": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2.5}, "defaultVariant": "a",
    "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "1.2.0"]}, "b", "a"]}},
  "layout-object": {"state": "ENABLED", "variants": {"x": {"k": "v", "n": [1, 2]}, "y": {}}, "defaultVariant": "x",
    "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "y", null]}}
}}
JSON
P=18113 M=18114 S=18115 R=18116
valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$work/callgrind.out" \
    "$bin" start --port $P --management-port $M --sync-port $S --ofrep-port $R \
    --uri "file:$work/flags.json" --uri "file:$work/more.json" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$M/readyz" && break
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$M/readyz" || { cat "$work/daemon.log" >&2; exit 1; }
# What a started, idle daemon has run goes first in the file: an idle daemon then maps only the start of
# the section. callgrind writes this first part to callgrind.out.1, the rest at exit.
sleep 2
callgrind_control --dump=started "$pid" >/dev/null 2>&1

context='{"targetingKey":"user-7","email":"user7@example.com","country":"de","plan":"pro","age":30,"version":"1.3.0"}'
ghz_call() { # PROTO PORT METHOD DATA [ghz options, default: 100 calls]
    local proto=$1 port=$2 method=$3 data=$4
    shift 4
    (($#)) || set -- -n 100
    "$GHZ" --insecure --proto "proto/proto/$proto" --import-paths proto/proto --call "$method" -d "$data" \
        --connections 2 -c 2 "$@" "127.0.0.1:$port" >/dev/null
}
v1=flagd.evaluation.v1.Service
v2=flagd.evaluation.v2.Service
for rpc in bool string all; do
    "$loadgen" --addr "http://127.0.0.1:$P" --connections 2 --concurrency 4 --warmup 0 --duration 2 --rpc $rpc >/dev/null
done
ghz_call flagd/evaluation/v1/evaluation.proto $P $v1/ResolveInt "{\"flagKey\":\"layout-int\",\"context\":$context}"
ghz_call flagd/evaluation/v1/evaluation.proto $P $v1/ResolveFloat "{\"flagKey\":\"layout-float\",\"context\":$context}"
ghz_call flagd/evaluation/v1/evaluation.proto $P $v1/ResolveObject "{\"flagKey\":\"layout-object\",\"context\":$context}"
ghz_call flagd/evaluation/v1/evaluation.proto $P $v1/ResolveString "{\"flagKey\":\"layout-int\"}"
ghz_call flagd/evaluation/v1/evaluation.proto $P $v1/ResolveBoolean "{\"flagKey\":\"no-such-flag\"}"
ghz_call flagd/evaluation/v2/evaluation.proto $P $v2/ResolveBoolean "{\"flagKey\":\"loadgen-bool\",\"context\":$context}"
ghz_call flagd/evaluation/v2/evaluation.proto $P $v2/ResolveString "{\"flagKey\":\"loadgen-string\",\"context\":$context}"
ghz_call flagd/sync/v1/sync.proto $S flagd.sync.v1.FlagSyncService/FetchAllFlags '{}' -n 20
ghz_call flagd/sync/v1/sync.proto $S flagd.sync.v1.FlagSyncService/SyncFlags '{}' -n 4 --stream-call-duration 3s
"$loadgen" --addr "http://127.0.0.1:$P" --rpc events --subscribers 50 --flag-file "$work/flags.json" --edits 3 >/dev/null
"$ofrep_load" --addr 127.0.0.1:$R --connections 2 --duration 2 --mode single >/dev/null
"$ofrep_load" --addr 127.0.0.1:$R --connections 2 --duration 2 --mode bulk >/dev/null
for _ in 1 2 3; do
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$P/$v1/ResolveBoolean" -H 'Content-Type: application/json' \
        -d "{\"flagKey\":\"loadgen-bool\",\"context\":$context}"
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$P/$v1/ResolveAll" -H 'Content-Type: application/json' -d '{}'
done
curl -s -o /dev/null -m 3 -N -X POST "http://127.0.0.1:$P/$v1/EventStream" \
    -H 'Content-Type: application/connect+json' --data-binary @<(printf '\0\0\0\0\2{}') || true
curl -s -o /dev/null -m 3 -N "http://127.0.0.1:$R/ofrep/v1/evaluate/flags/changes" || true
for path in metrics healthz readyz; do curl -s -o /dev/null "http://127.0.0.1:$M/$path"; done
kill -TERM "$pid"
wait "$pid" || true
pid=""

python3 - "$work/callgrind.out" "$bin" "$out" <<'PY'
import glob, re, subprocess, sys
profile, binary, out = sys.argv[1:4]


def executed_names(path):
    """Every function name in one callgrind dump (it numbers a name the first time and refers to the
    number after)."""
    names = set()
    for line in open(path):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if m:
            names.add(m.group(1))
    return names


dumps = sorted(glob.glob(profile + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
if not dumps:
    sys.exit("text-layout: callgrind wrote no dump of the started daemon")
started = executed_names(dumps[0])
names = set(started)
for path in dumps[1:] + [profile]:
    names |= executed_names(path)
# Keep those that are code of the daemon's own binary.
text = set()
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        text.add(parts[2])
executed = names & text


def pattern(name):
    stem = re.sub(r"(\.llvm)?\.\d+$", "", name)        # the number link-time optimisation appends
    stem = re.sub(r"17h[0-9a-f]{16}E$", "17h", stem)   # the hash of a legacy-mangled name
    if stem.startswith("_R"):
        # A v0-mangled name (the standard library's) names each crate with a hash that differs between
        # toolchains and targets (std of the glibc and of the musl target).
        stem = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", stem)
    return stem


first = sorted({pattern(n) for n in executed & started})
later = sorted({pattern(n) for n in executed - started} - set(first))
patterns = first + later
with open(out, "w") as f:
    f.write("/* Generated by scripts/text-layout.sh: the functions a serving daemon runs, placed together at\n"
            "   the start of the program's code so that the pages the kernel maps around them are few\n"
            "   (docs/building.md, \"Where the code is placed\"): first those a start runs, then those its\n"
            "   requests run. The `.text.*` prefix also takes the compiler's `.text.unlikely.` and\n"
            "   `.text.startup.` sections of the same function. */\n")
    f.write("SECTIONS {\n  .text.hot : {\n")
    # The C a static build links, whole: the start-up object, musl's libc (not one section per function)
    # and the allocator, mimalloc. Absent from a glibc build but for the start-up object.
    f.write("    *crt1.o(.text .text.*)\n    *libc.a:*(.text .text.*)\n    *libmimalloc.a:*(.text .text.*)\n")
    for stem in patterns:
        if stem.startswith(("_ZN", "_R")):
            f.write(f"    *(.text.*{stem}*)\n")
        else:  # a C name (the compiler's runtime, `main`): that function alone
            f.write(f"    *(.text.{stem} .text.*.{stem})\n")
    f.write("  }\n} INSERT BEFORE .text;\n")
print(f"text-layout: {len(executed)} functions executed ({len(executed & started)} by the start), "
      f"{len(patterns)} patterns written to {out}")
PY
