#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit/integration tests, the testbed suites and the
# real-client tests. Installs its own Python/Node test clients (from the package registries) when absent.
set -euo pipefail
cd "$(dirname "$0")/.."

export FLAGD_TESTBED_DIR="${FLAGD_TESTBED_DIR:-$PWD/../shared/flagd-testbed}"
export FLAGD_SCHEMAS_DIR="${FLAGD_SCHEMAS_DIR:-$PWD/../shared/flagd-schemas}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
