"""2D image layers around the rendered hands: backgrounds (procedural and real photos from
scikit-image), skin-coloured distractors that are not hands (face-like ovals, blobs, skin textures)
and occluders painted over the hands. Every layer is drawn from its own integer seed, so an explicit
scene can reproduce it exactly. BGR uint8 images, OpenCV only (plus skimage.data for photos)."""
from __future__ import annotations

import functools

import cv2
import numpy as np

from hand_cpm_train.synth.appearance import sample_skin_srgb

# Bundled scikit-image photos (no download needed), with the rows kept: the lower part of
# `astronaut` shows a gloved hand, which would be an unlabelled hand; `camera` (a gloved hand on
# the camera) is left out for the same reason.
PHOTOS = {'astronaut': slice(0, 400), 'brick': None, 'cat': None, 'chelsea': None, 'clock': None,
          'coffee': None, 'coins': None, 'grass': None, 'gravel': None, 'hubble_deep_field': None,
          'immunohistochemistry': None, 'moon': None, 'page': None, 'retina': None, 'rocket': None,
          'text': None, 'cell': None}
PROCEDURAL = ('noise', 'gradient', 'stripes', 'checkerboard', 'shapes')
BACKGROUND_KINDS = tuple(f'photo:{name}' for name in PHOTOS) + PROCEDURAL


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data  # training-only dependency

    image = getattr(skimage.data, name)()
    rows = PHOTOS[name]
    if rows is not None:
        image = image[rows]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, 2::-1])


