"""Drawing of hands, belief maps and image grids (numpy + OpenCV only).

Used by the synthetic-data preview, the training plots, the node's debug image and the detect CLI.
Keypoints are float (x, y) source pixels (pixel centres at integers); lines are drawn with
sub-pixel precision (cv2 `shift`).
"""
from collections.abc import Sequence

import cv2
import numpy as np

from hand_cpm_ros.geometry import apply_affine, compose_affine
from hand_cpm_ros.keypoints import FINGER_COLORS_BGR, KEYPOINT_NAMES, NUM_KEYPOINTS, NUM_MAPS, SKELETON, finger_of

SHIFT_BITS = 4  # fractional bits of the coordinates handed to cv2 drawing calls
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _check_bgr(image: np.ndarray, name: str = 'image_bgr') -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'{name} must be an (H, W, 3) uint8 BGR array, got '
                         f'{getattr(image, "dtype", type(image))} {getattr(image, "shape", "")}')


def _fixed_point(point: np.ndarray) -> tuple[int, int]:
    scale = 1 << SHIFT_BITS
    return int(round(point[0] * scale)), int(round(point[1] * scale))


def _shown_keypoints(keypoints: np.ndarray, scores_or_visible, threshold: float) -> np.ndarray:
    """(21,) bool: finite keypoints whose visibility is True or whose score is >= threshold."""
    shown = np.all(np.isfinite(keypoints), axis=1)
    if scores_or_visible is None:
        return shown
    values = np.asarray(scores_or_visible)
    if values.shape != (NUM_KEYPOINTS,):
        raise ValueError(f'scores_or_visible must have shape ({NUM_KEYPOINTS},), got {values.shape}')
    return shown & (values if values.dtype == bool else values >= threshold)


def draw_label(image_bgr: np.ndarray, text: str, origin: Sequence[float], color=(255, 255, 255),
               scale: float = 0.5) -> np.ndarray:
    """Text on a dark box whose bottom-left corner is `origin` (kept inside the image); in place."""
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    x = int(np.clip(round(origin[0]), 0, max(0, image_bgr.shape[1] - width)))
    y = int(np.clip(round(origin[1]), height + baseline, max(height + baseline, image_bgr.shape[0] - 1)))
    cv2.rectangle(image_bgr, (x, y - height - baseline), (x + width, y), (0, 0, 0), cv2.FILLED)
    cv2.putText(image_bgr, text, (x, y - baseline), FONT, scale, color, 1, cv2.LINE_AA)
    return image_bgr


def draw_hand(image_bgr: np.ndarray, keypoints: np.ndarray, scores_or_visible: np.ndarray | None = None,
              threshold: float = 0.0, thickness: int = 2, label: str | None = None,
              color: tuple[int, int, int] | None = None) -> np.ndarray:
    """Draw one hand's skeleton IN PLACE and return the image.

    Bones take the colour of their finger (keypoints.FINGER_COLORS_BGR), or `color` for all of
    them (e.g. the ground truth next to a prediction), joints are filled dots.
    A keypoint is skipped when it is non-finite, its visibility is False, or its score is below
    `threshold`; a bone needs both ends. `label` (e.g. 'R 0.93 #4') is written above the wrist,
    or above the topmost drawn keypoint when the wrist is not drawn.
    """
    _check_bgr(image_bgr)
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f'keypoints must have shape ({NUM_KEYPOINTS}, 2), got {points.shape}')
    if thickness < 1:
        raise ValueError(f'thickness must be >= 1, got {thickness}')
    shown = _shown_keypoints(points, scores_or_visible, threshold)
    for parent, child in SKELETON:
        if shown[parent] and shown[child]:
            cv2.line(image_bgr, _fixed_point(points[parent]), _fixed_point(points[child]),
                     color or FINGER_COLORS_BGR[finger_of(child)], thickness, cv2.LINE_AA, SHIFT_BITS)
    for index in np.flatnonzero(shown):
        cv2.circle(image_bgr, _fixed_point(points[index]), (thickness + 1) << SHIFT_BITS,
                   color or FINGER_COLORS_BGR[finger_of(index)], cv2.FILLED, cv2.LINE_AA, SHIFT_BITS)
    if label and shown.any():
        anchor = points[0] if shown[0] else points[shown][np.argmin(points[shown, 1])]
        draw_label(image_bgr, label, (anchor[0] + thickness + 2, anchor[1] - thickness - 4))
    return image_bgr


def _keypoint_heat(maps: np.ndarray) -> np.ndarray:
    """Max over the keypoint maps (the background map excluded), clipped to [0, 1]: (h, w) float32."""
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] < 1 or not np.all(np.isfinite(array)):
        raise ValueError(f'maps must be a finite (K, h, w) array, got shape {array.shape}')
    return np.clip(array[:NUM_KEYPOINTS].max(axis=0), 0.0, 1.0)


