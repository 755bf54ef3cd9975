"""hand-cpm-eval: keypoint accuracy of a checkpoint (.pt) or an exported ONNX model on HELD-OUT data.

    hand-cpm-eval --model runs/a/best.pt --data synth_test/ [--json] [--plot pck.png] [--per-stage]
                  [--flip-averaging] [--error-sheet errors.jpg]

Each hand is cropped from its ground-truth keypoint box (the same square crop and margin as
training, i.e. what the node gets from a good hand localiser), the model runs on the crop, and the
codec decodes the maps into SOURCE-image pixels. Reported: metrics.summary (PCK normalised by the
longer side of the hand's keypoint box, AUC over thresholds 0..0.5, EPE in pixels), per keypoint,
and for checkpoints per stage, and the anatomy of the gross errors (keypoints further than 0.2 of
the hand box from the truth): how many land on another joint of the same finger, on a neighbouring
finger, on the mirrored finger (thumb<->little, index<->ring) or elsewhere, which says whether a
model confuses fingers or loses the hand; --error-sheet draws the 48 hands with the most such
keypoints, truth and prediction. Localisation errors of a detector are not part of these numbers.

A localiser model (hand-cpm-train --task localizer; the task is read from the checkpoint or the
ONNX metadata) is evaluated on whole frames (hand-cpm-synth --scene frame) the way the runtime
runs it: letterbox, network, decode into source pixels. Reported: precision and recall of the
boxes at IoU 0.5 at the deployed --score-threshold, AP (VOC all-point) and how many hand-free
frames got a false box, and recall by hand size, for hands overlapping another hand and for hands
mostly hidden (fewer than 7 of their 21 keypoints visible): where the misses are; why hands are
missed (scored below the threshold, box off, not found) and recall when boxes are matched at IoU
0.3 / 0.5 / 0.7 (how tight the boxes are); --json ends with {"task": "localizer", "n", "hands",
"precision", "recall", "ap", "recall_by_size", "recall_by_overlap", "recall_by_visibility",
"misses", "recall_by_iou", ...}. --frame-size WxH runs a localiser checkpoint on frames letterboxed
to another size than it was trained on: which input finds which hands. --flip-averaging runs each
frame mirrored too, as the node's localizer_flip_averaging parameter does. --fine-localizer adds
a second pass at a larger input (an export of the same weights at a larger --frame-size, or a
checkpoint with --fine-frame-size) whose boxes under --fine-max-height of the frame are merged in,
as the node's fine_localizer_model parameter does; --wide-factor F a wide pass on the frame shrunk
F times more, whose boxes over a quarter of the frame height are merged in, as the node's
localizer_wide_factor parameter does (1.6 there). --keypoint-check MODEL multiplies each box's
score by the mean keypoint confidence that keypoint model gives its crop, as the node scores the
hand found in a localiser box: the localisation the node does (judge it at the node's
hand_threshold or new_hand_threshold, e.g. --score-threshold 0.25). --plot draws the
precision-recall curve, --error-sheet close-ups of the missed hands and the false boxes.

A checkpoint remembers its training data: evaluating on a training directory is refused, except
when that run held out a group split of it, in which case only that held-out split is evaluated.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from hand_cpm_ros import drawing, metrics
from hand_cpm_ros.backends import BackendError, ModelInfo, create_backend
from hand_cpm_ros.backends.onnxruntime_backend import read_onnx_metadata
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from hand_cpm_ros.localizer import (DEFAULT_FINE_MAX_HEIGHT, DEFAULT_MAX_HANDS, DEFAULT_SCORE_THRESHOLD,
                                    DEFAULT_WIDE_MIN_HEIGHT, MAX_WIDE_FACTOR, WIDE_FACTOR, LocalizerCodec,
                                    check_fine_codec, infer_localizer_maps)
from hand_cpm_ros.pipeline import HandPipeline
from hand_cpm_train import data, engine, plots
from hand_cpm_train.checkpoint import CheckpointError, checkpoint_task, load_checkpoint, load_model
from hand_cpm_train.localizer_data import load_frame_records, split_frames
from hand_cpm_train.localizer_model import parse_frame_size
from hand_cpm_train.train import resolve_device


LOCALIZER_TARGET = (0.95, 0.95)   # recall, precision: the localiser's target, marked on its --plot
ERROR_SHEET_TILES = 48             # close-ups per sheet (localiser: of missed hands, then of false boxes)
ERROR_SHEET_COLUMNS = 8


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-eval', description='Evaluate hand keypoints (PCK, AUC, EPE) or, for a '
        'localiser model, hand boxes (precision, recall, AP at IoU 0.5) on held-out data.')
    parser.add_argument('--model', required=True, help='checkpoint (.pt) or ONNX model (.onnx)')
    parser.add_argument('--data', required=True, nargs='+', help='held-out data directories')
    parser.add_argument('--format', choices=data.FORMATS, help='data format (default: detect)')
    parser.add_argument('--json', action='store_true', help='end with one line of JSON results')
    parser.add_argument('--plot', help='write the PCK curve (keypoints) or the precision-recall curve '
                        '(localizer) to this PNG file')
    parser.add_argument('--error-sheet', metavar='IMAGE',
                        help=f'write close-ups of the {ERROR_SHEET_TILES} hands with the most keypoints '
                             f'off by more than 0.2 of the hand box (keypoints), or of the first '
                             f'{ERROR_SHEET_TILES} hands missed and false boxes at --score-threshold '
                             f'(localizer), to this .png or .jpg file')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --plot / --error-sheet file')
    parser.add_argument('--use-hidden-keypoints', action='store_true', default=None,
                        help='crop by all in-image keypoints, hidden ones too (renders); default: '
                             'as the checkpoint was trained')
    parser.add_argument('--per-stage', action='store_true', help='metrics of every stage (checkpoints)')
    parser.add_argument('--flip-averaging', action='store_true',
                        help='also run every crop (keypoints) or frame (localizer) mirrored and '
                             'average the two answers, as the node\'s flip_averaging and '
                             'localizer_flip_averaging parameters do')
    parser.add_argument('--score-threshold', type=float, default=DEFAULT_SCORE_THRESHOLD,
                        help='localizer: the score threshold for precision / recall (default %(default)s, the '
                             'localiser\'s own operating point; the node crops boxes from 0.2)')
    parser.add_argument('--max-hands', type=int, default=DEFAULT_MAX_HANDS,
                        help='localizer: at most this many boxes per frame, as the node')
    parser.add_argument('--frame-size', metavar='WxH',
                        help='localizer checkpoint (.pt): letterbox frames to this network input '
                             'instead of the trained one, e.g. 384x288 (multiples of 32)')
    parser.add_argument('--fine-localizer', metavar='MODEL',
                        help='localizer: a second pass at a larger input (.onnx exported with a larger '
                             '--frame-size, e.g. models/hand_localizer_fine.onnx, or a .pt with '
                             '--fine-frame-size) whose small boxes are merged in')
    parser.add_argument('--fine-frame-size', metavar='WxH',
                        help='--fine-localizer checkpoint (.pt): its network input, e.g. 448x352')
    parser.add_argument('--fine-max-height', type=float, default=DEFAULT_FINE_MAX_HEIGHT,
                        help='--fine-localizer: keep its boxes shorter than this share of the frame '
                             'height (default %(default)s)')
    parser.add_argument('--wide-factor', type=float, default=1.0, metavar='F',
                        help='localizer: also run it on the frame shrunk F times more (1: not; the '
                             'node uses %s) and merge in its boxes over %s of the frame height'
                             % (WIDE_FACTOR, DEFAULT_WIDE_MIN_HEIGHT))
    parser.add_argument('--keypoint-check', metavar='MODEL',
                        help='localizer: multiply each box\'s score by the mean keypoint confidence '
                             'of its crop under this keypoint model (.onnx / .pt, e.g. '
                             'models/hand_cpm.onnx), as the node scores a hand')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--workers', type=int, default=2, help='data loader processes')
    parser.add_argument('--device', default='auto', help="checkpoints: 'auto', 'cpu', 'cuda'")
    parser.add_argument('--threads', type=int, help='ONNX Runtime CPU threads (default: all)')
    parser.add_argument('--no-progress', dest='progress', action='store_false')
    return parser


def _related(a: Path, b: Path) -> bool:
    """True when one directory is the other or lies inside it."""
    return a == b or a in b.parents or b in a.parents


def held_out_records(roots: list[str], data_format: str | None, train_config: dict | None,
                     load=None, split=data.split_by_group) -> tuple[list, list[str]]:
    """(records to evaluate, notes). Refuses directories the model was trained on; of a training
    directory split by group, keeps only the held-out part. `load(root)` reads a directory
    (default: keypoint records of `data_format`), `split` is the trainer's hold-out split."""
    load = load or (lambda root: data.load_records(root, data_format))
    notes, records = [], []
    train_dirs = [Path(p).resolve() for p in (train_config or {}).get('data') or []]
    for root in roots:
        found = load(root)
        trained_on = [d for d in train_dirs if _related(Path(root).resolve(), d)]
        if trained_on and train_config.get('val_data'):
            raise ValueError(f'{root} was used for training (with --data {trained_on[0]}); '
                             f'evaluate on a held-out directory')
        if trained_on:
            _, found = split(found, train_config['val_fraction'])
            if not found:
                raise ValueError(f'{root} was used for training and its held-out split is empty; '
                                 f'evaluate on a held-out directory')
            notes.append(f'{root} was a training directory: evaluating only its held-out group '
                         f'split ({len(found)} samples, val_fraction '
                         f'{train_config["val_fraction"]})')
        records += found
    if train_config is None:
        notes.append('an ONNX model carries no training config: make sure --data was held out')
    return records, notes


