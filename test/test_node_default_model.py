"""hand_cpm_node with the shipped default models (models/hand_cpm.onnx and
models/hand_localizer.onnx), in its own process over real DDS, on rendered held-out `frame` scenes
with known keypoints: each result carries its frame's stamp, frame_id and size, rendered hands that
are big and visible enough are found with keypoints close to the truth, and a frame with no hand
(only faces, arms and skin-coloured shapes) gives none.

The shipped models are interim (models/MODEL_CARD.md: localiser recall 0.56 at precision 0.59,
keypoints PCK@0.2 0.64 on held-out data), so the bars below are what they reach, not the targets;
raise them when a better model ships. The hand-free frame is an expected failure (strict: it fails
once the model passes it, so that the marker is removed)."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')
pytest.importorskip('hand_cpm_train.synth.scene')

from std_msgs.msg import Header  # noqa: E402

from hand_cpm_ros import metrics  # noqa: E402
from hand_cpm_ros.geometry import box_from_keypoints, clip_box  # noqa: E402
from hand_cpm_ros.msg import HandKeypointsArray  # noqa: E402
from hand_cpm_ros.pipeline import (DEFAULT_LOCALIZER_NAME, DEFAULT_MODEL_NAME,  # noqa: E402
                                   default_model_path)
from hand_cpm_ros.ros_messages import bgr_to_image_msg, roi_to_box  # noqa: E402
from hand_cpm_train.synth.scene import HandAnnotation, RenderedScene, render_sample  # noqa: E402
from test_node import FRAME_ID, RELIABLE_IMAGE, Client, pixels, start_node, stop_node  # noqa: E402

# Keypoint accuracy of the found qualifying hands (over each hand's visible keypoints, normalised
# by its box size as hand-cpm-eval does). The interim keypoint model (held-out PCK@0.2 0.64), on
# the 5 hands found: median errors 0.06-0.26 (their median 0.15), PCK@0.2 0.44-0.76 (mean 0.61).
# (The epoch-8 weights, held-out 0.60, found 4: medians 0.06-0.25, mean PCK@0.2 0.57.)
MAX_MEDIAN_ERROR = 0.35        # each found hand: its median keypoint error / its box size
MAX_TYPICAL_ERROR = 0.2        # the median over the found hands of those median errors
MIN_MEAN_PCK_02 = 0.5          # the mean over the found hands of PCK@0.2
# Of the 6 qualifying hands, how many must be found: the interim models find 5 (target: all);
# one of margin, as the earlier weights found 4.
MIN_FOUND = 4

# Held-out frames: images 3, 35, 108, 179 and 2 of `hand-cpm-synth --scene frame --seed 12`
# (data/frames_test). Qualifying hands: 1, 1 (and a small one), 2, 2; frame 2 has no hand, only
# faces, skin-coloured shapes and two arms.
SEED = 12
FRAMES = (3, 35, 108, 179, 2)
HANDLESS_FRAME = 2
# A rendered hand qualifies when its box is at least this share of the frame height, all its
# keypoints lie in the frame and at least MIN_VISIBLE of the 21 are visible.
MIN_BOX_HEIGHT = 0.15
MIN_VISIBLE = 16
MATCH_IOU = 0.5  # a found hand is a rendered hand when their keypoint boxes overlap this much


@dataclass
class Played:
    """One rendered frame as published, and the node's result for it."""
    index: int
    scene: RenderedScene
    header: Header
    result: HandKeypointsArray


def shipped_model(name: str) -> Path:
    """The default model `name` the node finds by itself; the tests skip without it."""
    path = default_model_path(name)
    if not path.is_file():
        pytest.skip(f'models/{name} is not shipped yet (README "Models": training unfinished)')
    return path


def qualifies(hand: HandAnnotation, width: int, height: int) -> bool:
    """Whether a rendered hand is big and visible enough to be a fair test (see MIN_BOX_HEIGHT)."""
    inside = np.all((hand.keypoints >= -0.5) & (hand.keypoints <= (width - 0.5, height - 0.5)))
    return (hand.box is not None and hand.box[3] - hand.box[1] >= MIN_BOX_HEIGHT * height
            and bool(inside) and int(hand.visible.sum()) >= MIN_VISIBLE)


def truth_box(hand: HandAnnotation, width: int, height: int) -> tuple[float, float, float, float]:
    """Box around the rendered hand's keypoints, clipped to the frame (the node's hand boxes are
    keypoint boxes too)."""
    return clip_box(box_from_keypoints(hand.keypoints), width, height)