def _jet(heat: np.ndarray) -> np.ndarray:
    return cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)


def colorize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Max over the keypoint maps (background excluded), resized to size (W, H), as a JET BGR image."""
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(f'size must be (W, H) with both >= 1, got {size}')
    heat = cv2.resize(_keypoint_heat(maps), (width, height), interpolation=cv2.INTER_LINEAR)
    return _jet(np.clip(heat, 0.0, 1.0))


def overlay_heatmap(image_bgr: np.ndarray, maps: np.ndarray, crop_to_source: np.ndarray,
                    alpha: float = 0.5, stride: int = 8) -> np.ndarray:
    """Blend one crop's keypoint belief maps (22, h, w) into the source image IN PLACE; returns it.

    Map cell j's centre is crop pixel j*stride + (stride-1)/2 (the codec's convention), and
    `crop_to_source` (2x3) takes crop pixels to source pixels. Each pixel is mixed with the JET
    colour of its heat h in proportion alpha * h, so pixels where the maps are zero stay unchanged.
    Several hands: call once per hand.
    """
    _check_bgr(image_bgr)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be within [0, 1], got {alpha}')
    half = (stride - 1) / 2.0
    map_to_crop = np.array([[stride, 0.0, half], [0.0, stride, half]])
    map_to_source = compose_affine(crop_to_source, map_to_crop)
    heat_maps = _keypoint_heat(maps)
    # Bilinear sampling with a zero border is non-zero only within one cell of the maps: warp
    # into the source pixels that this footprint covers, not the whole image (5x less work for
    # a hand a fifth of a 640x480 frame wide).
    rows, cols = heat_maps.shape
    corners = apply_affine(map_to_source, np.array([[-1.0, -1.0], [cols, -1.0], [-1.0, rows],
                                                    [cols, rows]]))
    height, width = image_bgr.shape[:2]
    x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in corners.min(axis=0))
    x1 = min(int(np.ceil(corners[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(corners[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return image_bgr
    to_roi = map_to_source - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
    heat = cv2.warpAffine(heat_maps, to_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    heat = np.clip(heat, 0.0, 1.0)
    region = heat > 0
    if region.any():
        roi = image_bgr[y0:y1, x0:x1]
        weight = (alpha * heat[region])[:, None]
        blended = roi[region] * (1.0 - weight) + _jet(heat)[region] * weight
        roi[region] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return image_bgr


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f'images must be uint8 (H, W) or (H, W, 3) arrays, got '
                         f'{getattr(image, "dtype", type(image))} {getattr(image, "shape", "")}')
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] != 3:
        raise ValueError(f'images must have 1 or 3 channels, got shape {image.shape}')
    return image


def contact_sheet(images: Sequence[np.ndarray], columns: int, cell_size: int | tuple[int, int],
                  labels: Sequence[str] | None = None) -> np.ndarray:
    """A grid of images, `columns` wide, each fitted (aspect kept, black bars) into a cell (W, H).

    Gray images are shown as BGR; `labels` (one per image) are written in each cell's top-left.
    Returns (rows * H, columns * W, 3) uint8 with rows = ceil(len(images) / columns).
    """
    if len(images) == 0:
        raise ValueError('contact_sheet needs at least one image')
    if columns < 1:
        raise ValueError(f'columns must be >= 1, got {columns}')
    cell_w, cell_h = (cell_size, cell_size) if np.isscalar(cell_size) else (int(cell_size[0]), int(cell_size[1]))
    if cell_w < 1 or cell_h < 1:
        raise ValueError(f'cell_size must be >= 1 pixel, got {cell_size}')
    if labels is not None and len(labels) != len(images):
        raise ValueError(f'need one label per image: {len(labels)} labels for {len(images)} images')
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * cell_h, columns * cell_w, 3), np.uint8)
    for index, image in enumerate(images):
        bgr = _as_bgr(image)
        scale = min(cell_w / bgr.shape[1], cell_h / bgr.shape[0])
        new_w, new_h = max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(bgr, (new_w, new_h), interpolation=interpolation)
        top = (index // columns) * cell_h + (cell_h - new_h) // 2
        left = (index % columns) * cell_w + (cell_w - new_w) // 2
        sheet[top:top + new_h, left:left + new_w] = resized
        if labels is not None and labels[index]:
            cell = sheet[(index // columns) * cell_h:(index // columns + 1) * cell_h,
                         (index % columns) * cell_w:(index % columns + 1) * cell_w]
            draw_label(cell, str(labels[index]), (0, 0), scale=0.35)
    return sheet


def close_up(image_bgr: np.ndarray, focus_box: Sequence[float], size: int = 160,
             context: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
    """(tile, zoom): a (size, size, 3) close-up of `focus_box` (x0, y0, x1, y1), the square
    `context` times the box's longer side (at least 16 px) around its centre, for sheets of a
    model's errors; `zoom` (2x3) maps image pixels into the tile, so that what is drawn on it
    after zooming stays thin and sharp."""
    _check_bgr(image_bgr)
    x0, y0, x1, y1 = (float(v) for v in focus_box)
    if not (np.all(np.isfinite((x0, y0, x1, y1))) and x1 > x0 and y1 > y0) or size < 16 or context <= 0:
        raise ValueError(f'focus_box must be finite with x1 > x0 and y1 > y0, size >= 16 and '
                         f'context > 0; got {focus_box}, {size}, {context}')
    side = max(x1 - x0, y1 - y0, 16.0 / context) * context
    scale = size / side
    zoom = np.array([[scale, 0.0, size / 2 - scale * (x0 + x1) / 2],
                     [0.0, scale, size / 2 - scale * (y0 + y1) / 2]])
    tile = cv2.warpAffine(image_bgr, zoom, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(48, 48, 48))
    return tile, zoom


def detection_close_up(image_bgr: np.ndarray, focus_box: Sequence[float], truth_boxes: np.ndarray,
                       boxes: np.ndarray, scores: np.ndarray, score_threshold: float, size: int = 160,
                       context: float = 1.6) -> np.ndarray:
    """The close_up of `focus_box` for sheets of a detector's errors: ground-truth boxes in
    green, detections in red at or above `score_threshold` and in orange below it, each with its
    score (boxes in `image_bgr` pixels)."""
    tile, zoom = close_up(image_bgr, focus_box, size, context)

    def draw(box, color, text=None):
        corners = apply_affine(zoom, np.asarray(box, np.float64).reshape(2, 2))
        cv2.rectangle(tile, _fixed_point(corners[0]), _fixed_point(corners[1]), color, 1, cv2.LINE_AA,
                      SHIFT_BITS)
        if text is not None:
            cv2.putText(tile, text, (int(corners[0, 0]) + 2, int(corners[0, 1]) + 12), FONT, 0.35, color, 1,
                        cv2.LINE_AA)

    for box in np.asarray(truth_boxes, np.float64).reshape(-1, 4):
        draw(box, (0, 220, 0))
    for box, score in zip(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores).reshape(-1)):
        draw(box, (0, 0, 255) if score >= score_threshold else (0, 165, 255), f'{score:.2f}')
    return tile


def keypoint_close_up(image_bgr: np.ndarray, truth: np.ndarray, visible: np.ndarray, predicted: np.ndarray,
                      size: int = 160, context: float = 1.4) -> np.ndarray:
    """The close_up of a hand's visible ground-truth keypoints (21, 2) for sheets of a keypoint
    model's errors: the truth in white, thin, under the prediction (21, 2) in finger colours."""
    truth, predicted = np.asarray(truth, np.float64), np.asarray(predicted, np.float64)
    seen = truth[np.asarray(visible, bool)]
    if len(seen) == 0:
        raise ValueError('keypoint_close_up needs at least one visible ground-truth keypoint')
    box = (*(seen.min(axis=0) - 4.0), *(seen.max(axis=0) + 4.0))
    tile, zoom = close_up(image_bgr, box, size, context)
    draw_hand(tile, apply_affine(zoom, truth), visible, thickness=1, color=(255, 255, 255))
    return draw_hand(tile, apply_affine(zoom, predicted), thickness=1)


