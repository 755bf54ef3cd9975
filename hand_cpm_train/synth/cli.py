"""hand-cpm-synth: render a synthetic hand data set (JPEG + JSON pairs) with exact keypoints.

    hand-cpm-synth --out data/synth_crop --count 20000 --seed 0 --workers 2 --preview crop.png
    hand-cpm-synth --out data/synth_frame --count 5000 --seed 1 --scene frame --size 640x480
    hand-cpm-synth --out data/object_frame --count 2500 --seed 2 --scene frame --max-hand-size 1.3 --objects 4

Image i is drawn from a generator seeded with (seed, i): the same seed gives the same files, with
any number of workers. The settings that shape the pixels are kept in OUT/synth_settings.yaml;
each file is written whole or not at all (the annotation last), so an interrupted render goes on
with the same command and `--resume`, which renders only the samples that are missing.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from hand_cpm_ros.files import write_atomic
from hand_cpm_train.synth.asset import AssetNotFoundError, find_asset_dir
from hand_cpm_train.synth.scene import (DEFAULT_MAX_HAND_SIZE, DEFAULT_SIZES, MAX_HAND_SIZE, MAX_OBJECTS,
                                        MIN_HAND_SIZE, SCENES, render_sample)

NAME_DIGITS = 8
_SAMPLE_FILE = re.compile(r'^\d{%d}\.(jpg|json)$' % NAME_DIGITS)
_TEMPORARY_FILE = re.compile(r'^\.\d{%d}\.(jpg|json)\..*\.tmp$' % NAME_DIGITS)   # write_atomic's, left by a kill
SETTINGS_FILE = 'synth_settings.yaml'
PREVIEW_SAMPLES = 16
MAX_SIZE = 4096
MIN_SIZE = 32


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-synth', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', required=True, type=Path,
                        help='output directory for NNNNNNNN.jpg + NNNNNNNN.json (created if missing)')
    parser.add_argument('--count', required=True, type=int, help='number of images')
    parser.add_argument('--seed', type=int, default=0, help='data set seed (>= 0)')
    parser.add_argument('--scene', default='crop',
                        help=f'{" or ".join(SCENES)}: one hand filling a square crop (CMU synth JSON) '
                             f'or a camera frame with 0-2 hands and distractors (JSON with boxes)')
    parser.add_argument('--size', default=None,
                        help='image size W or WxH (default: 368 for crop, 640x480 for frame)')
    parser.add_argument('--max-hand-size', type=float, default=DEFAULT_MAX_HAND_SIZE,
                        help=f'frame scenes: the largest hand, its longer side as a share of the image '
                             f'height (sizes are drawn log-uniform from {MIN_HAND_SIZE}); up to '
                             f'{MAX_HAND_SIZE}, where close-ups fill and overflow the frame')
    parser.add_argument('--objects', type=int, default=0,
                        help=f'up to this many lit 3D things that are not hands per image (0-{MAX_OBJECTS}; '
                             f'ellipsoids, boxes, cylinders, 40%% skin-coloured, some in front of a hand), '
                             f'so that the hand is not the only shaded solid among flat 2D layers')
    parser.add_argument('--workers', type=int, default=1, help='rendering processes')
    parser.add_argument('--preview', type=Path, default=None,
                        help='also write a contact sheet of the first 16 samples with their keypoints')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace NNNNNNNN.jpg/.json files already in --out (all of them are '
                             'deleted first) and an existing --preview file')
    parser.add_argument('--resume', action='store_true',
                        help=f'go on with an interrupted render: only the samples missing from --out '
                             f'are rendered; the settings must be those in OUT/{SETTINGS_FILE}')
    return parser


class UsageError(ValueError):
    """A bad request; reported as one line with exit code 2."""


def parse_size(text: str) -> tuple[int, int]:
    """'368' -> (368, 368); '640x480' -> (640, 480)."""
    match = re.fullmatch(r'(\d+)(?:[xX](\d+))?', text.strip())
    if not match:
        raise UsageError(f'bad --size {text!r}: use W or WxH, e.g. 368 or 640x480')
    width = int(match.group(1))
    height = int(match.group(2) or width)
    if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
        raise UsageError(f'bad --size {text!r}: each side must be {MIN_SIZE}..{MAX_SIZE} pixels')
    return width, height


def _existing_samples(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if _SAMPLE_FILE.match(path.name))


def pixel_settings(args: argparse.Namespace, size: tuple[int, int]) -> dict:
    """The settings that decide every sample's pixels and labels (with the index), as kept in
    OUT/synth_settings.yaml."""
    return {'scene': args.scene, 'seed': args.seed, 'size': list(size),
            'max_hand_size': args.max_hand_size, 'objects': args.objects}


def _missing_after_check(out: Path, settings: dict, count: int, existing: list[Path]) -> list[int]:
    """--resume: the indices below `count` without both files among the `existing` samples,
    once OUT's recorded settings are known to be these; temporary files of an interrupted write
    are removed."""
    recorded_path = out / SETTINGS_FILE
    if not recorded_path.is_file():
        raise UsageError(f'--resume: {out} has no {SETTINGS_FILE}, so the settings of its samples '
                         f'are unknown; render into a new directory, or use --overwrite')
    try:
        recorded = yaml.safe_load(recorded_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f'--resume: {recorded_path} is unreadable ({type(error).__name__}); '
                         f'use --overwrite to render {out} afresh')
    if recorded != settings:
        differ = sorted(key for key in settings if not isinstance(recorded, dict)
                        or recorded.get(key) != settings[key])
        raise UsageError(f'--resume: {", ".join(differ) or "the settings"} '
                         f'{"differs" if len(differ) == 1 else "differ"} from {recorded_path} '
                         f'({recorded}); give the same settings as the first run')
    for path in out.iterdir():
        if _TEMPORARY_FILE.match(path.name):
            path.unlink()
    present = {path.name for path in existing}
    return [index for index in range(count)
            if f'{sample_name(index)}.json' not in present or f'{sample_name(index)}.jpg' not in present]


def _prepare_output(args: argparse.Namespace, settings: dict) -> list[int]:
    """Check --out and --preview, clear or resume --out, record the settings; the indices to
    render."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f'--out {out} is a file, not a directory: choose a directory')
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f'cannot create --out {out}: {error.strerror}; choose a writable directory')
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f'--out {out} is not writable: choose a writable directory')
    if args.resume and args.overwrite:
        raise UsageError('--resume keeps the samples in --out and --overwrite deletes them: give one')
    existing = _existing_samples(out)
    if existing and not (args.overwrite or args.resume):
        raise UsageError(f'--out {out} already holds {len(existing)} sample files '
                         f'(e.g. {existing[0].name}): use another directory, --resume to go on '
                         f'with an interrupted render, or --overwrite')
    # --resume where nothing was rendered yet (no samples, no settings) simply starts.
    resuming = args.resume and bool(existing or (out / SETTINGS_FILE).exists())
    indices = (_missing_after_check(out, settings, args.count, existing) if resuming
               else list(range(args.count)))
    if args.preview is not None:
        if args.preview.exists() and not args.overwrite:
            raise UsageError(f'--preview {args.preview} exists: choose another file or --overwrite')
        if not args.preview.parent.is_dir() or not os.access(args.preview.parent, os.W_OK):
            raise UsageError(f'cannot write --preview {args.preview}: its directory is missing or '
                             f'not writable')
        if args.preview.suffix.lower() != '.png':
            raise UsageError(f'--preview {args.preview} must be a .png file')
    if not resuming:
        for path in existing:
            path.unlink()
        write_atomic(out / SETTINGS_FILE, yaml.safe_dump(settings, sort_keys=False).encode())
    return indices


