"""The localiser through hand-cpm-train --task localizer, resume, hand-cpm-export (ORT parity) and
hand-cpm-eval (JSON keys, refusal of training data). Tiny frames and few steps: this checks the
machinery, not accuracy (the decode path is checked exactly in test_localizer_runtime.py)."""
import csv
import json

import cv2
import numpy as np
import pytest
import torch
from test_data import write_frame_dataset

from hand_cpm_ros.backends import create_backend
from hand_cpm_ros.localizer import DEFAULT_SCORE_THRESHOLD, LocalizerCodec, infer_localizer_maps
from hand_cpm_train import data, engine, evaluate, export, train
from hand_cpm_train.checkpoint import load_checkpoint, load_model
from hand_cpm_train.augment import AugmentConfig
from hand_cpm_train.localizer_data import FrameDataset, FrameRecord, load_frame_records
from hand_cpm_train.localizer_model import box_giou, build_localizer, get_localizer_config, localizer_loss
from hand_cpm_train.models import widen_weights


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('frames')
    train_dir, val_dir = write_frame_dataset(root / 'train', 2, seed=1), write_frame_dataset(root / 'val', 2, seed=2)
    out = root / 'run'
    arguments = ['--task', 'localizer', '--frame-size', '128x96', '--data', str(train_dir),
                 '--val-data', str(val_dir), '--out', str(out), '--batch-size', '2',
                 '--workers', '0', '--lr', '3e-3', '--warmup-steps', '1', '--no-augment',
                 '--log-every', '1', '--val-every', '3', '--no-progress', '--regression-radius', '1']
    assert train.main([*arguments, '--epochs', '5']) == 0
    return train_dir, val_dir, out


def read_log(run_dir):
    with (run_dir / 'log.csv').open() as stream:
        return list(csv.DictReader(stream))


def one_epoch_arguments(train_dir, val_dir):
    """hand-cpm-train arguments of a one-epoch localiser run on the tiny frames (add --out)."""
    return ['--task', 'localizer', '--frame-size', '128x96', '--data', str(train_dir),
            '--val-data', str(val_dir), '--batch-size', '2', '--workers', '0', '--no-augment',
            '--warmup-steps', '1', '--no-progress', '--epochs', '1']


def test_training_logs_falling_losses_and_checkpoints_the_localizer(run):
    _, _, out = run
    for name in ('last.pt', 'best.pt', 'log.csv', 'config.json', 'loss.png'):
        assert (out / name).is_file(), name
    rows = read_log(out)
    losses = [float(r['loss_total']) for r in rows if r['kind'] == 'train']
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert all(float(r['loss_heat']) > 0 and float(r['loss_size']) >= 0
               for r in rows if r['kind'] == 'train')
    val = [r for r in rows if r['kind'] == 'val']
    assert [(int(r['step']), int(r['val_n']), int(r['val_hands'])) for r in val] == [(3, 2, 4), (5, 2, 4)]
    state = load_checkpoint(out / 'last.pt')
    assert state['task'] == 'localizer' and state['step'] == 5
    assert state['best_metric'] == max(float(r['val_ap']) for r in val)
    model, config, codec = load_model(out / 'last.pt')
    assert (config.name, config.input_width, config.input_height) == ('loc-lite', 128, 96)
    assert codec == {'input_width': 128, 'input_height': 96, 'stride': 4, 'min_sigma': 0.8,
                     'sigma_fraction': 1 / 6, 'regression_radius': 1}
    resolved = json.loads((out / 'config.json').read_text())
    assert resolved['data']['train_frames'] == 2 and resolved['train']['variant'] == 'loc-lite'


def test_resume_continues_and_a_keypoint_variant_is_refused(run, tmp_path):
    _, _, out = run
    assert train.main(['--out', str(out), '--resume', '--epochs', '6', '--no-progress']) == 0
    assert load_checkpoint(out / 'last.pt')['step'] == 6
    assert [int(r['step']) for r in read_log(out) if r['kind'] == 'train'] == [1, 2, 3, 4, 5, 6]
    assert train.main(['--task', 'localizer', '--variant', 'cpm-lite', '--data', str(run[0]),
                       '--out', str(tmp_path / 'x')]) == 2
    assert train.main(['--task', 'localizer', '--frame-size', '100x90', '--data', str(run[0]),
                       '--out', str(tmp_path / 'y'), '--workers', '0']) == 2
    assert train.main(['--task', 'keypoints', '--regression-radius', '1', '--data', str(run[0]),
                       '--out', str(tmp_path / 'z')]) == 2
    with pytest.raises(SystemExit) as refused:
        train.main(['--task', 'localizer', '--regression-radius', '3', '--data', str(run[0]),
                    '--out', str(tmp_path / 'z')])
    assert refused.value.code == 2


