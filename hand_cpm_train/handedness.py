"""Teach a finished keypoint network to tell left from right: `hand-cpm-train-handedness`.

The keypoint network stays as it is. Its shared features and last belief maps are turned, once
per crop, into HandednessHead.describe vectors (on augmented crops: each is mirrored with
probability 0.5 and its side label flipped with it); then only the head's small MLP is fitted on
those vectors, and the epoch with the lowest validation loss is kept. The output is a keypoint
checkpoint with the head (`best.pt`; its keypoint weights are the input's, bit for bit), which
hand-cpm-export turns into an ONNX model with a second output, and the runtime uses for each
hand's side.

The descriptors are cached in OUT/descriptors.npz (atomically, after each set), so a run that
stops is resumed by running the same command again; the fit itself takes seconds.

Writes OUT/best.pt, OUT/handedness.json (accuracy, coverage and accuracy when sure, on the
validation and, with --test-data, the held-out test hands; the training curves) and
OUT/handedness.png (loss curves, and accuracy against the share of hands called as the
threshold on the side score rises).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.files import write_atomic
from hand_cpm_ros.localizer import MIN_HANDEDNESS_SCORE
from hand_cpm_ros.metrics import handedness_summary
from hand_cpm_train import data
from hand_cpm_train.augment import AugmentConfig
from hand_cpm_train.checkpoint import (CheckpointError, checkpoint_task, load_checkpoint,
                                       save_checkpoint)
from hand_cpm_train.models import HandednessHead, ModelConfig, build_model
from hand_cpm_train.plots import plot_handedness

HEAD_PREFIX = 'handedness.'
SIDE_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.01), 2)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-train-handedness',
        description='Fit a handedness head (left / right) on top of a trained keypoint '
                    'checkpoint, leaving its keypoint weights unchanged.')
    parser.add_argument('--checkpoint', required=True,
                        help='keypoint checkpoint (.pt) of a light variant, from hand-cpm-train')
    parser.add_argument('--data', nargs='+', required=True,
                        help='directories of training crops (hand-cpm-synth) with is_left labels')
    parser.add_argument('--val-data', nargs='+', required=True,
                        help='held-out directories that choose the epoch')
    parser.add_argument('--test-data', nargs='+',
                        help='held-out directories reported only, never used to choose')
    parser.add_argument('--out', required=True, help='run directory to write')
    parser.add_argument('--max-crops', type=int, default=12000,
                        help='training crops to describe, drawn at random (default 12000)')
    parser.add_argument('--epochs', type=int, default=60, help='MLP epochs (default 60)')
    parser.add_argument('--lr', type=float, default=2e-3, help='Adam learning rate (default 2e-3)')
    parser.add_argument('--weight-decay', type=float, default=1e-3,
                        help='Adam weight decay (default 1e-3)')
    parser.add_argument('--batch-size', type=int, default=32,
                        help='crops per forward pass of the keypoint network (default 32)')
    parser.add_argument('--workers', type=int, default=1, help='data loader workers (default 1)')
    parser.add_argument('--seed', type=int, default=0, help='draws and initialisation (default 0)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace OUT/best.pt when it exists')
    parser.add_argument('--no-progress', dest='progress', action='store_false',
                        help='no progress bars')
    return parser


def _check_args(args: argparse.Namespace) -> None:
    for name in ('max_crops', 'epochs', 'batch_size'):
        if getattr(args, name) < 1:
            raise ValueError(f'--{name.replace("_", "-")} must be >= 1')
    if args.workers < 0:
        raise ValueError('--workers must be >= 0')
    if not (args.lr > 0 and args.weight_decay >= 0):
        raise ValueError('--lr must be > 0 and --weight-decay >= 0')
    if (Path(args.out) / 'best.pt').exists() and not args.overwrite:
        raise ValueError(f'{Path(args.out) / "best.pt"} exists; pass --overwrite to replace it')


def load_keypoint_network(path: str | Path) -> tuple[dict, nn.Module, ModelConfig, HeatmapCodec]:
    """(checkpoint state, eval-mode model WITH an untrained head and the checkpoint's keypoint
    weights, its config, codec). A head the checkpoint already has is dropped: it is refitted."""
    state = load_checkpoint(path)
    if checkpoint_task(state) != 'keypoints':
        raise CheckpointError(f'{path} holds a {checkpoint_task(state)} network; the handedness '
                              f'head goes on a keypoint network')
    config = replace(ModelConfig.from_dict(state['model_config']), handedness_head=True)
    model = build_model(config)
    trunk = {key: value for key, value in state['model'].items()
             if not key.startswith(HEAD_PREFIX)}
    missing, unexpected = model.load_state_dict(trunk, strict=False)
    if unexpected or any(not key.startswith(HEAD_PREFIX) for key in missing):
        raise CheckpointError(f'{path}: weights do not fit variant {config.name!r}')
    return state, model.eval(), config, HeatmapCodec.from_dict(state['codec'])


def _fingerprint(args: argparse.Namespace, checkpoint_bytes: bytes) -> str:
    """What the cached descriptors depend on: the network and the crops drawn."""
    key = {'checkpoint': hashlib.sha256(checkpoint_bytes).hexdigest(), 'data': args.data,
           'val_data': args.val_data, 'test_data': args.test_data, 'max_crops': args.max_crops,
           'seed': args.seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def describe_crops(model: nn.Module, dataset: data.HandCropDataset, batch_size: int, workers: int,
                   seed: int, label: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors (N, D) float32, is_left (N,) bool) of every crop of `dataset`."""
    loader, sampler = data.make_loader(dataset, batch_size, False, workers, seed)
    sampler.set_position(0)
    descriptors, sides = [], []
    for batch in tqdm(loader, desc=f'describe {label}', disable=not progress, dynamic_ncols=True):
        descriptors.append(model.handedness_descriptors(batch['image'])[1].numpy())
        sides.append(batch['is_left'].numpy())
    return np.concatenate(descriptors).astype(np.float32), np.concatenate(sides).astype(bool)


