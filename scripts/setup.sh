#!/usr/bin/env bash
# Create .venv (once) and install hopfield with its test extras, on the CPU build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v -i "warning" || true
.venv/bin/python -m pip install -q -e ".[test${EXTRAS:+,$EXTRAS}]" 2>&1 | grep -v -i "warning" || true
.venv/bin/python -c "import hopfield, torch; print('hopfield', hopfield.__version__, '| torch', torch.__version__)"
