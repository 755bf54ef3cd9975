#!/usr/bin/env python3
"""MediaPipe Hands on a list of images, one JSON line per image: the peer side of
hand-cpm-compare-mediapipe (hand_cpm_train/compare_mediapipe.py), which starts this script in its
own virtual environment (mediapipe 0.10.21 needs numpy<2).

    mediapipe_hands_worker.py [--warmup 3] [--threads 2] [--max-hands 2] < image_paths.txt

Imports only the standard library, numpy, cv2 and mediapipe: never hand_cpm_ros, whose numpy
differs. Reads one image path per line from stdin, then prints to stdout:
- first {"mediapipe": VERSION, "settings": {...}};
- per image {"image": PATH, "width": W, "height": H, "ms": T, "hands": [{"keypoints": [[x, y] x 21],
  "handedness": "left"|"right", "score": s}]}.

Frames are independent (static_image_mode=True: palm detection on every image, no tracking).
T is the wall time of hands.process alone (time.perf_counter), after `--warmup` untimed frames.
Keypoints are in source pixels with (0, 0) at the centre of the top-left pixel (MediaPipe's
normalised x * width - 0.5), in MediaPipe's landmark order, which is hand_cpm_ros's. MediaPipe
labels handedness as if the image were mirrored (a selfie camera); these frames are not, so the
label is swapped. `score` is MediaPipe's handedness score: the solutions API gives no other
per-hand score. `--threads N` pins this process to N CPUs (MediaPipe has no thread setting).
"""
import argparse
import json
import os
import sys
import time

import cv2
import mediapipe as mp

UNMIRRORED = {'Left': 'right', 'Right': 'left'}


def read_rgb(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f'mediapipe_hands_worker: error: cannot read image {path}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def hands_of(results, width, height):
    """The found hands as JSON-ready dicts."""
    found = []
    for landmarks, handedness in zip(results.multi_hand_landmarks or [],
                                     results.multi_handedness or []):
        label = handedness.classification[0]
        found.append({
            'keypoints': [[round(point.x * width - 0.5, 3), round(point.y * height - 0.5, 3)]
                          for point in landmarks.landmark],
            'handedness': UNMIRRORED[label.label],
            'score': round(float(label.score), 4)})
    return found


def main():
    parser = argparse.ArgumentParser(prog='mediapipe_hands_worker.py',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames first')
    parser.add_argument('--threads', type=int, default=None, help='pin to this many CPUs')
    parser.add_argument('--max-hands', type=int, default=2)
    parser.add_argument('--model-complexity', type=int, choices=(0, 1), default=1)
    parser.add_argument('--min-detection-confidence', type=float, default=0.5)
    args = parser.parse_args()
    if args.threads is not None:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:max(1, args.threads)])
    paths = [line.rstrip('\n') for line in sys.stdin if line.strip()]
    settings = {'static_image_mode': True, 'max_num_hands': args.max_hands,
                'model_complexity': args.model_complexity,
                'min_detection_confidence': args.min_detection_confidence}
    print(json.dumps({'mediapipe': mp.__version__,
                      'settings': {**settings, 'cpus': len(os.sched_getaffinity(0))}}), flush=True)
    with mp.solutions.hands.Hands(**settings) as hands:
        for path in paths[:args.warmup]:
            hands.process(read_rgb(path))
        for path in paths:
            rgb = read_rgb(path)
            started = time.perf_counter()
            results = hands.process(rgb)
            elapsed_ms = 1e3 * (time.perf_counter() - started)
            height, width = rgb.shape[:2]
            print(json.dumps({'image': path, 'width': width, 'height': height,
                              'ms': round(elapsed_ms, 3),
                              'hands': hands_of(results, width, height)}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
