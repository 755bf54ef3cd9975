"""Crop geometry shared by the node, the offline tools and the trainer (numpy + OpenCV only).

Pixel convention everywhere: pixel centres sit at integer coordinates and (0, 0) is the centre of
the top-left pixel (OpenCV's), so an image of width W covers x in [-0.5, W - 0.5]. Boxes are
(x0, y0, x1, y1) in that continuous frame. Affine transforms are 2x3 float64 matrices acting on
column vectors (x, y, 1), the form cv2.warpAffine takes.
"""
from collections.abc import Sequence

import cv2
import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _finite_array(values, name: str, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """`values` as a float64 array, checked for shape (None = any length) and finiteness."""
    array = np.asarray(values, dtype=np.float64)
    if shape is not None and (array.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(array.shape, shape))):
        want = ', '.join('N' if size is None else str(size) for size in shape)
        raise ValueError(f'{name} must have shape ({want}), got {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name} contains non-finite values (NaN or inf): {array.tolist()}')
    return array


def _check_crop(cx: float, cy: float, side: float, out_size: int) -> None:
    _finite_array((cx, cy, side), 'crop centre and side')
    if side <= 0:
        raise ValueError(f'crop side must be > 0 pixels, got {side}')
    if int(out_size) != out_size or out_size < 1:
        raise ValueError(f'out_size must be an integer >= 1, got {out_size}')


def square_crop(box: ArrayLike, margin: float = 0.25, min_side: float = 8.0) -> tuple[float, float, float]:
    """Square (cx, cy, side) centred on `box` = (x0, y0, x1, y1), side = max(w, h) * (1 + 2 * margin).

    The side is at least `min_side`, so a degenerate (point-like) box still gives a usable crop.
    The square may extend past the image: warp_crop pads with a constant border.
    """
    x0, y0, x1, y1 = _finite_array(box, 'box', (4,))
    if x1 < x0 or y1 < y0:
        raise ValueError(f'box must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {(x0, y0, x1, y1)}')
    if margin < 0 or min_side <= 0:
        raise ValueError(f'margin must be >= 0 and min_side > 0, got margin={margin}, min_side={min_side}')
    side = max(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin), float(min_side))
    return (float((x0 + x1) / 2), float((y0 + y1) / 2), float(side))


def crop_affine(cx: float, cy: float, side: float, out_size: int, rotation_deg: float = 0.0) -> np.ndarray:
    """Source -> crop 2x3 affine for an out_size x out_size crop of the square (cx, cy, side).

    The square's outer edge cx - side/2 .. cx + side/2 maps to the crop's outer edge
    -0.5 .. out_size - 0.5, so the square's centre lands on (out_size - 1) / 2. A positive
    `rotation_deg` turns the image content counter-clockwise in the crop about that centre, as
    cv2.getRotationMatrix2D does (the trainer's rotation augmentation).
    """
    _check_crop(cx, cy, side, out_size)
    scale = out_size / side
    angle = np.deg2rad(rotation_deg)
    alpha, beta = scale * np.cos(angle), scale * np.sin(angle)
    linear = np.array([[alpha, beta], [-beta, alpha]])
    crop_centre = (out_size - 1) / 2.0
    offset = crop_centre - linear @ np.array([cx, cy], dtype=np.float64)
    return np.hstack([linear, offset[:, None]])


def source_to_crop_affine(cx: float, cy: float, side: float, out_size: int) -> np.ndarray:
    """Source -> crop 2x3 affine of an axis-aligned square crop (crop_affine without rotation)."""
    return crop_affine(cx, cy, side, out_size)


def crop_to_source_affine(cx: float, cy: float, side: float, out_size: int) -> np.ndarray:
    """Crop -> source 2x3 affine: crop pixel (u, v) to source pixels; inverse of source_to_crop_affine."""
    return invert_affine(crop_affine(cx, cy, side, out_size))


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine; ValueError if it is singular."""
    matrix = _finite_array(affine, 'affine', (2, 3))
    linear = matrix[:, :2]
    if abs(np.linalg.det(linear)) < 1e-12:
        raise ValueError(f'affine is singular (determinant ~0), cannot invert: {matrix.tolist()}')
    inverse_linear = np.linalg.inv(linear)
    return np.hstack([inverse_linear, (-inverse_linear @ matrix[:, 2])[:, None]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies `inner` first, then `outer`."""
    outer = _finite_array(outer, 'outer affine', (2, 3))
    inner = _finite_array(inner, 'inner affine', (2, 3))
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def apply_affine(affine: np.ndarray, points: ArrayLike) -> np.ndarray:
    """Map points (N, 2) through a 2x3 affine; returns (N, 2) float64. NaN points stay NaN."""
    matrix = _finite_array(affine, 'affine', (2, 3))
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f'points must have shape (N, 2), got {array.shape}')
    return array @ matrix[:, :2].T + matrix[:, 2]


