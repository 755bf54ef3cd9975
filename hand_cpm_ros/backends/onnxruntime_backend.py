"""ONNX Runtime backend: CPU, or the CUDA / TensorRT execution providers of onnxruntime-gpu."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hand_cpm_ros.backends.base import HANDEDNESS_OUTPUT, Backend, BackendError, ModelInfo

GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendError('onnxruntime is not installed (pip install onnxruntime, or '
                           'onnxruntime-gpu for CUDA/TensorRT)') from error
    return onnxruntime


def _session(path: Path, options, providers):
    ort = import_onnxruntime()
    if not path.is_file():
        raise BackendError(f'ONNX model {path} does not exist; export one with hand-cpm-export')
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise BackendError(f'cannot load ONNX model {path}: {first_line}') from error


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX model (read with onnxruntime, CPU)."""
    session = _session(Path(path), None, ['CPUExecutionProvider'])
    return dict(session.get_modelmeta().custom_metadata_map)


def best_providers(available: list[str], gpu_present: bool | None) -> list[str]:
    """Providers in preference order TensorRT > CUDA > CPU, GPU ones only where listed by
    onnxruntime and a GPU is present (None = unknown: trust onnxruntime's list)."""
    use_gpu = gpu_present is not False
    return [p for p in GPU_PROVIDERS if use_gpu and p in available] + ['CPUExecutionProvider']


class OnnxRuntimeBackend(Backend):
    """Runs an exported model (hand-cpm-export) with ONNX Runtime; ModelInfo comes from its
    metadata."""
    name = 'onnxruntime'

    def __init__(self, model_path: str | os.PathLike, threads: int | None = None,
                 providers: list[str] | None = None, fp16: bool = False, max_batch: int = 8):
        ort = import_onnxruntime()
        path = Path(model_path)
        if threads is not None and threads < 1:
            raise BackendError(f'threads must be >= 1, got {threads}')
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default (all cores)
        options.inter_op_num_threads = 1
        # Intra-op spinning stays on (onnxruntime's default): with it off, the node processed
        # 10-12 instead of 29 frames/s with two hands on the 2-core build machine.
        requested = providers or ['CPUExecutionProvider']
        unknown = [p for p in requested if p not in ort.get_available_providers()]
        if unknown:
            raise BackendError(f'onnxruntime providers {unknown} are not available here '
                               f'(available: {ort.get_available_providers()})')
        self.threads = threads
        self.max_batch = max_batch
        if 'TensorrtExecutionProvider' in requested:
            # The TensorRT provider needs the input size for its profile before the session
            # exists: read the metadata with a CPU session first.
            probe = _session(path, None, ['CPUExecutionProvider'])
            self.info = self._model_info(path, probe)
            entries = [self._provider_entry(p, path, probe.get_inputs()[0].name, fp16, max_batch)
                       for p in requested]
            self.session = _session(path, options, entries)
        else:
            self.session = _session(path, options, requested)
            self.info = self._model_info(path, self.session)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name = inputs[0].name
        if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != self.info.input_shape:
            raise BackendError(f'{path}: model input {inputs[0].shape} does not match its '
                               f'metadata input size {self.info.describe_input()}; re-export '
                               f'the model')
        names = [output.name for output in outputs]
        maps_names = [name for name in names if name != HANDEDNESS_OUTPUT]
        expected = 1 + self.info.handedness
        if len(names) != expected or len(maps_names) != 1:
            raise BackendError(f'{path}: model outputs {names} do not match its metadata '
                               f'({expected} output{"s" if expected > 1 else ""}: the maps'
                               f'{" and " + HANDEDNESS_OUTPUT if self.info.handedness else ""}); '
                               f're-export the model')
        self.output_names = maps_names + ([HANDEDNESS_OUTPUT] if self.info.handedness else [])

    @staticmethod
    def _model_info(path: Path, session) -> ModelInfo:
        try:
            return ModelInfo.from_metadata(dict(session.get_modelmeta().custom_metadata_map))
        except ValueError as error:
            raise BackendError(f'{path}: {error}') from error

    def _provider_entry(self, provider: str, path: Path, input_name: str, fp16: bool,
                        max_batch: int):
        if provider != 'TensorrtExecutionProvider':
            return provider
        _, height, width = self.info.input_shape
        shape = f'{input_name}:{{}}x3x{height}x{width}'
        return (provider, {
            'trt_engine_cache_enable': True,
            'trt_engine_cache_path': str(path.with_name(path.stem + '.ort_trt_cache')),
            'trt_fp16_enable': fp16,
            'trt_profile_min_shapes': shape.format(1),
            'trt_profile_opt_shapes': shape.format(min(2, max_batch)),
            'trt_profile_max_shapes': shape.format(max_batch),
        })

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        # The TensorRT provider's profile ends at max_batch: run larger batches in chunks.
        step = self.max_batch if 'TensorrtExecutionProvider' in self.session.get_providers() \
            else len(batch)
        chunks = [self.session.run(self.output_names, {self.input_name: batch[i:i + step]})
                  for i in range(0, len(batch), step)]
        outputs = [np.concatenate(parts) for parts in zip(*chunks)]
        return outputs[0], outputs[1] if self.info.handedness else None

    def describe(self) -> str:
        threads = f'{self.threads} threads' if self.threads else 'default threads'
        return f'onnxruntime {"+".join(self.session.get_providers())}, {threads}'
