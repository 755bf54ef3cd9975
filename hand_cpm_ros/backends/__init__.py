"""Inference backends behind one interface: ONNX Runtime, PyTorch (checkpoints), TensorRT.

`create_backend('auto', ...)` picks TensorRT when an engine file and a GPU are there, else ONNX
Runtime on its best provider, else torch, and logs the choice and why once. Engines (onnxruntime,
torch, tensorrt, cuda) are imported only inside the chosen backend.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

from hand_cpm_ros.backends.base import (Backend, BackendError, ModelInfo, average_mirrored,
                                        normalize_crops, with_mirrored)

BACKEND_NAMES = ('auto', 'onnxruntime', 'torch', 'tensorrt')

__all__ = ['BACKEND_NAMES', 'Backend', 'BackendError', 'ModelInfo', 'average_mirrored',
           'create_backend', 'normalize_crops', 'with_mirrored']


def _gpu_present() -> bool | None:
    """True/False when cuda-python can tell, None when it is not installed."""
    if not _installed('cuda.bindings'):
        return None
    from hand_cpm_ros.tensorrt_build import cuda_device_count
    return cuda_device_count() > 0


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package is missing
        return False


def _onnxruntime_backend(model_path: str, threads: int | None) -> Backend:
    from hand_cpm_ros.backends.onnxruntime_backend import (OnnxRuntimeBackend, import_onnxruntime,
                                                           best_providers)
    available = import_onnxruntime().get_available_providers()
    return OnnxRuntimeBackend(model_path, threads, best_providers(available, _gpu_present()))


def _torch_backend(model_path: str, threads: int | None) -> Backend:
    from hand_cpm_ros.backends.torch_backend import TorchBackend
    return TorchBackend(model_path, threads=threads)


def _tensorrt_backend(engine_path: str) -> Backend:
    from hand_cpm_ros.backends.tensorrt_backend import TensorRTBackend
    return TensorRTBackend(engine_path)


def create_backend(name: str = 'auto', model_path: str | None = None,
                   engine_path: str | None = None, threads: int | None = None,
                   logger: Callable[[str], None] | None = None) -> Backend:
    """A ready backend. `model_path` is an .onnx (onnxruntime) or a .pt checkpoint (torch),
    `engine_path` a TensorRT engine; `threads` sets CPU threads; `logger(str)` receives the
    one-line choice (default: logging)."""
    log = logger or logging.getLogger(__name__).info
    if name not in BACKEND_NAMES:
        raise ValueError(f'unknown backend {name!r}; valid: {", ".join(BACKEND_NAMES)}')
    suffix = Path(model_path).suffix if model_path else ''
    if name == 'onnxruntime' or name == 'torch':
        wanted = '.onnx' if name == 'onnxruntime' else '.pt'
        if suffix != wanted:
            raise ValueError(f'the {name} backend needs model_path to a {wanted} file, '
                             f'got {model_path!r}')
        backend = (_onnxruntime_backend(model_path, threads) if name == 'onnxruntime'
                   else _torch_backend(model_path, threads))
        reason = 'requested'
    elif name == 'tensorrt':
        if not engine_path:
            raise ValueError('the tensorrt backend needs engine_path (build one with '
                             'hand-cpm-build-engine)')
        backend, reason = _tensorrt_backend(engine_path), 'requested'
    else:
        backend, reason = _auto_backend(model_path, engine_path, threads, suffix, log)
    log(f'inference backend: {backend.describe()} ({reason}); model {backend.info.variant}, '
        f'{backend.info.task} input {backend.info.describe_input()}')
    return backend


def _auto_backend(model_path, engine_path, threads, suffix, log) -> tuple[Backend, str]:
    skipped = ''
    if engine_path:
        if not Path(engine_path).is_file():
            skipped = f'engine {engine_path} does not exist'
        elif not _installed('tensorrt'):
            skipped = 'TensorRT is not installed'
        elif not _gpu_present():
            skipped = 'no CUDA GPU (or cuda-python) found'
        else:
            try:
                return _tensorrt_backend(engine_path), 'auto: engine file and GPU present'
            except BackendError as error:
                if suffix not in ('.onnx', '.pt'):
                    raise
                log(f'warning: TensorRT engine unusable, falling back: {error}')
                skipped = 'the engine is unusable'
    because = f'; {skipped}' if skipped else ''
    if suffix == '.onnx':
        return _onnxruntime_backend(model_path, threads), f'auto: ONNX model{because}'
    if suffix == '.pt':
        return _torch_backend(model_path, threads), f'auto: checkpoint{because}'
    raise BackendError(f'no usable backend: pass model_path to an .onnx model or a .pt '
                       f'checkpoint{" (" + skipped + ")" if skipped else ""}'
                       + ('' if model_path is None else f', got {model_path!r}'))
