"""hand-cpm-eval: decoding into source pixels, the JSON report, ONNX parity, the refusal to
report accuracy on training data, and a localiser's pictures (precision-recall curve, error sheet)."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_data import make_dataset, write_synth_dataset

from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_train import data, engine, evaluate
from hand_cpm_train.checkpoint import FORMAT_VERSION, save_checkpoint
from hand_cpm_train.models import build_model, get_config

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_boxes_localizer import TEST_BOXES_INPUT, build_fixed_boxes_localizer  # noqa: E402
from fixed_peaks_model import build_fixed_peaks_model  # noqa: E402

SUMMARY_KEYS = {'n', 'pck@0.05', 'pck@0.1', 'pck@0.2', 'auc', 'epe_px'}


@pytest.fixture(scope='module')
def held_out(tmp_path_factory):
    return write_synth_dataset(tmp_path_factory.mktemp('held_out'), 5, seed=7)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A cpm-lite-s (64 px) checkpoint, as hand-cpm-train writes it, trained on `train_dir`."""
    root = tmp_path_factory.mktemp('model')
    train_dir = write_synth_dataset(root / 'train', 6, seed=8)
    torch.manual_seed(0)
    config = get_config('cpm-lite-s', input_size=64)
    model = build_model(config).eval()
    path = root / 'best.pt'
    save_checkpoint(path, {'format_version': FORMAT_VERSION, 'model': model.state_dict(),
                           'model_config': config.to_dict(),
                           'codec': HeatmapCodec(64, 8, 7.0).to_dict(),
                           'train_config': {'data': [str(train_dir)], 'val_data': None,
                                            'val_fraction': 0.5}})
    return path, model, config, train_dir


def last_json(output):
    return json.loads(output.strip().splitlines()[-1])


def test_perfect_maps_decode_onto_the_source_keypoints(held_out):
    """An oracle that returns the encoded targets must score PCK@0.05 = 1 in SOURCE pixels."""
    dataset = make_dataset(data.load_records(held_out), input_size=96)
    loader, _ = data.make_loader(dataset, batch_size=2, shuffle=False, workers=0, seed=0)
    targets = iter([batch['targets'].numpy() for batch in loader])
    predictions = engine.evaluate(lambda images: [next(targets)], loader, dataset.codec)
    summary = predictions.summary()
    assert summary['n'] == 5 and summary['pck@0.05'] == 1.0 and summary['epe_px'] < 1.5
    sources = np.stack([r.keypoints for r in dataset.records])
    assert np.abs(predictions.keypoints[-1] - sources).max() < 3.0
    per_keypoint = predictions.per_keypoint()
    assert per_keypoint['pck'].shape == (21,) and np.all(per_keypoint['pck'] == 1.0)
    gross = predictions.gross_errors()
    assert gross['gross'] == 0 and gross['visible'] == int(predictions.visible.sum())
    assert set(gross['kinds'].values()) == {0}


def test_checkpoint_report_with_stages_and_plot(tmp_path, held_out, checkpoint, capsys):
    plot = tmp_path / 'pck.png'
    code = evaluate.main(['--model', str(checkpoint[0]), '--data', str(held_out), '--json',
                          '--per-stage', '--plot', str(plot), '--workers', '0', '--no-progress'])
    assert code == 0
    output = capsys.readouterr().out
    result = last_json(output)
    assert SUMMARY_KEYS <= set(result) and result['n'] == 5
    assert set(result['per_stage']) == {'stage 1', 'stage 2', 'stage 3'}
    assert result['per_stage']['stage 3'] == {key: result[key] for key in SUMMARY_KEYS}
    assert len(result['per_keypoint']) == 21 and 0.0 <= result['pck@0.2'] <= 1.0
    gross = result['gross_errors']      # every keypoint PCK@0.2 counts wrong, sorted by where it landed
    assert gross['gross'] == round((1.0 - result['pck@0.2']) * gross['visible'])
    assert sum(gross['kinds'].values()) == gross['gross']
    assert '| little_tip |' in output and '| neighbouring finger |' in output and plot.stat().st_size > 0
    assert evaluate.main(['--model', str(checkpoint[0]), '--data', str(held_out),
                          '--plot', str(plot), '--workers', '0']) == 2
    assert 'pass --overwrite' in capsys.readouterr().err
    sheet = tmp_path / 'errors.jpg'   # an untrained network: every hand has keypoints far off
    assert evaluate.main(['--model', str(checkpoint[0]), '--data', str(held_out), '--workers', '0',
                          '--error-sheet', str(sheet), '--no-progress']) == 0
    assert 'the 5 worst of the 5 hands' in capsys.readouterr().out
    assert cv2.imread(str(sheet)).shape == (160, evaluate.ERROR_SHEET_COLUMNS * 160, 3)


