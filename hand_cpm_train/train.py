"""hand-cpm-train: train a CPM hand keypoint network on CMU-format or rendered data, or (with
--task localizer) the whole-frame hand localiser on rendered frame scenes.

    hand-cpm-train --config hand_cpm_train/configs/cpm_lite_synth.yaml --data synth/ --out runs/a
    hand-cpm-train --config hand_cpm_train/configs/loc_lite_synth.yaml --data frames/ --out runs/l
    torchrun --nproc_per_node=4 -m hand_cpm_train.train --config ... (DistributedDataParallel)

Arguments come from the command line or `--config FILE` (YAML or JSON whose keys are argument
names); the command line wins. The run directory gets config.json (the resolved config),
log.csv, TensorBoard events (tb/), last.pt (every epoch and every --save-every-steps steps),
best.pt (best validation PCK@0.2), loss.png, pck.png and belief_maps_epochNNN.png; a localiser
run writes the same minus the PCK and belief-map figures, with best.pt by validation AP (boxes at
IoU 0.5). The two tasks share this loop, logging, checkpoints, resume and DDP; a TaskSetup holds
what differs (model, data, loss, validation).
`--resume` continues a run from RUN_DIR/last.pt with its saved config: same samples, same order.
Ctrl-C or SIGTERM stops a run after the step under way and writes last.pt at that step, so
`--resume` loses nothing; a second Ctrl-C stops at once.
"""
from __future__ import annotations

import argparse
import functools
import csv
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.localizer import DEFAULT_SCORE_THRESHOLD, LocalizerCodec
from hand_cpm_train import data, engine, plots
from hand_cpm_train.augment import AugmentConfig
from hand_cpm_train.checkpoint import (FORMAT_VERSION, CheckpointError, checkpoint_task,
                                       load_checkpoint, save_checkpoint)
from hand_cpm_train.localizer_data import MIN_SEEN_KEYPOINTS, FrameDataset, load_frame_records, split_frames
from hand_cpm_train.localizer_model import (LOCALIZER_VARIANTS, LocalizerConfig, build_localizer,
                                            get_localizer_config, parse_frame_size)
from hand_cpm_train.models import (DEFAULT_VARIANT, VARIANTS, ModelConfig, build_model, get_config,
                                   grow_stages, widen_weights)

# Settings a resumed run may change; any other explicit change would silently mix two runs.
# 'out', 'data' and 'val_data' are locations: a run directory copied elsewhere resumes on the same
# images re-rendered (same seeds) or unpacked under another path.
RESUMABLE = {'epochs', 'max_steps', 'workers', 'device', 'val_every', 'save_every_steps',
             'log_every', 'progress', 'resume', 'config', 'belief_samples', 'out', 'data', 'val_data'}
RUN_OUTPUTS = ('last.pt', 'best.pt', 'config.json', 'log.csv', 'loss.png', 'pck.png')
VAL_KEYS = ('n', 'pck@0.05', 'pck@0.1', 'pck@0.2', 'auc', 'epe_px')
LOCALIZER_VAL_KEYS = ('n', 'hands', 'precision', 'recall', 'ap')
TASKS = ('keypoints', 'localizer')
DEFAULT_VARIANTS = {'keypoints': DEFAULT_VARIANT, 'localizer': 'loc-lite'}


