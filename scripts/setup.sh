#!/usr/bin/env bash
# Installs every dependency of the tests on a fresh Debian 12 machine: system packages, ONNX
# Runtime, the Python test environment and the Node client. Building is scripts/build.sh's job.
# Safe to run twice: each step checks what is already there.
source "$(dirname "$0")/common.sh"

bash "$KILN_ROOT/scripts/install_system.sh"
bash "$KILN_ROOT/scripts/install_onnxruntime.sh"
bash "$KILN_ROOT/scripts/install_cuda.sh"
bash "$KILN_ROOT/scripts/install_python.sh"
bash "$KILN_ROOT/scripts/install_node.sh"
