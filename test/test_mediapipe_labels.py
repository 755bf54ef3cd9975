"""hand-cpm-mediapipe-labels without MediaPipe: which images it takes, how a worker record becomes
a `frame` annotation that the package's own loaders read back, and that nothing is overwritten
unasked."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_cpm_train.compare_mediapipe import CompareError
from hand_cpm_train.data import load_records
from hand_cpm_train.localizer_data import load_frame_records
from hand_cpm_train.mediapipe_labels import (BOX_MARGIN, collect_images, frame_annotation, main,
                                             write_labelled_set)

# 21 keypoints on a 5-column grid, 20 px apart: their box is 80 x 80 px from (100, 50).
GRID = np.array([[100.0 + 20 * (i % 5), 50.0 + 20 * (i // 5)] for i in range(21)])


def record(name, hands, width=320, height=240):
    return {'image': name, 'width': width, 'height': height, 'ms': 3.0,
            'hands': [{'keypoints': keypoints.tolist(), 'handedness': side, 'score': 0.9}
                      for keypoints, side in hands]}


def write_image(path: Path) -> Path:
    cv2.imwrite(str(path), np.full((240, 320, 3), 128, np.uint8))
    return path


def test_collect_images_takes_files_and_directories_in_order(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for name in ('b.png', 'a.jpg', 'notes.txt'):
        (folder / name).write_bytes(b'x')
    single = tmp_path / 'c.jpeg'
    single.write_bytes(b'x')
    assert collect_images([folder, single]) == [folder / 'a.jpg', folder / 'b.png', single]


@pytest.mark.parametrize('make, message', [
    (lambda root: root / 'missing.jpg', 'missing.jpg does not exist'),
    (lambda root: (root / 'clip.gif').write_bytes(b'x') and root / 'clip.gif', 'clip.gif is not an image'),
    (lambda root: root, 'no image'),
])
def test_collect_images_refuses_what_it_cannot_label(tmp_path, make, message):
    with pytest.raises(CompareError, match=message):
        collect_images([make(tmp_path)])


def test_collect_images_refuses_two_images_that_would_share_a_label_file(tmp_path):
    for folder in ('one', 'two'):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / 'hand.jpg').write_bytes(b'x')
    with pytest.raises(CompareError, match=r'both be labelled as hand.json: rename one'):
        collect_images([tmp_path / 'one', tmp_path / 'two'])


def test_a_record_becomes_a_frame_annotation_with_a_grown_clipped_box():
    near_edge = GRID - (98, 48)   # keypoint box (2, 2)-(82, 82): the margin reaches past 0
    content = frame_annotation(record('a.jpg', [(GRID, 'left'), (near_edge, 'right')]), 'MediaPipe')
    assert (content['width'], content['height'], content['labels']) == (320, 240, 'MediaPipe')
    first, second = content['hands']
    margin = BOX_MARGIN * 80
    assert first['box'] == [100 - margin, 50 - margin, 180 + margin, 130 + margin]
    assert second['box'] == [0.0, 0.0, 82 + margin, 82 + margin]
    assert first['is_left'] == 1 and second['is_left'] == 0
    assert first['hand_pts'][7] == [GRID[7][0], GRID[7][1], 1]


def test_a_malformed_record_is_one_clear_error():
    bad = record('a.jpg', [(GRID[:20], 'left')])
    with pytest.raises(CompareError, match="record for a.jpg is malformed: ValueError"):
        frame_annotation(bad, 'MediaPipe')


def test_the_written_set_reads_back_through_the_training_and_localiser_loaders(tmp_path):
    images = [write_image(tmp_path / 'one.jpg'), write_image(tmp_path / 'none.png')]
    records = [record(str(images[0]), [(GRID, 'right')]), record(str(images[1]), [])]
    out = tmp_path / 'labelled'
    assert write_labelled_set(images, records, out, 'MediaPipe') == 1
    assert sorted(path.name for path in out.iterdir()) == ['none.json', 'none.png', 'one.jpg', 'one.json']
    hands = load_records(out)
    assert len(hands) == 1 and hands[0].image_path == out / 'one.jpg'
    np.testing.assert_allclose(hands[0].keypoints, GRID)
    assert hands[0].visible.all() and not hands[0].is_left
    frames = load_frame_records(out)
    assert [len(frame.boxes) for frame in frames] == [0, 1]
    assert json.loads((out / 'none.json').read_text())['hands'] == []


def test_nothing_in_out_is_replaced_unless_asked(tmp_path):
    image = write_image(tmp_path / 'one.jpg')
    out = tmp_path / 'labelled'
    out.mkdir()
    (out / 'one.json').write_text('mine')
    with pytest.raises(CompareError, match=r'one.json exists \(1 files would be replaced\); pass --overwrite'):
        write_labelled_set([image], [record(str(image), [])], out, 'MediaPipe')
    assert (out / 'one.json').read_text() == 'mine' and not (out / 'one.jpg').exists()
    write_labelled_set([image], [record(str(image), [])], out, 'MediaPipe', overwrite=True)
    assert json.loads((out / 'one.json').read_text())['hands'] == []


def test_main_reports_a_bad_image_argument_before_any_environment_is_made(capsys, tmp_path):
    assert main([str(tmp_path / 'missing.jpg'), '--out', str(tmp_path / 'out'),
                 '--mediapipe-venv', str(tmp_path / 'venv')]) == 2
    assert capsys.readouterr().err == f'hand-cpm-mediapipe-labels: error: {tmp_path}/missing.jpg does not exist\n'
    assert not (tmp_path / 'venv').exists() and not (tmp_path / 'out').exists()