def belief_map_grid(maps: np.ndarray, image_bgr: np.ndarray | None = None, cell: int = 96,
                    columns: int = 6) -> np.ndarray:
    """One JET tile per belief map (up to 22, named from KEYPOINT_NAMES + 'background'), blended
    half-and-half over `image_bgr` (the crop) when given; for the trainer's per-stage plots."""
    array = np.asarray(maps, dtype=np.float32)
    if array.ndim != 3 or not 1 <= array.shape[0] <= NUM_MAPS or not np.all(np.isfinite(array)):
        raise ValueError(f'maps must be a finite (K, h, w) array with 1..{NUM_MAPS} maps, got shape {array.shape}')
    backdrop = None
    if image_bgr is not None:
        backdrop = cv2.resize(_as_bgr(image_bgr), (cell, cell), interpolation=cv2.INTER_AREA)
    tiles = []
    for belief in array:
        tile = _jet(np.clip(cv2.resize(belief, (cell, cell), interpolation=cv2.INTER_LINEAR), 0.0, 1.0))
        tiles.append(tile if backdrop is None else cv2.addWeighted(backdrop, 0.5, tile, 0.5, 0.0))
    names = (KEYPOINT_NAMES + ('background',))[:len(tiles)]
    return contact_sheet(tiles, columns, cell, labels=names)
