"""HandPipeline without ROS: crop -> one batched inference (real ONNX Runtime on the fixed-peaks
TEST MODEL) -> decode -> source pixels, proposal merging, tracking, drops, the localiser seam."""
import sys
from pathlib import Path

import numpy as np
import pytest

from hand_cpm_ros.backends import create_backend
from hand_cpm_ros.geometry import apply_affine, crop_to_source_affine, square_crop
from hand_cpm_ros.localizer import Detection
from hand_cpm_ros.pipeline import (MIN_SIDE_CALL_KEYPOINT_CONFIDENCE, BoxSource, FrameResult, Handedness,
                                   HandPipeline, backproject_keypoints, default_model_path, draw_result)

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_peaks_model import (TEST_INPUT_SIZE, TEST_KEYPOINTS_CROP,  # noqa: E402
                               build_fixed_peaks_model)


@pytest.fixture(scope='module')
def backend(tmp_path_factory):
    path = build_fixed_peaks_model(tmp_path_factory.mktemp('model') / 'fixed_peaks_test.onnx')
    return create_backend('onnxruntime', str(path), threads=1)


class CountingBackend:
    """Delegates to the real backend and records the batch size of every infer call."""

    def __init__(self, inner):
        self.inner, self.info, self.batches = inner, inner.info, []

    def infer_with_handedness(self, batch, flip_averaging=False):
        self.batches.append(len(batch))
        return self.inner.infer_with_handedness(batch, flip_averaging)

    def describe(self):
        return self.inner.describe()


class FixedBoxesLocalizer:
    """Test double of a hand localiser: returns the detections it was given and records whether
    each call asked for one pass only."""

    def __init__(self, detections):
        self.detections = detections
        self.one_pass_calls: list[bool] = []

    def detect(self, image_bgr, one_pass=False):
        self.one_pass_calls.append(one_pass)
        return list(self.detections)


def grey(width=640, height=480):
    return np.full((height, width, 3), 128, np.uint8)


def expected_keypoints(box, margin=0.25):
    cx, cy, side = square_crop(box, margin)
    return apply_affine(crop_to_source_affine(cx, cy, side, TEST_INPUT_SIZE), TEST_KEYPOINTS_CROP)


def test_roi_gives_keypoints_in_source_pixels(backend):
    box = (100.0, 100.0, 220.0, 240.0)
    result = HandPipeline(backend).process(grey(), rois=[box], stamp=1.0)
    assert result.image_size == (640, 480) and result.num_crops == 1
    (hand,) = result.hands
    np.testing.assert_allclose(hand.keypoints, expected_keypoints(box), atol=0.5)
    # independent of the crop maths: middle_mcp sits on the crop centre = the ROI's centre
    np.testing.assert_allclose(hand.keypoints[9], (160.0, 170.0), atol=0.5)
    assert hand.scores.shape == (21,) and hand.scores.min() > 0.9
    assert hand.score == pytest.approx(hand.scores.mean())
    x0, y0, x1, y1 = hand.box
    np.testing.assert_allclose((x0, y0, x1, y1), (*hand.keypoints.min(0), *hand.keypoints.max(0)),
                               atol=1e-9)
    assert (hand.handedness, hand.handedness_score, hand.source) == (Handedness.UNKNOWN, 0.0, 'roi')
    assert hand.track_id == 1 and hand.maps.shape == (22, 16, 16) and hand.keypoints_3d is None
    assert set(result.timings) == {'crop', 'infer', 'decode', 'track', 'total'}


def test_all_crops_of_a_frame_go_in_one_inference(backend):
    counting = CountingBackend(backend)
    pipeline = HandPipeline(counting, max_hands=3)
    boxes = [(20.0, 20.0, 120.0, 120.0), (300.0, 200.0, 420.0, 320.0), (500.0, 50.0, 600.0, 150.0)]
    result = pipeline.process(grey(), rois=boxes)
    assert counting.batches == [3]
    assert sorted(h.track_id for h in result.hands) == [1, 2, 3]
    found = sorted(tuple(np.round(h.keypoints[9], 3)) for h in result.hands)
    assert found == sorted(tuple(np.round(expected_keypoints(b)[9], 3)) for b in boxes)


