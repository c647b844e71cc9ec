#!/usr/bin/env bash
# Tests the Helm chart in charts/flagpole: `helm lint --strict` and `helm template` with the default values
# and with every optional feature on (charts/flagpole/ci/all-features.yaml), then kubeconform -strict on
# the rendered manifests against the Kubernetes schemas; then values that must be refused are refused.
# Installs its tools first (scripts/install-chart-tools.sh: registries only, idempotent).
# If the tools cannot be installed the run fails, unless CHART_TOOLS_REQUIRED=0, which turns that into a
# loud "did not run" and exit 0 (for machines without the Go toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/flagpole
# Must match install-chart-tools.sh: the schemas it converted.
KUBERNETES_VERSION=1.37.0

if ! TOOLS=$(scripts/install-chart-tools.sh); then
    if [[ "${CHART_TOOLS_REQUIRED:-1}" == 0 ]]; then
        echo "test-chart: DID NOT RUN: helm/kubeconform could not be installed (CHART_TOOLS_REQUIRED=0)" >&2
        exit 0
    fi
    echo "test-chart: FAILED: helm/kubeconform could not be installed" >&2
    exit 1
fi
HELM="$TOOLS/bin/helm"
KUBECONFORM="$TOOLS/bin/kubeconform"
SCHEMA_LOCATION="$TOOLS/kubernetes-json-schema/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# helm reads and writes its caches and config under these; keep them out of $HOME.
export HELM_CACHE_HOME="$OUT/helm-cache" HELM_CONFIG_HOME="$OUT/helm-config" HELM_DATA_HOME="$OUT/helm-data"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1" >&2; }

# render NAME [helm args...]: lint and template the chart; the manifests land in $OUT/NAME.yaml.
render() {
    local name=$1
    shift
    "$HELM" lint "$CHART" --strict --kube-version "$KUBERNETES_VERSION" "$@" >"$OUT/$name.lint" 2>&1 &&
        "$HELM" template flagpole "$CHART" --namespace flags --kube-version "$KUBERNETES_VERSION" \
            "$@" >"$OUT/$name.yaml" 2>"$OUT/$name.err"
}

# check NAME: kubeconform -strict on $OUT/NAME.yaml. Only the ServiceMonitor and the PrometheusRule
# (prometheus-operator CRDs, no schema shipped) are skipped, by their exact group/version/kind; any other
# kind without a schema fails. The PrometheusRule's content is checked below instead.
check() {
    "$KUBECONFORM" -strict -summary -kubernetes-version "$KUBERNETES_VERSION" \
        -schema-location "$SCHEMA_LOCATION" -skip monitoring.coreos.com/v1/ServiceMonitor,monitoring.coreos.com/v1/PrometheusRule \
        "$OUT/$1.yaml" >"$OUT/$1.kubeconform" 2>&1
}

# expect_kinds NAME KIND...: each kind is rendered exactly once.
expect_kinds() {
    local name=$1 kind n
    shift
    for kind in "$@"; do
        n=$(grep -c "^kind: $kind\$" "$OUT/$name.yaml" || true)
        if [[ "$n" != 1 ]]; then
            echo "  $name: expected one $kind, found $n" >&2
            return 1
        fi
    done
}

# The two supported configurations: render, check, and the expected resources are there.
for case in default all-features; do
    args=()
    [[ $case == all-features ]] && args=(-f "$CHART/ci/all-features.yaml")
    if ! render "$case" "${args[@]}"; then
        cat "$OUT/$case.lint" "$OUT/$case.err" >&2 2>/dev/null || true
        fail "$case: helm lint / helm template"
        continue
    fi
    pass "$case: helm lint --strict and helm template"
    if check "$case"; then
        pass "$case: kubeconform -strict ($(tail -1 "$OUT/$case.kubeconform"))"
    else
        cat "$OUT/$case.kubeconform" >&2
        fail "$case: kubeconform -strict"
    fi
