#!/usr/bin/env bash
# Installs the real OpenFeature flagd clients that daemon/tests/it/clients.rs runs against flagpole:
#   - Python openfeature-provider-flagd, current release (calls flagd.evaluation.v2): a venv from
#     clients/python/requirements-latest.txt
#   - Python openfeature-provider-flagd 0.2.7 (calls flagd.evaluation.v1): a second venv from
#     clients/python/requirements-v1.txt
#   - Node @openfeature/flagd-provider, @openfeature/flagd-web-provider and the OFREP providers: `npm ci` in
#     clients/node (package-lock.json pins every package)
#   - OFREP (daemon/tests/it/ofrep_clients.rs): the Python openfeature-provider-ofrep in the python-latest venv,
#     the Node @openfeature/ofrep-provider and the browser @openfeature/ofrep-web-provider in clients/node
#   - Go flagd provider (go-sdk-contrib): clients/go built into one binary (go.sum pins every module)
#   - Java flagd provider (java-sdk-contrib): the class path of clients/java/pom.xml (exact versions)
#   - the dashboard's browser test: Debian's chromium (apt, once) and playwright-core (npm, in clients/node)
#   - the example web app's packages: `npm ci` in examples/web
#   - the OpenTelemetry backend of daemon/tests/it/otel.rs: Jaeger v1.75.0 (an OTLP receiver with a trace
#     store and query API, and a Prometheus exporter for metrics), built from the Go module proxy with the
#     module list pinned by clients/jaeger/go.sum (about 4 minutes, once)
#   - object-store emulators for daemon/tests/it/source_blob.rs: moto's S3 server (PyPI, with the Azure
#     Storage SDK, in the "emulators" venv), fake-gcs-server v1.56.1 (Go module proxy, clients/fake-gcs-server)
#     and Azurite 3.37.0 (npm, clients/azurite)
#   - a real Kubernetes API server for daemon/tests/it/source_kube_apiserver.rs: k8s.io/apiextensions-apiserver
#     v0.37.2 (pinned by clients/kube-apiserver/go.sum, about 3 minutes, once) and Debian's etcd-server
# Everything comes from the package registries with their ordinary clients. Idempotent: a part whose pinned
# inputs did not change since its last successful install is left alone, so running this before every
# `cargo test` costs a second.
#
# Where: $FLAGPOLE_TEST_CLIENTS_DIR, default <workspace>/target/test-clients (git-ignored). The Rust test reads
# the same variable with the same default.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${FLAGPOLE_TEST_CLIENTS_DIR:-$root/target/test-clients}"
mkdir -p "$dest"

# Prints a hash of the given files: a part is reinstalled when its pinned inputs change.
inputs_hash() {
  cat "$@" | sha256sum | cut -d' ' -f1
}

# install_python_venv NAME REQUIREMENTS [MODULE]: a venv at $dest/NAME with exactly the pinned requirements,
# checked by importing MODULE (default: the flagd provider).
install_python_venv() {
  local name="$1" requirements="$2" module="${3:-openfeature.contrib.provider.flagd}"
  local venv="$dest/$name" stamp="$dest/$name.stamp"
  local want
  want="$(inputs_hash "$requirements")"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$venv/bin/python" -c "import $module" 2>/dev/null; then
    echo "install-test-clients: $name is up to date"
    return
  fi
  echo "install-test-clients: installing $name from $requirements"
  rm -rf "$venv" "$stamp"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
  "$venv/bin/python" -c "import $module"
  echo "$want" >"$stamp"
}

install_python_venv python-latest "$root/clients/python/requirements-latest.txt"
install_python_venv python-v1 "$root/clients/python/requirements-v1.txt"
install_python_venv emulators "$root/clients/python/requirements-emulators.txt" "moto, azure.storage.blob"

# Chromium for the dashboard's browser test (daemon/tests/it/dashboard.rs, driven by playwright-core from
# npm): Debian's package, installed once if missing (never a browser downloaded by a test tool).
if [[ ! -x /usr/bin/chromium ]]; then
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    echo "install-test-clients: apt-get install chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; }
  else
    echo "install-test-clients: /usr/bin/chromium is missing; install Debian's chromium package" >&2
    exit 1
  fi
fi

# Node: node_modules lives in clients/node (git-ignored); the stamp sits beside it.
node_stamp="$root/clients/node/node_modules/.flagpole-stamp"
node_want="$(inputs_hash "$root/clients/node/package.json" "$root/clients/node/package-lock.json")"
if [[ -f "$node_stamp" && "$(cat "$node_stamp")" == "$node_want" ]]; then
  echo "install-test-clients: node is up to date"
