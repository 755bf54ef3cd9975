"""HandLocalizer end to end with a real ONNX graph in real ONNX Runtime (the fixed-boxes test
model): boxes land in source pixels for any frame size and aspect ratio, empty frames give no
hands, odd images are converted or refused, a fine pass at a larger input adds its small boxes,
and hand-cpm-detect finds hands without --box."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand_cpm_ros.backends import create_backend
from hand_cpm_ros.geometry import box_iou_matrix
from hand_cpm_ros.localizer import OFFSET, SIDE, HandLocalizer, as_bgr8, infer_localizer_maps
from hand_cpm_ros.pipeline import DEFAULT_LOCALIZER_NAME, FINE_LOCALIZER_NAME, default_model_path
from hand_cpm_train.localizer_model import LocalizerConfig

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_boxes_localizer import TEST_BOXES_INPUT, build_fixed_boxes_localizer  # noqa: E402
from fixed_peaks_model import build_fixed_peaks_model  # noqa: E402


def quiet_backend(path):
    return create_backend('onnxruntime', model_path=str(path), threads=1, logger=lambda _: None)


@pytest.fixture(scope='module')
def localizer_path(tmp_path_factory):
    return build_fixed_boxes_localizer(tmp_path_factory.mktemp('loc') / 'localizer.onnx')


@pytest.fixture(scope='module')
def localizer(localizer_path):
    return HandLocalizer(quiet_backend(localizer_path))


def expected_source_boxes(width, height, boxes_input=TEST_BOXES_INPUT, input_size=(320, 256)):
    """`boxes_input` (of an input_size network) in a width x height frame, from the letterbox
    written out by hand: one scale s for both axes, content centred by whole-pixel padding, pixel
    edges -0.5 kept; clipped to the frame."""
    input_w, input_h = input_size
    s = min(input_w / width, input_h / height)
    resized_w, resized_h = round(width * s), round(height * s)
    pad_x, pad_y = (input_w - resized_w) // 2, (input_h - resized_h) // 2
    sx, sy = resized_w / width, resized_h / height
    boxes = np.array(boxes_input, np.float64)
    boxes[:, 0::2] = (boxes[:, 0::2] - pad_x + 0.5) / sx - 0.5
    boxes[:, 1::2] = (boxes[:, 1::2] - pad_y + 0.5) / sy - 0.5
    boxes[:, 0::2] = boxes[:, 0::2].clip(-0.5, width - 0.5)     # the frame's outer pixel edges
    boxes[:, 1::2] = boxes[:, 1::2].clip(-0.5, height - 0.5)
    return boxes


@pytest.mark.parametrize('width, height', [(640, 480), (1280, 720), (480, 640), (333, 777),
                                           (320, 256), (2000, 300)])
def test_boxes_map_back_to_source_pixels_for_any_frame_size(localizer, width, height):
    frame = np.random.default_rng(width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    detections = localizer.detect(frame)
    assert len(detections) == 2
    expected = expected_source_boxes(width, height)
    found = sorted(detections, key=lambda d: d.box[0])
    for detection, box in zip(found, expected):
        np.testing.assert_allclose(detection.box, box, atol=1e-3)
    assert [d.handedness for d in found] == ['right', 'left']
    assert all(d.score == pytest.approx(0.98, abs=1e-4) for d in found)


def test_640x480_boxes_by_hand():
    # scale 1/2, 8 rows of padding on top: input x -> 2x + 0.5, y -> 2(y - 8) + 0.5
    np.testing.assert_allclose(expected_source_boxes(640, 480)[0], (240.5, 164.5, 320.5, 264.5))


def test_empty_frame_gives_no_hands(tmp_path):
    never = HandLocalizer(quiet_backend(build_fixed_boxes_localizer(tmp_path / 'empty.onnx',
                                                                    np.zeros((0, 4)), ())))
    assert never.detect(np.full((480, 640, 3), 90, np.uint8)) == []


def test_max_hands_and_threshold_cap_the_boxes(localizer_path):
    assert len(HandLocalizer(quiet_backend(localizer_path), max_hands=1).detect(
        np.zeros((480, 640, 3), np.uint8))) == 1
    assert HandLocalizer(quiet_backend(localizer_path), score_threshold=0.99).detect(
        np.zeros((480, 640, 3), np.uint8)) == []


def test_gray_bgra_and_16_bit_frames_are_converted(localizer):
    gray16 = np.arange(480 * 640, dtype=np.uint16).reshape(480, 640) % 4096
    converted = as_bgr8(gray16)
    assert converted.shape == (480, 640, 3) and converted.dtype == np.uint8
    assert converted[0, 0].tolist() == [0, 0, 0]
    assert converted.max() == 255 and converted[6, 255].tolist() == [255, 255, 255]  # 4095 = max
    bgra = np.dstack([np.full((4, 5, 3), (1, 2, 3), np.uint8), np.full((4, 5), 200, np.uint8)])
    assert as_bgr8(bgra)[0, 0].tolist() == [1, 2, 3]
    assert as_bgr8(np.full((4, 5, 1), 7, np.uint8))[3, 4].tolist() == [7, 7, 7]
    assert as_bgr8(np.zeros((4, 5), np.uint16)).max() == 0
    expected = expected_source_boxes(640, 480)
    for frame in (gray16, gray16.astype(np.uint8), np.dstack([gray16.astype(np.uint8)] * 4)):
        boxes = sorted(d.box for d in localizer.detect(frame))
        np.testing.assert_allclose(boxes, expected, atol=1e-3)


@pytest.mark.parametrize('image, message', [
    (np.zeros((0, 640, 3), np.uint8), 'non-empty'),
    (np.zeros((480, 0), np.uint8), 'non-empty'),
    (np.zeros((48, 64, 2), np.uint8), '1, 3 or 4 channels'),
    (np.zeros((48, 64, 3), np.float32), '8-bit or 16-bit'),
    ([[1, 2], [3, 4]], 'numpy array'),
])
def test_bad_frames_are_refused_clearly(localizer, image, message):
    with pytest.raises(ValueError, match=message):
        localizer.detect(image)


def test_a_keypoint_model_is_not_a_localizer(tmp_path):
    keypoints = quiet_backend(build_fixed_peaks_model(tmp_path / 'cpm.onnx'))
    with pytest.raises(ValueError, match='keypoints model, not a hand localiser'):
        HandLocalizer(keypoints)


def test_localizer_backend_checks_the_frame_shape(localizer):
    backend = localizer.backend
    assert backend.info.task == 'localizer' and backend.info.input_shape == (3, 256, 320)
    assert backend.infer(np.zeros((0, 3, 256, 320), np.float32)).shape == (0, 6, 64, 80)
    assert backend.infer(np.zeros((3, 3, 256, 320), np.float32)).shape == (3, 6, 64, 80)
    with pytest.raises(ValueError, match=r'\(N,3,256,320\)'):
        backend.infer(np.zeros((1, 3, 320, 256), np.float32))
    with pytest.raises(ValueError, match='flip_averaging is for keypoint models'):
        backend.infer(np.zeros((1, 3, 256, 320), np.float32), flip_averaging=True)
    with pytest.raises(ValueError, match='non-square'):
        backend.info.input_size


def test_flip_averaging_averages_each_frame_with_its_mirror_turned_back():
    """infer_localizer_maps with flip_averaging: the network gets the frames and then their
    mirrors in one batch; each mirror's maps are flipped back left to right, its centre offsets'
    x and its handedness logit negated, then averaged with the frame's own."""
    batch = np.random.default_rng(0).standard_normal((2, 3, 16, 20), dtype=np.float32)
    answers = np.random.default_rng(1).standard_normal((4, 6, 4, 5), dtype=np.float32)
    seen = []

    def infer(frames):
        seen.append(frames)
        return answers

    averaged = infer_localizer_maps(infer, batch, flip_averaging=True)
    np.testing.assert_array_equal(seen[0], np.concatenate([batch, batch[..., ::-1]]))
    turned_back = answers[2:, :, :, ::-1].copy()
    turned_back[:, OFFSET.start] *= -1
    turned_back[:, SIDE] *= -1
    np.testing.assert_allclose(averaged, (answers[:2] + turned_back) / 2, atol=1e-6)
    assert averaged.shape == (2, 6, 4, 5)
    np.testing.assert_array_equal(infer_localizer_maps(lambda frames: answers[:2], batch), answers[:2])


