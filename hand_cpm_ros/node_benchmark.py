"""hand-cpm-node-benchmark: hand_cpm_node end to end at a camera's rate, against the targets of
issue #8, and optionally a soak run for memory growth.

    hand-cpm-node-benchmark [--hands 1 2] [--seconds 10] [--fps 30] [--soak-minutes M]
                            [--model PATH] [--localizer PATH] [--backend NAME]
                            [--out DIR] [--json FILE] [--overwrite]

For each --hands count, a 640x480 sequence of that many hands is rendered (hand-cpm-demo's stream,
--seconds long at --fps) and a fresh node is run on it the way hand-cpm-demo runs one: its own
process, with its own localiser. It is warmed up, then the sequence is played at --fps with real
stamps. What it publishes on `hands` and /diagnostics is recorded. hands/heatmap is not subscribed,
so the node does not draw it, as on a robot where nobody views it. With --soak-minutes M, one more
run plays the sequence with the most hands in a loop, restamped, for M minutes. Meanwhile the
node's resident memory is read from /proc/<pid>/status every RSS_PERIOD_S seconds.

Per run: frames published, received by the node (processed + its own dropped-frames counter over
the run), processed, dropped; processed frames/s (the processed share of the stream times --fps);
latency median and p95 (receive time minus stamp, as in the demo); hands found per frame against
the rendered truth; whether the node was alive at the end and exited with 0 on SIGINT. The soak
adds RSS first, last, max, and the slope of a least-squares line over its second half.

Prints a markdown table, one row per run, with the targets and pass/fail. --json writes everything
with the machine (name, CPU model, cores). Exit code 0 when every target is met, 1 when one is
missed, 2 for bad arguments or a node that cannot run. The player runs on the same CPU as the node
and takes its share; that is the end-to-end cost on that machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .demo import (MAX_FRAMES, DemoError, Frame, Recorder, add_model_arguments, evaluate,
                   node_command, node_failure, play, positive_fps, prepare_out_dir,
                   rendered_frames, resolve_models, run_command, start_node, stop_node,
                   wait_connected, warm_up)
from .pipeline import DEFAULT_LOCALIZER_NAME, default_model_path

PROG = 'hand-cpm-node-benchmark'
SEED = 0
FPS_TARGETS = {1: 30.0, 2: 20.0}   # issue #8: processed frames/s at a 30 Hz, 640x480 input
P95_TARGETS_MS = {1: 50.0}
# "No growth beyond noise": under one leaked 640x480 bgr frame (0.88 MiB) a minute; a leak of
# only 1 KiB per frame at 30 Hz already grows 1.8 MiB a minute.
RSS_SLOPE_LIMIT_MIB_PER_MIN = 1.0
RSS_PERIOD_S = 10.0
DIAGNOSTICS_TIMEOUT_S = 5.0        # the node publishes them at 1 Hz
MAX_SOAK_MINUTES = 24 * 60


def positive_seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'--seconds must be a positive number, got {text}')
    return value


def soak_minutes(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and 0 <= value <= MAX_SOAK_MINUTES):
        raise argparse.ArgumentTypeError(
            f'--soak-minutes must be in [0, {MAX_SOAK_MINUTES}] (0: no soak), got {text}')
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Run hand_cpm_node end to end on rendered 640x480 streams of one and of two '
                    'hands at a fixed rate; report processed frames/s, drops, latency and hands '
                    'found against the targets of issue #8, and optionally soak it for memory '
                    'growth.')
    parser.add_argument('--hands', type=int, nargs='+', choices=(1, 2), default=[1, 2],
                        help='hands in the rendered stream; one run for each count given '
                             '(default: 1 2)')
    parser.add_argument('--seconds', type=positive_seconds, default=10.0,
                        help='length of each rendered stream (default 10: 300 frames at 30 Hz)')
    parser.add_argument('--fps', type=positive_fps, default=30.0,
                        help='publish rate (Hz, default 30)')
    parser.add_argument('--soak-minutes', type=soak_minutes, default=0.0, metavar='M',
                        help='then play the stream with the most hands in a loop for M minutes, '
                             f'reading the node\'s RSS every {RSS_PERIOD_S:.0f} s (default 0: no '
                             'soak)')
    add_model_arguments(parser)
    parser.add_argument('--out', type=Path, default=None, metavar='DIR',
                        help='directory of the node logs, one subdirectory per run (default: '
                             'outputs/node_benchmark_<timestamp>)')
    parser.add_argument('--json', type=Path, default=None, metavar='FILE',
                        help='write the results, with the machine they ran on, to this file')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into an existing --out directory and replace --json')
    # resolve_models' switch: the node is measured as deployed, with its own localiser
    parser.set_defaults(regions_from_truth=False)
    return parser


# ---------------------------------------------------------------------------------- memory
def parse_vm_rss(status_text: str) -> float:
    """Resident memory in MiB from the text of /proc/<pid>/status (its VmRSS line, in kB)."""
    match = re.search(r'^VmRSS:\s*(\d+)\s*kB\s*$', status_text, re.MULTILINE)
    if match is None:
        raise ValueError('no VmRSS line in the /proc status text (an exited process has none)')
    return int(match.group(1)) / 1024.0


def rss_slope(samples: list[tuple[float, float]]) -> float | None:
    """MiB per minute: the least-squares line through the samples (seconds, MiB) of the second
    half of the time (past the start's allocations); None with fewer than two there."""
    if not samples:
        return None
    half = samples[-1][0] / 2.0
    times, values = np.array([(t, mib) for t, mib in samples if t >= half]).T
    if len(set(times)) < 2:
        return None
    return float(np.polyfit(times / 60.0, values, 1)[0])


class RssSampler:
    """The VmRSS of one process, read at start, every `period` seconds in a background thread,
    and at stop; samples are (seconds since start, MiB). A process that exited gives none."""

    def __init__(self, pid: int, period: float = RSS_PERIOD_S):
        self.status_path = Path(f'/proc/{pid}/status')
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='rss-sampler', daemon=True)

    def _sample(self) -> None:
        try:
            mib = parse_vm_rss(self.status_path.read_text())
        except (OSError, ValueError):
            return
        self.samples.append((round(time.monotonic() - self._started, 3), round(mib, 3)))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def start(self) -> None:
        # The first sample here, not in the thread: on a busy CPU the thread may start late, and
        # a late 'start' sample would be taken for one of the second half's.
        self._started = time.monotonic()
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> dict:
        values = [mib for _, mib in self.samples]
        slope = rss_slope(self.samples)
        return {'period_s': self.period, 'samples': [list(sample) for sample in self.samples],
                'first_mib': values[0] if values else None,
                'last_mib': values[-1] if values else None,
                'max_mib': max(values) if values else None,
                'slope_mib_per_min': None if slope is None else round(slope, 4)}


