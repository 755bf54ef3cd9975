#!/usr/bin/env bash
# The main job: sets up if needed (idempotent, seconds when done), then runs hand_cpm_node on a
# rendered 30 Hz demo stream (one hand, then two), records what it publishes and writes an
# annotated video, a GIF preview and a summary; it ends by itself and prints where they are.
# Extra arguments go to hand-cpm-demo, e.g. `scripts/demo.sh --frames 150 --video clip.mp4`
# (`scripts/demo.sh --help` lists them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m hand_cpm_ros.demo "$@"
