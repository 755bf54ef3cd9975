"""Hand localisation in whole camera frames: the pure half (numpy + OpenCV, no torch, no ROS).

The localiser network (hand_cpm_train.localizer_model) sees the whole frame letterboxed to its
input size and predicts, on a grid of stride `stride`, CenterNet-style maps:

  channel 0     hand-centre logit (sigmoid: probability that a hand's centre is in this cell)
  channels 1-2  log of the box width and height, in grid cells
  channels 3-4  the hand centre's offset (x, y) from this cell's centre, in cells (sub-cell at the
                centre cell; up to about a cell and a half from the cells around it, see
                regression_radius)
  channel 5     handedness logit (sigmoid: probability that the hand is a LEFT hand)

`LocalizerCodec` both makes the training targets from boxes and decodes predictions back into
boxes in source-image pixels, so training and deployment share one definition. `HandLocalizer`
is the runtime: any camera frame -> letterbox -> backend (ONNX Runtime, TensorRT, torch) ->
decode -> Detections in that frame's pixels; optionally the frame is also seen at a larger input
size (a fine pass) whose small boxes are merged in (merge_scales). Pixel convention
as in geometry.py: pixel centres at integer coordinates; grid cell j's centre lies at input pixel
j * stride + (stride - 1) / 2.
"""
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from hand_cpm_ros.backends import create_backend
from hand_cpm_ros.backends.base import Backend, average_mirrored, normalize_crops, with_mirrored
from hand_cpm_ros.geometry import apply_affine, box_iou_matrix, clip_box, invert_affine

NUM_OUTPUTS = 6
HEAT, SIZE, OFFSET, SIDE = 0, slice(1, 3), slice(3, 5), 5
# The localiser's own operating point, where evaluation reports precision and recall
# (hand-cpm-eval, validation during training): of the thresholds near the best validation F1 of
# the shipped localiser (hand-cpm-eval's sweep: 0.66-0.68 at 0.25-0.40), the one that in the
# tracking pipeline found as many hands with fewer false ones (models/MODEL_CARD.md, "Why 0.35").
# The node used it until session 47; it now uses PIPELINE_SCORE_THRESHOLD.
DEFAULT_SCORE_THRESHOLD = 0.35
# The threshold where the keypoint network checks each box: the node's and hand-cpm-detect's
# pipeline. There a hand scores its mean keypoint confidence times its box's score and needs
# hand_threshold (0.2; new_hand_threshold to start a track), so a box scoring below
# hand_threshold can never become a hand, and the boxes between it and DEFAULT_SCORE_THRESHOLD
# add the hands the keypoint network is sure of. Frame by frame on the 600 validation frames
# (seed 11), every hand new (0.25): 439 of 677 found with 55 false against 425 with 55 at 0.35
# (docs/node_options.md).
PIPELINE_SCORE_THRESHOLD = 0.2
DEFAULT_MAX_HANDS = 2
# Below this probability (of left, or of right) a hand's side is reported unknown rather than as a
# coin flip, for the localiser's handedness and the keypoint network's alike (the pipeline uses
# it for both): the shipped localiser's handedness head gives 0.50-0.52 on every hand (it has not
# learnt handedness; models/MODEL_CARD.md).
MIN_HANDEDNESS_SCORE = 0.75
# CPU threads of the localiser's backend. One: it then runs on the calling thread, with no thread
# pool of its own whose idle spinning threads would take the cores from the keypoint backend's
# pool, which runs right after it. On the 2-core build machine, localiser then one crop: 10.5 ms
# median with one thread, 20.7 ms with two (README "Speed").
DEFAULT_LOCALIZER_THREADS = 1
# A fine pass (HandLocalizer's fine_backend: the same weights exported at a larger input) adds only
# boxes shorter than this share of the frame height: larger hands are the coarse pass's, which
# sees them whole. Chosen on the validation frames among 0.1, 0.15, 0.2, 0.3 and no limit
# (docs/training_history.md, "Two input sizes, merged, find more hands").
DEFAULT_FINE_MAX_HEIGHT = 0.3
# A wide pass (HandLocalizer's wide_factor > 1) sees the frame shrunk by WIDE_FACTOR inside grey
# padding, so that a hand filling the frame is seen at a size the localiser knows, and adds its
# boxes of at least DEFAULT_WIDE_MIN_HEIGHT of the frame height. Chosen among 1.4, 1.6 and 2.0 and
# minimum heights 0.25 and 0.45 (docs/training_history.md, "A wide pass for large hands"): on the
# real close-ups it lifts the hands boxed at IoU 0.5 from 9 to 36 of 48; on renders it adds large
# hands and about 10% more false boxes.
WIDE_FACTOR = 1.6
DEFAULT_WIDE_MIN_HEIGHT = 0.25
MAX_WIDE_FACTOR = 4.0
# Boxes each pass keeps (per max_hands) before the passes are merged: a frame's best hands may come
# from any pass.
CANDIDATES_PER_HAND = 2


