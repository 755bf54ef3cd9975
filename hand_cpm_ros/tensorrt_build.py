"""Build a TensorRT engine from an exported ONNX model: `hand-cpm-build-engine`.

TensorRT 10 Python API: trt.Builder -> network from trt.OnnxParser -> builder config (FP16, INT8
with an IInt8EntropyCalibrator2 fed from an image directory, an optimisation profile for batch
1..N) -> build_serialized_network. Next to `model.engine` goes `model.engine.json`, the sidecar:
TensorRT version, GPU and compute capability, precision, profile shapes, the ONNX file's sha256
and its runtime metadata; the tensorrt backend reads it and refuses an engine built for another
TensorRT or GPU (engines are not portable), printing the command that rebuilds it.

Everything that needs neither TensorRT nor a GPU (argument checks, profile shapes, calibration
batches, sidecar read/write/compatibility) is a plain function, tested without TensorRT. CUDA is
reached through NVIDIA's cuda-python (`cuda.bindings.runtime`), imported lazily.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from hand_cpm_ros.backends.base import BackendError, ModelInfo, normalize_crops
from hand_cpm_ros.backends.onnxruntime_backend import read_onnx_metadata
from hand_cpm_ros.files import write_atomic
from hand_cpm_ros.localizer import letterbox

SIDECAR_VERSION = 1
SIDECAR_KEYS = ('sidecar_version', 'tensorrt_version', 'gpu_name', 'compute_capability',
                'precision', 'input_name', 'output_name', 'min_shape', 'opt_shape', 'max_shape',
                'onnx_path', 'onnx_sha256', 'metadata')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


# ---------------------------------------------------------------------------------------------
# CUDA device queries (cuda-python)
# ---------------------------------------------------------------------------------------------

def cuda_runtime():
    """The `cuda.bindings.runtime` module; BackendError if cuda-python is not installed."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as error:
        raise BackendError('cuda-python is not installed (pip install "cuda-python>=12"); '
                           'TensorRT needs it here for device memory and streams') from error
    return cudart


def cuda_check(result):
    """Unpack a cuda-python call's (error, *values) tuple, raising BackendError on an error."""
    cudart = cuda_runtime()
    error, values = result[0], result[1:]
    if error != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(error)
        raise BackendError(f'CUDA error {error.name}: {text.decode(errors="replace")}')
    return values[0] if len(values) == 1 else values


def cuda_device_count() -> int:
    """Number of usable CUDA GPUs: 0 without cuda-python, a driver or a device."""
    try:
        cudart = cuda_runtime()
    except BackendError:
        return 0
    error, count = cudart.cudaGetDeviceCount()
    return count if error == cudart.cudaError_t.cudaSuccess else 0