class UsageError(ValueError):
    """Bad arguments or files: main prints it on one line and returns 2."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-train', description='Train a Convolutional Pose Machine for 21 hand '
        'keypoints, or (--task localizer) the whole-frame hand localiser.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--config', help='YAML or JSON file of argument values (keys = argument '
                        'names); command-line arguments override it')
    parser.add_argument('--task', default='keypoints', choices=TASKS,
                        help='keypoints: CPM on hand crops; localizer: hand boxes in whole frames '
                             '(data: hand-cpm-synth --scene frame)')
    parser.add_argument('--variant', choices=sorted(VARIANTS) + sorted(LOCALIZER_VARIANTS),
                        help=f'network; default: {DEFAULT_VARIANTS["keypoints"]} (keypoints), '
                             f'{DEFAULT_VARIANTS["localizer"]} (localizer)')
    parser.add_argument('--input-size', type=int, help="keypoints: network input side (multiple "
                        "of 8); default: the variant's")
    parser.add_argument('--stages', type=int, help="keypoints: CPM stages (default: the variant's); "
                        "with --init-weights from a network with fewer, the added stages start as "
                        "copies of its last")
    parser.add_argument('--width-mult', type=float, metavar='W',
                        help="keypoints, light variants: channel multiplier of the MobileNetV2 front "
                             "(default: the variant's, 1.0). With --init-weights, a narrower trained "
                             "network widens into it unchanged (the added channels start unread)")
    parser.add_argument('--frame-size', metavar='WxH',
                        help="localizer: network input WIDTHxHEIGHT (multiples of 32) that frames "
                             "are letterboxed to; default: the variant's (320x256)")
    parser.add_argument('--pyramid-channels', type=int, metavar='N',
                        help="localizer: width of the stride-4 path and head; default: the "
                             "variant's (48). With --init-weights, a narrower trained localiser "
                             'widens into it unchanged (the added channels start unread)')
    parser.add_argument('--data', nargs='+', help='training data directories')
    parser.add_argument('--format', choices=data.FORMATS, help='data format (default: detect)')
    parser.add_argument('--val-data', nargs='+', help='held-out validation directories (preferred: '
                        'e.g. renders with another seed); without it, --val-fraction of the '
                        'training groups (videos / images) is held out')
    parser.add_argument('--val-fraction', type=float, default=0.1)
    parser.add_argument('--out', help='run directory')
    parser.add_argument('--epochs', type=int, default=40)
    parser.add_argument('--batch-size', type=int, default=16, help='per process')
    parser.add_argument('--lr', type=float, default=1e-3, help='peak learning rate (AdamW)')
    parser.add_argument('--weight-decay', type=float, default=1e-4)
    parser.add_argument('--warmup-steps', type=int, default=500,
                        help='linear warm-up, then cosine decay to 1%% of --lr')
    parser.add_argument('--sigma', type=float, default=7.0,
                        help='keypoints: target Gaussian sigma, input px')
    parser.add_argument('--foreground-weight', type=float, default=0.0,
                        help='keypoints: weight each keypoint-map cell by 1 + this x target '
                             '(0: plain L2 as OpenPose; see hand_cpm_train.losses)')
    parser.add_argument('--false-peak-weight', type=float, default=0.0,
                        help="keypoints: weight each keypoint-map cell by a further this x how far "
                             "each stage's prediction rises above the target there, so that a peak "
                             'in the wrong place costs as much as a missed one (0: off; see '
                             'hand_cpm_train.losses)')
    parser.add_argument('--regression-radius', type=int, default=0, choices=(0, 1, 2),
                        help="localizer: cells up to this far from a hand's centre cell learn its "
                             'box, weighted by the centre Gaussian; 0: the centre cell only '
                             '(CenterNet), 1: the 3x3 around it, so a peak a cell off still reads '
                             'a trained box')
    parser.add_argument('--box-iou-weight', type=float, default=0.0,
                        help='localizer: add this x (1 - GIoU) of the regressed boxes to the loss, '
                             'next to the L1 on their sizes and offsets (0: off; see '
                             'hand_cpm_train.localizer_model.localizer_loss)')
    parser.add_argument('--centre-sigma-fraction', type=float, default=None,
                        help="localizer: the centre Gaussian's sigma per axis as a fraction of the "
                             'box extent (default: the codec\'s 1/6); smaller makes a second peak '
                             'near a hand cost more')
    parser.add_argument('--ignore-hidden-hands', action='store_true',
                        help=f'localizer: hands with fewer than {MIN_SEEN_KEYPOINTS} of their 21 keypoints '
                             'visible (mostly behind something or out of the frame) are no targets, '
                             'and a centre found on one is not penalised either')
    parser.add_argument('--augment', type=json.loads, default={},
                        help='JSON object of AugmentConfig overrides, e.g. \'{"rotation_deg": 90}\'')
    parser.add_argument('--no-augment', action='store_true', help='train on plain crops')
    parser.add_argument('--use-hidden-keypoints', action='store_true',
                        help='also crop by and supervise keypoints marked hidden but inside the '
                             'image (renders: exact self-occluded joints); not for hand labels')
    parser.add_argument('--workers', type=int, default=4, help='data loader processes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='auto', help="'auto', 'cpu', 'cuda', 'cuda:1'")
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    parser.add_argument('--resume', action='store_true', help='continue from RUN_DIR/last.pt if present')
    parser.add_argument('--init-weights', metavar='CHECKPOINT',
                        help='start a new run from the network weights of this hand-cpm-train '
                        'checkpoint (same task and variant; fresh optimiser and schedule), e.g. '
                        'to go on with other targets or data, at another --input-size or with '
                        'more --stages')
    parser.add_argument('--overwrite', action='store_true',
                        help='start over in a run directory that already holds a run')
    parser.add_argument('--max-steps', type=int, help='stop after this many steps in total')
    parser.add_argument('--val-every', type=int, default=1, help='validate every N epochs')
    parser.add_argument('--save-every-steps', type=int, default=500, help='also write last.pt every N steps')
    parser.add_argument('--log-every', type=int, default=10, help='log the mean loss every N steps')
    parser.add_argument('--belief-samples', type=int, default=3,
                        help='validation crops shown in belief_maps_epochNNN.png')
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bars')
    return parser


def _load_config_file(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f'config file {file} does not exist')
    try:
        values = yaml.safe_load(file.read_text(encoding='utf-8'))   # YAML is a superset of JSON
    except UnicodeDecodeError as error:
        raise UsageError(f'config file {file} is not a text file (not UTF-8: {error.reason} at byte '
                         f'{error.start}); give a YAML or JSON file such as '
                         f'hand_cpm_train/configs/cpm_lite_s_synth.yaml') from error
    except yaml.YAMLError as error:
        raise UsageError(f'config file {file} is not valid YAML/JSON: {error}') from error
    if not isinstance(values, dict):
        raise UsageError(f'config file {file} must hold a mapping of argument names to values')
    return {key.replace('-', '_'): value for key, value in values.items()}


def resolve_args(argv: list[str] | None) -> tuple[argparse.Namespace, set[str]]:
    """(arguments: defaults < --config file < command line, the names given on the command line)."""
    parser = get_args_parser()
    dests = set(vars(parser.parse_args([])))
    pre = parser.parse_args(argv)
    if pre.config:
        values = _load_config_file(pre.config)
        unknown = sorted(set(values) - dests)
        if unknown:
            raise UsageError(f'unknown keys {unknown} in {pre.config}; valid: {sorted(dests)}')
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    # argparse leaves attributes that already exist alone, so a sentinel shows what was typed.
    unset = object()
    typed = get_args_parser().parse_args(argv, argparse.Namespace(**dict.fromkeys(dests, unset)))
    return args, {name for name, value in vars(typed).items() if value is not unset}


def _as_list(value) -> list[str] | None:
    if value is None:
        return None
    return [str(v) for v in ([value] if isinstance(value, (str, Path)) else value)]


def _validate(config: dict) -> None:
    """Check a resolved config and fill in the task's default variant."""
    task = config['task']
    config['variant'] = config['variant'] or DEFAULT_VARIANTS[task]
    variants = LOCALIZER_VARIANTS if task == 'localizer' else VARIANTS
    if config['variant'] not in variants:
        raise UsageError(f'--variant {config["variant"]} is not a {task} network; valid for '
                         f'--task {task}: {", ".join(sorted(variants))}')
    if task == 'localizer' and config['input_size']:
        raise UsageError('--input-size is for keypoint networks; the localiser takes '
                         '--frame-size WIDTHxHEIGHT')
    if task == 'localizer' and config.get('stages') is not None:
        raise UsageError('--stages is for keypoint networks')
    if config.get('stages') is not None and config['stages'] < 1:
        raise UsageError(f'--stages must be >= 1, got {config["stages"]}')
    if config.setdefault('width_mult', None) is not None and (
            task == 'localizer' or config['variant'] == 'cpm-vgg19' or not 0.25 <= config['width_mult'] <= 4):
        raise UsageError(f'--width-mult is for the light keypoint variants (cpm-lite, cpm-lite-s) and '
                         f'must be 0.25-4, got {config["width_mult"]} for {config["variant"]}')
    if config.setdefault('pyramid_channels', None) is not None and (
            task == 'keypoints' or config['pyramid_channels'] < 8):
        raise UsageError(f'--pyramid-channels is for --task localizer and must be >= 8, got '
                         f'{config["pyramid_channels"]}')
    if task == 'keypoints' and config['frame_size']:
        raise UsageError('--frame-size is for --task localizer; keypoint networks take --input-size')
    if not config.get('out'):
        raise UsageError('--out RUN_DIR is required')
    if not config.get('data'):
        raise UsageError('--data DIR [DIR ...] is required (or --resume an existing run)')
    for name in ('epochs', 'batch_size', 'val_every', 'save_every_steps', 'log_every'):
        if config[name] < 1:
            raise UsageError(f'--{name.replace("_", "-")} must be >= 1, got {config[name]}')
    if config['max_steps'] is not None and config['max_steps'] < 1:
        raise UsageError(f'--max-steps must be >= 1, got {config["max_steps"]}')
    if not config['lr'] > 0 or not config['sigma'] > 0:
        raise UsageError('--lr and --sigma must be > 0')
    for name in ('foreground_weight', 'false_peak_weight'):
        if not config.setdefault(name, 0.0) >= 0:
            raise UsageError(f'--{name.replace("_", "-")} must be >= 0, got {config[name]}')
    if task == 'keypoints' and config.setdefault('regression_radius', 0):
        raise UsageError('--regression-radius is for --task localizer')
    if not config.setdefault('box_iou_weight', 0.0) >= 0:
        raise UsageError(f'--box-iou-weight must be >= 0, got {config["box_iou_weight"]}')
    if task == 'keypoints' and config['box_iou_weight']:
        raise UsageError('--box-iou-weight is for --task localizer')
    if task == 'keypoints' and config.setdefault('ignore_hidden_hands', False):
        raise UsageError('--ignore-hidden-hands is for --task localizer')
    fraction = config.setdefault('centre_sigma_fraction', None)
    if fraction is not None and (task == 'keypoints' or not 0.0 < fraction <= 1.0):
        raise UsageError(f'--centre-sigma-fraction is for --task localizer and must be in (0, 1], '
                         f'got {fraction}')
    if not isinstance(config['augment'], dict):
        raise UsageError('--augment must be a JSON object / mapping of AugmentConfig fields')