def test_overlapping_proposals_are_merged_and_capped(backend):
    counting = CountingBackend(backend)
    pipeline = HandPipeline(counting, max_hands=2)
    boxes = [(100.0, 100.0, 200.0, 200.0), (102.0, 101.0, 202.0, 203.0),  # the same hand twice
             (300.0, 100.0, 400.0, 200.0), (500.0, 300.0, 600.0, 400.0)]
    result = pipeline.process(grey(), rois=boxes)
    assert counting.batches == [2] and len(result.hands) == 2
    centres = sorted(tuple(np.round(h.keypoints[9])) for h in result.hands)
    assert centres == [(150.0, 150.0), (350.0, 150.0)]


def test_a_box_nested_in_a_larger_one_is_the_same_hand(backend):
    counting = CountingBackend(backend)
    pipeline = HandPipeline(counting, max_hands=2)
    big, inside = (100.0, 100.0, 260.0, 260.0), (150.0, 150.0, 190.0, 200.0)  # IoU 0.08
    result = pipeline.process(grey(), rois=[big, inside])
    assert counting.batches == [1] and len(result.hands) == 1


def test_track_shrunk_inside_a_larger_localiser_box_regrows_to_it(backend):
    localizer = FixedBoxesLocalizer([])
    # the localiser on every frame (the default interval would skip the frame that regrows)
    pipeline = HandPipeline(backend, localizer=localizer, localizer_interval=1)
    # a track on part of a hand (as after its keypoints collapsed onto a finger)
    (part,) = pipeline.process(grey(), rois=[(150.0, 150.0, 190.0, 190.0)], stamp=0.0).hands
    hand_box = (110.0, 120.0, 250.0, 260.0)
    localizer.detections = [Detection(hand_box, 0.6, None, 0.0)]
    (hand,) = pipeline.process(grey(), stamp=0.033).hands
    # the track (evidence ~1 > 0.6) keeps its id and is cropped from the localiser's box
    assert (hand.source, hand.track_id) == ('track', part.track_id)
    np.testing.assert_allclose(hand.keypoints, expected_keypoints(hand_box), atol=0.5)
    # a localiser box not much larger than the track's own, or one apart from it, leaves its crop
    ((track_box, _, _),) = pipeline.tracker.proposals(0.066)
    x0, y0, x1, y1 = track_box
    for other in [(x0 - 2, y0 - 2, x1 + 2, y1 + 2), (400.0, 100.0, 600.0, 300.0)]:
        localizer.detections = [Detection(other, 0.6, None, 0.0)]
        proposals = pipeline.proposals(grey(), [], pipeline.settings, FrameResult([], (640, 480), 0.066),
                                       0.066)
        assert [(p.source, p.box, p.regrown_track) for p in proposals if p.source == 'track'] == \
            [('track', track_box, None)]


def test_track_continues_without_roi_and_keeps_its_id(backend):
    pipeline = HandPipeline(backend)
    first = pipeline.process(grey(), rois=[(100.0, 100.0, 220.0, 240.0)], stamp=0.0)
    previous = first
    for step in range(1, 4):
        result = pipeline.process(grey(), stamp=0.033 * step)
        (hand,) = result.hands
        assert hand.source == 'track' and hand.track_id == first.hands[0].track_id
        # the new crop is the square around the last confident keypoints: check the mapping
        np.testing.assert_allclose(hand.keypoints, expected_keypoints(previous.hands[0].box),
                                   atol=0.5)
        previous = result


def test_without_tracking_ids_are_new_every_frame_and_never_reused(backend):
    pipeline = HandPipeline(backend, tracking=False)
    box = (100.0, 100.0, 220.0, 240.0)
    ids = [pipeline.process(grey(), rois=[box]).hands[0].track_id for _ in range(3)]
    assert ids == [1, 2, 3]
    assert pipeline.process(grey()).hands == []


def test_non_finite_crop_is_dropped_and_the_frame_goes_on(backend):
    image = grey()
    image[:, :320] = 0  # the test model returns NaN maps for an all-black crop
    pipeline = HandPipeline(backend)
    result = pipeline.process(image, rois=[(60.0, 100.0, 160.0, 200.0), (400.0, 100.0, 500.0, 200.0)])
    assert result.dropped['non_finite_maps'] == 1 and result.num_crops == 2
    (hand,) = result.hands
    np.testing.assert_allclose(hand.keypoints[9], (450.0, 150.0), atol=0.5)
    assert pipeline.dropped_total['non_finite_maps'] == 1


