"""Keypoint and hand-box metrics (numpy only), shared by the evaluation CLI and the trainer.

Shapes: N samples, K keypoints. pred, gt: (N, K, 2) pixels; visible: (N, K) bool (only visible
ground-truth keypoints count); normalizer: (N,) pixels per sample. Definitions follow mmpose's
`keypoint_pck_accuracy` / `keypoint_auc` / `keypoint_epe`; detection AP is VOC's all-point AP.
"""
from collections.abc import Sequence

import numpy as np

from hand_cpm_ros.geometry import box_iou_matrix
from hand_cpm_ros.keypoints import NUM_KEYPOINTS, finger_of

PCK_THRESHOLDS = (0.05, 0.1, 0.2)


def _keypoint_arrays(pred, gt, visible=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[2] != 2 or pred.shape != gt.shape:
        raise ValueError(f'pred and gt must both have shape (N, K, 2), got {pred.shape} and {gt.shape}')
    mask = np.ones(gt.shape[:2], bool) if visible is None else np.asarray(visible, dtype=bool)
    if mask.shape != gt.shape[:2]:
        raise ValueError(f'visible must have shape {gt.shape[:2]}, got {mask.shape}')
    if not np.all(np.isfinite(gt[mask])):
        raise ValueError('visible ground-truth keypoints contain non-finite coordinates')
    return pred, gt, mask


def keypoint_errors(pred, gt) -> np.ndarray:
    """Euclidean distance in pixels per keypoint: (N, K). A non-finite prediction gives inf."""
    pred, gt, _ = _keypoint_arrays(pred, gt)
    errors = np.linalg.norm(pred - gt, axis=2)
    return np.where(np.isfinite(errors), errors, np.inf)


def hand_box_size(gt, visible) -> np.ndarray:
    """Longer side of the box around each sample's visible ground-truth keypoints: (N,) pixels.

    0 for a sample with fewer than two distinct visible keypoints.
    """
    _, gt, mask = _keypoint_arrays(gt, gt, visible)
    lows = np.where(mask[..., None], gt, np.inf).min(axis=1)
    highs = np.where(mask[..., None], gt, -np.inf).max(axis=1)
    sides = (highs - lows).max(axis=1)
    return np.where(mask.any(axis=1), sides, 0.0)


def _normalised_errors(pred, gt, visible, normalizer) -> tuple[np.ndarray, np.ndarray]:
    """Errors divided by each sample's normaliser (N, K) and the visible mask."""
    pred, gt, mask = _keypoint_arrays(pred, gt, visible)
    norm = np.asarray(normalizer, dtype=np.float64)
    if norm.shape != (len(gt),):
        raise ValueError(f'normalizer must have shape ({len(gt)},), got {norm.shape}')
    counted = mask.any(axis=1)
    bad = counted & ~(np.isfinite(norm) & (norm > 0))
    if bad.any():
        raise ValueError(f'normalizer must be finite and > 0 for samples with visible keypoints; '
                         f'bad samples: {np.flatnonzero(bad)[:10].tolist()}')
    safe_norm = np.where(counted, norm, 1.0)
    return keypoint_errors(pred, gt) / safe_norm[:, None], mask


def pck(pred, gt, visible, normalizer, threshold: float) -> tuple[float, np.ndarray]:
    """Percentage of Correct Keypoints: fraction of visible keypoints with error <= threshold * normalizer.

    Returns (overall fraction over all visible keypoints, per-keypoint fractions (K,)); a keypoint
    never visible has NaN, and the overall value is NaN when nothing is visible.
    """
    errors, mask = _normalised_errors(pred, gt, visible, normalizer)
    correct = (errors <= threshold) & mask
    counts = mask.sum(axis=0)
    per_keypoint = np.divide(correct.sum(axis=0), counts, out=np.full(counts.shape, np.nan), where=counts > 0)
    total = mask.sum()
    return (float(correct.sum() / total) if total else float('nan')), per_keypoint


def pck_curve(pred, gt, visible, normalizer, thresholds) -> np.ndarray:
    """Overall PCK at each threshold: (T,)."""
    errors, mask = _normalised_errors(pred, gt, visible, normalizer)
    total = mask.sum()
    if total == 0:
        return np.full(len(thresholds), np.nan)
    visible_errors = errors[mask]
    return np.array([(visible_errors <= t).sum() / total for t in np.asarray(thresholds, dtype=np.float64)])


def auc(pred, gt, visible, normalizer, max_threshold: float = 0.5, steps: int = 51) -> float:
    """Area under the PCK curve for thresholds 0..max_threshold (`steps` evenly spaced), divided by
    max_threshold so that a perfect predictor scores 1. Trapezoidal rule."""
    if max_threshold <= 0 or steps < 2:
        raise ValueError(f'need max_threshold > 0 and steps >= 2, got {max_threshold} and {steps}')
    thresholds = np.linspace(0.0, max_threshold, steps)
    curve = pck_curve(pred, gt, visible, normalizer, thresholds)
    return float(np.trapezoid(curve, thresholds) / max_threshold)


def epe(pred, gt, visible) -> float:
    """Mean end-point error in pixels over the visible keypoints (NaN when none is visible)."""
    _, _, mask = _keypoint_arrays(pred, gt, visible)
    errors = keypoint_errors(pred, gt)[mask]
    return float(errors.mean()) if errors.size else float('nan')


def summary(pred, gt, visible) -> dict:
    """The evaluation report: n, pck@0.05, pck@0.1, pck@0.2, auc (0..0.5), epe_px; plain Python numbers.

    The normaliser is hand_box_size; samples with a zero-size hand box (fewer than two distinct
    visible keypoints) are left out, and 'n' counts the samples evaluated.
    """
    pred, gt, mask = _keypoint_arrays(pred, gt, visible)
    sizes = hand_box_size(gt, mask)
    keep = sizes > 0
    pred, gt, mask, sizes = pred[keep], gt[keep], mask[keep], sizes[keep]
    report: dict = {'n': int(keep.sum())}
    for threshold in PCK_THRESHOLDS:
        report[f'pck@{threshold}'] = pck(pred, gt, mask, sizes, threshold)[0]
    report['auc'] = auc(pred, gt, mask, sizes)
    report['epe_px'] = epe(pred, gt, mask)
    return report


GROSS_ERROR_KINDS = ('same finger', 'neighbouring finger', 'mirrored finger', 'other keypoint',
                     'nowhere near a keypoint')


def _digit(keypoint: int) -> int:
    """-1 for the wrist, else the finger 0..4 (thumb..little)."""
    return -1 if keypoint == 0 else finger_of(keypoint)


def _gross_error_kind(true_keypoint: int, landed_on: int) -> str:
    true_digit, landed_digit = _digit(true_keypoint), _digit(landed_on)
    if min(true_digit, landed_digit) < 0:
        return 'other keypoint'
    if true_digit == landed_digit:
        return 'same finger'
    if true_digit + landed_digit == 4:
        return 'mirrored finger'
    return 'neighbouring finger' if abs(true_digit - landed_digit) == 1 else 'other keypoint'


def gross_errors(pred, gt, visible, normalizer, threshold: float = 0.2, near: float = 0.1) -> dict:
    """What the wrong keypoints are: where each visible keypoint with normalised error > threshold landed.

    A gross error 'lands on' the visible ground-truth keypoint of the same hand nearest to the
    prediction when it lies within near * normalizer of it, and counts once under
    GROSS_ERROR_KINDS: another joint of the 'same finger', a 'neighbouring finger' (thumb-index,
    index-middle, ...), the 'mirrored finger' (thumb<->little, index<->ring: the hand read with palm
    and back swapped), any 'other keypoint' (and the wrist), or 'nowhere near a keypoint'. Needs 21
    keypoints. Returns {'visible', 'gross', 'kinds': {kind: count}, 'confusion': 6x6 counts, rows
    the true digit and columns the one landed on, both (wrist, thumb, index, middle, ring, little)}.
    """
    errors, mask = _normalised_errors(pred, gt, visible, normalizer)
    pred, gt, _ = _keypoint_arrays(pred, gt, visible)
    if gt.shape[1] != NUM_KEYPOINTS:
        raise ValueError(f'gross_errors needs the {NUM_KEYPOINTS}-keypoint hand, got {gt.shape[1]} keypoints')
    norm = np.asarray(normalizer, dtype=np.float64)
    kinds = dict.fromkeys(GROSS_ERROR_KINDS, 0)
    confusion = np.zeros((6, 6), dtype=np.int64)
    gross = mask & (errors > threshold)
    for sample, keypoint in zip(*np.nonzero(gross)):
        others = mask[sample].copy()
        others[keypoint] = False
        distances = np.linalg.norm(gt[sample] - pred[sample, keypoint], axis=1) / norm[sample]
        distances = np.where(others & np.isfinite(distances), distances, np.inf)
        landed_on = int(distances.argmin())
        if distances[landed_on] > near:
            kinds['nowhere near a keypoint'] += 1
            continue
        kinds[_gross_error_kind(int(keypoint), landed_on)] += 1
        confusion[_digit(int(keypoint)) + 1, _digit(landed_on) + 1] += 1
    return {'visible': int(mask.sum()), 'gross': int(gross.sum()), 'kinds': kinds,
            'confusion': confusion.tolist()}


def match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy VOC matching of one image's detections: (P,) index of the matched ground-truth box, -1 if none.

    pred_boxes (P, 4), pred_scores (P,), gt_boxes (G, 4) as (x0, y0, x1, y1). In descending score
    order each detection takes its highest-IoU ground-truth box; it is a true positive if that IoU
    is >= iou_threshold and the box is not taken yet, else a false positive (a duplicate).
    """
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    ious = box_iou_matrix(pred_boxes, gt_boxes)
    if len(ious) != len(scores):
        raise ValueError(f'pred_boxes and pred_scores differ in length: {len(ious)} vs {len(scores)}')
    matched = np.full(len(scores), -1, dtype=np.int64)
    taken = np.zeros(ious.shape[1], dtype=bool)
    if ious.shape[1] == 0:
        return matched
    for index in np.argsort(-scores, kind='stable'):
        best = int(ious[index].argmax())
        if ious[index, best] >= iou_threshold and not taken[best]:
            matched[index] = best
            taken[best] = True
    return matched


def _ranked_detections(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence,
                       iou_threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores and true-positive flags of all images' detections, best score first, and the number of gt boxes."""
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
        raise ValueError(f'need one entry per image in pred_boxes, pred_scores and gt_boxes, got '
                         f'{len(pred_boxes)}, {len(pred_scores)} and {len(gt_boxes)}')
    scores, hits, num_gt = [], [], 0
    for boxes, image_scores, truth in zip(pred_boxes, pred_scores, gt_boxes):
        matched = match_detections(boxes, image_scores, truth, iou_threshold)
        scores.append(np.asarray(image_scores, dtype=np.float64).reshape(-1))
        hits.append(matched >= 0)
        num_gt += int(np.size(truth) // 4)
    scores, hits = np.concatenate(scores), np.concatenate(hits)
    order = np.argsort(-scores, kind='stable')
    return scores[order], hits[order], num_gt


def detection_pr(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence,
                 iou_threshold: float = 0.5, score_threshold: float = 0.0) -> tuple[float, float]:
    """Precision and recall over a list of images, counting detections with score >= score_threshold.

    Each argument is a list with one entry per image (boxes (P_i, 4), scores (P_i,), gt (G_i, 4)).
    Undefined values (no detection kept, or no ground truth) are NaN.
    """
    scores, hits, num_gt = _ranked_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold)
    kept = scores >= score_threshold
    true_positives = int(hits[kept].sum())
    precision = true_positives / kept.sum() if kept.any() else float('nan')
    recall = true_positives / num_gt if num_gt else float('nan')
    return float(precision), float(recall)


def recall_by_group(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence,
                    gt_groups: Sequence, iou_threshold: float = 0.5,
                    score_threshold: float = 0.0) -> dict:
    """Recall of each group of ground-truth boxes, counting detections with score >= score_threshold.

    Arguments as detection_pr, plus gt_groups: per image, one label per ground-truth box (e.g. its
    size class). Returns {label: {'hands': count, 'recall': share found}}, labels in first-seen
    order: where a detector misses, not only how often.
    """
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes) == len(gt_groups):
        raise ValueError('need one entry per image in pred_boxes, pred_scores, gt_boxes and gt_groups')
    counts: dict = {}
    for boxes, scores, truth, labels in zip(pred_boxes, pred_scores, gt_boxes, gt_groups):
        if len(labels) != np.size(truth) // 4:
            raise ValueError(f'{len(labels)} group labels for {np.size(truth) // 4} ground-truth boxes')
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        kept = scores >= score_threshold
        matched = match_detections(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[kept],
                                   scores[kept], truth, iou_threshold)
        for index, label in enumerate(labels):
            total, found = counts.get(label, (0, 0))
            counts[label] = (total + 1, found + int(index in matched))
    return {label: {'hands': total, 'recall': found / total} for label, (total, found) in counts.items()}


