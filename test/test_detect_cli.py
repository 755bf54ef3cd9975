"""hand-cpm-detect on image and video files and directories with the fixed-peaks TEST MODEL (real
ONNX Runtime): JSON content in source pixels, annotated output, no silent overwrite, clear errors
(exit 2), unreadable files skipped without losing the others."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_cpm_ros.detect_cli import NO_LOCALIZER, main
from hand_cpm_ros.geometry import apply_affine, crop_to_source_affine, square_crop

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_peaks_model import (TEST_INPUT_SIZE, TEST_KEYPOINTS_CROP,  # noqa: E402
                               build_fixed_peaks_model)

BOX = (100.0, 120.0, 220.0, 260.0)
BOX_ARG = '100,120,220,260'


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return build_fixed_peaks_model(tmp_path_factory.mktemp('model') / 'fixed_peaks_test.onnx')


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'scene.png'
    canvas = np.full((360, 480, 3), 128, np.uint8)
    cv2.circle(canvas, (160, 190), 50, (60, 120, 200), -1)
    cv2.imwrite(str(path), canvas)
    return path


def expected_keypoints(box):
    cx, cy, side = square_crop(box, 0.25)
    return apply_affine(crop_to_source_affine(cx, cy, side, TEST_INPUT_SIZE), TEST_KEYPOINTS_CROP)


def run_json(capsys, *argv):
    assert main(list(map(str, argv))) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_gives_keypoints_in_source_pixels(capsys, model, image):
    (record,) = run_json(capsys, image, '--box', BOX_ARG, '--json', '--model', model, '--threads', 1)
    assert record['image'] == str(image) and 'frame' not in record
    (hand,) = record['hands']
    keypoints = np.array(hand['keypoints'])
    assert keypoints.shape == (21, 3)
    np.testing.assert_allclose(keypoints[:, :2], expected_keypoints(BOX), atol=0.5)
    np.testing.assert_allclose(keypoints[9, :2], (160.0, 190.0), atol=0.5)  # the box centre
    assert (keypoints[:, 2] > 0.9).all()
    assert hand['score'] == pytest.approx(keypoints[:, 2].mean(), abs=1e-3)
    np.testing.assert_allclose(hand['box'], [*keypoints[:, :2].min(0), *keypoints[:, :2].max(0)],
                               atol=1e-3)
    assert (hand['handedness'], hand['handedness_score'], hand['track_id']) == ('unknown', 0.0, 1)


def test_plain_output_is_a_summary_line(capsys, model, image):
    assert main([str(image), '--box', BOX_ARG, '--model', str(model)]) == 0
    assert capsys.readouterr().out.startswith(f'{image}: 1 hand(s): unknown hand score 0.9')


def test_out_writes_annotations_and_never_overwrites_silently(capsys, model, image, tmp_path):
    out = tmp_path / 'annotated'
    assert main([str(image), '--box', BOX_ARG, '--model', str(model), '--out', str(out),
                 '--heatmap']) == 0
    drawn = cv2.imread(str(out / 'scene.png'))
    original = cv2.imread(str(image))
    assert drawn.shape == original.shape
    tip = np.round(expected_keypoints(BOX)[8]).astype(int)
    assert (drawn[tip[1], tip[0]] != original[tip[1], tip[0]]).any()
    assert (drawn[5, 470] == original[5, 470]).all()
    capsys.readouterr()
    assert main([str(image), '--box', BOX_ARG, '--model', str(model), '--out', str(out)]) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert main([str(image), '--box', BOX_ARG, '--model', str(model), '--out', str(out),
                 '--overwrite']) == 0


def test_video_gives_one_record_per_frame_and_an_annotated_video(capsys, model, tmp_path):
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (320, 240))
    for value in (100, 130, 160):
        writer.write(np.full((240, 320, 3), value, np.uint8))
    writer.release()
    records = run_json(capsys, video, '--box', '40,40,140,140', '--json', '--model', model,
                       '--out', tmp_path / 'out')
    assert [r['frame'] for r in records] == [0, 1, 2]
    assert all(r['image'] == str(video) and len(r['hands']) == 1 for r in records)
    assert [r['hands'][0]['track_id'] for r in records] == [1, 1, 1]  # one hand, tracked
    np.testing.assert_allclose(np.array(records[0]['hands'][0]['keypoints'])[9, :2], (90, 90), atol=0.5)
    capture = cv2.VideoCapture(str(tmp_path / 'out' / 'clip.mp4'))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_a_directory_stands_for_its_images_and_videos_in_name_order(capsys, model, image, tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for name in ('b.png', 'a.JPG'):
        cv2.imwrite(str(folder / name), cv2.imread(str(image)))
    (folder / 'a.json').write_text('{}')  # labels beside the images are passed over
    (folder / 'nested').mkdir()
    cv2.imwrite(str(folder / 'nested' / 'c.png'), cv2.imread(str(image)))
    records = run_json(capsys, folder, image, '--box', BOX_ARG, '--json', '--model', model)
    assert [r['image'] for r in records] == [str(folder / 'a.JPG'), str(folder / 'b.png'), str(image)]
    for record in records:
        np.testing.assert_allclose(np.array(record['hands'][0]['keypoints'])[:, :2],
                                   expected_keypoints(BOX), atol=0.5)
    (tmp_path / 'empty').mkdir()
    assert main([str(tmp_path / 'empty'), '--box', BOX_ARG, '--model', str(model)]) == 2
    assert 'holds no image' in capsys.readouterr().err


def test_an_unreadable_file_is_skipped_and_the_others_still_processed(capsys, model, image, tmp_path):
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a JPEG')
    late = tmp_path / 'late.png'
    cv2.imwrite(str(late), cv2.imread(str(image)))
    assert main([str(image), str(broken), str(late), '--box', BOX_ARG, '--json',
                 '--model', str(model), '--out', str(tmp_path / 'out')]) == 2
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r['image'] for r in records] == [str(image), str(late)]
    assert all(len(r['hands']) == 1 for r in records)
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['late.png', 'scene.png']
    lines = captured.err.splitlines()
    assert lines[0] == f'hand-cpm-detect: skipped {broken}: not a readable image file'
    assert lines[-1].startswith('hand-cpm-detect: error: 1 of 3 input file(s) could not be read')


@pytest.mark.parametrize('argv, message', [
    (['{image}', '--model', '{model}', '--localizer', '{missing}'], NO_LOCALIZER),
    (['{image}', '--box', '500,0,600,50', '--model', '{model}'], 'lies outside'),
    (['{missing}', '--box', BOX_ARG, '--model', '{model}'], 'does not exist'),
    (['{image}', '--box', BOX_ARG, '--model', '{missing}'], 'does not exist'),
    (['{text}', '--box', BOX_ARG, '--model', '{model}'], 'unsupported file type'),
    (['{image}', '--box', BOX_ARG, '--model', '{model}', '--max-hands', '9'], 'max_hands'),
    (['{image}', '--model', '{model}', '--localizer', '{model}', '--localizer-threads', '0'],
     'threads must be >= 1'),
])
def test_bad_input_is_one_clear_line_and_exit_code_2(capsys, model, image, tmp_path, argv, message):
    text = tmp_path / 'notes.txt'
    text.write_text('not an image')
    names = {'image': image, 'model': model, 'missing': tmp_path / 'missing.onnx', 'text': text}
    assert main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1 and err.startswith('hand-cpm-detect: error:')


def test_bad_box_and_help_through_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['x.png', '--box', '1,2,3'])
    assert exit_info.value.code == 2 and 'X0,Y0,X1,Y1' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0 and '--box' in capsys.readouterr().out


def test_command_line_entry_runs_as_a_process(model, image):
    process = subprocess.run([sys.executable, '-m', 'hand_cpm_ros.detect_cli', str(image),
                              '--box', BOX_ARG, '--json', '--model', str(model)],
                             capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).resolve().parents[1])
    assert process.returncode == 0, process.stderr
    assert len(json.loads(process.stdout)['hands']) == 1
