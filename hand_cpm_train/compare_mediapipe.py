"""hand-cpm-compare-mediapipe: MediaPipe Hands and this package side by side on the same rendered
held-out frames, in one run: hands found, keypoint accuracy (PCK@0.2, EPE) and speed.

    hand-cpm-compare-mediapipe --data data/frames_test [--limit 200] [--json compare.json]
                               [--model M.onnx] [--localizer L.onnx] [--mediapipe-venv DIR]

--data holds `frame` scenes (hand-cpm-synth --scene frame: NAME.jpg + NAME.json with every hand's
21 keypoints and visibility), rendered with a seed no model was trained on.

- MediaPipe Hands (mediapipe 0.10.21, solutions API, static_image_mode=True, model_complexity=1,
  at most 2 hands) needs numpy<2, so it runs in its own virtual environment (--mediapipe-venv,
  created and installed on first use) as the subprocess scripts/mediapipe_hands_worker.py.
- This package runs in-process: the HandPipeline of the node and hand-cpm-detect, with its
  localiser, at most 2 hands, tracking off (the frames are independent, as in MediaPipe's static
  mode).
Both see the frames one at a time, one system after the other; each frame's time is the wall
time of the call that finds the hands (`hands.process` / `HandPipeline.process`: detection,
keypoints, decoding), image reading excluded, after WARMUP untimed frames. The keypoint network
gets --threads ONNX Runtime threads and the localiser the node's default (one); the MediaPipe
worker is pinned to --threads CPUs.

MediaPipe's 21 landmarks come in this package's keypoint order (hand_cpm_ros.keypoints: wrist,
thumb cmc/mcp/ip/tip, then mcp/pip/dip/tip of index, middle, ring and little finger), so they
are compared index by index.

Matching, per frame: the predicted hands against the true hands by box IoU >= MATCH_IOU, greedy by
score (hand_cpm_ros.metrics.match_detections, as the demo does); a hand's box is the box around
its 21 keypoints, clipped to the image, for the truth and both systems alike. True hands with
fewer than MIN_VISIBLE visible keypoints are not counted: finding one is neither a hit nor a false
hand. Reported per system: frames, hands in truth, hands found (detection rate), false hands,
PCK@0.2 (normalised by the longer side of the true hand's visible-keypoint box, as
hand_cpm_ros.metrics.summary) over the matched hands and over all true hands with the missed ones
counted as wrong, EPE px over the matched hands, the share of matched hands given a handedness
(not 'unknown') and the accuracy over those, and the per-frame latency median and p95 and
frames/s (frames over the summed per-frame times). The markdown table ends each row with the better system; --json
writes the same numbers, the settings of both systems and each frame's time and matches.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hand_cpm_ros import metrics
from hand_cpm_ros.backends import BackendError, create_backend
from hand_cpm_ros.files import write_atomic
from hand_cpm_ros.geometry import box_from_keypoints, clip_box
from hand_cpm_ros.keypoints import NUM_KEYPOINTS
from hand_cpm_ros.localizer import (DEFAULT_LOCALIZER_THREADS, PIPELINE_SCORE_THRESHOLD, WIDE_FACTOR,
                                    load_localizer)
from hand_cpm_ros.pipeline import DEFAULT_LOCALIZER_NAME, HandPipeline, default_model_path
from hand_cpm_train.data import (MIN_VISIBLE, _annotation_files, _image_beside, _parse_points,
                                 _read_json, read_image)

MEDIAPIPE_VERSION = '0.10.21'
MEDIAPIPE_REQUIREMENTS = (f'mediapipe=={MEDIAPIPE_VERSION}', 'numpy<2')
MEDIAPIPE_PYTHON = 'python3.11'   # mediapipe 0.10.21 has wheels for CPython 3.9 to 3.12
WORKER = Path('scripts') / 'mediapipe_hands_worker.py'
DEFAULT_VENV_NAME = '.venv-mediapipe'
MAX_HANDS = 2
MATCH_IOU = 0.5
WARMUP = 3
SYSTEMS = {'mediapipe': 'MediaPipe', 'hand_cpm': 'hand_cpm_ros'}  # report key -> short name
STDERR_FD = 2   # the set-up commands print here, leaving stdout to the table
MEDIAPIPE_QUIET = {'GLOG_minloglevel': '2', 'TF_CPP_MIN_LOG_LEVEL': '2'}

# (label, metric key, which value is better) of the table rows; None: no winner (equal inputs).
ROWS = (
    ('frames', 'frames', None),
    ('hands in truth', 'true_hands', None),
    ('hands found (detection rate)', 'detection_rate', 'higher'),
    ('false hands', 'false_hands', 'lower'),
    ('PCK@0.2, matched hands', 'pck@0.2_matched', 'higher'),
    ('PCK@0.2, all true hands (missed = wrong)', 'pck@0.2_all', 'higher'),
    ('EPE px, matched hands', 'epe_px_matched', 'lower'),
    ('handedness given (not unknown), matched hands', 'handedness_given', 'higher'),
    ('handedness accuracy, matched hands where given', 'handedness_accuracy', 'higher'),
    ('latency median, ms', 'latency_ms_median', 'lower'),
    ('latency p95, ms', 'latency_ms_p95', 'lower'),
    ('frames/s', 'frames_per_s', 'higher'),
)


class CompareError(Exception):
    """A user or set-up error: printed as one line, exit code 2."""


@dataclass(frozen=True)
class TrueFrame:
    """One rendered frame and its true hands (source pixels)."""
    image: Path
    width: int
    height: int
    keypoints: np.ndarray   # (G, 21, 2)
    visible: np.ndarray     # (G, 21) bool
    is_left: np.ndarray     # (G,) bool


@dataclass(frozen=True)
class PredictedFrame:
    """One system's hands in one frame and the time it took."""
    keypoints: np.ndarray          # (P, 21, 2) source pixels
    scores: np.ndarray             # (P,)
    handedness: tuple[str, ...]    # 'left', 'right' or 'unknown' per hand
    ms: float