@pytest.fixture(scope='module')
def played(isolated_ros_environment, tmp_path_factory):
    """Every frame of FRAMES through a node with the default models and tracking off (each frame
    stands alone), one at a time; also every HandKeypointsArray received. start_node gives
    model_path: the default keypoint model's path; the node finds the default localiser itself."""
    model = shipped_model(DEFAULT_MODEL_NAME)
    shipped_model(DEFAULT_LOCALIZER_NAME)
    scenes = [render_sample('frame', SEED, index) for index in FRAMES]
    log = tmp_path_factory.mktemp('node') / 'stderr.log'
    process = start_node(model, log, 'tracking:=false', RELIABLE_IMAGE)
    context = rclpy.Context()
    rclpy.init(context=context)
    client = Client(context, 'hand_cpm_default_model_test_client')
    try:
        # Until the node answers: it has loaded its models and both topics are connected.
        client.send_until(lambda header: client.image_pub.publish(
            bgr_to_image_msg(scenes[0].image_bgr, header)), lambda msg: True, timeout=40)
        frames = []
        for index, scene in zip(FRAMES, scenes):
            header = client.header()
            result = client.result_of(bgr_to_image_msg(scene.image_bgr, header))
            frames.append(Played(index, scene, header, result))
        received = list(client.hands)
    finally:
        client.close()
        context.try_shutdown()
        stop_node(process)
    assert process.returncode == 0, log.read_text()
    return frames, received


def test_each_result_has_its_frames_header_and_size(played):
    frames, received = played
    for frame in frames:
        assert frame.result.header.stamp == frame.header.stamp
        assert frame.result.header.frame_id == frame.header.frame_id == FRAME_ID
        assert (frame.result.image_width, frame.result.image_height) == (640, 480)
        assert sum(msg.header.stamp == frame.header.stamp for msg in received) == 1, \
            f'frame {frame.index}: not exactly one result'


def test_qualifying_hands_are_found_with_keypoints_close_to_the_truth(played):
    frames, _ = played
    report, missed = [], []
    for frame in frames:
        width, height = frame.scene.params.width, frame.scene.params.height
        truths = {number: hand for number, hand in enumerate(frame.scene.hands)
                  if qualifies(hand, width, height)}
        assert truths or frame.index == HANDLESS_FRAME, f'frame {frame.index}: no hand qualifies'
        found = frame.result.hands
        matches = metrics.match_detections(
            np.array([roi_to_box(hand.box) for hand in found]).reshape(-1, 4),
            [hand.score for hand in found],
            np.array([truth_box(hand, width, height) for hand in truths.values()]).reshape(-1, 4),
            MATCH_IOU)
        for truth_index, (number, truth) in enumerate(truths.items()):
            name = f'frame {frame.index} hand {number}'
            if truth_index not in matches:
                missed.append(f'{name} ({len(found)} hands found in the frame)')
                continue
            predicted = pixels(found[int(np.flatnonzero(matches == truth_index)[0])])[None]
            keypoints, visible = truth.keypoints[None], truth.visible[None]
            size = metrics.hand_box_size(keypoints, visible)
            errors = metrics.keypoint_errors(predicted, keypoints)[visible] / size[0]
            median = float(np.median(errors))
            pck = metrics.pck(predicted, keypoints, visible, size, 0.2)[0]
            report.append((f'{name}: median error {median:.3f}, PCK@0.2 {pck:.2f}', median, pck))
    summary = '; '.join(line for line, _, _ in report)
    assert len(report) >= MIN_FOUND, (f'{len(report)} qualifying hands found, need {MIN_FOUND}; '
                                      f'missed: {"; ".join(missed)}')
    medians, pcks = [median for _, median, _ in report], [pck for _, _, pck in report]
    assert max(medians) <= MAX_MEDIAN_ERROR, f'a found hand is far off: {summary}'
    assert np.median(medians) <= MAX_TYPICAL_ERROR, f'typical error too large: {summary}'
    assert np.mean(pcks) >= MIN_MEAN_PCK_02, f'mean PCK@0.2 too low: {summary}'


def test_a_frame_without_hands_gives_none(played):
    # the shipped localiser still puts a box on 9 of 51 held-out hand-free frames
    # (models/MODEL_CARD.md), but no longer on this one, which has skin-coloured distractors and arms
    frames, _ = played
    (frame,) = [frame for frame in frames if frame.index == HANDLESS_FRAME]
    params = frame.scene.params
    assert frame.scene.hands == [] and params.distractor_count > 0 and params.arms
    assert frame.result.hands == []