def _random_bgr(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], octaves: int = 4) -> np.ndarray:
    """(H,W) float32 fractal value noise in [0, 1]."""
    width, height = size
    total = np.zeros((height, width), np.float32)
    cells = int(rng.integers(2, 6))
    amplitude, weight = 1.0, 0.0
    for _ in range(octaves):
        grid = rng.random((cells, cells)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight += amplitude
        amplitude *= 0.5
        cells *= 2
    total /= weight
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def _two_colour(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    first, second = _random_bgr(rng), _random_bgr(rng)
    return (first + field[:, :, None] * (second - first)).astype(np.float32)


def _photo_background(name: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    photo = _photo(name)
    width, height = size
    photo_height, photo_width = photo.shape[:2]
    scale = rng.uniform(0.35, 1.0)
    aspect = width / height
    crop_height = max(8, int(scale * min(photo_height, photo_width / aspect)))
    crop_width = max(8, min(photo_width, int(crop_height * aspect)))
    top = int(rng.integers(0, photo_height - crop_height + 1))
    left = int(rng.integers(0, photo_width - crop_width + 1))
    crop = photo[top:top + crop_height, left:left + crop_width]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.3:
        crop = crop[::-1]
    image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if crop_width > width
                       else cv2.INTER_LINEAR).astype(np.float32)
    gains = rng.uniform(0.75, 1.25, 3)  # colour cast
    return image * gains + rng.uniform(-25, 25)


def _procedural_background(kind: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if kind == 'noise':
        return _two_colour(_smooth_noise(rng, size, octaves=int(rng.integers(2, 6))), rng)
    if kind == 'gradient':
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * np.cos(angle) + ys * np.sin(angle)
        return _two_colour((ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0), rng)
    if kind in ('stripes', 'checkerboard'):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(6, max(width, height) / 3)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        u = xs * np.cos(angle) + ys * np.sin(angle)
        v = -xs * np.sin(angle) + ys * np.cos(angle)
        if kind == 'stripes':
            wave = np.sin(2 * np.pi * u / period)
            field = (wave > 0).astype(np.float32) if rng.random() < 0.5 else 0.5 + 0.5 * wave
        else:
            field = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
        return _two_colour(field, rng)
    if kind == 'shapes':
        image = np.empty((height, width, 3), np.float32)
        image[:] = _random_bgr(rng)
        draw_random_shapes(image, rng, int(rng.integers(5, 40)))
        return image
    raise ValueError(f'unknown background kind {kind!r}; choose from {", ".join(BACKGROUND_KINDS)}')


def draw_random_shapes(image: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Paint `count` random rectangles, ellipses, polygons and thick lines onto `image` (in place)."""
    height, width = image.shape[:2]
    scale = max(width, height)
    for _ in range(count):
        colour = tuple(float(c) for c in _random_bgr(rng))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        extent = int(rng.uniform(0.03, 0.4) * scale)
        shape = rng.integers(4)
        if shape == 0:
            cv2.rectangle(image, centre, (centre[0] + extent, centre[1] + int(extent * rng.uniform(0.2, 2))),
                          colour, -1)
        elif shape == 1:
            cv2.ellipse(image, centre, (extent, max(1, int(extent * rng.uniform(0.2, 1)))),
                        rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        elif shape == 2:
            points = np.array(centre) + rng.normal(0, extent, (int(rng.integers(3, 8)), 2))
            cv2.fillPoly(image, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, centre, end, colour, int(rng.integers(1, max(2, scale // 40))), cv2.LINE_AA)


def make_background(kind: str, seed: int, size: tuple[int, int]) -> np.ndarray:
    """(H,W,3) uint8 BGR background of `kind` (see BACKGROUND_KINDS) drawn from `seed`."""
    rng = np.random.default_rng(seed)
    if kind.startswith('photo:') and kind[len('photo:'):] in PHOTOS:
        image = _photo_background(kind[len('photo:'):], rng, size)
        if rng.random() < 0.3:
            draw_random_shapes(image, rng, int(rng.integers(1, 6)))
    else:
        image = _procedural_background(kind, rng, size)
        if kind != 'shapes' and rng.random() < 0.4:
            draw_random_shapes(image, rng, int(rng.integers(1, 10)))
    return np.clip(image, 0, 255).astype(np.uint8)


def sample_background_kind(rng: np.random.Generator) -> str:
    """Real photos for 55% of the images, procedural patterns otherwise."""
    if rng.random() < 0.55:
        names = tuple(PHOTOS)
        return f'photo:{names[rng.integers(len(names))]}'
    return PROCEDURAL[rng.integers(len(PROCEDURAL))]


def _skin_bgr(rng: np.random.Generator) -> np.ndarray:
    return sample_skin_srgb(rng)[::-1] * 255.0


def _textured(mask: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A skin-like fill of `colour` with soft shading and pores/mottling, (H,W,3) float32."""
    height, width = mask.shape
    shading = 0.75 + 0.4 * _smooth_noise(rng, (width, height), octaves=3)
    grain = rng.normal(1.0, 0.04, (height, width)).astype(np.float32)
    return colour.astype(np.float32)[None, None, :] * (shading * grain)[:, :, None]


def _paste(image: np.ndarray, fill: np.ndarray, mask: np.ndarray) -> None:
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[:, :, None]
    image[:] = image * (1 - alpha) + fill * alpha


def _face(image: np.ndarray, rng: np.random.Generator, centre: tuple[int, int], radius: int) -> None:
    """A face-like oval: skin ellipse, hair, darker eyes, brows, nose and mouth marks."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    axes = (radius, int(radius * rng.uniform(1.15, 1.45)))
    angle = rng.uniform(-25, 25)
    if rng.random() < 0.8:  # hair behind/above the face
        hair = np.zeros_like(mask)
        cv2.ellipse(hair, (centre[0], centre[1] - radius // 3), (int(axes[0] * 1.15), int(axes[1] * 1.05)),
                    angle, 0, 360, 1, -1)
        hair_colour = rng.uniform(0, 90, 3) * rng.uniform(0.5, 1.5)
        _paste(image, _textured(hair, hair_colour, rng), hair)
    cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
    skin = _skin_bgr(rng)
    _paste(image, _textured(mask, skin, rng), mask)
    dark = tuple(float(c) for c in skin * rng.uniform(0.2, 0.55))
    rotation = cv2.getRotationMatrix2D((0.0, 0.0), -angle, 1.0)[:, :2]

    def at(dx: float, dy: float) -> tuple[int, int]:
        offset = rotation @ np.array([dx * axes[0], dy * axes[1]])
        return int(centre[0] + offset[0]), int(centre[1] + offset[1])

    eye = (max(1, radius // 6), max(1, radius // 10))
    for side in (-1, 1):
        cv2.ellipse(image, at(0.38 * side, -0.15), eye, angle, 0, 360, dark, -1, cv2.LINE_AA)
        cv2.ellipse(image, at(0.38 * side, -0.32), (radius // 4, max(1, radius // 14)), angle, 180, 360,
                    dark, max(1, radius // 16), cv2.LINE_AA)
    cv2.line(image, at(0.0, -0.05), at(0.05, 0.25), dark, max(1, radius // 18), cv2.LINE_AA)
    cv2.ellipse(image, at(0.0, 0.5), (radius // 3, max(1, radius // 9)), angle, 0, 180, dark,
                max(1, radius // 14), cv2.LINE_AA)


def draw_distractors(image: np.ndarray, seed: int, count: int) -> None:
    """Paint `count` skin-coloured things that are not hands onto `image` (BGR uint8, in place):
    face-like ovals, blobs, elongated limb-like shapes and skin-textured patches."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    canvas = image.astype(np.float32)
    for _ in range(count):
        kind = rng.integers(4)
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.uniform(0.04, 0.3) * min(width, height)) + 2
        mask = np.zeros((height, width), np.uint8)
        if kind == 0:
            _face(canvas, rng, centre, radius)
            continue
        if kind == 1:  # blob
            points = np.array(centre) + rng.normal(0, radius * 0.5, (int(rng.integers(5, 10)), 2))
            hull = cv2.convexHull(points.astype(np.int32))
            cv2.fillPoly(mask, [hull], 1, cv2.LINE_AA)
        elif kind == 2:  # limb-like rounded bar
            end = np.array(centre) + radius * 2.5 * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)),
                                                              np.sin(a)])
            cv2.line(mask, centre, tuple(int(c) for c in end), 1, max(2, radius // 2), cv2.LINE_AA)
        else:  # skin-textured patch
            cv2.ellipse(mask, centre, (radius, int(radius * rng.uniform(0.3, 1.0))),
                        rng.uniform(0, 180), 0, 360, 1, -1)
        _paste(canvas, _textured(mask, _skin_bgr(rng), rng), mask)
    image[:] = np.clip(canvas, 0, 255).astype(np.uint8)


def draw_occluders(image: np.ndarray, seed: int, boxes: list[tuple[float, float, float, float]],
                   background_kind: str) -> np.ndarray:
    """Paint one occluder over part of each box (x0, y0, x1, y1) onto `image` (in place): a solid or
    textured shape covering up to about a third of the box. Returns the (H,W) bool occluder mask,
    so that keypoints under it are exactly known to be hidden."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    occluded = np.zeros((height, width), np.uint8)
    canvas = image.astype(np.float32)
    for x0, y0, x1, y1 in boxes:
        box_size = max(x1 - x0, y1 - y0, 4.0)
        centre = (int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1)))
        extent = rng.uniform(0.12, 0.35) * box_size
        mask = np.zeros((height, width), np.uint8)
        if rng.random() < 0.5:
            points = np.array(centre) + rng.normal(0, extent * 0.6, (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(mask, [cv2.convexHull(points.astype(np.int32))], 1)
        else:
            cv2.ellipse(mask, centre, (int(extent), int(extent * rng.uniform(0.3, 1.0))),
                        rng.uniform(0, 180), 0, 360, 1, -1)
        if rng.random() < 0.5:
            fill = np.broadcast_to(_random_bgr(rng).astype(np.float32), canvas.shape)
        else:
            fill = make_background(background_kind if rng.random() < 0.3 else
                                   sample_background_kind(rng), int(rng.integers(2**31)),
                                   (width, height)).astype(np.float32)
        keep = mask.astype(bool)
        canvas[keep] = fill[keep]
        occluded |= mask
    image[:] = np.clip(canvas, 0, 255).astype(np.uint8)
    return occluded.astype(bool)
