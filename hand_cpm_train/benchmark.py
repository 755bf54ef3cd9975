"""Measure the CPM variants on this machine: `hand-cpm-benchmark` (a command, never a test).

Per variant and backend (ONNX Runtime CPU, torch CPU; both through hand_cpm_ros.backends, the
code the node runs; on request also ONNX Runtime on the static INT8 model of hand-cpm-quantize,
calibrated on noise) and batch size: latency median / p95 and crops/s after warm-up. Per variant:
training images/s (forward + backward + AdamW step with cpm_loss, random data) and eval crops/s
(torch, inference mode). The CPU's floor: a large MatMul in ONNX Runtime gives the peak GFLOP/s,
and a variant's GFLOPs over that peak is the fastest a crop could possibly run. Weights are
random (speed does not depend on them).

The hand localiser (loc-lite) is measured per 640x480 camera frame the way the node runs it:
HandLocalizer.detect = letterbox + normalisation + ONNX Runtime + decode, plus the network alone,
at its trained input size or at the --localizer-frame-sizes given (what hand-cpm-export
--frame-size ships).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hand_cpm_ros.backends import create_backend
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.localizer import HandLocalizer
from hand_cpm_train.checkpoint import FORMAT_VERSION, save_checkpoint
from hand_cpm_train.engine import MEMORY_FORMAT, to_model_input
from hand_cpm_train.export import export_onnx
from hand_cpm_train.localizer_model import (LOCALIZER_VARIANTS, LocalizerConfig, build_localizer,
                                            parse_frame_size)
from hand_cpm_train.losses import cpm_loss
from hand_cpm_train.models import VARIANTS, build_model, count_gflops, get_config
from hand_cpm_train.quantize import quantize_onnx

BACKENDS = ('onnxruntime', 'torch')
INT8_BACKEND = 'onnxruntime-int8'  # the ONNX model after hand-cpm-quantize; measured when asked


def time_runs(function, warmup: int, runs: int, time_limit: float) -> list[float]:
    """Seconds per call of `function` over up to `runs` calls after `warmup` calls; stops early
    (after at least 3 runs) once `time_limit` seconds are spent, for slow networks."""
    for _ in range(warmup):
        function()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < runs and (len(times) < 3 or time.perf_counter() - started < time_limit):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure_peak_gflops(threads: int, size: int = 2048, runs: int = 5) -> float:
    """Peak float32 GFLOP/s of ONNX Runtime on this CPU: a size^3 MatMul."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((size, size), dtype=np.float32), 'w')
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['a', 'w'], ['y'])], 'peak',
        [helper.make_tensor_value_info('a', TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [size, size])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=['CPUExecutionProvider'])
    a = rng.standard_normal((size, size), dtype=np.float32)
    best = min(time_runs(lambda: session.run(None, {'a': a}), 1, runs, 30.0))
    return 2.0 * size ** 3 / best / 1e9


def benchmark_training(config, batch: int, steps: int, time_limit: float) -> tuple[float, float]:
    """(training images/s, eval crops/s) of torch on CPU with random inputs and targets, in the
    trainer's memory format."""
    model = build_model(config).to(memory_format=MEMORY_FORMAT).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size, out = config.input_size, config.output_size
    x = to_model_input(torch.randn(batch, 3, size, size), torch.device('cpu'))
    targets = torch.rand(batch, config.num_maps, out, out)
    weights = torch.ones(batch, config.num_maps)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        cpm_loss(model(x), targets, weights)['total'].backward()
        optimizer.step()

    train_times = time_runs(train_step, 1, steps, time_limit)
    model.eval()

    def eval_step():
        with torch.inference_mode():
            model(x)

    eval_times = time_runs(eval_step, 1, steps, time_limit)
    return batch / statistics.median(train_times), batch / statistics.median(eval_times)


