#!/usr/bin/env bash
# Builds the Kubernetes tools the operator's tests need, from the Go module proxy (no release page
# is reachable): kube-apiserver, kube-scheduler and kube-controller-manager v1.35.4, etcd 3.6.16,
# kwok 0.8.0 (simulated nodes), controller-gen 0.23.0 (CRDs) and helm 3.22.0 (chart lint/template).
# Prints the folder that holds them. They are kept in $KILN_CACHE/k8s/<versions>/bin, so a second
# run only prints the folder: the cold build is about 1,400 CPU-seconds.
source "$(dirname "$0")/common.sh"

K8S_VERSION=1.35.4
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0
CONTROLLER_TOOLS_VERSION=0.23.0
HELM_VERSION=3.22.0
TOOLS_DIR="$KILN_CACHE/k8s/k8s$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION-cg$CONTROLLER_TOOLS_VERSION-helm$HELM_VERSION"
BIN="$TOOLS_DIR/bin"
TOOLS=(kube-apiserver kube-scheduler kube-controller-manager etcd kwok controller-gen helm)

missing=()
for tool in "${TOOLS[@]}"; do [ -x "$BIN/$tool" ] || missing+=("$tool"); done
if [ ${#missing[@]} = 0 ]; then
  echo "$BIN"
  exit 0
fi
log "Kubernetes tools: building ${missing[*]} into $BIN (a cold build takes 12-15 minutes)"
mkdir -p "$BIN"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export CGO_ENABLED=0

need() { [[ " ${missing[*]} " == *" $1 "* ]]; }

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces 31 staging modules with
# ./staging paths. A scratch module requires it and points each of those at the published
# k8s.io/X v0.<minor>.<patch> instead.
if need kube-apiserver || need kube-scheduler || need kube-controller-manager; then
  mod="$scratch/kube"
  mkdir -p "$mod"
  kube_mod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module kiln.dev/kube-tools"
    echo "go 1.25"
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kube_mod" |
      while read -r staging; do echo "replace $staging => $staging v0.${K8S_VERSION#1.}"; done
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
  (cd "$mod" && GOFLAGS=-mod=mod go mod tidy)
  minor="${K8S_VERSION#1.}"
  minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  for cmd in kube-apiserver kube-scheduler kube-controller-manager; do
    need "$cmd" || continue
    log "Kubernetes tools: $cmd v$K8S_VERSION"
    (cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" \
      "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
fi

if need etcd; then
  log "Kubernetes tools: etcd $ETCD_VERSION"
  mod="$scratch/etcd"
  mkdir -p "$mod"
  printf 'module kiln.dev/etcd-tools\ngo 1.25\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
    "$ETCD_VERSION" >"$mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' \
    >"$mod/tools.go"
  (cd "$mod" && GOFLAGS=-mod=mod go mod tidy)
  (cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" \
    go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

install_tool() { # name package@version
  log "Kubernetes tools: $1 ($2)"
  GOFLAGS= GOBIN="$scratch/gobin" go install -trimpath -ldflags "-s -w" "$2"
  mv "$scratch/gobin/$1" "$BIN/$1"
}
need kwok && install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
need controller-gen &&
  install_tool controller-gen "sigs.k8s.io/controller-tools/cmd/controller-gen@v$CONTROLLER_TOOLS_VERSION"
need helm && install_tool helm "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"

# kwok needs stage definitions: nodes become Ready and keep a heartbeat, pods run.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
if [ ! -d "$stages" ]; then
  go mod download "sigs.k8s.io/kwok@v$KWOK_VERSION"
fi
for f in "$stages/node/fast/node-initialize.yaml" "$stages/node/heartbeat/node-heartbeat.yaml" \
  "$stages"/pod/fast/pod-*.yaml; do
  cat "$f"
  echo "---"
done >"$TOOLS_DIR/kwok-stages.yaml"

for tool in "${TOOLS[@]}"; do
  [ -x "$BIN/$tool" ] || { log "Kubernetes tools: $tool was not built"; exit 1; }
done
echo "$BIN"
