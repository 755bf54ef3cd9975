"""Hand keypoint data sets: the CMU Hand Database formats and this project's `frame` scenes, a
leak-free train/validation split, and the torch Dataset that cuts, augments and encodes crops.

Formats (one directory each; `detect_format` tells them apart):
- `hand_labels_synth` (CMU "Hands from Synthetic Data", synth2..synth4): `NAME.jpg` + `NAME.json`
  `{"hand_pts": [[x, y, visible] x 21], "is_left": 0|1}`; also the crops `hand-cpm-synth` renders.
- `hand_labels` (CMU manual_train / manual_test): the same JSON per image, named
  `<video>_<frame>_<l|r>` or `<image id>_<person>_<l|r>`; frames of one video are near-duplicates.
- `hand143_panopticdb` (CMU "Hands from Panoptic Studio"): one `hands_v143_14817.json` with
  `{"root": [{"img_paths": "imgs/00000000.jpg", "joint_self": [[x, y, visible] x 21], ...}]}`.
- `frame` (hand-cpm-synth full scenes): `NAME.jpg` + `NAME.json`
  `{"width", "height", "hands": [{"hand_pts", "is_left", "box"}, ...]}`, one sample per hand.

Coordinates are taken as given: 0-based pixels with pixel centres at integers (the package's
convention; the CMU labels are OpenPose's, which uses the same one).
"""
from __future__ import annotations

import hashlib
import json
import re
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hand_cpm_ros.backends import ModelInfo, normalize_crops
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.geometry import apply_affine, box_from_keypoints, invert_affine, square_crop, warp_crop
from hand_cpm_ros.keypoints import NUM_KEYPOINTS
from hand_cpm_train.augment import AugmentConfig, CropJitter, jittered_crop_affine, photometric, sample_jitter
from hand_cpm_train.checkpoint import runtime_metadata
from hand_cpm_train.models import ModelConfig

FORMATS = ('hand_labels_synth', 'hand_labels', 'hand143_panopticdb', 'frame')
PANOPTIC_JSON = 'hands_v143_14817.json'
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
MIN_VISIBLE = 4               # fewer visible keypoints give no usable hand box
CROP_MARGIN = 0.25            # margin around the keypoint box on each side, fraction of its side
PANOPTIC_GROUP_SIZE = 50      # consecutive panoptic entries come from one capture: split in blocks
_MANUAL_NAME = re.compile(r'^(?P<group>.+)_\d+_[lr]$')


@dataclass(frozen=True)
class HandRecord:
    """One annotated hand: where its image is and its keypoints in source-image pixels."""
    image_path: Path
    keypoints: np.ndarray     # (21, 2) float64, source pixels
    visible: np.ndarray       # (21,) bool
    is_left: bool
    group: str                # split key: records of one group never cross the split


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f'cannot read annotation {path}: {error}') from error


def _parse_points(points, where: str) -> tuple[np.ndarray, np.ndarray]:
    """[[x, y, visible] x 21] -> ((21, 2) float64, (21,) bool); NaN/inf coordinates count as
    not visible."""
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f'{where}: keypoints must be {NUM_KEYPOINTS} x [x, y, visible], '
                         f'got shape {array.shape}')
    finite = np.all(np.isfinite(array[:, :2]), axis=1)
    keypoints = np.where(finite[:, None], array[:, :2], 0.0)
    return keypoints, (array[:, 2] > 0) & finite


def _image_beside(json_path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = json_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise ValueError(f'no image ({"/".join(IMAGE_SUFFIXES)}) beside annotation {json_path}')


def _annotation_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob('*.json') if path.name != PANOPTIC_JSON)