else
  echo "install-test-clients: npm ci in clients/node"
  (cd "$root/clients/node" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$node_want" >"$node_stamp"
fi

# The example web app (examples/web): React, the OpenFeature React SDK, the OFREP web provider and Vite,
# pinned by its package-lock.json; built by daemon/tests/it/web_example.rs.
web_stamp="$root/examples/web/node_modules/.flagpole-stamp"
web_want="$(inputs_hash "$root/examples/web/package.json" "$root/examples/web/package-lock.json")"
if [[ -f "$web_stamp" && "$(cat "$web_stamp")" == "$web_want" ]]; then
  echo "install-test-clients: examples/web is up to date"
else
  echo "install-test-clients: npm ci in examples/web"
  (cd "$root/examples/web" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$web_want" >"$web_stamp"
fi

# Go: the flagd provider's generated protobuf modules are not in the public checksum database, so they are
# verified against the committed go.sum only (GONOSUMDB); every other module is checked as usual.
go_bin="$dest/go-check-client"
go_stamp="$dest/go-check-client.stamp"
go_want="$(inputs_hash "$root/clients/go/go.mod" "$root/clients/go/go.sum" "$root/clients/go/main.go")"
if [[ -x "$go_bin" && -f "$go_stamp" && "$(cat "$go_stamp")" == "$go_want" ]]; then
  echo "install-test-clients: go is up to date"
else
  echo "install-test-clients: building clients/go"
  (cd "$root/clients/go" && GONOSUMDB=buf.build/gen/go GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$go_bin" .)
  echo "$go_want" >"$go_stamp"
fi

# Jaeger: `go build` of the tool pinned in clients/jaeger/go.mod (every module checked against go.sum).
jaeger_bin="$dest/jaeger/jaeger"
jaeger_stamp="$dest/jaeger.stamp"
jaeger_want="$(inputs_hash "$root/clients/jaeger/go.mod" "$root/clients/jaeger/go.sum")"
if [[ -x "$jaeger_bin" && -f "$jaeger_stamp" && "$(cat "$jaeger_stamp")" == "$jaeger_want" ]]; then
  echo "install-test-clients: jaeger is up to date"
else
  echo "install-test-clients: building jaeger from clients/jaeger (Go module proxy)"
  mkdir -p "$dest/jaeger"
  (cd "$root/clients/jaeger" && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$jaeger_bin" github.com/jaegertracing/jaeger/cmd/jaeger)
  echo "$jaeger_want" >"$jaeger_stamp"
fi

# fake-gcs-server (Google Cloud Storage's JSON API, in memory) and Azurite (Azure Blob Storage).
gcs_bin="$dest/fake-gcs-server/fake-gcs-server"
gcs_stamp="$dest/fake-gcs-server.stamp"
gcs_want="$(inputs_hash "$root/clients/fake-gcs-server/go.mod" "$root/clients/fake-gcs-server/go.sum")"
if [[ -x "$gcs_bin" && -f "$gcs_stamp" && "$(cat "$gcs_stamp")" == "$gcs_want" ]]; then
  echo "install-test-clients: fake-gcs-server is up to date"
else
  echo "install-test-clients: building fake-gcs-server from clients/fake-gcs-server (Go module proxy)"
  mkdir -p "$dest/fake-gcs-server"
  (cd "$root/clients/fake-gcs-server" && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$gcs_bin" github.com/fsouza/fake-gcs-server)
  echo "$gcs_want" >"$gcs_stamp"
fi
azurite_stamp="$root/clients/azurite/node_modules/.flagpole-stamp"
azurite_want="$(inputs_hash "$root/clients/azurite/package.json" "$root/clients/azurite/package-lock.json")"
if [[ -f "$azurite_stamp" && "$(cat "$azurite_stamp")" == "$azurite_want" ]]; then
  echo "install-test-clients: azurite is up to date"
else
  echo "install-test-clients: npm ci in clients/azurite"
  (cd "$root/clients/azurite" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$azurite_want" >"$azurite_stamp"
fi

# The Kubernetes API server (apiextensions-apiserver serves CustomResourceDefinitions and their resources,
# enough for the FeatureFlag source) and etcd, its storage.
kube_bin="$dest/kube-apiserver/apiextensions-apiserver"
kube_stamp="$dest/kube-apiserver.stamp"
kube_want="$(inputs_hash "$root/clients/kube-apiserver/go.mod" "$root/clients/kube-apiserver/go.sum")"
if [[ -x "$kube_bin" && -f "$kube_stamp" && "$(cat "$kube_stamp")" == "$kube_want" ]]; then
  echo "install-test-clients: kube-apiserver is up to date"
else
  echo "install-test-clients: building k8s.io/apiextensions-apiserver from clients/kube-apiserver (Go module proxy)"
  mkdir -p "$dest/kube-apiserver"
  (cd "$root/clients/kube-apiserver" && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$kube_bin" k8s.io/apiextensions-apiserver)
  echo "$kube_want" >"$kube_stamp"
fi
if [[ ! -x /usr/bin/etcd ]]; then
  if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
    echo "install-test-clients: apt-get install etcd-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server >/dev/null; }
  else
    echo "install-test-clients: /usr/bin/etcd is missing; install Debian's etcd-server package" >&2
    exit 1
  fi
fi
# etcd-server's package starts a system etcd on the default ports; the tests start their own on free ports.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd 2>/dev/null || true
fi

# Java: the provider and its dependencies from Maven Central; CheckClient.java runs as a single source file on
# the class path written here, so nothing is compiled.
java_cp="$dest/java-classpath.txt"
java_stamp="$dest/java-classpath.stamp"
java_want="$(inputs_hash "$root/clients/java/pom.xml")"
if [[ -s "$java_cp" && -f "$java_stamp" && "$(cat "$java_stamp")" == "$java_want" ]]; then
  echo "install-test-clients: java is up to date"
else
  echo "install-test-clients: resolving clients/java/pom.xml"
  mvn -q -B -f "$root/clients/java/pom.xml" dependency:build-classpath -Dmdep.outputFile="$java_cp"
  echo "$java_want" >"$java_stamp"
fi

echo "install-test-clients: ready in $dest"