def prepare_run(args: argparse.Namespace, explicit: set[str]) -> tuple[dict, dict | None]:
    """(resolved config, checkpoint state to resume from or None); refuses to clobber a run."""
    config = vars(args).copy()
    config['data'], config['val_data'] = _as_list(config['data']), _as_list(config['val_data'])
    # A resumed run keeps the init_weights it started from (provenance); only asking for both is wrong.
    if config['resume'] and 'init_weights' in explicit and config.get('init_weights'):
        raise UsageError('--init-weights starts a new run; --resume continues one: pass only one')
    if not config.get('out'):
        raise UsageError('--out RUN_DIR is required')
    run_dir = Path(config['out'])
    last = run_dir / 'last.pt'
    if last.is_file() and config['resume']:
        try:
            state = load_checkpoint(last)
        except CheckpointError as error:
            raise UsageError(str(error)) from error
        saved = dict(state['train_config'])
        for name, default in vars(get_args_parser().parse_args([])).items():
            saved.setdefault(name, default)   # runs from before an argument existed
        conflicts = [name for name in sorted(explicit - RESUMABLE)
                     if name in saved and config[name] != saved[name]]
        if conflicts:
            raise UsageError(f'--resume keeps the saved config; {conflicts} differ from {last} '
                             f'(only {sorted(RESUMABLE - {"config", "resume"})} may change)')
        saved.update({name: config[name] for name in explicit & RESUMABLE})
        _validate(saved)
        return saved, state
    if last.is_file() and not config['overwrite']:
        raise UsageError(f'{run_dir} already holds a run (last.pt); pass --resume to continue it or '
                         f'--overwrite to start over')
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / 'config.json').is_file() \
            and not config['overwrite']:
        raise UsageError(f'{run_dir} is not empty and not a hand-cpm-train run; choose another '
                         f'--out or pass --overwrite')
    _validate(config)
    if config['overwrite']:
        for name in RUN_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)
        for figure in run_dir.glob('belief_maps_epoch*.png'):
            figure.unlink()
        shutil.rmtree(run_dir / 'tb', ignore_errors=True)
    return config, None


