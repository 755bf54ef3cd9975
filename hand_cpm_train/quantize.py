"""Static INT8 quantisation of an exported model for ONNX Runtime on CPU: `hand-cpm-quantize`.

    hand-cpm-quantize --onnx model.onnx --calib-dir data/synth_train [--out model.int8.onnx]

ONNX Runtime's `quantize_static` in QDQ format: `quant_pre_process` (symbolic shape inference and
ONNX Runtime's basic graph optimisation) first, then activation ranges calibrated on the same
calibration images, resized and normalised the same way, as the TensorRT INT8 build
(hand_cpm_ros.tensorrt_build.list_calibration_images / calibration_batches). Defaults: uint8
activations (asymmetric: the ReLU outputs are non-negative) and int8 per-channel symmetric
weights, the U8S8 pair ONNX Runtime's x86 kernels run fastest (measured here: U8U8 and S8S8 were
slower). ONNX Runtime fuses the QDQ pairs into QLinearConv / QLinearAdd / QLinearConcat, so the
whole network runs in int8 between one QuantizeLinear on the input and one DequantizeLinear on the
output; input and output stay float32, and every backend loads the model like the float one.

Calibration (`--calib-method`): by default `minmax-mean`, each tensor's range is the mean over the
calibration batches of each batch's minimum and maximum (ONNX Runtime's MinMax with
`CalibMovingAverage`). Plain `minmax` takes the extremes over all images, so a few rare large
activations stretch a tensor's 8-bit steps, and more calibration images make that worse: measured
here, keypoint run 6 calibrated with `minmax` on 200 crops of three seeds broke on two (median
keypoint deviation 55 and 108 px) and on 800 crops on both; with `minmax-mean` it passed on all
(0.6-2.0 px).

The float model's metadata_props are copied unchanged (the runtime reads its ModelInfo from them)
plus a `quantization` key (JSON: format, types, calibration, source model and its sha256). Needs
onnx, onnxruntime and tqdm, not torch: it also runs on a robot.

A keypoint model is then checked against its float original on images of --calib-dir left out of
calibration (or, when there are none, calibration images): a median keypoint deviation over 5% of
the input side keeps the written model but exits with code 1 and says why (INT8 can break a model
whose activations span a wide range; keypoint runs 2 to 5 are such models). Exit code 2: bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from tqdm import tqdm

from hand_cpm_ros.backends.base import BackendError, ModelInfo
from hand_cpm_ros.backends.onnxruntime_backend import OnnxRuntimeBackend, read_onnx_metadata
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.files import write_atomic
from hand_cpm_ros.tensorrt_build import calibration_batches, list_calibration_images, sha256_file

QUANTIZATION_KEY = 'quantization'
_QUANT_TYPES = {'uint8': QuantType.QUInt8, 'int8': QuantType.QInt8}
# name -> (ONNX Runtime calibration method, the quantize_static extra_options it needs)
_CALIBRATION_METHODS = {'minmax-mean': (CalibrationMethod.MinMax, {'CalibMovingAverage': True}),
                        'minmax': (CalibrationMethod.MinMax, {}),
                        'entropy': (CalibrationMethod.Entropy, {}),
                        'percentile': (CalibrationMethod.Percentile, {})}
TYPES = tuple(_QUANT_TYPES)
CALIBRATION_METHODS = tuple(_CALIBRATION_METHODS)
DEFAULT_CALIB_COUNT = 200
DEFAULT_CALIB_BATCH = 8
# The agreement check after quantising a keypoint model: int8 vs float keypoints on this many
# images of --calib-dir, those after the calibration images when there are any. A median
# deviation over MAX_MEDIAN_DEVIATION of the input side fails it: measured here, an INT8 model that
# lost 0.03 PCK@0.2 moved its keypoints by a median 2.6% of the input, one that fell from 0.78 to
# 0.17 by 30%.
CHECK_COUNT = 32
MAX_MEDIAN_DEVIATION = 0.05


@dataclass(frozen=True)
class QuantizationSettings:
    """How the model is quantised; stored (with the calibration facts) in the `quantization`
    metadata key."""
    activation_type: str = 'uint8'
    weight_type: str = 'int8'
    per_channel: bool = True
    calibrate_method: str = 'minmax-mean'
    reduce_range: bool = False

    def __post_init__(self):
        for name in ('activation_type', 'weight_type'):
            if getattr(self, name) not in TYPES:
                raise ValueError(f'{name} must be one of {", ".join(TYPES)}, '
                                 f'got {getattr(self, name)!r}')
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(f'calibrate_method must be one of {", ".join(CALIBRATION_METHODS)}, '
                             f'got {self.calibrate_method!r}')


def quantizable_model_info(onnx_path: str | Path) -> tuple[dict[str, str], ModelInfo]:
    """(metadata_props, ModelInfo) of a float hand-cpm ONNX model; ValueError naming the problem
    (missing or unreadable file, no hand-cpm metadata, already quantised)."""
    try:
        metadata = read_onnx_metadata(onnx_path)
    except BackendError as error:
        raise ValueError(str(error)) from error
    try:
        info = ModelInfo.from_metadata(metadata)
    except ValueError as error:
        raise ValueError(f'{onnx_path}: {error}') from error
    if QUANTIZATION_KEY in metadata:
        raise ValueError(f'{onnx_path} is already quantised (metadata key {QUANTIZATION_KEY!r}); '
                         f'quantise the float model from hand-cpm-export')
    return metadata, info


class BatchReader(CalibrationDataReader):
    """ONNX Runtime's calibration reader over normalised (N,3,H,W) float32 batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray], total: int | None,
                 progress: bool):
        self._input_name = input_name
        self._batches = iter(tqdm(batches, total=total, unit='batch', desc='calibrating',
                                  disable=not progress))
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.count += len(batch)
        return {self._input_name: batch}