def localizer_backend_threads(path: Path, localizer_threads: int,
                              keypoint_threads: int | None) -> int | None:
    """Threads for the localiser's backend: `localizer_threads` for an ONNX file; the keypoint
    backend's for a .pt checkpoint (torch's thread count is process-wide) or an engine."""
    return localizer_threads if Path(path).suffix == '.onnx' else keypoint_threads


@dataclass(frozen=True)
class Detection:
    """One hand found in a frame: box (x0, y0, x1, y1) in source pixels, score in [0, 1], and
    handedness 'left' / 'right' with its probability, or None when unknown."""
    box: tuple[float, float, float, float]
    score: float
    handedness: str | None = None
    handedness_score: float = 0.0


def suppress_overlaps(boxes: np.ndarray, nms_iou: float, max_count: int) -> list[int]:
    """Greedy non-maximum suppression of boxes (N, 4) sorted best first: the indices of those
    overlapping no better kept box by IoU > nms_iou, at most `max_count`; empty boxes are skipped."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    overlaps = box_iou_matrix(boxes, boxes)
    keep: list[int] = []
    for index in range(len(boxes)):
        if len(keep) == max_count:
            break
        if boxes[index, 2] <= boxes[index, 0] or boxes[index, 3] <= boxes[index, 1]:
            continue
        if all(overlaps[index, kept] <= nms_iou for kept in keep):
            keep.append(index)
    return keep


def merge_scales(coarse: Sequence[Detection], fine: Sequence[Detection], frame_height: int,
                 fine_max_height: float = DEFAULT_FINE_MAX_HEIGHT, nms_iou: float = 0.5,
                 max_hands: int = DEFAULT_MAX_HANDS, wide: Sequence[Detection] = (),
                 wide_min_height: float = DEFAULT_WIDE_MIN_HEIGHT) -> list[Detection]:
    """One frame's hands from several passes of a localiser, best first, at most `max_hands`: every
    coarse box, the fine boxes shorter than `fine_max_height` x `frame_height` (small hands, which
    the larger input resolves) and the wide boxes at least `wide_min_height` x `frame_height` tall
    (large hands, which the shrunk frame shows whole); of boxes overlapping by IoU > nms_iou the
    best is kept."""
    small = [d for d in fine if d.box[3] - d.box[1] < fine_max_height * frame_height]
    large = [d for d in wide if d.box[3] - d.box[1] >= wide_min_height * frame_height]
    candidates = sorted([*coarse, *small, *large], key=lambda d: -d.score)
    return [candidates[i] for i in suppress_overlaps([d.box for d in candidates], nms_iou, max_hands)]


def letterbox_affine(source_width: int, source_height: int, input_width: int,
                     input_height: int, zoom_out: float = 1.0) -> tuple[np.ndarray, tuple[int, int]]:
    """Source -> input 2x3 affine that fits the whole source image into the input, centred, with
    one scale for both axes (aspect kept), plus the resized (width, height) it implies. With
    `zoom_out` > 1 the image is shrunk that much more, with more padding around it.

    The source's outer edges map exactly onto the resized image's outer edges, so boxes round-trip
    through `invert_affine` without drift for any image size and aspect ratio.
    """
    if min(source_width, source_height) < 1 or min(input_width, input_height) < 1:
        raise ValueError(f'image sizes must be >= 1 pixel, got source {source_width}x{source_height}, '
                         f'input {input_width}x{input_height}')
    if not 1.0 <= zoom_out <= MAX_WIDE_FACTOR:
        raise ValueError(f'zoom_out must be in [1, {MAX_WIDE_FACTOR:g}], got {zoom_out}')
    scale = min(input_width / source_width, input_height / source_height) / zoom_out
    resized = (max(1, round(source_width * scale)), max(1, round(source_height * scale)))
    pad_x, pad_y = (input_width - resized[0]) // 2, (input_height - resized[1]) // 2
    scale_x, scale_y = resized[0] / source_width, resized[1] / source_height
    affine = np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5 + pad_x],
                       [0.0, scale_y, 0.5 * scale_y - 0.5 + pad_y]])
    return affine, resized


def letterbox(image: np.ndarray, input_width: int, input_height: int,
              fill: int = 114, zoom_out: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Resize (area-averaged when shrinking) and pad `image` into input_width x input_height
    (`zoom_out`: see letterbox_affine).

    Returns the letterboxed image and its source -> input affine.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f'image must be a non-empty (H, W, 3) BGR array, got '
                         f'{getattr(image, "shape", type(image))}')
    height, width = image.shape[:2]
    affine, (resized_w, resized_h) = letterbox_affine(width, height, input_width, input_height, zoom_out)
    interpolation = cv2.INTER_AREA if resized_w < width else cv2.INTER_LINEAR
    resized = cv2.resize(image, (resized_w, resized_h), interpolation=interpolation)
    pad_x, pad_y = (input_width - resized_w) // 2, (input_height - resized_h) // 2
    output = np.full((input_height, input_width, 3), fill, dtype=image.dtype)
    output[pad_y:pad_y + resized_h, pad_x:pad_x + resized_w] = resized
    return output, affine


IGNORE_HEAT = 0.1   # an ignored hand's heat loss is dropped where its centre Gaussian reaches this


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -60.0, 60.0)))


@dataclass(frozen=True)
class LocalizerCodec:
    """Targets for, and decoding of, the localiser's centre / size / offset / handedness maps."""
    input_width: int = 320
    input_height: int = 256
    stride: int = 4
    min_sigma: float = 0.8          # cells: the smallest centre Gaussian, for tiny hands
    sigma_fraction: float = 1 / 6   # Gaussian sigma per axis = box extent in cells * this
    # Cells up to this many cells from a hand's centre cell (3x3 at 1) learn its box (size and
    # offset), weighted by the centre Gaussian. 0: the centre cell only (CenterNet). 1: so that a
    # peak that lands a cell off still reads a trained box, and each hand gives the regression
    # up to nine samples instead of one (TTFNet's idea, kept to offsets of a cell or so).
    regression_radius: int = 0

    def __post_init__(self):
        if self.stride < 1 or self.input_width % self.stride or self.input_height % self.stride:
            raise ValueError(f'input size {self.input_width}x{self.input_height} must be a multiple '
                             f'of the stride {self.stride}')
        if self.regression_radius not in (0, 1, 2):
            raise ValueError(f'regression_radius must be 0, 1 or 2 cells, got {self.regression_radius}')

    def grid_size(self) -> tuple[int, int]:
        """(width, height) of the output grid."""
        return self.input_width // self.stride, self.input_height // self.stride

    def _to_grid(self, points: np.ndarray) -> np.ndarray:
        return (points + 0.5) / self.stride - 0.5

    def _from_grid(self, points: np.ndarray) -> np.ndarray:
        return (points + 0.5) * self.stride - 0.5

    def encode(self, boxes: np.ndarray, is_left: Sequence[int | None] | None = None,
               ignored: Sequence[bool] | None = None) -> dict[str, np.ndarray]:
        """Training targets for boxes (M, 4) in input pixels; is_left per box: 1, 0 or None;
        ignored per box: True for a hand that may be found or not (e.g. one mostly hidden).

        Returns float32 arrays: 'heat' (1, h, w) Gaussian peaks of height 1 at each centre cell;
        'reg_mask' (h, w) 1 at the centre cells; 'size' (2, h, w) and 'offset' (2, h, w) (the
        centre's offset from the cell) regression targets where 'reg_weight' (h, w) > 0: the
        cells up to regression_radius from a hand's centre cell, weighted by its Gaussian and
        summing to 1 per hand, so that small and large hands count alike (a cell near two hands
        learns the one whose Gaussian is higher there, and the other hand's weights then sum to
        less); 'side' (1, h, w) and 'side_mask' (h, w) for handedness at the centre cells;
        'heat_ignore' (h, w) 1 where an ignored hand's Gaussian reaches IGNORE_HEAT and no other
        hand's is higher: cells where finding a hand is neither rewarded nor penalised (ignored
        hands get no other target). Boxes whose centre lies outside the input are skipped.
        """
        grid_w, grid_h = self.grid_size()
        targets = {'heat': np.zeros((1, grid_h, grid_w), np.float32),
                   'size': np.zeros((2, grid_h, grid_w), np.float32),
                   'offset': np.zeros((2, grid_h, grid_w), np.float32),
                   'reg_mask': np.zeros((grid_h, grid_w), np.float32),
                   'reg_weight': np.zeros((grid_h, grid_w), np.float32),
                   'side': np.zeros((1, grid_h, grid_w), np.float32),
                   'side_mask': np.zeros((grid_h, grid_w), np.float32),
                   'heat_ignore': np.zeros((grid_h, grid_w), np.float32)}
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sides = list(is_left) if is_left is not None else [None] * len(boxes)
        skipped = [bool(flag) for flag in ignored] if ignored is not None else [False] * len(boxes)
        if len(sides) != len(boxes) or len(skipped) != len(boxes):
            raise ValueError(f'is_left and ignored need one entry per box: {len(sides)} and '
                             f'{len(skipped)} for {len(boxes)} boxes')
        ignored_heat = np.zeros((grid_h, grid_w))
        xs, ys = np.arange(grid_w), np.arange(grid_h)
        owner_heat = np.zeros((grid_h, grid_w))  # the Gaussian of the hand a cell regresses
        for (x0, y0, x1, y1), side, skip in zip(boxes, sides, skipped):
            if not (np.all(np.isfinite((x0, y0, x1, y1))) and x1 > x0 and y1 > y0):
                raise ValueError(f'box must be finite with x1 > x0 and y1 > y0, got {(x0, y0, x1, y1)}')
            centre = self._to_grid(np.array([(x0 + x1) / 2, (y0 + y1) / 2]))
            cell = np.round(centre).astype(int)
            if not (0 <= cell[0] < grid_w and 0 <= cell[1] < grid_h):
                continue
            extent = np.array([x1 - x0, y1 - y0]) / self.stride
            sigma = np.maximum(extent * self.sigma_fraction, self.min_sigma)
            gaussian = np.exp(-((ys[:, None] - cell[1]) ** 2) / (2 * sigma[1] ** 2)
                              - ((xs[None, :] - cell[0]) ** 2) / (2 * sigma[0] ** 2))
            if skip:
                np.maximum(ignored_heat, gaussian, out=ignored_heat)
                continue
            np.maximum(targets['heat'][0], gaussian.astype(np.float32), out=targets['heat'][0])
            near = ((np.abs(ys - cell[1]) <= self.regression_radius)[:, None]
                    & (np.abs(xs - cell[0]) <= self.regression_radius)[None, :])
            rows, cols = np.nonzero(near & (gaussian >= owner_heat))
            owner_heat[rows, cols] = gaussian[rows, cols]
            targets['size'][:, rows, cols] = np.log(extent)[:, None]
            targets['offset'][0, rows, cols] = centre[0] - cols
            targets['offset'][1, rows, cols] = centre[1] - rows
            targets['reg_weight'][rows, cols] = gaussian[rows, cols] / gaussian[rows, cols].sum()
            targets['reg_mask'][cell[1], cell[0]] = 1.0
            if side is not None:
                targets['side'][0, cell[1], cell[0]] = float(side)
                targets['side_mask'][cell[1], cell[0]] = 1.0
        targets['heat_ignore'][(ignored_heat >= IGNORE_HEAT) & (ignored_heat > targets['heat'][0])] = 1.0
        return targets

    def decode(self, outputs: np.ndarray, input_to_source: np.ndarray, source_size: tuple[int, int],
               score_threshold: float = DEFAULT_SCORE_THRESHOLD, max_hands: int = DEFAULT_MAX_HANDS,
               nms_iou: float = 0.5,
               min_handedness_score: float = MIN_HANDEDNESS_SCORE) -> list[Detection]:
        """Hands from one image's outputs (6, h, w), best first, at most `max_hands`.

        Peaks are cells that are the maximum of their 3x3 neighbourhood with probability at least
        `score_threshold`; boxes are mapped to source pixels through `input_to_source` and clipped
        to `source_size` = (width, height); overlapping boxes (IoU > nms_iou) keep the best one.
        Handedness is the likelier side when its probability reaches `min_handedness_score`,
        else None (unknown).
        """
        outputs = np.asarray(outputs, dtype=np.float32)
        grid_w, grid_h = self.grid_size()
        if outputs.shape != (NUM_OUTPUTS, grid_h, grid_w):
            raise ValueError(f'localiser outputs must have shape ({NUM_OUTPUTS}, {grid_h}, {grid_w}), '
                             f'got {outputs.shape}')
        if not np.all(np.isfinite(outputs)):
            raise ValueError('localiser outputs contain non-finite values (NaN or inf); '
                             'the model or its input is broken')
        heat = outputs[HEAT]
        is_peak = heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8))
        logit_threshold = np.log(score_threshold / (1.0 - score_threshold)) if 0 < score_threshold < 1 \
            else (-np.inf if score_threshold <= 0 else np.inf)
        rows, cols = np.nonzero(is_peak & (heat >= logit_threshold))
        order = np.argsort(-heat[rows, cols], kind='stable')
        rows, cols = rows[order], cols[order]
        if len(rows) == 0:
            return []
        centres = self._from_grid(np.stack([cols, rows], axis=1) + outputs[OFFSET][:, rows, cols].T)
        extents = np.exp(np.clip(outputs[SIZE][:, rows, cols].T, -10.0, 10.0)) * self.stride
        corners = np.concatenate([centres - extents / 2, centres + extents / 2], axis=1)
        source_corners = np.concatenate([apply_affine(input_to_source, corners[:, :2]),
                                         apply_affine(input_to_source, corners[:, 2:])], axis=1)
        boxes = np.array([clip_box(box, *source_size) for box in source_corners])
        scores = _sigmoid(heat[rows, cols])
        left = _sigmoid(outputs[SIDE][rows, cols])
        detections = []
        for i in suppress_overlaps(boxes, nms_iou, max_hands):
            side_score = float(max(left[i], 1.0 - left[i]))
            known = side_score >= min_handedness_score
            detections.append(Detection(
                box=tuple(float(v) for v in boxes[i]), score=float(scores[i]),
                handedness=('left' if left[i] >= 0.5 else 'right') if known else None,
                handedness_score=side_score if known else 0.0))
        return detections

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> 'LocalizerCodec':
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'unknown localiser codec fields: {sorted(unknown)}')
        return cls(**values)