def load_predictor(path: Path, device_name: str, all_stages: bool, threads: int | None,
                   flip_averaging: bool = False):
    """(predict(images) -> list of stage maps, codec, ModelInfo, train_config or None)."""
    if path.suffix == '.pt':
        model, model_config, codec_dict = load_model(path, resolve_device(device_name))
        train_config = load_checkpoint(path).get('train_config')
        codec = HeatmapCodec.from_dict(codec_dict)
        predict = engine.torch_predictor(model, next(model.parameters()).device, all_stages,
                                         flip_averaging)
        return predict, codec, data.model_info_for(model_config, codec), train_config or {}
    if path.suffix == '.onnx':
        if all_stages:
            raise ValueError('--per-stage needs a checkpoint (.pt): an ONNX model outputs only '
                             'the last stage')
        from hand_cpm_ros.backends import create_backend
        backend = create_backend('onnxruntime', model_path=str(path), threads=threads,
                                 logger=lambda _message: None)

        def predict(images: torch.Tensor) -> list[np.ndarray]:
            return [backend.infer(images.numpy(), flip_averaging)]

        return predict, HeatmapCodec.from_dict(backend.info.codec), backend.info, None
    raise ValueError(f'--model must be a .pt checkpoint or an .onnx model, got {path}')


def model_task(path: Path) -> str:
    """'keypoints' or 'localizer', from a checkpoint or an ONNX model's metadata."""
    if path.suffix == '.pt':
        return checkpoint_task(load_checkpoint(path))
    if path.suffix == '.onnx':
        return ModelInfo.from_metadata(read_onnx_metadata(path)).task
    raise ValueError(f'--model must be a .pt checkpoint or an .onnx model, got {path}')


