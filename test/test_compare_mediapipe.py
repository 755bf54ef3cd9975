"""hand-cpm-compare-mediapipe without MediaPipe: loading frame scenes, matching predicted to true
hands, the metrics and the side-by-side table from known per-frame results, this package's side
with the fixed TEST MODELS (real ONNX Runtime), the worker's failure reaching the user as one line,
and argument errors caught before any virtual environment is made."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_cpm_train.compare_mediapipe import (WORKER, CompareError, PredictedFrame, TrueFrame,
                                              _predicted_frame, build_pipeline, build_report,
                                              ensure_mediapipe_venv, find_worker, load_true_frames,
                                              main, markdown_table, match_frame, run_hand_cpm,
                                              run_mediapipe, score_system)

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_boxes_localizer import build_fixed_boxes_localizer  # noqa: E402
from fixed_peaks_model import build_fixed_peaks_model  # noqa: E402

# A 21-keypoint hand on a 5-column grid, 25 px apart: its box is 100 x 100 px.
GRID = np.array([[25.0 * (i % 5), 25.0 * (i // 5)] for i in range(21)])
ALL = np.ones(21, bool)


def truth(hands, visible=None, is_left=None, name='frame.jpg'):
    hands = np.array(hands, np.float64).reshape(-1, 21, 2)
    visible = np.ones(hands.shape[:2], bool) if visible is None else np.array(visible, bool)
    is_left = np.zeros(len(hands), bool) if is_left is None else np.array(is_left, bool)
    return TrueFrame(Path(name), 640, 480, hands, visible, is_left)


def predicted(hands, handedness, ms, scores=None):
    hands = np.array(hands, np.float64).reshape(-1, 21, 2)
    scores = np.linspace(0.9, 0.5, len(hands)) if scores is None else np.array(scores, np.float64)
    return PredictedFrame(hands, scores, tuple(handedness), ms)


def few_visible(count):
    return np.arange(21) < count


# Frame A: H0 (right) found with its first 5 keypoints 30 px off (> 0.2 * 100 px), H1 (left)
# missed, H2 with 3 visible keypoints (not counted) found, and a false hand. Frame B: H3 (left)
# found exactly but called right.
FRAME_A = truth([GRID + (100, 100), GRID + (400, 300), GRID + (500, 20)],
                visible=[ALL, ALL, few_visible(3)], is_left=[0, 1, 0], name='a.jpg')
SHIFTED = (GRID + (100, 100)) + np.where(np.arange(21)[:, None] < 5, (30.0, 0.0), 0.0)
PRED_A = predicted([SHIFTED, GRID + (220, 250), GRID + (502, 21)], ['right', 'left', 'right'], 10.0)
FRAME_B = truth([GRID + (50, 300)], is_left=[1], name='b.jpg')
PRED_B = predicted([GRID + (50, 300)], ['right'], 30.0)


def test_match_frame_pairs_hands_by_keypoint_box_iou():
    np.testing.assert_array_equal(match_frame(FRAME_A, PRED_A), [0, -1, 2])
    half_over = predicted([GRID + (160, 100)], ['right'], 1.0)  # box IoU 40/160 = 0.25 with H0
    np.testing.assert_array_equal(match_frame(FRAME_A, half_over), [-1])
    nothing = predicted([], [], 1.0)
    assert match_frame(FRAME_A, nothing).shape == (0,)


def test_score_system_counts_hits_misses_false_hands_and_keypoint_errors():
    result, per_frame = score_system([FRAME_A, FRAME_B], [PRED_A, PRED_B])
    assert per_frame == [[0, -1, 2], [0]]
    assert result['frames'] == 2
    assert result['true_hands'] == 3          # H2 has fewer than 4 visible keypoints
    assert result['hands_found'] == 2
    assert result['detection_rate'] == pytest.approx(2 / 3, abs=1e-4)
    assert result['false_hands'] == 1         # finding H2 is neither a hit nor a false hand
    assert result['pck@0.2_matched'] == pytest.approx(37 / 42, abs=1e-4)
    assert result['pck@0.2_all'] == pytest.approx(37 / 63, abs=1e-4)  # H1's 21 count as wrong
    assert result['epe_px_matched'] == pytest.approx(5 * 30 / 42, abs=1e-4)
    assert result['handedness_given'] == pytest.approx(1.0)
    assert result['handedness_accuracy'] == pytest.approx(0.5)
    assert result['latency_ms_median'] == pytest.approx(20.0)
    assert result['latency_ms_p95'] == pytest.approx(29.0)
    assert result['frames_per_s'] == pytest.approx(50.0)


def test_score_system_without_any_hit_reports_none_not_nan():
    result, _ = score_system([FRAME_B], [predicted([], [], 4.0)])
    assert result['hands_found'] == 0 and result['detection_rate'] == 0.0
    assert result['pck@0.2_all'] == 0.0
    assert result['pck@0.2_matched'] is None and result['epe_px_matched'] is None
    assert result['handedness_accuracy'] is None and result['handedness_given'] is None
    json.dumps(result, allow_nan=False)


def test_unknown_handedness_is_not_counted_as_a_wrong_side():
    unknown_a = PredictedFrame(PRED_A.keypoints, PRED_A.scores,
                               tuple('unknown' for _ in PRED_A.handedness), PRED_A.ms)
    result, _ = score_system([FRAME_A, FRAME_B], [unknown_a, PRED_B])
    assert result['hands_found'] == 2
    assert result['handedness_given'] == pytest.approx(0.5)  # only FRAME_B's hand has a side
    assert result['handedness_accuracy'] == 0.0  # PRED_B calls FRAME_B's left hand right


def test_score_system_refuses_mismatched_frame_counts():
    with pytest.raises(ValueError, match='1 predicted frames for 2 true frames'):
        score_system([FRAME_A, FRAME_B], [PRED_A])


def report_of_known_results():
    exact = [predicted([GRID + (100, 100), GRID + (400, 300)], ['right', 'left'], 5.0),
             predicted([GRID + (50, 300)], ['left'], 5.0)]
    return build_report(Path('frames'), [FRAME_A, FRAME_B],
                        {'mediapipe': [PRED_A, PRED_B], 'hand_cpm': exact},
                        {'mediapipe': {'name': 'MediaPipe Hands 0.10.21'},
                         'hand_cpm': {'name': 'hand_cpm_ros (cpm-lite-s)'}})


def test_report_json_holds_metrics_and_per_frame_records():
    report = report_of_known_results()
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)['frames'] == 2
    assert report['systems']['hand_cpm']['metrics']['pck@0.2_matched'] == 1.0
    assert report['systems']['hand_cpm']['metrics']['false_hands'] == 0
    assert report['per_frame'][0] == {'image': 'a.jpg', 'true_hands': 3,
                                      'mediapipe': {'ms': 10.0, 'matched_true_hand': [0, -1, 2]},
                                      'hand_cpm': {'ms': 5.0, 'matched_true_hand': [0, 1]}}


def test_markdown_table_shows_both_systems_and_the_better_one_per_row():
    rows = {line.split(' | ')[0].lstrip('| '): line.split(' | ')[1:]
            for line in markdown_table(report_of_known_results()).splitlines()[2:]}
    assert markdown_table(report_of_known_results()).splitlines()[0] == \
        '| metric | MediaPipe Hands 0.10.21 | hand_cpm_ros (cpm-lite-s) | better |'
    assert rows['frames'] == ['2', '2', ' |']
    assert rows['hands found (detection rate)'] == ['2 (0.667)', '3 (1.000)', 'hand_cpm_ros |']
    assert rows['false hands'] == ['1', '0', 'hand_cpm_ros |']
    assert rows['PCK@0.2, matched hands'] == ['0.881', '1.000', 'hand_cpm_ros |']
    assert rows['PCK@0.2, all true hands (missed = wrong)'] == ['0.587', '1.000', 'hand_cpm_ros |']
    assert rows['EPE px, matched hands'] == ['3.6', '0.0', 'hand_cpm_ros |']
    assert rows['latency median, ms'] == ['20.0', '5.0', 'hand_cpm_ros |']
    assert rows['frames/s'] == ['50.0', '200.0', 'hand_cpm_ros |']


def test_markdown_table_names_the_peer_where_it_wins_and_shows_missing_values():
    report = report_of_known_results()
    report['systems']['hand_cpm']['metrics'].update(latency_ms_median=25.0, epe_px_matched=None)
    rows = {line.split(' | ')[0].lstrip('| '): line.split(' | ')[1:]
            for line in markdown_table(report).splitlines()[2:]}
    assert rows['latency median, ms'] == ['20.0', '25.0', 'MediaPipe |']
    assert rows['EPE px, matched hands'] == ['3.6', '-', ' |']


def write_frames(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(root / f'{index:08d}.jpg'), np.full((480, 640, 3), 90 + index, np.uint8))
        points = [[x + 10 * index, y, int(i != 3)] for i, (x, y) in enumerate(GRID + 200)]
        (root / f'{index:08d}.json').write_text(json.dumps(
            {'width': 640, 'height': 480,
             'hands': [{'hand_pts': points, 'is_left': index % 2, 'box': [0, 0, 1, 1]}]}))


def test_load_true_frames_reads_frame_scenes_in_order_up_to_the_limit(tmp_path):
    write_frames(tmp_path, 3)
    frames = load_true_frames(tmp_path, limit=2)
    assert [frame.image.name for frame in frames] == ['00000000.jpg', '00000001.jpg']
    assert (frames[1].width, frames[1].height) == (640, 480)
    np.testing.assert_allclose(frames[1].keypoints[0], GRID + (210, 200))
    assert frames[1].visible[0].tolist() == [i != 3 for i in range(21)]
    assert frames[0].is_left.tolist() == [False] and frames[1].is_left.tolist() == [True]
    assert len(load_true_frames(tmp_path)) == 3


def test_load_true_frames_refuses_what_is_not_a_frame_scene(tmp_path):
    with pytest.raises(CompareError, match='is not a directory'):
        load_true_frames(tmp_path / 'missing')
    with pytest.raises(CompareError, match='holds no frame annotations'):
        load_true_frames(tmp_path)
    (tmp_path / 'crop.json').write_text(json.dumps({'hand_pts': [[0, 0, 1]] * 21, 'is_left': 0}))
    with pytest.raises(CompareError, match='no "hands" list.*--scene frame'):
        load_true_frames(tmp_path)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('models')
    return (build_fixed_peaks_model(root / 'keypoints.onnx'),
            build_fixed_boxes_localizer(root / 'localizer.onnx'))


def test_this_package_side_gives_the_pipelines_hands_per_frame(tmp_path, models):
    write_frames(tmp_path, 4)
    frames = load_true_frames(tmp_path)
    pipeline, backend = build_pipeline(*models, threads=1)
    assert backend.startswith('onnxruntime')
    assert not pipeline.settings.tracking and pipeline.settings.max_hands == 2
    predictions = run_hand_cpm(pipeline, frames, progress=False)
    reference, _ = build_pipeline(*models, threads=1)
    assert len(predictions) == 4
    for frame, prediction in zip(frames, predictions):
        expected = reference.process(cv2.imread(str(frame.image)))
        assert prediction.keypoints.shape == (2, 21, 2)
        np.testing.assert_allclose(prediction.keypoints,
                                   np.stack([hand.keypoints for hand in expected.hands]))
        np.testing.assert_allclose(prediction.scores, [hand.score for hand in expected.hands])
        assert sorted(prediction.handedness) == ['left', 'right']
        assert prediction.ms > 0


def test_a_failing_worker_is_one_clear_error(tmp_path):
    if importlib.util.find_spec('mediapipe') is not None:
        pytest.skip('mediapipe is importable in this environment: the worker would succeed')
    write_frames(tmp_path, 2)
    worker = find_worker()
    assert worker.relative_to(worker.parents[1]) == WORKER
    with pytest.raises(CompareError, match=r"worker failed \(exit 1, 0 of 2 frames\): "
                                           r".*No module named 'mediapipe'"):
        run_mediapipe(Path(sys.executable), worker, [frame.image for frame in load_true_frames(tmp_path)], 1,
                      progress=False)


def test_malformed_worker_records_are_refused():
    good = {'image': '/data/a.jpg', 'ms': 12.5,
            'hands': [{'keypoints': (GRID + 1).tolist(), 'handedness': 'left', 'score': 0.9}]}
    parsed = _predicted_frame(good)
    np.testing.assert_allclose(parsed.keypoints[0], GRID + 1)
    assert parsed.handedness == ('left',) and parsed.ms == 12.5 and parsed.scores.tolist() == [0.9]
    with pytest.raises(CompareError, match="record for /data/a.jpg is malformed: KeyError: 'ms'"):
        _predicted_frame({key: value for key, value in good.items() if key != 'ms'})


def fake_worker(tmp_path, answers):
    """A stand-in for scripts/mediapipe_hands_worker.py (MediaPipe is not installed in the test
    environment) that prints a header and then the given image names' records."""
    script = tmp_path / 'fake_worker.py'
    lines = [json.dumps({'mediapipe': 'fake', 'settings': {}})] + [
        json.dumps({'image': name, 'width': 4, 'height': 3, 'ms': 1.0, 'hands': []}) for name in answers]
    script.write_text('import sys\nsys.stdin.read()\n' + ''.join(f'print({line!r})\n' for line in lines))
    return script


