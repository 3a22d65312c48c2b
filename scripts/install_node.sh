#!/usr/bin/env bash
# Installs the Node.js test dependencies (the official openai npm package, pinned in
# tests/node/package-lock.json). Safe to run twice.
source "$(dirname "$0")/common.sh"

NODE_DIR="$KILN_ROOT/tests/node"
if [ -d "$NODE_DIR/node_modules/openai" ] && \
   [ "$NODE_DIR/node_modules/.package-lock.json" -nt "$NODE_DIR/package-lock.json" ]; then
  log "Node packages: present"
  exit 0
fi
command -v npm >/dev/null || { log "Node packages: installing nodejs and npm"; \
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends nodejs npm; }
log "Node packages: npm ci in tests/node"
(cd "$NODE_DIR" && npm ci --no-audit --no-fund --cache "$KILN_CACHE/npm" >/dev/null)
