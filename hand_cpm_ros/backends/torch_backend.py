"""PyTorch backend: runs a training checkpoint (.pt) directly, on CPU or CUDA. torch and the
training package are imported only when this backend is created."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hand_cpm_ros.backends.base import Backend, BackendError, ModelInfo


class TorchBackend(Backend):
    """Eval-mode model from hand_cpm_train.checkpoint.load_model; ModelInfo from the same
    runtime metadata the ONNX export writes."""
    name = 'torch'

    def __init__(self, checkpoint_path: str | os.PathLike, device: str | None = None,
                 threads: int | None = None):
        try:
            import torch

            from hand_cpm_train.checkpoint import CheckpointError, load_model, runtime_metadata
        except ImportError as error:
            raise BackendError(f'the torch backend needs torch and hand_cpm_train ({error}); '
                               f'use an ONNX model with the onnxruntime backend instead') from error
        path = Path(checkpoint_path)
        if threads is not None:
            if threads < 1:
                raise BackendError(f'threads must be >= 1, got {threads}')
            torch.set_num_threads(threads)  # process-wide in torch
        if device is None:
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise BackendError(f'device {device!r} requested but torch sees no CUDA GPU; '
                               f'use device="cpu"')
        try:
            self.model, config, codec = load_model(path, device)
        except CheckpointError as error:
            raise BackendError(str(error)) from error
        self.info = ModelInfo.from_metadata(runtime_metadata(config, codec))
        self.device = torch.device(device)
        self.threads = torch.get_num_threads()
        self._torch = torch

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self._torch
        x = torch.from_numpy(batch).to(self.device)
        with torch.inference_mode():
            if self.info.handedness:
                maps, left = self.model.forward_handedness(x)
                return maps.float().cpu().numpy(), left.float().cpu().numpy()
            return self.model(x).float().cpu().numpy(), None

    def describe(self) -> str:
        where = (f'CUDA {self._torch.cuda.get_device_name(self.device)}'
                 if self.device.type == 'cuda' else f'CPU, {self.threads} threads')
        return f'torch {self._torch.__version__} {where}'