def test_flip_averaged_shipped_localizer_finds_mirrored_boxes_in_a_mirrored_frame():
    """With flip averaging the shipped localiser answers a mirrored 640x480 frame (whose letterbox
    is the letterbox mirrored) with exactly the mirrored boxes and the same scores; on its own it
    does not, as no trained network is exactly symmetric."""
    path = default_model_path(DEFAULT_LOCALIZER_NAME)
    if not path.is_file():
        pytest.skip(f'{path} is not there')
    from test_data import draw_hand_image, hand_keypoints
    frame = draw_hand_image([hand_keypoints(200, 330, 150, -15), hand_keypoints(470, 300, 110, 20)],
                            640, 480, seed=3)
    mirror = np.ascontiguousarray(frame[:, ::-1])

    def mirrored(detections):
        return [(639.0 - d.box[2], d.box[1], 639.0 - d.box[0], d.box[3], d.score) for d in detections]

    def answers(localizer, image):
        return sorted((*d.box, d.score) for d in localizer.detect(image))

    for flip_averaging in (True, False):
        localizer = HandLocalizer(quiet_backend(path), score_threshold=0.05, max_hands=4,
                                  flip_averaging=flip_averaging)
        found, found_in_mirror = localizer.detect(frame), localizer.detect(mirror)
        assert found and len(found_in_mirror) == len(found)
        difference = np.abs(np.array(sorted(mirrored(found))) - np.array(answers(localizer, mirror))).max()
        assert (difference < 1e-3) == flip_averaging, difference
    with pytest.raises(ValueError, match='flip_averaging must be true or false'):
        HandLocalizer(quiet_backend(path), flip_averaging=1)