def load_localizer_predictor(path: Path, device_name: str, threads: int | None,
                             frame_size: tuple[int, int] | None = None):
    """(predict(frames) -> maps, LocalizerCodec, ModelInfo, train_config or None) of a localiser,
    on frames letterboxed to `frame_size` (width, height) if given (checkpoints only)."""
    if path.suffix == '.pt':
        model, model_config, codec_dict = load_model(path, resolve_device(device_name), frame_size)
        codec = LocalizerCodec.from_dict(codec_dict)
        predict = engine.torch_localizer_predictor(model, next(model.parameters()).device)
        return (predict, codec, data.model_info_for(model_config, codec),
                load_checkpoint(path).get('train_config') or {})
    if frame_size is not None:
        raise ValueError('--frame-size needs a checkpoint (.pt): an ONNX model\'s input size is '
                         'fixed when it is exported (hand-cpm-export --frame-size)')
    from hand_cpm_ros.backends import create_backend
    backend = create_backend('onnxruntime', model_path=str(path), threads=threads,
                             logger=lambda _message: None)
    return backend.infer, LocalizerCodec.from_dict(backend.info.codec), backend.info, None


def keypoint_checker(path: Path, threads: int | None) -> HandPipeline:
    """The node's HandPipeline around the keypoint model at `path` (its box_confidences check the
    localiser's boxes); ValueError when it is missing or a localiser."""
    if not path.is_file():
        raise ValueError(f'--keypoint-check {path} does not exist')
    if model_task(path) != 'keypoints':
        raise ValueError(f'--keypoint-check {path} is a hand localiser; give a keypoint model '
                         f'(models/hand_cpm.onnx)')
    return HandPipeline(create_backend('auto', model_path=str(path), threads=threads,
                                       logger=lambda text: None))