def quantize_onnx(onnx_path: str | Path, out_path: str | Path, batches: Iterable[np.ndarray],
                  settings: QuantizationSettings = QuantizationSettings(),
                  calibration_source: str = 'unnamed', batch_count: int | None = None,
                  progress: bool = False) -> Path:
    """Write the static INT8 (QDQ) version of the float model `onnx_path` to `out_path`
    (atomically) and return it. `batches` are normalised (N,3,H,W) float32 inputs, as the runtime
    feeds the model; `calibration_source` names them in the metadata."""
    metadata, _ = quantizable_model_info(onnx_path)
    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    reader = BatchReader(input_name, batches, batch_count, progress)
    with tempfile.TemporaryDirectory(prefix='hand-cpm-quantize-') as work:
        prepared = Path(work) / 'prepared.onnx'
        quantized = Path(work) / 'quantized.onnx'
        # auto_merge: the localiser's Resize outputs otherwise leave symbolic shapes unresolved
        quant_pre_process(str(onnx_path), str(prepared), auto_merge=True)
        method, extra_options = _CALIBRATION_METHODS[settings.calibrate_method]
        quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                        per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                        activation_type=_QUANT_TYPES[settings.activation_type],
                        weight_type=_QUANT_TYPES[settings.weight_type],
                        calibrate_method=method, extra_options=extra_options)
        model = onnx.load(str(quantized))
    description = {'format': 'QDQ', **asdict(settings), 'calibration_images': reader.count,
                   'calibration_source': calibration_source,
                   'source_model': Path(onnx_path).name, 'source_sha256': sha256_file(onnx_path),
                   'onnxruntime': onnxruntime.__version__}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**metadata,
                                        QUANTIZATION_KEY: json.dumps(description, sort_keys=True)})
    onnx.checker.check_model(model)
    return write_atomic(out_path, model.SerializeToString())


