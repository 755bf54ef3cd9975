"""One training epoch and one evaluation pass, shared by hand-cpm-train and hand-cpm-eval.

`train_one_epoch` optimises a task's batch loss (`cpm_batch_loss`: every CPM stage, stage 1
included; `localizer_batch_loss`: the localiser's focal / L1 / BCE terms) and stops on a
non-finite loss before the optimizer touches the weights. `evaluate` runs any predictor (a torch
model, an ONNX Runtime session) over a crop loader, decodes with the one codec into SOURCE-image
pixels and keeps everything the metrics need; `evaluate_localizer` does the same for whole frames
and hand boxes (precision / recall at IoU 0.5 and AP).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hand_cpm_ros import metrics
from hand_cpm_ros.backends import ModelInfo, average_mirrored, normalize_crops, with_mirrored
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.geometry import box_iou_matrix
from hand_cpm_ros.keypoints import NUM_KEYPOINTS
from hand_cpm_ros.localizer import (CANDIDATES_PER_HAND, DEFAULT_FINE_MAX_HEIGHT, Detection, LocalizerCodec,
                                    merge_scales, prepare_frame)
from hand_cpm_train.data import read_image
from hand_cpm_train.localizer_data import MIN_SEEN_KEYPOINTS, FrameRecord
from hand_cpm_train.localizer_model import localizer_loss
from hand_cpm_train.losses import cpm_loss

PCK_THRESHOLDS = np.linspace(0.0, 0.5, 51)   # the AUC range of metrics.summary


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the step's update was not applied."""


BatchLoss = Callable[[nn.Module, dict, torch.device, bool], dict[str, torch.Tensor]]
# Models train and predict in channels-last (NHWC) layout: on this CPU a training step of
# cpm-lite-s took 1.1-1.2 s instead of 1.6-1.9, of loc-lite 0.7-0.9 s instead of 1.0-1.2; CUDA
# convolutions with AMP prefer it too. Weights keep their values, checkpoints load either way.
MEMORY_FORMAT = torch.channels_last


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A (N, 3, H, W) batch on `device` in the models' memory format."""
    return images.to(device, non_blocking=True, memory_format=MEMORY_FORMAT)


