#!/usr/bin/env bash
# Regenerates what controller-gen derives from operator/api and the controllers' RBAC markers:
# the deep-copy functions, the CRDs (deploy/helm/kiln/crds) and the operator's ClusterRole rules
# (deploy/helm/kiln/files/role.yaml). With --check, generates into a temporary folder and fails
# when the committed files differ (test_operator.sh runs it so).
source "$(dirname "$0")/common.sh"

BIN="$(bash "$KILN_ROOT/scripts/install_k8s_tools.sh")"
OPERATOR="$KILN_ROOT/operator"
CHART="$KILN_ROOT/deploy/helm/kiln"

generate() { # crd-dir role-dir
  (cd "$OPERATOR" && "$BIN/controller-gen" \
    object:headerFile=hack/boilerplate.go.txt paths=./api/... \
    crd rbac:roleName=kiln-operator paths=./... \
    output:crd:artifacts:config="$1" output:rbac:artifacts:config="$2")
}

if [ "${1:-}" = --check ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  cp "$OPERATOR/api/v1alpha1/zz_generated.deepcopy.go" "$out/deepcopy.go.committed"
  generate "$out/crds" "$out/rbac"
  status=0
  diff -ru "$CHART/crds" "$out/crds" || status=1
  diff -u "$CHART/files/role.yaml" "$out/rbac/role.yaml" || status=1
  diff -u "$out/deepcopy.go.committed" "$OPERATOR/api/v1alpha1/zz_generated.deepcopy.go" || status=1
  cp "$out/deepcopy.go.committed" "$OPERATOR/api/v1alpha1/zz_generated.deepcopy.go"
  if [ "$status" != 0 ]; then
    log "Generated operator files differ from what is committed: run scripts/generate_operator.sh"
    exit 1
  fi
  log "Generated operator files (CRDs, RBAC, deep copies) match operator/api"
  exit 0
fi
mkdir -p "$CHART/crds" "$CHART/files"
generate "$CHART/crds" "$CHART/files"
log "Regenerated $CHART/crds, $CHART/files/role.yaml and operator/api/v1alpha1/zz_generated.deepcopy.go"
