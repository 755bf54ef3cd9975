"""The runtime pipeline shared by the ROS node and the offline CLI: image -> hands.

Per frame: crop proposals from three sources are merged (the hand localiser's detections when one
is given, the boxes of the previous frame's confident keypoints of every track, external ROIs),
de-duplicated (the best-scoring proposal wins; boxes are one hand when their IoU exceeds
`duplicate_iou` or one lies mostly inside the other) and capped at `max_hands`; each becomes a
square crop with a margin, ALL crops go through the backend in one batch, the codec decodes the
belief maps straight into source pixels, hands below `hand_threshold` or `min_hand_size` are
dropped, duplicates (two proposals that found the same hand) are removed and the tracker gives
ids across frames; with tracking, a hand that continues no track must reach `new_hand_threshold`
to start one. A hand's side call in a frame comes from the keypoint network when it has a
handedness head and is sure enough (MIN_HANDEDNESS_SCORE) on a hand whose keypoints are sure
enough (MIN_SIDE_CALL_KEYPOINT_CONFIDENCE), else from the localiser's box when it found the hand;
the side reported is its track's vote over those calls (HandTracker).
A hand's score is its mean keypoint confidence times the evidence of the proposal that found it:
the localiser's score, 1 for an external ROI, or a track's evidence, which fades with
`track_half_life` until the localiser (or an ROI) finds the hand again. A track whose keypoints
shrank onto part of its hand (a few confident keypoints of a finger) is cropped, on a frame whose
localiser box (or ROI) holds it and is clearly larger, from that box instead: it regrows. While
tracks follow hands, the localiser may run on every `localizer_interval`-th frame only, to save
its cost.

numpy + OpenCV only: no ROS, no torch (the backend may use torch, lazily, behind its interface).
"""
from __future__ import annotations

import enum
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from .backends import Backend, normalize_crops
from .codec import HeatmapCodec
from .drawing import draw_hand, overlay_heatmap
from .geometry import (box_containment_matrix, box_from_keypoints, box_iou_matrix, clip_box,
                       crop_to_source_affine, source_to_crop_affine, square_crop, warp_crop)
from .keypoints import NUM_KEYPOINTS
from .localizer import MIN_HANDEDNESS_SCORE, Detection
from .tracking import (DEFAULT_HALF_LIFE_S, HandTracker, Observation, validate_half_life,
                       validate_one_euro)

Box = tuple[float, float, float, float]

# Of two boxes, the smaller lying at least this share inside the other are one hand, however
# different their sizes (IoU misses a box nested in a much larger one).
NESTED_SHARE = 0.7
# A track's box nested in one of the frame's fresh boxes (localiser, ROI) with at least this many
# times its area has shrunk onto part of the hand; its crop takes the fresh box. Offline on the
# node benchmark's and the demo's streams (1,350 hands), this and NESTED_SHARE took the shipped
# models from 1,246 hands found with 121 false ones to 1,304 with 57 (docs/pipeline_rules.md).
REGROW_AREA_RATIO = 1.5
# The keypoint network's side call on a crop counts only when the hand's mean keypoint confidence
# is at least this: on tracked demo streams (seeds 5-14, 6,164 calls) 29% of the calls on hands
# under 0.7 were wrong against 3% above, and a wrong first call sets a new track's side. On the
# README's two-hand streams the wrong sides fell from 107 to 66 of 8,825 (docs/pipeline_rules.md).
MIN_SIDE_CALL_KEYPOINT_CONFIDENCE = 0.7


class Handedness(enum.IntEnum):
    """Which hand; the values are HandKeypoints.HANDEDNESS_* of the message."""
    UNKNOWN = 0
    LEFT = 1
    RIGHT = 2


@runtime_checkable
class BoxSource(Protocol):
    """Anything that finds hand boxes in whole frames (hand_cpm_ros.localizer.Detection: box in
    source pixels, score, handedness 'left'/'right'/None). Without one, crops come from tracking
    and external ROIs."""

    def detect(self, image_bgr: np.ndarray, one_pass: bool = False) -> list[Detection]:
        """Hand boxes in a (H, W, 3) uint8 BGR image, in its pixels. `one_pass` is asked while
        tracks follow the hands (the pipeline calls again within localizer_interval frames): a
        source that looks in several passes may then run only one of them per call, in turn."""


