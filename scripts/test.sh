#!/usr/bin/env bash
# The project's test command: installs what is needed, builds the upstream
# binaries once per machine (cached by version outside the repo), then lint,
# types, import contracts, generated-stub drift, and the whole pytest suite
# (which starts real runtimes and a real control plane; nothing that needs
# them is skipped when CI is set).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== upstream binaries (Kubernetes, etcd, containerd 2.x, CRI-O; cached by version)"
started=$SECONDS
bash scripts/upstream/build.sh kubernetes etcd containerd2 crio
echo "upstream binaries ready in $((SECONDS - started)) s"

echo "== ruff";  python3 -m ruff check . && python3 -m ruff format --check .
echo "== mypy";  python3 -m mypy
echo "== import contracts"; lint-imports
echo "== stubs"; python3 scripts/gen_proto.py --check
echo "== pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
