"""Pipeline results -> ROS messages (HandKeypointsArray, MarkerArray, DiagnosticArray), hand boxes
-> HandRegions, and sensor messages <-> numpy images.

Uses the message classes only, never rclpy, so it is testable without a ROS graph. Colour images go
through cv_bridge when it imports (a robot with ROS installed) and through the package's own
image_conversion otherwise (these machines: no ROS 2 cv_bridge on PyPI).

Pixel convention: a RegionOfInterest covers whole pixels x_offset .. x_offset + width - 1, i.e. the
continuous box (x_offset - 0.5, y_offset - 0.5, x_offset + width - 0.5, y_offset + height - 0.5)
with pixel centres at integer coordinates.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from .image_conversion import ImageConversionError, bgr_to_image_fields, depth_to_metres, image_to_bgr
from .keypoints import FINGER_COLORS_BGR, NUM_KEYPOINTS, SKELETON, finger_of
from .msg import HandKeypoints, HandKeypointsArray, HandRegions
from .pipeline import FrameResult

try:  # a robot's ROS 2 cv_bridge; PyPI's cv-bridge is ROS 1 and is not used
    from cv_bridge import CvBridge, CvBridgeError
    _BRIDGE = CvBridge()
except ImportError:
    _BRIDGE = None

# Markers without depth: a flat picture of the hands 1 m in front of the camera (optical frame:
# x right, y down, z forward), 1 image pixel = 1 mm, centred on the optical axis.
FLAT_MARKER_DEPTH_M = 1.0
FLAT_MARKER_PIXEL_M = 0.001
JOINT_DIAMETER_M = 0.012
BONE_WIDTH_M = 0.005


def image_msg_to_bgr(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 BGR; ImageConversionError names what is wrong."""
    if _BRIDGE is not None:
        try:
            return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding='bgr8')
        except CvBridgeError as error:
            raise ImageConversionError(f'cv_bridge cannot convert the {msg.encoding!r} '
                                       f'{msg.width}x{msg.height} image to bgr8: {error}') from error
    return image_to_bgr(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        bool(msg.is_bigendian))