MAX_LOCALIZER_INTERVAL = 30  # frames: one second at 30 Hz


@dataclass(frozen=True)
class PipelineSettings:
    """The run-time tunables; construction validates them (ValueError naming the bad one)."""
    max_hands: int = 2
    crop_margin: float = 0.25
    keypoint_threshold: float = 0.2
    # A localiser hand scores (mean keypoint confidence) x (localiser score), so the keypoint
    # network checks every box the localiser gives (from localizer.PIPELINE_SCORE_THRESHOLD, also
    # 0.2). Frame by frame on 300 held-out frames (tracking off) 0.2 finds 229 of 330 hands with 38
    # false against 232 with 78 at 0.15; the tracked streams are level (docs/node_options.md).
    hand_threshold: float = 0.2
    # With tracking, a hand that continues no track must score this much to start one (as trackers
    # that start tracks on confident detections only and continue them on weaker ones).
    new_hand_threshold: float = 0.25
    # Hands whose keypoint box is smaller than this fraction of the image's shorter side are
    # dropped. On a crop without a hand the keypoint network tends to put every keypoint near the
    # centre; a track built on it would then shrink, frame by frame, to a few pixels and live on. The
    # smallest hands the localiser is made for are 5% of the frame high.
    min_hand_size: float = 0.03
    tracking: bool = True
    track_half_life: float = DEFAULT_HALF_LIFE_S  # s; see hand_cpm_ros.tracking
    # While tracking follows a hand, the localiser runs on every localizer_interval-th frame only,
    # one of its passes at a time (BoxSource.detect's one_pass; new hands then appear up to
    # interval x passes - 1 frames late); with no track, on every frame, all passes. 3 kept every
    # hand and was faster end to end than 1 in each paired node benchmark (README).
    localizer_interval: int = 3
    smoothing: bool = False
    min_cutoff: float = 1.0    # One Euro filter: Hz at rest
    beta: float = 0.0          # One Euro filter: cut-off increase per px/s of speed
    duplicate_iou: float = 0.5  # proposals / hands overlapping more than this, or nested, are one
    # Also run every crop mirrored (in the same batch) and average the two answers: on held-out
    # crops PCK@0.2 0.820 -> 0.832 with keypoint run 5 (README), for twice the keypoint compute.
    flip_averaging: bool = False

    def __post_init__(self):
        for name, high in (('max_hands', 8), ('localizer_interval', MAX_LOCALIZER_INTERVAL)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f'{name} must be an integer in 1..{high}, got {value!r}')
        if not (math.isfinite(self.crop_margin) and 0.0 <= self.crop_margin <= 2.0):
            raise ValueError(f'crop_margin must be in [0, 2] (fraction of the box side added on '
                             f'each side), got {self.crop_margin}')
        for name in ('keypoint_threshold', 'hand_threshold', 'new_hand_threshold', 'min_hand_size'):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        if not (math.isfinite(self.duplicate_iou) and 0.0 < self.duplicate_iou <= 1.0):
            raise ValueError(f'duplicate_iou must be in (0, 1], got {self.duplicate_iou}')
        for name in ('tracking', 'smoothing', 'flip_averaging'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f'{name} must be true or false, got {getattr(self, name)!r}')
        if self.smoothing and not self.tracking:
            raise ValueError('smoothing needs tracking: enable tracking or disable smoothing')
        validate_one_euro(self.min_cutoff, self.beta)
        validate_half_life(self.track_half_life)


@dataclass
class CropProposal:
    """Where to look for a hand this frame, and why; `score` is the evidence that a hand is there
    (localiser score, a track's faded evidence, 1 for an ROI); `regrown_track` the id of the track
    whose crop regrew to this box (see _regrown_track_box)."""
    box: Box
    score: float
    source: str  # 'localizer', 'track' or 'roi'
    handedness: Handedness = Handedness.UNKNOWN
    handedness_score: float = 0.0
    regrown_track: int | None = None


