"""hand_cpm_node with the shipped default models (models/hand_cpm.onnx and
models/hand_localizer.onnx), in its own process over real DDS, on rendered held-out `frame` scenes
with known keypoints: each result carries its frame's stamp, frame_id and size, rendered hands that
are big and visible enough are found with keypoints close to the truth, and a frame with no hand
(only faces, arms and skin-coloured shapes) gives none; and a burst of frames faster than the
node can take them is worked off newest first, every skipped frame counted.

The shipped models are interim (models/MODEL_CARD.md: held out, localiser precision 0.84 and
recall 0.64, keypoints PCK@0.2 0.883), so the bars below are what they reach with a margin, not
the targets; raise them when a better model ships."""
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')
pytest.importorskip('hand_cpm_train.synth.scene')

from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hand_cpm_ros import metrics  # noqa: E402
from hand_cpm_ros.geometry import box_from_keypoints, box_iou_matrix, clip_box  # noqa: E402
from hand_cpm_ros.msg import HandKeypointsArray  # noqa: E402
from hand_cpm_ros.pipeline import (DEFAULT_LOCALIZER_NAME, DEFAULT_MODEL_NAME,  # noqa: E402
                                   FINE_LOCALIZER_NAME, default_model_path)
from hand_cpm_ros.ros_messages import bgr_to_image_msg, roi_to_box  # noqa: E402
from hand_cpm_train.synth.scene import HandAnnotation, RenderedScene, render_sample  # noqa: E402
from test_node import FRAME_ID, RELIABLE_IMAGE, Client, pixels, start_node, stop_node  # noqa: E402

# Keypoint accuracy of the found qualifying hands (over each hand's visible keypoints, normalised
# by its box size as hand-cpm-eval does). The shipped models (keypoint run 19, loc_deep_1) find all
# 6: median errors 0.013-0.056 (their median 0.038), PCK@0.2 0.81-1.00 (mean 0.94); keypoint run 15:
# all 6, medians 0.017-0.054 (their median 0.037), PCK@0.2 0.75-1.00 (mean 0.94); keypoint run 14
# (with loc_lite_7): all 6, medians 0.015-0.216 (their median 0.040), PCK@0.2 0.47-1.00 (mean 0.86); keypoint run 13:
# all 6, medians 0.017-0.146 (their median 0.036), PCK@0.2 0.59-1.00 (mean 0.89); keypoint run 12:
# all 6, medians 0.025-0.132 (their median 0.041), mean PCK@0.2 0.88; keypoint run 10: all 6,
# medians 0.025-0.221 (their median 0.050), mean PCK@0.2 0.83. (Keypoint run 1
# found 5: medians 0.06-0.26, their median 0.15, mean PCK@0.2 0.61.)
MAX_MEDIAN_ERROR = 0.3         # each found hand: its median keypoint error / its box size
MAX_TYPICAL_ERROR = 0.1        # the median over the found hands of those median errors
MIN_MEAN_PCK_02 = 0.75         # the mean over the found hands of PCK@0.2
MIN_FOUND = 6                  # of the 6 qualifying hands: all

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
SMALL_HAND_FRAMES = (44, 74, 195)  # of seed 12: hands the localiser alone misses, its fine pass finds
# Frames published back to back, faster than the node can process them (each takes the localiser
# and a crop, 20-40 ms here, while publishing one takes a few ms). Publisher and subscription keep
# them all (the subscription's depth raised by the QoS override), so that the node, not DDS,
# decides which frames are dropped.
BURST = 20
KEEP_ALL_IMAGES = f'qos_overrides./image.subscription.depth:={2 * BURST}'


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


@contextmanager
def node_with_default_models(tmp_path_factory, client_name: str, *parameters: str):
    """A node with the default models and tracking off (each frame stands alone), plus a test
    client, once the node has answered a frame; yields (client, the rendered scenes of FRAMES).
    start_node gives model_path: the default keypoint model's path; the node finds the default
    localiser itself. The node must exit cleanly afterwards."""
    model = shipped_model(DEFAULT_MODEL_NAME)
    shipped_model(DEFAULT_LOCALIZER_NAME)
    scenes = [render_sample('frame', SEED, index) for index in FRAMES]
    log = tmp_path_factory.mktemp('node') / 'stderr.log'
    process = start_node(model, log, 'tracking:=false', RELIABLE_IMAGE, *parameters)
    context = rclpy.Context()
    rclpy.init(context=context)
    client = Client(context, client_name)
    try:
        # Until the node answers: it has loaded its models and both topics are connected.
        client.send_until(lambda header: client.image_pub.publish(
            bgr_to_image_msg(scenes[0].image_bgr, header)), lambda msg: True, timeout=40)
        yield client, scenes
    finally:
        client.close()
        context.try_shutdown()
        stop_node(process)
    assert process.returncode == 0, log.read_text()


@pytest.fixture(scope='module')
def played(isolated_ros_environment, tmp_path_factory):
    """Every frame of FRAMES through a node with the default models, one at a time; also every
    HandKeypointsArray received."""
    with node_with_default_models(tmp_path_factory,
                                  'hand_cpm_default_model_test_client') as (client, scenes):
        frames = []
        for index, scene in zip(FRAMES, scenes):
            header = client.header()
            result = client.result_of(bgr_to_image_msg(scene.image_bgr, header))
            frames.append(Played(index, scene, header, result))
        received = list(client.hands)
    return frames, received