def cuda_device_properties(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of a CUDA device."""
    properties = cuda_check(cuda_runtime().cudaGetDeviceProperties(device))
    name = properties.name
    if isinstance(name, bytes):
        name = name.split(b'\0', 1)[0].decode(errors='replace')
    return name, f'{properties.major}.{properties.minor}'


# ---------------------------------------------------------------------------------------------
# TensorRT-free helpers
# ---------------------------------------------------------------------------------------------

def profile_shapes(input_shape: int | tuple[int, int, int], max_batch: int
                   ) -> dict[str, tuple[int, int, int, int]]:
    """Optimisation profile of the 'image' input: batch 1..max_batch, tuned for min(max_batch, 2)
    (one or two hands per frame is the common case). `input_shape` is ModelInfo.input_shape
    (3, H, W), or the side of a square keypoint input."""
    if max_batch < 1:
        raise ValueError(f'max batch must be >= 1, got {max_batch}')
    if isinstance(input_shape, int):
        input_shape = (3, input_shape, input_shape)
    return {kind: (batch, *input_shape)
            for kind, batch in (('min', 1), ('opt', min(max_batch, 2)), ('max', max_batch))}


def precision_name(fp16: bool, int8: bool) -> str:
    return '+'.join(name for name, enabled in (('int8', int8), ('fp16', fp16)) if enabled) or 'fp32'


def list_calibration_images(calib_dir: str | os.PathLike) -> list[Path]:
    """Image files (sorted) directly inside `calib_dir`; ValueError when there are none."""
    directory = Path(calib_dir)
    if not directory.is_dir():
        raise ValueError(f'calibration directory {directory} does not exist')
    images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f'calibration directory {directory} holds no images '
                         f'({", ".join(IMAGE_SUFFIXES)})')
    return images


def calibration_batches(images: list[Path], info: ModelInfo, batch_size: int
                        ) -> Iterator[np.ndarray]:
    """Normalised (batch_size,3,H,W) float32 batches of the images as the runtime prepares them:
    resized to a keypoint model's square input (hand crops), letterboxed into a localiser's input
    (whole frames). A last incomplete batch is dropped (the calibrator's batch size is fixed)."""
    if batch_size < 1:
        raise ValueError(f'calibration batch size must be >= 1, got {batch_size}')
    if len(images) < batch_size:
        raise ValueError(f'{len(images)} calibration images are fewer than one batch of '
                         f'{batch_size}; add images or lower --calib-batch')
    _, height, width = info.input_shape
    for start in range(0, len(images) - batch_size + 1, batch_size):
        crops = np.empty((batch_size, height, width, 3), np.uint8)
        for index, path in enumerate(images[start:start + batch_size]):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f'cannot read calibration image {path}')
            crops[index] = letterbox(image, width, height)[0] if info.task == 'localizer' else \
                cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        yield normalize_crops(crops, info)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(f'{engine_path}.json')


def write_sidecar(engine_path: str | os.PathLike, sidecar: dict) -> Path:
    """Write the engine's JSON sidecar (all SIDECAR_KEYS required) and return its path."""
    missing = [key for key in SIDECAR_KEYS if key not in sidecar]
    if missing:
        raise ValueError(f'engine sidecar lacks {missing}')
    path = sidecar_path(engine_path)
    write_atomic(path, (json.dumps(sidecar, indent=2, sort_keys=True) + '\n').encode())
    return path


def read_sidecar(engine_path: str | os.PathLike) -> dict:
    """The engine's sidecar dict; BackendError when missing, unreadable or incomplete."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise BackendError(f'engine sidecar {path} is missing; build engines with '
                           f'hand-cpm-build-engine, which writes it next to the engine')
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BackendError(f'engine sidecar {path} is unreadable: {error}') from error
    missing = [key for key in SIDECAR_KEYS if key not in sidecar] if isinstance(sidecar, dict) \
        else list(SIDECAR_KEYS)
    if missing:
        raise BackendError(f'engine sidecar {path} lacks {missing}; rebuild the engine')
    if sidecar['sidecar_version'] != SIDECAR_VERSION:
        raise BackendError(f'engine sidecar {path} has version {sidecar["sidecar_version"]!r}, '
                           f'this runtime reads {SIDECAR_VERSION}; rebuild the engine')
    return sidecar


def rebuild_command(sidecar: dict, engine_path: str | os.PathLike) -> str:
    """The hand-cpm-build-engine command line that rebuilds this engine on this machine."""
    words = ['hand-cpm-build-engine', '--onnx', sidecar['onnx_path'], '--out', str(engine_path)]
    precision = sidecar['precision'].split('+')
    if 'fp16' in precision:
        words.append('--fp16')
    if 'int8' in precision:
        words += ['--int8', '--calib-dir', sidecar.get('calib_dir') or 'CALIB_DIR']
    words += ['--max-batch', str(sidecar['max_shape'][0]), '--overwrite']
    return shlex.join(words)


def check_engine_compatibility(sidecar: dict, tensorrt_version: str, gpu_name: str,
                               compute_capability: str, engine_path: str | os.PathLike) -> None:
    """BackendError unless the engine was built by this TensorRT version for this GPU model:
    serialized engines are specific to both."""
    problems = []
    if sidecar['tensorrt_version'] != tensorrt_version:
        problems.append(f'TensorRT {sidecar["tensorrt_version"]} (this machine has '
                        f'{tensorrt_version})')
    if sidecar['gpu_name'] != gpu_name or sidecar['compute_capability'] != compute_capability:
        problems.append(f'GPU {sidecar["gpu_name"]!r} sm {sidecar["compute_capability"]} '
                        f'(this machine has {gpu_name!r} sm {compute_capability})')
    if problems:
        raise BackendError(f'engine {engine_path} was built for {" and ".join(problems)}; '
                           f'rebuild it here: {rebuild_command(sidecar, engine_path)}')


def check_args(args: argparse.Namespace) -> None:
    """ValueError with a one-line reason for invalid command-line arguments."""
    onnx_path, out = Path(args.onnx), Path(args.out)
    if not onnx_path.is_file():
        raise ValueError(f'--onnx {onnx_path} does not exist; export one with hand-cpm-export')
    if onnx_path.suffix != '.onnx':
        raise ValueError(f'--onnx {onnx_path} is not an .onnx file')
    for path in (out, sidecar_path(out)):
        if path.exists() and not args.overwrite:
            raise ValueError(f'{path} exists; pass --overwrite to replace it')
    if args.max_batch < 1:
        raise ValueError(f'--max-batch must be >= 1, got {args.max_batch}')
    if args.int8 and not args.calib_dir:
        raise ValueError('--int8 needs --calib-dir DIR with calibration images')
    if args.calib_dir and not args.int8:
        raise ValueError('--calib-dir is only used with --int8')
    if args.int8:
        if args.calib_batch < 1:
            raise ValueError(f'--calib-batch must be >= 1, got {args.calib_batch}')
        images = list_calibration_images(args.calib_dir)
        if len(images) < args.calib_batch:
            raise ValueError(f'--calib-dir {args.calib_dir} has {len(images)} images, fewer than '
                             f'one --calib-batch of {args.calib_batch}')
    if args.workspace_gb <= 0:
        raise ValueError(f'--workspace-gb must be > 0, got {args.workspace_gb}')


# ---------------------------------------------------------------------------------------------
# TensorRT
# ---------------------------------------------------------------------------------------------

def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise BackendError('TensorRT is not installed: install TensorRT 10 for this GPU '
                           '(JetPack on a Jetson, `pip install tensorrt` on a desktop GPU)'
                           ) from error
    return trt


def _progress_monitor(trt):
    """A trt.IProgressMonitor that prints build phases (None on TensorRT without it)."""
    if not hasattr(trt, 'IProgressMonitor'):
        return None

    class PhasePrinter(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._depth: dict[str, int] = {}
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._started[phase_name] = time.monotonic()
            print(f'{"  " * self._depth[phase_name]}{phase_name} ({num_steps} steps)', flush=True)

        def step_complete(self, phase_name, step):
            return True  # never cancel the build

        def phase_finish(self, phase_name):
            elapsed = time.monotonic() - self._started.pop(phase_name, time.monotonic())
            print(f'{"  " * self._depth.pop(phase_name, 0)}{phase_name} done in {elapsed:.1f} s',
                  flush=True)

    return PhasePrinter()


def _entropy_calibrator(trt, batches: Iterator[np.ndarray], batch_size: int,
                        input_shape: tuple[int, int, int], cache_path: Path):
    """An IInt8EntropyCalibrator2 that copies each batch into one device buffer."""
    cudart = cuda_runtime()
    nbytes = batch_size * int(np.prod(input_shape)) * 4

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device_input = cuda_check(cudart.cudaMalloc(nbytes))
            self.count = 0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            batch = next(batches, None)
            if batch is None:
                return None
            cuda_check(cudart.cudaMemcpy(self.device_input, batch.ctypes.data, batch.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            self.count += 1
            print(f'  calibration batch {self.count}', flush=True)
            return [int(self.device_input)]

        def read_calibration_cache(self):
            if cache_path.is_file():
                print(f'using calibration cache {cache_path} (delete it to recalibrate)')
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            write_atomic(cache_path, bytes(cache))

        def free(self):
            cuda_check(cudart.cudaFree(self.device_input))

    return EntropyCalibrator()


def build_engine(args: argparse.Namespace, info: ModelInfo, metadata: dict[str, str]) -> dict:
    """Build and write the engine and its sidecar for checked `args`; returns the sidecar."""
    trt = import_tensorrt()
    if cuda_device_count() < 1:
        raise BackendError('no CUDA GPU found: TensorRT engines must be built on the GPU that '
                           'will run them')
    gpu_name, compute_capability = cuda_device_properties(0)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(args.onnx)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT cannot parse {args.onnx}: {errors}')
    input_name = network.get_input(0).name
    output_name = network.get_output(0).name
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gb * (1 << 30)))
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    shapes = profile_shapes(info.input_shape, args.max_batch)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes['min'], shapes['opt'], shapes['max'])
    config.add_optimization_profile(profile)
    if args.fp16:
        if not builder.platform_has_fast_fp16:
            print('warning: this GPU has no fast FP16; building anyway', file=sys.stderr)
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if args.int8:
        if not hasattr(trt, 'IInt8EntropyCalibrator2'):
            raise BackendError(f'TensorRT {trt.__version__} has no INT8 calibrator (implicit '
                               f'quantisation was removed); build FP16 instead')
        config.set_flag(trt.BuilderFlag.INT8)
        images = list_calibration_images(args.calib_dir)
        calibrator = _entropy_calibrator(
            trt, calibration_batches(images, info, args.calib_batch), args.calib_batch,
            info.input_shape, Path(f'{args.out}.calib'))
        config.int8_calibrator = calibrator
        calibration_shape = (args.calib_batch, *info.input_shape)
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(input_name, calibration_shape, calibration_shape,
                                      calibration_shape)
        config.set_calibration_profile(calibration_profile)
    print(f'building {precision_name(args.fp16, args.int8)} engine for {gpu_name} '
          f'(sm {compute_capability}) with TensorRT {trt.__version__}, batch 1..{args.max_batch}',
          flush=True)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise BackendError('TensorRT failed to build the engine (see its messages above)')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, bytes(serialized))
    sidecar = {
        'sidecar_version': SIDECAR_VERSION, 'tensorrt_version': trt.__version__,
        'gpu_name': gpu_name, 'compute_capability': compute_capability,
        'precision': precision_name(args.fp16, args.int8),
        'input_name': input_name, 'output_name': output_name,
        'min_shape': list(shapes['min']), 'opt_shape': list(shapes['opt']),
        'max_shape': list(shapes['max']),
        'onnx_path': str(Path(args.onnx).resolve()), 'onnx_sha256': sha256_file(args.onnx),
        'calib_dir': str(Path(args.calib_dir).resolve()) if args.int8 else None,
        'metadata': metadata,
    }
    write_sidecar(out, sidecar)
    return sidecar


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-build-engine',
        description='Build a TensorRT engine (and its JSON sidecar) from a hand-cpm ONNX model. '
                    'Run it on the machine whose GPU will use the engine.')
    parser.add_argument('--onnx', required=True, help='ONNX model from hand-cpm-export')
    parser.add_argument('--out', required=True, help='engine file to write (sidecar: OUT.json)')
    parser.add_argument('--fp16', action='store_true', help='allow FP16 kernels')
    parser.add_argument('--int8', action='store_true',
                        help='INT8 with entropy calibration over --calib-dir images')
    parser.add_argument('--calib-dir', help='directory of calibration images (hand crops for a '
                        'keypoint model, whole camera frames for a localiser)')
    parser.add_argument('--calib-batch', type=int, default=8, help='calibration batch size')
    parser.add_argument('--max-batch', type=int, default=4,
                        help='largest batch (hands per call) the engine accepts (default 4)')
    parser.add_argument('--workspace-gb', type=float, default=1.0,
                        help='builder workspace limit in GiB (default 1)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing engine and sidecar')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        check_args(args)
        metadata = read_onnx_metadata(args.onnx)
        info = ModelInfo.from_metadata(metadata)
        sidecar = build_engine(args, info, metadata)
    except (ValueError, BackendError) as error:
        print(f'hand-cpm-build-engine: {error}', file=sys.stderr)
        return 2
    print(f'wrote {args.out} and {sidecar_path(args.out)} ({sidecar["precision"]}, '
          f'batch {sidecar["min_shape"][0]}..{sidecar["max_shape"][0]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
