"""hand-cpm-detect: hand keypoints in image and video files, with the node's HandPipeline.

    hand-cpm-detect IMAGE_OR_VIDEO_OR_DIR... [--box X0,Y0,X1,Y1] [--json] [--out DIR]
                    [--model PATH] [--localizer PATH] [--fine-localizer [PATH]]

A directory stands for its image and video files (not its subdirectories), in name order; other
files in it are passed over. A file that cannot be decoded is reported on stderr and skipped, the
others are still processed, and the exit code is then 2.

Without --box the hand localiser (--localizer, default models/hand_localizer.onnx) finds every
hand in each frame (at most --max-hands); with --box that box is used instead. --fine-localizer
adds its second pass at a larger input (default models/hand_localizer_fine.onnx), which finds
more small, far hands for about twice the localiser's compute. --wide-factor F (default 1.6, as
the node) also runs the localiser on the frame shrunk F times more, for hands that fill it; 1
turns that pass off.

--json prints one JSON object per image (per frame for videos) on its own line:
{"image": PATH, ["frame": N,] "hands": [{"keypoints": [[x, y, score] x 21], "box": [x0, y0, x1, y1],
"score": s, "handedness": "left|right|unknown", "handedness_score": h, "track_id": T}]}, in
source-image pixels (pixel centres at integer coordinates). --out DIR writes annotated copies
(videos as DIR/<name>.mp4). Frames of one video are tracked: a hand keeps its track_id from frame
to frame; separate files are independent.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from .backends import BACKEND_NAMES, BackendError, create_backend
from .localizer import (DEFAULT_FINE_MAX_HEIGHT, DEFAULT_LOCALIZER_THREADS, PIPELINE_SCORE_THRESHOLD,
                        WIDE_FACTOR, load_localizer)
from .pipeline import (DEFAULT_LOCALIZER_NAME, FINE_LOCALIZER_NAME, FrameResult, HandPipeline,
                       PipelineSettings, default_model_path, draw_result)

IMAGE_SUFFIXES = {'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm'}
VIDEO_SUFFIXES = {'.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg'}
NO_LOCALIZER = 'finding hands without --box needs a hand localiser model'


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


class UnreadableInput(Exception):
    """One input file that cannot be decoded: reported and skipped, the run goes on."""


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' (source pixels) -> a box with x1 > x0 and y1 > y0."""
    try:
        x0, y0, x1, y1 = (float(part) for part in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--box needs four comma-separated numbers X0,Y0,X1,Y1, got {text!r}') from None
    if not (np.all(np.isfinite((x0, y0, x1, y1))) and x1 > x0 and y1 > y0):
        raise argparse.ArgumentTypeError(f'--box needs finite X1 > X0 and Y1 > Y0, got {text!r}')
    return x0, y0, x1, y1


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-detect',
        description='Find the 21 keypoints of hands in images and videos (the node\'s pipeline, '
                    'offline).')
    parser.add_argument('inputs', nargs='+', type=Path, metavar='IMAGE_OR_VIDEO_OR_DIR',
                        help=f'image ({", ".join(sorted(IMAGE_SUFFIXES))}) or video '
                             f'({", ".join(sorted(VIDEO_SUFFIXES))}) files, or directories of '
                             f'them (their files in name order)')
    parser.add_argument('--box', type=parse_box, metavar='X0,Y0,X1,Y1',
                        help='the hand\'s box in source pixels, used for every image/frame '
                             '(skips the localiser)')
    parser.add_argument('--localizer', type=Path, default=None,
                        help=f'hand localiser .onnx / .pt for finding hands without --box '
                             f'(default: {default_model_path(DEFAULT_LOCALIZER_NAME)})')
    parser.add_argument('--localizer-threshold', type=float, default=PIPELINE_SCORE_THRESHOLD,
                        help='hand boxes of the localiser scoring below this are not cropped (a '
                             'box\'s hand still needs --new-hand-threshold)')
    parser.add_argument('--fine-localizer', type=Path, nargs='?', metavar='PATH',
                        const=default_model_path(FINE_LOCALIZER_NAME),
                        help=f'also run the localiser at a larger input (PATH: the localiser exported '
                             f'with a larger --frame-size; alone: '
                             f'{default_model_path(FINE_LOCALIZER_NAME)}) and merge its small boxes in')
    parser.add_argument('--fine-max-height', type=float, default=DEFAULT_FINE_MAX_HEIGHT,
                        help='--fine-localizer boxes count only when shorter than this share of the '
                             'frame height (default %(default)s)')
    parser.add_argument('--wide-factor', type=float, default=WIDE_FACTOR, metavar='F',
                        help='also run the localiser on the frame shrunk F times more and merge in its '
                             'boxes over a quarter of the frame height, for hands that fill the frame '
                             '(as the node\'s localizer_wide_factor; 1: off; default %(default)s)')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object per image / video frame')
    parser.add_argument('--out', type=Path, metavar='DIR', help='write annotated images here')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing files in --out')
    parser.add_argument('--heatmap', action='store_true',
                        help='blend the belief maps into the --out images')
    parser.add_argument('--model', type=Path, default=None,
                        help=f'.onnx model or .pt checkpoint (default: {default_model_path()})')
    parser.add_argument('--engine', type=Path, default=None, help='TensorRT engine file')
    parser.add_argument('--backend', choices=BACKEND_NAMES, default='auto',
                        help='inference backend (default: auto)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of the keypoint backend')
    parser.add_argument('--localizer-threads', type=int, default=DEFAULT_LOCALIZER_THREADS,
                        help='CPU threads of an ONNX localiser (default: %(default)s, on the '
                             'calling thread, which leaves the cores to the keypoint backend)')
    parser.add_argument('--max-hands', type=int, default=PipelineSettings.max_hands,
                        help='at most this many hands (1..8)')
    parser.add_argument('--keypoint-threshold', type=float,
                        default=PipelineSettings.keypoint_threshold,
                        help='keypoints below this confidence do not shape boxes or drawings')
    parser.add_argument('--hand-threshold', type=float, default=PipelineSettings.hand_threshold,
                        help='hands scoring below this are dropped')
    parser.add_argument('--new-hand-threshold', type=float,
                        default=PipelineSettings.new_hand_threshold,
                        help='a hand that no track of the previous video frame continues (every '
                             'hand in an image) must score this much')
    parser.add_argument('--crop-margin', type=float, default=PipelineSettings.crop_margin,
                        help='margin around the box before cropping, fraction of its side')
    parser.add_argument('--flip-averaging', action='store_true',
                        help='also run every crop mirrored and average the two answers: better '
                             'keypoints for twice the keypoint network\'s compute')
    parser.add_argument('--localizer-flip-averaging', action='store_true',
                        help='also run the localiser on each image mirrored and average the two '
                             'answers: fewer false and misplaced boxes for twice its compute')
    return parser