# ---------------------------------------------------------------------------------- machine
def cpu_model(cpuinfo_text: str) -> str | None:
    """The CPU's name from the text of /proc/cpuinfo ('model name'), None where it has none."""
    match = re.search(r'^model name\s*:\s*(.+?)\s*$', cpuinfo_text, re.MULTILINE)
    return None if match is None else match.group(1)


def machine_info() -> dict:
    cpuinfo = Path('/proc/cpuinfo')
    return {'name': platform.node(),
            'cpu': (cpu_model(cpuinfo.read_text()) if cpuinfo.is_file() else None)
            or platform.processor() or None,
            'cores': os.cpu_count()}


# ---------------------------------------------------------------------------------- targets
def _check(target: str, value: float | None, passed: bool | None) -> dict:
    return {'target': target, 'value': value, 'pass': passed}


def run_checks(run: dict) -> list[dict]:
    """The targets that apply to one run, with pass (True/False) or None when not applicable:
    frames/s and p95 by hand count for the timed runs (frames/s not applicable below that rate:
    the node cannot process more frames than it gets), the RSS slope for the soak, and a clean
    exit for every run."""
    checks = []
    if run['soak']:
        slope = run['rss']['slope_mib_per_min']
        checks.append(_check(f'RSS slope <= {RSS_SLOPE_LIMIT_MIB_PER_MIN:g} MiB/min', slope,
                             None if slope is None else slope <= RSS_SLOPE_LIMIT_MIB_PER_MIN))
    else:
        target = FPS_TARGETS.get(run['hands'])
        if target is not None:
            checks.append(_check(f'>= {target:g} frames/s', run['processed_fps'],
                                 None if run['fps_requested'] < target
                                 else run['processed_fps'] >= target))
        target = P95_TARGETS_MS.get(run['hands'])
        if target is not None:
            p95 = None if run['latency_ms'] is None else run['latency_ms']['p95']
            checks.append(_check(f'p95 < {target:g} ms', p95, p95 is not None and p95 < target))
    checks.append(_check('alive at the end, exit code 0 on SIGINT', run['node_exit_code'],
                         run['node_alive_at_end'] and run['node_exit_code'] == 0))
    return checks


