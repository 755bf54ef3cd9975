"""The 21-keypoint hand model shared by every part of the package (OpenPose = MediaPipe order).

Indices match the constants of hand_cpm_ros/msg/HandKeypoints.msg. Pure Python: no ROS, no torch.
"""

NUM_KEYPOINTS = 21
NUM_MAPS = NUM_KEYPOINTS + 1  # belief maps: 21 keypoints + background (the last map)
BACKGROUND = NUM_KEYPOINTS     # index of the background map

FINGERS = ('thumb', 'index', 'middle', 'ring', 'little')

KEYPOINT_NAMES = (
    'wrist',
    'thumb_cmc', 'thumb_mcp', 'thumb_ip', 'thumb_tip',
    'index_mcp', 'index_pip', 'index_dip', 'index_tip',
    'middle_mcp', 'middle_pip', 'middle_dip', 'middle_tip',
    'ring_mcp', 'ring_pip', 'ring_dip', 'ring_tip',
    'little_mcp', 'little_pip', 'little_dip', 'little_tip',
)

FINGERTIPS = (4, 8, 12, 16, 20)

# Bones as (parent, child) pairs: the wrist to each finger's base, then along each finger.
SKELETON = tuple(
    pair
    for finger in range(5)
    for pair in zip((0,) + tuple(range(1 + 4 * finger, 4 + 4 * finger)),
                    range(1 + 4 * finger, 5 + 4 * finger))
)

# One BGR colour per finger (drawing), indexed by finger number 0..4; the wrist uses FINGER_COLORS[0].
FINGER_COLORS_BGR = ((0, 0, 255), (0, 200, 255), (0, 200, 0), (255, 128, 0), (255, 0, 200))


def finger_of(keypoint: int) -> int:
    """Finger number 0..4 (thumb..little) of a keypoint index; the wrist counts as the thumb's."""
    return max(0, (keypoint - 1) // 4)