def result_record(path: Path, result: FrameResult, frame: int | None = None) -> dict:
    """The JSON object of one image or video frame."""
    record: dict = {'image': str(path)}
    if frame is not None:
        record['frame'] = frame
    record['hands'] = [{
        'keypoints': [[round(float(x), 3), round(float(y), 3), round(float(score), 4)]
                      for (x, y), score in zip(hand.keypoints, hand.scores)],
        'box': [round(float(value), 3) for value in hand.box],
        'score': round(float(hand.score), 4),
        'handedness': hand.handedness.name.lower(),
        'handedness_score': round(float(hand.handedness_score), 4),
        'track_id': hand.track_id,
    } for hand in result.hands]
    return record


def _plan_outputs(inputs: list[Path], out_dir: Path | None, overwrite: bool) -> dict[Path, Path]:
    """Input -> annotated output path; CliError for clashes or files that exist."""
    if out_dir is None:
        return {}
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f'--out {out_dir} exists and is not a directory')
    outputs: dict[Path, Path] = {}
    for path in inputs:
        suffix = '.mp4' if path.suffix.lower() in VIDEO_SUFFIXES else path.suffix.lower()
        target = out_dir / f'{path.stem}{suffix}'
        if target in outputs.values():
            raise CliError(f'two inputs would both be written to {target}: give them different names')
        if target.resolve() == path.resolve():
            raise CliError(f'{target} is an input: choose another --out directory')
        if target.exists() and not overwrite:
            raise CliError(f'{target} exists; pass --overwrite to replace it')
        outputs[path] = target
    return outputs


def _expand_inputs(inputs: list[Path]) -> list[Path]:
    """The input files: each file as given, each directory's image and video files in name
    order; CliError for a missing path, a file of another type or a directory without any."""
    kinds = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(entry for entry in path.iterdir()
                           if entry.is_file() and entry.suffix.lower() in kinds)
            if not found:
                raise CliError(f'directory {path} holds no image ({", ".join(sorted(IMAGE_SUFFIXES))}) '
                               f'or video ({", ".join(sorted(VIDEO_SUFFIXES))}) files')
            files.extend(found)
        elif not path.is_file():
            raise CliError(f'input {path} does not exist')
        elif path.suffix.lower() not in kinds:
            raise CliError(f'input {path}: unsupported file type {path.suffix!r}; images: '
                           f'{", ".join(sorted(IMAGE_SUFFIXES))}; videos: '
                           f'{", ".join(sorted(VIDEO_SUFFIXES))}')
        else:
            files.append(path)
    return files