def load_true_frames(root: Path, limit: int | None = None) -> list[TrueFrame]:
    """The first `limit` (all when None) frame annotations under `root`, in file-name order."""
    if not root.is_dir():
        raise CompareError(f'--data {root} is not a directory')
    frames = []
    for path in _annotation_files(root)[:limit]:
        content = _read_json(path)
        if not isinstance(content, dict) or not isinstance(content.get('hands'), list):
            raise CompareError(f'{path} has no "hands" list: --data must hold frame scenes '
                               f'(hand-cpm-synth --scene frame)')
        parsed = [_parse_points(hand['hand_pts'], f'{path} hand {number}')
                  for number, hand in enumerate(content['hands'])]
        frames.append(TrueFrame(
            _image_beside(path), int(content['width']), int(content['height']),
            np.array([points for points, _ in parsed]).reshape(-1, NUM_KEYPOINTS, 2),
            np.array([visible for _, visible in parsed], bool).reshape(-1, NUM_KEYPOINTS),
            np.array([bool(hand.get('is_left', 0)) for hand in content['hands']], bool)))
    if not frames:
        raise CompareError(f'--data {root} holds no frame annotations (NAME.json beside NAME.jpg; '
                           f'render them with hand-cpm-synth --scene frame)')
    return frames


def keypoint_boxes(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) boxes around each hand's 21 keypoints, clipped to the image."""
    return np.array([clip_box(box_from_keypoints(points), width, height)
                     for points in keypoints]).reshape(-1, 4)


def match_frame(truth: TrueFrame, predicted: PredictedFrame) -> np.ndarray:
    """(P,) index of the true hand each predicted hand matched, -1 for none."""
    return metrics.match_detections(
        keypoint_boxes(predicted.keypoints, truth.width, truth.height), predicted.scores,
        keypoint_boxes(truth.keypoints, truth.width, truth.height), MATCH_IOU)


def _number(value) -> float | int | None:
    """JSON-safe: None for NaN, inf or None."""
    if value is None or not np.isfinite(value):
        return None
    return value if isinstance(value, int) else round(float(value), 4)


