#!/usr/bin/env bash
# The Kubernetes operator's tests: generated files in sync (CRDs, RBAC, deep copies), gofmt and
# go vet, helm lint and helm template of the chart, and the Go tests on a real kube-apiserver and
# etcd (envtest) with kiln's planner. Needs the kiln binary (scripts/build.sh) and builds the
# Kubernetes tools once (scripts/install_k8s_tools.sh).
source "$(dirname "$0")/common.sh"

BIN="$(bash "$KILN_ROOT/scripts/install_k8s_tools.sh")"
KILN_BINARY="${KILN_BINARY:-$KILN_BUILD_DIR/src/kiln/kiln}"
[ -x "$KILN_BINARY" ] || { log "no kiln binary at $KILN_BINARY: run scripts/build.sh"; exit 1; }
CHART="$KILN_ROOT/deploy/helm/kiln"
# The host-run test serves the default model's GGUF.
KILN_SMOLLM2_GGUF="${KILN_SMOLLM2_GGUF:-$(bash "$KILN_ROOT/scripts/fetch_default_model.sh")}"
export KILN_SMOLLM2_GGUF

log "Operator: generated files"
bash "$KILN_ROOT/scripts/generate_operator.sh" --check

log "Operator: gofmt and go vet"
cd "$KILN_ROOT/operator"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  log "gofmt would change: $unformatted"
  exit 1
fi
go vet ./...

log "Operator: helm lint and helm template ($("$BIN/helm" version --short))"
"$BIN/helm" lint --strict "$CHART"
"$BIN/helm" template kiln "$CHART" --namespace kiln-system >/dev/null
"$BIN/helm" template kiln "$CHART" --namespace kiln-system \
  --set gateway.name=inference-gateway,apiKeys.enabled=false >/dev/null

# The Gateway API's CRDs (HTTPRoute), from its Go module.
GATEWAY_API_VERSION=v1.4.0
KILN_GATEWAY_API_CRDS="$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
  sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/config/crd/standard"
export KILN_GATEWAY_API_CRDS

log "Operator: Go tests on kube-apiserver and etcd (envtest), and on a control plane with kwok nodes (e2e)"
KUBEBUILDER_ASSETS="$BIN" KUBE_TOOLS="$(dirname "$BIN")" KILN_BINARY="$KILN_BINARY" \
  go test -count=1 -timeout 20m ./... "$@"
log "Operator: all passed"
