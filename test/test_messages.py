"""The package's messages: they import, the HandKeypoints constants match the shared keypoint
table, a fully filled HandKeypointsArray crosses processes over real DDS with every field intact,
and HandRegions are built from boxes with the image's header; the example consumer
(examples/pinch_watcher.py) reads them across processes."""
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hand_cpm_ros.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS

msg_module = pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')
HandKeypoints = msg_module.HandKeypoints
HandKeypointsArray = msg_module.HandKeypointsArray
HandRegions = msg_module.HandRegions

FIXTURES = Path(__file__).parent / 'fixtures'
sys.path.insert(0, str(FIXTURES))
from publish_hands import example_array  # noqa: E402


def test_keypoint_constants_match_shared_table():
    assert HandKeypoints.NUM_KEYPOINTS == NUM_KEYPOINTS == 21
    for index, name in enumerate(KEYPOINT_NAMES):
        assert getattr(HandKeypoints, name.upper()) == index
    assert (HandKeypoints.HANDEDNESS_UNKNOWN, HandKeypoints.HANDEDNESS_LEFT,
            HandKeypoints.HANDEDNESS_RIGHT) == (0, 1, 2)


def test_defaults_have_21_keypoints_and_no_3d():
    hand = HandKeypoints()
    assert len(hand.keypoints) == 21 and len(hand.confidences) == 21
    assert list(hand.keypoints_3d) == []
    assert hand.handedness == HandKeypoints.HANDEDNESS_UNKNOWN


def test_hand_regions_carry_the_image_header_and_the_pixels_of_each_box():
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    from hand_cpm_ros.ros_messages import hand_regions_msg, roi_to_box

    header = Header(stamp=Time(sec=1234, nanosec=567), frame_id='camera_color_optical_frame')
    msg = hand_regions_msg(header, [(99.5, 99.5, 219.5, 239.5), (0.2, 10.2, 30.7, 40.1)])
    assert isinstance(msg, HandRegions) and msg.header == header
    assert [(r.x_offset, r.y_offset, r.width, r.height) for r in msg.regions] == \
        [(100, 100, 120, 140), (1, 11, 30, 30)]
    assert roi_to_box(msg.regions[0]) == (99.5, 99.5, 219.5, 239.5)
    assert list(hand_regions_msg(header, []).regions) == []


def _wait_for(predicate, executor, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_array_crosses_processes_intact(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    publisher = subprocess.Popen([sys.executable, str(FIXTURES / 'publish_hands.py')])
    node = Node('hands_test_subscriber', context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    received = []
    node.create_subscription(HandKeypointsArray, 'hands', received.append, 10)
    try:
        assert _wait_for(lambda: received, executor, timeout=30.0), 'no HandKeypointsArray arrived'
    finally:
        publisher.send_signal(signal.SIGINT)
        publisher.wait(timeout=10)
        executor.shutdown()
        node.destroy_node()

    got, sent = received[0], example_array()
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1234, 567_000_000)
    assert got.header.frame_id == 'camera_color_optical_frame'
    assert (got.image_width, got.image_height) == (640, 480)
    assert len(got.hands) == 2
    for g, s in zip(got.hands, sent.hands):
        assert [(p.x, p.y, p.z) for p in g.keypoints] == [(p.x, p.y, p.z) for p in s.keypoints]
        assert list(g.confidences) == pytest.approx(list(s.confidences), abs=1e-6)
        assert g.score == pytest.approx(s.score, abs=1e-6)
        assert (g.box.x_offset, g.box.y_offset, g.box.width, g.box.height) == \
            (s.box.x_offset, s.box.y_offset, s.box.width, s.box.height)
        assert g.handedness == s.handedness
        assert g.handedness_score == pytest.approx(0.9, abs=1e-6)
        assert g.track_id == s.track_id
    assert got.hands[0].keypoints_3d == []
    assert len(got.hands[1].keypoints_3d) == 21
    assert math.isnan(got.hands[1].keypoints_3d[3].z)
    assert got.hands[1].keypoints_3d[4].x == pytest.approx(0.04)


def _hand(track_id, tip_gap_px, handedness=HandKeypoints.HANDEDNESS_LEFT):
    """A hand in a 100 px box whose thumb and index tips are `tip_gap_px` apart, all keypoints sure."""
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import RegionOfInterest

    hand = HandKeypoints()
    hand.keypoints = [Point(x=200.0, y=200.0, z=0.0) for _ in range(21)]
    hand.keypoints[HandKeypoints.INDEX_TIP] = Point(x=200.0 + tip_gap_px, y=200.0, z=0.0)
    hand.confidences = [0.9] * 21
    hand.box = RegionOfInterest(x_offset=150, y_offset=150, width=100, height=80)
    hand.handedness, hand.track_id = handedness, track_id
    return hand


def test_the_example_consumer_reports_pinches_by_track_over_dds(ros_context):
    """examples/pinch_watcher.py, a separate process, hears a pinching hand start and stop (not
    at a gap between pinch_ratio and release_ratio), names its track and side, and says nothing
    of an open hand or of a hand whose tips are unsure."""
    import threading

    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    watcher = subprocess.Popen([sys.executable, str(Path(__file__).parents[1] / 'examples' / 'pinch_watcher.py')],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True).start()
    node = Node('pinch_test_publisher', context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    publisher = node.create_publisher(HandKeypointsArray, 'hands', 10)
    unsure = _hand(9, 5.0)
    unsure.confidences[HandKeypoints.THUMB_TIP] = 0.1
    pinching = HandKeypointsArray(hands=[_hand(7, 10.0), _hand(8, 60.0), unsure])
    loosened = HandKeypointsArray(hands=[_hand(7, 25.0), _hand(8, 60.0), unsure])   # under release_ratio
    released = HandKeypointsArray(hands=[_hand(7, 40.0), _hand(8, 60.0), unsure])

    def publish_until(msg, text):
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not any(text in line for line in lines):
            if publisher.get_subscription_count():
                publisher.publish(msg)
            executor.spin_once(timeout_sec=0.05)
        return any(text in line for line in lines)

    try:
        assert publish_until(pinching, 'track 7 (left) pinches, gap 0.10'), lines
        for _ in range(20):
            publisher.publish(loosened)
            executor.spin_once(timeout_sec=0.05)
        assert not any('lets go' in line for line in lines), lines   # a gap of 0.25 still pinches
        assert publish_until(released, 'track 7 lets go'), lines   # 0.4 does not
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=10)
        executor.shutdown()
        node.destroy_node()
    assert watcher.returncode == 0
    assert sum('pinches' in line for line in lines) == 1, lines
    assert not any('track 8' in line or 'track 9' in line for line in lines), lines