def _number(value: float | None, digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def markdown_table(runs: list[dict]) -> str:
    """One row per run: counts, rate, latency, hands, memory, and each target with its result."""
    verdict = {True: 'pass', False: 'FAIL', None: 'n/a'}
    lines = ['| run | published (Hz) | received | processed | frames/s | dropped | latency median '
             '/ p95 (ms) | hands/frame (truth) | RSS first / last / max (MiB), slope (MiB/min) '
             '| targets |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    for run in runs:
        latency = run['latency_ms'] or {}
        rss = run.get('rss')
        memory = '-' if rss is None else (
            f'{_number(rss["first_mib"])} / {_number(rss["last_mib"])} / '
            f'{_number(rss["max_mib"])}, {_number(rss["slope_mib_per_min"], 2)}')
        targets = '; '.join(f'{check["target"]}: {verdict[check["pass"]]}'
                            for check in run['checks'])
        lines.append(
            f'| {run["run"]} | {run["frames_published"]} ({_number(run["publish_rate_hz"])}) '
            f'| {run["frames_received_by_node"]} | {run["frames_processed"]} '
            f'| {_number(run["processed_fps"])} | {run["frames_dropped"]} '
            f'| {_number(latency.get("median"))} / {_number(latency.get("p95"))} '
            f'| {_number(run["hands_per_frame"], 2)} ({_number(run["truth_hands_per_frame"], 2)}) '
            f'| {memory} | {targets} |')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------- runs
def _dropped_by_node(recorder: Recorder) -> int:
    return int(float(recorder.diagnostics['dropped frames']))


def fresh_diagnostics(recorder: Recorder, process, run_dir: Path) -> None:
    """Spin until diagnostics sent from now on arrive, so that their counters include everything
    the node has received so far."""
    since = time.monotonic()
    while recorder.diagnostics_arrival <= since:
        if process.poll() is not None:
            raise node_failure(process, run_dir)
        if time.monotonic() > since + DIAGNOSTICS_TIMEOUT_S:
            raise DemoError(f'hand_cpm_node sent no diagnostics within {DIAGNOSTICS_TIMEOUT_S:.0f} '
                            f's (log: {run_dir / "node.log"})')
        recorder.executor.spin_once(timeout_sec=0.05)


def measure(context, name: str, hands: int, frames: list[Frame], args: argparse.Namespace,
            command: list[str], run_dir: Path, soak_seconds: float | None = None) -> dict:
    """One run on a fresh node: the stream played once, or for `soak_seconds` in a loop with its
    RSS sampled; its figures and checks."""
    run_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(context, heatmaps=False)
    process = None
    try:
        process = start_node(command, run_dir)
        wait_connected(recorder, False, process, run_dir)
        warm_up(recorder, frames[0], False, process, run_dir)
        fresh_diagnostics(recorder, process, run_dir)
        dropped_before = _dropped_by_node(recorder)
        sampler = None if soak_seconds is None else RssSampler(process.pid)
        if sampler is not None:
            sampler.start()
        try:
            stamps, rate = play(recorder, frames, args.fps, False, process, run_dir,
                                seconds=soak_seconds)
        finally:
            if sampler is not None:
                sampler.stop()
        alive = process.poll() is None
        exit_code = stop_node(process)
        summary, _ = evaluate([frames[index % len(frames)] for index in range(len(stamps))],
                              stamps, recorder)
        dropped_by_node = _dropped_by_node(recorder) - dropped_before
        diagnostics = dict(recorder.diagnostics)
    finally:
        if process is not None:
            stop_node(process)
        recorder.close()
    published, processed = summary['frames_published'], summary['frames_processed']
    run = {'run': name, 'hands': hands, 'soak': soak_seconds is not None,
           'seconds': round(len(stamps) / args.fps, 3), 'fps_requested': args.fps,
           'frames_published': published,
           'publish_rate_hz': None if not math.isfinite(rate) else round(rate, 3),
           'frames_received_by_node': processed + dropped_by_node,
           'frames_processed': processed,
           'frames_dropped': summary['frames_dropped'],
           'frames_dropped_by_node': dropped_by_node,
           'processed_fps': round(args.fps * processed / published, 3),
           'latency_ms': summary['latency_ms'],
           'hands_per_frame': summary['hands_per_frame'],
           'truth_hands_per_frame': summary['truth_hands_per_frame'],
           'detection': summary['detection'],
           'node_alive_at_end': alive, 'node_exit_code': exit_code,
           'node_diagnostics': diagnostics,
           'node_log': str(run_dir / 'node.log')}
    if sampler is not None:
        run['rss'] = sampler.summary()
    run['checks'] = run_checks(run)
    return run


def check_args(args: argparse.Namespace) -> int:
    """The frames per stream; one-line errors for what argparse cannot check alone."""
    if len(set(args.hands)) != len(args.hands):
        raise DemoError(f'--hands lists a count twice: {" ".join(map(str, args.hands))}')
    frames = round(args.seconds * args.fps)
    if not 1 <= frames <= MAX_FRAMES:
        raise DemoError(f'--seconds {args.seconds:g} at --fps {args.fps:g} is {frames} frames; '
                        f'it must be 1..{MAX_FRAMES} (all are held in memory)')
    if args.json is not None:
        if args.json.is_dir():
            raise DemoError(f'--json {args.json} is a directory')
        if args.json.exists() and not args.overwrite:
            raise DemoError(f'--json {args.json} exists; pass --overwrite to replace it')
        if not args.json.resolve().parent.is_dir():
            raise DemoError(f'--json {args.json}: directory {args.json.resolve().parent} does '
                            'not exist')
    return frames


def run(args: argparse.Namespace) -> int:
    num_frames = check_args(args)
    model, localizer = resolve_models(args)
    out_dir = prepare_out_dir(args, prefix='node_benchmark', stale=())
    if localizer is None:
        print(f'{PROG}: note: no hand localiser (no --localizer, no '
              f'{default_model_path(DEFAULT_LOCALIZER_NAME)}): the node finds no hands',
              file=sys.stderr)

    import rclpy

    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # read by rclpy.init below
    context = rclpy.Context()
    rclpy.init(context=context, args=['--ros-args', '--disable-external-lib-logs'])
    command = node_command(model, localizer, args.backend, regions_from_truth=False,
                           parameters=args.param)
    runs = []
    try:
        streams = {hands: rendered_frames(num_frames, str(hands), SEED) for hands in args.hands}
        for hands, frames in streams.items():
            runs.append(measure(context, f'{hands} hand{"s" if hands > 1 else ""}', hands, frames,
                                args, command, out_dir / f'hands{hands}'))
        if args.soak_minutes > 0:
            hands = max(args.hands)
            runs.append(measure(context, f'soak {args.soak_minutes:g} min, {hands} hand'
                                         f'{"s" if hands > 1 else ""}', hands, streams[hands],
                                args, command, out_dir / 'soak',
                                soak_seconds=60.0 * args.soak_minutes))
    finally:
        context.try_shutdown()

    met = all(check['pass'] is not False for run in runs for check in run['checks'])
    print(markdown_table(runs))
    print(f'{PROG}: {"every target met" if met else "a target was missed"}; node logs in '
          f'{out_dir}')
    if args.json is not None:
        report = {'machine': machine_info(), 'model': str(model),
                  'localizer': None if localizer is None else str(localizer),
                  'backend': args.backend, 'node_parameters': args.param,
                  'fps_requested': args.fps, 'seconds': args.seconds,
                  'soak_minutes': args.soak_minutes, 'seed': SEED,
                  'targets': {'fps_by_hands': FPS_TARGETS, 'p95_ms_by_hands': P95_TARGETS_MS,
                              'rss_slope_mib_per_min': RSS_SLOPE_LIMIT_MIB_PER_MIN},
                  'all_targets_met': met, 'runs': runs}
        args.json.write_text(json.dumps(report, indent=2) + '\n')
        print(f'{PROG}: results in {args.json}')
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, get_args_parser(), run, argv)


if __name__ == '__main__':
    sys.exit(main())