def test_low_score_hand_is_dropped_and_its_track_ends(backend):
    pipeline = HandPipeline(backend)
    assert len(pipeline.process(grey(), rois=[(100.0, 100.0, 200.0, 200.0)]).hands) == 1
    pipeline.update_settings(hand_threshold=1.0)
    result = pipeline.process(grey())
    assert result.hands == [] and result.dropped['low_score'] == 1
    pipeline.update_settings(hand_threshold=0.3)
    assert pipeline.process(grey()).hands == []  # no track left to propose a crop


def test_hand_found_only_by_tracking_fades_with_the_half_life_and_ends(backend):
    pipeline = HandPipeline(backend, track_half_life=1.0, hand_threshold=0.2)
    (first,) = pipeline.process(grey(), rois=[(100.0, 100.0, 220.0, 240.0)], stamp=5.0).hands
    confidence = first.scores.mean()
    assert first.score == pytest.approx(confidence) and confidence > 0.9  # an ROI is evidence 1
    for seconds in (1.0, 2.0):  # tracking alone: evidence 1/2, then 1/4
        (hand,) = pipeline.process(grey(), stamp=5.0 + seconds).hands
        assert (hand.source, hand.track_id) == ('track', first.track_id)
        assert hand.score == pytest.approx(hand.scores.mean() * 0.5 ** seconds, rel=1e-6)
    result = pipeline.process(grey(), stamp=8.0)  # 1/8 x ~0.95 < 0.2: dropped, the track ends
    assert result.hands == [] and result.dropped['low_score'] == 1
    assert pipeline.process(grey(), stamp=8.1).num_crops == 0


def test_weak_hand_continues_a_track_but_does_not_start_one(backend):
    weak = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.23, None, 0.0)])
    pipeline = HandPipeline(backend, localizer=weak)  # hand score ~0.23 x 0.95: in [0.2, 0.25)
    result = pipeline.process(grey(), stamp=0.0)
    assert result.hands == [] and result.dropped['weak_new_hand'] == 1
    assert pipeline.tracker.tracks == ()
    pipeline.update_settings(tracking=False)  # independent frames: the hand threshold alone
    (hand,) = pipeline.process(grey(), stamp=0.1).hands
    assert 0.2 <= hand.score < 0.25 and hand.source == 'localizer'

    pipeline = HandPipeline(backend, track_half_life=1.0)
    (first,) = pipeline.process(grey(), rois=[(100.0, 100.0, 220.0, 240.0)], stamp=0.0).hands
    (tracked,) = pipeline.process(grey(), stamp=2.05).hands  # evidence 0.5 ** 2.05 = 0.24
    assert tracked.track_id == first.track_id and 0.2 <= tracked.score < 0.25


def test_localiser_finding_a_tracked_hand_again_restores_its_evidence(backend):
    localizer = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.8, None, 0.0)])
    pipeline = HandPipeline(backend, localizer=localizer, track_half_life=0.5,
                            localizer_interval=1)  # every frame: each one is a step of the story
    (found,) = pipeline.process(grey(), stamp=0.0).hands
    localizer.detections = []
    (tracked,) = pipeline.process(grey(), stamp=0.5).hands
    assert tracked.score == pytest.approx(0.4 * tracked.scores.mean(), rel=1e-6)
    # the localiser's box is the track's own (the test model's keypoints follow the crop, not a hand)
    localizer.detections = [Detection(tracked.box, 0.7, None, 0.0)]
    (again,) = pipeline.process(grey(), stamp=1.0).hands
    assert (again.source, again.track_id) == ('localizer', found.track_id)
    assert again.score == pytest.approx(0.7 * again.scores.mean(), rel=1e-6)


