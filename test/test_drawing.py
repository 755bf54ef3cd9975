"""Drawing: bone colours at known pixels, skipped keypoints, heat overlay placement, grid sizes."""
import cv2
import numpy as np
import pytest

from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.drawing import (belief_map_grid, colorize_maps, contact_sheet, detection_close_up, draw_hand,
                                  keypoint_close_up, overlay_heatmap)
from hand_cpm_ros.geometry import apply_affine, crop_to_source_affine
from hand_cpm_ros.keypoints import FINGER_COLORS_BGR, NUM_KEYPOINTS


def upright_hand() -> np.ndarray:
    """Five vertical fingers at x = 20, 60, ..., 180 (tips at y = 60), the wrist at (100, 190)."""
    points = np.zeros((NUM_KEYPOINTS, 2))
    points[0] = (100, 190)
    for finger in range(5):
        for joint, y in enumerate((150, 120, 90, 60)):
            points[1 + 4 * finger + joint] = (20 + 40 * finger, y)
    return points


def test_bones_have_their_finger_colour():
    image = draw_hand(np.zeros((200, 200, 3), np.uint8), upright_hand(), thickness=2)
    for finger in range(5):
        x = 20 + 40 * finger
        assert tuple(image[105, x]) == FINGER_COLORS_BGR[finger]     # between PIP (120) and DIP (90)
        assert tuple(image[60, x]) == FINGER_COLORS_BGR[finger]      # the tip's dot
        assert not image[105, x + 10].any()                          # beside the bone: background
    assert tuple(image[190, 100]) == FINGER_COLORS_BGR[0]            # the wrist dot


def test_low_score_and_invisible_keypoints_are_skipped():
    scores = np.full(NUM_KEYPOINTS, 0.9)
    scores[8] = 0.1                                                  # index tip
    image = draw_hand(np.zeros((200, 200, 3), np.uint8), upright_hand(), scores, threshold=0.5)
    assert not image[60, 60].any() and not image[75, 60].any()      # no tip dot, no DIP-tip bone
    assert tuple(image[105, 60]) == FINGER_COLORS_BGR[1]
    visible = np.ones(NUM_KEYPOINTS, bool)
    visible[13:17] = False                                           # the ring finger
    image = draw_hand(np.zeros((200, 200, 3), np.uint8), upright_hand(), visible)
    assert not image[50:160, 135:145].any()
    assert tuple(image[105, 180]) == FINGER_COLORS_BGR[4]


def test_label_and_bad_image():
    plain = draw_hand(np.zeros((200, 200, 3), np.uint8), upright_hand())
    labelled = draw_hand(np.zeros((200, 200, 3), np.uint8), upright_hand(), label='R 0.93 #4')
    changed = np.argwhere(np.any(plain != labelled, axis=2))
    assert len(changed) > 20 and changed[:, 0].max() < 190           # above the wrist
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        draw_hand(np.zeros((10, 10), np.uint8), upright_hand())


def test_overlay_is_placed_in_source_frame_and_leaves_zero_heat_alone():
    codec = HeatmapCodec(64, 8, 4.0)
    keypoints = np.full((NUM_KEYPOINTS, 2), np.nan)
    keypoints[0] = (20.0, 40.0)
    visible = np.zeros(NUM_KEYPOINTS, bool)
    visible[0] = True
    maps, _ = codec.encode(keypoints, visible)
    crop_to_source = crop_to_source_affine(200.0, 100.0, 128.0, 64)
    source = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    before = source.copy()
    result = overlay_heatmap(source, maps, crop_to_source, alpha=0.8)
    assert result is source and result.shape == (240, 320, 3)
    peak_x, peak_y = np.rint(apply_affine(crop_to_source, keypoints[:1])[0]).astype(int)
    difference = np.abs(result.astype(int) - before).sum(axis=2)
    assert difference[peak_y, peak_x] > 0
    assert np.array_equal(result[:, :130], before[:, :130])        # left of the crop (x >= 135.5)
    far_from_peak = np.hypot(*np.meshgrid(np.arange(320) - peak_x, np.arange(240) - peak_y)) > 60
    assert np.array_equal(result[far_from_peak], before[far_from_peak])


@pytest.mark.parametrize('cx, cy, side, angle', [(40.0, 30.0, 200.0, 0.0), (300.0, 200.0, 90.0, 0.7),
                                                 (630.0, 470.0, 300.0, 2.0)])
def test_overlay_heatmap_matches_a_whole_image_warp(cx, cy, side, angle):
    """Only the crop's footprint is warped: the result is the whole-image warp's (up to
    OpenCV's fixed-point sampling), including crops cut by the border and rotated ones."""
    maps = np.random.default_rng(1).random((22, 24, 24)).astype(np.float32)
    crop_to_source = crop_to_source_affine(cx, cy, side, 192)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    crop_to_source = np.hstack([rotation @ crop_to_source[:, :2], crop_to_source[:, 2:]])
    source = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    map_to_source = crop_to_source @ np.array([[8.0, 0.0, 3.5], [0.0, 8.0, 3.5], [0.0, 0.0, 1.0]])
    heat = np.clip(cv2.warpAffine(np.clip(maps[:NUM_KEYPOINTS].max(axis=0), 0, 1), map_to_source,
                                  (640, 480), flags=cv2.INTER_LINEAR), 0.0, 1.0)[..., None]
    jet = cv2.applyColorMap(np.round(heat[..., 0] * 255).astype(np.uint8), cv2.COLORMAP_JET)
    expected = np.round(source * (1 - 0.6 * heat) + jet * 0.6 * heat)
    result = overlay_heatmap(source.copy(), maps, crop_to_source, alpha=0.6)
    assert np.abs(result.astype(int) - expected).max() <= 3
    assert not np.array_equal(result, source)