def compressed_msg_to_bgr(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> (H, W, 3) uint8 BGR."""
    data = np.frombuffer(msg.data, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.size == 0:
        raise ImageConversionError(f'cannot decode the {msg.format!r} compressed image '
                                   f'({data.size} bytes): not a complete JPEG/PNG')
    return image


def depth_msg_to_metres(msg: Image) -> np.ndarray:
    """Registered depth sensor_msgs/Image (16UC1 mm or 32FC1 m) -> (H, W) float32 metres,
    NaN where missing."""
    return depth_to_metres(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                           bool(msg.is_bigendian))


def bgr_to_image_msg(image_bgr: np.ndarray, header: Header) -> Image:
    """(H, W, 3) uint8 BGR -> sensor_msgs/Image bgr8 with `header` (the source's stamp/frame)."""
    return Image(header=header, **bgr_to_image_fields(image_bgr))


def camera_matrix_from_info(info: CameraInfo) -> np.ndarray:
    """The 3x3 K of a CameraInfo; ValueError when the camera is not calibrated."""
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0):
        raise ValueError(f'camera_info K has no valid focal lengths (fx={k[0, 0]}, fy={k[1, 1]}): '
                         f'calibrate the camera, or disable use_depth')
    return k


def roi_to_box(roi: RegionOfInterest) -> tuple[float, float, float, float]:
    """RegionOfInterest -> continuous (x0, y0, x1, y1) box in pixels."""
    return (roi.x_offset - 0.5, roi.y_offset - 0.5,
            roi.x_offset + roi.width - 0.5, roi.y_offset + roi.height - 0.5)


def box_to_roi(box: tuple[float, float, float, float]) -> RegionOfInterest:
    """Continuous (x0, y0, x1, y1) box (already clipped to the image) -> the pixels it covers."""
    x0, y0, x1, y1 = (int(round(value + 0.5)) for value in box)
    return RegionOfInterest(x_offset=max(x0, 0), y_offset=max(y0, 0),
                            width=max(x1 - x0, 0), height=max(y1 - y0, 0))


def hand_regions_msg(header: Header,
                     boxes: Sequence[tuple[float, float, float, float]]) -> HandRegions:
    """The HandRegions of one image: its `header` (stamp, frame_id) and continuous (x0, y0, x1, y1)
    `boxes`, already clipped to the image."""
    return HandRegions(header=header, regions=[box_to_roi(box) for box in boxes])


def hands_to_msg(result: FrameResult, header: Header) -> HandKeypointsArray:
    """The HandKeypointsArray of one processed frame, stamped like its image."""
    msg = HandKeypointsArray(header=header, image_width=result.image_size[0],
                             image_height=result.image_size[1])
    for hand in result.hands:
        item = HandKeypoints()
        item.keypoints = [Point(x=float(x), y=float(y), z=0.0) for x, y in hand.keypoints]
        item.confidences = [float(score) for score in hand.scores]
        item.score = float(hand.score)
        item.box = box_to_roi(hand.box)
        item.handedness = int(hand.handedness)
        item.handedness_score = float(hand.handedness_score)
        item.track_id = int(hand.track_id)
        if hand.keypoints_3d is not None:
            item.keypoints_3d = [Point(x=float(x), y=float(y), z=float(z))
                                 for x, y, z in hand.keypoints_3d]
        msg.hands.append(item)
    return msg


def _rgba(bgr: tuple[int, int, int]) -> ColorRGBA:
    return ColorRGBA(r=bgr[2] / 255.0, g=bgr[1] / 255.0, b=bgr[0] / 255.0, a=1.0)


def hands_to_markers(result: FrameResult, header: Header, keypoint_threshold: float) -> MarkerArray:
    """RViz markers: a DELETEALL (so hands that are gone vanish), then per hand a LINE_LIST
    skeleton and a SPHERE_LIST of joints (ids = track id), coloured per finger.

    With keypoints_3d (depth + camera_info) they are in 3D in the camera frame; otherwise a flat
    picture at FLAT_MARKER_DEPTH_M (see the constants). Joints below keypoint_threshold, or
    without depth, are left out, and so are bones that touch them.
    """
    markers = MarkerArray()
    markers.markers.append(Marker(header=header, action=Marker.DELETEALL))
    width, height = result.image_size
    for hand in result.hands:
        if hand.keypoints_3d is not None:
            positions = hand.keypoints_3d
        else:
            positions = np.column_stack([
                (hand.keypoints[:, 0] - (width - 1) / 2.0) * FLAT_MARKER_PIXEL_M,
                (hand.keypoints[:, 1] - (height - 1) / 2.0) * FLAT_MARKER_PIXEL_M,
                np.full(NUM_KEYPOINTS, FLAT_MARKER_DEPTH_M)])
        shown = (hand.scores >= keypoint_threshold) & np.all(np.isfinite(positions), axis=1)
        points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in positions]
        joints = Marker(header=header, ns='hand_joints', id=int(hand.track_id),
                        type=Marker.SPHERE_LIST, action=Marker.ADD)
        joints.pose.orientation.w = 1.0
        joints.scale.x = joints.scale.y = joints.scale.z = JOINT_DIAMETER_M
        bones = Marker(header=header, ns='hand_skeleton', id=int(hand.track_id),
                       type=Marker.LINE_LIST, action=Marker.ADD)
        bones.pose.orientation.w = 1.0
        bones.scale.x = BONE_WIDTH_M
        for index in np.flatnonzero(shown):
            joints.points.append(points[index])
            joints.colors.append(_rgba(FINGER_COLORS_BGR[finger_of(int(index))]))
        for parent, child in SKELETON:
            if shown[parent] and shown[child]:
                colour = _rgba(FINGER_COLORS_BGR[finger_of(child)])
                bones.points.extend((points[parent], points[child]))
                bones.colors.extend((colour, colour))
        markers.markers.extend((bones, joints))
    return markers


def diagnostics_msg(header: Header, name: str, hardware_id: str, level: bytes, message: str,
                    values: Mapping[str, object]) -> DiagnosticArray:
    """A DiagnosticArray with one status (level: DiagnosticStatus.OK / WARN / ERROR); values are
    shown as strings (floats with 3 decimals)."""
    def text(value: object) -> str:
        if isinstance(value, float):
            return 'nan' if math.isnan(value) else f'{value:.3f}'
        return str(value)

    status = DiagnosticStatus(level=level, name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=key, value=text(value))
                                      for key, value in values.items()])
    return DiagnosticArray(header=header, status=[status])