def quantize_with_images(onnx_path: str | Path, out_path: str | Path, calib_dir: str | Path,
                         calib_count: int = DEFAULT_CALIB_COUNT,
                         calib_batch: int = DEFAULT_CALIB_BATCH,
                         settings: QuantizationSettings = QuantizationSettings(),
                         progress: bool = False) -> Path:
    """quantize_onnx calibrated on the first `calib_count` images (sorted) of `calib_dir`:
    hand crops for a keypoint model, whole frames for a localiser (as hand-cpm-build-engine)."""
    if calib_count < 1:
        raise ValueError(f'calibration image count must be >= 1, got {calib_count}')
    _, info = quantizable_model_info(onnx_path)
    images = list_calibration_images(calib_dir)[:calib_count]
    batches = calibration_batches(images, info, calib_batch)
    return quantize_onnx(onnx_path, out_path, batches, settings,
                         calibration_source=str(Path(calib_dir).resolve()),
                         batch_count=len(images) // calib_batch, progress=progress)


def keypoint_deviation(float_path: str | Path, int8_path: str | Path,
                       batches: Iterable[np.ndarray], threads: int | None = None) -> np.ndarray:
    """Distance in input pixels, (N, 21), between the keypoints HeatmapCodec decodes from the
    int8 model's maps and from the float model's, over normalised batches (keypoint models)."""
    backends = [OnnxRuntimeBackend(path, threads) for path in (float_path, int8_path)]
    codec = HeatmapCodec.from_dict(backends[0].info.codec)
    distances = []
    for batch in batches:
        float_keypoints, int8_keypoints = (codec.decode_batch(backend.infer(batch))[0]
                                           for backend in backends)
        distances.append(np.linalg.norm(int8_keypoints - float_keypoints, axis=-1))
    return np.concatenate(distances)


def check_images(calib_dir: str | Path, calib_count: int) -> tuple[list[Path], bool]:
    """Up to CHECK_COUNT images of `calib_dir` for the agreement check, and whether they were left
    out of calibration (the ones after the first `calib_count`, else the first ones)."""
    images = list_calibration_images(calib_dir)
    held_out = images[calib_count:calib_count + CHECK_COUNT]
    return (held_out, True) if held_out else (images[:CHECK_COUNT], False)


def agreement_problem(deviation: np.ndarray, input_size: int) -> str | None:
    """Why the int8 model's keypoints (`deviation`: px from the float model's, any shape) are too
    far from the float model's to deploy it, or None when they agree."""
    median = float(np.median(deviation))
    if median <= MAX_MEDIAN_DEVIATION * input_size:
        return None
    return (f'the int8 keypoints are a median {median:.1f} px from the float model\'s '
            f'({100 * median / input_size:.1f}% of the {input_size} px input; the limit is '
            f'{100 * MAX_MEDIAN_DEVIATION:.0f}%): this model has lost its accuracy, do not deploy '
            f'it. Try another --calib-method, or keep the float model (FP16 with TensorRT)')


def default_out_path(onnx_path: str | Path) -> Path:
    """model.onnx -> model.int8.onnx, next to it."""
    path = Path(onnx_path)
    return path.with_name(f'{path.stem}.int8.onnx')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-quantize',
        description='Quantise a hand-cpm ONNX model to static INT8 (QDQ) for ONNX Runtime on CPU, '
                    'calibrated on a directory of images. A keypoint model is checked against '
                    'the float one afterwards: exit code 1 when its keypoints moved too far '
                    '(the model is kept), 2 for bad input.')
    parser.add_argument('--onnx', required=True, help='float ONNX model from hand-cpm-export')
    parser.add_argument('--calib-dir', required=True,
                        help='calibration images: hand crops for a keypoint model, whole camera '
                             'frames for a localiser; use training images, not the test set')
    parser.add_argument('--out',
                        help='INT8 model to write (default: MODEL.int8.onnx beside --onnx)')
    parser.add_argument('--calib-count', type=int, default=DEFAULT_CALIB_COUNT,
                        help=f'use the first N images, sorted by name '
                             f'(default {DEFAULT_CALIB_COUNT})')
    parser.add_argument('--calib-batch', type=int, default=DEFAULT_CALIB_BATCH,
                        help=f'calibration batch size (default {DEFAULT_CALIB_BATCH})')
    parser.add_argument('--activation-type', choices=TYPES, default='uint8',
                        help='activation type (default uint8: fastest on x86 with int8 weights)')
    parser.add_argument('--weight-type', choices=TYPES, default='int8',
                        help='weight type (default int8, symmetric)')
    parser.add_argument('--per-tensor', action='store_true',
                        help='one weight scale per tensor instead of per output channel')
    parser.add_argument('--calib-method', choices=CALIBRATION_METHODS, default='minmax-mean',
                        help='activation range calibration (default minmax-mean: the mean of '
                             "each calibration batch's min and max; minmax: the extremes over "
                             'all images)')
    parser.add_argument('--reduce-range', action='store_true',
                        help='7-bit weights, against int16 saturation of U8S8 on CPUs without VNNI')
    parser.add_argument('--threads', type=int, help='ONNX Runtime threads of the final check')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument('--no-progress', dest='progress', action='store_false')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out = Path(args.out) if args.out else default_out_path(args.onnx)
    try:
        if not Path(args.onnx).is_file():
            raise ValueError(f'--onnx {args.onnx} does not exist; export one with hand-cpm-export')
        if out.suffix != '.onnx':
            raise ValueError(f'--out {out} should end in .onnx')
        if out.resolve() == Path(args.onnx).resolve():
            raise ValueError('--out must differ from --onnx (the float model is kept)')
        if out.exists() and not args.overwrite:
            raise ValueError(f'{out} exists; pass --overwrite to replace it')
        if args.threads is not None and args.threads < 1:
            raise ValueError('--threads must be >= 1')
        settings = QuantizationSettings(args.activation_type, args.weight_type,
                                        not args.per_tensor, args.calib_method, args.reduce_range)
        quantize_with_images(args.onnx, out, args.calib_dir, args.calib_count, args.calib_batch,
                             settings, progress=args.progress)
    except ValueError as error:
        print(f'hand-cpm-quantize: error: {error}', file=sys.stderr)
        return 2
    metadata = read_onnx_metadata(out)
    info = ModelInfo.from_metadata(metadata)
    used = json.loads(metadata[QUANTIZATION_KEY])['calibration_images']
    print(f'wrote {out} ({info.variant}, static INT8 QDQ, activations {settings.activation_type}, '
          f'weights {settings.weight_type} {"per-tensor" if args.per_tensor else "per-channel"}, '
          f'{settings.calibrate_method} calibration on {used} images; '
          f'{Path(args.onnx).stat().st_size / 1e6:.1f} -> {out.stat().st_size / 1e6:.1f} MB)')
    if info.task == 'keypoints':
        images, held_out = check_images(args.calib_dir, args.calib_count)
        batches = calibration_batches(images, info, min(args.calib_batch, len(images)))
        deviation = keypoint_deviation(args.onnx, out, batches, args.threads)
        print(f'int8 vs float keypoints on {len(deviation)} '
              f'{"images not calibrated on" if held_out else "calibration images"}: median '
              f'{np.median(deviation):.2f} px, mean {deviation.mean():.2f} px, max '
              f'{deviation.max():.2f} px (input pixels); measure accuracy on held-out data with '
              f'hand-cpm-eval')
        problem = agreement_problem(deviation, info.input_size)
        if problem is not None:
            print(f'hand-cpm-quantize: {out} failed the check: {problem}', file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
