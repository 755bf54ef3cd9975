"""Training figures: per-stage loss over steps, the PCK curve, each stage's belief maps, and a
chain of runs laid end to end.

matplotlib with the Agg backend (files only, no display); belief maps reuse
hand_cpm_ros.drawing so the trainer shows them exactly as the node's debug output does.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use('Agg')
from matplotlib import pyplot as plt  # noqa: E402  (after selecting the backend)

from hand_cpm_ros.drawing import belief_map_grid, contact_sheet  # noqa: E402


def _save(figure, path: str | Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_losses(history: Sequence[dict], path: str | Path) -> None:
    """Every loss term (each CPM stage, or the localiser's heat / size / offset / side) and the
    total over steps, log scale, from the trainer's 'train' rows."""
    rows = [row for row in history if row.get('kind') == 'train']
    if not rows:
        raise ValueError('no training rows in the history to plot')
    steps = [row['step'] for row in rows]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    terms = [key for key in rows[0] if key.startswith('loss_') and key != 'loss_total'
             and rows[0][key] not in (None, '')]
    for key in terms + ['loss_total']:
        axis.plot(steps, [row[key] for row in rows], label=key.removeprefix('loss_'),
                  linewidth=2.0 if key == 'loss_total' else 1.0)
    axis.set_yscale('log')
    axis.set_xlabel('step')
    axis.set_ylabel('loss')
    axis.grid(True, which='both', alpha=0.3)
    axis.legend(ncol=2, fontsize='small')
    _save(figure, path)


def plot_pck(thresholds: np.ndarray, curves: dict[str, np.ndarray], path: str | Path,
             history: Sequence[dict] = ()) -> None:
    """PCK over normalised thresholds (one line per label, AUC in the legend); with validation
    rows in `history`, a second panel shows PCK@0.2 and AUC over the training steps."""
    validations = [row for row in history if row.get('kind') == 'val']
    panels = 2 if validations else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    axis = axes[0, 0]
    for label, curve in curves.items():
        area = float(np.trapezoid(curve, thresholds) / (thresholds[-1] - thresholds[0]))
        axis.plot(thresholds, curve, label=f'{label} (AUC {area:.3f})')
    axis.set_xlabel('threshold (fraction of the hand box side)')
    axis.set_ylabel('PCK')
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize='small')
    if validations:
        axis = axes[0, 1]
        steps = [row['step'] for row in validations]
        axis.plot(steps, [row['val_pck@0.2'] for row in validations], 'o-', label='PCK@0.2')
        axis.plot(steps, [row['val_auc'] for row in validations], 's-', label='AUC 0..0.5')
        axis.set_xlabel('step')
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize='small')
    _save(figure, path)


def plot_precision_recall(curves: dict[str, dict], score_threshold: float, path: str | Path,
                          target: tuple[float, float] | None = None) -> None:
    """Precision over recall of detectors (label -> metrics.precision_recall_curve), each with its
    operating point at `score_threshold` marked, and the (recall, precision) `target` if given."""
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for label, curve in curves.items():
        line, = axis.plot(curve['recall'], curve['precision'], label=label)
        kept = np.flatnonzero(curve['score'] >= score_threshold)
        if len(kept):
            axis.plot(curve['recall'][kept[-1]], curve['precision'][kept[-1]], 'o', color=line.get_color(),
                      label=f'score {score_threshold:.2f}')
    if target is not None:
        axis.plot(*target, '*', color='black', markersize=12, label='target')
    axis.set_xlabel('recall')
    axis.set_ylabel('precision')
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize='small', loc='lower left')
    _save(figure, path)