def test_keypoint_error_sheet_shows_the_worst_hands_first(tmp_path):
    truth = np.stack([np.stack([np.linspace(20, 80, 21), np.linspace(30, 90, 21)], axis=1)] * 3)
    predicted = truth.copy()
    predicted[1, :2] += 40.0     # 2 keypoints off by 40 px (the hand box is 60 px: 0.2 is 12 px)
    predicted[2, :5] -= 40.0     # 5 off
    predicted[2, 5] += 5.0       # and one off by less than 0.2: not counted
    visible = np.ones((3, 21), bool)
    records = []
    for index in range(3):
        path = tmp_path / f'{index}.png'
        cv2.imwrite(str(path), np.full((120, 120, 3), 60 * index, np.uint8))
        records.append(data.HandRecord(path, truth[index], visible[index], False, str(index)))
    predictions = engine.Predictions(keypoints=predicted[None], scores=np.ones((1, 3, 21)),
                                     ground_truth=truth, visible=visible)
    sheet, wrong = evaluate.keypoint_error_sheet(predictions, records)
    assert wrong == 2 and sheet.shape == (160, evaluate.ERROR_SHEET_COLUMNS * 160, 3)
    # the worst first: hand 2 (grey 120 behind it), then hand 1 (grey 60); the perfect hand 0 is left out
    assert np.median(sheet[20:140, 0:160]) == 120 and np.median(sheet[20:140, 160:320]) == 60
    assert not sheet[:, 320:].any()
    predictions.keypoints[0] = truth
    assert evaluate.keypoint_error_sheet(predictions, records) == (None, 0)


def test_onnx_model_gives_the_checkpoint_numbers(tmp_path, held_out, checkpoint, capsys):
    export = pytest.importorskip('hand_cpm_train.export')
    path, model, config, _ = checkpoint
    onnx_path = export.export_onnx(model, config, HeatmapCodec(64, 8, 7.0).to_dict(), tmp_path / 'm.onnx')
    assert evaluate.main(['--model', str(path), '--data', str(held_out), '--json', '--workers', '0',
                          '--no-progress']) == 0
    from_checkpoint = last_json(capsys.readouterr().out)
    assert evaluate.main(['--model', str(onnx_path), '--data', str(held_out), '--json',
                          '--workers', '0', '--no-progress']) == 0
    captured = capsys.readouterr()
    from_onnx = last_json(captured.out)
    assert 'carries no training config' in captured.err
    assert from_onnx['n'] == from_checkpoint['n'] == 5
    assert abs(from_onnx['epe_px'] - from_checkpoint['epe_px']) < 0.05 * from_checkpoint['epe_px']
    assert evaluate.main(['--model', str(onnx_path), '--data', str(held_out), '--per-stage']) == 2
    assert '--per-stage needs a checkpoint' in capsys.readouterr().err
    # flip averaging: the same in both, and not the plain numbers (an untrained net is not symmetric)
    flipped = []
    for model_path in (path, onnx_path):
        assert evaluate.main(['--model', str(model_path), '--data', str(held_out), '--json',
                              '--workers', '0', '--no-progress', '--flip-averaging']) == 0
        flipped.append(last_json(capsys.readouterr().out))
    assert flipped[0]['flip_averaging'] and not from_checkpoint['flip_averaging']
    assert abs(flipped[1]['epe_px'] - flipped[0]['epe_px']) < 0.05 * flipped[0]['epe_px']
    assert abs(flipped[0]['epe_px'] - from_checkpoint['epe_px']) > 1e-3


def test_training_data_is_never_reported_as_accuracy(tmp_path, checkpoint, capsys):
    path, model, config, train_dir = checkpoint
    assert evaluate.main(['--model', str(path), '--data', str(train_dir), '--json', '--workers', '0',
                          '--no-progress']) == 0
    captured = capsys.readouterr()
    assert 'evaluating only its held-out group split' in captured.err
    _, held = data.split_by_group(data.load_records(train_dir), 0.5)
    assert last_json(captured.out)['n'] == len(held) < 6

    with_val_data = tmp_path / 'other.pt'
    save_checkpoint(with_val_data, {'format_version': FORMAT_VERSION, 'model': model.state_dict(),
                                    'model_config': config.to_dict(),
                                    'codec': HeatmapCodec(64, 8, 7.0).to_dict(),
                                    'train_config': {'data': [str(train_dir)],
                                                     'val_data': [str(tmp_path)], 'val_fraction': 0.1}})
    assert evaluate.main(['--model', str(with_val_data), '--data', str(train_dir)]) == 2
    assert 'was used for training' in capsys.readouterr().err


