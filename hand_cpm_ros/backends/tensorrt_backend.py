"""TensorRT backend: runs a serialized engine built by hand-cpm-build-engine (TensorRT 10 API,
device memory and stream through NVIDIA's cuda-python). tensorrt and cuda are imported only when
the backend is created; the engine's JSON sidecar gives the ModelInfo and is checked against this
machine's TensorRT version and GPU before deserialising."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hand_cpm_ros.backends.base import HANDEDNESS_OUTPUT, Backend, BackendError, ModelInfo
from hand_cpm_ros.tensorrt_build import (check_engine_compatibility, cuda_check,
                                         cuda_device_count, cuda_device_properties,
                                         cuda_runtime, import_tensorrt, read_sidecar)


class TensorRTBackend(Backend):
    """One engine, one execution context, one CUDA stream; device buffers grow with the batch."""
    name = 'tensorrt'

    def __init__(self, engine_path: str | os.PathLike):
        path = Path(engine_path)
        if not path.is_file():
            raise BackendError(f'TensorRT engine {path} does not exist; build it with '
                               f'hand-cpm-build-engine --onnx MODEL.onnx --out {path}')
        sidecar = read_sidecar(path)
        try:
            self.info = ModelInfo.from_metadata(sidecar['metadata'])
        except ValueError as error:
            raise BackendError(f'engine sidecar of {path}: {error}') from error
        trt = import_tensorrt()
        self._cudart = cuda_runtime()
        if cuda_device_count() < 1:
            raise BackendError(f'no CUDA GPU found for TensorRT engine {path}; use the '
                               f'onnxruntime backend with the ONNX model on this machine')
        gpu_name, compute_capability = cuda_device_properties(0)
        check_engine_compatibility(sidecar, trt.__version__, gpu_name, compute_capability, path)
        self._gpu = f'{gpu_name} (sm {compute_capability})'
        self._precision = sidecar['precision']
        self._trt_version = trt.__version__
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise BackendError(f'TensorRT could not deserialise {path} (see its messages); '
                               f'rebuild it with hand-cpm-build-engine')
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        maps_outputs = [n for n in outputs if n != HANDEDNESS_OUTPUT]
        if len(inputs) != 1 or len(maps_outputs) != 1 or \
                len(outputs) != 1 + self.info.handedness:
            wanted = f'the maps and {HANDEDNESS_OUTPUT!r}' if self.info.handedness else 'the maps'
            raise BackendError(f'engine {path} has inputs {inputs} and outputs {outputs}; '
                               f'expected one input and {wanted} out (rebuild the engine from '
                               f'the ONNX model its sidecar names)')
        self.input_name = inputs[0]
        self.output_names = maps_outputs + ([HANDEDNESS_OUTPUT] if self.info.handedness else [])
        for name in names:
            if self._engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise BackendError(f'engine {path} tensor {name!r} is '
                                   f'{self._engine.get_tensor_dtype(name)}, expected float32 I/O')
        self.max_batch = self._engine.get_tensor_profile_shape(self.input_name, 0)[2][0]
        self._stream = cuda_check(self._cudart.cudaStreamCreate())
        self._capacity = 0
        self._device_input = None
        self._device_outputs: list = []

    def _ensure_capacity(self, batch: int) -> None:
        if batch <= self._capacity:
            return
        self._free_buffers()
        input_floats = int(np.prod(self.info.input_shape))
        # floats per crop of each output: the maps, then P(left) (one float) when there is one
        output_floats = [int(np.prod(self.info.output_shape)), 1][:len(self.output_names)]
        self._device_input = cuda_check(self._cudart.cudaMalloc(batch * input_floats * 4))
        self._device_outputs = [cuda_check(self._cudart.cudaMalloc(batch * floats * 4))
                                for floats in output_floats]
        self._capacity = batch
        self._context.set_tensor_address(self.input_name, int(self._device_input))
        for name, pointer in zip(self.output_names, self._device_outputs):
            self._context.set_tensor_address(name, int(pointer))

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        cudart = self._cudart
        self._ensure_capacity(len(batch))
        if not self._context.set_input_shape(self.input_name, batch.shape):
            raise BackendError(f'engine rejects input shape {batch.shape} (profile max batch '
                               f'{self.max_batch})')
        outputs = [np.empty(tuple(self._context.get_tensor_shape(name)), np.float32)
                   for name in self.output_names]
        cuda_check(cudart.cudaMemcpyAsync(self._device_input, batch.ctypes.data, batch.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                          self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise BackendError('TensorRT execute_async_v3 failed (see its messages)')
        for output, pointer in zip(outputs, self._device_outputs):
            cuda_check(cudart.cudaMemcpyAsync(output.ctypes.data, pointer, output.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                              self._stream))
        cuda_check(cudart.cudaStreamSynchronize(self._stream))
        return outputs

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        chunks = [self._run(batch[i:i + self.max_batch])
                  for i in range(0, len(batch), self.max_batch)]
        outputs = [np.concatenate(parts) for parts in zip(*chunks)]
        return outputs[0], outputs[1] if self.info.handedness else None

    def _free_buffers(self) -> None:
        for pointer in [self._device_input, *self._device_outputs]:
            if pointer is not None:
                cuda_check(self._cudart.cudaFree(pointer))
        self._device_input = None
        self._device_outputs = []
        self._capacity = 0

    def close(self) -> None:
        """Free device buffers and the stream (also done when the backend is collected)."""
        if getattr(self, '_stream', None) is None:
            return
        self._free_buffers()
        cuda_check(self._cudart.cudaStreamDestroy(self._stream))
        self._stream = None

    def __del__(self):
        self.close()

    def describe(self) -> str:
        return (f'tensorrt {self._trt_version} {self._precision} on {self._gpu}, '
                f'batch 1..{self.max_batch}')
