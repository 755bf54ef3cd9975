"""hand-cpm-demo end to end: the real hand_cpm_node in its own process, fed a rendered stream with
each frame's truth boxes on its hand_regions topic, run by real ONNX Runtime on the fixed-peaks
TEST MODEL (not a hand detector: its keypoints only prove the plumbing, never accuracy); a bag
written with rosbags replayed; bad arguments and a node that cannot start give exit code 2 with one clear line."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')
pytest.importorskip('hand_cpm_train.synth.scene')

from hand_cpm_ros import demo  # noqa: E402
from hand_cpm_ros.geometry import clip_box, square_crop  # noqa: E402
from hand_cpm_ros.ros_messages import box_to_roi, roi_to_box  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_peaks_model import build_fixed_peaks_model  # noqa: E402

FRAMES = 20
MIDDLE_MCP = 9  # the fixed-peaks model puts it on the centre of every crop


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    return build_fixed_peaks_model(tmp_path_factory.mktemp('model') / 'fixed_peaks_test.onnx')


@pytest.fixture(scope='module')
def rendered_run(model_path, tmp_path_factory, isolated_ros_environment):
    out = tmp_path_factory.mktemp('demo') / 'run'
    code = demo.main(['--out', str(out), '--frames', str(FRAMES), '--model', str(model_path),
                      '--regions-from-truth', '--seed', '3', '--param', 'heatmap_alpha:=0.5'])
    assert code == 0, (out / 'node.log').read_text()
    summary = json.loads((out / 'summary.json').read_text())
    records = [json.loads(line) for line in (out / 'results.jsonl').read_text().splitlines()]
    return out, summary, records


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image)


def test_outputs_exist_and_summary_adds_up(rendered_run):
    out, summary, records = rendered_run
    for name in ('demo.mp4', 'demo.gif', 'summary.json', 'results.jsonl', 'node.log'):
        assert (out / name).stat().st_size > 0, name
    assert any((out / 'ros_log').iterdir())  # the node's ROS log stays in the out dir
    assert summary['regions_from_truth'] and summary['localizer'] is None
    assert summary['node_parameters'] == ['heatmap_alpha:=0.5']
    assert summary['frames_published'] == FRAMES == len(records)
    assert summary['frames_processed'] >= 1
    assert summary['frames_processed'] + summary['frames_dropped'] == FRAMES
    assert summary['frames_processed'] == sum(record['processed'] for record in records)
    assert summary['heatmaps_received'] <= summary['frames_processed']
    latency = summary['latency_ms']
    assert 0 < latency['median'] <= latency['p95'] <= latency['max']
    assert 0 < summary['publish_rate_hz'] <= 40
    # the default stream: one hand for the first half, two for the second
    assert [len(record['truth']) for record in records] == [1] * (FRAMES // 2) + [2] * (FRAMES // 2)
    detection = summary['detection']
    assert detection['true_hands'] == sum(len(r['truth']) for r in records if r['processed'])
    assert 0 <= detection['matched'] <= detection['true_hands']
    assert summary['keypoints']['n'] == detection['matched']
    # nothing here tells the side (no localiser; the test model has no handedness output)
    assert summary['handedness'] == {'matched': detection['matched'], 'given': 0, 'right': 0}
    assert all(hand['handedness'] == 0 for r in records for hand in r.get('hands', []))
    diagnostics = summary['node_diagnostics']
    assert 'onnxruntime' in diagnostics['backend']
    assert diagnostics['model'].endswith('fixed_peaks_test.onnx')
    assert diagnostics['variant'] == 'test-fixed-peaks'


def test_found_hands_sit_in_their_own_frames_truth_boxes(rendered_run):
    """Each frame's true boxes went to the node as HandRegions stamped like the frame; the test
    model puts keypoint 9 on the centre of each region's square crop. The node uses a frame's own
    regions only, so every hand found sits on a centre of its own frame's boxes (the hands move:
    a neighbour's boxes are elsewhere). The regions go ahead of the frames, so that most frames
    find theirs and have all their hands."""
    _, _, records = rendered_run

    def centres(record):
        return [square_crop(roi_to_box(box_to_roi(clip_box(hand['box'], 640, 480))), 0.25)[:2]
                for hand in record['truth']]

    complete = processed = 0
    for index, record in enumerate(records):
        if not record['processed']:
            continue
        processed += 1
        assert len(record['hands']) <= len(record['truth'])
        for hand in record['hands']:
            point = hand['keypoints'][MIDDLE_MCP][:2]
            assert any(np.allclose(point, centre, atol=0.5) for centre in centres(record)), \
                (index, point)
            assert len(hand['keypoints']) == 21 and hand['track_id'] >= 1
            assert min(score for _, _, score in hand['keypoints']) > 0.9
        complete += len(record['hands']) == len(record['truth'])
    assert complete >= max(1, processed / 2), (complete, processed)


def test_video_has_every_frame_side_by_side(rendered_run):
    out, summary, records = rendered_run
    frames = read_video(out / summary['outputs']['video'])
    assert len(frames) == FRAMES
    assert all(frame.shape == (480, 1280, 3) for frame in frames)
    shown = next(i for i, r in enumerate(records) if r['processed'] and r['hands'] and r['heatmap'])
    left, right = frames[shown][:, :640].astype(int), frames[shown][:, 640:].astype(int)
    x, y, _ = records[shown]['hands'][0]['keypoints'][MIDDLE_MCP]
    patch = (slice(int(y) - 2, int(y) + 3), slice(int(x) - 2, int(x) + 3))
    assert np.abs(left[patch] - right[patch]).mean() < 40  # same place, both panels drawn
    from PIL import Image
    with Image.open(out / 'demo.gif') as gif:
        assert gif.n_frames >= 2 and gif.size[0] == demo.GIF_WIDTH


def test_bag_replays_with_its_frames(model_path, tmp_path, isolated_ros_environment):
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    bag = tmp_path / 'camera_bag'
    typestore = get_typestore(Stores.ROS2_KILTED)
    values = [40, 80, 120, 160, 200, 240]
    with Writer(bag, version=8) as writer:
        connection = writer.add_connection('/camera/image_raw', 'sensor_msgs/msg/Image',
                                           typestore=typestore)
        for index, value in enumerate(values):
            rgb = np.full((240, 320, 3), (value, 0, 255 - value), np.uint8)
            msg = Image(header=Header(stamp=Time(sec=10 + index), frame_id='bag_camera'),
                        height=240, width=320, encoding='rgb8', step=960, data=rgb.tobytes())
            writer.write(connection, (10 + index) * 10**9, serialize_message(msg))
    out = tmp_path / 'out'
    assert demo.main(['--bag', str(bag), '--out', str(out), '--model', str(model_path),
                      '--fps', '30']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames_published'] == len(values)
    assert summary['frames_processed'] + summary['frames_dropped'] == len(values)
    assert summary['frames_processed'] >= 1 and summary['hands_per_frame'] == 0.0
    assert 'keypoints' not in summary and 'detection' not in summary  # a bag has no truth
    frames = read_video(out / summary['outputs']['video'])
    assert len(frames) == len(values) and frames[0].shape == (240, 640, 3)
    # rgb8 was converted: frame 0 is (R, G, B) = (40, 0, 215), i.e. BGR (215, 0, 40)
    np.testing.assert_allclose(frames[0][200, 100], (215, 0, 40), atol=12)


def run_error(capsys, *argv):
    code = demo.main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_missing_files_and_bad_arguments_are_exit_code_2(capsys, tmp_path, model_path,
                                                         monkeypatch):
    code, lines = run_error(capsys, '--model', str(tmp_path / 'none.onnx'), '--out', str(tmp_path / 'a'))
    assert code == 2 and lines == [f'hand-cpm-demo: error: --model {tmp_path / "none.onnx"} does not '
                                   'exist or is not a file']
    monkeypatch.setattr(demo, 'default_model_path', lambda name='hand_cpm.onnx': tmp_path / name)
    code, lines = run_error(capsys, '--out', str(tmp_path / 'a'))
    assert code == 2 and lines == [f'hand-cpm-demo: error: {demo.NO_DEFAULT_MODEL}']
    code, lines = run_error(capsys, '--model', str(model_path), '--video', str(tmp_path / 'v.mp4'))
    assert code == 2 and 'v.mp4 does not exist' in lines[0] and len(lines) == 1
    code, lines = run_error(capsys, '--model', str(model_path), '--bag', str(tmp_path / 'nobag'))
    assert code == 2 and 'nobag does not exist' in lines[0] and len(lines) == 1
    video = tmp_path / 'clip.mp4'
    video.write_bytes(b'x')
    code, lines = run_error(capsys, '--model', str(model_path), '--video', str(video),
                            '--regions-from-truth')
    assert code == 2 and '--regions-from-truth needs the rendered stream' in lines[0]
    code, lines = run_error(capsys, '--model', str(model_path), '--regions-from-truth',
                            '--localizer', str(model_path))
    assert code == 2 and 'drop --localizer or --regions-from-truth' in lines[0] and len(lines) == 1
    occupied = tmp_path / 'occupied'
    occupied.mkdir()
    (occupied / 'keep.txt').write_text('mine')
    code, lines = run_error(capsys, '--model', str(model_path), '--out', str(occupied))
    assert code == 2 and 'pass --overwrite' in lines[0] and len(lines) == 1
    assert (occupied / 'keep.txt').read_text() == 'mine'
    with pytest.raises(SystemExit) as exit_info:
        demo.main(['--frames', '0'])
    assert exit_info.value.code == 2 and '--frames must be in 1..' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        demo.main(['--param', 'tracking=false'])
    assert exit_info.value.code == 2
    assert "'tracking=false' is not NAME:=VALUE" in capsys.readouterr().err
    override = 'qos_overrides./hand_cpm_demo/image.subscription.depth:=2'
    assert demo.node_parameter(override) == override


def test_a_node_that_cannot_start_is_reported_in_one_line(capsys, tmp_path,
                                                          isolated_ros_environment):
    broken = tmp_path / 'broken.onnx'
    broken.write_text('not a model')
    code, lines = run_error(capsys, '--model', str(broken), '--frames', '2', '--out',
                            str(tmp_path / 'out'))
    errors = [line for line in lines if 'error' in line]
    assert code == 2 and len(errors) == 1
    assert 'hand_cpm_node exited with code 2' in errors[0] and 'cannot start' in errors[0]


def test_with_a_localiser_hands_are_found_and_tracked(model_path, tmp_path,
                                                      isolated_ros_environment):
    """The default mode: the node's own localiser (a fixed-boxes TEST MODEL that always reports
    the same two hands) proposes the crops; tracking keeps their ids over the stream. Its boxes are
    fixed in its input, not on the image, so a wide pass would see them elsewhere in the frame (two
    other hands on the frames where it takes its turn): it is off here."""
    pytest.importorskip('hand_cpm_train.localizer_model')
    from fixed_boxes_localizer import build_fixed_boxes_localizer

    localizer = build_fixed_boxes_localizer(tmp_path / 'fixed_boxes_localizer.onnx')
    out = tmp_path / 'out'
    assert demo.main(['--out', str(out), '--frames', '8', '--hands', '1', '--model',
                      str(model_path), '--localizer', str(localizer),
                      '--param', 'localizer_wide_factor:=1.0']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['localizer'] == str(localizer.resolve()) and not summary['regions_from_truth']
    records = [json.loads(line) for line in (out / 'results.jsonl').read_text().splitlines()]
    processed = [record for record in records if record['processed']]
    assert processed and all(len(record['hands']) == 2 for record in processed)
    track_ids = {tuple(sorted(hand['track_id'] for hand in record['hands'])) for record in processed}
    assert len(track_ids) == 1  # the same two tracks in every frame
    assert summary['hands_per_frame'] == 2.0 and summary['truth_hands_per_frame'] == 1.0
    assert summary['detection']['false_positives'] >= len(processed)  # one of the two is not there


def test_offline_finds_the_same_hands_on_every_run(tmp_path):
    """--offline with the shipped models: every frame processed in turn, stamped at --fps; a second
    run gives the very same hands (no node, no DDS, nothing dropped)."""
    runs = []
    for name in ('first', 'second'):
        out = tmp_path / name
        assert demo.main(['--offline', '--out', str(out), '--frames', '10', '--hands', '1',
                          '--seed', '2', '--param', 'localizer_interval:=2']) == 0
        runs.append((json.loads((out / 'summary.json').read_text()),
                     [json.loads(line) for line in (out / 'results.jsonl').read_text().splitlines()]))
    (summary, records), (_, again) = runs
    assert summary['offline'] and summary['node_parameters'] == ['localizer_interval:=2']
    assert (summary['frames_processed'], summary['frames_dropped']) == (10, 0)
    assert [record['stamp_ns'] for record in records] == [round(i * 1e9 / 30) for i in range(10)]
    assert [record['hands'] for record in records] == [record['hands'] for record in again]
    assert summary['detection']['rate'] >= 0.9 and summary['keypoints']['pck@0.2'] > 0.8
    assert len({hand['track_id'] for record in records for hand in record['hands']}) == 1
    assert (out / 'demo.mp4').stat().st_size > 0 and not (out / 'node.log').exists()


def test_offline_builds_the_localiser_as_the_node_parameters_say():
    """The localiser's read-only node parameters reach the offline pipeline's localiser."""
    from hand_cpm_ros.localizer import PIPELINE_SCORE_THRESHOLD
    from hand_cpm_ros.pipeline import DEFAULT_LOCALIZER_NAME, default_model_path
    localizer = default_model_path(DEFAULT_LOCALIZER_NAME)
    for assignments, flip, threshold in (([], False, PIPELINE_SCORE_THRESHOLD),
                                         (['localizer_flip_averaging:=true', 'localizer_threshold:=0.3'],
                                          True, 0.3)):
        pipeline = demo.offline_pipeline(default_model_path(), localizer, 'onnxruntime',
                                         demo.offline_parameters(assignments), False)
        assert (pipeline.localizer.flip_averaging, pipeline.localizer.score_threshold) == (flip, threshold)
    with pytest.raises(demo.DemoError, match='localizer_flip_averaging takes true or false'):
        demo.offline_parameters(['localizer_flip_averaging:=2'])
    assert demo.offline_pipeline(default_model_path(), localizer, 'onnxruntime', demo.offline_parameters([]),
                                 False).localizer.fine_backend is None
    fine = demo.offline_pipeline(default_model_path(), localizer, 'onnxruntime', demo.offline_parameters(
        ['fine_localizer_model:=shipped', 'fine_localizer_max_height:=0.25']), False).localizer
    assert (fine.fine_codec.input_width, fine.fine_codec.input_height, fine.fine_max_height) == (448, 352, 0.25)
    with pytest.raises(demo.DemoError, match='nothing.onnx does not exist'):
        demo.offline_pipeline(default_model_path(), localizer, 'onnxruntime',
                              demo.offline_parameters(['fine_localizer_model:=nothing.onnx']), False)


@pytest.mark.parametrize('param, message', [
    ('engine_path:=x.engine', '--param engine_path does not apply with --offline'),
    ('max_hands:=two', 'max_hands takes an integer, e.g. max_hands:=2'),
    ('tracking:=1', 'tracking takes true or false'),
    ('max_hands:=20', 'max_hands must be an integer in 1..8'),
])
def test_offline_refuses_parameters_it_cannot_use(capsys, tmp_path, param, message):
    assert demo.main(['--offline', '--out', str(tmp_path / 'out'), '--frames', '2',
                      '--param', param]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('warm_up_frames, localizer_frames', [(0, 4), (1, 3), (2, 3)])
def test_offline_warm_up_sets_which_frames_the_localiser_sees(
        tmp_path, warm_up_frames, localizer_frames):
    """--warm-up-frames N passes the first frame N times before the stream, unrecorded: with the
    hand tracked throughout and localizer_interval 3, the localiser then runs on stream frames
    k with (N + k) % 3 == 0; the stream's stamps still start at 0."""
    out = tmp_path / 'out'
    assert demo.main(['--offline', '--out', str(out), '--frames', '10', '--hands', '1',
                      '--seed', '2', '--warm-up-frames', str(warm_up_frames)]) == 0
    summary = json.loads((out / 'summary.json').read_text())
    records = [json.loads(line) for line in (out / 'results.jsonl').read_text().splitlines()]
    assert summary['node_diagnostics']['warm-up frames'] == str(warm_up_frames)
    assert summary['node_diagnostics']['localizer frames'] == str(localizer_frames)
    assert [record['stamp_ns'] for record in records] == [round(i * 1e9 / 30) for i in range(10)]
    assert all(len(record['hands']) == 1 for record in records)