def benchmark_variant(name: str, stages: int | None, args, peak: float, directory: Path,
                      progress) -> dict:
    """One keypoint variant (with `stages` CPM stages, or its own number if None) on each backend
    and batch size, and its training speed unless --skip-train."""
    config = get_config(name, **({'stages': stages} if stages else {}))
    if stages and stages != VARIANTS[name].stages:
        name = f'{name}, {stages} stages'
    gflops = count_gflops(config)
    model = build_model(config).eval()
    codec = HeatmapCodec(input_size=config.input_size, stride=config.stride).to_dict()
    stem = f'{config.name}-{config.stages}'
    files = {'onnxruntime': directory / f'{stem}.onnx', 'torch': directory / f'{stem}.pt',
             INT8_BACKEND: directory / f'{stem}.int8.onnx'}
    if 'onnxruntime' in args.backends or INT8_BACKEND in args.backends:
        export_onnx(model, config, codec, files['onnxruntime'])
    if INT8_BACKEND in args.backends:  # noise calibration: ranges do not change the speed
        noise = (np.random.default_rng(seed).standard_normal(
            (4, 3, config.input_size, config.input_size), dtype=np.float32) for seed in range(2))
        quantize_onnx(files['onnxruntime'], files[INT8_BACKEND], noise, calibration_source='noise')
    if 'torch' in args.backends:
        save_checkpoint(files['torch'], {'format_version': FORMAT_VERSION,
                                         'model': model.state_dict(),
                                         'model_config': config.to_dict(), 'codec': codec})
    rows = []
    for backend_name in args.backends:
        backend = create_backend('onnxruntime' if backend_name == INT8_BACKEND else backend_name,
                                 model_path=str(files[backend_name]), threads=args.threads,
                                 logger=lambda _message: None)
        described = backend.describe() + (' int8' if backend_name == INT8_BACKEND else '')
        for batch in args.batches:
            progress.set_description(f'{name} {backend_name} batch {batch}')
            x = np.random.default_rng(batch).standard_normal(
                (batch, 3, config.input_size, config.input_size), dtype=np.float32)
            times = time_runs(lambda: backend.infer(x), args.warmup, args.runs, args.time_limit)
            median = statistics.median(times)
            rows.append({'variant': name, 'backend': described, 'batch': batch,
                         'runs': len(times), 'median_ms': 1e3 * median,
                         'p95_ms': 1e3 * percentile(times, 95), 'crops_per_s': batch / median,
                         'gflops': gflops, 'floor_ms': 1e3 * gflops / peak,
                         'efficiency': gflops * batch / peak / median})
            progress.update()
    result = {'variant': name, 'stages': config.stages, 'gflops': gflops,
              'input_size': config.input_size, 'latency': rows}
    if not args.skip_train:
        progress.set_description(f'{name} training')
        train_rate, eval_rate = benchmark_training(config, args.train_batch, args.train_steps,
                                                   args.time_limit)
        result.update(train_images_per_s=train_rate, eval_crops_per_s=eval_rate)
        progress.update()
    return result


def benchmark_localizer(config: LocalizerConfig, args, directory: Path, progress) -> dict:
    """Latency of one 640x480 frame through HandLocalizer.detect (ONNX Runtime), plain and with
    flip averaging, and of the network alone, with random weights, at the config's input size."""
    name = config.name
    path = export_onnx(build_localizer(config).eval(), config, config.codec().to_dict(),
                       directory / f'{name}_{config.input_width}x{config.input_height}.onnx')
    backend = create_backend('onnxruntime', model_path=str(path), threads=args.threads,
                             logger=lambda _message: None)
    localizer, flip_averaged = HandLocalizer(backend), HandLocalizer(backend, flip_averaging=True)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    network_input = np.random.default_rng(1).standard_normal((1, *backend.info.input_shape),
                                                             dtype=np.float32)
    rows = []
    for what, function in (('detect 640x480 frame', lambda: localizer.detect(frame)),
                           ('detect, flip averaging', lambda: flip_averaged.detect(frame)),
                           ('network only', lambda: backend.infer(network_input))):
        progress.set_description(f'{name} {what}')
        times = time_runs(function, args.warmup, args.runs, args.time_limit)
        rows.append({'variant': name, 'what': what, 'backend': backend.describe(),
                     'runs': len(times), 'median_ms': 1e3 * statistics.median(times),
                     'p95_ms': 1e3 * percentile(times, 95)})
        progress.update()
    return {'variant': name, 'input': backend.info.describe_input(), 'latency': rows}


