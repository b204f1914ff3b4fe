#!/usr/bin/env bash
# One command from a fresh clone: install what the tests need, then run the full suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run typecheck
npm run lint
npm test