done
if expect_kinds default Deployment Service ConfigMap ServiceAccount &&
    ! grep -qE '^kind: (ServiceMonitor|PrometheusRule|PodDisruptionBudget|HorizontalPodAutoscaler|Role|RoleBinding)$' \
        "$OUT/default.yaml" &&
    [[ $(grep -c 'automountServiceAccountToken: false' "$OUT/default.yaml") == 2 ]]; then
    pass "default: Deployment, Service, ConfigMap, ServiceAccount, no optional resource, no API token"
else
    fail "default: resource kinds"
fi
if expect_kinds all-features Deployment Service ServiceAccount ServiceMonitor PrometheusRule \
    PodDisruptionBudget HorizontalPodAutoscaler &&
    [[ $(grep -c '^kind: ConfigMap$' "$OUT/all-features.yaml") == 2 ]]; then
    pass "all-features: every optional resource is rendered"
else
    fail "all-features: resource kinds"
fi
# rbac.create for the kubernetes source: a Role (get, list, watch on featureflags.core.openfeature.dev) and
# a RoleBinding to the pods' ServiceAccount in each listed namespace, and the token mounted.
roles_in() { # NAME: the namespaces of the rendered Roles, or of the RoleBindings with ROLEBINDING=1
    "$TOOLS/venv/bin/python" - "$OUT/$1.yaml" "${ROLEBINDING:-0}" <<'PY'
import sys, yaml

kind = "RoleBinding" if sys.argv[2] == "1" else "Role"
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == kind]
for d in docs:
    if kind == "Role":
        rule = d["rules"][0]
        assert rule["apiGroups"] == ["core.openfeature.dev"], rule
        assert rule["resources"] == ["featureflags"], rule
        assert rule["verbs"] == ["get", "list", "watch"], rule
        names = ",".join(rule.get("resourceNames", []))
    else:
        subject = d["subjects"][0]
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == "flags", subject
        assert d["roleRef"]["kind"] == "Role", d["roleRef"]
        names = subject["name"]
    print(f'{d["metadata"]["namespace"]}:{names}')
PY
}
if [[ $(roles_in all-features | paste -sd' ') == "flags:app-flags team-a:app-flags" ]] &&
    [[ $(ROLEBINDING=1 roles_in all-features | paste -sd' ') == "flags:flagpole-sa team-a:flagpole-sa" ]] &&
    grep -qF -- '\"provider\":\"kubernetes\"' "$OUT/all-features.yaml"; then
    pass "all-features: a Role and a RoleBinding per rbac namespace, limited to rbac.resourceNames"
else
    fail "all-features: a Role and a RoleBinding per rbac namespace, limited to rbac.resourceNames"
fi
if render rbac --set rbac.create=true --set flags.example=false \
    --set-json 'sources=[{"uri":"flags/app-flags","provider":"kubernetes","lazy":true}]' && check rbac &&
    [[ $(roles_in rbac) == "flags:" ]] && [[ $(ROLEBINDING=1 roles_in rbac) == "flags:flagpole" ]] &&
    [[ $(grep -c 'automountServiceAccountToken: true' "$OUT/rbac.yaml") == 2 ]]; then
    pass "rbac.create alone: Role and RoleBinding in the release namespace, token mounted"
else
    cat "$OUT"/rbac.* >&2 2>/dev/null || true
    fail "rbac.create alone: Role and RoleBinding in the release namespace, token mounted"
fi
# NOTES.txt warns when a kubernetes source has no ServiceAccount token to use. helm template does not render
# NOTES.txt, so a scratch copy of the chart renders it through tpl.
notes() { # helm args...: prints the rendered NOTES.txt (JSON-quoted)
    rm -rf "$OUT/notes-chart"
    cp -r "$CHART" "$OUT/notes-chart"
    cp "$CHART/templates/NOTES.txt" "$OUT/notes-chart/files/notes.txt"
    printf '%s\n' 'notes: {{ tpl (.Files.Get "files/notes.txt") . | toJson }}' \
        >"$OUT/notes-chart/templates/notes-check.yaml"
    "$HELM" template flagpole "$OUT/notes-chart" --namespace flags --kube-version "$KUBERNETES_VERSION" \
        --show-only templates/notes-check.yaml "$@"
}
KUBERNETES_SOURCE='sources=[{"uri":"flags/app-flags","provider":"kubernetes"}]'
if notes --set-json "$KUBERNETES_SOURCE" | grep -q 'WARNING: a kubernetes source' &&
    notes --set 'uris={core.openfeature.dev/flags/app-flags}' | grep -q 'WARNING: a kubernetes source' &&
    notes | grep -q 'In-cluster endpoints' && ! notes | grep -q WARNING &&
    ! notes --set-json "$KUBERNETES_SOURCE" --set rbac.create=true | grep -q WARNING &&
    ! notes --set-json "$KUBERNETES_SOURCE" --set serviceAccount.automountToken=true | grep -q WARNING; then
    pass "NOTES.txt: warns about a kubernetes source without a ServiceAccount token, only then"
