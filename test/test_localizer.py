"""Hand localiser, pure half: letterbox geometry for any image size (and shrunk further for the
wide pass), and the codec's encode -> decode round trip from boxes to maps and back to
source-pixel boxes, and the merge of the passes' boxes."""
from pathlib import Path

import numpy as np
import pytest

from hand_cpm_ros.geometry import apply_affine, invert_affine
from hand_cpm_ros.localizer import (Detection, LocalizerCodec, letterbox, letterbox_affine,
                                    localizer_backend_threads, merge_scales, prepare_frame)


def _logit(p):
    return np.log(p / (1 - p))


def _outputs_from_targets(codec, targets, heat_prob=0.95, left_prob=0.9):
    """Network-like outputs that say exactly what the targets say (peaks as logits)."""
    outputs = np.full((6,) + targets['heat'].shape[1:], -8.0, np.float32)
    peaks = targets['reg_mask'] > 0
    outputs[0] = np.where(targets['heat'][0] > 0.99, _logit(heat_prob),
                          _logit(np.clip(targets['heat'][0] * 0.5, 1e-4, 0.4)))
    outputs[1:3] = targets['size']
    outputs[3:5] = targets['offset']
    outputs[5] = np.where(targets['side'][0] > 0.5, _logit(left_prob), _logit(1 - left_prob))
    assert peaks.sum() >= 1
    return outputs


@pytest.mark.parametrize('size', [(640, 480), (480, 640), (1280, 720), (333, 217), (320, 256)])
def test_letterbox_maps_edges_and_centre(size):
    width, height = size
    affine, (rw, rh) = letterbox_affine(width, height, 320, 256)
    image_edges = np.array([[-0.5, -0.5], [width - 0.5, height - 0.5]])
    mapped = apply_affine(affine, image_edges)
    pad_x, pad_y = (320 - rw) // 2, (256 - rh) // 2
    np.testing.assert_allclose(mapped, [[pad_x - 0.5, pad_y - 0.5], [pad_x + rw - 0.5, pad_y + rh - 0.5]], atol=1e-9)
    assert rw <= 320 and rh <= 256 and (rw == 320 or rh == 256)


@pytest.mark.parametrize('size', [(640, 480), (480, 640), (1280, 720)])
def test_a_wide_pass_shrinks_the_frame_about_the_centre_and_boxes_map_back(size):
    width, height = size
    plain, _ = letterbox_affine(width, height, 320, 256)
    wide, (rw, rh) = letterbox_affine(width, height, 320, 256, zoom_out=1.6)
    np.testing.assert_allclose(wide[:, :2], plain[:, :2] / 1.6, rtol=0.01)   # 1.6 times smaller
    centre = apply_affine(wide, [[(width - 1) / 2, (height - 1) / 2]])[0]
    np.testing.assert_allclose(centre, [159.5, 127.5], atol=0.51)           # still in the middle
    assert rw < 320 / 1.5 and rh < 256 / 1.5
    box = np.array([[width * 0.1, height * 0.2], [width * 0.9, height * 0.95]])
    np.testing.assert_allclose(apply_affine(invert_affine(wide), apply_affine(wide, box)), box, atol=1e-9)
    image = np.full((height, width, 3), 255, np.uint8)
    shrunk, affine = letterbox(image, 320, 256, zoom_out=1.6)
    ys, xs = np.nonzero(shrunk[:, :, 0] > 127)
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (rw, rh)
    assert shrunk[0, 0, 0] == 114 and np.array_equal(affine, wide)          # grey padding around it
    for zoom_out in (0.5, 4.5):
        with pytest.raises(ValueError, match='zoom_out must be in'):
            letterbox_affine(width, height, 320, 256, zoom_out=zoom_out)


def test_letterbox_image_content_lands_where_the_affine_says():
    image = np.zeros((480, 640, 3), np.uint8)
    image[200:240, 400:440] = 255  # a 40x40 white square centred at (419.5, 219.5)
    boxed, affine = letterbox(image, 320, 256)
    assert boxed.shape == (256, 320, 3)
    ys, xs = np.nonzero(boxed[:, :, 0] > 127)
    centre = apply_affine(affine, [[419.5, 219.5]])[0]
    assert abs(xs.mean() - centre[0]) < 0.6 and abs(ys.mean() - centre[1]) < 0.6