def infer_localizer_maps(infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
                         flip_averaging: bool = False) -> np.ndarray:
    """The localiser maps (N, 6, h, w) of a normalised frame batch through `infer` (a backend's
    infer, or a torch model's predictor). flip_averaging: each frame also runs mirrored, in the
    same call, and the two answers are averaged: the mirror's maps are flipped back (cell j's
    centre sits at j*stride + (stride-1)/2, so the flip is exact whatever the letterbox padding)
    with its centre offsets' x and its handedness logit negated, as a mirror turns them around.
    Twice the localiser's compute for fewer false and misplaced boxes (models/MODEL_CARD.md)."""
    if not flip_averaging:
        return np.asarray(infer(batch), np.float32)
    outputs = np.array(infer(with_mirrored(batch)), np.float32)
    mirrored = outputs[len(batch):]
    mirrored[:, OFFSET.start] *= -1.0
    mirrored[:, SIDE] *= -1.0
    return average_mirrored(outputs, None)[0]


def prepare_frame(image_bgr: np.ndarray, codec: LocalizerCodec,
                  zoom_out: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox a BGR frame to the codec's input size (shrunk `zoom_out` times more, for a wide
    pass): (input image, input -> source affine)."""
    letterboxed, source_to_input = letterbox(image_bgr, codec.input_width, codec.input_height,
                                             zoom_out=zoom_out)
    return letterboxed, invert_affine(source_to_input)


def as_bgr8(image: np.ndarray) -> np.ndarray:
    """A camera frame as (H, W, 3) uint8 BGR: gray (H, W) / (H, W, 1) is repeated, BGRA drops
    alpha, 16-bit images are scaled by their own maximum (a 10- or 12-bit sensor in a 16-bit
    container stays visible; all-zero stays black). ValueError for anything else."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f'image must be a numpy array, got {type(image).__name__}')
    if image.size == 0 or image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'image must be a non-empty (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) '
                         f'array, got shape {image.shape}')
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ValueError(f'image must have 1, 3 or 4 channels (gray, BGR, BGRA), got '
                         f'{image.shape[2]}')
    if image.dtype == np.uint16:
        peak = int(image.max())
        image = np.zeros(image.shape, np.uint8) if peak == 0 else \
            np.round(image.astype(np.float32) * (255.0 / peak)).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f'image must be 8-bit or 16-bit unsigned, got {image.dtype}; convert '
                         f'it to uint8 BGR')
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3] if image.shape[2] == 4 else image


