"""The heatmap codec: exact target values, exact round trips, cv2-identical scores, source mapping."""
import json

import cv2
import numpy as np
import pytest

from hand_cpm_ros.codec import HeatmapCodec, cubic_upsample_matrix
from hand_cpm_ros.geometry import apply_affine, crop_to_source_affine
from hand_cpm_ros.keypoints import BACKGROUND, NUM_KEYPOINTS

ALL_VISIBLE = np.ones(NUM_KEYPOINTS, bool)


def random_keypoints(rng, size, margin=-0.5):
    return rng.uniform(margin, size - 1 - margin, (NUM_KEYPOINTS, 2))


def test_encode_peak_and_background_values_exact():
    codec = HeatmapCodec(input_size=64, stride=8, sigma=4.0)
    keypoints = np.full((NUM_KEYPOINTS, 2), 27.5)   # cell 3's centre: 3 * 8 + 3.5
    keypoints[1] = (11.5, 43.5)                     # cell (row 5, col 1)
    targets, weights = codec.encode(keypoints, ALL_VISIBLE)
    assert targets.shape == (22, 8, 8) and targets.dtype == np.float32
    assert targets[0, 3, 3] == 1.0 and targets[1, 5, 1] == 1.0
    assert targets[0, 3, 4] == pytest.approx(np.exp(-64 / 32))           # one cell = 8 px away
    assert targets[0, 4, 4] == pytest.approx(np.exp(-128 / 32))
    assert targets[BACKGROUND, 3, 3] == 0.0
    assert targets[BACKGROUND, 0, 7] == pytest.approx(1 - targets[:NUM_KEYPOINTS, 0, 7].max())
    np.testing.assert_array_equal(weights, np.ones(22, np.float32))


def test_invisible_and_out_of_crop_keypoints_get_zero_map_and_weight():
    codec = HeatmapCodec(input_size=64, stride=8, sigma=4.0)
    keypoints = np.full((NUM_KEYPOINTS, 2), 30.0)
    keypoints[2] = (np.nan, np.nan)
    keypoints[3] = (64.0, 10.0)     # past the crop's outer edge 63.5
    keypoints[4] = (-0.5, 63.5)     # exactly on the edge: still inside
    visible = ALL_VISIBLE.copy()
    visible[[2, 5]] = False
    targets, weights = codec.encode(keypoints, visible)
    for index in (2, 3, 5):
        assert weights[index] == 0.0 and not targets[index].any()
    assert weights[4] == 1.0 and targets[4].max() > 0
    assert weights[BACKGROUND] == 1.0


@pytest.mark.parametrize('input_size, stride, sigma', [(368, 8, 7.0), (256, 8, 5.0), (192, 8, 4.0),
                                                       (184, 8, 3.0), (128, 4, 2.0)])
def test_round_trip_recovers_subpixel_keypoints(input_size, stride, sigma):
    codec = HeatmapCodec(input_size, stride, sigma)
    rng = np.random.default_rng(input_size + stride)
    for _ in range(20):
        keypoints = random_keypoints(rng, input_size)
        targets, _ = codec.encode(keypoints, ALL_VISIBLE)
        decoded, scores = codec.decode(targets)
        assert np.linalg.norm(decoded - keypoints, axis=1).max() < 0.5
        assert np.all(scores > 0.1) and np.all(scores <= 1.0)
    np.testing.assert_allclose(decoded, keypoints, atol=1e-3)  # in fact exact, up to float32 targets