@pytest.mark.parametrize('size', [(640, 480), (1280, 720), (300, 500)])
def test_encode_decode_round_trip_in_source_pixels(size):
    codec = LocalizerCodec()
    width, height = size
    source_boxes = np.array([[0.1 * width, 0.2 * height, 0.35 * width, 0.6 * height],
                             [0.6 * width, 0.5 * height, 0.9 * width, 0.95 * height]])
    frame = np.zeros((height, width, 3), np.uint8)
    _, input_to_source = prepare_frame(frame, codec)
    source_to_input = invert_affine(input_to_source)
    input_boxes = np.concatenate([apply_affine(source_to_input, source_boxes[:, :2]),
                                  apply_affine(source_to_input, source_boxes[:, 2:])], axis=1)
    targets = codec.encode(input_boxes, is_left=[1, 0])
    detections = codec.decode(_outputs_from_targets(codec, targets), input_to_source, (width, height),
                              score_threshold=0.5, max_hands=4)
    assert len(detections) == 2
    found = sorted(detections, key=lambda d: d.box[0])
    for detection, truth, side in zip(found, source_boxes, ['left', 'right']):
        np.testing.assert_allclose(detection.box, truth, atol=1e-3)
        assert detection.score == pytest.approx(0.95, abs=1e-4)
        assert detection.handedness == side and detection.handedness_score == pytest.approx(0.9, abs=1e-4)


@pytest.mark.parametrize('left_prob, expected', [(0.9, ('left', 0.9)), (0.1, ('right', 0.9)),
                                                 (0.6, (None, 0.0)), (0.4, (None, 0.0))])
def test_handedness_is_unknown_below_its_minimum_score(left_prob, expected):
    codec = LocalizerCodec()
    _, input_to_source = prepare_frame(np.zeros((256, 320, 3), np.uint8), codec)
    targets = codec.encode(np.array([[100.0, 60.0, 180.0, 160.0]]), is_left=[1])
    outputs = _outputs_from_targets(codec, targets)
    outputs[5] = _logit(left_prob)
    (detection,) = codec.decode(outputs, input_to_source, (320, 256), score_threshold=0.5,
                                min_handedness_score=0.75)
    assert (detection.handedness, round(detection.handedness_score, 4)) == expected


def test_empty_frame_gives_no_hands_and_max_hands_caps():
    codec = LocalizerCodec()
    _, input_to_source = prepare_frame(np.zeros((480, 640, 3), np.uint8), codec)
    empty = codec.encode(np.zeros((0, 4)))
    assert empty['heat'].max() == 0 and empty['reg_mask'].sum() == 0
    assert codec.decode(_outputs_with_no_hand(codec), input_to_source, (640, 480)) == []
    boxes = np.array([[10, 10, 60, 60], [100, 10, 150, 60], [200, 10, 250, 60]], float)
    outputs = _outputs_from_targets(codec, codec.encode(boxes))
    assert len(codec.decode(outputs, input_to_source, (640, 480), score_threshold=0.5, max_hands=2)) == 2


def _outputs_with_no_hand(codec):
    grid_w, grid_h = codec.grid_size()
    return np.full((6, grid_h, grid_w), -6.0, np.float32)


def test_targets_peak_at_one_per_hand_with_regression_only_at_centres():
    codec = LocalizerCodec(input_width=64, input_height=32, stride=4)
    targets = codec.encode(np.array([[10.0, 6.0, 30.0, 26.0]]), is_left=[None])
    assert targets['heat'].shape == (1, 8, 16)
    assert targets['heat'].max() == pytest.approx(1.0)
    assert targets['reg_mask'].sum() == 1 and targets['side_mask'].sum() == 0
    row, col = np.argwhere(targets['reg_mask'] > 0)[0]
    # centre (20, 16) in input pixels -> grid (4.625, 3.625) -> cell (5, 4), offset (-0.375, -0.375)
    assert (row, col) == (4, 5)
    np.testing.assert_allclose(targets['offset'][:, row, col], [-0.375, -0.375])
    np.testing.assert_allclose(targets['size'][:, row, col], np.log([5.0, 5.0]), rtol=1e-6)


