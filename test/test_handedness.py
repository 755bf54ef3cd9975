"""The handedness head: its descriptor geometry, that its MLP learns a side that is the product of
appearance and finger order, and hand-cpm-train-handedness end to end (keypoint weights kept bit
for bit, cached descriptors reused on a rerun, an exportable two-output model, refusals)."""
import json

import numpy as np
import onnx
import pytest
import torch
from test_data import write_synth_dataset

from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.keypoints import NUM_KEYPOINTS
from hand_cpm_train import export, handedness
from hand_cpm_train.checkpoint import load_checkpoint, save_checkpoint
from hand_cpm_train.models import HandednessHead, build_model, get_config

SIZE = 64


def maps_with_peaks(points_xy, size=8):
    """(1, 22, size, size) maps with one hot cell per keypoint at integer `points_xy`."""
    maps = torch.zeros(1, NUM_KEYPOINTS + 1, size, size)
    for index, (x, y) in enumerate(points_xy):
        maps[0, index, y, x] = 1.0
    return maps


def test_descriptor_finds_keypoints_and_the_finger_order():
    points = np.full((NUM_KEYPOINTS, 2), 4)
    points[0] = (4, 7)    # wrist at the bottom
    points[2] = (1, 5)    # thumb MCP to the left
    points[5] = (2, 3)    # index MCP up-left
    points[17] = (6, 3)   # little MCP up-right: a right hand seen palm-on, in image axes
    features = torch.ones(1, 4, 8, 8)
    vector = HandednessHead.describe(features, maps_with_peaks(points))
    assert vector.shape == (1, HandednessHead.descriptor_size(4))
    positions = vector[0, -2 * NUM_KEYPOINTS:].reshape(NUM_KEYPOINTS, 2).numpy()
    np.testing.assert_allclose(positions[0], (4 * 2 / 7 - 1, 7 * 2 / 7 - 1), atol=1e-5)
    finger_order = float(vector[0, 8])
    # wrist->index (-2, -4), wrist->little (2, -4): cross = 8 + 8 = 16 > 0 in image axes
    assert finger_order == pytest.approx(16 / 20, abs=1e-4)
    np.testing.assert_allclose(vector[0, 4:8].numpy(), finger_order, atol=1e-6)  # features x sine
    mirrored = points.copy()
    mirrored[:, 0] = 7 - mirrored[:, 0]
    assert float(HandednessHead.describe(features, maps_with_peaks(mirrored))[0, 8]) == \
        pytest.approx(-finger_order, abs=1e-4)


def test_head_learns_a_side_that_is_appearance_times_finger_order():
    rng = np.random.default_rng(0)

    def samples(count):
        palm = rng.choice([-1.0, 1.0], count)        # palm or back to the camera (appearance)
        order = rng.uniform(-1, 1, count)            # finger-order sine
        features = rng.normal(0, 1, (count, 4)).astype(np.float32)
        features[:, 0] = palm + rng.normal(0, 0.3, count)
        vectors = np.zeros((count, HandednessHead.descriptor_size(4)), np.float32)
        vectors[:, :4] = features
        vectors[:, 4:8] = features * order[:, None]
        vectors[:, 8] = order
        return vectors, (palm * order) > 0

    head = HandednessHead(4)
    train, val = samples(3000), samples(600)
    history = handedness.fit_head(head, train, val, epochs=30, lr=3e-3, weight_decay=1e-4, seed=0,
                                  progress=False)
    assert len(history) == 30
    assert min(row['val_loss'] for row in history) < 0.5 * history[0]['val_loss']
    with torch.no_grad():
        left = torch.sigmoid(head(torch.from_numpy(val[0]))[:, 0]).numpy()
    assert ((left >= 0.5) == val[1]).mean() > 0.9


@pytest.fixture(scope='module')
def keypoint_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp('keypoints')
    config = get_config('cpm-lite-s', input_size=SIZE)
    torch.manual_seed(5)
    model = build_model(config)
    save_checkpoint(directory / 'best.pt', {
        'format_version': 1, 'model': model.state_dict(), 'model_config': config.to_dict(),
        'codec': HeatmapCodec(input_size=SIZE).to_dict(), 'train_config': {'val_fraction': 0.1}})
    return directory / 'best.pt'