def detect_format(root: str | Path) -> str:
    """The format of data directory `root` (see the module docstring); ValueError if none fits."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f'data directory {root} does not exist')
    if (root / PANOPTIC_JSON).is_file():
        return 'hand143_panopticdb'
    for path in _annotation_files(root):
        content = _read_json(path)
        if isinstance(content, dict) and 'hands' in content:
            return 'frame'
        if isinstance(content, dict) and 'hand_pts' in content:
            return 'hand_labels' if _MANUAL_NAME.match(path.stem) else 'hand_labels_synth'
    raise ValueError(f'{root} holds no hand annotations in a known format '
                     f'({", ".join(FORMATS)}); check the path or pass --format')


def _load_per_image(root: Path, manual: bool) -> list[HandRecord]:
    records = []
    for path in _annotation_files(root):
        content = _read_json(path)
        if not isinstance(content, dict) or 'hand_pts' not in content:
            raise ValueError(f'{path} has no "hand_pts": not a CMU hand_labels annotation')
        keypoints, visible = _parse_points(content['hand_pts'], str(path))
        relative = path.relative_to(root).with_suffix('').as_posix()
        if manual:
            match = _MANUAL_NAME.match(path.stem)
            group = (path.parent.relative_to(root) / (match['group'] if match else path.stem)).as_posix()
        else:
            group = relative
        records.append(HandRecord(_image_beside(path), keypoints, visible,
                                  bool(content.get('is_left', 0)), group))
    return records


def _load_panoptic(root: Path) -> list[HandRecord]:
    content = _read_json(root / PANOPTIC_JSON)
    if not isinstance(content, dict) or not isinstance(content.get('root'), list):
        raise ValueError(f'{root / PANOPTIC_JSON} has no "root" list: not the CMU panoptic format')
    records = []
    for index, entry in enumerate(content['root']):
        where = f'{root / PANOPTIC_JSON} entry {index}'
        if 'img_paths' not in entry or 'joint_self' not in entry:
            raise ValueError(f'{where} lacks "img_paths" or "joint_self"')
        keypoints, visible = _parse_points(entry['joint_self'], where)
        # The panoptic hands are right hands seen from many cameras (is_left is not recorded).
        records.append(HandRecord(root / entry['img_paths'], keypoints, visible, False,
                                  f'block{index // PANOPTIC_GROUP_SIZE}'))
    return records


def _load_frames(root: Path) -> list[HandRecord]:
    records = []
    for path in _annotation_files(root):
        content = _read_json(path)
        if not isinstance(content, dict) or not isinstance(content.get('hands'), list):
            raise ValueError(f'{path} has no "hands" list: not a frame annotation')
        image = _image_beside(path)
        group = path.relative_to(root).with_suffix('').as_posix()
        for number, hand in enumerate(content['hands']):
            keypoints, visible = _parse_points(hand['hand_pts'], f'{path} hand {number}')
            records.append(HandRecord(image, keypoints, visible, bool(hand.get('is_left', 0)),
                                      group))
    return records


def load_records(root: str | Path, data_format: str | None = None) -> list[HandRecord]:
    """Every usable hand (at least MIN_VISIBLE visible keypoints) under `root`, in a stable order.
    `data_format` None detects it."""
    root = Path(root)
    data_format = data_format or detect_format(root)
    if data_format not in FORMATS:
        raise ValueError(f'unknown data format {data_format!r}; valid: {", ".join(FORMATS)}')
    if not root.is_dir():
        raise ValueError(f'data directory {root} does not exist')
    if data_format == 'hand143_panopticdb':
        records = _load_panoptic(root)
    elif data_format == 'frame':
        records = _load_frames(root)
    else:
        records = _load_per_image(root, manual=data_format == 'hand_labels')
    usable = [record for record in records if record.visible.sum() >= MIN_VISIBLE]
    if not usable:
        raise ValueError(f'{root} ({data_format}) has no hand with at least {MIN_VISIBLE} visible '
                         f'keypoints')
    return usable


def group_fraction(group: str) -> float:
    """A stable pseudo-random number in [0, 1) for a group name (SHA-1, not Python's hash)."""
    return int(hashlib.sha1(group.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_by_group(records: Sequence[HandRecord], val_fraction: float
                   ) -> tuple[list[HandRecord], list[HandRecord]]:
    """(train, val): every record of a group goes to the same side, chosen by the group's hash,
    so the split is deterministic and near-duplicate frames of one video never leak across."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    train, val = [], []
    for record in records:
        (val if group_fraction(record.group) < val_fraction else train).append(record)
    return train, val


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot read image {path} (missing or not an image)')
    return image


def model_info_for(config: ModelConfig, codec: HeatmapCodec) -> ModelInfo:
    """The ModelInfo a deployed export of this model will carry: the dataset normalises crops
    through it with the runtime's own normalize_crops, so training and inference agree."""
    return ModelInfo.from_metadata(runtime_metadata(config, codec.to_dict()))


class HandCropDataset(Dataset):
    """Square crops around each hand, warped to the model's input size, with encoded targets.

    The crop is the keypoint box squared with CROP_MARGIN; with `augment`, the
    scale/rotation/shift/mirror jitter goes into that same affine and photometric ops follow.
    A sample's randomness comes from (seed, epoch, index) alone, so it does not depend on the
    worker that loads it or the number of workers, and a resumed run sees the same samples.

    `use_hidden_keypoints`: keypoints marked not visible but lying inside the image also shape
    the crop box and are supervised. Right for renders, whose hidden joints (self-occluded) have
    exact coordinates and whose localiser boxes cover the whole hand; wrong for hand-labelled
    data, where a hidden joint's position is a guess.
    """

    def __init__(self, records: Sequence[HandRecord], codec: HeatmapCodec, model_info: ModelInfo,
                 augment: AugmentConfig | None = None, seed: int = 0,
                 use_hidden_keypoints: bool = False):
        if not records:
            raise ValueError('HandCropDataset needs at least one record')
        if codec.input_size != model_info.input_size:
            raise ValueError(f'codec input_size {codec.input_size} differs from the model\'s '
                             f'{model_info.input_size}')
        self.records = list(records)
        self.codec = codec
        self.model_info = model_info   # mean, std, channel order: the runtime's normalisation
        self.augment = augment
        self.seed = seed
        self.use_hidden_keypoints = use_hidden_keypoints
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws per epoch (call before creating the DataLoader iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def labelled(self, record: HandRecord, image_shape: tuple[int, ...]) -> np.ndarray:
        """(21,) bool: the keypoints that shape the crop and get supervised."""
        if not self.use_hidden_keypoints:
            return record.visible
        height, width = image_shape[:2]
        x, y = record.keypoints[:, 0], record.keypoints[:, 1]
        inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
        return record.visible | inside

    def crop(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, np.ndarray]:
        """(crop uint8 BGR, source->crop affine, crop keypoints (21, 2), is_left, labelled (21,))
        of one sample."""
        record = self.records[index]
        size = self.codec.input_size
        image = read_image(record.image_path)
        labelled = self.labelled(record, image.shape)
        cx, cy, side = square_crop(box_from_keypoints(record.keypoints, labelled), CROP_MARGIN)
        jitter, rng = CropJitter(), None
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            jitter = sample_jitter(rng, self.augment)
        affine = jittered_crop_affine(cx, cy, side, size, jitter)
        crop = warp_crop(image, affine, size)
        if rng is not None:
            crop = photometric(crop, rng, self.augment)
        return (crop, affine, apply_affine(affine, record.keypoints), record.is_left != jitter.flip,
                labelled)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        crop, affine, keypoints, is_left, labelled = self.crop(index)
        targets, weights = self.codec.encode(keypoints, labelled)
        return {
            'image': torch.from_numpy(normalize_crops(crop[None], self.model_info)[0]),
            'targets': torch.from_numpy(np.asarray(targets, np.float32)),
            'weights': torch.from_numpy(np.asarray(weights, np.float32)),
            'keypoints': torch.from_numpy(keypoints.astype(np.float32)),
            'visible': torch.from_numpy(record.visible.copy()),
            'crop_to_source': torch.from_numpy(invert_affine(affine)),
            'source_keypoints': torch.from_numpy(record.keypoints.copy()),
            'is_left': torch.tensor(is_left),
            'index': torch.tensor(index),
        }


class EpochSampler(DistributedSampler):
    """DistributedSampler (shuffled by (seed, epoch), sharded by rank; one rank when not
    distributed) that can start part-way into an epoch, so a resumed run skips the batches it
    already trained on and sees the rest in the same order."""

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int, rank: int = 0,
                 world_size: int = 1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw the order for, and how many of this rank's samples to skip."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return super().__len__() - self.start


def _worker_init(_worker_id: int) -> None:
    """One torch thread per loader worker: the workers already run in parallel. Ctrl-C and
    SIGTERM sent to the whole process group (a terminal does the first, torchrun the second to each
    rank's group) are left to the main process: it stops a training run after its step
    (hand_cpm_train.train.StopRequest), which needs the workers. A worker still ends with its
    main process: PyTorch's workers watch it."""
    torch.set_num_threads(1)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


def make_loader(dataset: HandCropDataset, batch_size: int, shuffle: bool, workers: int, seed: int,
                rank: int = 0, world_size: int = 1) -> tuple[DataLoader, EpochSampler]:
    """(DataLoader, its EpochSampler). Call `sampler.set_position(epoch, start)` and
    `dataset.set_epoch(epoch)` before iterating an epoch."""
    if batch_size < 1 or workers < 0:
        raise ValueError(f'need batch_size >= 1 and workers >= 0, got {batch_size}, {workers}')
    sampler = EpochSampler(dataset, shuffle, seed, rank, world_size)
    if workers:
        # Workers are forked from this process. A forked child that finds OpenCV's thread pool
        # started (any cv2 call here, e.g. the trainer's figures) hangs when it touches it, so
        # OpenCV runs single-threaded in a process that forks loader workers.
        cv2.setNumThreads(1)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), drop_last=False,
                        worker_init_fn=_worker_init if workers else None)
    return loader, sampler