def score_system(truths: list[TrueFrame], predictions: list[PredictedFrame]
                 ) -> tuple[dict, list[list[int]]]:
    """(metrics of one system over all frames, per frame the matched true hand of each predicted
    hand: an index, or -1 for a false hand)."""
    if len(truths) != len(predictions):
        raise ValueError(f'{len(predictions)} predicted frames for {len(truths)} true frames')
    matched, everything = ([], [], []), ([], [], [])  # (pred, gt, visible) stacks
    false_hands = right_sides = given_sides = 0
    per_frame = []
    for truth, predicted in zip(truths, predictions):
        counted = truth.visible.sum(axis=1) >= MIN_VISIBLE
        matches = match_frame(truth, predicted)
        per_frame.append(matches.tolist())
        false_hands += int(np.count_nonzero(matches < 0))
        for hand, index in enumerate(matches):
            if index >= 0 and counted[index]:
                for stack, value in zip(matched, (predicted.keypoints[hand], truth.keypoints[index],
                                                  truth.visible[index])):
                    stack.append(value)
                side = 'left' if truth.is_left[index] else 'right'
                given_sides += predicted.handedness[hand] != 'unknown'
                right_sides += predicted.handedness[hand] == side
        for index in np.flatnonzero(counted):
            hits = np.flatnonzero(matches == index)
            pred = predicted.keypoints[hits[0]] if hits.size else np.full((NUM_KEYPOINTS, 2),
                                                                          np.nan)  # all wrong
            for stack, value in zip(everything,
                                    (pred, truth.keypoints[index], truth.visible[index])):
                stack.append(value)
    true_hands, found = len(everything[0]), len(matched[0])
    on_matched = metrics.summary(*map(np.stack, matched)) if found else {}
    on_all = metrics.summary(*map(np.stack, everything)) if true_hands else {}
    times = np.array([frame.ms for frame in predictions])
    result = {
        'frames': len(truths),
        'true_hands': true_hands,
        'hands_found': found,
        'detection_rate': _number(found / true_hands if true_hands else None),
        'false_hands': false_hands,
        'pck@0.2_matched': _number(on_matched.get('pck@0.2')),
        'pck@0.2_all': _number(on_all.get('pck@0.2')),
        'epe_px_matched': _number(on_matched.get('epe_px')),
        'handedness_given': _number(given_sides / found if found else None),
        'handedness_accuracy': _number(right_sides / given_sides if given_sides else None),
        'latency_ms_median': _number(np.median(times)),
        'latency_ms_p95': _number(np.percentile(times, 95)),
        'frames_per_s': _number(1e3 * len(times) / times.sum() if times.sum() > 0 else None),
    }
    return result, per_frame


def _better(values: list, direction: str | None) -> str:
    """The short name of the system with the better value, 'tie', or '' without a winner."""
    if direction is None or any(value is None for value in values):
        return ''
    if values[0] == values[1]:
        return 'tie'
    best = max(values) if direction == 'higher' else min(values)
    return list(SYSTEMS.values())[values.index(best)]


def _cell(report: dict, key: str) -> str:
    value = report[key]
    if value is None:
        return '-'
    if key == 'detection_rate':
        return f'{report["hands_found"]} ({value:.3f})'
    if isinstance(value, int):
        return str(value)
    return f'{value:.1f}' if key.startswith(('latency', 'frames_per', 'epe')) else f'{value:.3f}'


def markdown_table(report: dict) -> str:
    """The side-by-side table of a report (see build_report) in markdown."""
    systems = [report['systems'][name] for name in SYSTEMS]
    names = [system['name'] for system in systems]
    lines = [f'| metric | {names[0]} | {names[1]} | better |', '|---|---:|---:|---|']
    for label, key, direction in ROWS:
        better = _better([system['metrics'][key] for system in systems], direction)
        cells = ' | '.join(_cell(system['metrics'], key) for system in systems)
        lines.append(f'| {label} | {cells} | {better} |')
    return '\n'.join(lines)