def test_an_ignored_hand_gets_no_target_and_marks_its_cells_ignored():
    codec = LocalizerCodec(input_width=64, input_height=64, stride=4, regression_radius=1)
    boxes = np.array([[8.0, 8.0, 40.0, 40.0], [44.0, 30.0, 60.0, 62.0]])
    both = codec.encode(boxes, [1, 0])
    targets = codec.encode(boxes, [1, 0], ignored=[False, True])
    alone = codec.encode(boxes[:1], [1])
    for key in ('heat', 'size', 'offset', 'reg_mask', 'reg_weight', 'side', 'side_mask'):
        np.testing.assert_array_equal(targets[key], alone[key])   # the kept hand's targets only
    assert not both['heat_ignore'].any() and not alone['heat_ignore'].any()
    # the second hand: centre (52, 46) -> grid (12.625, 11.125) -> cell (13, 11); its cells are
    # ignored where its Gaussian (sigma 0.8 x 8/6 cells) reaches 0.1: up to 1.7 x 2.9 cells away
    rows, cols = np.nonzero(targets['heat_ignore'])
    assert set(rows) == set(range(9, 14)) and set(cols) == {12, 13, 14}
    assert targets['heat_ignore'][np.unravel_index(np.argmax(targets['heat'][0]), (16, 16))] == 0
    with pytest.raises(ValueError, match='one entry per box'):
        codec.encode(boxes, [1, 0], ignored=[True])


def test_neighbour_cells_learn_the_same_box_weighted_by_the_gaussian():
    box = np.array([100.0, 60.0, 180.0, 160.0])
    centre_only = LocalizerCodec().encode(box[None])
    np.testing.assert_array_equal(centre_only['reg_weight'], centre_only['reg_mask'])
    codec = LocalizerCodec(regression_radius=1)
    targets = codec.encode(box[None])
    rows, cols = np.nonzero(targets['reg_weight'])
    # centre (140, 110) -> grid (34.625, 27.125) -> centre cell (35, 27) and the 3x3 around it
    assert sorted(set(rows)) == [26, 27, 28] and sorted(set(cols)) == [34, 35, 36]
    assert len(rows) == 9 and targets['reg_mask'].sum() == 1
    heat = targets['heat'][0, rows, cols]
    np.testing.assert_allclose(targets['reg_weight'][rows, cols], heat / heat.sum(), rtol=1e-5)
    # decoding any supervised cell as if it were the peak gives the box back
    for row, col in zip(rows, cols):
        centre = (np.array([col, row]) + targets['offset'][:, row, col] + 0.5) * codec.stride - 0.5
        extent = np.exp(targets['size'][:, row, col]) * codec.stride
        np.testing.assert_allclose(np.concatenate([centre - extent / 2, centre + extent / 2]), box,
                                   atol=1e-4)


def test_a_cell_between_two_hands_learns_the_nearer_one():
    codec = LocalizerCodec(regression_radius=2)
    # two 40 px hands side by side, centres (120, 120) and (132, 120): cells (30, 30) and (33, 30)
    boxes = np.array([[100.0, 100.0, 140.0, 140.0], [112.0, 100.0, 152.0, 140.0]])
    targets = codec.encode(boxes)
    assert np.flatnonzero(targets['reg_weight'][30]).tolist() == list(range(28, 36))
    centres_x = (np.arange(28, 36) + targets['offset'][0, 30, 28:36] + 0.5) * codec.stride - 0.5
    np.testing.assert_allclose(centres_x, [120.0] * 4 + [132.0] * 4, atol=1e-4)
    # the first hand's weights were normalised over its whole 5x5; the second took two of its
    # columns, so together they sum to less than one per hand
    assert targets['reg_weight'].sum() < 2.0