else
    fail "NOTES.txt: warns about a kubernetes source without a ServiceAccount token, only then"
fi
# What the daemon is started with: probes on the management port, the ConfigMap directory mount and one
# --uri per flag file, and the non-root read-only security context.
for want in '- start' 'path: /healthz' 'path: /readyz' '"file:/etc/flagpole/flags/example.flags.json"' \
    'mountPath: /etc/flagpole/flags' 'readOnlyRootFilesystem: true' 'runAsUser: 65532' \
    '- ALL' 'type: RuntimeDefault'; do
    if grep -qF -- "$want" "$OUT/default.yaml"; then
        pass "default: renders '$want'"
    else
        fail "default: renders '$want'"
    fi
done
# The Service leaves the sync port (the whole flag configuration) out unless asked; the pod knows its own
# name for `$(POD_NAME)` in arguments (a per-pod intervalSeed).
service_ports() { # NAME: the Service's port names, comma-separated
    "$TOOLS/venv/bin/python" - "$OUT/$1.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Service"]
print(",".join(p["name"] for p in docs[0]["spec"]["ports"]))
PY
}
if [[ $(service_ports default) == "evaluation,management,ofrep" ]] &&
    [[ $(service_ports all-features) == "evaluation,management,sync" ]]; then
    pass "Service: the sync port only when service.expose.sync is set"
else
    fail "Service: the sync port only when service.expose.sync is set ($(service_ports default); $(service_ports all-features))"
fi
if grep -qF 'fieldPath: metadata.name' "$OUT/default.yaml" &&
    grep -qF '\"intervalSeed\":\"$(POD_NAME)\"' "$OUT/all-features.yaml"; then
    pass "POD_NAME from the downward API, usable as \$(POD_NAME) in a source's intervalSeed"
else
    fail "POD_NAME from the downward API, usable as \$(POD_NAME) in a source's intervalSeed"
fi
# The NetworkPolicy: none by default; with it, one ingress rule per port that has peers, and none for
# the sync port unless peers are listed.
policy_rules() { # NAME: "port=peer-kinds" per ingress rule
    "$TOOLS/venv/bin/python" - "$OUT/$1.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "NetworkPolicy"]
for d in docs:
    assert d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "flagpole", d["spec"]
    assert d["spec"]["policyTypes"] == ["Ingress"], d["spec"]
    for rule in d["spec"]["ingress"]:
        kinds = "+".join(sorted(k for peer in rule["from"] for k in peer))
        print(f'{rule["ports"][0]["port"]}={kinds}')
PY
}
if [[ -z $(policy_rules default) ]] && expect_kinds all-features NetworkPolicy &&
    [[ $(policy_rules all-features | paste -sd' ') == "evaluation=podSelector ofrep=podSelector management=namespaceSelector sync=namespaceSelector+podSelector" ]] &&
    render netpol-default --set networkPolicy.enabled=true && check netpol-default &&
    [[ $(policy_rules netpol-default | paste -sd' ') == "evaluation=podSelector ofrep=podSelector" ]]; then
    pass "NetworkPolicy: off by default; on, only the listed peers per port, sync and management closed unless listed"
else
    fail "NetworkPolicy: off by default; on, only the listed peers per port ($(policy_rules all-features | paste -sd' '))"
