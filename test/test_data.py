"""Data formats, the leak-free split, crops/targets of a sample, and the loader's shuffling.

The fixture writers below (a drawn hand in every CMU format and the frame format) are also used
by test_train.py and test_evaluate.py.
"""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.keypoints import FINGER_COLORS_BGR, NUM_KEYPOINTS, SKELETON, finger_of
from hand_cpm_train import data
from hand_cpm_train.augment import AugmentConfig
from hand_cpm_train.models import get_config

# An open right hand, palm towards the camera, in a unit frame (wrist at the origin, fingers up).
_FINGER_BASES = np.array([[-0.45, -0.25], [-0.3, -0.95], [-0.05, -1.0], [0.2, -0.95], [0.42, -0.85]])
_FINGER_DIRECTIONS = np.array([[-0.8, -0.6], [-0.15, -1.0], [0.0, -1.0], [0.12, -1.0], [0.3, -1.0]])
_BONE_LENGTHS = (0.33, 0.28, 0.22, 0.18)


def hand_keypoints(cx, cy, size, angle_deg=0.0):
    """(21, 2) keypoints of a drawn hand `size` pixels tall, wrist at (cx, cy), rotated."""
    points = [np.zeros(2)]
    for base, direction in zip(_FINGER_BASES, _FINGER_DIRECTIONS):
        direction = direction / np.linalg.norm(direction)
        point = base.copy()
        for length in (0.0,) + _BONE_LENGTHS[1:]:
            point = point + direction * length
            points.append(point.copy())
    points = np.array(points) * size / 1.9
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return points @ rotation.T + [cx, cy]