def build_report(data: Path, truths: list[TrueFrame], predictions: dict[str, list[PredictedFrame]],
                 descriptions: dict[str, dict]) -> dict:
    """The JSON report: settings, each system's metrics and one record per frame."""
    systems, matches = {}, {}
    for name in SYSTEMS:
        result, matches[name] = score_system(truths, predictions[name])
        systems[name] = {**descriptions[name], 'metrics': result}
    frames = [{'image': str(truth.image), 'true_hands': len(truth.keypoints),
               **{name: {'ms': round(predictions[name][index].ms, 3),
                         'matched_true_hand': matches[name][index]} for name in SYSTEMS}}
              for index, truth in enumerate(truths)]
    return {'data': str(data), 'frames': len(truths),
            'match': f'keypoint boxes, IoU >= {MATCH_IOU}, greedy by score; true hands with '
                     f'fewer than {MIN_VISIBLE} visible keypoints not counted',
            'pck_normaliser': 'longer side of the true hand\'s visible-keypoint box',
            'warmup_frames': WARMUP, 'systems': systems, 'per_frame': frames}


# ------------------------------------------------------------------------------------ MediaPipe
def find_worker() -> Path:
    """scripts/mediapipe_hands_worker.py in the nearest parent directory of this file that has it
    (the source tree, or the project holding the virtual environment this copy is installed in)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / WORKER).is_file():
            return parent / WORKER
    raise CompareError(f'{WORKER} not found above {Path(__file__).parent}: run this command from '
                       f'a source checkout of hand_cpm_ros (scripts/setup.sh)')


def _say(text: str) -> None:
    print(f'{Path(sys.argv[0]).name}: {text}', file=sys.stderr, flush=True)


def ensure_mediapipe_venv(venv: Path) -> Path:
    """The Python of `venv`, created with MEDIAPIPE_PYTHON and given MEDIAPIPE_REQUIREMENTS when
    they are missing (pip's output goes to stderr)."""
    python = venv / 'bin' / 'python'
    if not python.is_file():
        base = shutil.which(MEDIAPIPE_PYTHON)
        if base is None:
            raise CompareError(f'{MEDIAPIPE_PYTHON} not found: MediaPipe {MEDIAPIPE_VERSION} needs '
                               f'CPython 3.9-3.12; create {venv} by hand with one of them')
        command = [base, '-m', 'venv', str(venv)]
        _say(f'creating the MediaPipe environment: {shlex.join(command)}')
        if subprocess.run(command, stdout=STDERR_FD).returncode != 0:
            raise CompareError(f'creating {venv} failed; run by hand: {shlex.join(command)}')
    version = subprocess.run(
        [str(python), '-c', 'import importlib.metadata as m; print(m.version("mediapipe"))'],
        capture_output=True, text=True)
    if version.returncode != 0 or version.stdout.strip() != MEDIAPIPE_VERSION:
        command = [str(python), '-m', 'pip', 'install', '--disable-pip-version-check',
                   *MEDIAPIPE_REQUIREMENTS]
        _say(f'installing MediaPipe (once, about 1 GB with its dependencies): '
             f'{shlex.join(command)}')
        returncode = subprocess.run(command, stdout=STDERR_FD).returncode
        if returncode != 0:
            raise CompareError(f'pip failed (exit {returncode}) installing into {venv}; run by '
                               f'hand: {shlex.join(command)}')
    return python


def add_mediapipe_venv_argument(parser: argparse.ArgumentParser) -> None:
    """--mediapipe-venv, for every command that runs the MediaPipe worker."""
    parser.add_argument('--mediapipe-venv', type=Path, default=None,
                        help=f'virtual environment for MediaPipe, created when missing (default: '
                             f'{DEFAULT_VENV_NAME} in the repository root)')


def mediapipe_python(venv: Path | None, worker: Path) -> Path:
    """The Python of --mediapipe-venv `venv` (default: DEFAULT_VENV_NAME beside the worker's
    scripts/ directory), made ready by ensure_mediapipe_venv."""
    return ensure_mediapipe_venv(venv or worker.parents[1] / DEFAULT_VENV_NAME)


def _worker_record(line: str) -> dict | None:
    """One JSON line of the worker; None at the end of its output."""
    if not line:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        raise CompareError(f'the MediaPipe worker printed a line that is not a JSON object: '
                           f'{line.strip()[:200]!r}')
    return record


def _predicted_frame(record: dict) -> PredictedFrame:
    """A worker record as a PredictedFrame; CompareError if it is malformed."""
    try:
        hands = record['hands']
        return PredictedFrame(
            np.array([hand['keypoints'] for hand in hands], np.float64).reshape(
                -1, NUM_KEYPOINTS, 2),
            np.array([hand['score'] for hand in hands], np.float64),
            tuple(hand['handedness'] for hand in hands), float(record['ms']))
    except (KeyError, TypeError, ValueError) as error:
        raise CompareError(f'the MediaPipe worker\'s record for {record.get("image")} is malformed: '
                           f'{type(error).__name__}: {error}') from error


def _last_line(stream) -> str:
    """The last non-empty line of a text file open for reading and writing."""
    stream.seek(0)
    lines = [line.strip() for line in stream if line.strip()]
    return lines[-1] if lines else 'no error output'


def run_mediapipe(python: Path, worker: Path, images: Sequence[Path], threads: int,
                  progress: bool = True, max_hands: int = MAX_HANDS) -> tuple[dict, list[dict]]:
    """({'mediapipe': version, 'settings': ...} of the worker, its record for each image in
    order); CompareError if the worker fails or answers for another image."""
    from tqdm import tqdm

    command = [str(python), str(worker), '--threads', str(threads), '--max-hands', str(max_hands),
               '--warmup', str(WARMUP)]
    records: list[dict] = []
    with tempfile.TemporaryFile('w+') as errors, \
            tqdm(total=len(images), desc='MediaPipe Hands', unit='frame', file=sys.stderr,
                 disable=not progress) as bar:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=errors, text=True, env={**os.environ, **MEDIAPIPE_QUIET})
        try:
            # The worker reads all of stdin before it writes, so this cannot deadlock.
            process.stdin.write(''.join(f'{image}\n' for image in images))
            process.stdin.close()
            header = _worker_record(process.stdout.readline())
            for image in images:
                record = _worker_record(process.stdout.readline())
                if record is None:
                    break
                if record.get('image') != str(image):
                    raise CompareError(f'the MediaPipe worker answered for {record.get("image")}, '
                                       f'expected {image}')
                records.append(record)
                bar.update()
        except BaseException:
            process.kill()
            raise
        finally:
            returncode = process.wait()
        if returncode != 0 or header is None or len(records) != len(images):
            raise CompareError(f'the MediaPipe worker failed (exit {returncode}, '
                               f'{len(records)} of {len(images)} frames): {_last_line(errors)}')
    return header, records