def belief_map_sheet(crops_bgr: Sequence[np.ndarray], stage_maps: Sequence[Sequence[np.ndarray]],
                     cell: int = 64) -> np.ndarray:
    """One row per crop, one column per stage: drawing.belief_map_grid of that stage's 22 maps
    over the crop (the article's stage-by-stage picture). stage_maps[i][k] is (22, S, S)."""
    if len(crops_bgr) != len(stage_maps) or not crops_bgr:
        raise ValueError('need one list of stage maps per crop, and at least one crop')
    grids, labels = [], []
    for row, (crop, stages) in enumerate(zip(crops_bgr, stage_maps)):
        for stage, maps in enumerate(stages, start=1):
            grids.append(belief_map_grid(np.asarray(maps), crop, cell=cell))
            labels.append(f'sample {row} stage {stage}')
    height, width = grids[0].shape[:2]
    return contact_sheet(grids, columns=len(stage_maps[0]), cell_size=(width, height), labels=labels)


def save_image(path: str | Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f'could not write image {path}')


def plot_handedness(history: Sequence[dict], curves: dict[str, Sequence[dict]], min_score: float,
                    path: str | Path) -> None:
    """hand-cpm-train-handedness's figure: the head's loss curves, and per set of hands the
    accuracy on the hands given a side against their share as the side-score threshold rises
    (a dot at `min_score`, the runtime's threshold)."""
    figure, (losses, trade_off) = plt.subplots(1, 2, figsize=(11, 4.2))
    epochs = [row['epoch'] for row in history]
    losses.plot(epochs, [row['train_loss'] for row in history], label='train')
    losses.plot(epochs, [row['val_loss'] for row in history], label='validation')
    losses.set(xlabel='epoch', ylabel='binary cross-entropy', title='handedness head')
    losses.legend()
    for name, rows in curves.items():
        trade_off.plot([r['coverage'] for r in rows], [r['accuracy_when_sure'] for r in rows],
                       label=name)
        at = next(r for r in rows if r['min_score'] >= min_score - 1e-9)
        trade_off.plot(at['coverage'], at['accuracy_when_sure'], 'o', color='black')
    trade_off.set(xlabel='share of hands given a side', ylabel='accuracy on those',
                  title=f'raising the side-score threshold (dot: {min_score})',
                  xlim=(0, 1.02), ylim=(0.45, 1.01))
    trade_off.grid(alpha=0.3)
    trade_off.legend()
    _save(figure, path)


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over the last `window` values (fewer at the start); smooths a noisy loss."""
    if len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


def plot_run_chain(runs: Sequence, columns: Sequence[tuple[str, str, str]], path: str | Path,
                   smooth: int) -> None:
    """Training loss and each validation column (column, label, 'higher'/'lower' is better) of
    runs that continue each other (hand_cpm_train.run_history.RunHistory), laid end to end."""
    figure, axes = plt.subplots(1 + len(columns), 1, figsize=(9, 2.6 * (1 + len(columns))),
                                sharex=True)
    offset = 0
    ends: list[tuple[int, dict]] = []   # each run's last validation, joined across runs
    for run in runs:
        if len(run.val_steps):
            last = {column: run.val[column][-1] for column, _, _ in columns}
            ends.append((run.val_steps[-1] + offset, last))
        if len(run.train_steps):
            axes[0].plot(run.train_steps + offset, moving_mean(run.train_loss, smooth), linewidth=1)
        for axis, (column, _, _) in zip(axes[1:], columns):
            axis.plot(run.val_steps + offset, run.val[column], 'o-', markersize=3)
        for axis in axes:
            axis.axvline(offset, color='grey', linestyle=':', linewidth=0.8)
        axes[0].annotate(run.name, (offset, 1), xycoords=('data', 'axes fraction'), rotation=90,
                         fontsize='x-small', va='top', ha='right')
        offset += run.length
    for axis, (column, _, _) in zip(axes[1:], columns):
        axis.plot([step for step, _ in ends], [values[column] for _, values in ends], '--',
                  color='black', linewidth=0.8, label='end of each run')
        axis.legend(fontsize='x-small', loc='best')
    axes[0].set_yscale('log')
    axes[0].set_ylabel(f'training loss\n(mean of {smooth} logs)')
    for axis, (_, label, better) in zip(axes[1:], columns):
        axis.set_ylabel(f'validation {label}\n({better} is better)')
    for axis in axes:
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel('step, runs end to end')
    _save(figure, path)