def evaluate_localizer_model(args: argparse.Namespace, model_path: Path) -> int:
    """hand-cpm-eval for a localiser: box precision / recall / AP on held-out frames."""
    try:
        if args.per_stage:
            raise ValueError('--per-stage is for keypoint models; this is a hand localiser')
        if not 0.0 < args.score_threshold < 1.0 or args.max_hands < 1:
            raise ValueError('--score-threshold must be in (0, 1) and --max-hands >= 1')
        if not 0.0 < args.fine_max_height <= 1.0:
            raise ValueError(f'--fine-max-height must be in (0, 1], got {args.fine_max_height}')
        if not 1.0 <= args.wide_factor <= MAX_WIDE_FACTOR:
            raise ValueError(f'--wide-factor must be in [1, {MAX_WIDE_FACTOR:g}] (1: no wide pass), '
                             f'got {args.wide_factor}')
        if args.fine_frame_size and not args.fine_localizer:
            raise ValueError('--fine-frame-size is the input of --fine-localizer; give that too')
        frame_size = parse_frame_size(args.frame_size) if args.frame_size else None
        predict, codec, model_info, train_config = load_localizer_predictor(
            model_path, args.device, args.threads, frame_size)
        fine = None
        if args.fine_localizer:
            fine_path = Path(args.fine_localizer)
            if not fine_path.is_file():
                raise ValueError(f'--fine-localizer {fine_path} does not exist')
            if model_task(fine_path) != 'localizer':
                raise ValueError(f'--fine-localizer {fine_path} is a keypoint model, not a localiser')
            fine = engine.LocalizerPass(*load_localizer_predictor(
                fine_path, args.device, args.threads,
                parse_frame_size(args.fine_frame_size) if args.fine_frame_size else None)[:3])
            check_fine_codec(codec, fine.codec, '--model')
        checker = None if args.keypoint_check is None else keypoint_checker(Path(args.keypoint_check),
                                                                            args.threads)
        records, notes = held_out_records(args.data, None, train_config, load_frame_records,
                                          split_frames)
    except (ValueError, CheckpointError, BackendError) as error:
        print(f'hand-cpm-eval: error: {error}', file=sys.stderr)
        return 2
    for note in notes:
        print(f'note: {note}', file=sys.stderr)
    if args.flip_averaging:
        predict = functools.partial(infer_localizer_maps, predict, flip_averaging=True)
        if fine is not None:
            fine.predict = functools.partial(infer_localizer_maps, fine.predict, flip_averaging=True)
    found = engine.detect_frames(predict, records, codec, model_info, args.max_hands,
                                 batch_size=args.batch_size, progress=args.progress, fine=fine,
                                 fine_max_height=args.fine_max_height, wide_factor=args.wide_factor,
                                 box_confidences=None if checker is None else checker.box_confidences)
    result = engine.localizer_summary(found, records, args.score_threshold)
    result = {'task': 'localizer', **result, 'max_hands': args.max_hands,
              'input_width': codec.input_width, 'input_height': codec.input_height,
              'flip_averaging': args.flip_averaging,
              'model': str(model_path), 'data': args.data}
    fine_note = ''
    if fine is not None:
        result.update(fine_localizer=args.fine_localizer, fine_input_width=fine.codec.input_width,
                      fine_input_height=fine.codec.input_height, fine_max_height=args.fine_max_height)
        fine_note = (f', and {fine.codec.input_width}x{fine.codec.input_height} for boxes under '
                     f'{args.fine_max_height} of the frame height')
    if args.wide_factor > 1.0:
        result['wide_factor'] = args.wide_factor
        fine_note += (f', and the frame shrunk {args.wide_factor:g}x for boxes over '
                      f'{DEFAULT_WIDE_MIN_HEIGHT} of its height')
    if checker is not None:
        result['keypoint_check'] = args.keypoint_check
        fine_note += f'; scores times the mean keypoint confidence of {args.keypoint_check}'
    print(f'{result["n"]} frames with {result["hands"]} hands from {", ".join(args.data)}; '
          f'boxes matched at IoU {result["iou"]}; network input '
          f'{codec.input_width}x{codec.input_height}{fine_note}')
    print(f'| score threshold | precision | recall | AP | hand-free frames with a box |\n'
          f'|---:|---:|---:|---:|---:|\n'
          f'| {args.score_threshold:.2f} | {result["precision"]:.4f} | {result["recall"]:.4f} | '
          f'{result["ap"]:.4f} | {result["false_alarm_frames"]} of {result["empty_frames"]} |')
    print('\n| score threshold | precision | recall |\n|---:|---:|---:|')
    for row in result['sweep']:
        print(f'| {row["score_threshold"]:.2f} | {row["precision"]:.4f} | {row["recall"]:.4f} |')
    print(f'\n| hands (at score threshold {args.score_threshold:.2f}) | count | recall |\n|---|---:|---:|')
    for group in (result['recall_by_size'], result['recall_by_overlap'], result['recall_by_visibility']):
        for label, values in group.items():
            print(f'| {label} | {values["hands"]} | {values["recall"]:.4f} |')
    print(f'\n| ground-truth hands at score threshold {args.score_threshold:.2f} | count |\n|---|---:|')
    for reason, count in result['misses'].items():
        print(f'| {reason} | {count} |')
    print('\n| boxes matched at IoU | recall |\n|---:|---:|')
    for iou, recall in result['recall_by_iou'].items():
        print(f'| {iou} | {recall:.4f} |')
    if args.plot:
        curve = metrics.precision_recall_curve(found.boxes, found.scores, [r.boxes for r in records],
                                               result['iou'])
        plots.plot_precision_recall({f'{model_path.name} (AP {result["ap"]:.3f})': curve},
                                    args.score_threshold, args.plot, target=LOCALIZER_TARGET)
        print(f'precision-recall curve written to {args.plot}')
    if args.error_sheet:
        sheet, missed, false_boxes = localizer_error_sheet(found, records, args.score_threshold, result['iou'])
        if sheet is None:
            print(f'no error sheet: no hand missed and no false box at {args.score_threshold:.2f}')
        else:
            plots.save_image(args.error_sheet, sheet)
            print(f'error sheet written to {args.error_sheet}: {min(missed, ERROR_SHEET_TILES)} of '
                  f'{missed} missed hands, then {min(false_boxes, ERROR_SHEET_TILES)} of {false_boxes} '
                  f'false boxes (green: truth; red: boxes at or above {args.score_threshold:.2f}, '
                  f'orange: below)')
    if args.json:
        print(json.dumps(result))
    return 0