def load_split(config: dict, load: Callable[[str], list] | None = None,
               split: Callable[[list, float], tuple[list, list]] = data.split_by_group
               ) -> tuple[list, list, str]:
    """(train records, validation records, how they were split). Never the same images twice.
    `load(root)` reads one directory (default: the keypoint records of config['format']),
    `split` holds out config['val_fraction'] when there is no --val-data."""
    load = load or (lambda root: data.load_records(root, config['format']))
    train = [record for root in config['data'] for record in load(root)]
    if config['val_data']:
        val = [record for root in config['val_data'] for record in load(root)]
        overlap = {r.image_path.resolve() for r in train} & {r.image_path.resolve() for r in val}
        if overlap:
            raise UsageError(f'--val-data shares {len(overlap)} images with --data (e.g. '
                             f'{sorted(overlap)[0]}); validation must be held out')
        return train, val, 'val-data directories'
    train, val = split(train, config['val_fraction'])
    if not val or not train:
        raise UsageError(f'holding out {config["val_fraction"]} of the groups leaves an empty '
                         f'{"validation" if not val else "training"} set ({len(train) + len(val)} '
                         f'samples); pass --val-data or change --val-fraction')
    return train, val, f'group hash, val_fraction {config["val_fraction"]}'


# The networks are fully convolutional: their weights do not depend on these.
INPUT_SIZE_FIELDS = ('input_size', 'input_width', 'input_height')