@dataclass
class Burst:
    """BURST frames published back to back, the node's results for them (None where it dropped
    the frame) in the order they arrived, and its 'dropped frames' count before and after."""
    headers: list[Header]
    results: list[HandKeypointsArray | None]
    arrival_order: list[int]
    dropped_before: int
    dropped_after: int


def dropped_frames(client: Client) -> int:
    """The 'dropped frames' value of the newest diagnostics message from the node."""
    status = [s for m in client.diagnostics for s in m.status if s.values][-1]
    return int({v.key: v.value for v in status.values}['dropped frames'])


@pytest.fixture(scope='module')
def burst(isolated_ros_environment, tmp_path_factory):
    """BURST held-out frames (FRAMES over and over, each with its own stamp) published at once to
    a node with the default models, after it has answered one frame."""
    with node_with_default_models(tmp_path_factory, 'hand_cpm_burst_test_client',
                                  KEEP_ALL_IMAGES) as (client, scenes):
        diagnostics_seen = len(client.diagnostics)
        assert client.wait_for(lambda: len(client.diagnostics) > diagnostics_seen + 1), \
            'no diagnostics from the node'
        dropped_before = dropped_frames(client)
        headers = [client.header() for _ in range(BURST)]
        messages = [bgr_to_image_msg(scenes[number % len(scenes)].image_bgr, header)
                    for number, header in enumerate(headers)]
        # a publisher that keeps the whole burst until the node has it (the client's keeps 10)
        publisher = client.node.create_publisher(Image, 'image', 2 * BURST)
        assert client.wait_for(lambda: publisher.get_subscription_count() > 0)
        first_result = len(client.hands)
        for message in messages:
            publisher.publish(message)
        assert client.wait_for(lambda: client.result_for(headers[-1]) is not None, timeout=40), \
            'no result for the newest frame of the burst'
        diagnostics_seen = len(client.diagnostics)
        assert client.wait_for(lambda: len(client.diagnostics) > diagnostics_seen + 1)
        stamps = [(header.stamp.sec, header.stamp.nanosec) for header in headers]
        arrival_order = [stamps.index((msg.header.stamp.sec, msg.header.stamp.nanosec))
                         for msg in client.hands[first_result:]]
        result = Burst(headers, [client.result_for(header) for header in headers], arrival_order,
                       dropped_before, dropped_frames(client))
    return result


def test_a_burst_is_worked_off_newest_first_and_every_skipped_frame_is_counted(burst):
    processed = [number for number, result in enumerate(burst.results) if result is not None]
    dropped = burst.dropped_after - burst.dropped_before
    # the newest frame is never the one dropped, and a frame is answered at most once, in order
    assert processed[-1] == BURST - 1
    assert burst.arrival_order == processed, 'results came out of order or twice'
    # no queue: frames the node could not keep up with were skipped, and each of them counted
    assert dropped >= 1 and len(processed) < BURST, \
        f'{len(processed)} of {BURST} frames processed, {dropped} dropped: the node queued them'
    assert len(processed) + dropped == BURST
    for number in processed:
        assert burst.results[number].header.frame_id == FRAME_ID


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
    # the shipped localiser alone still puts a box on 4 of the 51 held-out hand-free frames at 0.35
    # (models/MODEL_CARD.md), but not on this one, which has skin-coloured distractors and arms
    frames, _ = played
    (frame,) = [frame for frame in frames if frame.index == HANDLESS_FRAME]
    params = frame.scene.params
    assert frame.scene.hands == [] and params.distractor_count > 0 and params.arms
    assert frame.result.hands == []


def test_the_fine_localizer_pass_finds_small_far_hands(isolated_ros_environment, tmp_path_factory):
    """fine_localizer_model:=shipped over DDS: in held-out frames 44, 74 and 195 (seed 12), hands of
    7-11% of the frame height, the shipped localiser alone misses a hand at 0.40, the threshold the
    fine pass was judged at alone (test_localizer_runtime). With the fine pass the node reports every hand,
    where its rendered hand is."""
    shipped_model(FINE_LOCALIZER_NAME)
    with node_with_default_models(tmp_path_factory, 'hand_cpm_fine_pass_test_client',
                                  'fine_localizer_model:=shipped', 'localizer_threshold:=0.4') as (client, _):
        for index in SMALL_HAND_FRAMES:
            scene = render_sample('frame', SEED, index)
            result = client.result_of(bgr_to_image_msg(scene.image_bgr, client.header()))
            truths = np.array([truth_box(hand, 640, 480) for hand in scene.hands])
            found = np.array([roi_to_box(hand.box) for hand in result.hands]).reshape(-1, 4)
            overlaps = box_iou_matrix(truths, found) if len(found) else np.zeros((len(truths), 0))
            assert len(found) == len(truths) and (overlaps.max(axis=1) >= MATCH_IOU).all(), (index, overlaps)