def test_a_trained_loc_lite_grows_into_loc_deep_unchanged_and_trains_on(run, tmp_path, capsys):
    """--variant loc-deep --init-weights LOC_LITE: the added blocks start as identities (the grown
    network's maps equal the small one's), the run trains and saves a loc-deep; the other way
    round is refused."""
    train_dir, val_dir, out = run
    small, small_config, _ = load_model(out / 'last.pt')
    grown_config = get_localizer_config('loc-deep', input_width=128, input_height=96)
    assert grown_config.grows(small_config) and not small_config.grows(grown_config)
    with pytest.raises(ValueError, match='one per level'):
        get_localizer_config('loc-deep', extra_blocks=(1, 2))
    grown = build_localizer(grown_config)
    train.load_initial_weights(grown, str(out / 'last.pt'), 'localizer', grown_config)
    assert 'start as identities' in capsys.readouterr().out
    frames = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 96, 128), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_array_equal(grown.eval()(frames).numpy(), small.eval()(frames).numpy())

    arguments = one_epoch_arguments(train_dir, val_dir)
    assert train.main([*arguments, '--variant', 'loc-deep', '--out', str(tmp_path / 'deep'),
                       '--init-weights', str(out / 'last.pt')]) == 0
    _, config, _ = load_model(tmp_path / 'deep' / 'last.pt')
    assert (config.name, config.extra_blocks, config.refine_blocks) == ('loc-deep', (0, 0, 2, 2, 1), 1)
    assert train.main([*arguments, '--variant', 'loc-lite', '--out', str(tmp_path / 'back'),
                       '--init-weights', str(tmp_path / 'deep' / 'last.pt')]) == 2
    assert 'holds another network configuration' in capsys.readouterr().err


def test_a_trained_localizer_widens_unchanged_and_trains_on(run, tmp_path, capsys):
    """--pyramid-channels N --init-weights NARROWER: the added channels of the stride-4 path
    start unread (the wide network's maps equal the narrow one's, while those channels are
    computed), the run trains and saves the wider network; narrowing and keypoint runs are refused."""
    train_dir, val_dir, out = run
    narrow, narrow_config, _ = load_model(out / 'last.pt')
    wide_config = get_localizer_config('loc-deep', input_width=128, input_height=96, pyramid_channels=64)
    assert wide_config.grows(narrow_config) and not narrow_config.grows(wide_config)
    wide = build_localizer(wide_config)
    train.load_initial_weights(wide, str(out / 'last.pt'), 'localizer', wide_config)
    assert 'widens from 48 to 64 channels' in capsys.readouterr().out
    pyramid = {}
    wide.head[0].register_forward_hook(lambda module, inputs, output: pyramid.update(head_input=inputs[0]))
    frames = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 3, 96, 128), dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(wide.eval()(frames).numpy(), narrow.eval()(frames).numpy(), atol=1e-5)
    assert pyramid['head_input'].shape[1] == 64 and pyramid['head_input'][:, 48:].abs().max() > 0
    with pytest.raises(ValueError, match='does not fit'):
        widen_weights(narrow.state_dict(), wide.state_dict())

    arguments = one_epoch_arguments(train_dir, val_dir)
    assert train.main([*arguments, '--pyramid-channels', '64', '--out', str(tmp_path / 'wide'),
                       '--init-weights', str(out / 'last.pt')]) == 0
    _, config, _ = load_model(tmp_path / 'wide' / 'last.pt')
    assert (config.name, config.pyramid_channels) == ('loc-lite', 64)
    assert train.main([*arguments, '--out', str(tmp_path / 'narrow'),
                       '--init-weights', str(tmp_path / 'wide' / 'last.pt')]) == 2
    assert 'holds another network configuration' in capsys.readouterr().err
    for bad in (['--task', 'keypoints', '--pyramid-channels', '64'], ['--pyramid-channels', '4']):
        assert train.main([*arguments, *bad, '--out', str(tmp_path / 'no')]) == 2
        assert '--pyramid-channels is for --task localizer' in capsys.readouterr().err


