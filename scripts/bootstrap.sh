#!/usr/bin/env bash
# Create .venv with the CPU build of torch and dsconv (editable, with the dev and onnx extras).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned: the local CPU wheel. A bare 'torch' would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# strict mode: a link tree under build/ and a plain .pth entry, no import-hook finder
# (saves ~12 ms per start-up). A new module needs this script run again.
.venv/bin/python -m pip install -q -e ".[dev,onnx]" --config-settings editable_mode=strict
echo "dsconv installed in .venv: $(.venv/bin/dsconv --version)" >&2