MISS_REASONS = ('found', 'scored below the threshold', 'box off', 'not found')


def frame_outcomes(boxes, scores, truth, iou_threshold: float = 0.5, score_threshold: float = 0.0,
                   near_iou: float = 0.1) -> tuple[list[str], np.ndarray]:
    """One image's outcome at score_threshold: a MISS_REASONS entry per ground-truth box, and the
    indices of the false boxes (detections at or above score_threshold that match no hand).

    A ground-truth box is 'found' (matched by a detection at or above score_threshold), 'scored
    below the threshold' (a lower-scored detection overlaps it at iou_threshold: a ranking
    problem), 'box off' (a detection overlaps it by at least near_iou but not enough, or the one
    that does was taken by another hand: a box-regression problem) or 'not found' (no detection
    near it). boxes (P, 4), scores (P,), truth (G, 4).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    kept = np.flatnonzero(scores >= score_threshold)
    matched = match_detections(boxes[kept], scores[kept], truth, iou_threshold)
    below = np.ones(len(scores), dtype=bool)
    below[kept] = False
    ious = box_iou_matrix(boxes, truth)
    reasons = []
    for index in range(len(truth)):
        if index in matched:
            reasons.append('found')
        elif np.any(ious[below, index] >= iou_threshold):
            reasons.append('scored below the threshold')
        elif np.any(ious[:, index] >= near_iou):
            reasons.append('box off')
        else:
            reasons.append('not found')
    return reasons, kept[matched < 0]


def miss_reasons(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence,
                 iou_threshold: float = 0.5, score_threshold: float = 0.0,
                 near_iou: float = 0.1) -> dict:
    """How many ground-truth boxes of all images fall under each of MISS_REASONS at score_threshold
    (arguments as detection_pr; see frame_outcomes): which of a detector's parts to improve."""
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
        raise ValueError(f'need one entry per image in pred_boxes, pred_scores and gt_boxes, got '
                         f'{len(pred_boxes)}, {len(pred_scores)} and {len(gt_boxes)}')
    counts = dict.fromkeys(MISS_REASONS, 0)
    for boxes, scores, truth in zip(pred_boxes, pred_scores, gt_boxes):
        for reason in frame_outcomes(boxes, scores, truth, iou_threshold, score_threshold, near_iou)[0]:
            counts[reason] += 1
    return counts