def _validate(args: argparse.Namespace) -> tuple[int, int]:
    if args.count <= 0:
        raise UsageError(f'--count must be positive, got {args.count}')
    if args.scene not in SCENES:
        raise UsageError(f'unknown --scene {args.scene!r}: choose {" or ".join(SCENES)}')
    if args.seed < 0:
        raise UsageError(f'--seed must be >= 0, got {args.seed}')
    if args.workers < 1:
        raise UsageError(f'--workers must be >= 1, got {args.workers}')
    if not MIN_HAND_SIZE < args.max_hand_size <= MAX_HAND_SIZE:
        raise UsageError(f'--max-hand-size must be above {MIN_HAND_SIZE} and at most {MAX_HAND_SIZE}, '
                         f'got {args.max_hand_size}')
    if not 0 <= args.objects <= MAX_OBJECTS:
        raise UsageError(f'--objects must be 0..{MAX_OBJECTS}, got {args.objects}')
    if args.scene != 'frame' and args.max_hand_size != DEFAULT_MAX_HAND_SIZE:
        raise UsageError('--max-hand-size is for --scene frame; crop scenes always fill the crop')
    size = parse_size(args.size) if args.size else DEFAULT_SIZES[args.scene]
    try:
        find_asset_dir()
    except AssetNotFoundError as error:
        raise UsageError(str(error))
    return size