# A fine pass at 448x352 (in a 640x480 frame: scale 0.7, 8 rows of padding on top): a small hand
# only it finds (43 frame rows), the coarse model's first hand again, and a large hand (343 rows).
FINE_BOXES_INPUT = np.array([[40.0, 40.0, 62.0, 70.0], [168.0, 123.0, 224.0, 193.0], [250.0, 60.0, 420.0, 300.0]])


def test_a_fine_pass_adds_the_small_hands_only_it_finds(tmp_path, localizer_path):
    fine_path = build_fixed_boxes_localizer(tmp_path / 'fine.onnx', FINE_BOXES_INPUT, (0, 0, 1),
                                            LocalizerConfig(input_width=448, input_height=352))
    coarse_boxes = expected_source_boxes(640, 480)
    fine_boxes = expected_source_boxes(640, 480, FINE_BOXES_INPUT, (448, 352))
    frame = np.zeros((480, 640, 3), np.uint8)

    def boxes_found(**settings):
        localizer = HandLocalizer(quiet_backend(localizer_path), fine_backend=quiet_backend(fine_path), **settings)
        return np.array(sorted(d.box for d in localizer.detect(frame)))

    # the large fine box is taller than 0.3 of the frame and the repeated hand overlaps the coarse
    # box: one box for it, within a pixel of the coarse one (the two passes agree)
    found = boxes_found(max_hands=4)
    assert len(found) == 3
    np.testing.assert_allclose(found[0], fine_boxes[0], atol=1e-3)
    np.testing.assert_allclose(found[1:], coarse_boxes, atol=1.0)
    assert len(boxes_found(max_hands=4, fine_max_height=0.8)) == 4          # now the large hand too
    assert len(boxes_found(max_hands=2)) == 2
    localizer = HandLocalizer(quiet_backend(localizer_path), fine_backend=quiet_backend(fine_path))
    assert localizer.describe() == 'loc-lite 320x256 + 448x352 for hands under 0.3 of the frame height'
    with pytest.raises(ValueError, match='larger input than the localiser'):
        HandLocalizer(quiet_backend(fine_path), fine_backend=quiet_backend(localizer_path))
    with pytest.raises(ValueError, match='not a hand localiser'):
        HandLocalizer(quiet_backend(localizer_path),
                      fine_backend=quiet_backend(build_fixed_peaks_model(tmp_path / 'cpm.onnx')))
    with pytest.raises(ValueError, match=r'fine_max_height must be in \(0, 1\]'):
        HandLocalizer(quiet_backend(localizer_path), fine_backend=quiet_backend(fine_path), fine_max_height=0.0)