@pytest.fixture(scope='module')
def hand_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp('hands')
    return (write_synth_dataset(root / 'train', 10, seed=1), write_synth_dataset(root / 'val', 4, seed=2),
            write_synth_dataset(root / 'test', 4, seed=3))


def command(checkpoint, dirs, out, *extra):
    train, val, test = dirs
    return ['--checkpoint', str(checkpoint), '--data', str(train), '--val-data', str(val),
            '--test-data', str(test), '--out', str(out), '--max-crops', '8', '--epochs', '5',
            '--batch-size', '4', '--workers', '0', '--no-progress', *extra]


def test_command_keeps_the_keypoint_network_and_writes_an_exportable_model(
        keypoint_checkpoint, hand_dirs, tmp_path, capsys):
    out = tmp_path / 'run'
    assert handedness.main(command(keypoint_checkpoint, hand_dirs, out)) == 0
    printed = capsys.readouterr().out
    assert '| test | 4 |' in printed and '| val | 4 |' in printed
    source, result = load_checkpoint(keypoint_checkpoint), load_checkpoint(out / 'best.pt')
    assert result['model_config'] == {**source['model_config'], 'handedness_head': True}
    for key, value in source['model'].items():
        assert torch.equal(result['model'][key], value), key
    head_keys = [key for key in result['model'] if key.startswith('handedness.')]
    assert head_keys and set(result['model']) == set(source['model']) | set(head_keys)
    summary = json.loads((out / 'handedness.json').read_text())
    assert summary['train_crops'] == 8 and len(summary['history']) == 5
    assert summary['best_epoch'] == int(np.argmin([r['val_loss'] for r in summary['history']]))
    assert {name: r['n'] for name, r in summary['results'].items()} == {'train': 8, 'val': 4,
                                                                        'test': 4}
    assert (out / 'handedness.png').stat().st_size > 10_000

    # a rerun reuses the cached descriptors and refits to the same head
    assert handedness.main(command(keypoint_checkpoint, hand_dirs, out)) == 2
    assert 'pass --overwrite' in capsys.readouterr().err
    assert handedness.main(command(keypoint_checkpoint, hand_dirs, out, '--overwrite')) == 0
    assert 'train: 8 cached descriptors' in capsys.readouterr().out
    again = load_checkpoint(out / 'best.pt')
    for key in head_keys:
        assert torch.equal(again['model'][key], result['model'][key]), key

    assert export.main(['--checkpoint', str(out / 'best.pt'), '--out', str(tmp_path / 'm.onnx')]) == 0
    model = onnx.load(tmp_path / 'm.onnx')
    assert [o.name for o in model.graph.output] == ['belief_maps', 'handedness']
    assert {p.key: p.value for p in model.metadata_props}['handedness_output'] == 'handedness'


def test_refusals_are_one_line_errors(keypoint_checkpoint, hand_dirs, tmp_path, capsys):
    bad = tmp_path / 'not_a_checkpoint.pt'
    bad.write_bytes(b'not torch')
    assert handedness.main(command(bad, hand_dirs, tmp_path / 'a')) == 2
    assert 'not a readable hand-cpm checkpoint' in capsys.readouterr().err
    assert handedness.main(command(keypoint_checkpoint, hand_dirs, tmp_path / 'b', '--epochs', '0')) == 2
    assert '--epochs must be >= 1' in capsys.readouterr().err
    vgg = get_config('cpm-vgg19', input_size=SIZE, stages=1)
    save_checkpoint(tmp_path / 'vgg.pt', {'format_version': 1, 'model': {},
                                          'model_config': vgg.to_dict(), 'codec': {}})
    assert handedness.main(command(tmp_path / 'vgg.pt', hand_dirs, tmp_path / 'c')) == 2
    assert 'light (mobilenetv2) variants only' in capsys.readouterr().err