# ------------------------------------------------------------------------------ this package
def build_pipeline(model: Path, localizer: Path, threads: int) -> tuple[HandPipeline, str]:
    """(the node's HandPipeline with its localiser, at most MAX_HANDS hands and no tracking, the
    backend in words)."""
    for path, what, how in ((model, '--model', 'hand-cpm-train, then hand-cpm-export'),
                            (localizer, '--localizer',
                             'hand-cpm-train --task localizer, then hand-cpm-export')):
        if not path.is_file():
            raise CompareError(f'{what} {path} does not exist (no trained default model ships '
                               f'yet); pass {what} MODEL.onnx ({how})')
    try:
        backend = create_backend('auto', model_path=str(model), threads=threads,
                                 logger=lambda text: None)
        # the localiser's threads as in the node
        boxes = load_localizer(localizer, PIPELINE_SCORE_THRESHOLD, MAX_HANDS,
                               DEFAULT_LOCALIZER_THREADS, threads, logger=lambda text: None,
                               wide_factor=WIDE_FACTOR)
        pipeline = HandPipeline(backend, localizer=boxes, max_hands=MAX_HANDS, tracking=False)
    except (BackendError, ValueError) as error:
        raise CompareError(str(error)) from error
    return pipeline, backend.describe()


def run_hand_cpm(pipeline: HandPipeline, truths: list[TrueFrame],
                 progress: bool = True) -> list[PredictedFrame]:
    """One PredictedFrame per frame, timing HandPipeline.process after WARMUP untimed frames."""
    from tqdm import tqdm

    for truth in truths[:WARMUP]:
        pipeline.process(read_image(truth.image))
    predictions = []
    for truth in tqdm(truths, desc='hand_cpm_ros', unit='frame', file=sys.stderr,
                      disable=not progress):
        image = read_image(truth.image)
        started = time.perf_counter()
        result = pipeline.process(image)
        elapsed_ms = 1e3 * (time.perf_counter() - started)
        predictions.append(PredictedFrame(
            np.array([hand.keypoints for hand in result.hands], np.float64).reshape(
                -1, NUM_KEYPOINTS, 2),
            np.array([hand.score for hand in result.hands], np.float64),
            tuple(hand.handedness.name.lower() for hand in result.hands), elapsed_ms))
    return predictions


