"""Crop geometry: the pixel-centre convention, inverse pairs, warps and box helpers, by value."""
import cv2
import numpy as np
import pytest

from hand_cpm_ros.geometry import (apply_affine, box_containment_matrix, box_from_keypoints, box_iou,
                                   box_iou_matrix, clip_box, compose_affine, crop_affine,
                                   crop_to_source_affine, invert_affine, source_to_crop_affine,
                                   square_crop, warp_crop)


def test_square_crop_centres_box_and_adds_margin():
    assert square_crop((10, 20, 30, 60), margin=0.25) == (20.0, 40.0, 60.0)
    assert square_crop([5, 5, 5, 5], margin=0.5, min_side=8) == (5.0, 5.0, 8.0)


def test_crop_edges_map_to_square_edges():
    to_source = crop_to_source_affine(50.0, 60.0, 200.0, 100)
    corners = apply_affine(to_source, [[-0.5, -0.5], [99.5, 99.5], [49.5, 49.5]])
    np.testing.assert_allclose(corners, [[-50.0, -40.0], [150.0, 160.0], [50.0, 60.0]], atol=1e-12)
    # one crop pixel spans side / out_size = 2 source pixels
    np.testing.assert_allclose(apply_affine(to_source, [[0.0, 0.0]]), [[-49.0, -39.0]], atol=1e-12)


def test_source_to_crop_is_the_inverse():
    forward = source_to_crop_affine(12.3, -4.5, 77.0, 368)
    backward = crop_to_source_affine(12.3, -4.5, 77.0, 368)
    points = np.random.default_rng(0).uniform(-100, 400, (10, 2))
    np.testing.assert_allclose(apply_affine(backward, apply_affine(forward, points)), points, atol=1e-9)
    np.testing.assert_allclose(invert_affine(forward), backward, atol=1e-12)
    np.testing.assert_allclose(compose_affine(forward, backward), [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_rotation_matches_opencv_and_keeps_centre():
    affine = crop_affine(100.0, 80.0, 50.0, 50, rotation_deg=30.0)
    reference = cv2.getRotationMatrix2D((100.0, 80.0), 30.0, 1.0)
    np.testing.assert_allclose(affine[:, :2], reference[:, :2], atol=1e-12)
    np.testing.assert_allclose(apply_affine(affine, [[100.0, 80.0]]), [[24.5, 24.5]], atol=1e-12)
    # a point right of the centre moves up in the crop for a counter-clockwise turn
    point = apply_affine(affine, [[110.0, 80.0]])[0]
    np.testing.assert_allclose(point, [24.5 + 10 * np.cos(np.pi / 6), 24.5 - 10 * np.sin(np.pi / 6)], atol=1e-12)


def test_warp_crop_samples_source_positions_and_pads():
    height, width = 60, 80
    image = np.broadcast_to(np.arange(width, dtype=np.float32), (height, width)).copy()  # value = x
    cx, cy, side, size = 40.0, 30.0, 20.0, 40
    crop = warp_crop(image, source_to_crop_affine(cx, cy, side, size), size, border_value=(-1,))
    source = apply_affine(crop_to_source_affine(cx, cy, side, size), [[u, 7.0] for u in range(size)])
    np.testing.assert_allclose(crop[7], source[:, 0], atol=1e-3)
    outside = warp_crop(image, source_to_crop_affine(-50.0, 30.0, 20.0, 8), 8, border_value=(-1,))
    assert np.all(outside == -1)
    color = warp_crop(np.zeros((10, 10, 3), np.uint8), source_to_crop_affine(-20, -20, 4, 4), 4)
    assert color.shape == (4, 4, 3) and np.all(color == 114)


def test_boxes_from_keypoints_clip_and_iou():
    points = np.array([[10.0, 5.0], [30.0, 25.0], [500.0, -3.0]])
    assert box_from_keypoints(points, [True, True, False]) == (10.0, 5.0, 30.0, 25.0)
    assert box_from_keypoints(points) == (10.0, -3.0, 500.0, 25.0)
    assert clip_box((-10, -3, 700, 25), 640, 480) == (-0.5, -0.5, 639.5, 25.0)
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    matrix = box_iou_matrix([[0, 0, 2, 2], [0, 0, 1, 1]], [[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 5, 5]])
    np.testing.assert_allclose(matrix, [[1.0, 1 / 7, 0.0], [0.25, 0.0, 0.0]])
    assert box_iou_matrix([], [[0, 0, 1, 1]]).shape == (0, 1)


def test_containment_is_one_for_a_box_inside_another_whatever_the_sizes():
    big, inside, half_out, apart, empty = ([0, 0, 10, 10], [2, 2, 4, 4], [8, 0, 12, 2],
                                           [20, 20, 30, 30], [5, 5, 5, 5])
    matrix = box_containment_matrix([inside, half_out, apart, empty], [big])
    np.testing.assert_allclose(matrix[:, 0], [1.0, 0.5, 0.0, 0.0])
    assert box_iou_matrix([inside], [big])[0, 0] == pytest.approx(0.04)  # what IoU says of it
    np.testing.assert_allclose(box_containment_matrix([big], [inside, half_out]), [[1.0, 0.5]])
    assert box_containment_matrix([], [big]).shape == (0, 1)


@pytest.mark.parametrize('call, message', [
    (lambda: square_crop((0, 0, float('nan'), 1)), 'non-finite'),
    (lambda: square_crop((5, 0, 1, 1)), 'x1 >= x0'),
    (lambda: crop_affine(0, 0, 0.0, 10), 'side must be > 0'),
    (lambda: crop_affine(0, 0, 10, 0), 'out_size'),
    (lambda: invert_affine(np.zeros((2, 3))), 'singular'),
    (lambda: apply_affine(np.eye(2, 3), [1.0, 2.0]), r'\(N, 2\)'),
    (lambda: box_from_keypoints(np.zeros((21, 2)), np.zeros(21, bool)), 'no visible keypoints'),
    (lambda: clip_box((0, 0, 1, 1), 0, 10), 'at least 1x1'),
])
def test_degenerate_input_raises_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
