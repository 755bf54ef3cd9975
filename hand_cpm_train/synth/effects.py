"""Camera effects applied to a finished synthetic image: colour/gamma jitter, motion or defocus blur
and sensor noise (JPEG artefacts come from saving with a random quality). OpenCV/numpy only."""
from __future__ import annotations

import cv2
import numpy as np

JPEG_QUALITY_RANGE = (40, 95)


def sample_jpeg_quality(rng: np.random.Generator) -> int:
    return int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    cv2.line(kernel, (0, length // 2), (length - 1, length // 2), 1.0, 1)
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return kernel / max(float(kernel.sum()), 1e-6)


def apply_camera_effects(image_bgr: np.ndarray, seed: int) -> np.ndarray:
    """A new uint8 image: random colour/contrast/gamma, sometimes blur, sometimes sensor noise."""
    rng = np.random.default_rng(seed)
    image = image_bgr.astype(np.float32) / 255.0
    if rng.random() < 0.25:  # desaturate or boost colour
        grey = image.mean(axis=2, keepdims=True)
        image = grey + rng.uniform(0.3, 1.4) * (image - grey)
    image = image * rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance
    image = (image - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
    image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    blur = rng.random()
    if blur < 0.15:
        image = cv2.filter2D(image, -1, _motion_kernel(int(rng.integers(3, 12)), rng.uniform(0, 180)))
    elif blur < 0.35:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.6))
    if rng.random() < 0.6:
        sigma = rng.uniform(0.005, 0.04)
        image = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
