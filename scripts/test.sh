#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, docs, unit and integration tests, the flagd-testbed
# suites (engine and provider/daemon, see docs/conformance.md) and the real-client tests (Python, Node, Go,
# Java flagd providers against the daemon), the Helm chart checks, the image checks (scripts/test-image.sh:
# the Dockerfile's static build, entrypoint and user) and the supply-chain checks (cargo-deny,
# the third-party notice, packaging of the published crates: scripts/supply-chain.sh). Installs its own
# test clients from the package registries when they are absent (scripts/install-test-clients.sh;
# idempotent, a second run costs about a second).
set -euo pipefail
cd "$(dirname "$0")/.."

# The pinned flagd-testbed and flagd-schemas, fetched from crates.io and checked by checksum (cached under
# target/); the environment variables override them.
if [[ -z "${FLAGD_TESTBED_DIR:-}" || -z "${FLAGD_SCHEMAS_DIR:-}" ]]; then
  pinned="$PWD/$(./scripts/fetch-testbed.sh)"
  export FLAGD_TESTBED_DIR="${FLAGD_TESTBED_DIR:-$pinned/flagd-testbed}"
  export FLAGD_SCHEMAS_DIR="${FLAGD_SCHEMAS_DIR:-$pinned/schemas}"
fi

./scripts/install-test-clients.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace
./scripts/test-chart.sh
./scripts/test-image.sh
./scripts/supply-chain.sh
