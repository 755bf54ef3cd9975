"""A consumer of hand_cpm_node's `hands` topic, as a gesture node would be: it logs when a tracked
hand starts pinching (thumb tip and index tip closer than `pinch_ratio` of the hand's box) and
when it lets go (further apart than `release_ratio`: the gap between the two keeps a pinch near
the threshold from flickering). It shows what a consumer uses: the keypoint constants, the
confidences, the box, the side and the track id.

    .venv/bin/python examples/pinch_watcher.py --ros-args -r hands:=/hands -p pinch_ratio:=0.2
    .venv/bin/python examples/pinch_watcher.py --ros-args -r hands:=/hand_cpm_demo/hands   # beside hand-cpm-demo
"""
import math
import sys

import rclpy
from rclpy.node import Node

from hand_cpm_ros.msg import HandKeypoints, HandKeypointsArray

SIDES = {HandKeypoints.HANDEDNESS_LEFT: 'left', HandKeypoints.HANDEDNESS_RIGHT: 'right'}


def pinch_gap(hand: HandKeypoints, min_confidence: float) -> float | None:
    """Thumb tip to index tip as a share of the box's longer side; None when either tip is unsure
    (hidden or out of the image)."""
    thumb, index = HandKeypoints.THUMB_TIP, HandKeypoints.INDEX_TIP
    if min(hand.confidences[thumb], hand.confidences[index]) < min_confidence:
        return None
    tips = hand.keypoints[thumb], hand.keypoints[index]
    return math.dist((tips[0].x, tips[0].y), (tips[1].x, tips[1].y)) / max(hand.box.width, hand.box.height, 1)


class PinchWatcher(Node):
    def __init__(self):
        super().__init__('pinch_watcher')
        self.pinch_ratio = self.declare_parameter('pinch_ratio', 0.2).value
        self.release_ratio = self.declare_parameter('release_ratio', 0.3).value
        self.min_confidence = self.declare_parameter('min_confidence', 0.3).value
        self.pinching: set[int] = set()     # track ids
        self.create_subscription(HandKeypointsArray, 'hands', self.on_hands, 10)

    def on_hands(self, msg: HandKeypointsArray) -> None:
        now_pinching = set()
        for hand in msg.hands:
            gap = pinch_gap(hand, self.min_confidence)
            was_pinching = hand.track_id in self.pinching
            if gap is None:                  # unsure: keep the hand's last state
                if was_pinching:
                    now_pinching.add(hand.track_id)
            elif gap < (self.release_ratio if was_pinching else self.pinch_ratio):
                now_pinching.add(hand.track_id)
                if not was_pinching:
                    side = SIDES.get(hand.handedness, 'unknown side')
                    self.get_logger().info(f'track {hand.track_id} ({side}) pinches, gap {gap:.2f}')
        for track_id in self.pinching - now_pinching:
            self.get_logger().info(f'track {track_id} lets go')
        self.pinching = now_pinching


def main() -> int:
    rclpy.init()
    node = PinchWatcher()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