def test_colorize_maps_ignores_background():
    maps = np.zeros((22, 8, 8), np.float32)
    maps[21] = 1.0
    colour = colorize_maps(maps, (40, 30))
    assert colour.shape == (30, 40, 3)
    zero = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_JET)[0, 0]
    assert np.all(colour == zero)
    maps[5, 4, 4] = 1.0
    assert not np.all(colorize_maps(maps, (40, 30)) == zero)


def test_contact_sheet_and_belief_map_grid_shapes():
    images = [np.full((20, 40, 3), 255, np.uint8)] + [np.zeros((30, 30), np.uint8)] * 4
    sheet = contact_sheet(images, columns=3, cell_size=(40, 30), labels=None)
    assert sheet.shape == (60, 120, 3)
    assert np.all(sheet[5:25, 0:40] == 255) and not sheet[0:5, 0:40].any()  # letterboxed 40x20 in 40x30
    assert not sheet[30:60, 80:120].any()                                    # the empty sixth cell
    grid = belief_map_grid(np.random.default_rng(0).random((22, 8, 8)), np.zeros((64, 64, 3), np.uint8), cell=32)
    assert grid.shape == (4 * 32, 6 * 32, 3)
    with pytest.raises(ValueError, match='at least one image'):
        contact_sheet([], 3, 10)


def test_detection_close_up_zooms_on_the_box_and_colours_truth_and_detections():
    image = np.full((240, 320, 3), 90, np.uint8)
    image[100:150, 200:240] = 250                      # a bright patch: the hand of the focus box
    truth = np.array([[199.5, 99.5, 239.5, 149.5]])    # its outer pixel edges
    detections = np.array([[190.0, 95.0, 250.0, 155.0], [210.0, 110.0, 230.0, 140.0]])
    tile = detection_close_up(image, truth[0], truth, detections, [0.8, 0.2], score_threshold=0.5, size=160)
    assert tile.shape == (160, 160, 3)
    # the 50 px box times 1.6 fills the tile: 2 tile pixels per image pixel, the box's centre at the
    # tile's centre; so the truth box's edges lie at tile x 40 and 120, y 30 and 130, the 0.8
    # detection's top at y 21 and the 0.2 detection's at y 51 (x 61..101)
    assert np.all(tile[70:100, 70:90] == 250) and np.all(tile[5:15, 5:15] == 90)
    green = (tile[:, :, 1] > 150) & (tile[:, :, 2] < 100) & (tile[:, :, 0] < 100)
    assert green[29:32, 50:110].any(axis=0).all() and green[129:132, 50:110].any(axis=0).all()
    assert not green[35:125, 45:115].any()
    red = (tile[:, :, 2] > 150) & (tile[:, :, 1] < 100)
    orange = (tile[:, :, 2] > 150) & (tile[:, :, 1] > 120) & (tile[:, :, 1] < 200) & (tile[:, :, 0] < 60)
    assert red[20:23, 50:110].any(axis=0).all()        # the 0.8 box is red
    assert orange[50:53, 70:90].any(axis=0).all()      # the 0.2 box is orange: below 0.5
    assert not red[30:130, 50:110].any()
    with pytest.raises(ValueError, match='x1 > x0'):
        detection_close_up(image, (10, 10, 5, 20), truth, detections, [0.8, 0.2], 0.5)


def test_keypoint_close_up_draws_the_truth_in_white_under_the_prediction():
    image = np.full((200, 200, 3), 40, np.uint8)
    truth = np.stack([np.linspace(60, 140, 21), np.full(21, 100.0)], axis=1)   # a flat line of joints
    visible = np.ones(21, bool)
    shifted = truth + [0.0, 30.0]                                                # the prediction: 30 px lower
    tile = keypoint_close_up(image, truth, visible, shifted, size=160)
    assert tile.shape == (160, 160, 3)
    # the box around the truth (80 x 0 px, +4 px each side: 88 px long) times 1.4 fills the tile:
    # the truth runs along the tile's middle row, the prediction 30 x 160 / 123.2 = 39 px below
    white = np.all(tile >= 230, axis=2)
    assert white[78:83, 30:130].any(axis=0).all() and not white[110:125].any()
    coloured = (tile.max(axis=2) - tile.min(axis=2)) > 100
    assert coloured[115:124, 30:130].any(axis=0).all() and not coloured[70:90, 30:130].any()
    with pytest.raises(ValueError, match='at least one visible'):
        keypoint_close_up(image, truth, np.zeros(21, bool), shifted)