def test_bad_inputs_are_refused_clearly():
    codec = LocalizerCodec()
    with pytest.raises(ValueError, match='multiple of the stride'):
        LocalizerCodec(input_width=322)
    with pytest.raises(ValueError, match='regression_radius must be 0, 1 or 2'):
        LocalizerCodec(regression_radius=3)
    with pytest.raises(ValueError, match='x1 > x0'):
        codec.encode(np.array([[5.0, 5.0, 5.0, 9.0]]))
    with pytest.raises(ValueError, match='shape'):
        codec.decode(np.zeros((6, 3, 3)), np.eye(2, 3), (640, 480))
    bad = _outputs_with_no_hand(codec)
    bad[0, 2, 2] = np.nan
    with pytest.raises(ValueError, match='non-finite'):
        codec.decode(bad, np.eye(2, 3), (640, 480))
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        letterbox(np.zeros((0, 10, 3), np.uint8), 320, 256)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        letterbox(np.zeros((10, 10), np.uint8), 320, 256)


def test_an_onnx_localiser_gets_its_own_thread_count_others_share_the_keypoint_backends():
    assert localizer_backend_threads(Path('models/hand_localizer.onnx'), 1, 4) == 1
    assert localizer_backend_threads(Path('runs/loc/best.pt'), 1, 4) == 4  # torch: process-wide
    assert localizer_backend_threads(Path('loc.engine'), 1, None) is None


def test_two_scales_merge_small_fine_boxes_into_the_coarse_ones():
    """In a 480-row frame with fine_max_height 0.3 (144 rows): every coarse box stays, a fine box
    counts only when shorter than 144 rows, and of two overlapping boxes the better one wins."""
    coarse = [Detection((100, 100, 200, 260), 0.9, 'left', 0.8),      # 160 rows: large
              Detection((400, 300, 440, 340), 0.4)]                   # small, found weakly
    fine = [Detection((102, 98, 198, 262), 0.95),                     # the large hand again: too tall
            Detection((401, 301, 441, 339), 0.7, 'right', 0.9),       # the small hand, surer
            Detection((20, 20, 44, 50), 0.5),                         # a small hand only it finds
            Detection((300, 0, 400, 143.9), 0.3)]                     # just under 144 rows
    merged = merge_scales(coarse, fine, 480, fine_max_height=0.3, max_hands=8)
    assert merged == [coarse[0], fine[1], fine[2], fine[3]]           # best first; coarse[1] suppressed
    assert merge_scales(coarse, fine, 480, fine_max_height=0.3, max_hands=2) == [coarse[0], fine[1]]
    # a taller allowance lets the fine copy of the large hand replace the coarse one (it scores more)
    assert merge_scales(coarse, fine, 480, fine_max_height=0.5, max_hands=1) == [fine[0]]
    assert merge_scales(coarse, [], 480) == coarse                     # no fine boxes: the coarse answer
    assert merge_scales([], fine[1:2], 480) == fine[1:2]
    assert merge_scales([], [], 480) == []
    # two boxes overlapping by exactly nms_iou are two hands; by more, one
    half = [Detection((0, 0, 20, 20), 0.8), Detection((0, 0, 20, 40), 0.7)]   # IoU 0.5
    assert len(merge_scales(half[:1], half[1:], 480, nms_iou=0.5)) == 2
    assert len(merge_scales(half[:1], half[1:], 480, nms_iou=0.49)) == 1


def test_a_wide_pass_adds_only_its_tall_boxes():
    """In a 480-row frame with wide_min_height 0.25 (120 rows): a wide box counts only from 120
    rows up; a tall one found surer than the coarse pass's box for the same hand replaces it."""
    coarse = [Detection((100, 200, 300, 470), 0.3),                   # a frame-filling hand, weakly
              Detection((500, 50, 530, 90), 0.6)]                     # a small hand
    wide = [Detection((90, 60, 310, 479), 0.8),                       # the large hand, whole and surer
            Detection((498, 48, 532, 92), 0.9),                       # the small hand: too short to count
            Detection((0, 0, 100, 120), 0.5)]                         # exactly 120 rows: counts
    merged = merge_scales(coarse, [], 480, wide=wide, wide_min_height=0.25, max_hands=8)
    assert merged == [wide[0], coarse[1], wide[2]]                    # coarse[0] suppressed by wide[0]
    assert merge_scales(coarse, [], 480, wide=[]) == sorted(coarse, key=lambda d: -d.score)