def _load_cache(path: Path, fingerprint: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as cached:
        if str(cached['fingerprint']) != fingerprint:
            print(f'note: {path} was made from other inputs; describing the crops again',
                  file=sys.stderr)
            return {}
        return {key: cached[key] for key in cached.files if key != 'fingerprint'}


def _save_cache(path: Path, fingerprint: str, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, fingerprint=np.array(fingerprint), **arrays)
    write_atomic(path, buffer.getvalue())


def fit_head(head: HandednessHead, train: tuple[np.ndarray, np.ndarray],
             val: tuple[np.ndarray, np.ndarray], epochs: int, lr: float, weight_decay: float,
             seed: int, progress: bool) -> list[dict]:
    """Fit `head` on descriptor vectors with binary cross-entropy; leaves it in eval mode with
    the weights of the epoch of lowest validation loss. Returns one history row per epoch."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout: the same fit whether or not the descriptors were cached
    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1].astype(np.float32))
    val_x, val_y = torch.from_numpy(val[0]), torch.from_numpy(val[1].astype(np.float32))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_fn = nn.BCEWithLogitsLoss()
    history, best = [], (float('inf'), None)
    for epoch in tqdm(range(epochs), desc='fit head', disable=not progress, dynamic_ncols=True):
        head.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), 256):
            rows = order[start:start + 256]
            if len(rows) < 2:  # BatchNorm needs two samples
                continue
            loss = loss_fn(head(x[rows])[:, 0], y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        schedule.step()
        head.eval()
        with torch.no_grad():
            logits = head(val_x)[:, 0]
            val_loss = float(loss_fn(logits, val_y))
            val_accuracy = float(((logits >= 0) == (val_y > 0.5)).float().mean())
        history.append({'epoch': epoch, 'train_loss': total / len(x), 'val_loss': val_loss,
                        'val_accuracy': val_accuracy})
        if val_loss < best[0]:
            best = (val_loss, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[1])
    head.eval()
    return history


def side_curve(left_probability: np.ndarray, is_left: np.ndarray) -> list[dict]:
    """handedness_summary at every SIDE_THRESHOLDS value: the coverage / accuracy trade-off."""
    return [{'min_score': float(t), **handedness_summary(left_probability, is_left, float(t))}
            for t in SIDE_THRESHOLDS]


def run(args: argparse.Namespace) -> dict:
    """Describe (or reuse the cached descriptors), fit, evaluate and write; returns the summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    checkpoint_bytes = Path(args.checkpoint).read_bytes()
    state, model, config, codec = load_keypoint_network(args.checkpoint)
    info = data.model_info_for(config, codec)
    fingerprint = _fingerprint(args, checkpoint_bytes)
    cache_path = out / 'descriptors.npz'
    cache = _load_cache(cache_path, fingerprint)
    sets = {'train': args.data, 'val': args.val_data, **({'test': args.test_data}
                                                         if args.test_data else {})}
    for name, roots in sets.items():
        if f'{name}_x' in cache:
            print(f'{name}: {len(cache[f"{name}_x"])} cached descriptors from {cache_path}')
            continue
        records = [record for root in roots for record in data.load_records(root)]
        if name == 'train' and len(records) > args.max_crops:
            rng = np.random.default_rng(args.seed)
            records = [records[i] for i in sorted(rng.choice(len(records), args.max_crops,
                                                             replace=False))]
        augment = AugmentConfig() if name == 'train' else None
        dataset = data.HandCropDataset(records, codec, info, augment, seed=args.seed)
        cache[f'{name}_x'], cache[f'{name}_y'] = describe_crops(
            model, dataset, args.batch_size, args.workers, args.seed, name, args.progress)
        _save_cache(cache_path, fingerprint, cache)
    history = fit_head(model.handedness, (cache['train_x'], cache['train_y']),
                       (cache['val_x'], cache['val_y']), args.epochs, args.lr, args.weight_decay,
                       args.seed, args.progress)
    results, curves = {}, {}
    for name in sets:
        with torch.no_grad():
            left = torch.sigmoid(model.handedness(torch.from_numpy(cache[f'{name}_x']))[:, 0])
        left = left.numpy()
        results[name] = handedness_summary(left, cache[f'{name}_y'], MIN_HANDEDNESS_SCORE)
        curves[name] = side_curve(left, cache[f'{name}_y'])
    summary = {'checkpoint': str(args.checkpoint), 'data': args.data, 'val_data': args.val_data,
               'test_data': args.test_data, 'train_crops': int(len(cache['train_x'])),
               'min_score': MIN_HANDEDNESS_SCORE, 'results': results,
               'best_epoch': int(np.argmin([row['val_loss'] for row in history])),
               'history': history, 'curves': curves}
    head_state = {HEAD_PREFIX + key: value for key, value in model.handedness.state_dict().items()}
    save_checkpoint(out / 'best.pt', {
        'format_version': state['format_version'], 'model': {**state['model'], **head_state},
        'model_config': config.to_dict(), 'codec': state['codec'],
        'train_config': state.get('train_config'), 'history': state.get('history', []),
        'handedness': {k: summary[k] for k in ('checkpoint', 'data', 'val_data', 'train_crops',
                                               'results', 'best_epoch')}})
    write_atomic(out / 'handedness.json', json.dumps(summary, indent=2).encode())
    plot_handedness(history, curves, MIN_HANDEDNESS_SCORE, out / 'handedness.png')
    return summary


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        _check_args(args)
        summary = run(args)
    except (ValueError, CheckpointError) as error:
        print(f'hand-cpm-train-handedness: error: {error}', file=sys.stderr)
        return 2
    print(f'wrote {Path(args.out) / "best.pt"} (best epoch {summary["best_epoch"]} of '
          f'{len(summary["history"])}, {summary["train_crops"]} training crops)')
    print(f'| hands | n | accuracy | given a side (>= {MIN_HANDEDNESS_SCORE}) | accuracy on those |'
          f'\n|---|---:|---:|---:|---:|')
    for name, result in summary['results'].items():
        print(f'| {name} | {result["n"]} | {result["accuracy"]:.3f} | {result["coverage"]:.3f} | '
              f'{result["accuracy_when_sure"]:.3f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