def load_initial_weights(model: nn.Module, path: str, task: str, model_config) -> None:
    """Copy the network weights of checkpoint `path` into `model` (--init-weights); the
    checkpoint must hold the same task and network configuration, except that it may have been
    trained at another input size (a run can fine-tune a network at a finer input), with fewer
    stages (a run can add refinement stages), for a light keypoint network with a narrower front
    (width_mult), or, for the localiser, with fewer blocks or a narrower stride-4 path (a run can
    grow loc-lite into loc-deep, or widen it): added blocks start as identities, added channels
    unread (models.widen_weights)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise UsageError(f'--init-weights: {error}') from error
    if checkpoint_task(state) != task:
        raise UsageError(f'--init-weights {path} holds a {checkpoint_task(state)} network, not '
                         f'{task}')
    saved_dict = state['model_config']
    try:  # through the dataclass: a field added since (with its default) is not a difference
        saved = type(model_config).from_dict(saved_dict)
    except (TypeError, ValueError):
        saved = None
    adjustable = {name: getattr(saved, name) for name in INPUT_SIZE_FIELDS + ('stages',)
                  if hasattr(saved, name)}
    sizes = {name: value for name, value in adjustable.items() if name in INPUT_SIZE_FIELDS}
    resized = replace(model_config, **adjustable)   # this network at the checkpoint's size and stages
    grown = saved is not None and resized != saved and resized.grows(saved)
    if saved is None or (resized != saved and not grown):
        raise UsageError(f'--init-weights {path} holds another network configuration '
                         f'({saved_dict.get("name")}); pass the --variant it was trained with '
                         f'(or one that widens or grows it)')
    new_sizes = {name: getattr(model_config, name) for name in sizes}
    if new_sizes != sizes:
        print(f'--init-weights: the network was trained at {_describe_size(sizes)}; this run '
              f'trains it at {_describe_size(new_sizes)}')
    weights = state['model']
    if 'stages' in adjustable and model_config.stages != saved.stages:
        if not 2 <= saved.stages < model_config.stages:
            raise UsageError(f'--init-weights {path} has {saved.stages} stages, this run '
                             f'{model_config.stages}: a run can add stages to a network of 2 or '
                             f'more but not remove any (--stages {saved.stages} keeps them)')
        weights = grow_stages(weights, saved.stages, model_config.stages)
        added = (f'stage {model_config.stages} starts' if model_config.stages == saved.stages + 1
                 else f'stages {saved.stages + 1}-{model_config.stages} start')
        print(f'--init-weights: the network had {saved.stages} stages; {added} as copies of stage '
              f'{saved.stages}')
    if grown and isinstance(model_config, ModelConfig):
        model.load_state_dict(widen_weights(model.state_dict(), weights))
        print(f'--init-weights: its MobileNetV2 front widens from x{saved.width_mult} to '
              f'x{model_config.width_mult}, the added channels unread at first')
        return
    if grown:
        missing, _ = model.load_state_dict(widen_weights(model.state_dict(), weights), strict=False)
        blocks = sorted({key.rsplit('.block.', 1)[0] for key in missing})
        changes = [f'{len(blocks)} added blocks ({", ".join(blocks)}) start as identities'] if blocks else []
        if saved.pyramid_channels != model_config.pyramid_channels:
            changes.append(f'its stride-4 path widens from {saved.pyramid_channels} to '
                           f'{model_config.pyramid_channels} channels, the added ones unread at first')
        print(f'--init-weights: {saved.name} grows into {model_config.name}; {"; ".join(changes)}')
        return
    model.load_state_dict(weights)


def _describe_size(sizes: dict[str, int]) -> str:
    if 'input_size' in sizes:
        return f'input {sizes["input_size"]} px'
    return f'input {sizes["input_width"]}x{sizes["input_height"]}'


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def lr_lambda(warmup_steps: int, total_steps: int):
    """Linear warm-up over warmup_steps, then cosine from 1 to 0.01 at total_steps."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ['RANK']), world, int(os.environ.get('LOCAL_RANK', '0'))