def test_one_pass_at_a_time_runs_coarse_fine_and_wide_in_turn(tmp_path, localizer_path):
    """While the pipeline tracks hands it asks for one pass per call: each call then gives the
    boxes that pass contributes to the full merge, and the three calls together give every box."""
    from hand_cpm_ros.localizer import WIDE_FACTOR
    fine_path = build_fixed_boxes_localizer(tmp_path / 'fine.onnx', FINE_BOXES_INPUT, (0, 0, 1),
                                            LocalizerConfig(input_width=448, input_height=352))
    frame = np.zeros((480, 640, 3), np.uint8)
    localizer = HandLocalizer(quiet_backend(localizer_path), fine_backend=quiet_backend(fine_path),
                              max_hands=8, wide_factor=WIDE_FACTOR)
    assert localizer.passes == ('coarse', 'fine', 'wide')
    every = {d.box for d in localizer.detect(frame)}
    turns = [sorted(d.box for d in localizer.detect(frame, one_pass=True)) for _ in range(4)]
    np.testing.assert_allclose(turns[0], expected_source_boxes(640, 480), atol=1e-3)
    fine_boxes = expected_source_boxes(640, 480, FINE_BOXES_INPUT, (448, 352))
    np.testing.assert_allclose(turns[1], fine_boxes[:2], atol=1e-3)   # the third is over 0.3 of the frame
    # the wide pass sees the coarse input's two boxes 1.6 times larger about the frame's centre
    heights = np.array(turns[2])[:, 3] - np.array(turns[2])[:, 1]
    np.testing.assert_allclose(heights, 1.6 * (np.array(turns[0])[:, 3] - np.array(turns[0])[:, 1]), rtol=0.02)
    assert every <= set(turns[0]) | set(turns[1]) | set(turns[2]) and len(every) == 5  # fine's repeat merged
    assert turns[3] == turns[0]                                       # and round again
    alone = HandLocalizer(quiet_backend(localizer_path))              # one pass: every call runs it
    assert alone.passes == ('coarse',) and alone.detect(frame, one_pass=True) == alone.detect(frame)


