"""The trainer: the article's one-image sanity check on the full OpenPose network, a short run's
outputs, an interrupted run resumed to the same result, config files and refusals."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from test_data import make_dataset, write_synth_dataset

from hand_cpm_train import data, engine, train
from hand_cpm_train.augment import AugmentConfig
from hand_cpm_train.checkpoint import load_checkpoint, load_model, save_checkpoint
from hand_cpm_train.models import build_model, get_config


@pytest.fixture(scope='module')
def dataset_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp('hands')
    return write_synth_dataset(root / 'train', 8, seed=1), write_synth_dataset(root / 'val', 3, seed=2)


def short_run(train_dir, val_dir, out, *extra):
    return ['--variant', 'cpm-lite-s', '--input-size', '64', '--data', str(train_dir),
            '--val-data', str(val_dir), '--out', str(out), '--batch-size', '4', '--workers', '0',
            '--log-every', '1', '--belief-samples', '2', '--no-progress', *extra]


def read_log(run_dir):
    with (run_dir / 'log.csv').open() as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_full_openpose_network_overfits_one_image(tmp_path):
    """The article's check: the full cpm-vgg19 (six stages, all supervised) learns one crop by
    heart; the loss falls by an order of magnitude."""
    write_synth_dataset(tmp_path, 1, seed=4)
    torch.manual_seed(0)
    dataset = make_dataset(data.load_records(tmp_path) * 8, input_size=48)
    loader, sampler = data.make_loader(dataset, batch_size=1, shuffle=True, workers=0, seed=0)
    model = build_model(get_config('cpm-vgg19', input_size=48))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler('cuda', enabled=False)
    losses = []
    step = 0
    while step < 90 and (len(losses) < 2 or losses[-1]['total'] > losses[0]['total'] / 10):
        sampler.set_position(step)
        step = engine.train_one_epoch(model, loader, optimizer, scheduler, scaler, torch.device('cpu'),
                                      epoch=step, step=step, progress=False,
                                      on_step=lambda _step, values, _lr: losses.append(values))
    assert set(losses[0]) == {f'stage{k}' for k in range(1, 7)} | {'total'}
    assert all(losses[0][f'stage{k}'] > 0 for k in range(1, 7))   # stage 1 is supervised too
    assert losses[-1]['total'] < losses[0]['total'] / 10, [round(v['total'], 1) for v in losses]


def test_two_epoch_run_writes_checkpoints_logs_and_plots(tmp_path, dataset_dirs):
    config = tmp_path / 'run.yaml'
    config.write_text(yaml.safe_dump({'epochs': 5, 'lr': 0.002, 'seed': 3,
                                      'augment': {'rotation_deg': 90}}))
    out = tmp_path / 'run'
    assert train.main(short_run(*dataset_dirs, out, '--config', str(config), '--epochs', '2')) == 0
    for name in ('last.pt', 'best.pt', 'log.csv', 'config.json', 'loss.png', 'pck.png',
                 'belief_maps_epoch001.png', 'belief_maps_epoch002.png'):
        assert (out / name).is_file(), name
    assert list((out / 'tb').glob('events.out.tfevents.*'))
    resolved = json.loads((out / 'config.json').read_text())
    assert resolved['train']['epochs'] == 2 and resolved['train']['lr'] == 0.002   # CLI wins
    assert resolved['augment']['rotation_deg'] == 90 and resolved['model']['input_size'] == 64
    assert resolved['data'] == {'train_hands': 8, 'val_hands': 3, 'split': 'val-data directories',
                                'steps_per_epoch': 2, 'world_size': 1}
    rows = read_log(out)
    assert [int(r['step']) for r in rows if r['kind'] == 'train'] == [1, 2, 3, 4]
    val_rows = [r for r in rows if r['kind'] == 'val']
    assert [(int(r['step']), int(r['epoch']), int(r['val_n'])) for r in val_rows] == [(2, 1, 3), (4, 2, 3)]
    assert all(float(r['loss_stage1']) > 0 and float(r['loss_stage3']) > 0
               for r in rows if r['kind'] == 'train')
    state = load_checkpoint(out / 'last.pt')
    assert (state['step'], state['epoch']) == (4, 2)
    assert state['best_metric'] == max(float(r['val_pck@0.2']) for r in val_rows)
    assert len(state['history']) == len(rows)
    model, model_config, codec = load_model(out / 'best.pt')
    assert model_config.name == 'cpm-lite-s' and codec['input_size'] == 64


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, dataset_dirs, monkeypatch, capsys):
    arguments = short_run(*dataset_dirs, tmp_path / 'straight', '--epochs', '2', '--save-every-steps', '3')
    assert train.main(arguments) == 0
    straight = load_checkpoint(tmp_path / 'straight' / 'last.pt')

    killed = tmp_path / 'killed'
    save = train.save_checkpoint

    def save_then_die(path, state):
        save(path, state)
        if path.name == 'last.pt' and state['step'] == 3:   # mid-epoch 2, after the save
            raise KeyboardInterrupt

    monkeypatch.setattr(train, 'save_checkpoint', save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.main(short_run(*dataset_dirs, killed, '--epochs', '2', '--save-every-steps', '3'))
    monkeypatch.undo()
    assert load_checkpoint(killed / 'last.pt')['step'] == 3

    assert train.main(['--out', str(killed)]) == 2           # a run is there: no silent restart
    assert 'pass --resume' in capsys.readouterr().err
    assert train.main(['--out', str(killed), '--resume', '--lr', '0.5']) == 2
    assert "['lr'] differ" in capsys.readouterr().err
    # The run directory and the images moved elsewhere (another checkout): it resumes there.
    moved, train_dir, val_dir = tmp_path / 'moved', tmp_path / 'train_copy', tmp_path / 'val_copy'
    shutil.copytree(killed, moved)
    shutil.copytree(dataset_dirs[0], train_dir)
    shutil.copytree(dataset_dirs[1], val_dir)
    assert train.main(['--out', str(moved), '--resume', '--no-progress', '--data', str(train_dir),
                       '--val-data', str(val_dir)]) == 0
    assert 'resuming at step 3' in capsys.readouterr().out
    resumed = load_checkpoint(moved / 'last.pt')
    assert resumed['step'] == 4 and resumed['train_config']['data'] == [str(train_dir)]
    assert resumed['train_config']['out'] == str(moved)
    assert load_checkpoint(killed / 'last.pt')['step'] == 3       # the original run is untouched
    for key, value in straight['model'].items():
        assert torch.allclose(value.float(), resumed['model'][key].float(), atol=1e-5), key
    straight_losses = [float(r['loss_total']) for r in read_log(tmp_path / 'straight') if r['kind'] == 'train']
    resumed_losses = [float(r['loss_total']) for r in read_log(moved) if r['kind'] == 'train']
    assert np.allclose(straight_losses, resumed_losses, rtol=1e-4)


def test_init_weights_starts_a_new_run_from_another_runs_network(tmp_path, dataset_dirs, capsys):
    """--init-weights copies the network (not the optimiser, step or history) and refuses a
    checkpoint of another network or a combination with --resume."""
    first = tmp_path / 'first'
    assert train.main(short_run(*dataset_dirs, first, '--epochs', '1')) == 0
    source = load_checkpoint(first / 'last.pt')
    second = tmp_path / 'second'
    assert train.main(short_run(*dataset_dirs, second, '--epochs', '1', '--sigma', '9',
                                '--init-weights', str(first / 'last.pt'), '--lr', '1e-12',
                                '--warmup-steps', '1')) == 0
    started = load_checkpoint(second / 'last.pt')
    assert started['step'] == 2 and len(started['history']) == len(read_log(second))
    for key, value in source['model'].items():   # lr 1e-12: the weights are the source's
        if 'running_' not in key and value.is_floating_point():   # BN statistics still move
            assert torch.allclose(value, started['model'][key], atol=1e-6), key
    assert started['train_config']['init_weights'] == str(first / 'last.pt')
    # A checkpoint written before a config field existed (here handedness_head) still starts a run
    older = dict(source, model_config={key: value for key, value in source['model_config'].items()
                                       if key != 'handedness_head'})
    save_checkpoint(tmp_path / 'older.pt', older)
    assert train.main(short_run(*dataset_dirs, tmp_path / 'from_older', '--epochs', '1',
                                '--init-weights', str(tmp_path / 'older.pt'))) == 0

    def start_unchanged(name, *extra):
        """A run from first/last.pt at lr 1e-12 (its weights stay the source's): its checkpoint."""
        assert train.main(short_run(*dataset_dirs, tmp_path / name, '--epochs', '1', '--lr', '1e-12',
                                    '--warmup-steps', '1', '--init-weights', str(first / 'last.pt'),
                                    *extra)) == 0
        started = load_checkpoint(tmp_path / name / 'last.pt')
        for key, value in source['model'].items():
            if 'running_' not in key and value.is_floating_point():
                assert torch.allclose(value, started['model'][key], atol=1e-6), key
        return started

    capsys.readouterr()
    # Another input size is the same network (fully convolutional): a run may fine-tune at 96.
    finer = start_unchanged('finer', '--input-size', '96')
    assert 'trained at input 64 px; this run trains it at input 96 px' in capsys.readouterr().out
    assert finer['model_config']['input_size'] == 96
    # More stages: the added ones start as copies of the last; fewer are refused.
    deeper = start_unchanged('deeper', '--stages', '5')
    assert 'had 3 stages; stages 4-5 start as copies of stage 3' in capsys.readouterr().out
    assert deeper['model_config']['stages'] == 5
    last_stage = {key: value for key, value in source['model'].items() if key.startswith('stages.2.')
                  and 'running_' not in key and value.is_floating_point()}
    assert last_stage
    for key, value in last_stage.items():
        for added in ('stages.3.', 'stages.4.'):
            assert torch.allclose(value, deeper['model'][added + key[9:]], atol=1e-6), key
    assert train.main(short_run(*dataset_dirs, tmp_path / 'shallower', '--epochs', '1',
                                '--init-weights', str(tmp_path / 'deeper' / 'last.pt'))) == 2
    assert 'has 5 stages, this run 3' in capsys.readouterr().err
    # Another variant is not.
    assert train.main(short_run(*dataset_dirs, tmp_path / 'other', '--epochs', '1',
                                '--variant', 'cpm-lite', '--init-weights', str(first / 'last.pt'))) == 2
    assert 'another network configuration (cpm-lite-s)' in capsys.readouterr().err
    assert train.main(short_run(*dataset_dirs, tmp_path / 'both', '--epochs', '1', '--resume',
                                '--init-weights', str(first / 'last.pt'))) == 2
    assert 'pass only one' in capsys.readouterr().err
    # A run started from --init-weights resumes like any other (the weights come from last.pt).
    assert train.main(['--out', str(second), '--resume', '--epochs', '2', '--no-progress']) == 0
    resumed = load_checkpoint(second / 'last.pt')
    assert resumed['step'] == 4 and resumed['train_config']['init_weights'] == str(first / 'last.pt')


def test_a_trained_keypoint_network_widens_unchanged_and_trains_on(tmp_path, dataset_dirs, capsys):
    """--width-mult W --init-weights NARROWER: the added channels of the front start unread (the
    wide network's maps equal the narrow one's while those channels are computed), the run trains
    and saves the wider network; narrowing, the localiser and cpm-vgg19 are refused."""
    narrow_run = tmp_path / 'narrow'
    assert train.main(short_run(*dataset_dirs, narrow_run, '--epochs', '1')) == 0
    narrow, narrow_config, _ = load_model(narrow_run / 'last.pt')
    wide_config = get_config('cpm-lite-s', input_size=64, width_mult=1.5)
    assert wide_config.grows(narrow_config) and not narrow_config.grows(wide_config)
    wide = build_model(wide_config)
    capsys.readouterr()
    train.load_initial_weights(wide, str(narrow_run / 'last.pt'), 'keypoints', wide_config)
    assert 'front widens from x1.0 to x1.5' in capsys.readouterr().out
    front = {}
    wide.backbone[-1].register_forward_hook(lambda module, inputs, output: front.update(last=inputs[0]))
    crops = torch.from_numpy(np.random.default_rng(5).standard_normal((2, 3, 64, 64), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(wide.eval()(crops).numpy(), narrow.eval()(crops).numpy(), atol=1e-5)
    assert front['last'].shape[1] == 144 and front['last'][:, 96:].abs().max() > 0

    wide_run = tmp_path / 'wide'
    assert train.main(short_run(*dataset_dirs, wide_run, '--epochs', '1', '--width-mult', '1.5',
                                '--init-weights', str(narrow_run / 'last.pt'))) == 0
    _, config, _ = load_model(wide_run / 'last.pt')
    assert (config.name, config.width_mult) == ('cpm-lite-s', 1.5)
    capsys.readouterr()
    assert train.main(short_run(*dataset_dirs, tmp_path / 'narrower', '--epochs', '1',
                                '--init-weights', str(wide_run / 'last.pt'))) == 2
    assert 'holds another network configuration' in capsys.readouterr().err
    for bad in (['--width-mult', '0.1'], ['--variant', 'cpm-vgg19', '--width-mult', '1.5']):
        assert train.main(short_run(*dataset_dirs, tmp_path / 'no', *bad)) == 2
        assert '--width-mult is for the light keypoint variants' in capsys.readouterr().err


@pytest.mark.parametrize('signal_number', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_ctrl_c_or_sigterm_stops_after_the_step_and_resume_goes_on(tmp_path, signal_number):
    """A real process with a loader worker, signalled as a terminal's Ctrl-C signals (the whole
    process group) or as a scheduler's SIGTERM: it writes last.pt at the step reached, exits
    128 + the signal, and --resume goes on from that step."""
    train_dir = write_synth_dataset(tmp_path / 'train', 40, seed=1)
    val_dir = write_synth_dataset(tmp_path / 'val', 3, seed=2)
    out = tmp_path / 'run'
    arguments = short_run(train_dir, val_dir, out, '--epochs', '100', '--save-every-steps', '1000')
    arguments[arguments.index('--workers') + 1] = '1'
    process = subprocess.Popen([sys.executable, '-m', 'hand_cpm_train.train', *arguments],
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not ((out / 'log.csv').exists() and len(read_log(out)) >= 3):   # a few steps logged
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    if signal_number == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    error = process.communicate(timeout=120)[1]
    assert process.returncode == 128 + signal_number, error
    name = signal.Signals(signal_number).name
    stopped_at = int(error.split(f'stopped by {name} at step ')[1].split(':')[0])
    assert f'continue with hand-cpm-train --out {out} --resume' in error
    assert 3 <= stopped_at < 1000
    saved = load_checkpoint(out / 'last.pt')
    assert saved['step'] == stopped_at
    assert int(read_log(out)[-1]['step']) <= stopped_at
    assert train.main(['--out', str(out), '--resume', '--max-steps', str(stopped_at + 2)]) == 0
    assert load_checkpoint(out / 'last.pt')['step'] == stopped_at + 2


def test_torchrun_splits_the_data_and_stops_and_resumes_every_rank_together(tmp_path):
    """DistributedDataParallel on two CPU processes (gloo), started by torchrun as on a GPU
    machine: each rank takes half of every epoch; Ctrl-C to torchrun (which passes it on to
    every rank) stops all ranks after the same step with last.pt written, and a resumed
    torchrun run goes on from it."""
    train_dir = write_synth_dataset(tmp_path / 'train', 16, seed=1)
    val_dir = write_synth_dataset(tmp_path / 'val', 2, seed=2)
    out = tmp_path / 'run'
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                '-m', 'hand_cpm_train.train']
    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
    arguments = short_run(train_dir, val_dir, out, '--epochs', '200', '--val-every', '100')
    arguments[arguments.index('--batch-size') + 1] = '2'
    process = subprocess.Popen([*torchrun, *arguments], stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=environment)
    deadline = time.monotonic() + 120
    while not ((out / 'log.csv').exists() and len(read_log(out)) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    error = process.communicate(timeout=120)[1]
    stopped = re.search(r'stopped by SIG(INT|TERM) at step (\d+):', error)   # torchrun passes its signal on
    assert stopped, error
    stopped_at = int(stopped[2])
    assert 'torchrun ... -m hand_cpm_train.train --out' in error
    assert load_checkpoint(out / 'last.pt')['step'] == stopped_at
    assert json.loads((out / 'config.json').read_text())['data']['steps_per_epoch'] == 4   # 16 / 2 ranks / 2
    finished = subprocess.run([*torchrun, '--out', str(out), '--resume', '--no-progress',
                               '--max-steps', str(stopped_at + 3)],
                              capture_output=True, text=True, timeout=120, env=environment)
    assert finished.returncode == 0, finished.stderr
    assert f'resuming at step {stopped_at}' in finished.stdout
    assert load_checkpoint(out / 'last.pt')['step'] == stopped_at + 3


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, dataset_dirs, capsys):
    out = tmp_path / 'nan'
    code = train.main(short_run(*dataset_dirs, out, '--epochs', '2', '--lr', '1e30',
                                '--warmup-steps', '1', '--save-every-steps', '1'))
    assert code == 1
    error = capsys.readouterr().err
    assert 'non-finite loss at step' in error
    failed_step = int(error.split('non-finite loss at step ')[1].split()[0])
    if (out / 'last.pt').exists():    # only checkpoints of finished, finite steps
        assert load_checkpoint(out / 'last.pt')['step'] < failed_step


def test_bad_arguments_are_one_line_errors(tmp_path, dataset_dirs, capsys):
    bad_config = tmp_path / 'bad.yaml'
    bad_config.write_text('epochs: 2\nlearning_rate: 0.1\n')
    assert train.main(['--config', str(bad_config), '--out', str(tmp_path / 'x')]) == 2
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err
    binary_config = tmp_path / 'photo.jpg'
    binary_config.write_bytes(b'\xff\xd8\xff\xe0 a JPEG, not a config')
    assert train.main(['--config', str(binary_config), '--out', str(tmp_path / 'x')]) == 2
    assert f'config file {binary_config} is not a text file' in capsys.readouterr().err
    assert train.main(['--out', str(tmp_path / 'y')]) == 2
    assert '--data DIR' in capsys.readouterr().err
    assert train.main(['--data', str(tmp_path / 'missing'), '--out', str(tmp_path / 'z')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert train.main(short_run(dataset_dirs[0], dataset_dirs[0], tmp_path / 'w', '--epochs', '1')) == 2
    assert 'validation must be held out' in capsys.readouterr().err
    assert train.main(short_run(*dataset_dirs, tmp_path / 'v', '--false-peak-weight', '-1')) == 2
    assert '--false-peak-weight must be >= 0, got -1.0' in capsys.readouterr().err
    (tmp_path / 'foreign').mkdir()
    (tmp_path / 'foreign' / 'notes.txt').write_text('mine')
    assert train.main(short_run(*dataset_dirs, tmp_path / 'foreign', '--epochs', '1')) == 2
    assert 'not a hand-cpm-train run' in capsys.readouterr().err


@pytest.mark.parametrize('name', ['cpm_lite_synth', 'cpm_vgg19_cmu'])
def test_shipped_configs_resolve(name):
    args, explicit = train.resolve_args(['--config', f'hand_cpm_train/configs/{name}.yaml', '--out', 'x'])
    assert explicit == {'config', 'out'}
    assert args.variant == {'cpm_lite_synth': 'cpm-lite', 'cpm_vgg19_cmu': 'cpm-vgg19'}[name]
    assert args.data and args.val_data and args.lr > 0
    AugmentConfig.from_dict(args.augment)
