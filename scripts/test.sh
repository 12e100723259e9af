#!/usr/bin/env bash
# Set everything up and run the test suite (the default suite skips tests marked slow; GPU tests
# skip themselves without CUDA). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q -m "not slow" "$@"