@dataclass
class _Found:
    """A decoded crop that passed hand_threshold, before de-duplication and tracking."""
    proposal: CropProposal
    keypoints: np.ndarray
    scores: np.ndarray
    score: float
    box: Box
    crop_to_source: np.ndarray
    maps: np.ndarray


@dataclass
class Hand:
    """One hand found in a frame; coordinates in source-image pixels."""
    keypoints: np.ndarray        # (21, 2) float64
    scores: np.ndarray           # (21,) in [0, 1]
    score: float                 # mean keypoint score x the evidence of the proposal that found it
    box: Box                     # around the confident keypoints, clipped to the image
    handedness: Handedness
    handedness_score: float
    track_id: int
    source: str                  # which proposal found it: 'localizer', 'track' or 'roi'
    crop_to_source: np.ndarray   # (2, 3) affine of the crop it was found in
    maps: np.ndarray             # (22, s, s) belief maps of that crop, for debug views
    keypoints_3d: np.ndarray | None = None  # (21, 3) metres, NaN where depth is missing


@dataclass
class FrameResult:
    """Everything process() found in one frame."""
    hands: list[Hand]
    image_size: tuple[int, int]  # (width, height)
    stamp: float | None
    num_crops: int = 0
    localized: bool = False  # whether the localiser ran on this frame (see localizer_interval)
    dropped: Counter = field(default_factory=Counter)  # reason -> hands dropped this frame
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds


DEFAULT_MODEL_NAME = 'hand_cpm.onnx'
DEFAULT_LOCALIZER_NAME = 'hand_localizer.onnx'
FINE_LOCALIZER_NAME = 'hand_localizer_fine.onnx'  # the localiser's weights at a larger input


def default_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """A model shipped with the package, models/NAME (the keypoint network hand_cpm.onnx by
    default, the localiser hand_localizer.onnx, its fine pass hand_localizer_fine.onnx) in the
    first place that has it:
    the ament share directory of hand_cpm_ros, <sys.prefix>/share/hand_cpm_ros (an install into
    a virtual environment) or the source tree. When none has it, the first candidate is returned
    (callers report the missing file)."""
    candidates = []
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
        try:
            candidates.append(Path(get_package_share_directory('hand_cpm_ros')))
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH not set
            pass
    except ImportError:
        pass
    candidates += [Path(sys.prefix) / 'share' / 'hand_cpm_ros', Path(__file__).resolve().parents[1]]
    paths = [candidate / 'models' / name for candidate in candidates]
    return next((path for path in paths if path.is_file()), paths[0])


def fine_localizer_path(name: str) -> Path | None:
    """The file of the fine_localizer_model parameter: None for '' (off), the shipped
    models/hand_localizer_fine.onnx for 'shipped', else the path given; ValueError when the file
    is not there."""
    if not name:
        return None
    path = default_model_path(FINE_LOCALIZER_NAME) if name == 'shipped' else Path(name)
    if not path.is_file():
        raise ValueError(f'fine_localizer_model={name!r}: {path} does not exist; give the localiser '
                         f'exported at a larger input (hand-cpm-export --frame-size), "shipped", or '
                         f'leave it empty')
    return path


