#!/usr/bin/env bash
# The test suite: sets up (idempotent, seconds when already done), then runs pytest in .venv.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k codec -x`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