fi
# mode: sidecar. Alone, the chart renders the flag ConfigMap only; a parent chart that depends on it puts
# the container (a native sidecar) and its volume into its own Deployment.
if render sidecar-alone --set mode=sidecar && check sidecar-alone &&
    [[ $(grep '^kind: ' "$OUT/sidecar-alone.yaml" | sort | paste -sd,) == "kind: ConfigMap" ]]; then
    pass "mode=sidecar alone: only the flag ConfigMap, no Deployment, Service or ServiceAccount"
else
    fail "mode=sidecar alone: only the flag ConfigMap ($(grep '^kind: ' "$OUT/sidecar-alone.yaml" | paste -sd,))"
fi
parent_render() { # NAME [helm args...]: a parent chart "shop" with flagpole as its dependency, rendered
    local name=$1 parent="$OUT/parent-$1"
    shift
    rm -rf "$parent"
    mkdir -p "$parent/templates" "$parent/charts"
    cp -r "$CHART" "$parent/charts/flagpole"
    printf 'apiVersion: v2\nname: shop\nversion: 1.0.0\n' >"$parent/Chart.yaml"
    printf 'flagpole:\n  mode: sidecar\n' >"$parent/values.yaml"
    cat >"$parent/templates/deployment.yaml" <<'TPL'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      initContainers:
        {{- include "flagpole.sidecar.container" .Subcharts.flagpole | nindent 8 }}
      containers:
        - name: shop
          image: registry.example.com/shop:1.0
          env:
            - {name: FLAGD_HOST, value: localhost}
      volumes:
        {{- include "flagpole.sidecar.volumes" .Subcharts.flagpole | nindent 8 }}
TPL
    "$HELM" template shop "$parent" --namespace flags --kube-version "$KUBERNETES_VERSION" "$@" \
        >"$OUT/$name.yaml" 2>"$OUT/$name.err"
}
sidecar_pod() { # NAME: checks the parent's pod; prints what it found
    "$TOOLS/venv/bin/python" - "$OUT/$1.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
assert kinds == ["ConfigMap", "Deployment"], kinds
pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
side = pod["initContainers"][0]
assert side["name"] == "flagpole" and side["args"][0] == "start", side
assert side["readinessProbe"]["httpGet"]["path"] == "/readyz", side
assert any(e["name"] == "POD_NAME" for e in side["env"]), side
mount = next(m for m in side["volumeMounts"] if m["name"] == "flags")
volume = next(v for v in pod["volumes"] if v["name"] == "flags")
configmap = next(d for d in docs if d["kind"] == "ConfigMap")["metadata"]["name"]
assert volume["configMap"]["name"] == configmap, (volume, configmap)
print(f'restartPolicy={side.get("restartPolicy", "none")} mount={mount["mountPath"]} configmap={configmap}')
PY
}
if parent_render sidecar-parent && check sidecar-parent &&
    [[ $(sidecar_pod sidecar-parent) == "restartPolicy=Always mount=/etc/flagpole/flags configmap=shop-flagpole-flags" ]] &&
    parent_render sidecar-classic --set flagpole.sidecar.native=false && check sidecar-classic &&
    [[ $(sidecar_pod sidecar-classic) == "restartPolicy=none mount=/etc/flagpole/flags configmap=shop-flagpole-flags" ]]; then
    pass "mode=sidecar in a parent chart: its pod gets the flagpole container (native sidecar or not) and the flag volume"
else
    cat "$OUT"/sidecar-parent.err "$OUT"/sidecar-classic.err >&2 2>/dev/null || true
    fail "mode=sidecar in a parent chart: $(sidecar_pod sidecar-parent 2>&1 | tail -1)"
fi
# A ConfigMap made outside the chart: mounted and read, none rendered.
if render existing --set flags.existingConfigMap.name=app-flags \
    --set 'flags.existingConfigMap.keys={b.yaml,a.json}' && check existing &&
    ! grep -q '^kind: ConfigMap$' "$OUT/existing.yaml" &&
    grep -A1 -- '- --uri' "$OUT/existing.yaml" | grep -v -- '--' | tr -d ' -' | paste -sd, - |
    grep -qx '"file:/etc/flagpole/flags/a.json","file:/etc/flagpole/flags/b.yaml"' &&
    grep -q 'name: app-flags' "$OUT/existing.yaml"; then
    pass "existing ConfigMap: mounted, one --uri per key in name order, no ConfigMap rendered"
