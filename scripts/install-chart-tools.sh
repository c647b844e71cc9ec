#!/usr/bin/env bash
# Installs the tools scripts/test-chart.sh needs into target/tools, from the package registries only:
#   - helm and kubeconform, built with `go install` from the Go module proxy (pinned versions);
#   - the Kubernetes JSON schemas that the PyPI package kubernetes-validate ships, converted once so that
#     kubeconform can read them offline (kubeconform's default schema location is a web site this
#     machine cannot reach).
# Idempotent: every step is skipped when its result is already there. Prints the tool directory.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes version whose schemas the manifests are checked against (shipped by that package).
KUBERNETES_VERSION=1.37.0

TOOLS="$PWD/target/tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
    echo "install-chart-tools: go is not installed; helm and kubeconform are built with 'go install'" >&2
    exit 1
fi

# A binary counts as installed only if it is the pinned version (a stamp file next to it says which).
install_go_tool() { # name module version [ldflags]
    local name=$1 module=$2 version=$3 ldflags=${4:-}
    if [[ -x "$BIN/$name" && "$(cat "$BIN/.$name.version" 2>/dev/null)" == "$version $ldflags" ]]; then
        return
    fi
    echo "install-chart-tools: go install $module@$version" >&2
    GOBIN="$BIN" GOFLAGS=-buildvcs=false go install -ldflags "$ldflags" "$module@$version"
    echo "$version $ldflags" >"$BIN/.$name.version"
}
# helm's release builds stamp their version and default Kubernetes version (the one of the client-go they
# build with, 1.37 for v3.22) with -X; a plain `go install` would say v1.20, below the chart's kubeVersion.
HELM_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=37"
done
install_go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$HELM_LDFLAGS"
install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

SCHEMAS="$TOOLS/kubernetes-json-schema"
STAMP="$SCHEMAS/.version"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]]; then
    VENV="$TOOLS/venv"
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    rm -rf "$SCHEMAS"
    mkdir -p "$SCHEMAS"
    # The package's schemas name themselves with absolute https `$id`s and point at a shared
    # `/api/_definitions.json`; drop the ids and make the references relative so that kubeconform
    # resolves them from the local directory instead of the network.
    "$VENV/bin/python" - "$SCHEMAS" "v$KUBERNETES_VERSION" <<'PY'
import json, pathlib, sys
import kubernetes_validate

out, version = pathlib.Path(sys.argv[1]), sys.argv[2]
root = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
for flavour in ("local", "local-strict"):
    src = root / f"{version}-{flavour}"
    if not src.is_dir():
        sys.exit(f"install-chart-tools: kubernetes-validate has no {src.name} schemas")
    dst = out / src.name
    dst.mkdir(parents=True)
    for path in src.glob("*.json"):
        text = path.read_text().replace('"/api/_definitions.json#', '"_definitions.json#')
        doc = json.loads(text)
        doc.pop("$id", None)
        (dst / path.name).write_text(json.dumps(doc))
PY
    echo "$KUBERNETES_VALIDATE_VERSION" >"$STAMP"
fi

echo "$TOOLS"
