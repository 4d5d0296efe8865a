#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, then run the lab
# walkthrough (a private containerd, a few pods, the agent, and what it sees).
# Extra arguments go to `python -m lab walkthrough` (e.g. --keep, --port).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec python3 -m lab walkthrough "$@"