def localizer_error_sheet(found: engine.FrameDetections, records: list, score_threshold: float,
                          iou_threshold: float) -> tuple[np.ndarray | None, int, int]:
    """(sheet, missed hands, false boxes): close-ups of the first ERROR_SHEET_TILES hands the
    localiser misses at `score_threshold` (labelled with why and how many keypoints are visible),
    then of as many false boxes (labelled with their score), in frame order; sheet None without
    errors."""
    missed, false_boxes = [], []   # (frame index, box, label)
    for index, (record, boxes, scores) in enumerate(zip(records, found.boxes, found.scores)):
        reasons, false_indices = metrics.frame_outcomes(boxes, scores, record.boxes, iou_threshold,
                                                        score_threshold)
        for box, reason, seen in zip(record.boxes, reasons, record.visible_keypoints):
            if reason != 'found':
                label = reason if seen < 0 else f'{reason}, {seen}/{NUM_KEYPOINTS} seen'
                missed.append((index, box, label))
        false_boxes += [(index, boxes[i], f'false box {scores[i]:.2f}') for i in false_indices]
    chosen = missed[:ERROR_SHEET_TILES] + false_boxes[:ERROR_SHEET_TILES]
    if not chosen:
        return None, 0, 0
    tiles, image, image_index = [], None, -1
    for index, box, _ in chosen:
        if index != image_index:   # tiles come in frame order: read each frame once per list
            image, image_index = data.read_image(records[index].image_path), index
        tiles.append(drawing.detection_close_up(image, box, records[index].boxes, found.boxes[index],
                                                found.scores[index], score_threshold))
    labels = [label for _, _, label in chosen]
    return drawing.contact_sheet(tiles, ERROR_SHEET_COLUMNS, tiles[0].shape[0], labels), len(missed), len(false_boxes)