def test_localiser_runs_on_every_nth_frame_while_tracking_and_on_every_frame_without(backend):
    localizer = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.9, None, 0.0)])
    pipeline = HandPipeline(backend, localizer=localizer, localizer_interval=3)
    results = [pipeline.process(grey(), stamp=i / 30) for i in range(7)]
    assert [r.localized for r in results] == [True, False, False, True, False, False, True]
    assert localizer.one_pass_calls == [False, True, True]  # all passes until a track follows the hand
    # the skipped frames follow the hand by tracking (the test model's keypoints follow its crop, so
    # tracks drift off the localiser's fixed box later on)
    assert [r.hands[0].source for r in results[:3]] == ['localizer', 'track', 'track']
    assert results[0].hands[0].track_id == results[1].hands[0].track_id == results[2].hands[0].track_id
    pipeline.update_settings(hand_threshold=1.0)  # the skipped frame drops the hand: no track left
    assert [pipeline.process(grey(), stamp=1 + i / 30).localized for i in range(3)] == [False, True, True]
    pipeline.update_settings(hand_threshold=0.2, tracking=False)
    assert all(pipeline.process(grey(), stamp=2 + i / 30).localized for i in range(4))
    assert localizer.one_pass_calls[-4:] == [False] * 4


def test_hand_smaller_than_min_hand_size_is_dropped(backend):
    # the test model's keypoints span about 0.77 of the box side; min side 0.03 x 480 = 14.4 px
    pipeline = HandPipeline(backend)
    small, large = (300.0, 300.0, 312.0, 312.0), (100.0, 100.0, 130.0, 130.0)
    result = pipeline.process(grey(), rois=[small, large])
    assert [hand.box[2] - hand.box[0] for hand in result.hands] == [pytest.approx(23.0, abs=1.0)]
    assert result.dropped['too_small'] == 1
    pipeline.update_settings(min_hand_size=0.0)
    assert len(pipeline.process(grey(), rois=[small, large]).hands) == 2


def test_roi_outside_the_image_is_counted_not_fatal(backend):
    result = HandPipeline(backend).process(grey(), rois=[(700.0, 10.0, 800.0, 100.0)])
    assert result.hands == [] and result.dropped['roi_outside_image'] == 1


def test_localizer_detections_give_handedness_and_gate_the_score(backend):
    localizer = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.8, 'left', 0.7)])
    assert isinstance(localizer, BoxSource)
    pipeline = HandPipeline(backend, localizer=localizer, localizer_interval=1)
    (hand,) = pipeline.process(grey()).hands
    assert (hand.handedness, hand.handedness_score, hand.source) == (Handedness.LEFT, 0.7, 'localizer')
    assert hand.score == pytest.approx(0.8 * hand.scores.mean())
    np.testing.assert_allclose(hand.keypoints[9], (150.0, 150.0), atol=0.5)
    localizer.detections = []  # the localiser loses it: the track keeps the handedness
    for _ in range(3):
        (tracked,) = pipeline.process(grey()).hands
        assert (tracked.track_id, tracked.handedness, tracked.source) == (
            hand.track_id, Handedness.LEFT, 'track')
    # The frames found by the track alone cast no vote of their own (else its first call, echoed
    # three times, would outvote this one): one call each way, and the surer one wins.
    localizer.detections = [Detection((100.0, 100.0, 200.0, 200.0), 0.8, 'right', 0.9)]
    (again,) = pipeline.process(grey()).hands
    assert again.track_id == hand.track_id and again.handedness == Handedness.RIGHT
    assert 0.5 < again.handedness_score < 0.7


@pytest.mark.parametrize('left_probability, expected', [
    (0.9, (Handedness.LEFT, 0.9)),      # the keypoint network is sure: it decides
    (0.1, (Handedness.RIGHT, 0.9)),
    (0.6, (Handedness.RIGHT, 0.8)),     # unsure: the localiser's call stands
    (float('nan'), (Handedness.RIGHT, 0.8)),
])
def test_keypoint_network_handedness_overrides_the_localiser_when_sure(tmp_path, left_probability,
                                                                       expected):
    path = build_fixed_peaks_model(tmp_path / 'with_handedness.onnx',
                                   left_probability=left_probability)
    sided = create_backend('onnxruntime', str(path), threads=1)
    assert sided.info.handedness
    maps, left = sided.infer_with_handedness(np.zeros((3, 3, TEST_INPUT_SIZE, TEST_INPUT_SIZE),
                                                      np.float32))
    assert maps.shape == (3, 22, 16, 16) and left.shape == (3,)
    localizer = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.8, 'right', 0.8)])
    (hand,) = HandPipeline(sided, localizer=localizer).process(grey()).hands
    assert (hand.handedness, hand.handedness_score) == pytest.approx(expected)
    np.testing.assert_allclose(hand.keypoints[9], (150.0, 150.0), atol=0.5)