def test_the_shipped_fine_pass_finds_small_hands_the_localizer_alone_misses():
    """Held-out frames 44, 74 and 195 of `hand-cpm-synth --scene frame --seed 12`: hands of 7-11%
    of the frame height. At the threshold advised with the fine pass (0.40) the shipped localiser
    alone misses a hand in each; with the shipped fine pass every hand is found (IoU 0.5)."""
    coarse_path, fine_path = default_model_path(DEFAULT_LOCALIZER_NAME), default_model_path(FINE_LOCALIZER_NAME)
    if not (coarse_path.is_file() and fine_path.is_file()):
        pytest.skip('the shipped localiser and its fine pass are not there')
    from hand_cpm_train.synth.scene import render_sample
    alone = HandLocalizer(quiet_backend(coarse_path), score_threshold=0.4)
    two_sizes = HandLocalizer(quiet_backend(coarse_path), score_threshold=0.4, fine_backend=quiet_backend(fine_path))
    assert two_sizes.describe() == 'loc-deep 320x256 + 448x352 for hands under 0.3 of the frame height'
    for index in (44, 74, 195):
        scene = render_sample('frame', 12, index)
        truth = np.array([hand.box for hand in scene.hands if hand.box is not None])

        def found(localizer):
            boxes = [d.box for d in localizer.detect(scene.image_bgr)]
            return (box_iou_matrix(truth, boxes) >= 0.5).any(axis=1) if boxes else np.zeros(len(truth), bool)
        assert not found(alone).all(), index
        assert found(two_sizes).all(), index


def test_the_wide_pass_finds_hands_that_fill_the_frame():
    """Frames 13, 60 and 530 of `hand-cpm-synth --scene frame --seed 61 --max-hand-size 1.3` (as
    written, JPEG): one hand each, 0.84, 0.87 and 1.0 of the frame height. The shipped localiser alone boxes none of
    them at IoU 0.5; with the node's wide pass (WIDE_FACTOR) it boxes each."""
    from hand_cpm_ros.localizer import WIDE_FACTOR
    from hand_cpm_train.synth.scene import render_sample
    path = default_model_path(DEFAULT_LOCALIZER_NAME)
    if not path.is_file():
        pytest.skip('the shipped localiser is not there')
    alone = HandLocalizer(quiet_backend(path))
    wide = HandLocalizer(quiet_backend(path), wide_factor=WIDE_FACTOR)
    assert wide.describe() == 'loc-deep 320x256 + the frame shrunk 1.6x for hands over 0.25 of its height'
    for index in (13, 60, 530):
        scene = render_sample('frame', 61, index, max_hand_size=1.3)
        truth = np.array([hand.box for hand in scene.hands if hand.box is not None])
        assert len(truth) == 1 and truth[0, 3] - truth[0, 1] > 0.8 * 480
        # the frame as hand-cpm-synth writes it, JPEG at the scene's quality
        encoded = cv2.imencode('.jpg', scene.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, scene.params.jpeg_quality])[1]
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)

        def found(localizer):
            boxes = [d.box for d in localizer.detect(image)]
            return bool(boxes) and box_iou_matrix(truth, boxes).max() >= 0.5
        assert not found(alone), index
        assert found(wide), index
    for factor in (0.9, 4.5):
        with pytest.raises(ValueError, match='wide_factor must be in'):
            HandLocalizer(quiet_backend(path), wide_factor=factor)