def markdown(results: list[dict], peak: float, args, localizers: list[dict] = ()) -> str:
    lines = [f'CPU: {platform.processor() or platform.machine()}, {args.threads} threads; '
             f'ONNX Runtime MatMul peak {peak:.0f} GFLOP/s; random weights',
             '', '| variant | GFLOPs | backend | batch | runs | median ms | p95 ms | crops/s | '
             'floor ms/crop | of peak |', '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|']
    for result in results:
        for row in result['latency']:
            lines.append(f'| {row["variant"]} | {row["gflops"]:.2f} | {row["backend"]} | '
                         f'{row["batch"]} | {row["runs"]} | {row["median_ms"]:.1f} | '
                         f'{row["p95_ms"]:.1f} | {row["crops_per_s"]:.1f} | '
                         f'{row["floor_ms"]:.1f} | {100 * row["efficiency"]:.0f}% |')
    if localizers:
        lines += ['', '| localiser | input | measured | backend | runs | median ms | p95 ms |',
                  '|---|---|---|---|---:|---:|---:|']
        lines += [f'| {row["variant"]} | {result["input"]} | {row["what"]} | {row["backend"]} | '
                  f'{row["runs"]} | {row["median_ms"]:.2f} | {row["p95_ms"]:.2f} |'
                  for result in localizers for row in result['latency']]
    if not args.skip_train:
        lines += ['', f'| variant | train images/s (batch {args.train_batch}, torch) | '
                      f'eval crops/s (batch {args.train_batch}, torch) |', '|---|---:|---:|']
        lines += [f'| {r["variant"]} | {r["train_images_per_s"]:.1f} | '
                  f'{r["eval_crops_per_s"]:.1f} |' for r in results]
    return '\n'.join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-benchmark',
        description='Latency, throughput and training speed of the CPM variants on this CPU.')
    parser.add_argument('--variants', nargs='*', default=list(VARIANTS), choices=list(VARIANTS),
                        help='variants to measure (default: all; none with an empty list)')
    parser.add_argument('--stages', nargs='+', type=int, metavar='N',
                        help="measure each variant with these numbers of CPM stages, e.g. 3 5 "
                             "(hand-cpm-train --stages); default: each variant's own")
    parser.add_argument('--backends', nargs='+', default=list(BACKENDS),
                        choices=(*BACKENDS, INT8_BACKEND),
                        help=f'backends to measure (default: {" ".join(BACKENDS)}; '
                             f'{INT8_BACKEND} = static INT8 from hand-cpm-quantize)')
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 2, 4],
                        help='batch sizes (default 1 2 4)')
    parser.add_argument('--runs', type=int, default=30, help='timed runs per measurement')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs first')
    parser.add_argument('--time-limit', type=float, default=20.0,
                        help='seconds per measurement after which timing stops early '
                             '(at least 3 runs; keeps cpm-vgg19 brief)')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (default 2)')
    parser.add_argument('--train-batch', type=int, default=8, help='training batch size')
    parser.add_argument('--train-steps', type=int, default=5, help='timed training steps')
    parser.add_argument('--skip-train', action='store_true', help='only measure inference')
    parser.add_argument('--localizers', nargs='*', default=list(LOCALIZER_VARIANTS),
                        choices=list(LOCALIZER_VARIANTS),
                        help='hand localisers to measure per 640x480 frame (ONNX Runtime); '
                             'none with an empty list')
    parser.add_argument('--localizer-frame-sizes', nargs='+', metavar='WxH',
                        help='measure the localisers at these inputs (multiples of 32), e.g. '
                             '320x256 384x288; default: each variant\'s own')
    parser.add_argument('--json', help='also write the results to this JSON file')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --json file')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    problems = [f'--{name.replace("_", "-")} must be >= 1'
                for name in ('runs', 'threads', 'train_batch', 'train_steps')
                if getattr(args, name) < 1]
    problems += ['--batches must be >= 1'] if min(args.batches) < 1 else []
    problems += ['--warmup must be >= 0'] if args.warmup < 0 else []
    problems += ['--stages must be >= 1'] if args.stages and min(args.stages) < 1 else []
    if args.json and Path(args.json).exists() and not args.overwrite:
        problems.append(f'{args.json} exists; pass --overwrite to replace it')
    localizer_configs = [LOCALIZER_VARIANTS[name] for name in args.localizers]
    try:
        if args.localizer_frame_sizes:  # the config checks multiples of 32
            sizes = [parse_frame_size(text) for text in args.localizer_frame_sizes]
            localizer_configs = [dataclasses.replace(config, input_width=width, input_height=height)
                                 for config in localizer_configs for width, height in sizes]
    except ValueError as error:
        problems.append(str(error))
    if problems:
        print(f'hand-cpm-benchmark: {"; ".join(problems)}', file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    peak = measure_peak_gflops(args.threads)
    variants = [(name, stages) for name in args.variants for stages in (args.stages or [None])]
    steps = len(variants) * (len(args.backends) * len(args.batches) + (not args.skip_train)) \
        + 3 * len(localizer_configs)
    results = []
    with tempfile.TemporaryDirectory(prefix='hand-cpm-benchmark-') as directory, \
            tqdm(total=steps, unit='measurement') as progress:
        for name, stages in variants:
            results.append(benchmark_variant(name, stages, args, peak, Path(directory), progress))
        localizers = [benchmark_localizer(config, args, Path(directory), progress)
                      for config in localizer_configs]
    print(markdown(results, peak, args, localizers))
    if args.json:
        Path(args.json).write_text(json.dumps({'peak_gflops': peak, 'threads': args.threads,
                                               'results': results, 'localizers': localizers},
                                              indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