def test_the_keypoint_networks_side_call_counts_only_on_a_hand_of_sure_keypoints(tmp_path):
    localizer = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.8, 'right', 0.8)])
    for peak, expected in [(MIN_SIDE_CALL_KEYPOINT_CONFIDENCE - 0.1, (Handedness.RIGHT, 0.8)),
                           (MIN_SIDE_CALL_KEYPOINT_CONFIDENCE + 0.1, (Handedness.LEFT, 0.9))]:
        path = build_fixed_peaks_model(tmp_path / f'peak_{peak}.onnx', left_probability=0.9, peak=peak)
        sided = create_backend('onnxruntime', str(path), threads=1)
        (hand,) = HandPipeline(sided, localizer=localizer).process(grey()).hands
        assert (hand.scores.mean() >= MIN_SIDE_CALL_KEYPOINT_CONFIDENCE) == (peak > MIN_SIDE_CALL_KEYPOINT_CONFIDENCE)
        assert (hand.handedness, hand.handedness_score) == pytest.approx(expected)


def test_flip_averaging_reaches_the_backend(tmp_path):
    # This test model calls every crop left with 0.9, its mirror too: averaged with the mirror's
    # P(right), the network is unsure (0.5) and the localiser's side stands.
    sided = create_backend('onnxruntime', str(build_fixed_peaks_model(tmp_path / 'sided.onnx',
                                                                      left_probability=0.9)),
                           threads=1)
    localizer = FixedBoxesLocalizer([Detection((100.0, 100.0, 200.0, 200.0), 0.8, 'right', 0.8)])
    pipeline = HandPipeline(sided, localizer=localizer, tracking=False)
    (hand,) = pipeline.process(grey()).hands
    assert (hand.handedness, hand.handedness_score) == pytest.approx((Handedness.LEFT, 0.9))
    pipeline.update_settings(flip_averaging=True)
    (hand,) = pipeline.process(grey()).hands
    assert (hand.handedness, hand.handedness_score) == pytest.approx((Handedness.RIGHT, 0.8))


def test_settings_are_validated_and_applied_from_the_next_frame(backend):
    pipeline = HandPipeline(backend)
    for bad, message in [({'max_hands': 0}, 'max_hands'), ({'keypoint_threshold': 1.5}, 'keypoint'),
                         ({'crop_margin': -0.1}, 'crop_margin'),
                         ({'tracking': False, 'smoothing': True}, 'smoothing needs tracking'),
                         ({'min_cutoff': 0.0}, 'min_cutoff'), ({'track_half_life': 0.0}, 'half-life'),
                         ({'localizer_interval': 0}, 'localizer_interval'),
                         ({'localizer_interval': 2.0}, 'localizer_interval'),
                         ({'min_hand_size': 1.5}, 'min_hand_size'),
                         ({'flip_averaging': 1}, 'flip_averaging must be true or false')]:
        with pytest.raises(ValueError, match=message):
            pipeline.update_settings(**bad)
    assert pipeline.settings.max_hands == 2
    pipeline.update_settings(crop_margin=0.5)
    box = (100.0, 100.0, 200.0, 200.0)
    (hand,) = pipeline.process(grey(), rois=[box]).hands
    np.testing.assert_allclose(hand.keypoints, expected_keypoints(box, margin=0.5), atol=0.5)
    with pytest.raises(ValueError, match='max_hands'):
        HandPipeline(backend, max_hands=9)


def test_bad_image_is_a_clear_error(backend):
    pipeline = HandPipeline(backend)
    for image in (np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10), np.uint8),
                  np.zeros((10, 10, 3), np.float32)):
        with pytest.raises(ValueError, match='uint8 BGR'):
            pipeline.process(image)