def localizer_codec(backend: Backend) -> LocalizerCodec:
    """The codec of a localiser backend, checked against its model: ValueError for a keypoint
    model or a codec that does not match the network's input."""
    info = backend.info
    if info.task != 'localizer':
        raise ValueError(f'model {info.variant!r} is a {info.task} model, not a hand localiser; '
                         f'pass a localiser (hand-cpm-train --task localizer, then '
                         f'hand-cpm-export)')
    if info.num_maps != NUM_OUTPUTS:
        raise ValueError(f'localiser {info.variant!r} gives {info.num_maps} maps, expected '
                         f'{NUM_OUTPUTS}')
    codec = LocalizerCodec.from_dict(info.codec)
    if (codec.input_width, codec.input_height, codec.stride) != \
            (info.input_width, info.input_height, info.stride):
        raise ValueError(f'localiser codec {codec.input_width}x{codec.input_height}/'
                         f'{codec.stride} does not match the model input '
                         f'{info.describe_input()}/{info.stride}')
    return codec


def check_fine_codec(codec: LocalizerCodec, fine_codec: LocalizerCodec, coarse_name: str) -> None:
    """ValueError unless a fine pass sees frames at a larger input than the pass it refines
    (`coarse_name`, for the message)."""
    if fine_codec.input_width * fine_codec.input_height <= codec.input_width * codec.input_height:
        raise ValueError(f'the fine localiser pass must see frames at a larger input than {coarse_name} '
                         f'({codec.input_width}x{codec.input_height}), got '
                         f'{fine_codec.input_width}x{fine_codec.input_height}; export the localiser '
                         f'again with a larger hand-cpm-export --frame-size')


