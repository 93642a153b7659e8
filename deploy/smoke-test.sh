#!/usr/bin/env bash
# A smoke test of the install against a real cluster (deploy/REAL-CLUSTER.md). Dry run first:
#   deploy/smoke-test.sh                       # server-side dry run: nothing is created
#   deploy/smoke-test.sh --apply               # applies, waits for a leader, probes, checks /metrics
# Options: --overlay owned|scale|metrics (default owned), --namespace NAME (default llm-serving),
#          --config FILE (a controller config for --check --probe from here, through your kubeconfig).
# Needs kubectl with access to the cluster; the prometheus-operator CRDs for the monitors and the rule.
set -euo pipefail

overlay=owned
namespace=llm-serving
apply=false
config=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --apply) apply=true; shift ;;
    --overlay) overlay="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    *) echo "smoke-test: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$overlay" in owned|scale|metrics) ;; *) echo "smoke-test: --overlay owned|scale|metrics" >&2; exit 2 ;; esac

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# the overlay in the namespace asked for, as a user would set it
cat > "$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ${namespace}
resources: [$(realpath --relative-to="$work" "$here/kustomize/overlays/$overlay")]
YAML

step() { printf '\n== %s\n' "$*"; }

step "render ($overlay, namespace $namespace)"
kubectl kustomize --load-restrictor LoadRestrictionsNone "$work" > "$work/rendered.yaml"
grep -c '^kind:' "$work/rendered.yaml" | xargs echo "objects:"

step "the API server accepts every object (server-side dry run: admission, schemas, RBAC of the applier)"
if ! kubectl get namespace "$namespace" >/dev/null 2>&1; then
  if [[ "$apply" != true ]]; then
    echo "smoke-test: namespace $namespace does not exist; create it (kubectl create namespace $namespace) or pass --apply" >&2
    exit 2
  fi
  kubectl create namespace "$namespace"
fi
kubectl apply --dry-run=server -n "$namespace" -f "$work/rendered.yaml"

step "what the controller's service account may do (the RBAC of this overlay)"
sa="system:serviceaccount:${namespace}:heteroscale-controller"
can() { kubectl auth can-i "$@" -n "$namespace" --as "$sa" 2>/dev/null || true; }
printf '%-34s %s\n' "list nodes (owned only)" "$(can list nodes)" "create leases" "$(can create leases)" \
  "list pods" "$(can list pods)" "delete pods (never)" "$(can delete pods)" \
  "create deployments (owned only)" "$(can create deployments)" \
  "patch deployments/scale" "$(can patch deployments --subresource=scale)"
echo "(before --apply its bindings do not exist yet: every answer is 'no')"

if [[ -n "$config" ]]; then
  step "what would be read and scaled (heteroscale controller --check --probe, from here)"
  heteroscale controller --config "$config" --namespace "$namespace" --check --probe || true
fi

if [[ "$apply" != true ]]; then
  step "dry run done: run again with --apply to install"
  exit 0
fi

step "apply"
kubectl apply -n "$namespace" -f "$work/rendered.yaml"

step "wait for the controller (bounded: 5 minutes)"
kubectl -n "$namespace" rollout status statefulset/heteroscale-controller --timeout=300s

step "one replica leads the Lease"
holder=""
for _ in $(seq 1 30); do
  holder="$(kubectl -n "$namespace" get lease heteroscale-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
  [[ -n "$holder" ]] && break
  sleep 2
done
[[ -n "$holder" ]] || { echo "smoke-test: no replica took the Lease in 60 s" >&2; exit 1; }
echo "leader: $holder"

step "the leader's /healthz and /metrics"
kubectl -n "$namespace" exec "$holder" -- python -c \
  "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/healthz', timeout=5).read().decode())"
kubectl -n "$namespace" exec "$holder" -- python -c \
  "import urllib.request as u; t=u.urlopen('http://127.0.0.1:8080/metrics', timeout=5).read().decode(); print('\n'.join(l for l in t.splitlines() if l.startswith(('heteroscale_leader','heteroscale_journal_writable','heteroscale_desired_instances'))))"

step "the journal is on its volume"
kubectl -n "$namespace" get pvc -l app.kubernetes.io/name=heteroscale-controller

echo
echo "smoke test passed: remove with  kubectl delete -n $namespace -f <(kubectl kustomize $here/kustomize/overlays/$overlay)"
