#!/usr/bin/env bash
# Fetches the pinned flagd-testbed and flagd-schemas from crates.io and unpacks them under target/:
# the package `open-feature-flagd` 0.3.0 ships flagd-testbed 3.10.3 (`flagd-testbed/`) and flagd-schemas
# 0.2.13 (`schemas/`). The archive is checked against its SHA-256 (the checksum crates.io's index lists for
# that version) before anything is unpacked; a second run with the data in place does nothing.
#
#   scripts/fetch-testbed.sh        # prints the directory it unpacked to
#
# The test command sets FLAGD_TESTBED_DIR and FLAGD_SCHEMAS_DIR to the unpacked directories unless they are
# already set (docs/conformance.md).
set -euo pipefail
cd "$(dirname "$0")/.."

name=open-feature-flagd
version=0.3.0
sha256=c35123d6b138c7e222a046ea1db93b516db487d6aab35579645e1168fb2a44f8
url="https://static.crates.io/crates/$name/$name-$version.crate"
# Keep in step with conformance-tests/src/lib.rs (PINNED_DATA_DIR).
base=target/flagd-data
dir="$base/$name-$version"
marker="$dir/.sha256"

if [[ -f "$marker" && "$(cat "$marker")" == "$sha256" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$base"
archive=$(mktemp "$base/download.XXXXXX")
trap 'rm -f "$archive"' EXIT
curl --fail --silent --show-error --location --retry 3 --max-time 120 -o "$archive" "$url"
actual=$(sha256sum "$archive" | cut -d' ' -f1)
if [[ "$actual" != "$sha256" ]]; then
  echo "fetch-testbed: $url has SHA-256 $actual, expected $sha256" >&2
  exit 1
fi
rm -rf "$dir"
# Only the two data directories; the package's Rust sources are not needed.
tar -xzf "$archive" -C "$base" "$name-$version/flagd-testbed" "$name-$version/schemas"
for required in flagd-testbed/gherkin flagd-testbed/evaluator/gherkin flagd-testbed/flags schemas/json/test; do
  [[ -d "$dir/$required" ]] || { echo "fetch-testbed: $dir/$required is missing" >&2; exit 1; }
done
echo "$sha256" >"$marker"
echo "$dir"