def backproject_keypoints(keypoints: np.ndarray, depth_m: np.ndarray, camera_matrix: np.ndarray,
                          window: int = 5) -> np.ndarray:
    """3D points (21, 3) in metres in the camera's optical frame from a registered depth image.

    Depth at a keypoint = median of the valid (finite, > 0) depths in a `window` x `window` patch
    around its nearest pixel (robust to edges and holes); X = (u - cx) Z / fx, Y = (v - cy) Z / fy.
    Rows are NaN where the keypoint is outside the image or has no valid depth.
    """
    points = np.asarray(keypoints, dtype=np.float64)
    depth = np.asarray(depth_m)
    k = np.asarray(camera_matrix, dtype=np.float64)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f'depth must be a non-empty (H, W) image in metres, got shape {depth.shape}')
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f'camera_matrix must be a finite 3x3 K with fx, fy > 0, got {k.tolist()}')
    if window < 1 or window % 2 == 0:
        raise ValueError(f'window must be an odd number of pixels >= 1, got {window}')
    height, width = depth.shape
    half = window // 2
    result = np.full((len(points), 3), np.nan)
    for index, (u, v) in enumerate(points):
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        col, row = int(round(u)), int(round(v))
        if not (0 <= col < width and 0 <= row < height):
            continue
        patch = depth[max(row - half, 0):row + half + 1, max(col - half, 0):col + half + 1]
        valid = patch[np.isfinite(patch) & (patch > 0)]
        if valid.size:
            z = float(np.median(valid))
            result[index] = ((u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z)
    return result


def check_image(image_bgr: np.ndarray) -> None:
    """ValueError unless `image_bgr` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 \
            or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
        raise ValueError(f'image must be a non-empty (H, W, 3) uint8 BGR array, got '
                         f'{getattr(image_bgr, "dtype", type(image_bgr).__name__)} '
                         f'{getattr(image_bgr, "shape", "")}')


def _suppress_duplicates(boxes: Sequence[Box], iou_threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression of boxes already sorted best first: a box
    goes when its IoU with a kept one exceeds `iou_threshold` or either lies mostly inside the
    other (NESTED_SHARE)."""
    if not boxes:
        return []
    iou = box_iou_matrix(boxes, boxes)
    nested = box_containment_matrix(boxes, boxes) > NESTED_SHARE
    kept: list[int] = []
    for index in range(len(boxes)):
        if all(iou[index, other] <= iou_threshold and not nested[index, other] for other in kept):
            kept.append(index)
    return kept


def _regrown_track_box(track_box: Box, fresh_boxes: Sequence[Box]) -> Box | None:
    """The fresh box (this frame's localiser box or ROI) to crop a track from instead of its own
    box: the one that holds the track's box most, when it holds it mostly (NESTED_SHARE) and has
    REGROW_AREA_RATIO times its area or more; None when there is none. A track built on the few
    confident keypoints of a finger otherwise crops ever less of the hand and never recovers."""
    if not fresh_boxes:
        return None
    held = box_containment_matrix([track_box], fresh_boxes)[0]
    best = int(np.argmax(held))
    x0, y0, x1, y1 = track_box
    fx0, fy0, fx1, fy1 = fresh_boxes[best]
    if held[best] > NESTED_SHARE and \
            (fx1 - fx0) * (fy1 - fy0) >= REGROW_AREA_RATIO * (x1 - x0) * (y1 - y0):
        return fresh_boxes[best]
    return None


def _with_crop_handedness(proposal: CropProposal, left_probability: float) -> CropProposal:
    """`proposal` with the keypoint network's side when that is at least MIN_HANDEDNESS_SCORE
    sure (NaN counts as unsure); otherwise `proposal` unchanged."""
    side_score = max(left_probability, 1.0 - left_probability)
    if not side_score >= MIN_HANDEDNESS_SCORE:
        return proposal
    side = Handedness.LEFT if left_probability >= 0.5 else Handedness.RIGHT
    return replace(proposal, handedness=side, handedness_score=side_score)


class HandPipeline:
    """Finds hands in BGR frames with a keypoint network `backend` (see hand_cpm_ros.backends).

    `codec` defaults to the one the model was exported with (backend.info.codec). `localizer`
    (optional) proposes hand boxes in whole frames. Settings are PipelineSettings fields; change
    them at run time with update_settings (applied from the next frame on, so a caller on another
    thread never waits for a running inference).
    """

    def __init__(self, backend: Backend, codec: HeatmapCodec | None = None,
                 localizer: BoxSource | None = None, **settings):
        self.backend = backend
        info = backend.info
        self.codec = HeatmapCodec.from_dict(info.codec) if codec is None else codec
        if (self.codec.input_size, self.codec.stride) != (info.input_size, info.stride):
            raise ValueError(f'codec input_size/stride {self.codec.input_size}/{self.codec.stride} '
                             f'do not match the model\'s {info.input_size}/{info.stride}')
        if info.num_maps <= NUM_KEYPOINTS:
            raise ValueError(f'the model gives {info.num_maps} maps; need {NUM_KEYPOINTS} keypoints '
                             f'+ background')
        if localizer is not None and not isinstance(localizer, BoxSource):
            raise ValueError(f'localizer must have a detect(image_bgr) method, got '
                             f'{type(localizer).__name__}')
        self.localizer = localizer
        self._settings = PipelineSettings(**settings)
        self._pending: PipelineSettings | None = None
        s = self._settings
        self.tracker = HandTracker(s.keypoint_threshold, smoothing=s.smoothing,
                                   min_cutoff=s.min_cutoff, beta=s.beta,
                                   half_life=s.track_half_life)
        self.dropped_total: Counter = Counter()
        self._frames_since_localizer = 0  # frames the localiser skipped since it last ran

    @property
    def settings(self) -> PipelineSettings:
        """The settings the next frame will use."""
        return self._settings if self._pending is None else self._pending

    def update_settings(self, **changes) -> PipelineSettings:
        """Validate `changes` (ValueError, nothing changed) and apply them from the next frame."""
        new = replace(self.settings, **changes)
        self._pending = new
        return new

    def _apply_pending_settings(self) -> PipelineSettings:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._settings = pending
            self.tracker.keypoint_threshold = pending.keypoint_threshold
            self.tracker.smoothing = pending.smoothing
            self.tracker.half_life = pending.track_half_life
            self.tracker.configure_smoothing(pending.min_cutoff, pending.beta)
        return self._settings

    def _localizer_due(self, settings: PipelineSettings, tracking: bool) -> bool:
        """Whether the localiser runs on this frame: always while nothing is tracked, else
        (`tracking`) on every localizer_interval-th frame."""
        if self.localizer is None:
            return False
        if tracking and self._frames_since_localizer + 1 < settings.localizer_interval:
            self._frames_since_localizer += 1
            return False
        self._frames_since_localizer = 0
        return True

    def proposals(self, image_bgr: np.ndarray, rois: Sequence[Box], settings: PipelineSettings,
                  result: FrameResult, frame_time: float) -> list[CropProposal]:
        """This frame's crop proposals, best first, de-duplicated, at most max_hands. ROIs that
        are empty once clipped to the image are counted in result.dropped, and result.localized
        says whether the localiser ran; `frame_time` (seconds) fades the tracks' evidence."""
        height, width = image_bgr.shape[:2]
        candidates: list[CropProposal] = []
        tracking = settings.tracking and bool(self.tracker.tracks)  # tracks follow hands into this frame
        result.localized = self._localizer_due(settings, tracking)
        if result.localized:
            for detection in self.localizer.detect(image_bgr, one_pass=tracking):
                handedness = Handedness.UNKNOWN if detection.handedness is None \
                    else Handedness[detection.handedness.upper()]
                candidates.append(CropProposal(
                    clip_box(detection.box, width, height), float(detection.score), 'localizer',
                    handedness,
                    detection.handedness_score if handedness != Handedness.UNKNOWN else 0.0))
        for roi in rois:
            x0, y0, x1, y1 = clip_box(roi, width, height)
            if x1 > x0 and y1 > y0:
                candidates.append(CropProposal((x0, y0, x1, y1), 1.0, 'roi'))
            else:
                result.dropped['roi_outside_image'] += 1
        if settings.tracking:
            fresh_boxes = [candidate.box for candidate in candidates]
            for box, track, evidence in self.tracker.proposals(frame_time):
                box = clip_box(box, width, height)
                regrown = _regrown_track_box(box, fresh_boxes)
                # no side: the track keeps its own vote, which must not count itself again
                candidates.append(CropProposal(
                    box if regrown is None else regrown, evidence, 'track',
                    regrown_track=None if regrown is None else track.track_id))
        candidates.sort(key=lambda proposal: proposal.score, reverse=True)
        kept = _suppress_duplicates([c.box for c in candidates], settings.duplicate_iou)
        return [candidates[index] for index in kept][:settings.max_hands]

    def process(self, image_bgr: np.ndarray, rois: Sequence[Box] = (), stamp: float | None = None,
                depth_m: np.ndarray | None = None,
                camera_matrix: np.ndarray | None = None) -> FrameResult:
        """Find the hands in one BGR frame.

        rois: external hand boxes (x0, y0, x1, y1) in source pixels. stamp: the frame's time in
        seconds (for smoothing; the monotonic clock when None). depth_m + camera_matrix: a depth
        image registered to this frame (metres, NaN = missing) and its 3x3 K, to fill keypoints_3d.
        """
        started = time.perf_counter()
        check_image(image_bgr)
        if (depth_m is None) != (camera_matrix is None):
            raise ValueError('depth_m and camera_matrix go together: give both or neither')
        if depth_m is not None and np.shape(depth_m) != image_bgr.shape[:2]:
            raise ValueError(f'depth image {np.shape(depth_m)} must be registered to the '
                             f'{image_bgr.shape[:2]} colour image (same size)')
        settings = self._apply_pending_settings()
        height, width = image_bgr.shape[:2]
        result = FrameResult([], (width, height), stamp)
        timings = result.timings
        frame_time = time.monotonic() if stamp is None else stamp

        proposals = self.proposals(image_bgr, rois, settings, result, frame_time)
        crops, to_source = self._crops(image_bgr, [proposal.box for proposal in proposals],
                                       settings.crop_margin)
        result.num_crops = len(crops)
        timings['crop'] = 1e3 * (time.perf_counter() - started)

        found: list[_Found] = []
        if len(crops):
            mark = time.perf_counter()
            maps, left = self._infer(crops, settings.flip_averaging)
            timings['infer'] = 1e3 * (time.perf_counter() - mark)
            mark = time.perf_counter()
            finite = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
            result.dropped['non_finite_maps'] += int(np.count_nonzero(~finite))
            chosen = np.flatnonzero(finite)
            min_side = settings.min_hand_size * min(width, height)
            if chosen.size:
                keypoints, scores = self.codec.decode_batch(maps[chosen],
                                                            [to_source[i] for i in chosen])
                for row, index in enumerate(chosen):
                    proposal = proposals[index]
                    keypoint_confidence = float(np.mean(scores[row]))
                    score = keypoint_confidence * proposal.score
                    if score < settings.hand_threshold:
                        result.dropped['low_score'] += 1
                        continue
                    box = self._hand_box(keypoints[row], scores[row], proposal.box, settings,
                                         width, height)
                    if max(box[2] - box[0], box[3] - box[1]) < min_side:
                        result.dropped['too_small'] += 1
                        continue
                    if left is not None and keypoint_confidence >= MIN_SIDE_CALL_KEYPOINT_CONFIDENCE:
                        proposal = _with_crop_handedness(proposal, float(left[index]))
                    found.append(_Found(proposal, keypoints[row], scores[row], score, box,
                                        to_source[index], maps[index]))
            timings['decode'] = 1e3 * (time.perf_counter() - mark)

        mark = time.perf_counter()
        found.sort(key=lambda hand: hand.score, reverse=True)
        kept_indices = _suppress_duplicates([hand.box for hand in found], settings.duplicate_iou)
        kept = [found[i] for i in kept_indices]
        result.dropped['duplicate'] += len(found) - len(kept)
        if not settings.tracking:
            self.tracker.end_all()
        tracks = self.tracker.update(
            [Observation(hand.keypoints, hand.scores, hand.box,
                         int(hand.proposal.handedness), hand.proposal.handedness_score,
                         hand.proposal.score, continues=hand.proposal.regrown_track,
                         score=hand.score)
             for hand in kept],
            frame_time, min_new_score=settings.new_hand_threshold if settings.tracking else 0.0)
        for hand, track in zip(kept, tracks):
            if track is None:
                result.dropped['weak_new_hand'] += 1
                continue
            box = hand.box if not settings.smoothing else self._hand_box(
                track.keypoints, hand.scores, hand.proposal.box, settings, width, height)
            result.hands.append(Hand(
                keypoints=track.keypoints, scores=hand.scores, score=hand.score, box=box,
                handedness=Handedness(track.handedness), handedness_score=track.handedness_score,
                track_id=track.track_id, source=hand.proposal.source,
                crop_to_source=hand.crop_to_source, maps=hand.maps,
                keypoints_3d=None if depth_m is None else backproject_keypoints(
                    track.keypoints, depth_m, camera_matrix)))
        timings['track'] = 1e3 * (time.perf_counter() - mark)
        timings['total'] = 1e3 * (time.perf_counter() - started)
        self.dropped_total.update(result.dropped)
        return result

    def box_confidences(self, image_bgr: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """(N,) the mean keypoint confidence of the crop around each box (source pixels), cropped
        and run as process() does, in one batched call: how sure the keypoint network is that the
        box holds a hand, the factor a localiser box's score is multiplied by to score its hand
        (hand-cpm-eval --keypoint-check). 0 where the network gives non-finite maps."""
        check_image(image_bgr)
        if not len(boxes):
            return np.zeros(0)
        crops, to_source = self._crops(image_bgr, boxes, self.settings.crop_margin)
        maps, _ = self._infer(crops, self.settings.flip_averaging)
        finite = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
        _, scores = self.codec.decode_batch(np.where(finite[:, None, None, None], maps, 0.0), to_source)
        return np.where(finite, scores.mean(axis=1), 0.0)

    def _crops(self, image_bgr: np.ndarray, boxes: Sequence[Box],
               margin: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """The (N, S, S, 3) square crops around `boxes` with `margin`, and each crop's
        crop-to-source affine."""
        size = self.backend.info.input_size
        crops, to_source = [], []
        for box in boxes:
            cx, cy, side = square_crop(box, margin)
            crops.append(warp_crop(image_bgr, source_to_crop_affine(cx, cy, side, size), size))
            to_source.append(crop_to_source_affine(cx, cy, side, size))
        return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8), to_source

    def _infer(self, crops: np.ndarray, flip_averaging: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Belief maps and P(left) (None without a handedness output) of one batched backend
        call; ValueError when the maps do not have the shape the model's metadata promise."""
        maps, left = self.backend.infer_with_handedness(normalize_crops(crops, self.backend.info),
                                                        flip_averaging)
        size = self.backend.info.input_size
        expected = (len(crops), self.backend.info.num_maps) + (size // self.codec.stride,) * 2
        if maps.shape != expected:
            raise ValueError(f'backend returned belief maps of shape {maps.shape}, expected '
                             f'{expected}: the model does not match its metadata')
        return maps, left

    @staticmethod
    def _hand_box(keypoints: np.ndarray, scores: np.ndarray, fallback: Box,
                  settings: PipelineSettings, width: int, height: int) -> Box:
        """Box of the confident keypoints clipped to the image (the proposal's box when fewer
        than two keypoints are confident)."""
        visible = scores >= settings.keypoint_threshold
        if np.count_nonzero(visible) < 2:
            return fallback
        return clip_box(box_from_keypoints(keypoints, visible), width, height)


def draw_result(image_bgr: np.ndarray, result: FrameResult, keypoint_threshold: float,
                heatmap_alpha: float = 0.0) -> np.ndarray:
    """Annotated copy of `image_bgr`: each hand's belief maps blended in (when heatmap_alpha > 0),
    its skeleton, box, track id and score."""
    canvas = image_bgr.copy()
    if heatmap_alpha > 0:
        for hand in result.hands:
            canvas = overlay_heatmap(canvas, hand.maps, hand.crop_to_source, alpha=heatmap_alpha)
    for hand in result.hands:
        x0, y0, x1, y1 = (int(round(v)) for v in hand.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (255, 255, 255), 1, cv2.LINE_AA)
        side = '' if hand.handedness == Handedness.UNKNOWN else f' {hand.handedness.name.lower()}'
        draw_hand(canvas, hand.keypoints, hand.scores, threshold=keypoint_threshold,
                  label=f'#{hand.track_id}{side} {hand.score:.2f}')
    return canvas
