#!/usr/bin/env bash
# Regenerates daemon/layout/hot-text.ld: the functions a serving daemon runs, which release builds place
# together at the start of the program's code (docs/building.md, "Where the code is placed").
#
#   scripts/text-layout.sh
#
# It builds the release daemon (for glibc and, static, for musl) and its load generators, runs each daemon
# under valgrind's callgrind (which records every function executed) through a start and the requests an
# OpenFeature deployment makes — gRPC evaluation (v1 and v2, typed and ResolveAll), EventStream
# subscribers and a file edit, Connect JSON, OFREP single, bulk and change stream, the sync service
# (FetchAllFlags, SyncFlags), metrics and health checks — and writes one linker-script pattern per function
# that ran in either build. A pattern names a function by its v0-mangled name (which spells out its
# generic arguments; .cargo/config.toml) without the number link-time optimisation appends, the crate
# hashes, the offsets of back-references and the crate that instantiated it, so the file stays valid
# across builds, toolchains and the two targets until functions are renamed or their generic arguments
# change; rerun it after large changes to the request path or to dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

out=daemon/layout/hot-text.ld
command -v valgrind >/dev/null || { echo "text-layout: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
GHZ=$(scripts/ghz.sh)
cargo build --release --quiet -p flagpole --bin flagpole --example loadgen --example ofrep_load
loadgen="$PWD/target/release/examples/loadgen"
ofrep_load="$PWD/target/release/examples/ofrep_load"
# Both targets the project ships are profiled: the glibc build and the static musl build (the image).
# Their standard libraries differ, and with them what link-time optimisation inlines, so each runs some
# functions the other does not.
musl=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -qx "$musl" ||
    { echo "text-layout: the $musl target is needed (rustup target add $musl)" >&2; exit 1; }
cargo build --release --quiet -p flagpole --bin flagpole --target "$musl"
binaries=("$PWD/target/release/flagpole" "$PWD/target/$musl/release/flagpole")
# The patterns need v0 names; a RUSTFLAGS of one's own replaces the workspace's and with it the flag.
for bin in "${binaries[@]}"; do
    if nm --defined-only "$bin" | grep -qE ' _ZN[0-9A-Za-z_$.]*17h[0-9a-f]{16}E$'; then
        echo "text-layout: $bin has legacy symbol names; build with -Csymbol-mangling-version=v0" \
            "(.cargo/config.toml; add it to RUSTFLAGS if you set them)" >&2
        exit 1
    fi
done

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
profile() { # BINARY OUT: runs the daemon under callgrind through a start and the requests
    local bin=$1 profile=$2
    valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$profile" \
        "$bin" start --port $P --management-port $M --sync-port $S --ofrep-port $R \
        --uri "file:$work/flags.json" --uri "file:$work/more.json" >"$work/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do
        curl -sf -o /dev/null "http://127.0.0.1:$M/readyz" && break
        sleep 0.1
    done
    curl -sf -o /dev/null "http://127.0.0.1:$M/readyz" || { cat "$work/daemon.log" >&2; exit 1; }
    # What a started, idle daemon has run goes first in the file: an idle daemon then maps only the start
    # of the section. callgrind writes this first part to OUT.1, the rest to OUT at exit.
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
}
profile "${binaries[0]}" "$work/glibc.out"
profile "${binaries[1]}" "$work/musl.out"

python3 - "$out" "$work/glibc.out" "${binaries[0]}" "$work/musl.out" "${binaries[1]}" <<'PY'
import glob, re, subprocess, sys
out = sys.argv[1]
runs = list(zip(sys.argv[2::2], sys.argv[3::2]))


def executed_names(path):
    """Every function name in one callgrind dump (it numbers a name the first time and refers to the
    number after)."""
    names = set()
    for line in open(path):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if m:
            names.add(m.group(1))
    return names


def executed_in(profile, binary):
    """The functions of `binary` that ran in its profile: (all of them, those the start ran)."""
    dumps = sorted(glob.glob(profile + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    if not dumps:
        sys.exit(f"text-layout: callgrind wrote no dump of the started daemon ({binary})")
    started = executed_names(dumps[0])
    names = set(started)
    for path in dumps[1:] + [profile]:
        names |= executed_names(path)
    # Keep those that are code of the daemon's own binary.
    text = set()
    for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            text.add(parts[2])
    return names & text, names & text & started


def pattern(name):
    stem = re.sub(r"(\.llvm)?\.\d+$", "", name)        # the number link-time optimisation appends
    if stem.startswith("_R"):
        # A v0-mangled name (.cargo/config.toml) names each crate with a hash that differs between
        # toolchains and targets (the glibc and the musl target), and refers back to earlier parts of
        # itself by their offset, which moves when an earlier crate hash has another length.
        # An instance of a generic function ends with the crate that instantiated it; which crate's copy
        # survives link-time optimisation differs between targets, and every copy is the same code.
        for at in (i for i in range(len(stem) - 1, 2, -1) if stem[i] == "C"):
            crate = re.fullmatch(r"C(?:s[0-9A-Za-z]*_)?(\d+)([A-Za-z0-9_]+)", stem[at:])
            if crate and len(crate.group(2)) == int(crate.group(1)):
                stem = stem[:at]
                break
        else:
            stem = re.sub(r"B[0-9A-Za-z]*_$", "", stem)
        stem = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", stem)
        stem = re.sub(r"B[0-9A-Za-z]*?_", "B*_", stem)
    return stem


first, every, executed, at_start = set(), set(), 0, 0
for profile, binary in runs:
    ran, ran_at_start = executed_in(profile, binary)
    first |= {pattern(n) for n in ran_at_start}
    every |= {pattern(n) for n in ran}
    executed, at_start = max(executed, len(ran)), max(at_start, len(ran_at_start))
first = sorted(first)
later = sorted(every - set(first))
patterns = first + later
with open(out, "w") as f:
    f.write("/* Generated by scripts/text-layout.sh: the functions a serving daemon runs, placed together at\n"
            "   the start of the program's code so that the pages the kernel maps around them are few\n"
            "   (docs/building.md, \"Where the code is placed\"): first those a start runs, then those its\n"
            "   requests run. The `.text.*` prefix also takes the compiler's `.text.unlikely.` and\n"
            "   `.text.startup.` sections of the same function. */\n")
    f.write("SECTIONS {\n  .text.hot : {\n")
    # The C a static build links, whole: the start-up objects, musl's libc (not one section per function)
    # and the allocator, mimalloc, which the linker finds inside the libmimalloc-sys crate's archive.
    # Absent from a glibc build but for the start-up objects.
    f.write("    *crt1.o(.text .text.*)\n    *libc.a:*(.text .text.*)\n    *crtbegin*.o(.text .text.*)\n    *liblibmimalloc_sys-*.rlib:*(.text .text.*)\n")
    for stem in patterns:
        if stem.startswith(("_ZN", "_R")):  # a Rust (v0) or C++ (libunwind's) name
            f.write(f"    *(.text.*{stem}*)\n")
        else:  # a C name (the compiler's runtime, `main`): that function alone
            f.write(f"    *(.text.{stem} .text.*.{stem})\n")
    f.write("  }\n} INSERT BEFORE .text;\n")
print(f"text-layout: up to {executed} functions executed per target ({at_start} by the start), "
      f"{len(patterns)} patterns written to {out}")
PY
