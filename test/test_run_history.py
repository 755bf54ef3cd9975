"""hand-cpm-plot-runs: runs laid end to end from their log.csv files, and its refusals."""
import csv

import numpy as np
import pytest

from hand_cpm_train import run_history
from hand_cpm_train.plots import moving_mean

KEYPOINT_HEADER = ['kind', 'step', 'epoch', 'lr', 'loss_total', 'loss_stage1', 'val_n',
                   'val_pck@0.2', 'val_epe_px']


def write_log(run_dir, header, rows):
    run_dir.mkdir(parents=True)
    with (run_dir / 'log.csv').open('w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, '') for key in header})


def keypoint_run(run_dir, steps, first_loss, pck, epe):
    rows = [{'kind': 'train', 'step': step, 'loss_total': first_loss / step, 'loss_stage1': 1.0}
            for step in range(1, steps + 1)]
    rows.append({'kind': 'val', 'step': steps, 'val_n': 10, 'val_pck@0.2': pck, 'val_epe_px': epe})
    write_log(run_dir, KEYPOINT_HEADER, rows)


def test_moving_mean_averages_the_last_window_values():
    values = np.array([1.0, 3.0, 5.0, 7.0])
    assert np.allclose(moving_mean(values, 2), [1.0, 2.0, 4.0, 6.0])
    assert np.allclose(moving_mean(values, 1), values)
    assert len(moving_mean(np.array([]), 3)) == 0


def test_plots_a_chain_of_runs_and_reports_each_runs_last_validation(tmp_path, capsys):
    keypoint_run(tmp_path / 'run_1', 30, 100.0, 0.5, 40.0)
    keypoint_run(tmp_path / 'run_2', 12, 80.0, 0.6, 30.5)
    out = tmp_path / 'figures' / 'runs.png'
    assert run_history.main([str(tmp_path / 'run_1'), str(tmp_path / 'run_2'), '--out', str(out),
                             '--smooth', '5']) == 0
    printed = capsys.readouterr().out
    assert 'run_1: 30 steps; last validation: PCK@0.2 0.5, EPE (input px at 368) 40' in printed
    assert 'run_2: 12 steps; last validation: PCK@0.2 0.6, EPE (input px at 368) 30.5' in printed
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    history, columns = run_history.read_run(tmp_path / 'run_2')
    assert columns == run_history.KEYPOINT_COLUMNS and history.length == 12
    assert history.train_loss[0] == pytest.approx(80.0) and history.val['val_epe_px'][-1] == 30.5

    # An existing picture is kept unless asked.
    assert run_history.main([str(tmp_path / 'run_1'), '--out', str(out)]) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert run_history.main([str(tmp_path / 'run_1'), '--out', str(out), '--overwrite']) == 0


def test_refuses_what_is_not_a_chain_of_training_runs(tmp_path, capsys):
    keypoint_run(tmp_path / 'keypoints', 5, 10.0, 0.5, 40.0)
    write_log(tmp_path / 'localiser', ['kind', 'step', 'loss_total', 'val_ap', 'val_precision', 'val_recall'],
              [{'kind': 'val', 'step': 5, 'val_ap': 0.4, 'val_precision': 0.5, 'val_recall': 0.6}])
    (tmp_path / 'empty').mkdir()
    out = str(tmp_path / 'runs.png')
    assert run_history.main([str(tmp_path / 'empty'), '--out', out]) == 2
    assert 'no log.csv' in capsys.readouterr().err
    assert run_history.main([str(tmp_path / 'keypoints'), str(tmp_path / 'localiser'), '--out', out]) == 2
    assert 'mix keypoint and localiser' in capsys.readouterr().err
    assert run_history.main([str(tmp_path / 'keypoints'), '--out', out, '--smooth', '0']) == 2
    write_log(tmp_path / 'other', ['kind', 'step', 'loss'], [{'kind': 'train', 'step': 1, 'loss': 1}])
    assert run_history.main([str(tmp_path / 'other'), '--out', out]) == 2
    assert 'no validation columns' in capsys.readouterr().err
    assert not (tmp_path / 'runs.png').exists()
    # A localiser chain alone is fine.
    assert run_history.main([str(tmp_path / 'localiser'), '--out', out]) == 0
    assert 'AP 0.4, precision 0.5, recall 0.6' in capsys.readouterr().out
