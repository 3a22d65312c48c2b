#!/usr/bin/env bash
# Installs every dependency Kiln needs on a fresh Debian 12 machine and builds it.
# Safe to run twice: each step checks what is already there.
source "$(dirname "$0")/common.sh"

bash "$KILN_ROOT/scripts/install_system.sh"
bash "$KILN_ROOT/scripts/install_onnxruntime.sh"
bash "$KILN_ROOT/scripts/install_python.sh"
bash "$KILN_ROOT/scripts/install_node.sh"
bash "$KILN_ROOT/scripts/build.sh"
