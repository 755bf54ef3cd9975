"""The one heatmap codec: training targets (encode) and inference decoding (decode) share it, so the
trainer and the deployed node cannot disagree about where a belief-map cell lies.

Map cell j (row or column) of an S x S belief map covers input pixels j*stride .. j*stride+stride-1,
so its centre sits at input pixel j*stride + (stride-1)/2: the same correspondence cv2.resize uses
when it upsamples the map by `stride` (destination pixel x samples source (x + 0.5)/stride - 0.5).
numpy + OpenCV conventions only; no torch, no ROS.
"""
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from hand_cpm_ros.geometry import apply_affine
from hand_cpm_ros.keypoints import BACKGROUND, NUM_KEYPOINTS, NUM_MAPS

CUBIC_A = -0.75  # OpenCV's bicubic kernel parameter (cv2.resize INTER_CUBIC)
LOG_FLOOR = 1e-30  # belief values are clamped to this before the log of the Gaussian fit


@lru_cache(maxsize=16)
def cubic_upsample_matrix(map_size: int, stride: int) -> np.ndarray:
    """(map_size*stride, map_size) matrix R with R @ m @ R.T == cv2.resize(m, fx=fy=stride, INTER_CUBIC).

    Row x holds the four bicubic weights of destination pixel x at source cells floor(f)-1..floor(f)+2,
    f = (x + 0.5)/stride - 0.5, clamped to the map (OpenCV replicates the border). Read-only, cached.
    """
    pixels = np.arange(map_size * stride)
    source = (pixels + 0.5) / stride - 0.5
    first = np.floor(source).astype(np.int64)
    t = source - first
    a = CUBIC_A
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    weights = (w0, w1, w2, 1.0 - w0 - w1 - w2)
    matrix = np.zeros((map_size * stride, map_size))
    for tap, weight in enumerate(weights):
        np.add.at(matrix, (pixels, np.clip(first - 1 + tap, 0, map_size - 1)), weight)
    matrix.setflags(write=False)
    return matrix


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian belief-map targets and their decoding for a square network input.

    input_size: square network input (crop) in pixels; stride: belief-map stride, the maps are
    input_size // stride square; sigma: Gaussian sigma in input pixels (OpenPose's hand net ~7 at 368).
    """

    input_size: int = 368
    stride: int = 8
    sigma: float = 7.0

    def __post_init__(self):
        if int(self.stride) != self.stride or self.stride < 1:
            raise ValueError(f'stride must be an integer >= 1, got {self.stride}')
        if int(self.input_size) != self.input_size or self.input_size < self.stride \
                or self.input_size % self.stride:
            raise ValueError(f'input_size must be a positive multiple of stride {self.stride}, '
                             f'got {self.input_size} (e.g. 368, 256 or 192 for stride 8)')
        if self.input_size // self.stride < 3:
            raise ValueError(f'input_size must give belief maps of at least 3x3 cells, got '
                             f'{self.input_size} / stride {self.stride}')
        if not np.isfinite(self.sigma) or self.sigma <= 0:
            raise ValueError(f'sigma must be a finite number > 0 (input pixels), got {self.sigma}')

    def map_size(self) -> int:
        """Side S of the S x S belief maps."""
        return self.input_size // self.stride

    def cell_centres(self) -> np.ndarray:
        """Input-pixel coordinate of each map cell's centre, (S,) float64."""
        return np.arange(self.map_size()) * self.stride + (self.stride - 1) / 2.0

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (21, 2) in input (crop) pixels, visible (21,) bool -> targets (22, S, S) float32, weights (22,).

        Each visible keypoint inside the crop (-0.5 .. input_size-0.5) gets a unit-height Gaussian
        sampled at the cell centres and weight 1; invisible or out-of-crop keypoints get an all-zero
        map and weight 0. The background map (index 21) is 1 - max over the keypoint maps, weight 1.
        """
        points = np.asarray(keypoints, dtype=np.float64)
        mask = np.asarray(visible, dtype=bool)
        if points.shape != (NUM_KEYPOINTS, 2) or mask.shape != (NUM_KEYPOINTS,):
            raise ValueError(f'keypoints must be ({NUM_KEYPOINTS}, 2) and visible ({NUM_KEYPOINTS},), '
                             f'got {points.shape} and {mask.shape}')
        if not np.all(np.isfinite(points[mask])):
            raise ValueError('visible keypoints contain non-finite coordinates: mark them invisible or fix them')
        edge = (-0.5, self.input_size - 0.5)
        inside = np.all((points >= edge[0]) & (points <= edge[1]), axis=1, where=mask[:, None]) & mask
        centres = self.cell_centres()
        coords = np.where(inside[:, None], points, 0.0)
        gauss_x = np.exp(-(centres[None, :] - coords[:, :1]) ** 2 / (2 * self.sigma ** 2))
        gauss_y = np.exp(-(centres[None, :] - coords[:, 1:]) ** 2 / (2 * self.sigma ** 2))
        size = self.map_size()
        targets = np.zeros((NUM_MAPS, size, size), dtype=np.float32)
        targets[:NUM_KEYPOINTS] = gauss_y[:, :, None] * gauss_x[:, None, :] * inside[:, None, None]
        targets[BACKGROUND] = 1.0 - targets[:NUM_KEYPOINTS].max(axis=0)
        weights = np.append(inside, True).astype(np.float32)
        return targets, weights

    def decode(self, maps: np.ndarray, crop_to_source: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Belief maps (21+, S, S) -> keypoints (21, 2) float64 and scores (21,) in [0, 1].

        Keypoints are in input pixels, or in source pixels when `crop_to_source` (2x3) is given.
        Only the first 21 maps are used (the background map is ignored). See decode_batch.
        """
        keypoints, scores = self.decode_batch(np.asarray(maps)[None],
                                              None if crop_to_source is None else [crop_to_source])
        return keypoints[0], scores[0]

    def decode_batch(self, maps: np.ndarray,
                     crop_to_source: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Belief maps (N, 21+, S, S) -> keypoints (N, 21, 2) and scores (N, 21).

        Position: the low-resolution argmax cell, refined by a Gaussian fit (a parabola through the
        log of the map along each axis, the idea of DARK / mmpose's `refine_keypoints_dark`),
        clipped to that cell. The log of a Gaussian is quadratic, so the fit recovers an encoded keypoint
        exactly at any sub-pixel position and any sigma; OpenPose's bicubic-upsample-then-argmax is
        biased towards cell centres (up to 0.41 px per axis at sigma 7, stride 8; pixels for smaller
        sigma or near the crop edge). A map with no proper peak keeps the cell centre.
        Score: OpenPose's, the map bicubically upsampled to the input resolution (cv2.resize
        INTER_CUBIC) read at the keypoint's nearest input pixel, clipped to [0, 1]. Only that pixel is
        computed, from the rows of cubic_upsample_matrix (the very taps, weights and replicated
        border of cv2.resize), so it equals the full resize there without resizing whole maps.
        """
        array = np.asarray(maps)
        size = self.map_size()
        if array.ndim != 4 or array.shape[1] < NUM_KEYPOINTS or array.shape[2:] != (size, size):
            raise ValueError(f'belief maps must have shape (N, >={NUM_KEYPOINTS}, {size}, {size}) for '
                             f'input_size {self.input_size} / stride {self.stride}, got {array.shape}')
        count = array.shape[0]
        if crop_to_source is not None and len(crop_to_source) != count:
            raise ValueError(f'need one crop_to_source affine per sample: {len(crop_to_source)} for {count} samples')
        beliefs = array[:, :NUM_KEYPOINTS].astype(np.float64).reshape(-1, size, size)
        if not np.all(np.isfinite(beliefs)):
            raise ValueError('belief maps contain non-finite values (NaN or inf): check the network '
                             'output and the input image normalisation')
        peak_cell = np.stack(np.divmod(beliefs.reshape(len(beliefs), -1).argmax(axis=1), size), axis=1)
        cells = peak_cell + self._gaussian_offsets(beliefs, peak_cell)          # (M, 2) as (row, col)
        pixels = cells[:, ::-1] * self.stride + (self.stride - 1) / 2.0          # (M, 2) as (x, y)

        upsample = cubic_upsample_matrix(size, self.stride)
        nearest = np.clip(np.rint(pixels), 0, size * self.stride - 1).astype(np.int64)
        values = np.einsum('ms,mst,mt->m', upsample[nearest[:, 1]], beliefs, upsample[nearest[:, 0]])

        keypoints = pixels.reshape(count, NUM_KEYPOINTS, 2)
        scores = np.clip(values, 0.0, 1.0).reshape(count, NUM_KEYPOINTS)
        if crop_to_source is not None:
            keypoints = np.stack([apply_affine(affine, points) for affine, points in zip(crop_to_source, keypoints)])
        return keypoints, scores

    @staticmethod
    def _gaussian_offsets(beliefs: np.ndarray, peak_cell: np.ndarray) -> np.ndarray:
        """Sub-cell (row, col) offsets in [-0.5, 0.5] of the Gaussian fitted around each peak cell.

        Per axis, the parabola through log(map) at the three cells nearest the peak (moved inwards
        at the map border) has its vertex exactly at the centre of a sampled Gaussian. Fitting each
        axis on its own (no cross term) keeps one noisy diagonal cell from spoiling the fit.
        """
        size = beliefs.shape[-1]
        index = np.arange(len(beliefs))[:, None]
        centre = np.clip(peak_cell, 1, size - 2)
        steps = np.arange(-1, 2)
        along_rows = beliefs[index, centre[:, 0, None] + steps, peak_cell[:, 1, None]]   # (M, 3)
        along_cols = beliefs[index, peak_cell[:, 0, None], centre[:, 1, None] + steps]   # (M, 3)
        offsets = []
        for samples, axis in ((along_rows, 0), (along_cols, 1)):
            log_values = np.log(np.maximum(samples, LOG_FLOOR))
            slope = (log_values[:, 2] - log_values[:, 0]) / 2
            curvature = log_values[:, 2] - 2 * log_values[:, 1] + log_values[:, 0]
            vertex = centre[:, axis] - slope / np.where(curvature < 0, curvature, -1.0)
            offsets.append(np.where(curvature < 0, np.clip(vertex - peak_cell[:, axis], -0.5, 0.5), 0.0))
        return np.stack(offsets, axis=1)

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) for checkpoints and ONNX metadata."""
        return {'input_size': int(self.input_size), 'stride': int(self.stride), 'sigma': float(self.sigma)}

    @classmethod
    def from_dict(cls, values: dict) -> 'HeatmapCodec':
        """Inverse of to_dict; unknown or missing keys are a ValueError naming them."""
        expected = set(asdict(cls()))
        if not isinstance(values, dict) or set(values) != expected:
            got = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise ValueError(f'codec settings must have exactly the keys {sorted(expected)}, got {got}')
        return cls(input_size=int(values['input_size']), stride=int(values['stride']), sigma=float(values['sigma']))
