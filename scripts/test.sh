#!/usr/bin/env bash
# The project's test command: installs what is needed, then lint, types,
# generated-stub drift, and the whole pytest suite (which starts a real
# containerd; nothing that needs it is skipped when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== ruff";  python3 -m ruff check . && python3 -m ruff format --check .
echo "== mypy";  python3 -m mypy
echo "== import contracts"; lint-imports
echo "== stubs"; python3 scripts/gen_proto.py --check
echo "== pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