else
    fail "existing ConfigMap: mounted, one --uri per key in name order, no ConfigMap rendered"
fi
# Remote sources only: no flag volume at all, and the sources JSON is one argument.
if render remote --set flags.example=false \
    --set-json 'sources=[{"uri":"https://flags.example.com/f.json","provider":"http","interval":30}]' &&
    check remote && ! grep -q 'name: flags$' "$OUT/remote.yaml" &&
    grep -qF -- '- "[{\"interval\":30,\"provider\":\"http\",\"uri\":\"https://flags.example.com/f.json\"}]"' \
        "$OUT/remote.yaml"; then
    pass "remote sources only: --sources JSON, no flag volume"
else
    fail "remote sources only: --sources JSON, no flag volume"
fi
if grep -q 'subPath:' "$OUT/default.yaml" "$OUT/all-features.yaml"; then
    fail "no subPath mount (it would freeze ConfigMap updates)"
else
    pass "no subPath mount (it would freeze ConfigMap updates)"
fi

# Every value that values.schema.json describes has a comment right above it in values.yaml.
if uncommented=$("$TOOLS/venv/bin/python" - "$CHART/values.schema.json" "$CHART/values.yaml" <<'PY'
import json, re, sys

schema = json.load(open(sys.argv[1]))
stack = [(-1, schema)]  # (indent, schema node of the key at that indent)
after_comment = False
for number, line in enumerate(open(sys.argv[2]).read().splitlines(), 1):
    if line.strip().startswith("#"):
        after_comment = True
        continue
    key = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
    if key:
        indent = len(key[1])
        while stack[-1][0] >= indent:
            stack.pop()
        node = (stack[-1][1] or {}).get("properties", {}).get(key[2])
        if node and "description" in node and not after_comment:
            print(f"values.yaml:{number}: {key[2]} has no comment")
        stack.append((indent, node))
    after_comment = False
PY
) && [[ -z "$uncommented" ]]; then
    pass "values.yaml: every value is commented"
else
    echo "$uncommented" >&2
    fail "values.yaml: every value is commented"
fi

# The flag files the chart ships or renders load in flagpole itself (`flagpole validate --strict`).
"$TOOLS/venv/bin/python" - "$OUT/all-features.yaml" "$OUT/flagfiles" <<'PY'
import os, sys, yaml

os.makedirs(sys.argv[2], exist_ok=True)
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] == "ConfigMap" and not doc["metadata"]["name"].endswith("-dashboard"):
        for name, text in doc["data"].items():
            with open(os.path.join(sys.argv[2], name), "w") as out:
                out.write(text)