class HandLocalizer:
    """Finds hand boxes in whole camera frames with a localiser network behind `backend`.

    `score_threshold` is the minimum centre probability of a hand, `max_hands` the most boxes
    returned (best first), `nms_iou` the overlap above which two boxes are one hand,
    `flip_averaging` runs each frame mirrored too (infer_localizer_maps). `fine_backend`, when
    given, is a second pass at a larger input (the same weights exported at another
    --frame-size): its boxes shorter than `fine_max_height` of the frame are merged in
    (merge_scales), finding more small hands for the second pass's compute. `wide_factor` > 1
    adds a wide pass through `backend`: the frame shrunk that much more, its boxes at least
    `wide_min_height` of the frame tall merged in, finding hands that fill the frame and, on real
    photographs, many more close-ups (WIDE_FACTOR). Satisfies hand_cpm_ros.pipeline.BoxSource:
    asked for `one_pass`, it runs only the next of its passes (coarse, fine, wide in turn).
    """

    def __init__(self, backend: Backend, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 max_hands: int = DEFAULT_MAX_HANDS, nms_iou: float = 0.5,
                 flip_averaging: bool = False, fine_backend: Backend | None = None,
                 fine_max_height: float = DEFAULT_FINE_MAX_HEIGHT, wide_factor: float = 1.0,
                 wide_min_height: float = DEFAULT_WIDE_MIN_HEIGHT):
        self.codec = localizer_codec(backend)
        self.fine_codec = None if fine_backend is None else localizer_codec(fine_backend)
        if self.fine_codec is not None:
            check_fine_codec(self.codec, self.fine_codec, 'the localiser')
        if not 0.0 < fine_max_height <= 1.0:
            raise ValueError(f'fine_max_height must be in (0, 1], got {fine_max_height}')
        if not 1.0 <= wide_factor <= MAX_WIDE_FACTOR:
            raise ValueError(f'wide_factor must be in [1, {MAX_WIDE_FACTOR:g}] (1: no wide pass), got {wide_factor}')
        if not 0.0 < wide_min_height <= 1.0:
            raise ValueError(f'wide_min_height must be in (0, 1], got {wide_min_height}')
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f'score_threshold must be in (0, 1), got {score_threshold}')
        if isinstance(max_hands, bool) or not isinstance(max_hands, int) or max_hands < 1:
            raise ValueError(f'max_hands must be an integer >= 1, got {max_hands!r}')
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f'nms_iou must be in (0, 1], got {nms_iou}')
        if not isinstance(flip_averaging, bool):
            raise ValueError(f'flip_averaging must be true or false, got {flip_averaging!r}')
        self.backend, self.fine_backend = backend, fine_backend
        self.score_threshold, self.max_hands, self.nms_iou = score_threshold, max_hands, nms_iou
        self.flip_averaging, self.fine_max_height = flip_averaging, fine_max_height
        self.wide_factor, self.wide_min_height = wide_factor, wide_min_height
        self.passes = ('coarse', *(('fine',) if fine_backend is not None else ()),
                       *(('wide',) if wide_factor > 1.0 else ()))
        self._next_pass = 0  # the pass a one_pass call runs next

    def describe(self) -> str:
        """The model and its input size(s), for logs, e.g. 'loc-deep 320x256 + 448x352 for hands
        under 0.3 of the frame height'."""
        text = f'{self.backend.info.variant} {self.codec.input_width}x{self.codec.input_height}'
        if self.fine_codec is not None:
            text += (f' + {self.fine_codec.input_width}x{self.fine_codec.input_height} for hands under '
                     f'{self.fine_max_height:g} of the frame height')
        if self.wide_factor > 1.0:
            text += (f' + the frame shrunk {self.wide_factor:g}x for hands over {self.wide_min_height:g} '
                     f'of its height')
        return text

    def detect(self, image_bgr: np.ndarray, one_pass: bool = False) -> list[Detection]:
        """Hands in one frame (BGR, or gray / BGRA / 16-bit, converted), boxes in its pixels; with
        `one_pass`, those of the next pass in turn only (each pass's boxes as merge_scales keeps them)."""
        image = as_bgr8(image_bgr)
        if len(self.passes) == 1:
            return self._detect_at(self.backend, self.codec, image, self.max_hands)
        run = self.passes
        if one_pass:
            run = (self.passes[self._next_pass],)
            self._next_pass = (self._next_pass + 1) % len(self.passes)
        candidates = CANDIDATES_PER_HAND * self.max_hands
        coarse = self._detect_at(self.backend, self.codec, image, candidates) if 'coarse' in run else []
        fine = self._detect_at(self.fine_backend, self.fine_codec, image, candidates) if 'fine' in run else []
        wide = (self._detect_at(self.backend, self.codec, image, candidates, self.wide_factor)
                if 'wide' in run else [])
        return merge_scales(coarse, fine, image.shape[0], self.fine_max_height, self.nms_iou,
                            self.max_hands, wide, self.wide_min_height)

    def _detect_at(self, backend: Backend, codec: LocalizerCodec, image: np.ndarray,
                   max_hands: int, zoom_out: float = 1.0) -> list[Detection]:
        """Hands in a BGR8 frame through one backend, at its codec's input size (shrunk
        `zoom_out` times more for a wide pass)."""
        letterboxed, input_to_source = prepare_frame(image, codec, zoom_out)
        outputs = infer_localizer_maps(backend.infer, normalize_crops(letterboxed[None], backend.info),
                                       self.flip_averaging)[0]
        return codec.decode(outputs, input_to_source, (image.shape[1], image.shape[0]),
                            self.score_threshold, max_hands, self.nms_iou)


def load_localizer(path: Path, score_threshold: float, max_hands: int, localizer_threads: int,
                   keypoint_threads: int | None, logger, flip_averaging: bool = False,
                   fine_path: Path | None = None,
                   fine_max_height: float = DEFAULT_FINE_MAX_HEIGHT, wide_factor: float = 1.0) -> HandLocalizer:
    """The HandLocalizer of an exported localiser file (and of `fine_path`, its fine pass, when
    given): .onnx or .pt, anything else a TensorRT engine, each on the 'auto' backend (threads:
    localizer_backend_threads). BackendError or ValueError when it cannot be loaded."""
    def backend_of(model: Path) -> Backend:
        is_engine = model.suffix not in ('.onnx', '.pt')
        return create_backend('auto', model_path=None if is_engine else str(model),
                              engine_path=str(model) if is_engine else None,
                              threads=localizer_backend_threads(model, localizer_threads,
                                                                keypoint_threads),
                              logger=logger)
    return HandLocalizer(backend_of(path), score_threshold=score_threshold, max_hands=max_hands,
                         flip_averaging=flip_averaging,
                         fine_backend=None if fine_path is None else backend_of(fine_path),
                         fine_max_height=fine_max_height, wide_factor=wide_factor)