def draw_hand_image(keypoints_list, width, height, seed=0):
    """A textured background with each hand drawn as coloured bones and white joint dots."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(30, 110, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    for keypoints in keypoints_list:
        for parent, child in SKELETON:
            cv2.line(image, tuple(int(v) for v in np.round(keypoints[parent])),
                     tuple(int(v) for v in np.round(keypoints[child])),
                     FINGER_COLORS_BGR[finger_of(child)], 3, cv2.LINE_AA)
        for x, y in keypoints:
            cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1, cv2.LINE_AA)
    return image


def _points_json(keypoints, visible):
    return [[float(x), float(y), int(v)] for (x, y), v in zip(keypoints, visible)]


def write_cmu_sample(directory, name, keypoints, visible=None, is_left=0, size=(240, 200), seed=0):
    """One image + CMU hand_labels JSON (synth or manual depending on `name`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    visible = np.ones(NUM_KEYPOINTS, bool) if visible is None else visible
    cv2.imwrite(str(directory / f'{name}.jpg'), draw_hand_image([keypoints], *size, seed=seed))
    (directory / f'{name}.json').write_text(json.dumps(
        {'hand_pts': _points_json(keypoints, visible), 'is_left': is_left}))


def random_hand(rng, width=240, height=200):
    size = rng.uniform(70, 110)
    return hand_keypoints(rng.uniform(0.4, 0.6) * width, rng.uniform(0.7, 0.8) * height, size,
                          rng.uniform(-40, 40))


def write_synth_dataset(directory, count, seed=0):
    """`count` CMU-synth style samples (directory/NNNNNNNN.jpg + .json)."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        write_cmu_sample(directory, f'{index:08d}', random_hand(rng), is_left=int(index % 2),
                         seed=seed * 1000 + index)
    return Path(directory)


def write_panoptic_dataset(directory, count, seed=0):
    directory = Path(directory)
    (directory / 'imgs').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for index in range(count):
        keypoints = random_hand(rng)
        cv2.imwrite(str(directory / 'imgs' / f'{index:08d}.jpg'), draw_hand_image([keypoints], 240, 200))
        entries.append({'img_paths': f'imgs/{index:08d}.jpg', 'img_width': 240, 'img_height': 200,
                        'joint_self': _points_json(keypoints, np.ones(NUM_KEYPOINTS, bool)),
                        'objpos': keypoints.mean(axis=0).tolist(), 'scale_provided': 1.0})
    (directory / data.PANOPTIC_JSON).write_text(json.dumps({'root': entries}))
    return directory


def write_frame_dataset(directory, count, seed=0):
    """Frames 320x240 with two hands each (the second one a left hand, partly invisible)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        right = hand_keypoints(rng.uniform(70, 100), 200, 90, rng.uniform(-20, 20))
        left = hand_keypoints(rng.uniform(220, 250), 200, 80, rng.uniform(-20, 20))
        left_visible = np.ones(NUM_KEYPOINTS, bool)
        left_visible[17:] = False
        cv2.imwrite(str(directory / f'{index:08d}.jpg'), draw_hand_image([right, left], 320, 240))
        hands = [{'hand_pts': _points_json(points, vis), 'is_left': side,
                  'box': [float(v) for v in (*points.min(0), *points.max(0))]}
                 for points, vis, side in ((right, np.ones(NUM_KEYPOINTS, bool), 0),
                                           (left, left_visible, 1))]
        (directory / f'{index:08d}.json').write_text(
            json.dumps({'width': 320, 'height': 240, 'hands': hands}))
    return directory


def make_dataset(records, input_size=96, augment=None, seed=0):
    config = get_config('cpm-lite', input_size=input_size)
    codec = HeatmapCodec(input_size=input_size, stride=8, sigma=7.0)
    return data.HandCropDataset(records, codec, data.model_info_for(config, codec), augment, seed)


def source_pixels_per_crop_pixel(sample):
    return float(np.sqrt(abs(np.linalg.det(sample['crop_to_source'].numpy()[:, :2]))))


GEOMETRY_ONLY = AugmentConfig(color_prob=0, channel_swap_prob=0, grey_prob=0, blur_prob=0,
                              noise_prob=0, jpeg_prob=0, occlusion_prob=0, cutout_prob=0)

# ------------------------------------------------------------------------------------------


def test_synth_format_with_subdirectories(tmp_path):
    write_synth_dataset(tmp_path / 'synth2', 3, seed=1)
    write_synth_dataset(tmp_path / 'synth3', 2, seed=2)
    assert data.detect_format(tmp_path) == 'hand_labels_synth'
    records = data.load_records(tmp_path)
    assert len(records) == 5
    first = json.loads((tmp_path / 'synth2' / '00000000.json').read_text())
    assert np.allclose(records[0].keypoints, np.array(first['hand_pts'])[:, :2])
    assert records[0].visible.all() and records[0].image_path == tmp_path / 'synth2' / '00000000.jpg'
    assert [r.is_left for r in records[:3]] == [False, True, False]
    assert len({r.group for r in records}) == 5   # synth2/00000000 and synth3/00000000 differ


def test_manual_format_groups_by_video_and_drops_hands_without_enough_points(tmp_path):
    rng = np.random.default_rng(0)
    names = ['Ricki_unit_8.flv_000002_l', 'Ricki_unit_8.flv_000003_l', 'ex1_3.flv_000006_r',
             '036362775_01_l', '036362775_02_r']
    for name in names:
        write_cmu_sample(tmp_path, name, random_hand(rng), is_left=int(name.endswith('_l')))
    few = np.zeros(NUM_KEYPOINTS, bool)
    few[:3] = True
    write_cmu_sample(tmp_path, 'Berry_roof_story.flv_000053_l', random_hand(rng), visible=few)
    assert data.detect_format(tmp_path) == 'hand_labels'
    records = data.load_records(tmp_path)
    assert len(records) == 5          # the 3-visible-point hand is not usable
    groups = {r.image_path.stem: r.group for r in records}
    assert groups['Ricki_unit_8.flv_000002_l'] == groups['Ricki_unit_8.flv_000003_l'] == 'Ricki_unit_8.flv'
    assert groups['036362775_01_l'] == groups['036362775_02_r'] == '036362775'
    assert groups['ex1_3.flv_000006_r'] == 'ex1_3.flv'


def test_panoptic_format(tmp_path):
    write_panoptic_dataset(tmp_path, 3)
    assert data.detect_format(tmp_path) == 'hand143_panopticdb'
    records = data.load_records(tmp_path)
    entries = json.loads((tmp_path / data.PANOPTIC_JSON).read_text())['root']
    assert len(records) == 3
    assert records[2].image_path == tmp_path / 'imgs' / '00000002.jpg'
    assert np.allclose(records[2].keypoints, np.array(entries[2]['joint_self'])[:, :2])


def test_frame_format_gives_one_sample_per_hand(tmp_path):
    write_frame_dataset(tmp_path, 2)
    assert data.detect_format(tmp_path) == 'frame'
    records = data.load_records(tmp_path)
    assert len(records) == 4
    assert [r.is_left for r in records] == [False, True, False, True]
    assert records[1].visible.sum() == 17 and records[0].group == records[1].group


def test_format_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        data.detect_format(tmp_path / 'missing')
    with pytest.raises(ValueError, match='no hand annotations'):
        data.detect_format(tmp_path)
    write_synth_dataset(tmp_path, 1)
    with pytest.raises(ValueError, match='unknown data format'):
        data.load_records(tmp_path, 'coco')
    (tmp_path / '00000000.jpg').unlink()
    with pytest.raises(ValueError, match='no image'):
        data.load_records(tmp_path)


def test_split_keeps_every_group_on_one_side_and_is_deterministic():
    records = [data.HandRecord(Path(f'{video}_{frame}.jpg'), np.zeros((21, 2)), np.ones(21, bool),
                               False, f'video{video}')
               for video in range(60) for frame in range(5)]
    train, val = data.split_by_group(records, 0.2)
    train_groups, val_groups = {r.group for r in train}, {r.group for r in val}
    assert not train_groups & val_groups
    assert len(train) + len(val) == len(records) and 0.05 < len(val) / len(records) < 0.4
    again_train, again_val = data.split_by_group(list(reversed(records)), 0.2)
    assert {r.group for r in again_val} == val_groups
    with pytest.raises(ValueError, match='val_fraction'):
        data.split_by_group(records, 1.0)


def test_every_keypoint_map_is_supervised_and_decodes_back_to_source(tmp_path):
    write_synth_dataset(tmp_path, 2)
    dataset = make_dataset(data.load_records(tmp_path))
    sample = dataset[0]
    assert sample['image'].shape == (3, 96, 96) and sample['targets'].shape == (22, 12, 12)
    # The little finger (17..20) too: the article's body-pose mapping never supervised it.
    assert (sample['weights'] == 1).all()
    assert (sample['targets'][:21].amax(dim=(1, 2)) > 0.5).all()
    decoded, _ = dataset.codec.decode(sample['targets'].numpy(), sample['crop_to_source'].numpy())
    error = np.linalg.norm(decoded - sample['source_keypoints'].numpy(), axis=1)
    assert error.max() < 1.2 * source_pixels_per_crop_pixel(sample)   # a stride-8 map's precision


def test_augmented_sample_moves_the_drawn_joints_with_the_keypoints(tmp_path):
    write_synth_dataset(tmp_path, 1)
    records = data.load_records(tmp_path)
    dataset = make_dataset(records, input_size=128, augment=GEOMETRY_ONLY, seed=3)
    plain = make_dataset(records, input_size=128)
    flips = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        crop, affine, keypoints, is_left, _ = dataset.crop(0)
        flips.add(is_left)
        grey = crop.astype(np.float64).mean(axis=2)
        for x, y in keypoints:
            xi, yi = int(round(x)), int(round(y))
            if 1 <= xi < 127 and 1 <= yi < 127:
                assert grey[yi - 1:yi + 2, xi - 1:xi + 2].max() > 170   # the white joint dot
        sample = dataset[0]
        decoded, _ = dataset.codec.decode(sample['targets'].numpy(), sample['crop_to_source'].numpy())
        inside = sample['weights'][:21].numpy() > 0
        error = np.linalg.norm(decoded - records[0].keypoints, axis=1)[inside]
        assert error.max() < 1.2 * source_pixels_per_crop_pixel(sample)
    assert flips == {True, False}           # the mirror toggles handedness
    assert not np.allclose(dataset.crop(0)[2], plain.crop(0)[2])


def test_augmentation_is_reproducible_per_epoch_and_index(tmp_path):
    write_synth_dataset(tmp_path, 2)
    records = data.load_records(tmp_path)
    a = make_dataset(records, augment=AugmentConfig(), seed=5)
    b = make_dataset(records, augment=AugmentConfig(), seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert np.array_equal(a.crop(1)[0], b.crop(1)[0])
    b.set_epoch(3)
    assert not np.array_equal(a.crop(1)[0], b.crop(1)[0])


def test_loader_shuffles_every_epoch_and_resumes_mid_epoch(tmp_path):
    write_synth_dataset(tmp_path, 12)
    dataset = make_dataset(data.load_records(tmp_path), input_size=32)
    loader, sampler = data.make_loader(dataset, batch_size=4, shuffle=True, workers=0, seed=1)
    orders = []
    for epoch in range(2):
        sampler.set_position(epoch)
        orders.append(np.concatenate([batch['index'].numpy() for batch in loader]).tolist())
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(12))
    assert orders[0] != list(range(12)) and orders[0] != orders[1]
    sampler.set_position(1, start=4)
    assert list(sampler) == orders[1][4:] and len(sampler) == 8
    plain, plain_sampler = data.make_loader(dataset, 4, shuffle=False, workers=0, seed=1)
    plain_sampler.set_position(0)
    assert np.concatenate([b['index'].numpy() for b in plain]).tolist() == list(range(12))


def test_missing_image_is_a_clear_error(tmp_path):
    write_synth_dataset(tmp_path, 1)
    dataset = make_dataset(data.load_records(tmp_path))
    (tmp_path / '00000000.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(ValueError, match='cannot read image'):
        dataset[0]


def test_loader_workers_start_after_opencv_ran_in_the_trainer(tmp_path):
    """The trainer draws figures with OpenCV between epochs; the next epoch's forked workers
    used to hang on OpenCV's inherited thread pool."""
    write_synth_dataset(tmp_path, 6)
    dataset = make_dataset(data.load_records(tmp_path), input_size=32)
    loader, sampler = data.make_loader(dataset, batch_size=3, shuffle=True, workers=1, seed=0)
    seen = []
    for epoch in range(2):
        sampler.set_position(epoch)
        seen.append(sorted(np.concatenate([b['index'].numpy() for b in loader]).tolist()))
        cv2.resize(np.zeros((1500, 1500, 3), np.uint8), (700, 700))   # OpenCV work in the parent
        dataset.crop(0)
    assert seen == [list(range(6))] * 2


def test_hidden_keypoints_inside_the_image_are_used_only_when_asked(tmp_path):
    """Renders mark self-occluded joints hidden although their coordinates are exact: with
    use_hidden_keypoints they shape the crop and are supervised; off-image joints never are."""
    keypoints = hand_keypoints(120, 150, 80, 0.0)
    visible = np.ones(NUM_KEYPOINTS, bool)
    visible[17:] = False              # little finger hidden, inside the image
    keypoints[20] = (-40.0, 150.0)    # ... and its tip outside the image
    write_cmu_sample(tmp_path, '00000000', keypoints, visible)
    records = data.load_records(tmp_path)
    plain = make_dataset(records)
    with_hidden = data.HandCropDataset(records, plain.codec, plain.model_info,
                                       use_hidden_keypoints=True)
    weights_plain, weights_hidden = plain[0]['weights'].numpy(), with_hidden[0]['weights'].numpy()
    assert np.all(weights_plain[17:21] == 0) and np.all(weights_plain[:17] == 1)
    assert np.all(weights_hidden[17:20] == 1) and weights_hidden[20] == 0
    assert with_hidden[0]['visible'][17:].sum() == 0   # metrics still see the true visibility
