#!/usr/bin/env bash
# The operator at scale: 200 ModelDeployments applied at once on 50 kwok nodes of a real control
# plane (operator/test/e2e's harness). Prints the time until each is Running (p50, p99, all) next
# to 200 plain Deployments of the same pod template on the same cluster (the peer: what
# Kubernetes takes without the operator) and their ratio, the operator's writes and API requests
# per reconcile, the writes of a full re-reconcile with nothing changed (a restart; target 0),
# and the operator's peak memory. Prints the load average before and after; a run whose load
# exceeded the core count is not a result.
source "$(dirname "$0")/../scripts/common.sh"

BIN="$(bash "$KILN_ROOT/scripts/install_k8s_tools.sh")"
KILN_BINARY="${KILN_BINARY:-$KILN_BUILD_DIR/src/kiln/kiln}"
[ -x "$KILN_BINARY" ] || { log "no kiln binary at $KILN_BINARY: run scripts/build.sh"; exit 1; }
lscpu | sed -n 's/^Model name:\s*/CPU: /p'
cd "$KILN_ROOT/operator"
KUBE_TOOLS="$(dirname "$BIN")" KILN_BINARY="$KILN_BINARY" \
  go test -count=1 -timeout 20m ./test/e2e -run '^$' -bench BenchmarkScale -benchtime 1x
