#!/usr/bin/env bash
# The main job in one command: installs what it needs, then runs a local cluster pull.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec npx tsx scripts/demo.ts "$@"