def keypoint_error_sheet(predictions: engine.Predictions, records: list) -> tuple[np.ndarray | None, int]:
    """(sheet, hands with a gross error): close-ups of the ERROR_SHEET_TILES hands with the most
    visible keypoints off by more than 0.2 of their hand box in the last stage (then by mean
    error), each labelled with that count and its mean error; sheet None without such hands."""
    truth, visible, predicted = predictions.ground_truth, predictions.visible, predictions.keypoints[-1]
    box = metrics.hand_box_size(truth, visible)
    errors = metrics.keypoint_errors(predicted, truth)
    off = (visible & (errors > 0.2 * box[:, None]) & (box[:, None] > 0)).sum(axis=1)
    mean_error = np.where(visible, errors, 0.0).sum(axis=1) / np.maximum(visible.sum(axis=1), 1)
    worst = [int(i) for i in np.lexsort((-mean_error, -off)) if off[i] > 0][:ERROR_SHEET_TILES]
    if not worst:
        return None, 0
    tiles = [drawing.keypoint_close_up(data.read_image(records[i].image_path), truth[i], visible[i],
                                       predicted[i]) for i in worst]
    labels = [f'{off[i]} of {visible[i].sum()} off, {mean_error[i]:.0f} px' for i in worst]
    return drawing.contact_sheet(tiles, ERROR_SHEET_COLUMNS, tiles[0].shape[0], labels), int((off > 0).sum())


def report(predictions: engine.Predictions, stage_names: list[str]) -> dict:
    """Results dict: the last stage's summary at top level, plus per_keypoint and per_stage."""
    result = predictions.summary()
    per_keypoint = predictions.per_keypoint()
    result['per_keypoint'] = {
        name: {'pck@0.2': float(pck), 'epe_px': float(epe)}
        for name, pck, epe in zip(KEYPOINT_NAMES, per_keypoint['pck'], per_keypoint['epe_px'])}
    result['gross_errors'] = predictions.gross_errors()
    if len(stage_names) > 1:
        result['per_stage'] = {name: predictions.summary(index)
                               for index, name in enumerate(stage_names)}
    return result