def test_offline_reproduces_the_drops_of_an_earlier_run(tmp_path):
    """--frames-processed-in: only the frames that the earlier run processed go through the
    pipeline; the others are dropped, and the processed ones get the hands they got there."""
    full = tmp_path / 'full'
    assert demo.main(['--offline', '--out', str(full), '--frames', '6', '--hands', '1',
                      '--seed', '2']) == 0
    records = [json.loads(line) for line in (full / 'results.jsonl').read_text().splitlines()]
    for record in records:  # as a node run that dropped frames 2, 3 and 5 would have recorded
        record['processed'] = record['frame'] in (0, 1, 4)
    earlier = tmp_path / 'earlier'
    earlier.mkdir()
    (earlier / 'results.jsonl').write_text(''.join(json.dumps(record) + '\n' for record in records))
    out = tmp_path / 'out'
    assert demo.main(['--offline', '--out', str(out), '--frames', '6', '--hands', '1', '--seed', '2',
                      '--frames-processed-in', str(earlier)]) == 0
    summary = json.loads((out / 'summary.json').read_text())
    again = [json.loads(line) for line in (out / 'results.jsonl').read_text().splitlines()]
    assert (summary['frames_processed'], summary['frames_dropped']) == (3, 3)
    assert summary['node_diagnostics']['dropped frames'] == '3'
    assert [record['processed'] for record in again] == [True, True, False, False, True, False]
    assert [record['hands'] for record in again[:2]] == [record['hands'] for record in records[:2]]
    assert [hand['track_id'] for hand in again[4]['hands']] == [records[1]['hands'][0]['track_id']]
    assert summary['detection']['matched'] == 3 and summary['keypoints']['pck@0.2'] > 0.8