# ----------------------------------------------------------------------------------------- CLI
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'needs an integer >= 1, got {text!r}')
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-compare-mediapipe',
        description=f'MediaPipe Hands {MEDIAPIPE_VERSION} and this package side by side on the '
                    f'same rendered held-out frames: hands found, PCK@0.2, EPE and speed.')
    parser.add_argument('--data', type=Path, required=True,
                        help='held-out frame scenes (hand-cpm-synth --scene frame)')
    parser.add_argument('--limit', type=_positive_int, default=None,
                        help='only the first N frames (default: all)')
    parser.add_argument('--model', type=Path, default=None,
                        help=f'keypoint model .onnx / .pt (default: {default_model_path()})')
    parser.add_argument('--localizer', type=Path, default=None,
                        help=f'hand localiser .onnx / .pt '
                             f'(default: {default_model_path(DEFAULT_LOCALIZER_NAME)})')
    add_mediapipe_venv_argument(parser)
    parser.add_argument('--json', type=Path, default=None, metavar='OUT',
                        help='write the report (settings, metrics, per-frame times) here')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --json file')
    parser.add_argument('--threads', type=_positive_int, default=2,
                        help='ONNX Runtime threads of the keypoint network (the localiser runs '
                             'on one, as in the node); the MediaPipe worker is pinned to as many '
                             'CPUs')
    parser.add_argument('--no-progress', dest='progress', action='store_false',
                        help='no progress bars')
    return parser


def run(args: argparse.Namespace) -> dict:
    """The comparison; returns the report and writes --json."""
    if args.json is not None and args.json.exists() and not args.overwrite:
        raise CompareError(f'--json {args.json} exists; pass --overwrite to replace it')
    truths = load_true_frames(args.data, args.limit)
    worker = find_worker()
    model = args.model or default_model_path()
    localizer = args.localizer or default_model_path(DEFAULT_LOCALIZER_NAME)
    pipeline, backend = build_pipeline(model, localizer, args.threads)
    python = mediapipe_python(args.mediapipe_venv, worker)
    header, records = run_mediapipe(python, worker, [truth.image for truth in truths], args.threads,
                                    args.progress)
    mediapipe_frames = [_predicted_frame(record) for record in records]
    hand_cpm_frames = run_hand_cpm(pipeline, truths, args.progress)
    descriptions = {
        'mediapipe': {'name': f'MediaPipe Hands {header["mediapipe"]}',
                      'settings': header['settings']},
        'hand_cpm': {'name': f'hand_cpm_ros ({pipeline.backend.info.variant})',
                     'model': str(model), 'localizer': str(localizer), 'backend': backend,
                     'settings': {'max_hands': MAX_HANDS, 'tracking': False,
                                  'localizer_threshold': PIPELINE_SCORE_THRESHOLD,
                                  'hand_threshold': pipeline.settings.hand_threshold}},
    }
    report = build_report(args.data, truths, {'mediapipe': mediapipe_frames,
                                              'hand_cpm': hand_cpm_frames}, descriptions)
    if args.json is not None:
        write_atomic(args.json, (json.dumps(report, indent=1) + '\n').encode())
    return report


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        report = run(args)
    except (CompareError, ValueError) as error:
        print(f'hand-cpm-compare-mediapipe: error: {error}', file=sys.stderr)
        return 2
    print(f'{report["frames"]} frames of {args.data}; hands matched by {report["match"]}')
    print(markdown_table(report))
    if args.json is not None:
        print(f'report written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