def precision_recall_curve(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence,
                           iou_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Precision and recall over a list of images (arguments as detection_pr) after each detection,
    best score first: {'score', 'precision', 'recall'}, one entry per detection (recall NaN
    without ground truth), and 'hands', the number of ground-truth boxes."""
    scores, hits, num_gt = _ranked_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold)
    true_positives = np.cumsum(hits)
    recall = true_positives / num_gt if num_gt else np.full(len(hits), np.nan)
    return {'score': scores, 'precision': true_positives / np.arange(1, len(hits) + 1),
            'recall': recall.astype(np.float64), 'hands': num_gt}


def average_precision(pred_boxes: Sequence, pred_scores: Sequence, gt_boxes: Sequence,
                      iou_threshold: float = 0.5) -> float:
    """VOC all-point average precision over a list of images (arguments as detection_pr).

    Area under the precision-recall curve after making precision monotonically non-increasing
    (each recall level takes the best precision at that recall or beyond). NaN without ground truth.
    """
    curve = precision_recall_curve(pred_boxes, pred_scores, gt_boxes, iou_threshold)
    if curve['hands'] == 0:
        return float('nan')
    recall = np.concatenate([[0.0], curve['recall'], [1.0]])
    precision = np.concatenate([[0.0], curve['precision'], [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def handedness_summary(left_probability, is_left, min_score: float) -> dict:
    """How well per-hand probabilities of a left hand tell the side.

    'accuracy': share right when every hand gets its likelier side; 'coverage': share whose side
    score max(p, 1 - p) reaches `min_score` (the runtime reports only those); 'accuracy_when_sure':
    accuracy among those (NaN when none); 'n'."""
    p = np.asarray(left_probability, dtype=np.float64).reshape(-1)
    truth = np.asarray(is_left, dtype=bool).reshape(-1)
    if p.shape != truth.shape:
        raise ValueError(f'{p.size} probabilities for {truth.size} hands')
    if not 0.5 <= min_score <= 1.0:
        raise ValueError(f'min_score must be in [0.5, 1], got {min_score}')
    correct = (p >= 0.5) == truth
    sure = np.maximum(p, 1.0 - p) >= min_score
    return {'n': int(p.size), 'accuracy': float(correct.mean()) if p.size else float('nan'),
            'coverage': float(sure.mean()) if p.size else float('nan'),
            'accuracy_when_sure': float(correct[sure].mean()) if sure.any() else float('nan')}
