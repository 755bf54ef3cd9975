"""hand-cpm-mediapipe-labels: MediaPipe Hands' keypoints on unlabelled images, written as a `frame`
data set, so that hand-cpm-eval can score this package on photographs no renderer made.

    hand-cpm-mediapipe-labels IMAGE_OR_DIR [...] --out DIR [--overwrite] [--mediapipe-venv DIR]

No labelled real hand image can be had here, and the package's own figures are all on renders.
MediaPipe Hands (trained on real photographs) is the best labeller at hand: what hand-cpm-eval
then reports on such a set is **agreement with MediaPipe**, not accuracy, and MediaPipe's own
misses and false hands (a drawn hand, an emoji) are in the labels. Read the images before trusting
the figures.

Each image (.jpg, .jpeg, .png, .bmp; a directory: every such file in it, sorted) is copied into
--out under its own name with NAME.json beside it, the `frame` format of hand-cpm-synth --scene
frame: `{"width", "height", "hands": [{"hand_pts": [[x, y, 1] x 21], "is_left", "box"}],
"labels": "MediaPipe Hands 0.10.21 ..."}`. Every keypoint counts as visible (MediaPipe places all
21). "box" is the keypoint box grown by BOX_MARGIN of its longer side on each side and clipped to
the image: the median gap, on rendered frames, between the keypoints' box and the box of the hand's
pixels, which is what the renderer labels. "is_left" is MediaPipe's handedness for an unmirrored
camera (often wrong on still images: do not score handedness on it).

MediaPipe runs as in hand-cpm-compare-mediapipe: static image mode, model_complexity 1, at most
--max-hands hands, in its own virtual environment (created on first use).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hand_cpm_ros.files import write_atomic
from hand_cpm_ros.keypoints import NUM_KEYPOINTS
from hand_cpm_train.compare_mediapipe import (MAX_HANDS, CompareError, _positive_int,
                                              add_mediapipe_venv_argument, find_worker, mediapipe_python,
                                              run_mediapipe)
from hand_cpm_train.data import IMAGE_SUFFIXES

BOX_MARGIN = 0.05


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """The image files named by `inputs` (files, or directories: their images, sorted); CompareError
    for a missing path, another kind of file, an empty result or two images of one name."""
    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            images.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif not path.is_file():
            raise CompareError(f'{path} does not exist')
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            raise CompareError(f'{path} is not an image this command reads ({", ".join(IMAGE_SUFFIXES)})')
        else:
            images.append(path)
    if not images:
        raise CompareError(f'no image ({", ".join(IMAGE_SUFFIXES)}) in {", ".join(map(str, inputs))}')
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems:
            raise CompareError(f'{stems[image.stem]} and {image} would both be labelled as '
                               f'{image.stem}.json: rename one')
        stems[image.stem] = image
    return images


def frame_annotation(record: dict, labeller: str) -> dict:
    """A MediaPipe worker record ({"width", "height", "hands": [{"keypoints", "handedness"}]}) as
    a `frame` annotation; CompareError if it is malformed."""
    try:
        width, height = int(record['width']), int(record['height'])
        hands = []
        for hand in record['hands']:
            keypoints = np.array(hand['keypoints'], np.float64).reshape(NUM_KEYPOINTS, 2)
            low, high = keypoints.min(axis=0), keypoints.max(axis=0)
            margin = BOX_MARGIN * float((high - low).max())
            box = [max(0.0, low[0] - margin), max(0.0, low[1] - margin),
                   min(width - 1.0, high[0] + margin), min(height - 1.0, high[1] + margin)]
            if box[2] <= box[0] or box[3] <= box[1]:
                continue   # a hand wholly outside the image
            hands.append({'hand_pts': [[round(x, 3), round(y, 3), 1] for x, y in keypoints.tolist()],
                          'is_left': int(hand['handedness'] == 'left'),
                          'box': [round(float(value), 1) for value in box]})
    except (KeyError, TypeError, ValueError) as error:
        raise CompareError(f'the MediaPipe worker\'s record for {record.get("image")} is malformed: '
                           f'{type(error).__name__}: {error}') from error
    return {'width': width, 'height': height, 'hands': hands, 'labels': labeller}


def write_labelled_set(images: Sequence[Path], records: Sequence[dict], out: Path, labeller: str,
                       overwrite: bool = False) -> int:
    """Copy each image into `out` with its annotation beside it; returns the hands labelled.
    Refuses to replace a file in `out` unless `overwrite`."""
    targets = [(out / image.name, out / f'{image.stem}.json') for image in images]
    if not overwrite:
        existing = [str(path) for pair in targets for path in pair if path.exists()]
        if existing:
            raise CompareError(f'{existing[0]} exists ({len(existing)} files would be replaced); '
                               f'pass --overwrite or another --out')
    out.mkdir(parents=True, exist_ok=True)
    hands = 0
    for image, record, (image_copy, annotation) in zip(images, records, targets):
        content = frame_annotation(record, labeller)
        hands += len(content['hands'])
        if image.resolve() != image_copy.resolve():
            write_atomic(image_copy, image.read_bytes())
        write_atomic(annotation, (json.dumps(content) + '\n').encode())
    return hands


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-mediapipe-labels',
        description='Label unlabelled images (real photographs) with MediaPipe Hands\' keypoints as '
                    'a frame data set for hand-cpm-eval: figures on it are agreement with '
                    'MediaPipe, not accuracy.')
    parser.add_argument('images', type=Path, nargs='+', metavar='IMAGE_OR_DIR',
                        help=f'images ({", ".join(IMAGE_SUFFIXES)}) or directories of them')
    parser.add_argument('--out', type=Path, required=True, help='the data set directory to write')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace files of the same names in --out')
    parser.add_argument('--max-hands', type=_positive_int, default=MAX_HANDS,
                        help=f'hands MediaPipe looks for per image (default {MAX_HANDS})')
    add_mediapipe_venv_argument(parser)
    parser.add_argument('--threads', type=_positive_int, default=2, help='CPUs for MediaPipe')
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bar')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        images = collect_images(args.images)
        worker = find_worker()
        python = mediapipe_python(args.mediapipe_venv, worker)
        header, records = run_mediapipe(python, worker, images, args.threads, args.progress,
                                        max_hands=args.max_hands)
        settings = ', '.join(f'{key} {value}' for key, value in header['settings'].items())
        labeller = f'MediaPipe Hands {header["mediapipe"]} ({settings}): pseudo-labels, not ground truth'
        hands = write_labelled_set(images, records, args.out, labeller, args.overwrite)
    except (CompareError, OSError) as error:
        print(f'hand-cpm-mediapipe-labels: error: {error}', file=sys.stderr)
        return 2
    print(f'{len(images)} images, {hands} hands labelled by MediaPipe Hands {header["mediapipe"]} '
          f'in {args.out}; score with: hand-cpm-eval --model MODEL --data {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