def cpm_batch_loss(model: nn.Module, batch: dict, device: torch.device, amp: bool,
                   foreground_weight: float = 0.0, false_peak_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """cpm_loss of a crop batch: every stage's maps against the targets ('stage1'.., 'total')."""
    images = to_model_input(batch['image'], device)
    targets = batch['targets'].to(device, non_blocking=True)
    weights = batch['weights'].to(device, non_blocking=True)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        stage_maps = model(images)
    return cpm_loss([maps.float() for maps in stage_maps], targets, weights, foreground_weight,
                    false_peak_weight)


def localizer_batch_loss(model: nn.Module, batch: dict, device: torch.device, amp: bool,
                         box_iou_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """localizer_loss of a frame batch ('heat', 'size', 'offset', 'side', 'total'; 'box' with a
    box_iou_weight)."""
    images = to_model_input(batch['image'], device)
    targets = {key: value.to(device, non_blocking=True) for key, value in batch.items()
               if key != 'image'}
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        outputs = model(images)
    return localizer_loss(outputs.float(), targets, box_iou_weight)


def train_one_epoch(model: nn.Module, loader: Iterable[dict], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                    device: torch.device, *, epoch: int, step: int, max_steps: int | None = None,
                    amp: bool = False, on_step: Callable[[int, dict[str, float], float], None] | None = None,
                    progress: bool = True, batch_loss: BatchLoss = cpm_batch_loss) -> int:
    """Train over `loader` with `batch_loss` (default: a CPM, whose train-mode forward returns
    every stage's maps) and return the new global step. Stops early at `max_steps`.
    `on_step(step, losses, lr)` runs after each update (logging, periodic checkpoints). Raises
    NonFiniteLossError on a NaN/inf loss."""
    model.train()
    running: dict[str, float] = {}
    bar = tqdm(loader, desc=f'epoch {epoch}', disable=not progress, dynamic_ncols=True, leave=False)
    for count, batch in enumerate(bar, start=1):
        if max_steps is not None and step >= max_steps:
            break
        losses = batch_loss(model, batch, device, amp)
        values = {name: float(value.detach()) for name, value in losses.items()}
        if not np.isfinite(values['total']):
            raise NonFiniteLossError(
                f'non-finite loss at step {step + 1} (epoch {epoch}): '
                + ', '.join(f'{name}={value:.4g}' for name, value in values.items())
                + '; lower --lr, check the data, or resume from the last checkpoint')
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses['total']).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        for name, value in values.items():
            running[name] = running.get(name, 0.0) + value
        bar.set_postfix(loss=f'{running["total"] / count:.4g}', step=step)
        if on_step is not None:
            on_step(step, values, optimizer.param_groups[0]['lr'])
    bar.close()
    return step


@dataclass
class Predictions:
    """Decoded predictions of every evaluated stage next to the ground truth, in source pixels."""
    keypoints: np.ndarray      # (stages, N, 21, 2)
    scores: np.ndarray         # (stages, N, 21)
    ground_truth: np.ndarray   # (N, 21, 2)
    visible: np.ndarray        # (N, 21) bool

    def summary(self, stage: int = -1) -> dict:
        """metrics.summary of one stage (the last by default)."""
        return metrics.summary(self.keypoints[stage], self.ground_truth, self.visible)

    def pck_curve(self, stage: int = -1, thresholds: np.ndarray = PCK_THRESHOLDS) -> np.ndarray:
        normalizer = metrics.hand_box_size(self.ground_truth, self.visible)
        return np.asarray(metrics.pck_curve(self.keypoints[stage], self.ground_truth, self.visible,
                                            normalizer, thresholds))

    def gross_errors(self, stage: int = -1, threshold: float = 0.2) -> dict:
        """metrics.gross_errors of one stage: where the keypoints off by more than `threshold`
        hand boxes landed (hands with fewer than two visible keypoints left out, as in summary)."""
        normalizer = metrics.hand_box_size(self.ground_truth, self.visible)
        keep = normalizer > 0
        return metrics.gross_errors(self.keypoints[stage][keep], self.ground_truth[keep],
                                    self.visible[keep], normalizer[keep], threshold)

    def per_keypoint(self, stage: int = -1, threshold: float = 0.2) -> dict[str, np.ndarray]:
        """{'pck': (21,) PCK at `threshold`, 'epe_px': (21,) mean error of visible points}."""
        normalizer = metrics.hand_box_size(self.ground_truth, self.visible)
        _, pck = metrics.pck(self.keypoints[stage], self.ground_truth, self.visible, normalizer,
                             threshold)
        errors = metrics.keypoint_errors(self.keypoints[stage], self.ground_truth)
        counts = self.visible.sum(axis=0)
        epe = np.where(self.visible, errors, 0.0).sum(axis=0) / np.maximum(counts, 1)
        return {'pck': np.asarray(pck), 'epe_px': np.where(counts > 0, epe, np.nan)}


def torch_predictor(model: nn.Module, device: torch.device, all_stages: bool = True,
                    flip_averaging: bool = False) -> Callable[[torch.Tensor], list[np.ndarray]]:
    """A predictor for `evaluate`: normalised images -> list of (N, 22, S, S) maps per stage
    (only the last with all_stages=False); flip_averaging as the runtime's backends do it
    (hand_cpm_ros.backends.with_mirrored). Puts the model in eval mode."""
    model.eval()

    @torch.no_grad()
    def predict(images: torch.Tensor) -> list[np.ndarray]:
        if flip_averaging:
            images = torch.from_numpy(with_mirrored(images.numpy()))
        stages = model.forward_stages(to_model_input(images, device))
        maps = [maps.float().cpu().numpy() for maps in (stages if all_stages else stages[-1:])]
        return [average_mirrored(m, None)[0] for m in maps] if flip_averaging else maps

    return predict


def evaluate(predict: Callable[[torch.Tensor], list[np.ndarray]], loader: Iterable[dict],
             codec: HeatmapCodec, progress: bool = False) -> Predictions:
    """Run `predict` over every batch of a (non-augmented) crop loader and decode each stage's
    maps through the crop->source affine into source-image pixels."""
    stage_keypoints: list[list[np.ndarray]] = []
    stage_scores: list[list[np.ndarray]] = []
    truth, visible = [], []
    for batch in tqdm(loader, desc='evaluate', disable=not progress, dynamic_ncols=True, leave=False):
        affines = list(batch['crop_to_source'].numpy())
        for index, maps in enumerate(predict(batch['image'])):
            if index == len(stage_keypoints):
                stage_keypoints.append([])
                stage_scores.append([])
            keypoints, scores = codec.decode_batch(maps, affines)
            stage_keypoints[index].append(keypoints)
            stage_scores[index].append(scores)
        truth.append(batch['source_keypoints'].numpy())
        visible.append(batch['visible'].numpy())
    if not truth:
        raise ValueError('evaluate got an empty data loader')
    return Predictions(keypoints=np.stack([np.concatenate(k) for k in stage_keypoints]),
                       scores=np.stack([np.concatenate(s) for s in stage_scores]),
                       ground_truth=np.concatenate(truth), visible=np.concatenate(visible))


def torch_localizer_predictor(model: nn.Module, device: torch.device
                              ) -> Callable[[np.ndarray], np.ndarray]:
    """A predictor for `evaluate_localizer`: normalised frames (N, 3, H, W) -> (N, 6, h, w).
    Puts the model in eval mode."""
    model.eval()

    @torch.no_grad()
    def predict(frames: np.ndarray) -> np.ndarray:
        return model(to_model_input(torch.from_numpy(frames), device)).float().cpu().numpy()

    return predict


SWEEP_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
# Hand size classes for the localiser's recall breakdown: (upper bound of the box height as a
# fraction of the frame height, label). The localiser is made for hands of about 5-80%.
SIZE_CLASSES = ((0.1, 'small (< 10% of frame height)'), (0.3, 'medium (10-30%)'),
                (float('inf'), 'large (>= 30%)'))
OVERLAP_CLASSES = ('overlapping another hand', 'apart from other hands')
VISIBILITY_CLASSES = (f'mostly hidden (< {MIN_SEEN_KEYPOINTS} of {NUM_KEYPOINTS} keypoints visible)',
                      f'in sight (>= {MIN_SEEN_KEYPOINTS} keypoints visible)',
                      'visibility unknown (no keypoints in the annotation)')
BOX_IOUS = (0.3, 0.5, 0.7)   # matching IoUs of the localiser's recall_by_iou


def size_class(box: np.ndarray, frame_height: int) -> str:
    """The SIZE_CLASSES label of a box (x0, y0, x1, y1) in a frame `frame_height` pixels high."""
    fraction = (box[3] - box[1]) / frame_height
    return next(label for bound, label in SIZE_CLASSES if fraction < bound)


def overlap_classes(boxes: np.ndarray) -> list[str]:
    """Per box, OVERLAP_CLASSES[0] when it overlaps another box of the frame, else [1]."""
    overlaps = box_iou_matrix(boxes, boxes) > 0
    np.fill_diagonal(overlaps, False)
    return [OVERLAP_CLASSES[0] if row.any() else OVERLAP_CLASSES[1] for row in overlaps]


def visibility_class(visible_keypoints: int) -> str:
    """The VISIBILITY_CLASSES label of a hand with this many visible keypoints (-1: unknown)."""
    if visible_keypoints < 0:
        return VISIBILITY_CLASSES[2]
    return VISIBILITY_CLASSES[0] if visible_keypoints < MIN_SEEN_KEYPOINTS else VISIBILITY_CLASSES[1]


@dataclass
class FrameDetections:
    """A localiser's hand boxes on frames, the way the runtime finds them: per frame, boxes (P, 4)
    in source pixels, their scores (P,), and the frame's height (for the size classes)."""
    boxes: list[np.ndarray]
    scores: list[np.ndarray]
    frame_heights: list[int]


@dataclass
class LocalizerPass:
    """A localiser at one input size: predict(normalised frames) -> maps, its codec and ModelInfo."""
    predict: Callable[[np.ndarray], np.ndarray]
    codec: LocalizerCodec
    model_info: ModelInfo

    def decode_frames(self, images: Sequence[np.ndarray], max_hands: int,
                      zoom_out: float = 1.0) -> list[list[Detection]]:
        """Each BGR frame letterboxed (shrunk `zoom_out` times more for a wide pass), run, decoded
        into its pixels: boxes scoring at least 0.05 (the low end of the precision-recall curve),
        at most `max_hands` per frame."""
        prepared = [prepare_frame(image, self.codec, zoom_out) for image in images]
        outputs = self.predict(normalize_crops(np.stack([frame for frame, _ in prepared]), self.model_info))
        return [self.codec.decode(maps, input_to_source, (image.shape[1], image.shape[0]),
                                  score_threshold=0.05, max_hands=max_hands)
                for image, (_, input_to_source), maps in zip(images, prepared, outputs)]


def detect_frames(predict: Callable[[np.ndarray], np.ndarray], records: Sequence[FrameRecord],
                  codec: LocalizerCodec, model_info: ModelInfo, max_hands: int = 2, batch_size: int = 8,
                  progress: bool = False, fine: LocalizerPass | None = None,
                  fine_max_height: float = DEFAULT_FINE_MAX_HEIGHT, wide_factor: float = 1.0,
                  box_confidences: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                  ) -> FrameDetections:
    """Every frame letterboxed, run through `predict`, decoded into source pixels: at most
    `max_hands` boxes scoring at least 0.05 per frame (the low end of the precision-recall curve).
    With `fine`, a second pass at a larger input, and with `wide_factor` > 1 a wide pass on the
    frame shrunk that much more, merged as the runtime merges them
    (hand_cpm_ros.localizer.merge_scales). With `box_confidences` (HandPipeline.box_confidences:
    the keypoint network's mean confidence on each box's crop), each score is multiplied by it, as
    the node scores the hand found in a box."""
    if not records:
        raise ValueError('the localiser evaluation got no frames')
    coarse = LocalizerPass(predict, codec, model_info)
    merged = fine is not None or wide_factor > 1.0
    candidates = CANDIDATES_PER_HAND * max_hands if merged else max_hands
    found = FrameDetections([], [], [])
    for start in tqdm(range(0, len(records), batch_size), desc='evaluate', disable=not progress,
                      dynamic_ncols=True, leave=False):
        images = [read_image(record.image_path) for record in records[start:start + batch_size]]
        per_frame = coarse.decode_frames(images, candidates)
        if merged:
            no_hands = [[] for _ in images]
            fine_frames = no_hands if fine is None else fine.decode_frames(images, candidates)
            wide_frames = no_hands if wide_factor == 1.0 else coarse.decode_frames(images, candidates, wide_factor)
            per_frame = [merge_scales(hands, fine_hands, image.shape[0], fine_max_height, max_hands=max_hands,
                                      wide=wide_hands)
                         for image, hands, fine_hands, wide_hands in zip(images, per_frame, fine_frames,
                                                                         wide_frames)]
        for image, hands in zip(images, per_frame):
            boxes = np.array([d.box for d in hands], np.float64).reshape(-1, 4)
            scores = np.array([d.score for d in hands], np.float64)
            if box_confidences is not None and len(boxes):
                scores = scores * box_confidences(image, boxes)
            found.boxes.append(boxes)
            found.scores.append(scores)
            found.frame_heights.append(image.shape[0])
    return found


def localizer_summary(found: FrameDetections, records: Sequence[FrameRecord], score_threshold: float,
                      iou_threshold: float = 0.5) -> dict:
    """Box metrics of `found` on `records` (the same frames, in order), matched at `iou_threshold`.

    Returns plain numbers: n (frames), hands (ground-truth boxes), precision and recall at
    `score_threshold`, ap (VOC all-point AP over all of `found`), empty_frames (frames without
    hands) and false_alarm_frames (of those, how many got a box at `score_threshold`),
    score_threshold, iou, and sweep: precision and recall at each of SWEEP_THRESHOLDS, to choose
    an operating point on validation frames; recall_by_size, recall_by_overlap and
    recall_by_visibility: recall at `score_threshold` per SIZE_CLASSES / OVERLAP_CLASSES /
    VISIBILITY_CLASSES label ({'hands', 'recall'}), to see which hands are missed; misses:
    metrics.miss_reasons counts at `score_threshold`, to see why; recall_by_iou: recall at
    `score_threshold` when boxes are matched at each of BOX_IOUS, to see how tight the boxes are.
    """
    if len(records) != len(found.boxes):
        raise ValueError(f'{len(found.boxes)} frames of detections for {len(records)} frames')
    boxes, scores = found.boxes, found.scores
    truth = [record.boxes for record in records]
    sizes = [[size_class(box, height) for box in record.boxes]
             for record, height in zip(records, found.frame_heights)]
    overlaps = [overlap_classes(record.boxes) for record in records]
    visibility = [[visibility_class(count) for count in record.visible_keypoints] for record in records]
    precision, recall = metrics.detection_pr(boxes, scores, truth, iou_threshold, score_threshold)
    empty = [index for index, gt in enumerate(truth) if len(gt) == 0]
    result = {'n': len(records), 'hands': int(sum(len(gt) for gt in truth)),
              'precision': precision, 'recall': recall,
              'ap': metrics.average_precision(boxes, scores, truth, iou_threshold),
              'empty_frames': len(empty),
              'false_alarm_frames': sum(bool(np.any(scores[i] >= score_threshold)) for i in empty),
              'score_threshold': score_threshold, 'iou': iou_threshold,
              'sweep': [{'score_threshold': threshold,
                         **dict(zip(('precision', 'recall'),
                                    metrics.detection_pr(boxes, scores, truth, iou_threshold, threshold)))}
                        for threshold in SWEEP_THRESHOLDS]}
    result['misses'] = metrics.miss_reasons(boxes, scores, truth, iou_threshold, score_threshold)
    result['recall_by_iou'] = {f'{iou:.1f}': metrics.detection_pr(boxes, scores, truth, iou, score_threshold)[1]
                               for iou in BOX_IOUS}
    for key, labels, groups in (('recall_by_size', [label for _, label in SIZE_CLASSES], sizes),
                                ('recall_by_overlap', OVERLAP_CLASSES, overlaps),
                                ('recall_by_visibility', VISIBILITY_CLASSES, visibility)):
        by_label = metrics.recall_by_group(boxes, scores, truth, groups, iou_threshold, score_threshold)
        result[key] = {label: by_label[label] for label in labels if label in by_label}
    return result


def evaluate_localizer(predict: Callable[[np.ndarray], np.ndarray], records: Sequence[FrameRecord],
                       codec: LocalizerCodec, model_info: ModelInfo, score_threshold: float,
                       max_hands: int = 2, iou_threshold: float = 0.5, batch_size: int = 8,
                       progress: bool = False) -> dict:
    """localizer_summary of detect_frames: the trainer's validation."""
    found = detect_frames(predict, records, codec, model_info, max_hands, batch_size, progress)
    return localizer_summary(found, records, score_threshold, iou_threshold)