def print_tables(result: dict) -> None:
    columns = ('n', 'pck@0.05', 'pck@0.1', 'pck@0.2', 'auc', 'epe_px')
    rows = result.get('per_stage', {'last stage': result})
    print('| model output | ' + ' | '.join(columns) + ' |')
    print('|---|' + '---:|' * len(columns))
    for name, summary in rows.items():
        print(f'| {name} | {summary["n"]} | ' + ' | '.join(f'{summary[c]:.4f}' for c in columns[1:-1])
              + f' | {summary["epe_px"]:.2f} |')
    print('\n| keypoint | PCK@0.2 | EPE px |\n|---|---:|---:|')
    for name, values in result['per_keypoint'].items():
        print(f'| {name} | {values["pck@0.2"]:.4f} | {values["epe_px"]:.2f} |')
    gross = result['gross_errors']
    print(f'\n{gross["gross"]} of {gross["visible"]} visible keypoints are further than 0.2 of the '
          f'hand box from the truth; where they landed:\n\n| landed on | keypoints | share |\n|---|---:|---:|')
    for kind, count in gross['kinds'].items():
        print(f'| {kind} | {count} | {count / max(gross["gross"], 1):.1%} |')


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        model_path = Path(args.model)
        if not model_path.is_file():
            raise ValueError(f'--model {model_path} does not exist')
        if args.batch_size < 1 or args.workers < 0:
            raise ValueError('--batch-size must be >= 1 and --workers >= 0')
        for flag, path, suffixes in (('--plot', args.plot, ('.png',)),
                                     ('--error-sheet', args.error_sheet, ('.png', '.jpg', '.jpeg'))):
            if path and Path(path).suffix.lower() not in suffixes:
                raise ValueError(f'{flag} {path}: the file name must end in {" / ".join(suffixes)}')
            if path and not Path(path).parent.is_dir():
                raise ValueError(f'{flag} {path}: the folder {Path(path).parent} does not exist')
            if path and Path(path).exists() and not args.overwrite:
                raise ValueError(f'{flag} {path} exists; pass --overwrite to replace it')
        if model_task(model_path) == 'localizer':
            return evaluate_localizer_model(args, model_path)
        if args.frame_size or args.fine_localizer or args.keypoint_check:
            raise ValueError('--frame-size, --fine-localizer and --keypoint-check are for localisers; '
                             'a keypoint model sees crops of its trained size')
        predict, codec, model_info, train_config = load_predictor(
            model_path, args.device, args.per_stage, args.threads, args.flip_averaging)
        records, notes = held_out_records(args.data, args.format, train_config)
    except (ValueError, CheckpointError, BackendError) as error:
        print(f'hand-cpm-eval: error: {error}', file=sys.stderr)
        return 2
    for note in notes:
        print(f'note: {note}', file=sys.stderr)
    hidden = args.use_hidden_keypoints
    if hidden is None:
        hidden = bool((train_config or {}).get('use_hidden_keypoints'))
    dataset = data.HandCropDataset(records, codec, model_info, use_hidden_keypoints=hidden)
    loader, _ = data.make_loader(dataset, args.batch_size, False, args.workers, seed=0)
    predictions = engine.evaluate(predict, loader, codec, progress=args.progress)
    stage_names = [f'stage {k}' for k in range(1, len(predictions.keypoints) + 1)]
    result = report(predictions, stage_names)
    result.update({'model': str(model_path), 'data': args.data,
                   'flip_averaging': args.flip_averaging,
                   'crop': 'ground-truth keypoint box, square, margin '
                           f'{data.CROP_MARGIN} (no detector in the loop)'})
    print(f'{len(records)} hands from {", ".join(args.data)}; crops from the ground-truth boxes')
    print_tables(result)
    if args.plot:
        curves = {name: predictions.pck_curve(index) for index, name in enumerate(stage_names)}
        if len(curves) == 1:
            curves = {model_path.name: curves[stage_names[0]]}
        plots.plot_pck(engine.PCK_THRESHOLDS, curves, args.plot)
        print(f'PCK curve written to {args.plot}')
    if args.error_sheet:
        sheet, wrong = keypoint_error_sheet(predictions, records)
        if sheet is None:
            print('no error sheet: no keypoint is off by more than 0.2 of its hand box')
        else:
            plots.save_image(args.error_sheet, sheet)
            print(f'error sheet written to {args.error_sheet}: the {min(wrong, ERROR_SHEET_TILES)} '
                  f'worst of the {wrong} hands with a keypoint off by more than 0.2 of the hand box '
                  f'(white: truth; finger colours: the prediction)')
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
