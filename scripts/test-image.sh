#!/usr/bin/env bash
# Checks the container image as far as a machine without a container engine can (docs/kubernetes.md, "The
# image"):
#   1. the Dockerfile's runtime stage: distroless static "nonroot" base, the binary at /flagd-build and
#      /usr/local/bin/flagpole, USER 65532:65532, ENTRYPOINT ["/flagd-build"], the four ports;
#   2. its build step: the exact `cargo build` line of the Dockerfile, for this machine's musl target
#      (musl-tools from Debian's archive and the rustup target are installed when missing);
#   3. the binary is static (no ELF interpreter);
#   4. it runs in the image's layout: a root filesystem holding nothing but the two copies of the binary and a
#      flag file, entered with chroot as user 65532 (root needed; elsewhere the binary runs in place), started
#      with the README's `docker run` arguments, answering /readyz and an evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1" >&2; }

# 1. The runtime stage, line by line.
runtime=$(sed -n '/^FROM gcr.io\/distroless\/static-debian12:nonroot/,$p' Dockerfile)
for want in 'COPY --from=builder /out/flagpole /usr/local/bin/flagpole' \
    'COPY --from=builder /out/flagpole /flagd-build' 'USER 65532:65532' \
    'EXPOSE 8013 8014 8015 8016' 'ENTRYPOINT ["/flagd-build"]'; do
    if [[ -n "$runtime" ]] && grep -qxF -- "$want" <<<"$runtime"; then
        pass "Dockerfile runtime stage (distroless static nonroot): $want"
    else
        fail "Dockerfile runtime stage (distroless static nonroot): $want"
    fi
done

# 2. The build step: the Dockerfile's own cargo command, for this architecture's musl target.
target="$(uname -m)-unknown-linux-musl"
build=$(grep -o 'cargo build [^\\&]*' Dockerfile | sed 's/[[:space:]]*$//')
if [[ "$build" != 'cargo build --release --locked -p flagpole --bin flagpole --target "$target"' ]]; then
    fail "Dockerfile build step not recognised: '$build'"
    echo "test-image: $passed passed, $failed failed" >&2
    exit 1
fi
if ! command -v musl-gcc >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "test-image: installing musl-tools (Debian's archive)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools >/dev/null
    else
        fail "musl-gcc is missing (apt-get install musl-tools)"
        exit 1
    fi
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
eval "$build" >&2
binary="target/$target/release/flagpole"
pass "static build: $build (target $target)"

# 3. Static: no program interpreter, so it runs on distroless/static.
if ! LC_ALL=C readelf -l "$binary" | grep -q 'INTERP'; then
    pass "the binary has no ELF interpreter (static)"
else
    fail "the binary has no ELF interpreter (static)"
fi

# 3b. The code a serving daemon runs is placed together (daemon/build.rs, docs/building.md): a `.text.hot`
# section that holds, among others, the gRPC ResolveBoolean handler, the engine's evaluation, the flag
# document loader and the Struct → JSON converter.
placed=$(python3 - "$binary" <<'PY'
import re, subprocess, sys
binary = sys.argv[1]
sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
m = re.search(r"\s\.text\.hot\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", sections)
if not m:
    print("the static binary has no .text.hot section")
    sys.exit(0)
lo, hi = int(m.group(1), 16), int(m.group(1), 16) + int(m.group(2), 16)
# Symbols are v0-mangled (.cargo/config.toml): a closure demangles as `{closure#0}`.
wanted = [r"<flagpole::protocols::grpc::evaluation_v1::EvaluationV1 as .*>::resolve_boolean::\{closure#0\}",
          r"flagpole_engine::evaluate::evaluate", r"flagpole_engine::load::load", r"flagpole_proto::json::json_to_value"]
symbols = []
for line in subprocess.run(["nm", "-C", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    address, kind, name = (line.split(" ", 2) + ["", ""])[:3]
    if kind in "tT" and address:
        symbols.append((int(address, 16), re.sub(r"::h[0-9a-f]{16}$", "", name)))
missing = []
for pattern in wanted:
    found = [a for a, name in symbols if re.fullmatch(pattern, name)]
    if not found or not all(lo <= a < hi for a in found):
        missing.append(f"{pattern} ({sum(lo <= a < hi for a in found)} of {len(found)} inside)")
print(f"ok {(hi - lo) // 1024}" if not missing else "not in .text.hot: " + "; ".join(missing))
PY
)
if [[ "$placed" == ok* ]]; then
    pass "the daemon's running code is placed together: .text.hot (${placed#ok } KiB) holds the ResolveBoolean handler, evaluation, loading and the Struct converter"
else
    fail "the daemon's running code is placed together: $placed"
fi

# 4. The image's layout and user.
root=$(mktemp -d)
daemon=""
trap 'kill "$daemon" 2>/dev/null || true; rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/local/bin/flagpole"
install -D -m 0755 "$binary" "$root/flagd-build"
install -D -m 0644 examples/flags.json "$root/flags/flags.json"
chmod 0755 "$root"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p=$(free_port); m=$(free_port); g=$(free_port); r=$(free_port)
# The README's `docker run ... flagpole:0.1.0 start --uri file:/flags/flags.json`, on free ports.
args=(start --uri file:/flags/flags.json -p "$p" -m "$m" -g "$g" -r "$r")
if [[ $(id -u) == 0 ]]; then
    chroot --userspec=65532:65532 "$root" /flagd-build "${args[@]}" >"$root.log" 2>&1 &
    where="chroot into the image layout as 65532:65532"
else
    (cd "$root" && ./flagd-build start --uri "file:$root/flags/flags.json" -p "$p" -m "$m" -g "$g" -r "$r") \
        >"$root.log" 2>&1 &
    where="in place (not root: no chroot)"
fi
daemon=$!
ready=""
for _ in $(seq 100); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$m/readyz") == 200 ]]; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ -n "$ready" ]]; then
    pass "ENTRYPOINT + README arguments serve ($where): /readyz 200"
else
    cat "$root.log" >&2
    fail "ENTRYPOINT + README arguments serve ($where): /readyz 200"
fi
answer=$(curl -s -X POST "http://127.0.0.1:$p/flagd.evaluation.v1.Service/ResolveInt" \
    -H 'Content-Type: application/json' -d '{"flagKey":"max-items","context":{"appVersion":"2.1.0"}}')
if grep -q '"value":"100"' <<<"$answer" && grep -q '"variant":"large"' <<<"$answer"; then
    pass "an evaluation answers as in the README: $answer"
else
    fail "an evaluation answers as in the README: $answer"
fi
if [[ $(id -u) == 0 ]]; then
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$daemon/status" 2>/dev/null || true)
    if [[ "$uid" == 65532 ]]; then
        pass "the daemon runs as user 65532, on a root-owned filesystem it cannot write to"
    else
        fail "the daemon runs as user 65532 (found uid '$uid')"
    fi
fi
kill "$daemon" 2>/dev/null || true
wait "$daemon" 2>/dev/null || true
rm -f "$root.log"

echo "test-image: $passed passed, $failed failed"
[[ $failed == 0 ]]
