#!/usr/bin/env bash
# Build the documentation site into site/ with `mkdocs build --strict` (warnings are errors).
#   bash scripts/docs.sh              # set up .venv with the docs extra, then build
#   bash scripts/docs.sh --serve      # ... then serve it on http://127.0.0.1:8000 instead
# The figures in docs/figures/ are committed; regenerate them with
#   .venv/bin/python scripts/make_doc_figures.py
# The build fetches nothing from the network, and MathJax is bundled (docs/javascripts/vendor).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:+$EXTRAS,}docs" bash scripts/setup.sh
export NO_MKDOCS_2_WARNING=1   # silence mkdocs-material's banner about MkDocs 2.0
if [ "${1:-}" = "--serve" ]; then
  exec .venv/bin/mkdocs serve --strict
fi
.venv/bin/mkdocs build --strict -d site
echo "site built: $(pwd)/site/index.html"