PY
if cargo build --quiet -p flagpole --bin flagpole &&
    target/debug/flagpole validate --strict "$OUT"/flagfiles/* >"$OUT/validate.log" 2>&1 &&
    [[ $(find "$OUT/flagfiles" -type f | wc -l) == 3 ]]; then
    pass "flag files in the rendered ConfigMap pass flagpole validate --strict"
else
    cat "$OUT/validate.log" >&2 || true
    fail "flag files in the rendered ConfigMap pass flagpole validate --strict"
fi

# The operators' kit: the dashboard ConfigMap (its JSON parses and is the shipped file, Grafana's sidecar
# label, the annotations) and the PrometheusRule (every alert of docs/observability.md, each with an
# expression, a severity and a summary; the values reach them). That every metric they use is one flagpole
# registers is the daemon's test `metrics::tests::the_charts_dashboard_and_alerts_use_registered_metrics`.
if "$TOOLS/venv/bin/python" - "$OUT/all-features.yaml" "$CHART/dashboards/flagpole.json" <<'PY'
import json, re, sys, yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dashboard_cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
assert len(dashboard_cm) == 1, "one dashboard ConfigMap"
meta = dashboard_cm[0]["metadata"]
assert meta["labels"]["grafana_dashboard"] == "1", meta
assert meta["annotations"] == {"grafana_folder": "Flags"}, meta
dashboard = json.loads(dashboard_cm[0]["data"]["flagpole.json"])
assert dashboard == json.load(open(sys.argv[2])), "the ConfigMap holds the shipped dashboard"
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
assert len(exprs) >= 20, len(exprs)
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
assert len(rules) == 1
assert rules[0]["metadata"]["labels"]["release"] == "prometheus"
alerts = {r["alert"]: r for g in rules[0]["spec"]["groups"] for r in g["rules"]}
want = {"FlagpoleSourceFailing", "FlagpoleSourceOverdue", "FlagpoleServingLastKnownGood",
        "FlagpolePayloadsRejected", "FlagpoleFlagErrorRate", "FlagpoleStaleFlags", "FlagpoleTelemetryDropped"}
assert set(alerts) == want, set(alerts) ^ want
for name, rule in alerts.items():
    assert rule["expr"].strip() and rule["labels"]["severity"] and rule["annotations"]["summary"], name
    assert 'job=~"flagpole-all"' in rule["expr"], (name, rule["expr"])
    exprs.append(rule["expr"])
assert ">= 5" in alerts["FlagpoleSourceFailing"]["expr"], "sourceFailures reaches the rule"
print(f"{len(dashboard['panels'])} panels, {len(alerts)} alerts")
PY
then
    pass "monitoring: the dashboard ConfigMap and the PrometheusRule render from the values"
else
    fail "monitoring: dashboard and alert rules"
fi

# Values that must be refused: by values.schema.json, by a template's own check, or by kubeconform on the
# rendered manifest. Each one must make the run fail, so a chart that accepts them fails this test.
refused() { # description, then helm args
    local what=$1
    shift
    rm -f "$OUT"/refused.*
    if render refused "$@" && check refused; then
        fail "refused: $what (it was accepted)"
    else
        # The reason: the first error line helm or kubeconform gave.
        pass "refused: $what: $(cat "$OUT"/refused.* 2>/dev/null | grep -m1 -iE 'error|invalid|fail' | cut -c1-150)"
    fi
}
refused "unknown top-level value" --set bogus=1
refused "replicaCount of the wrong type" --set replicaCount=many
refused "port out of range" --set ports.management=70000
refused "unknown logFormat" --set logFormat=xml
refused "an unknown mode" --set mode=daemonset
refused "sidecar mode with rbac.create but no ServiceAccount to bind" --set mode=sidecar --set rbac.create=true
refused "flag file name without .json/.yaml" --set-string 'flags.files.flags\.txt=x'
refused "source without provider" --set-json 'sources=[{"uri":"https://x/f.json"}]'
refused "source with an unknown key" --set-json 'sources=[{"uri":"https://x/f.json","provider":"http","bearerToken":"t"}]'
refused "no flag source at all" --set flags.example=false
refused "a Service exposing no port" --set service.expose.evaluation=false --set service.expose.management=false \
    --set service.expose.sync=false --set service.expose.ofrep=false
refused "an rbac namespace that is not a Kubernetes name" --set rbac.create=true --set 'rbac.namespaces={Team_A}'
refused "a kubernetes source with an unknown key" \
    --set-json 'sources=[{"uri":"flags/app-flags","provider":"kubernetes","namespace":"flags"}]'
refused "minReplicas above maxReplicas" --set autoscaling.enabled=true --set autoscaling.minReplicas=5 \
    --set autoscaling.maxReplicas=2
refused "an alert error ratio above 1" --set monitoring.alerts.errorRatio=2
refused "an alert duration that is not one" --set monitoring.alerts.staleFlagsFor=soon
refused "an invalid volume mount (caught by kubeconform)" \
    --set-json 'extraVolumeMounts=[{"name":"x","mountPath":"/x","readonly":true}]' \
    --set-json 'extraVolumes=[{"name":"x","emptyDir":{}}]'

echo "test-chart: $passed passed, $failed failed"
[[ $failed == 0 ]]