def resolve_device(name: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """'auto' -> cuda if present else cpu; under torchrun each rank takes cuda:LOCAL_RANK."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise UsageError(f'--device {name}: CUDA is not available on this machine; use --device cpu')
        if world > 1:
            return torch.device('cuda', local_rank)
    return torch.device(name)


class TrainingStopped(Exception):
    """A stop was asked for (Ctrl-C, SIGTERM) and last.pt holds the step reached."""

    def __init__(self, signal_name: str, step: int):
        super().__init__(signal_name, step)
        self.signal_name, self.step = signal_name, step


class StopRequest:
    """While entered, Ctrl-C (SIGINT) and SIGTERM ask the run to stop at the end of the step
    under way instead of killing it between checkpoints. A second Ctrl-C stops at once, as
    usual. Outside the main thread (a run started from another thread) nothing is installed."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> 'StopRequest':
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *_exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number: int, _frame) -> None:
        if self.signal_name is not None and number == signal.SIGINT:
            self.__exit__()
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name
        print(f'\n{self.signal_name}: stopping after this step and writing last.pt '
              '(Ctrl-C again to stop at once)', file=sys.stderr, flush=True)

    def requested(self, world: int, device: torch.device) -> bool:
        """Whether any process of the run was asked to stop (all ranks agree, so they stop at
        the same step)."""
        if world == 1:
            return self.signal_name is not None
        flag = torch.tensor([self.signal_name is not None], dtype=torch.int32, device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() and self.signal_name is None:
            self.signal_name = 'SIGTERM'     # only another rank was signalled (torchrun signals all)
        return bool(flag.item())


class RunLog:
    """log.csv + TensorBoard + the in-checkpoint history, written by rank 0 only."""

    def __init__(self, run_dir: Path, loss_names: list[str], val_keys: tuple[str, ...],
                 history: list[dict], step: int):
        self.columns = (['kind', 'step', 'epoch', 'lr'] + [f'loss_{name}' for name in loss_names]
                        + [f'val_{key}' for key in val_keys])
        self.history = history
        self.path = run_dir / 'log.csv'
        with self.path.open('w', newline='') as stream:   # rewritten: rows up to the checkpoint
            writer = csv.DictWriter(stream, self.columns)
            writer.writeheader()
            writer.writerows(history)
        self.tensorboard = SummaryWriter(str(run_dir / 'tb'), purge_step=step or None)

    def add(self, row: dict) -> None:
        self.history.append(row)
        with self.path.open('a', newline='') as stream:
            csv.DictWriter(stream, self.columns).writerow(row)
        for key, value in row.items():
            if key not in ('kind', 'step', 'epoch') and value is not None:
                self.tensorboard.add_scalar(key.replace('_', '/', 1), value, row['step'])
        self.tensorboard.flush()


def _belief_figure(model: nn.Module, dataset: data.HandCropDataset, count: int, device,
                   path: Path) -> None:
    """belief_maps_epochNNN.png: every stage's maps on `count` validation crops."""
    indices = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    samples = [dataset[int(i)] for i in indices]
    model.eval()
    with torch.no_grad():
        stages = model.forward_stages(
            engine.to_model_input(torch.stack([s['image'] for s in samples]), device))
    crops = [dataset.crop(int(i))[0] for i in indices]
    maps = [[stage[row].float().cpu().numpy() for stage in stages] for row in range(len(samples))]
    plots.save_image(path, plots.belief_map_sheet(crops, maps))


@dataclass
class TaskSetup:
    """What differs between training the keypoint CPM and the hand localiser: `train` runs the
    same loop, logging, checkpoints, resume and DDP for both."""
    model_config: ModelConfig | LocalizerConfig
    codec: HeatmapCodec | LocalizerCodec
    augment: AugmentConfig | None
    build_model: Callable[[ModelConfig | LocalizerConfig], nn.Module]
    train_set: Dataset
    counts: dict             # config.json 'data': how many training / validation samples
    split: str               # how validation was held out
    describe: str            # data and network in words, for the start line
    loss_names: list[str]    # the batch loss's named terms, 'total' first
    batch_loss: engine.BatchLoss
    val_keys: tuple[str, ...]
    best_key: str            # the validation number best.pt maximises
    validate: Callable[[nn.Module, torch.device], tuple[dict, object]]   # (summary, details)
    figures: Callable[[nn.Module, torch.device, Path, int, int, list[dict], object], None] | None


def keypoint_setup(config: dict) -> TaskSetup:
    """The CPM on hand crops: PCK validation, PCK curve and belief-map figures."""
    overrides = {name: config.get(name) for name in ('input_size', 'stages', 'width_mult')
                 if config.get(name)}
    model_config = get_config(config['variant'], **overrides)
    codec = HeatmapCodec(input_size=model_config.input_size, stride=model_config.stride,
                         sigma=config['sigma'])
    augment = None if config['no_augment'] else AugmentConfig.from_dict(config['augment'])
    train_records, val_records, split = load_split(config)
    info = data.model_info_for(model_config, codec)
    hidden = bool(config.get('use_hidden_keypoints'))
    train_set = data.HandCropDataset(train_records, codec, info, augment, seed=config['seed'],
                                     use_hidden_keypoints=hidden)
    val_set = data.HandCropDataset(val_records, codec, info, use_hidden_keypoints=hidden)
    val_loader, val_sampler = data.make_loader(val_set, config['batch_size'], False,
                                               config['workers'], config['seed'])

    def validate(model: nn.Module, device: torch.device) -> tuple[dict, engine.Predictions]:
        val_sampler.set_position(0)
        predictions = engine.evaluate(engine.torch_predictor(model, device), val_loader, codec,
                                      progress=config['progress'])
        return predictions.summary(), predictions

    def figures(model, device, run_dir, step, epoch, history, predictions) -> None:
        plots.plot_pck(engine.PCK_THRESHOLDS, {f'step {step}': predictions.pck_curve()},
                       run_dir / 'pck.png', history)
        _belief_figure(model, val_set, config['belief_samples'], device,
                       run_dir / f'belief_maps_epoch{epoch:03d}.png')

    return TaskSetup(
        model_config, codec, augment, build_model, train_set,
        {'train_hands': len(train_records), 'val_hands': len(val_records)}, split,
        f'{len(train_records)} training hands, {len(val_records)} validation hands ({split}); '
        f'{model_config.name} at {model_config.input_size}px',
        ['total'] + [f'stage{k}' for k in range(1, model_config.stages + 1)],
        functools.partial(engine.cpm_batch_loss, foreground_weight=config['foreground_weight'],
                          false_peak_weight=config['false_peak_weight']),
        VAL_KEYS, 'pck@0.2', validate, figures)


def localizer_setup(config: dict) -> TaskSetup:
    """The hand localiser on whole frames: validation by box AP at IoU 0.5 (and precision /
    recall at the deployed score threshold), as hand-cpm-eval measures it."""
    overrides = {}
    if config['frame_size']:
        overrides['input_width'], overrides['input_height'] = parse_frame_size(config['frame_size'])
    if config['pyramid_channels']:
        overrides['pyramid_channels'] = config['pyramid_channels']
    model_config = get_localizer_config(config['variant'], **overrides)
    codec = replace(model_config.codec(), regression_radius=config['regression_radius'])
    if config['centre_sigma_fraction'] is not None:
        codec = replace(codec, sigma_fraction=config['centre_sigma_fraction'])
    augment = None if config['no_augment'] else AugmentConfig.from_dict(config['augment'])
    train_records, val_records, split = load_split(config, load_frame_records, split_frames)
    info = data.model_info_for(model_config, codec)
    train_set = FrameDataset(train_records, codec, info, train=augment is not None,
                             seed=config['seed'], augment=augment,
                             ignore_hidden_hands=config['ignore_hidden_hands'])

    def validate(model: nn.Module, device: torch.device) -> tuple[dict, None]:
        summary = engine.evaluate_localizer(
            engine.torch_localizer_predictor(model, device), val_records, codec, info,
            DEFAULT_SCORE_THRESHOLD, batch_size=config['batch_size'], progress=config['progress'])
        return summary, None

    return TaskSetup(
        model_config, codec, augment, build_localizer, train_set,
        {'train_frames': len(train_records), 'val_frames': len(val_records)}, split,
        f'{len(train_records)} training frames, {len(val_records)} validation frames ({split}); '
        f'{model_config.name} at {model_config.input_width}x{model_config.input_height}',
        ['total', 'heat', 'size', 'offset', 'side'] + (['box'] if config['box_iou_weight'] else []),
        functools.partial(engine.localizer_batch_loss, box_iou_weight=config['box_iou_weight']),
        LOCALIZER_VAL_KEYS, 'ap', validate, None)


TASK_SETUPS = {'keypoints': keypoint_setup, 'localizer': localizer_setup}


def train(config: dict, state: dict | None) -> int:
    """Run (or continue) the training described by the resolved `config`; returns the exit code."""
    rank, world, local_rank = _distributed()
    device = resolve_device(config['device'], local_rank, world)
    if world > 1:
        torch.distributed.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    main_process = rank == 0
    amp = bool(config['amp']) and device.type == 'cuda'
    if config['amp'] and not amp and main_process:
        print('note: --amp needs CUDA; training in float32 on', device)
    seed_everything(config['seed'] + rank)

    setup = TASK_SETUPS[config['task']](config)
    model_config, codec = setup.model_config, setup.codec
    train_loader, sampler = data.make_loader(setup.train_set, config['batch_size'], True,
                                             config['workers'], config['seed'], rank, world)
    steps_per_epoch = math.ceil(len(sampler) / config['batch_size'])
    total_steps = min(config['max_steps'] or 10 ** 12, config['epochs'] * steps_per_epoch)

    model = setup.build_model(model_config).to(device, memory_format=engine.MEMORY_FORMAT)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config['lr'],
                                  weight_decay=config['weight_decay'])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(min(config['warmup_steps'], total_steps // 5), total_steps))
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    step, best, history = 0, -1.0, []
    if state is not None:
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        scaler.load_state_dict(state['scaler'])
        step, best, history = int(state['step']), float(state['best_metric']), list(state['history'])
    elif config.get('init_weights'):
        load_initial_weights(model, config['init_weights'], config['task'], model_config)
    trained = model
    if world > 1:
        if device.type == 'cuda':
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)

    run_dir = Path(config['out'])
    log = None
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / 'config.json').write_text(json.dumps({
            'train': config, 'model': model_config.to_dict(), 'codec': codec.to_dict(),
            'augment': None if setup.augment is None else setup.augment.to_dict(),
            'data': {**setup.counts, 'split': setup.split, 'steps_per_epoch': steps_per_epoch,
                     'world_size': world},
        }, indent=2))
        log = RunLog(run_dir, setup.loss_names, setup.val_keys, history, step)
        print(f'{setup.describe} on {device}' + (f', resuming at step {step}' if state else ''))

    def checkpoint(name: str, epoch: int) -> None:
        save_checkpoint(run_dir / name, {
            'format_version': FORMAT_VERSION, 'task': config['task'], 'model': model.state_dict(),
            'model_config': model_config.to_dict(), 'codec': codec.to_dict(),
            'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
            'scaler': scaler.state_dict(), 'epoch': epoch, 'step': step, 'best_metric': best,
            'train_config': config, 'history': history})

    window: dict[str, float] = {}
    stop = StopRequest()

    def stop_if_requested(saved: bool) -> None:
        if stop.requested(world, device):
            if main_process and not saved:
                checkpoint('last.pt', step // steps_per_epoch)
            raise TrainingStopped(stop.signal_name, step)

    def on_step(new_step: int, losses: dict[str, float], lr: float) -> None:
        nonlocal step
        step = new_step
        saved = False
        if main_process:
            for name, value in losses.items():
                window[name] = window.get(name, 0.0) + value
            window['count'] = window.get('count', 0) + 1
            if step % config['log_every'] == 0:
                count = window.pop('count')
                log.add({'kind': 'train', 'step': step, 'epoch': step / steps_per_epoch, 'lr': lr,
                         **{f'loss_{name}': value / count for name, value in window.items()}})
                window.clear()
            if step % config['save_every_steps'] == 0:
                checkpoint('last.pt', step // steps_per_epoch)
                saved = True
        if step % steps_per_epoch and step != config['max_steps']:   # the epoch's end checks after validating
            stop_if_requested(saved)

    def validate(epoch: int) -> None:
        nonlocal best
        summary, details = setup.validate(model, device)
        log.add({'kind': 'val', 'step': step, 'epoch': epoch,
                 **{f'val_{key}': summary[key] for key in setup.val_keys}})
        tqdm.write(f'step {step} epoch {epoch}: ' + ', '.join(
            f'{key} {summary[key]:.4g}' for key in setup.val_keys))
        if summary[setup.best_key] > best:
            best = summary[setup.best_key]
            checkpoint('best.pt', epoch)
        if setup.figures is not None:
            setup.figures(model, device, run_dir, step, epoch, history, details)
        if any(row['kind'] == 'train' for row in history):
            plots.plot_losses(history, run_dir / 'loss.png')

    start_epoch, done_in_epoch = divmod(step, steps_per_epoch)
    try:
        with stop:
            for epoch in range(start_epoch, config['epochs']):
                if config['max_steps'] is not None and step >= config['max_steps']:
                    break
                sampler.set_position(epoch, done_in_epoch * config['batch_size'])
                setup.train_set.set_epoch(epoch)
                step = engine.train_one_epoch(
                    trained, train_loader, optimizer, scheduler, scaler, device, epoch=epoch, step=step,
                    max_steps=config['max_steps'], amp=amp, on_step=on_step,
                    progress=config['progress'] and main_process, batch_loss=setup.batch_loss)
                done_in_epoch = 0
                finished = step % steps_per_epoch == 0
                stopping = not finished or epoch + 1 == config['epochs'] or (
                    config['max_steps'] is not None and step >= config['max_steps'])
                if main_process:
                    if finished and ((epoch + 1) % config['val_every'] == 0 or stopping):
                        validate(epoch + 1)
                    elif stopping:
                        validate(epoch)
                    checkpoint('last.pt', step // steps_per_epoch)
                if not stopping:
                    stop_if_requested(saved=True)
                if world > 1:
                    torch.distributed.barrier()
    except engine.NonFiniteLossError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    except TrainingStopped as stopped:
        if main_process:
            command = 'hand-cpm-train' if world == 1 else 'torchrun ... -m hand_cpm_train.train'
            print(f'stopped by {stopped.signal_name} at step {stopped.step}: {run_dir / "last.pt"} '
                  f'written; continue with {command} --out {run_dir} --resume', file=sys.stderr)
        return 128 + signal.Signals[stopped.signal_name].value
    finally:
        if log is not None:
            log.tensorboard.close()
        if world > 1:
            torch.distributed.destroy_process_group()
    if main_process:
        print(f'done: step {step}, best validation {setup.best_key} {best:.4f}; {run_dir}')
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args, explicit = resolve_args(argv)
        config, state = prepare_run(args, explicit)
        return train(config, state)
    except (UsageError, ValueError) as error:
        print(f'hand-cpm-train: error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