def test_upsample_matrix_equals_cv2_resize_and_score_is_its_value():
    codec = HeatmapCodec(368, 8, 7.0)
    rng = np.random.default_rng(3)
    belief = rng.random((46, 46)).astype(np.float32)
    upsample = cubic_upsample_matrix(46, 8)
    full = cv2.resize(belief, (368, 368), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_allclose(upsample @ belief @ upsample.T, full, atol=1e-5)

    keypoints = random_keypoints(rng, 368, margin=10)
    targets, _ = codec.encode(keypoints, ALL_VISIBLE)
    targets[:NUM_KEYPOINTS] += 0.02 * rng.random(targets[:NUM_KEYPOINTS].shape).astype(np.float32)
    decoded, scores = codec.decode(targets)
    for index in range(NUM_KEYPOINTS):
        upsampled = cv2.resize(targets[index], (368, 368), interpolation=cv2.INTER_CUBIC)
        x, y = np.rint(decoded[index]).astype(int)
        assert scores[index] == pytest.approx(min(1.0, upsampled[y, x]), abs=1e-5)
        # brute-force OpenPose decode (whole-map resize + argmax): same place within its bias
        peak_y, peak_x = np.unravel_index(upsampled.argmax(), upsampled.shape)
        assert np.abs(decoded[index] - (peak_x, peak_y)).max() <= 1.0


def test_decode_maps_through_crop_to_source_and_batches():
    codec = HeatmapCodec(256, 8, 5.0)
    rng = np.random.default_rng(7)
    keypoints = [random_keypoints(rng, 256, margin=5) for _ in range(3)]
    maps = np.stack([codec.encode(points, ALL_VISIBLE)[0] for points in keypoints])
    affines = [crop_to_source_affine(300 + 10 * i, 200.0, 128.0, 256) for i in range(3)]
    decoded, scores = codec.decode_batch(maps, affines)
    assert decoded.shape == (3, NUM_KEYPOINTS, 2) and scores.shape == (3, NUM_KEYPOINTS)
    for i in range(3):
        expected = apply_affine(affines[i], keypoints[i])   # half-size square: source = 236 + i*10 + crop / 2
        np.testing.assert_allclose(decoded[i], expected, atol=1e-3)
        np.testing.assert_allclose(expected[:, 0], 300 + 10 * i - 64 + (keypoints[i][:, 0] + 0.5) / 2, atol=1e-9)
    single, single_scores = codec.decode(maps[1, :NUM_KEYPOINTS], affines[1])
    np.testing.assert_allclose(single, decoded[1])
    np.testing.assert_allclose(single_scores, scores[1])


def test_empty_map_decodes_to_zero_score():
    codec = HeatmapCodec(64, 8, 4.0)
    keypoints, scores = codec.decode(np.zeros((22, 8, 8), np.float32))
    np.testing.assert_array_equal(scores, np.zeros(NUM_KEYPOINTS))
    np.testing.assert_array_equal(keypoints, np.full((NUM_KEYPOINTS, 2), 3.5))


def test_bad_input_raises():
    codec = HeatmapCodec(64, 8, 4.0)
    maps = np.zeros((22, 8, 8), np.float32)
    maps[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match='non-finite'):
        codec.decode(maps)
    with pytest.raises(ValueError, match=r'\(N, >=21, 8, 8\)'):
        codec.decode(np.zeros((22, 9, 9)))
    with pytest.raises(ValueError, match='one crop_to_source affine per sample'):
        codec.decode_batch(np.zeros((2, 22, 8, 8)), [np.eye(2, 3)])
    with pytest.raises(ValueError, match='non-finite coordinates'):
        codec.encode(np.full((21, 2), np.inf), ALL_VISIBLE)
    with pytest.raises(ValueError, match='multiple of stride'):
        HeatmapCodec(100, 8)
    with pytest.raises(ValueError, match='sigma'):
        HeatmapCodec(64, 8, 0.0)


def test_dict_round_trip_is_json_safe():
    codec = HeatmapCodec(192, 8, 3.5)
    stored = json.loads(json.dumps(codec.to_dict()))
    assert HeatmapCodec.from_dict(stored) == codec
    assert HeatmapCodec.from_dict({'input_size': '256', 'stride': '8', 'sigma': '5.0'}) == HeatmapCodec(256, 8, 5.0)
    with pytest.raises(ValueError, match='exactly the keys'):
        HeatmapCodec.from_dict({'input_size': 368})
