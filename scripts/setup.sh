#!/usr/bin/env bash
# Create .venv (once) and install hopfield (editable) with its test extras, on the CPU build of
# torch. EXTRAS=docs (comma-separated) adds more extras. Fails loudly if an install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test${EXTRAS:+,$EXTRAS}]"
.venv/bin/python -c "import hopfield, torch; print('hopfield', hopfield.__version__, '| torch', torch.__version__)"
