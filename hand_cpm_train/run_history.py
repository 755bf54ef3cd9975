"""hand-cpm-plot-runs: one picture of a chain of training runs, each continuing the one before.

A network trained in several runs (`hand-cpm-train --init-weights`, a new schedule each time) has
its history spread over several run directories. This reads their `log.csv` files in the order
given, lays the runs end to end on one step axis and plots the training loss and the validation
figures (keypoints: PCK@0.2 and EPE; localiser: AP, precision and recall), with a line where each
run starts, so that a person sees at a glance what each run gained and whether the gains level off.
It also prints each run's last validation row.
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hand_cpm_train import plots

# Validation columns plotted per task, one panel each: (log.csv column, label, which way is better).
KEYPOINT_COLUMNS = (('val_pck@0.2', 'PCK@0.2', 'higher'), ('val_epe_px', 'EPE (input px at 368)', 'lower'))
LOCALIZER_COLUMNS = (('val_ap', 'AP', 'higher'), ('val_precision', 'precision', 'higher'),
                     ('val_recall', 'recall', 'higher'))


class RunHistoryError(ValueError):
    """A run directory that cannot be read, with what to do about it."""


@dataclass(frozen=True)
class RunHistory:
    name: str
    train_steps: np.ndarray     # the run's own steps
    train_loss: np.ndarray
    val_steps: np.ndarray
    val: dict[str, np.ndarray]  # column -> values at val_steps

    @property
    def length(self) -> int:
        """Steps the run took (its last logged step)."""
        last = [steps[-1] for steps in (self.train_steps, self.val_steps) if len(steps)]
        return int(max(last)) if last else 0


def _number(text: str) -> float:
    return float(text) if text not in ('', None) else float('nan')


def read_run(run_dir: Path) -> tuple[RunHistory, tuple]:
    """The run's history from its log.csv, and the validation columns of its task."""
    path = run_dir / 'log.csv'
    if not path.is_file():
        raise RunHistoryError(f'{run_dir}: no log.csv; pass run directories that hand-cpm-train wrote')
    with path.open(newline='') as stream:
        rows = list(csv.DictReader(stream))
    header = rows[0].keys() if rows else ()
    if 'val_pck@0.2' in header:
        columns = KEYPOINT_COLUMNS
    elif 'val_ap' in header:
        columns = LOCALIZER_COLUMNS
    else:
        raise RunHistoryError(f'{path}: no validation columns (val_pck@0.2 or val_ap); is it a '
                              'hand-cpm-train log?')
    train = [row for row in rows if row['kind'] == 'train' and row['loss_total'] not in ('', None)]
    val = [row for row in rows if row['kind'] == 'val']
    if not train and not val:
        raise RunHistoryError(f'{path}: no training or validation rows yet')
    history = RunHistory(
        name=run_dir.resolve().name,
        train_steps=np.array([int(row['step']) for row in train]),
        train_loss=np.array([_number(row['loss_total']) for row in train]),
        val_steps=np.array([int(row['step']) for row in val]),
        val={column: np.array([_number(row[column]) for row in val]) for column, _, _ in columns})
    return history, columns


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-plot-runs',
        description='Plot a chain of training runs, each continuing the one before, end to end: '
                    'training loss and validation figures, a line where each run starts.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('runs', nargs='+', type=Path, metavar='RUN_DIR',
                        help='hand-cpm-train run directories, in the order they were trained')
    parser.add_argument('--out', type=Path, required=True, help='PNG file to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    parser.add_argument('--smooth', type=int, default=20,
                        help='plot the training loss as the mean over this many logged steps')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.smooth < 1:
        print('hand-cpm-plot-runs: --smooth must be at least 1', file=sys.stderr)
        return 2
    if args.out.exists() and not args.overwrite:
        print(f'hand-cpm-plot-runs: {args.out} exists; pass --overwrite to replace it', file=sys.stderr)
        return 2
    try:
        read = [read_run(run_dir) for run_dir in args.runs]
    except RunHistoryError as error:
        print(f'hand-cpm-plot-runs: {error}', file=sys.stderr)
        return 2
    tasks = {columns for _, columns in read}
    if len(tasks) > 1:
        print('hand-cpm-plot-runs: the runs mix keypoint and localiser training; plot each apart',
              file=sys.stderr)
        return 2
    runs, columns = [run for run, _ in read], tasks.pop()
    for run in runs:
        last = ', '.join(f'{label} {run.val[column][-1]:.4g}' for column, label, _ in columns
                         if len(run.val_steps))
        print(f'{run.name}: {run.length} steps; last validation: {last or "none"}')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plots.plot_run_chain(runs, columns, args.out, args.smooth)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