def warp_crop(image: np.ndarray, source_to_crop: np.ndarray, out_size: int,
              border_value: Sequence[float] = (114, 114, 114)) -> np.ndarray:
    """Cut an out_size x out_size crop from `image` through a source -> crop affine.

    Bilinear sampling; parts of the crop outside the image get `border_value`.
    """
    matrix = _finite_array(source_to_crop, 'source_to_crop', (2, 3))
    if int(out_size) != out_size or out_size < 1:
        raise ValueError(f'out_size must be an integer >= 1, got {out_size}')
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f'image must be a non-empty (H, W) or (H, W, C) array, '
                         f'got {getattr(image, "shape", type(image))}')
    return cv2.warpAffine(image, matrix, (int(out_size), int(out_size)), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in border_value))


def box_from_keypoints(points: ArrayLike, visible: ArrayLike | None = None) -> tuple[float, float, float, float]:
    """Tight box (x0, y0, x1, y1) around the visible keypoints (all of them when `visible` is None)."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f'points must have shape (N, 2), got {array.shape}')
    mask = np.ones(len(array), bool) if visible is None else np.asarray(visible, dtype=bool)
    if mask.shape != (len(array),):
        raise ValueError(f'visible must have shape ({len(array)},), got {mask.shape}')
    chosen = _finite_array(array[mask], 'visible keypoints')
    if len(chosen) == 0:
        raise ValueError('no visible keypoints: cannot build a box (mark at least one keypoint visible)')
    x0, y0 = chosen.min(axis=0)
    x1, y1 = chosen.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))


def clip_box(box: ArrayLike, width: int, height: int) -> tuple[float, float, float, float]:
    """Clip a box to the image's outer edge [-0.5, width - 0.5] x [-0.5, height - 0.5]."""
    x0, y0, x1, y1 = _finite_array(box, 'box', (4,))
    if width < 1 or height < 1:
        raise ValueError(f'image size must be at least 1x1, got width={width}, height={height}')
    x0, x1 = np.clip([x0, x1], -0.5, width - 0.5)
    y0, y1 = np.clip([y0, y1], -0.5, height - 0.5)
    return (float(x0), float(y0), float(x1), float(y1))


def _boxes(values, name: str) -> np.ndarray:
    """Boxes as a finite (N, 4) float64 array; an empty list gives (0, 4)."""
    if np.size(values) == 0:
        return np.zeros((0, 4))
    return _finite_array(values, name, (None, 4))


def _intersections_and_areas(boxes_a: ArrayLike,
                             boxes_b: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas (N, M) and the areas of A (N,) and of B (M,)."""
    a, b = _boxes(boxes_a, 'boxes_a'), _boxes(boxes_b, 'boxes_b')
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    return intersection, area_a, area_b


def box_iou_matrix(boxes_a: ArrayLike, boxes_b: ArrayLike) -> np.ndarray:
    """Intersection over union of every box in A (N, 4) with every box in B (M, 4): (N, M).

    Areas are continuous (x1 - x0) * (y1 - y0); a pair whose union is empty has IoU 0.
    """
    intersection, area_a, area_b = _intersections_and_areas(boxes_a, boxes_b)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def box_containment_matrix(boxes_a: ArrayLike, boxes_b: ArrayLike) -> np.ndarray:
    """Share of the smaller box's area that lies inside the other, for every box in A (N, 4) with
    every box in B (M, 4): (N, M). 1 when one box holds the other, however different their sizes
    (where IoU is small); 0 for a pair with an empty box."""
    intersection, area_a, area_b = _intersections_and_areas(boxes_a, boxes_b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.divide(intersection, smaller, out=np.zeros_like(intersection), where=smaller > 0)


def box_iou(box_a: ArrayLike, box_b: ArrayLike) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    return float(box_iou_matrix(np.reshape(_finite_array(box_a, 'box_a', (4,)), (1, 4)),
                                np.reshape(_finite_array(box_b, 'box_b', (4,)), (1, 4)))[0, 0])