def test_export_matches_torch_and_eval_reports_box_metrics(run, tmp_path, capsys):
    train_dir, val_dir, out = run
    onnx_path = tmp_path / 'loc.onnx'
    assert export.main(['--checkpoint', str(out / 'best.pt'), '--out', str(onnx_path)]) == 0
    backend = create_backend('onnxruntime', model_path=str(onnx_path), threads=1,
                             logger=lambda _: None)
    assert backend.info.task == 'localizer' and backend.info.input_shape == (3, 96, 128)
    assert backend.output_names == ['localizer_maps']
    model, _, _ = load_model(out / 'best.pt')
    frames = np.random.default_rng(0).standard_normal((3, 3, 96, 128), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(backend.infer(frames), expected, atol=1e-4)

    capsys.readouterr()
    for model_path in (onnx_path, out / 'best.pt'):
        assert evaluate.main(['--model', str(model_path), '--data', str(val_dir), '--json',
                              '--workers', '0', '--no-progress']) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert {'n', 'hands', 'precision', 'recall', 'ap'} <= set(result)
        assert (result['task'], result['n'], result['hands']) == ('localizer', 2, 4)
        assert 0.0 <= result['recall'] <= 1.0
        assert result['score_threshold'] == DEFAULT_SCORE_THRESHOLD
        recalls = [row['recall'] for row in result['sweep']]
        assert recalls == sorted(recalls, reverse=True), 'recall must fall as the threshold rises'
        (at_default,) = [row for row in result['sweep']
                         if row['score_threshold'] == DEFAULT_SCORE_THRESHOLD]
        assert at_default['recall'] == result['recall']
        by_size, by_overlap = result['recall_by_size'], result['recall_by_overlap']
        by_visibility = result['recall_by_visibility']
        assert set(by_visibility) <= set(engine.VISIBILITY_CLASSES[:2]), 'rendered hands have keypoints'
        for group in (by_size, by_overlap, by_visibility):
            assert sum(row['hands'] for row in group.values()) == result['hands']
            found = sum(row['hands'] * row['recall'] for row in group.values())
            assert found == pytest.approx(result['recall'] * result['hands'])
        assert sum(result['misses'].values()) == result['hands']
        assert result['misses']['found'] == round(result['recall'] * result['hands'])
        assert result['recall_by_iou']['0.5'] == result['recall']
        assert result['recall_by_iou']['0.3'] >= result['recall'] >= result['recall_by_iou']['0.7']
    # flip averaging: the ONNX model and its checkpoint agree, and it is not the plain answer (no
    # trained network is exactly symmetric); hand-cpm-eval runs it for either
    averaged = infer_localizer_maps(backend.infer, frames, flip_averaging=True)
    np.testing.assert_allclose(
        averaged, infer_localizer_maps(engine.torch_localizer_predictor(model, torch.device('cpu')),
                                       frames, flip_averaging=True), atol=1e-4)
    assert np.abs(averaged - expected).max() > 1e-3
    for model_path in (onnx_path, out / 'best.pt'):
        assert evaluate.main(['--model', str(model_path), '--data', str(val_dir), '--json',
                              '--workers', '0', '--no-progress', '--flip-averaging']) == 0
        flipped = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert flipped['flip_averaging'] and not result['flip_averaging']
        assert (flipped['n'], flipped['hands']) == (2, 4)
    assert evaluate.main(['--model', str(out / 'best.pt'), '--data', str(train_dir)]) == 2
    assert 'used for training' in capsys.readouterr().err


def test_hands_are_grouped_by_size_and_overlap_for_the_recall_breakdown():
    boxes = np.array([[0, 0, 40, 40], [30, 30, 120, 130], [300, 0, 340, 200]], np.float64)
    assert [engine.size_class(box, 480) for box in boxes] == [
        'small (< 10% of frame height)', 'medium (10-30%)', 'large (>= 30%)']
    assert engine.overlap_classes(boxes) == ['overlapping another hand'] * 2 + ['apart from other hands']
    assert engine.overlap_classes(np.zeros((0, 4))) == []
    assert [engine.visibility_class(count) for count in (0, 6, 7, 21, -1)] == [
        engine.VISIBILITY_CLASSES[0]] * 2 + [engine.VISIBILITY_CLASSES[1]] * 2 + [engine.VISIBILITY_CLASSES[2]]


def test_frame_records_count_each_hands_visible_keypoints(tmp_path):
    points = [[10.0 + i, 20.0, int(i < 5)] for i in range(21)]
    hands = [{'hand_pts': points, 'is_left': 1, 'box': [5, 5, 40, 40]},
             {'is_left': 0, 'box': [50, 50, 90, 90]}]
    (tmp_path / 'a.json').write_text(json.dumps({'width': 100, 'height': 100, 'hands': hands}))
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((100, 100, 3), np.uint8))
    (record,) = load_frame_records(tmp_path)
    assert record.visible_keypoints.tolist() == [5, -1]
    assert record.is_left.tolist() == [True, False]