def test_the_pipeline_lets_the_keypoint_network_check_weak_localiser_boxes():
    """Held-out frames 68, 162, 202 and 271 of `hand-cpm-synth --scene frame --seed 12` each hold a
    hand whose shipped-localiser box scores 0.31-0.35, under the localiser's own operating point
    (0.35), and whose crop the keypoint network is sure of. With the node's thresholds
    (PIPELINE_SCORE_THRESHOLD) the pipeline reports every hand of these frames where it is and
    nothing else, even as new hands (new_hand_threshold, as hand-cpm-detect treats an image); with
    the boxes cut at 0.35 it misses one in each."""
    from hand_cpm_ros.geometry import box_from_keypoints, clip_box
    from hand_cpm_ros.localizer import DEFAULT_SCORE_THRESHOLD, PIPELINE_SCORE_THRESHOLD
    from hand_cpm_ros.pipeline import HandPipeline
    from hand_cpm_train.synth.scene import render_sample
    localizer_file, keypoint_file = default_model_path(DEFAULT_LOCALIZER_NAME), default_model_path()
    if not (localizer_file.is_file() and keypoint_file.is_file()):
        pytest.skip('the shipped models are not there')
    keypoints = quiet_backend(keypoint_file)
    localizers = {threshold: HandLocalizer(quiet_backend(localizer_file), score_threshold=threshold)
                  for threshold in (PIPELINE_SCORE_THRESHOLD, DEFAULT_SCORE_THRESHOLD)}
    for index in (68, 162, 202, 271):
        scene = render_sample('frame', 12, index)
        truth = np.array([clip_box(box_from_keypoints(hand.keypoints), 640, 480) for hand in scene.hands])
        overlaps = {}
        for threshold, localizer in localizers.items():
            hands = HandPipeline(keypoints, localizer=localizer).process(scene.image_bgr).hands
            overlaps[threshold] = box_iou_matrix(truth, [hand.box for hand in hands]).reshape(len(truth), -1)
        now, before = overlaps[PIPELINE_SCORE_THRESHOLD], overlaps[DEFAULT_SCORE_THRESHOLD]
        assert now.shape[1] == len(truth) and (now.max(axis=1) >= 0.5).all(), (index, now)
        assert np.count_nonzero((before >= 0.5).any(axis=1)) == len(truth) - 1, (index, before)


def test_detect_cli_finds_hands_without_box(tmp_path, localizer_path, capsys):
    from hand_cpm_ros.detect_cli import main
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), np.full((480, 640, 3), 100, np.uint8))
    model = build_fixed_peaks_model(tmp_path / 'cpm.onnx')
    assert main([str(image), '--model', str(model), '--localizer', str(localizer_path),
                 '--json', '--hand-threshold', '0.0']) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(record['hands']) == 2
    centres = sorted(np.mean(np.reshape(hand['box'], (2, 2)), axis=0)[0] for hand in record['hands'])
    expected = expected_source_boxes(640, 480)
    np.testing.assert_allclose(centres, (expected[:, 0] + expected[:, 2]) / 2, atol=25)
    assert main([str(image), '--model', str(model), '--localizer', str(tmp_path / 'no.onnx')]) == 2
    assert 'needs a hand localiser model' in capsys.readouterr().err


def test_detect_cli_merges_a_fine_pass(tmp_path, localizer_path, capsys):
    from hand_cpm_ros.detect_cli import main
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), np.full((480, 640, 3), 100, np.uint8))
    model = build_fixed_peaks_model(tmp_path / 'cpm.onnx')
    fine = build_fixed_boxes_localizer(tmp_path / 'fine.onnx', FINE_BOXES_INPUT, (0, 0, 1),
                                       LocalizerConfig(input_width=448, input_height=352))
    arguments = [str(image), '--model', str(model), '--localizer', str(localizer_path), '--json',
                 '--hand-threshold', '0.0', '--max-hands', '4']
    assert main([*arguments, '--fine-localizer', str(fine)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(record['hands']) == 3    # the small fine hand joins the two of the localiser
    small = expected_source_boxes(640, 480, FINE_BOXES_INPUT, (448, 352))[0]
    centres = np.array([np.mean(np.reshape(hand['box'], (2, 2)), axis=0) for hand in record['hands']])
    assert np.linalg.norm(centres - (small[:2] + small[2:]) / 2, axis=1).min() < 25
    assert main([*arguments, '--fine-localizer', str(tmp_path / 'no.onnx')]) == 2
    assert '--fine-localizer' in capsys.readouterr().err
    assert main([str(image), '--model', str(model), '--box', '10,10,100,100', '--fine-localizer', str(fine)]) == 2
    assert 'drop one of the two' in capsys.readouterr().err
    # a bare --fine-localizer (the shipped file) before the images would take the first as its model
    assert main(['--fine-localizer', str(image), str(image), '--model', str(model), '--localizer',
                 str(localizer_path)]) == 2
    assert 'is an image or video, not a model: put --fine-localizer after the inputs' in capsys.readouterr().err
