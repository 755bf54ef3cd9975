"""Checkpoints: atomic save, safe load (`weights_only=True`, never unpickling objects), model
rebuild, and the metadata a runtime needs (shared by ONNX export and the torch backend).

A checkpoint is a dict: 'format_version' (1), 'model' (state_dict), 'model_config'
(ModelConfig.to_dict(), or LocalizerConfig.to_dict() for a localiser), 'codec'
(HeatmapCodec.to_dict() / LocalizerCodec.to_dict()), optionally 'task' ('keypoints' when absent,
or 'localizer'), 'optimizer', 'scheduler', 'scaler', 'epoch', 'step', 'best_metric',
'train_config', 'history'.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from torch import nn

from hand_cpm_ros.backends.base import HANDEDNESS_OUTPUT
from hand_cpm_ros.files import write_atomic
from hand_cpm_ros.keypoints import KEYPOINT_NAMES
from hand_cpm_ros.localizer import NUM_OUTPUTS
from hand_cpm_train.localizer_model import LocalizerConfig, build_localizer
from hand_cpm_train.models import ModelConfig, build_model

FORMAT_VERSION = 1
REQUIRED_KEYS = ('format_version', 'model', 'model_config', 'codec')
TASKS = {'keypoints': (ModelConfig, build_model), 'localizer': (LocalizerConfig, build_localizer)}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not in this package's format."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` atomically: a temp file in the same directory, fsync, then os.replace, so a
    crash or a failing save never leaves a truncated file and keeps the previous one intact."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f'checkpoint state lacks {missing}')
    write_atomic(path, lambda stream: torch.save(state, stream))


def load_checkpoint(path: str | os.PathLike, map_location='cpu') -> dict:
    """The checkpoint dict at `path`, loaded with `weights_only=True` and checked for format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist; pass the .pt file written by '
                              f'hand-cpm-train')
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a foreign or damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f'{path} is not a readable hand-cpm checkpoint ({first_line})') from error
    if not isinstance(state, dict):
        raise CheckpointError(f'{path} is not a hand-cpm checkpoint (holds {type(state).__name__}, '
                              f'not a dict)')
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f'{path} is not a hand-cpm checkpoint: missing keys {missing}')
    if state['format_version'] != FORMAT_VERSION:
        raise CheckpointError(f'{path} has checkpoint format_version {state["format_version"]!r}; '
                              f'this version reads {FORMAT_VERSION}')
    if checkpoint_task(state) not in TASKS:
        raise CheckpointError(f'{path} has task {state["task"]!r}; this version reads '
                              f'{", ".join(TASKS)}')
    return state


def checkpoint_task(state: dict) -> str:
    """'keypoints' or 'localizer': what the checkpoint's network does."""
    return state.get('task', 'keypoints')


def load_model(path: str | os.PathLike, device: str | torch.device = 'cpu',
               frame_size: tuple[int, int] | None = None
               ) -> tuple[nn.Module, ModelConfig | LocalizerConfig, dict]:
    """(model in eval mode on `device`, its config (ModelConfig, or LocalizerConfig for a
    localiser), its codec dict) from a checkpoint.

    `frame_size` (width, height), localisers only: frames are letterboxed to this size instead of
    the trained one. The network is fully convolutional, so the weights fit any multiple of 32,
    and a hand covers more output cells on a finer input."""
    state = load_checkpoint(path)
    config_class, build = TASKS[checkpoint_task(state)]
    try:
        config = config_class.from_dict(state['model_config'])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f'{path} has an invalid model_config: {error}') from error
    codec = dict(state['codec'])
    if frame_size is not None:
        if not isinstance(config, LocalizerConfig):
            raise CheckpointError(f'{path} is a keypoint model; --frame-size is for localisers '
                                  '(a keypoint model sees crops of its trained size)')
        width, height = frame_size
        try:
            config = dataclasses.replace(config, input_width=width, input_height=height)
        except ValueError as error:
            raise CheckpointError(f'--frame-size: {error}') from None
        codec.update(input_width=width, input_height=height)
    model = build(config)
    try:
        model.load_state_dict(state['model'])
    except RuntimeError as error:
        raise CheckpointError(f'{path}: weights do not fit variant {config.name!r}: '
                              f'{str(error).splitlines()[0]}') from error
    return model.to(device).eval(), config, codec


def runtime_metadata(config: ModelConfig | LocalizerConfig, codec: dict) -> dict[str, str]:
    """String key/values that tell a runtime everything about a model: stored as ONNX
    metadata_props and in TensorRT sidecars, parsed by hand_cpm_ros.backends.ModelInfo.
    Keypoint models keep the original keys (no 'task'), plus handedness_output (the name of the
    P(left) output) when they have a handedness head; localisers add task='localizer' and a
    non-square input_width x input_height."""
    if isinstance(config, LocalizerConfig):
        task_keys = {'task': 'localizer', 'input_width': str(config.input_width),
                     'input_height': str(config.input_height), 'num_maps': str(NUM_OUTPUTS)}
    else:
        task_keys = {'input_size': str(config.input_size), 'num_maps': str(config.num_maps),
                     'keypoint_names': json.dumps(list(KEYPOINT_NAMES))}
        if config.handedness_head:
            task_keys['handedness_output'] = HANDEDNESS_OUTPUT
    return {
        'format_version': str(FORMAT_VERSION),
        'variant': config.name,
        **task_keys,
        'stride': str(config.stride),
        'mean': json.dumps(list(config.mean)),
        'std': json.dumps(list(config.std)),
        'channel_order': 'bgr',
        'codec': json.dumps(codec, sort_keys=True),
        'model_config': json.dumps(config.to_dict(), sort_keys=True),
    }