def test_bad_model_paths_are_clear_errors(tmp_path, held_out, capsys):
    assert evaluate.main(['--model', str(tmp_path / 'none.pt'), '--data', str(held_out)]) == 2
    assert 'does not exist' in capsys.readouterr().err
    weights = tmp_path / 'model.bin'
    weights.write_bytes(b'\0' * 16)
    assert evaluate.main(['--model', str(weights), '--data', str(held_out)]) == 2
    assert 'must be a .pt checkpoint or an .onnx model' in capsys.readouterr().err
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'not a checkpoint')
    assert evaluate.main(['--model', str(broken), '--data', str(held_out)]) == 2
    assert 'not a readable hand-cpm checkpoint' in capsys.readouterr().err


def test_localizer_plot_and_error_sheet_show_the_misses_and_false_boxes(tmp_path, capsys):
    """The fixed-boxes test localiser always answers TEST_BOXES_INPUT (320x256 frames: the letterbox
    is the identity). Frame a: one hand there (found), one elsewhere (missed); its second box is a
    false one. Frame b: no hand, so both boxes are false: 1 missed hand, 3 false boxes."""
    model = build_fixed_boxes_localizer(tmp_path / 'loc.onnx')
    frames = tmp_path / 'frames'
    frames.mkdir()
    missed_box = [20.0, 30.0, 60.0, 80.0]
    for name, boxes in (('a', [list(TEST_BOXES_INPUT[0]), missed_box]), ('b', [])):
        image = np.full((256, 320, 3), 80, np.uint8)
        image[30:80, 20:60] = 230
        cv2.imwrite(str(frames / f'{name}.png'), image)
        (frames / f'{name}.json').write_text(json.dumps(
            {'width': 320, 'height': 256, 'hands': [{'box': box, 'is_left': 0} for box in boxes]}))
    plot, sheet = tmp_path / 'pr.png', tmp_path / 'errors.png'
    arguments = ['--model', str(model), '--data', str(frames), '--json', '--no-progress',
                 '--plot', str(plot), '--error-sheet', str(sheet)]
    assert evaluate.main(arguments) == 0
    output = capsys.readouterr().out
    result = last_json(output)
    assert (result['hands'], result['precision'], result['recall']) == (2, 0.25, 0.5)
    assert result['misses'] == {'found': 1, 'scored below the threshold': 0, 'box off': 0, 'not found': 1}
    assert '1 of 1 missed hands, then 3 of 3 false boxes' in output
    assert cv2.imread(str(plot)).shape[:2] == (450, 600)
    picture = cv2.imread(str(sheet))
    assert picture.shape == (160, evaluate.ERROR_SHEET_COLUMNS * 160, 3)   # one row of 4 close-ups
    missed_tile = picture[:, :160]
    # the missed 40x50 hand times 1.6 fills the tile (2 px per pixel): its bright patch in the middle,
    # the truth box around it in green, no detection there
    assert np.all(missed_tile[60:100, 50:110] == 230)
    green = (missed_tile[:, :, 1] > 150) & (missed_tile[:, :, 0] < 100) & (missed_tile[:, :, 2] < 100)
    assert green[129:132, 50:110].any(axis=0).all()
    assert not ((missed_tile[:, :, 2] > 150) & (missed_tile[:, :, 1] < 100)).any()
    for tile in range(1, 4):   # then the false boxes, in red
        close_up = picture[:, tile * 160:(tile + 1) * 160]
        assert ((close_up[:, :, 2] > 150) & (close_up[:, :, 1] < 100))[20:140, 20:140].any()
    assert not picture[:, 4 * 160:].any()   # the sheet's empty cells

    # the files are not replaced unless asked; --error-sheet and --frame-size are the localiser's
    before = sheet.read_bytes()
    assert evaluate.main(arguments) == 2
    assert 'pass --overwrite' in capsys.readouterr().err and sheet.read_bytes() == before
    assert evaluate.main([*arguments, '--overwrite']) == 0
    for bad, message in ((tmp_path / 'errors.gif', 'must end in .png / .jpg / .jpeg'),
                         (tmp_path / 'no' / 'errors.png', 'does not exist')):
        assert evaluate.main(['--model', str(model), '--data', str(frames), '--error-sheet', str(bad)]) == 2
        assert message in capsys.readouterr().err