def _frames(path: Path):
    """(frame index, time in seconds, frame rate, BGR image) of a video's frames, or
    (None, None, None, image) for an image."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise UnreadableInput('not a readable image file')
        yield None, None, None, image
        return
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UnreadableInput('not a readable video file')
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield index, index / fps, fps, image
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise UnreadableInput('a video without readable frames')


def _describe(path: Path, frame: int | None, result: FrameResult) -> str:
    where = str(path) if frame is None else f'{path} frame {frame}'
    hands = '; '.join(f'{hand.handedness.name.lower()} hand score {hand.score:.2f} box '
                      f'[{", ".join(f"{v:.1f}" for v in hand.box)}]' for hand in result.hands)
    return f'{where}: {len(result.hands)} hand(s){": " + hands if hands else ""}'


def run(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    localizer_path = None
    if args.box is None:
        localizer_path = args.localizer or default_model_path(DEFAULT_LOCALIZER_NAME)
        if not localizer_path.is_file():
            raise CliError(f'{NO_LOCALIZER}: {localizer_path} does not exist; pass --localizer '
                           f'MODEL.onnx (hand-cpm-train --task localizer, then hand-cpm-export) '
                           f'or give the hand\'s box with --box X0,Y0,X1,Y1')
        if args.fine_localizer is not None and \
                args.fine_localizer.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            raise CliError(f'--fine-localizer {args.fine_localizer} is an image or video, not a model: '
                           f'put --fine-localizer after the inputs, or give it the model\'s path')
        if args.fine_localizer is not None and not args.fine_localizer.is_file():
            raise CliError(f'--fine-localizer {args.fine_localizer} does not exist; export the '
                           f'localiser with a larger --frame-size (hand-cpm-export)')
    elif args.fine_localizer is not None:
        raise CliError('--fine-localizer finds hands for the localiser; with --box there is none to '
                       'help: drop one of the two')
    inputs = _expand_inputs(args.inputs)
    outputs = _plan_outputs(inputs, args.out, args.overwrite)
    model = args.model or default_model_path()
    try:
        backend = create_backend(args.backend, model_path=str(model),
                                 engine_path=None if args.engine is None else str(args.engine),
                                 threads=args.threads, logger=lambda text: None)
        localizer = None if localizer_path is None else load_localizer(
            localizer_path, args.localizer_threshold, args.max_hands, args.localizer_threads,
            args.threads, logger=lambda text: None, flip_averaging=args.localizer_flip_averaging,
            fine_path=args.fine_localizer, fine_max_height=args.fine_max_height,
            wide_factor=args.wide_factor)
        pipeline = HandPipeline(backend, localizer=localizer, max_hands=args.max_hands,
                                crop_margin=args.crop_margin,
                                flip_averaging=args.flip_averaging,
                                keypoint_threshold=args.keypoint_threshold,
                                hand_threshold=args.hand_threshold,
                                new_hand_threshold=args.new_hand_threshold)
    except (BackendError, ValueError) as error:
        raise CliError(str(error)) from error
    if outputs:
        args.out.mkdir(parents=True, exist_ok=True)
    skipped: list[Path] = []
    for path in tqdm(inputs, desc='hand-cpm-detect', unit='file', file=sys.stderr,
                     disable=len(inputs) < 2 or None):
        pipeline.tracker.end_all()  # separate files are not one scene
        writer = None
        try:
            for frame, seconds, fps, image in _frames(path):
                result = pipeline.process(image, rois=[] if args.box is None else [args.box],
                                          stamp=seconds)
                if result.dropped['roi_outside_image']:
                    raise CliError(f'--box {",".join(f"{v:g}" for v in args.box)} lies outside '
                                   f'{path} ({image.shape[1]}x{image.shape[0]})')
                print(json.dumps(result_record(path, result, frame)) if args.json
                      else _describe(path, frame, result), flush=True)
                if path in outputs:
                    drawn = draw_result(image, result, args.keypoint_threshold,
                                        0.5 if args.heatmap else 0.0)
                    if frame is None:
                        if not cv2.imwrite(str(outputs[path]), drawn):
                            raise CliError(f'cannot write {outputs[path]}')
                    else:
                        if writer is None:
                            writer = cv2.VideoWriter(str(outputs[path]),
                                                     cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                                     (image.shape[1], image.shape[0]))
                            if not writer.isOpened():
                                raise CliError(f'cannot write video {outputs[path]}')
                        writer.write(drawn)
        except UnreadableInput as error:
            skipped.append(path)
            tqdm.write(f'hand-cpm-detect: skipped {path}: {error}', file=sys.stderr)
        finally:
            if writer is not None:
                writer.release()
    if skipped:
        raise CliError(f'{len(skipped)} of {len(inputs)} input file(s) could not be read and were '
                       f'skipped (named above); the others were processed')


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        run(args)
    except CliError as error:
        print(f'hand-cpm-detect: error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
