"""Whole-frame data for the hand localiser: `frame` scenes (hand-cpm-synth --scene frame), one
sample per image with all its hand boxes, frames without hands included (they teach the network
not to fire on faces, arms and skin-coloured clutter).

Training samples go through the same letterbox as inference (hand_cpm_ros.localizer.letterbox),
then a random zoom / shift / mirror of the letterboxed image that moves the boxes with it, then
the crop trainer's photometric augmentation without occluders (an occluder could hide a whole
small hand and leave its box as a false label).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from hand_cpm_ros.backends.base import ModelInfo, normalize_crops
from hand_cpm_ros.geometry import apply_affine
from hand_cpm_ros.localizer import LocalizerCodec, letterbox
from hand_cpm_train.augment import AugmentConfig, photometric
from hand_cpm_train.data import (_annotation_files, _image_beside, _parse_points, _read_json, group_fraction,
                                 read_image)

MIN_KEPT_AREA = 0.3   # a box cut by the zoom keeps its label if this much of it stays in view
# Rendered frames mark each keypoint hidden by the hand itself, another hand, an occluder or the
# image border; a hand with fewer than MIN_SEEN_KEYPOINTS of its keypoints visible is mostly out of
# sight (hand-cpm-eval's recall breakdown; --ignore-hidden-hands in training).
MIN_SEEN_KEYPOINTS = 7


@dataclass(frozen=True)
class FrameRecord:
    """One frame: its image and every hand's box (x0, y0, x1, y1) in source pixels."""
    image_path: Path
    boxes: np.ndarray        # (M, 4) float64
    is_left: np.ndarray      # (M,) bool
    visible_keypoints: np.ndarray   # (M,) int: keypoints marked visible, -1 without "hand_pts"


def load_frame_records(root: str | Path) -> list[FrameRecord]:
    """Every frame annotation under `root`, in a stable order; ValueError if there is none."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f'data directory {root} does not exist')
    records = []
    for path in _annotation_files(root):
        content = _read_json(path)
        if not isinstance(content, dict) or not isinstance(content.get('hands'), list):
            raise ValueError(f'{path} has no "hands" list: the localiser trains on frame scenes '
                             f'(hand-cpm-synth --scene frame)')
        boxes = np.array([hand['box'] for hand in content['hands']], dtype=np.float64).reshape(-1, 4)
        if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] <= boxes[:, :2]):
            raise ValueError(f'{path}: every hand box must be finite with x1 > x0 and y1 > y0')
        is_left = np.array([bool(hand.get('is_left', 0)) for hand in content['hands']], dtype=bool)
        visible = np.array([_parse_points(hand['hand_pts'], str(path))[1].sum() if 'hand_pts' in hand else -1
                            for hand in content['hands']], dtype=np.int64)
        records.append(FrameRecord(_image_beside(path), boxes, is_left, visible))
    if not records:
        raise ValueError(f'{root} holds no frame annotations (NAME.json with a "hands" list)')
    return records


def split_frames(records: list[FrameRecord], val_fraction: float
                 ) -> tuple[list[FrameRecord], list[FrameRecord]]:
    """(train, val): each frame goes to one side by the hash of its file name (deterministic, the
    same split in hand-cpm-train and hand-cpm-eval)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    train, val = [], []
    for record in records:
        (val if group_fraction(record.image_path.name) < val_fraction else train).append(record)
    return train, val


def _transform_boxes(affine: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Axis-aligned boxes through an affine without rotation (scale, shift, mirror)."""
    corners = np.concatenate([apply_affine(affine, boxes[:, :2]), apply_affine(affine, boxes[:, 2:])], axis=1)
    return np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                           np.maximum(corners[:, :2], corners[:, 2:])], axis=1)


def _random_view(rng: np.random.Generator, width: int, height: int, zoom_min: float,
                 zoom_max: float) -> tuple[np.ndarray, bool]:
    """A zoom (zoom_min..zoom_max, log-uniform) about a shifted centre, mirrored half of the time."""
    scale = float(np.exp(rng.uniform(np.log(zoom_min), np.log(zoom_max))))
    shift = rng.uniform(-0.15, 0.15, size=2) * (width, height)
    mirror = bool(rng.random() < 0.5)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    sx = -scale if mirror else scale
    affine = np.array([[sx, 0.0, centre[0] - sx * centre[0] + shift[0]],
                       [0.0, scale, centre[1] - scale * centre[1] + shift[1]]])
    return affine, mirror


class FrameDataset(Dataset):
    """Letterboxed, augmented frames with LocalizerCodec targets; with `ignore_hidden_hands`, hands
    with fewer than MIN_SEEN_KEYPOINTS visible keypoints are ignored hands of the targets."""

    def __init__(self, records: list[FrameRecord], codec: LocalizerCodec, model_info: ModelInfo,
                 train: bool, seed: int = 0, augment: AugmentConfig | None = None,
                 ignore_hidden_hands: bool = False):
        self.records, self.codec, self.model_info = list(records), codec, model_info
        self.train, self.seed, self.epoch = train, seed, 0
        self.ignore_hidden_hands = ignore_hidden_hands
        self.augment = replace(augment or AugmentConfig(), occlusion_prob=0.0, cutout_prob=0.0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(letterboxed uint8 BGR image, boxes (M, 4) in input pixels, is_left (M,), ignored (M,))."""
        record = self.records[index]
        image, source_to_input = letterbox(read_image(record.image_path), self.codec.input_width,
                                           self.codec.input_height)
        boxes = _transform_boxes(source_to_input, record.boxes)
        is_left = record.is_left.copy()
        ignored = self.ignore_hidden_hands & (record.visible_keypoints >= 0) & \
            (record.visible_keypoints < MIN_SEEN_KEYPOINTS)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            view, mirror = _random_view(rng, self.codec.input_width, self.codec.input_height,
                                        self.augment.frame_zoom_min, self.augment.frame_zoom_max)
            image = cv2.warpAffine(image, view, (self.codec.input_width, self.codec.input_height),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                   borderValue=(114, 114, 114))
            moved = _transform_boxes(view, boxes)
            limits = np.array([-0.5, -0.5, self.codec.input_width - 0.5, self.codec.input_height - 0.5])
            clipped = np.concatenate([np.maximum(moved[:, :2], limits[:2]),
                                      np.minimum(moved[:, 2:], limits[2:])], axis=1)
            area = np.prod(np.clip(moved[:, 2:] - moved[:, :2], 0, None), axis=1)
            kept_area = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
            keep = kept_area >= MIN_KEPT_AREA * np.maximum(area, 1e-9)
            boxes, is_left, ignored = clipped[keep], is_left[keep] ^ mirror, ignored[keep]
            image = photometric(image, rng, self.augment)
        return image, boxes, is_left, ignored

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, boxes, is_left, ignored = self.sample(index)
        targets = self.codec.encode(boxes, [int(v) for v in is_left], ignored)
        item = {key: torch.from_numpy(value) for key, value in targets.items()}
        item['image'] = torch.from_numpy(normalize_crops(image[None], self.model_info)[0])
        return item