def test_the_worker_records_come_back_in_order_and_must_answer_for_each_image(tmp_path):
    images = [tmp_path / 'a.jpg', tmp_path / 'b.jpg']
    header, records = run_mediapipe(Path(sys.executable), fake_worker(tmp_path, map(str, images)),
                                    images, 1, progress=False)
    assert header['mediapipe'] == 'fake'
    assert [record['image'] for record in records] == [str(image) for image in images]
    swapped = fake_worker(tmp_path, [str(images[1]), str(images[0])])
    with pytest.raises(CompareError, match=f'answered for {images[1]}, expected {images[0]}'):
        run_mediapipe(Path(sys.executable), swapped, images, 1, progress=False)


def test_a_failing_pip_names_the_command_to_run_by_hand(capfd, tmp_path):
    venv = tmp_path / 'no_pip'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    with pytest.raises(CompareError) as error:
        ensure_mediapipe_venv(venv)
    assert str(error.value).startswith(f'pip failed (exit 1) installing into {venv}; run by hand: '
                                       f'{venv}/bin/python -m pip install')
    assert str(error.value).endswith(" mediapipe==0.10.21 'numpy<2'")
    captured = capfd.readouterr()
    assert 'No module named pip' in captured.err and captured.out == ''


def test_a_missing_python_for_the_environment_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(CompareError, match='python3.11 not found: MediaPipe 0.10.21 needs CPython'):
        ensure_mediapipe_venv(tmp_path / 'venv')
    assert not (tmp_path / 'venv').exists()