def test_backproject_keypoints_on_a_plane():
    k = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
    depth = np.full((480, 640), 0.8, np.float32)
    depth[100:110, 100:110] = np.nan                   # a hole: no depth at all there
    depth[300, 300] = 5.0                              # one outlier: the median ignores it
    points = np.array([[320.0, 240.0], [420.0, 140.0], [300.4, 300.2], [104.0, 104.0], [700.0, 5.0]])
    xyz = backproject_keypoints(points, depth, k)
    np.testing.assert_allclose(xyz[0], (0.0, 0.0, 0.8))
    np.testing.assert_allclose(xyz[1], (100 * 0.8 / 500, -100 * 0.8 / 400, 0.8))
    np.testing.assert_allclose(xyz[2], ((300.4 - 320) * 0.8 / 500, (300.2 - 240) * 0.8 / 400, 0.8))
    assert np.isnan(xyz[3]).all() and np.isnan(xyz[4]).all()


def test_process_fills_3d_from_registered_depth(backend):
    k = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    depth = np.full((480, 640), 0.6, np.float32)
    (hand,) = HandPipeline(backend).process(grey(), rois=[(100.0, 100.0, 200.0, 200.0)],
                                            depth_m=depth, camera_matrix=k).hands
    assert hand.keypoints_3d.shape == (21, 3)
    np.testing.assert_allclose(hand.keypoints_3d[:, 2], 0.6)
    np.testing.assert_allclose(hand.keypoints_3d[9, :2], ((150 - 319.5) * 0.6 / 500,
                                                          (150 - 239.5) * 0.6 / 500), atol=1e-3)
    with pytest.raises(ValueError, match='registered'):
        HandPipeline(backend).process(grey(), depth_m=depth[:100], camera_matrix=k)


def test_draw_result_marks_keypoints_on_a_copy(backend):
    image = grey()
    result = HandPipeline(backend).process(image, rois=[(100.0, 100.0, 200.0, 200.0)])
    drawn = draw_result(image, result, keypoint_threshold=0.2, heatmap_alpha=0.5)
    assert (image == 128).all()
    x, y = np.round(result.hands[0].keypoints[8]).astype(int)  # index fingertip
    assert (drawn[y, x] != 128).any()


def test_default_model_path_names_the_shipped_model():
    assert default_model_path().parts[-2:] == ('models', 'hand_cpm.onnx')


@pytest.mark.slow
def test_random_weight_light_variant_runs_end_to_end(tmp_path):
    """Smoke test with a real exported network (random weights: shapes and fields only)."""
    pytest.importorskip('torch')
    export = pytest.importorskip('hand_cpm_train.export')
    from hand_cpm_ros.codec import HeatmapCodec
    from hand_cpm_train.models import build_model, get_config
    config = get_config('cpm-lite-s', input_size=96)
    path = export.export_onnx(build_model(config).eval(), config,
                              HeatmapCodec(input_size=96).to_dict(), tmp_path / 'lite.onnx')
    pipeline = HandPipeline(create_backend('onnxruntime', str(path), threads=1), hand_threshold=0.0,
                            new_hand_threshold=0.0)
    result = pipeline.process(grey(), rois=[(100.0, 100.0, 200.0, 200.0), (300.0, 100.0, 400.0, 200.0)])
    assert len(result.hands) == 2
    for hand in result.hands:
        assert hand.keypoints.shape == (21, 2) and np.isfinite(hand.keypoints).all()
        assert hand.maps.shape == (22, 12, 12)
        assert ((hand.scores >= 0) & (hand.scores <= 1)).all()


def test_box_confidences_are_the_factor_of_a_hands_score(backend):
    """The mean keypoint confidence of each box's crop, as process() scores the hand found in it:
    the test model's peaks on a grey crop, 0 on an all-black one (its maps are NaN)."""
    image = grey()
    image[:240, :320] = 0
    pipeline = HandPipeline(backend)
    (hand,) = pipeline.process(image, rois=[(400.0, 300.0, 500.0, 400.0)]).hands
    confidences = pipeline.box_confidences(image, [(400.0, 300.0, 500.0, 400.0), (100.0, 80.0, 160.0, 140.0)])
    assert confidences[0] == pytest.approx(hand.score) and confidences[0] > 0.9  # an ROI's evidence is 1
    assert confidences[1] == 0.0
    assert pipeline.box_confidences(image, []).shape == (0,)