@pytest.mark.parametrize('lines, args, message', [
    (None, ['--offline'], 'no such results.jsonl'),
    (['{"frame": 0}'], ['--offline'], 'line 1: not a hand-cpm-demo record'),
    (['{"frame": 1, "processed": true}'], ['--offline'], 'line 1: expected frame 0'),
    (['{"frame": 0, "processed": false}'], ['--offline'], 'processed no frame'),
    (['{"frame": 0, "processed": true}'], ['--offline'], 'records 1 frames, this stream has 2'),
    (['{"frame": 0, "processed": true}'], [], '--frames-processed-in only applies to --offline'),
])
def test_frames_processed_in_refuses_what_it_cannot_reproduce(capsys, tmp_path, lines, args, message):
    results = tmp_path / 'results.jsonl'
    if lines is not None:
        results.write_text('\n'.join(lines) + '\n')
    assert demo.main([*args, '--out', str(tmp_path / 'out'), '--frames', '2',
                      '--frames-processed-in', str(results)]) == 2
    assert message in capsys.readouterr().err
    if 'this stream has' not in message:  # the file is read before any output is written
        assert not (tmp_path / 'out').exists()


def test_warm_up_frames_needs_offline(capsys, tmp_path):
    assert demo.main(['--out', str(tmp_path / 'out'), '--frames', '2',
                      '--warm-up-frames', '1']) == 2
    assert '--warm-up-frames only applies to --offline' in capsys.readouterr().err