@pytest.mark.parametrize('extra, message', [
    (['--limit', '0'], "--limit: needs an integer >= 1, got '0'"),
    (['--threads', 'two'], "--threads: needs an integer >= 1, got 'two'"),
])
def test_bad_numbers_are_refused_by_argparse(capsys, tmp_path, extra, message):
    with pytest.raises(SystemExit) as stop:
        main(['--data', str(tmp_path), *extra])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_come_before_any_environment_is_made(capsys, tmp_path, models):
    write_frames(tmp_path / 'frames', 2)
    venv = tmp_path / 'venv'
    base = ['--data', str(tmp_path / 'frames'), '--mediapipe-venv', str(venv)]
    existing = tmp_path / 'report.json'
    existing.write_text('{"kept": true}')
    cases = [
        (['--model', str(models[0]), '--localizer', str(models[1]), '--json', str(existing)],
         f'--json {existing} exists; pass --overwrite to replace it'),
        (['--model', str(tmp_path / 'none.onnx'), '--localizer', str(models[1])],
         f'--model {tmp_path / "none.onnx"} does not exist (no trained default model ships yet)'),
        (['--model', str(models[0]), '--localizer', str(models[0])],
         'is a keypoints model, not a hand localiser'),
        (['--data', str(tmp_path / 'nowhere'), '--model', str(models[0])],
         f'--data {tmp_path / "nowhere"} is not a directory'),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith('hand-cpm-compare-mediapipe: error: ') and message in err
        assert len(err.strip().splitlines()) == 1
    assert not venv.exists()
    assert existing.read_text() == '{"kept": true}'