def test_eval_and_export_run_a_localizer_on_another_frame_size(run, tmp_path, capsys):
    _, val_dir, out = run
    checkpoint = str(out / 'best.pt')
    onnx_path = tmp_path / 'loc_192x160.onnx'
    assert export.main(['--checkpoint', checkpoint, '--out', str(onnx_path),
                        '--frame-size', '192x160']) == 0
    backend = create_backend('onnxruntime', model_path=str(onnx_path), threads=1,
                             logger=lambda _: None)
    assert backend.info.input_shape == (3, 160, 192)
    assert (backend.info.codec['input_width'], backend.info.codec['input_height']) == (192, 160)

    results = {}
    for name, model, extra in (('trained', checkpoint, []),
                               ('trained, explicit', checkpoint, ['--frame-size', '128x96']),
                               ('192x160', checkpoint, ['--frame-size', '192x160']),
                               ('192x160 onnx', str(onnx_path), [])):
        capsys.readouterr()
        assert evaluate.main(['--model', model, '--data', str(val_dir), '--json',
                              '--workers', '0', '--no-progress', *extra]) == 0
        results[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (results['trained']['input_width'], results['trained']['input_height']) == (128, 96)
    # The trained size given explicitly is the default run, number for number.
    assert results['trained, explicit'] == results['trained']
    bigger, exported = results['192x160'], results['192x160 onnx']
    assert (bigger['input_width'], bigger['input_height'], bigger['n'], bigger['hands']) == (192, 160, 2, 4)
    # The export at that size finds the same boxes as the checkpoint run at it.
    assert [exported[key] for key in ('input_width', 'input_height', 'precision', 'recall')] == \
        [bigger[key] for key in ('input_width', 'input_height', 'precision', 'recall')]
    assert exported['ap'] == pytest.approx(bigger['ap'], abs=1e-6)

    for model, size, message in ((checkpoint, '100x90', 'multiples of 32'),
                                 (checkpoint, '480', 'needs WIDTHxHEIGHT'),
                                 (str(onnx_path), '192x160', 'needs a checkpoint')):
        capsys.readouterr()
        assert evaluate.main(['--model', model, '--data', str(val_dir), '--workers', '0',
                              '--frame-size', size]) == 2
        assert message in capsys.readouterr().err
    assert export.main(['--checkpoint', checkpoint, '--out', str(tmp_path / 'x.onnx'),
                        '--frame-size', '100x90']) == 2
    assert 'multiples of 32' in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()


@pytest.mark.parametrize('radius', [0, 1])
def test_box_losses_are_a_weighted_mean_per_hand(radius):
    codec = LocalizerCodec(input_width=64, input_height=64, stride=4, regression_radius=radius)
    encoded = codec.encode(np.array([[8.0, 8.0, 40.0, 40.0], [44.0, 30.0, 60.0, 62.0]]))
    targets = {key: torch.from_numpy(value)[None] for key, value in encoded.items()}
    outputs = torch.zeros((1, 6, 16, 16))
    outputs[0, 1:3], outputs[0, 3:5] = targets['size'][0], targets['offset'][0]
    exact = localizer_loss(outputs, targets)
    assert exact['size'].item() == 0.0 and exact['offset'].item() == 0.0
    # sizes right only at the two centre cells: no loss when only centres learn the box, the
    # weighted share of the other cells when their neighbours learn it too
    centres = targets['reg_mask'][0] > 0
    outputs[0, 1:3] = torch.where(centres, targets['size'][0], targets['size'][0] + 0.5)
    weight = targets['reg_weight'][0]
    expected = 2 * 0.5 * weight[~centres].sum() / 2   # two maps, two hands
    assert localizer_loss(outputs, targets)['size'].item() == pytest.approx(float(expected), rel=1e-5)
    assert (expected == 0) == (radius == 0)


def test_ignored_hands_leave_the_heat_loss_and_target_options_are_recorded(run, tmp_path):
    image = tmp_path / 'frame.jpg'
    cv2.imwrite(str(image), np.zeros((96, 128, 3), np.uint8))
    boxes = np.array([[10.0, 10.0, 40.0, 50.0], [60.0, 20.0, 90.0, 70.0], [95.0, 30.0, 120.0, 80.0]])
    config = get_localizer_config('loc-lite', input_width=128, input_height=96)
    codec = config.codec()
    info = data.model_info_for(config, codec)

    def targets(visible, keep=slice(None), **options):
        record = FrameRecord(image, boxes[keep], np.zeros(3, bool)[keep], np.array(visible)[keep])
        item = FrameDataset([record], codec, info, train=False, **options)[0]
        return {key: value[None] for key, value in item.items() if key != 'image'}

    visible = [21, 3, -1]   # in sight; mostly hidden; unknown (no keypoints): only the second is ignored
    plain, ignoring = targets(visible), targets(visible, ignore_hidden_hands=True)
    without = targets(visible, keep=[0, 2])   # the hidden hand left out of the labels instead
    assert plain['reg_mask'].sum() == 3 and not plain['heat_ignore'].any()
    assert ignoring['reg_mask'].sum() == 2 and ignoring['heat_ignore'].sum() > 0
    for key in ('heat', 'reg_mask', 'size', 'reg_weight'):
        torch.testing.assert_close(ignoring[key], without[key])
    # a network sure of all three centres: no heat loss when the hidden hand is ignored, a false
    # peak's worth when it is not labelled at all
    outputs = torch.full((1, 6, 24, 32), -8.0)
    outputs[0, 0][plain['reg_mask'][0] > 0] = 8.0
    assert localizer_loss(outputs, plain)['heat'].item() < 0.01
    assert localizer_loss(outputs, ignoring)['heat'].item() < 0.01
    assert localizer_loss(outputs, without)['heat'].item() > 1.0

    # the training options of the targets: recorded in the run and, for the codec, the checkpoint
    train_dir, val_dir, _ = run
    out = tmp_path / 'ignoring'
    assert train.main([*one_epoch_arguments(train_dir, val_dir), '--out', str(out), '--ignore-hidden-hands',
                       '--centre-sigma-fraction', '0.1']) == 0
    settings = json.loads((out / 'config.json').read_text())['train']
    assert settings['ignore_hidden_hands'] is True and settings['centre_sigma_fraction'] == 0.1
    assert load_checkpoint(out / 'last.pt')['codec']['sigma_fraction'] == 0.1
    for bad in (['--task', 'keypoints', '--ignore-hidden-hands'],
                ['--task', 'keypoints', '--centre-sigma-fraction', '0.1'],
                ['--task', 'localizer', '--centre-sigma-fraction', '0']):
        assert train.main([*bad, '--data', str(train_dir), '--out', str(tmp_path / 'no')]) == 2
    assert not (tmp_path / 'no').exists()


def test_giou_of_known_boxes():
    """Boxes in cells: (centre offset, log extent) maps of 1x1 grids against a 2x2 box at the
    cell's centre."""
    def giou(offset, extent):
        return box_giou(torch.tensor(offset, dtype=torch.float32).view(1, 2, 1, 1),
                        torch.log(torch.tensor(extent, dtype=torch.float32)).view(1, 2, 1, 1),
                        torch.zeros((1, 2, 1, 1)), torch.full((1, 2, 1, 1), float(np.log(2.0)))).item()
    assert giou([0.0, 0.0], [2.0, 2.0]) == pytest.approx(1.0)
    assert giou([0.0, 0.0], [1.0, 1.0]) == pytest.approx(0.25)         # inside: IoU 1/4, hull = union
    assert giou([1.0, 0.0], [2.0, 2.0]) == pytest.approx(2 / 6)        # half over: IoU 2/6, hull 6 = union
    assert giou([3.0, 0.0], [2.0, 2.0]) == pytest.approx(0.0 - 2 / 10)  # apart by 1: hull 10, union 8


def test_box_iou_weight_adds_the_giou_term_and_training_logs_it(run, tmp_path):
    codec = LocalizerCodec(input_width=64, input_height=64, stride=4, regression_radius=1)
    encoded = codec.encode(np.array([[8.0, 8.0, 40.0, 40.0], [44.0, 30.0, 60.0, 62.0]]))
    targets = {key: torch.from_numpy(value)[None] for key, value in encoded.items()}
    outputs = torch.zeros((1, 6, 16, 16))
    outputs[0, 1:3], outputs[0, 3:5] = targets['size'][0], targets['offset'][0]
    assert 'box' not in localizer_loss(outputs, targets)
    assert localizer_loss(outputs, targets, box_iou_weight=2.0)['box'].item() == pytest.approx(0.0, abs=1e-6)
    outputs[0, 1:3] -= float(np.log(2.0))   # every box half as wide and high: IoU 1/4, GIoU 1/4
    plain, weighted = localizer_loss(outputs, targets), localizer_loss(outputs, targets, box_iou_weight=2.0)
    assert weighted['box'].item() == pytest.approx(0.75, rel=1e-5)   # per hand: weights sum to 1
    assert weighted['total'].item() == pytest.approx(plain['total'].item() + 1.5, rel=1e-5)

    train_dir, val_dir, _ = run
    out = tmp_path / 'giou'
    assert train.main(['--task', 'localizer', '--frame-size', '128x96', '--data', str(train_dir),
                       '--val-data', str(val_dir), '--out', str(out), '--batch-size', '2',
                       '--workers', '0', '--no-augment', '--log-every', '1', '--no-progress',
                       '--epochs', '2', '--box-iou-weight', '2']) == 0
    rows = [r for r in read_log(out) if r['kind'] == 'train']
    assert len(rows) == 2 and all(0.0 <= float(r['loss_box']) <= 2.0 for r in rows)
    assert json.loads((out / 'config.json').read_text())['train']['box_iou_weight'] == 2.0
    for arguments in (['--task', 'keypoints', '--box-iou-weight', '1'],
                      ['--task', 'localizer', '--box-iou-weight', '-1']):
        assert train.main([*arguments, '--data', str(train_dir), '--out', str(tmp_path / 'no')]) == 2
    assert not (tmp_path / 'no').exists()


def test_frame_zoom_range_scales_the_boxes_with_the_frame(tmp_path):
    """A fixed frame zoom (frame_zoom_min = frame_zoom_max) scales every kept box by that zoom
    about the view's centre; a reversed range is refused."""
    write_frame_dataset(tmp_path, 1)
    config = get_localizer_config('loc-lite', input_width=320, input_height=256)
    codec = config.codec()
    records = load_frame_records(tmp_path)
    plain = FrameDataset(records, codec, data.model_info_for(config, codec), train=False)
    _, boxes, _, _ = plain.sample(0)
    for zoom in (0.5, 0.8):
        augment = AugmentConfig(frame_zoom_min=zoom, frame_zoom_max=zoom, color_prob=0, blur_prob=0,
                                noise_prob=0, jpeg_prob=0, grey_prob=0, channel_swap_prob=0)
        zoomed = FrameDataset(records, codec, data.model_info_for(config, codec), train=True, augment=augment)
        _, moved, _, _ = zoomed.sample(0)
        assert len(moved) == len(boxes)
        np.testing.assert_allclose(moved[:, 2:] - moved[:, :2], zoom * (boxes[:, 2:] - boxes[:, :2]), atol=1e-6)
    with pytest.raises(ValueError, match='frame_zoom_min <= frame_zoom_max'):
        AugmentConfig(frame_zoom_min=1.4, frame_zoom_max=1.0)