def sample_name(index: int) -> str:
    return f'{index:0{NAME_DIGITS}d}'


def write_sample(out: Path, scene: str, seed: int, index: int, size: tuple[int, int],
                 max_hand_size: float = DEFAULT_MAX_HAND_SIZE, max_objects: int = 0) -> None:
    """Render image `index` and write NNNNNNNN.jpg (with the scene's JPEG quality) and .json,
    each whole or not at all, the .json last: a sample with its .json is complete."""
    rendered = render_sample(scene, seed, index, size, max_hand_size, max_objects)
    annotation = rendered.crop_annotation() if scene == 'crop' else rendered.frame_annotation()
    stem = out / sample_name(index)
    ok, encoded = cv2.imencode('.jpg', rendered.image_bgr,
                               [cv2.IMWRITE_JPEG_QUALITY, rendered.params.jpeg_quality])
    if not ok:
        raise RuntimeError(f'JPEG encoding failed for image {index}')
    write_atomic(stem.with_suffix('.jpg'), encoded.tobytes())
    write_atomic(stem.with_suffix('.json'), (json.dumps(annotation, separators=(',', ':')) + '\n').encode())


def _init_worker() -> None:
    # One process per core: llvmpipe rasterises in the calling thread instead of spawning its own
    # threads (same pixels, less contention). Must be set before the worker creates its context.
    os.environ.setdefault('LP_NUM_THREADS', '0')
    # Ctrl-C reaches every process of the command: the main one reports it and ends the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_task(task: tuple[Path, str, int, int, tuple[int, int], float, int]) -> int:
    write_sample(*task)
    return task[3]


def write_preview(out: Path, indices: list[int], path: Path) -> None:
    """A contact sheet of the written samples `indices` with their labelled keypoints."""
    from hand_cpm_ros.drawing import contact_sheet, draw_hand

    images, labels = [], []
    for index in indices:
        stem = out / sample_name(index)
        image = cv2.imread(str(stem.with_suffix('.jpg')))
        annotation = json.loads(stem.with_suffix('.json').read_text())
        hands = annotation['hands'] if 'hands' in annotation else [annotation]
        for hand in hands:
            points = np.array(hand['hand_pts'], dtype=np.float64)
            draw_hand(image, points[:, :2], points[:, 2] > 0, threshold=0.5,
                      label='L' if hand['is_left'] else 'R')
        images.append(image)
        labels.append(f'{stem.name} {len(hands)} hand{"s" * (len(hands) != 1)}')
    cell = 256 if images[0].shape[0] == images[0].shape[1] else (320, 240)
    if not cv2.imwrite(str(path), contact_sheet(images, 4, cell, labels)):
        raise RuntimeError(f'could not write {path}')


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        size = _validate(args)
        indices = _prepare_output(args, pixel_settings(args, size))
    except UsageError as error:
        print(f'hand-cpm-synth: error: {error}', file=sys.stderr)
        return 2
    from tqdm import tqdm

    if args.resume:
        print(f'{args.count - len(indices)} of {args.count} samples already in {args.out}; '
              f'rendering the other {len(indices)}')
    tasks = [(args.out, args.scene, args.seed, index, size, args.max_hand_size, args.objects)
             for index in indices]
    progress = tqdm(total=len(tasks), unit='img', desc=f'{args.scene} {size[0]}x{size[1]}')
    try:
        if args.workers == 1:
            for task in tasks:
                _write_task(task)
                progress.update()
        else:
            # 'spawn': every worker starts clean and creates its own GL context.
            with multiprocessing.get_context('spawn').Pool(args.workers, _init_worker) as pool:
                for _ in pool.imap_unordered(_write_task, tasks, chunksize=4):
                    progress.update()
    except KeyboardInterrupt:
        progress.close()
        print(f'interrupted after {progress.n} of {len(tasks)} samples; the same command with '
              f'--resume renders the rest', file=sys.stderr)
        return 130
    progress.close()
    if args.preview is not None:
        write_preview(args.out, list(range(min(args.count, PREVIEW_SAMPLES))), args.preview)
    return 0


if __name__ == '__main__':
    sys.exit(main())
