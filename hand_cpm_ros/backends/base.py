"""What every inference backend shares: the model description, the one input normalisation, the
Backend interface and its input checks. numpy only: no torch, no ROS."""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass

import numpy as np

METADATA_FORMAT_VERSION = 1
_REQUIRED_METADATA = ('variant', 'input_size', 'stride', 'num_maps', 'mean', 'std',
                      'channel_order', 'keypoint_names', 'codec')


class BackendError(RuntimeError):
    """A backend cannot be created or run: missing/unreadable model, metadata mismatch, no GPU..."""


@dataclass(frozen=True)
class ModelInfo:
    """The facts a runtime needs about a network, read from ONNX metadata, a checkpoint or a
    TensorRT engine's JSON sidecar (all written by hand_cpm_train.checkpoint.runtime_metadata)."""
    variant: str
    input_size: int
    stride: int
    num_maps: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str
    keypoint_names: tuple[str, ...]
    codec: dict

    @property
    def output_size(self) -> int:
        return self.input_size // self.stride

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> ModelInfo:
        """Parse string metadata; ValueError names every missing or invalid key."""
        missing = [key for key in _REQUIRED_METADATA if key not in props]
        if missing:
            raise ValueError(f'model metadata lacks {missing}: export the model with '
                             f'hand-cpm-export, which writes them')
        version = props.get('format_version', str(METADATA_FORMAT_VERSION))
        if version != str(METADATA_FORMAT_VERSION):
            raise ValueError(f'model metadata format_version {version!r} is not supported '
                             f'(this runtime reads {METADATA_FORMAT_VERSION}); re-export the model')
        errors = []

        def parse(key, convert):
            try:
                return convert(props[key])
            except (TypeError, ValueError) as error:
                errors.append(f'{key}={props[key]!r} ({error})')
                return None

        def positive_int(text):
            value = int(text)
            if value <= 0:
                raise ValueError('must be > 0')
            return value

        def triple(text):
            values = tuple(float(v) for v in json.loads(text))
            if len(values) != 3:
                raise ValueError('needs 3 numbers (one per channel)')
            return values

        def names(text):
            values = json.loads(text)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError('needs a JSON list of strings')
            return tuple(values)

        def codec(text):
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError('needs a JSON object')
            return value

        def channel_order(text):
            if text not in ('bgr', 'rgb'):
                raise ValueError("must be 'bgr' or 'rgb'")
            return text

        info = dict(variant=props['variant'], input_size=parse('input_size', positive_int),
                    stride=parse('stride', positive_int), num_maps=parse('num_maps', positive_int),
                    mean=parse('mean', triple), std=parse('std', triple),
                    channel_order=parse('channel_order', channel_order),
                    keypoint_names=parse('keypoint_names', names), codec=parse('codec', codec))
        if not errors:
            if info['std'] is not None and min(info['std']) <= 0:
                errors.append(f'std={props["std"]!r} (must be > 0)')
            if info['input_size'] % info['stride']:
                errors.append(f'input_size={info["input_size"]} is not a multiple of '
                              f'stride={info["stride"]}')
            if len(info['keypoint_names']) + 1 != info['num_maps']:
                errors.append(f'num_maps={info["num_maps"]} does not match '
                              f'{len(info["keypoint_names"])} keypoint_names + background')
        if errors:
            raise ValueError('invalid model metadata: ' + '; '.join(errors))
        return cls(**info)


def normalize_crops(crops_bgr: np.ndarray, info: ModelInfo) -> np.ndarray:
    """uint8 BGR crops (N,H,W,3) -> network input (N,3,H,W) float32, C-contiguous:
    x = (pixel/255 - mean) / std per channel, channels (and mean/std) in the model's
    channel_order. The one
    normalisation, shared by the runtime and the trainer's datasets."""
    crops = np.asarray(crops_bgr)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f'crops must be uint8 (N,H,W,3) BGR images, got {crops.dtype} '
                         f'{crops.shape}')
    if info.channel_order == 'rgb':
        crops = crops[..., ::-1]
    scale = 1.0 / (255.0 * np.asarray(info.std, np.float32))
    offset = np.asarray(info.mean, np.float32) / np.asarray(info.std, np.float32)
    normalized = crops.astype(np.float32) * scale - offset
    return np.ascontiguousarray(normalized.transpose(0, 3, 1, 2))


class Backend(abc.ABC):
    """Runs the network: normalised (N,3,S,S) float32 in, (N,maps,S/stride,S/stride) float32 out."""
    name: str
    info: ModelInfo

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.check_input(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, self.info.num_maps, self.info.output_size, self.info.output_size),
                            np.float32)
        return self._infer(np.ascontiguousarray(batch))

    def check_input(self, batch: np.ndarray) -> None:
        """ValueError unless `batch` is a float32 (N,3,S,S) array with S = info.input_size."""
        size = self.info.input_size
        if not isinstance(batch, np.ndarray):
            raise ValueError(f'{self.name} backend needs a numpy array, got {type(batch).__name__}')
        if batch.dtype != np.float32:
            raise ValueError(f'{self.name} backend needs float32 input, got {batch.dtype}; '
                             f'use normalize_crops()')
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f'{self.name} backend needs input of shape (N,3,{size},{size}) for '
                             f'variant {self.info.variant!r}, got {batch.shape}')

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run a checked, C-contiguous, non-empty batch."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Engine and device in words, e.g. 'onnxruntime CPUExecutionProvider, 2 threads'."""
