#!/usr/bin/env bash
# Prints the path of ghz (the neutral gRPC load generator the benchmark scripts use), built once from the
# Go module proxy into target/tools at the pinned version.
#
#   GHZ=$(scripts/ghz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
GHZ_VERSION=v0.120.0
tools="$PWD/target/tools/ghz-$GHZ_VERSION"
if [[ ! -x "$tools/bin/ghz" ]]; then
    echo "ghz: installing ghz $GHZ_VERSION from the Go module proxy" >&2
    GOBIN="$tools/bin" go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION" >&2
fi
echo "$tools/bin/ghz"
