#!/usr/bin/env bash
# Supply-chain checks of the test command (docs/supply-chain.md):
#   1. cargo-deny: licences, bans (OpenSSL, wildcards, duplicate versions beyond the listed ones) and sources
#      of every crate in Cargo.lock (deny.toml). Offline: the RustSec advisory database is fetched from
#      GitHub, which the test machines cannot reach, so `advisories` is not checked here.
#   2. The third-party licence notice, THIRD-PARTY-LICENSES.md, is what cargo-about generates from
#      Cargo.lock (about.toml, about.hbs) for the daemon binary: a dependency change without a regenerated
#      notice fails. `--update-notice` rewrites it instead.
#   3. The four published crates package and build from their packages alone (`cargo package` with
#      verification).
# The tools are installed from crates.io at pinned versions into target/tools (once; reinstalled when the
# pinned version changes).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
CARGO_ABOUT_VERSION=0.9.3
TOOLS="$PWD/target/tools"

# install NAME VERSION [cargo install args...]: target/tools/NAME-VERSION/bin/NAME, built once.
install() {
    local name=$1 version=$2 root
    shift 2
    root="$TOOLS/$name-$version"
    if [[ ! -x "$root/bin/$name" ]]; then
        echo "supply-chain: installing $name $version from crates.io" >&2
        cargo install --quiet --locked "$name@$version" --root "$root" "$@" >&2
    fi
    echo "$root/bin/$name"
}

deny=$(install cargo-deny "$CARGO_DENY_VERSION")
about=$(install cargo-about "$CARGO_ABOUT_VERSION" --features cli)

# Every crate of every platform in Cargo.lock must be on disk for the offline checks.
cargo fetch --locked --quiet

if [[ "${1:-}" == --update-notice ]]; then
    "$about" generate --offline --locked -m daemon/Cargo.toml -c about.toml -o THIRD-PARTY-LICENSES.md about.hbs
    echo "supply-chain: THIRD-PARTY-LICENSES.md regenerated"
    exit 0
fi

"$deny" --offline --locked check licenses bans sources

notice=$(mktemp)
trap 'rm -f "$notice"' EXIT
"$about" generate --offline --locked -m daemon/Cargo.toml -c about.toml -o "$notice" about.hbs 2>/dev/null
if ! diff -q "$notice" THIRD-PARTY-LICENSES.md >/dev/null; then
    diff -u THIRD-PARTY-LICENSES.md "$notice" | head -40 >&2 || true
    echo "supply-chain: FAILED: THIRD-PARTY-LICENSES.md is out of date; run scripts/supply-chain.sh --update-notice" >&2
    exit 1
fi
echo "supply-chain: third-party notice is current"

cargo package --locked --quiet --allow-dirty \
    -p flagpole-proto -p flagpole-engine -p flagpole-provider -p flagpole
echo "supply-chain: the four published crates package and build from their packages"