def test_a_fine_localizer_pass_is_merged_as_the_runtime_merges_it(tmp_path, capsys):
    """The coarse test localiser answers TEST_BOXES_INPUT in 320x256 frames; a 448x352 one answers
    the hand it misses (a 40x50 box, under 0.3 of the frame height; that input sees 320x256 frames
    at scale 1.375 with 4 columns of padding). One frame holds that hand and TEST_BOXES_INPUT[0],
    one frame none: the fine pass finds the missed hand and adds a false box on the empty frame."""
    from hand_cpm_train.localizer_model import LocalizerConfig
    coarse = build_fixed_boxes_localizer(tmp_path / 'loc.onnx')
    missed_box = np.array([20.0, 30.0, 60.0, 80.0])
    fine_input_box = (missed_box + 0.5) * 1.375 - 0.5 + np.array([4.0, 0.0, 4.0, 0.0])
    fine = build_fixed_boxes_localizer(tmp_path / 'fine.onnx', fine_input_box[None], (1,),
                                       LocalizerConfig(input_width=448, input_height=352))
    frames = tmp_path / 'frames'
    frames.mkdir()
    for name, boxes in (('a', [list(TEST_BOXES_INPUT[0]), list(missed_box)]), ('b', [])):
        cv2.imwrite(str(frames / f'{name}.png'), np.full((256, 320, 3), 80, np.uint8))
        (frames / f'{name}.json').write_text(json.dumps(
            {'width': 320, 'height': 256, 'hands': [{'box': box, 'is_left': 0} for box in boxes]}))
    arguments = ['--model', str(coarse), '--data', str(frames), '--json', '--no-progress', '--max-hands', '3']
    assert evaluate.main(arguments) == 0
    alone = last_json(capsys.readouterr().out)
    assert (alone['recall'], alone['precision']) == (0.5, 0.25) and 'fine_localizer' not in alone
    assert evaluate.main([*arguments, '--fine-localizer', str(fine)]) == 0
    output = capsys.readouterr().out
    merged = last_json(output)
    assert (merged['recall'], merged['precision']) == (1.0, 2 / 6)
    assert (merged['fine_input_width'], merged['fine_input_height'], merged['fine_max_height']) == (448, 352, 0.3)
    assert 'network input 320x256, and 448x352 for boxes under 0.3 of the frame height' in output
    # boxes taller than --fine-max-height of the frame (50 rows of 256 is 0.195) are not the fine pass's
    assert evaluate.main([*arguments, '--fine-localizer', str(fine), '--fine-max-height', '0.15']) == 0
    assert last_json(capsys.readouterr().out)['recall'] == 0.5
    for extra, message in ((['--fine-localizer', str(coarse)], 'larger input than --model'),
                           (['--fine-localizer', str(tmp_path / 'no.onnx')], 'does not exist'),
                           (['--fine-frame-size', '448x352'], 'give that too'),
                           (['--fine-localizer', str(fine), '--fine-max-height', '0'], 'must be in (0, 1]')):
        assert evaluate.main([*arguments, *extra]) == 2
        assert message in capsys.readouterr().err


def test_the_keypoint_check_scores_boxes_as_the_node_scores_their_hands(tmp_path, capsys):
    """--keypoint-check: each box's score times the mean keypoint confidence of its crop. The test
    keypoint model is sure of every crop (peaks of 1) except an all-black one (NaN maps: confidence
    0). One frame holds the hand of TEST_BOXES_INPUT[0]; the test localiser's second box lies on
    a black patch: alone it is a false box, checked it scores 0."""
    frames = tmp_path / 'frames'
    frames.mkdir()
    image = np.full((256, 320, 3), 80, np.uint8)
    image[85:195, 140:250] = 0  # all of the second box's crop (square, margin 0.25) is black
    cv2.imwrite(str(frames / 'a.png'), image)
    (frames / 'a.json').write_text(json.dumps(
        {'width': 320, 'height': 256, 'hands': [{'box': list(TEST_BOXES_INPUT[0]), 'is_left': 0}]}))
    localizer = build_fixed_boxes_localizer(tmp_path / 'loc.onnx')
    keypoints = build_fixed_peaks_model(tmp_path / 'cpm.onnx')
    arguments = ['--model', str(localizer), '--data', str(frames), '--json', '--no-progress',
                 '--score-threshold', '0.3']
    assert evaluate.main(arguments) == 0
    alone = last_json(capsys.readouterr().out)
    assert (alone['recall'], alone['precision']) == (1.0, 0.5) and 'keypoint_check' not in alone
    assert evaluate.main([*arguments, '--keypoint-check', str(keypoints)]) == 0
    output = capsys.readouterr().out
    checked = last_json(output)
    assert (checked['recall'], checked['precision'], checked['keypoint_check']) == (1.0, 1.0, str(keypoints))
    assert f'scores times the mean keypoint confidence of {keypoints}' in output
    for extra, message in ((['--keypoint-check', str(tmp_path / 'no.onnx')], 'does not exist'),
                           (['--keypoint-check', str(localizer)], 'is a hand localiser')):
        assert evaluate.main([*arguments, *extra]) == 2
        assert message in capsys.readouterr().err
    assert evaluate.main(['--model', str(keypoints), '--data', str(frames), '--keypoint-check', str(keypoints)]) == 2
    assert '--keypoint-check are for localisers' in capsys.readouterr().err
