"""hand_cpm_node: the ROS 2 shell around HandPipeline (`ros2 run hand_cpm_ros hand_cpm_node`).

Subscribes
  image (sensor_msgs/Image), or image/compressed (sensor_msgs/CompressedImage) when
      compressed_input is true; sensor-data QoS, overridable by parameters
      (qos_overrides./image.subscription.reliability, ...). Remap both names when needed.
  hand_regions (hand_cpm_ros/HandRegions): hand boxes from another detector, stamped like the
      image they were found in. The last REGIONS_BUFFER messages are kept; a frame uses those with
      its frame_id and its stamp, or the closest stamp within regions_sync_tolerance, and never
      others. Regions that arrive after their frame was processed are not used.
  depth (sensor_msgs/Image 16UC1 mm or 32FC1 m, registered to the colour image) and camera_info
      (sensor_msgs/CameraInfo) when use_depth is true: 3D keypoints and 3D markers.
Publishes
  hands (hand_cpm_ros/HandKeypointsArray), hands/heatmap (sensor_msgs/Image bgr8, only while
  someone subscribes), hands/markers (visualization_msgs/MarkerArray), /diagnostics (1 Hz).

Always the newest frame: the image callback only keeps the latest message (a frame it replaces
unprocessed counts as dropped) and wakes a worker in its own callback group of a multi-threaded
executor, so a slow backend never builds a queue and never blocks the parameter services or the
other subscriptions.

Parameters: backend, model_path, engine_path, localizer_model, localizer_threshold, threads,
localizer_threads, localizer_flip_averaging, fine_localizer_model, fine_localizer_max_height,
localizer_wide_factor, compressed_input and use_depth are read-only (they
build the backends and the subscriptions at start; restart the node to change them). All others can
be changed at run time and are validated first.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from .backends import BACKEND_NAMES, BackendError, create_backend
from .image_conversion import ImageConversionError
from .localizer import (DEFAULT_FINE_MAX_HEIGHT, DEFAULT_LOCALIZER_THREADS, MAX_WIDE_FACTOR, WIDE_FACTOR,
                        HandLocalizer, PIPELINE_SCORE_THRESHOLD, load_localizer)
from .msg import HandKeypointsArray, HandRegions
from .pipeline import (DEFAULT_LOCALIZER_NAME, MAX_LOCALIZER_INTERVAL, HandPipeline, PipelineSettings,
                       default_model_path, draw_result, fine_localizer_path)
from .ros_messages import (bgr_to_image_msg, camera_matrix_from_info, compressed_msg_to_bgr,
                           depth_msg_to_metres, diagnostics_msg, hands_to_markers, hands_to_msg,
                           image_msg_to_bgr, roi_to_box)

NODE_NAME = 'hand_cpm_node'
WARN_PERIOD_S = 5.0
STATS_WINDOW_S = 5.0
DEPTH_WINDOW_PX = 5
REGIONS_BUFFER = 30  # HandRegions messages kept (and queued by DDS): about 1 s of a 30 Hz camera

# ROS parameter -> PipelineSettings field; validated together by PipelineSettings.
PIPELINE_PARAMETERS = {
    'keypoint_threshold': 'keypoint_threshold',
    'hand_threshold': 'hand_threshold',
    'new_hand_threshold': 'new_hand_threshold',
    'min_hand_size': 'min_hand_size',
    'max_hands': 'max_hands',
    'crop_margin': 'crop_margin',
    'tracking': 'tracking',
    'track_half_life': 'track_half_life',
    'localizer_interval': 'localizer_interval',
    'smoothing': 'smoothing',
    'one_euro_min_cutoff': 'min_cutoff',
    'one_euro_beta': 'beta',
    'flip_averaging': 'flip_averaging',
}


def _float_range(low: float, high: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=low, to_value=high, step=0.0)]


def _int_range(low: int, high: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=low, to_value=high, step=1)]


# name -> (default, descriptor fields)
PARAMETERS = {
    'backend': ('auto', dict(
        description='Inference backend, chosen at start',
        additional_constraints=f'one of {", ".join(BACKEND_NAMES)}; auto = TensorRT when '
                               'engine_path and a GPU exist, else ONNX Runtime, else torch',
        read_only=True)),
    'model_path': ('', dict(
        description='ONNX model (.onnx) or checkpoint (.pt); empty = the shipped default model',
        additional_constraints='an existing file', read_only=True)),
    'engine_path': ('', dict(
        description='TensorRT engine (hand-cpm-build-engine); empty = none', read_only=True)),
    'localizer_model': ('', dict(
        description='Hand localiser for whole frames (.onnx, .pt, or a TensorRT engine); empty = '
                    'the shipped models/hand_localizer.onnx when present, else none (crops come '
                    'from tracking and the hand_regions topic); "none" = disabled',
        read_only=True)),
    'localizer_threshold': (PIPELINE_SCORE_THRESHOLD, dict(
        description='Hand boxes of the localiser scoring below this are not cropped; a box\'s hand '
                    'still needs hand_threshold (its score times the mean keypoint confidence)',
        floating_point_range=_float_range(0.01, 0.99), read_only=True)),
    'threads': (0, dict(description='CPU threads of the keypoint backend; 0 = its default',
                        integer_range=_int_range(0, 64), read_only=True)),
    'localizer_threads': (DEFAULT_LOCALIZER_THREADS, dict(
        description='CPU threads of an ONNX localiser; 1 = on the calling thread, which leaves '
                    'the cores to the keypoint backend (faster on small CPUs). A .pt localiser '
                    'uses the keypoint backend\'s threads (torch sets them process-wide)',
        integer_range=_int_range(1, 64), read_only=True)),
    'localizer_flip_averaging': (False, dict(
        description='Also run the localiser on each frame mirrored and average the two answers: '
                    'fewer false and misplaced hand boxes for twice the localiser\'s compute',
        read_only=True)),
    'fine_localizer_model': ('', dict(
        description='A second localiser pass at a larger input (the localiser exported with a larger '
                    '--frame-size) whose small boxes are merged in: more small, far hands found for '
                    'about twice the localiser\'s compute. '
                    'Empty = off; "shipped" = the shipped models/hand_localizer_fine.onnx',
        read_only=True)),
    'fine_localizer_max_height': (DEFAULT_FINE_MAX_HEIGHT, dict(
        description='Boxes of the fine localiser pass count only when shorter than this share of the '
                    'frame height (larger hands are the first pass\'s)',
        floating_point_range=_float_range(0.05, 1.0), read_only=True)),
    'localizer_wide_factor': (WIDE_FACTOR, dict(
        description='Also run the localiser on the frame shrunk this many times more inside grey '
                    'padding and merge in its boxes over a quarter of the frame height: hands that '
                    'fill the frame, and many more real close-ups, found for one more localiser '
                    'pass (while tracks follow hands, the passes take turns). 1 = off',
        floating_point_range=_float_range(1.0, MAX_WIDE_FACTOR), read_only=True)),
    'compressed_input': (False, dict(
        description='Subscribe to image/compressed (CompressedImage) instead of image',
        read_only=True)),
    'use_depth': (False, dict(
        description='Subscribe to a registered depth image and camera_info for 3D keypoints',
        read_only=True)),
    'keypoint_threshold': (PipelineSettings.keypoint_threshold, dict(
        description='Keypoints below this confidence are not drawn and do not shape boxes',
        floating_point_range=_float_range(0.0, 1.0))),
    'hand_threshold': (PipelineSettings.hand_threshold, dict(
        description='Hands whose score is below this are dropped and their track ends',
        floating_point_range=_float_range(0.0, 1.0))),
    'new_hand_threshold': (PipelineSettings.new_hand_threshold, dict(
        description='With tracking, a hand that continues no track must score this much to start '
                    'one (weaker hands only continue tracks)',
        floating_point_range=_float_range(0.0, 1.0))),
    'min_hand_size': (PipelineSettings.min_hand_size, dict(
        description='Hands whose keypoint box is smaller than this fraction of the image\'s '
                    'shorter side are dropped (and their track ends)',
        floating_point_range=_float_range(0.0, 1.0))),
    'max_hands': (PipelineSettings.max_hands, dict(
        description='At most this many hands (crops) per frame', integer_range=_int_range(1, 8))),
    'crop_margin': (PipelineSettings.crop_margin, dict(
        description='Margin added on each side of a hand box before cropping, fraction of its '
                    'longer side', floating_point_range=_float_range(0.0, 2.0))),
    'tracking': (PipelineSettings.tracking, dict(
        description='Follow hands: crops from the previous frame\'s keypoints, stable track ids')),
    'track_half_life': (PipelineSettings.track_half_life, dict(
        description='Seconds in which a track\'s evidence (the localiser score or ROI that found '
                    'its hand) halves while only tracking finds the hand; the hand score is mean '
                    'keypoint confidence x evidence, so a track the localiser never confirms '
                    'again ends', floating_point_range=_float_range(0.05, 60.0))),
    'localizer_interval': (PipelineSettings.localizer_interval, dict(
        description='While tracking follows hands, run the localiser on every N-th frame only, '
                    'one of its passes at a time (saves its cost; a new hand appears up to '
                    'N x passes - 1 frames late); with no track it runs on every frame, all passes',
        integer_range=_int_range(1, MAX_LOCALIZER_INTERVAL))),
    'smoothing': (PipelineSettings.smoothing, dict(
        description='One Euro smoothing of keypoints per track',
        additional_constraints='needs tracking')),
    'one_euro_min_cutoff': (PipelineSettings.min_cutoff, dict(
        description='One Euro filter cut-off at rest (Hz); lower = smoother, more lag',
        floating_point_range=_float_range(0.01, 100.0))),
    'one_euro_beta': (PipelineSettings.beta, dict(
        description='One Euro filter speed coefficient; higher = less lag when moving',
        floating_point_range=_float_range(0.0, 10.0))),
    'flip_averaging': (PipelineSettings.flip_averaging, dict(
        description='Also run every crop mirrored, in the same batch, and average the two '
                    'answers: more accurate keypoints (and sides) for twice the keypoint '
                    'network\'s compute')),
    'heatmap_alpha': (0.5, dict(description='Opacity of the belief maps in hands/heatmap',
                                floating_point_range=_float_range(0.0, 1.0))),
    'publish_markers': (True, dict(description='Publish hands/markers for RViz')),
    'regions_sync_tolerance': (0.0, dict(
        description='Largest stamp difference (s) between a frame and the hand_regions used '
                    'for it; 0 = only regions with the frame\'s own stamp',
        floating_point_range=_float_range(0.0, 1.0))),
    'depth_sync_tolerance': (0.05, dict(
        description='Largest stamp difference (s) between a colour frame and the depth used',
        floating_point_range=_float_range(0.0, 1.0))),
}


@dataclass
class _Regions:
    """One HandRegions message, as the node keeps it."""
    stamp_ns: int
    frame_id: str
    boxes: list[tuple[float, float, float, float]]


class StartupError(RuntimeError):
    """The node cannot start (missing model, bad read-only parameter); one line explains why."""


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival


class _Statistics:
    """Rates and latencies over the last STATS_WINDOW_S seconds, counters since start."""

    def __init__(self):
        self.received: collections.deque[float] = collections.deque()
        self.processed: collections.deque[float] = collections.deque()
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.hands: collections.deque[int] = collections.deque(maxlen=300)
        self.dropped_frames = 0
        self.bad_frames = 0
        self.lock = threading.Lock()

    def _trim(self, times: collections.deque[float], now: float) -> None:
        while times and times[0] < now - STATS_WINDOW_S:
            times.popleft()

    def on_received(self, now: float, replaced_unprocessed: bool) -> None:
        with self.lock:
            self.received.append(now)
            self._trim(self.received, now)
            self.dropped_frames += int(replaced_unprocessed)

    def on_bad_frame(self) -> None:
        with self.lock:
            self.bad_frames += 1

    def on_processed(self, now: float, latency_ms: float, hands: int) -> None:
        with self.lock:
            self.processed.append(now)
            self._trim(self.processed, now)
            self.latencies_ms.append(latency_ms)
            self.hands.append(hands)

    def summary(self, now: float) -> dict[str, object]:
        with self.lock:
            self._trim(self.received, now)
            self._trim(self.processed, now)
            latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
            return {
                'input rate (Hz)': len(self.received) / STATS_WINDOW_S,
                'processed rate (Hz)': len(self.processed) / STATS_WINDOW_S,
                'dropped frames': self.dropped_frames,
                'bad input frames': self.bad_frames,
                'latency median (ms)': float(np.median(latencies)),
                'latency p95 (ms)': float(np.percentile(latencies, 95)),
                'hands per frame': float(np.mean(self.hands)) if self.hands else 0.0,
            }


class HandCpmNode(Node):
    """Parameters, subscriptions and publishers around one HandPipeline."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._setup()
        except BaseException:
            self.destroy_node()
            raise

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        for name, (default, fields) in PARAMETERS.items():
            try:
                self.declare_parameter(name, default, ParameterDescriptor(name=name, **fields))
            except (InvalidParameterTypeException, InvalidParameterValueException) as error:
                hint = ''
                if isinstance(error, InvalidParameterTypeException) and isinstance(default, float):
                    hint = (' (ROS 2 reads a number without a decimal point as an integer: '
                            'give it one, e.g. 1.0 instead of 1, on the command line and in YAML)')
                raise StartupError(f'parameter {name}: {error}{hint}') from error
        value = {name: self.get_parameter(name).value for name in PARAMETERS}

        model_path = value['model_path'] or str(default_model_path())
        localizer = self._create_localizer(value)
        try:
            backend = create_backend(value['backend'], model_path=model_path,
                                     engine_path=value['engine_path'] or None,
                                     threads=value['threads'] or None,
                                     logger=self.get_logger().info)
            self.pipeline = HandPipeline(backend, localizer=localizer, **{
                field: value[name] for name, field in PIPELINE_PARAMETERS.items()})
        except (BackendError, ValueError) as error:
            raise StartupError(f'{error} (model_path={model_path!r}, '
                               f'backend={value["backend"]!r})') from error
        self.model_path = model_path
        self.heatmap_alpha = value['heatmap_alpha']
        self.publish_markers = value['publish_markers']
        self.regions_sync_tolerance = value['regions_sync_tolerance']
        self.depth_sync_tolerance = value['depth_sync_tolerance']
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._lock = threading.Lock()
        self._latest: _Frame | None = None
        self._regions: collections.deque[_Regions] = collections.deque(maxlen=REGIONS_BUFFER)
        self._depth: collections.deque[Image] = collections.deque(maxlen=10)
        self._camera_matrix: np.ndarray | None = None
        self._last_warning: dict[str, float] = {}
        self.stats = _Statistics()

        inputs = MutuallyExclusiveCallbackGroup()
        worker = MutuallyExclusiveCallbackGroup()
        overrides = QoSOverridingOptions.with_default_policies()
        # Before the image subscription: when a frame and its regions wait together, the executor
        # usually takes the regions first.
        self.create_subscription(HandRegions, 'hand_regions', self._on_hand_regions,
                                 REGIONS_BUFFER, callback_group=inputs)
        if value['compressed_input']:
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image,
                                     qos_profile_sensor_data, callback_group=inputs,
                                     qos_overriding_options=overrides)
        else:
            self.create_subscription(Image, 'image', self._on_image, qos_profile_sensor_data,
                                     callback_group=inputs, qos_overriding_options=overrides)
        if value['use_depth']:
            self.create_subscription(Image, 'depth', self._on_depth, qos_profile_sensor_data,
                                     callback_group=inputs, qos_overriding_options=overrides)
            self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info,
                                     qos_profile_sensor_data, callback_group=inputs,
                                     qos_overriding_options=overrides)
        self.hands_pub = self.create_publisher(HandKeypointsArray, 'hands', 10)
        self.heatmap_pub = self.create_publisher(Image, 'hands/heatmap', 1)
        self.markers_pub = self.create_publisher(MarkerArray, 'hands/markers', 1)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 1)
        self._wake_worker = self.create_guard_condition(self._process_latest, callback_group=worker)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=inputs)
        self.get_logger().info(
            f'ready: {backend.describe()}, model {model_path} ({backend.info.variant}, '
            f'input {backend.info.input_size}), localiser '
            f'{"none" if localizer is None else localizer.describe()}; listening on '
            f'{self.resolve_topic_name("image/compressed" if value["compressed_input"] else "image")}')

    def _create_localizer(self, value: dict) -> HandLocalizer | None:
        """The hand localiser of parameter localizer_model (see its description), or None."""
        name = value['localizer_model']
        if name.lower() == 'none':
            return None
        path = Path(name) if name else default_model_path(DEFAULT_LOCALIZER_NAME)
        if not name and not path.is_file():
            self.get_logger().info(f'no hand localiser ({path} is not there): crops come from '
                                   f'tracking and the hand_regions topic')
            return None
        if not path.is_file():
            raise StartupError(f'localizer_model={name!r} does not exist; give an exported '
                               f'localiser (.onnx / .pt / TensorRT engine) or "none"')
        try:
            # Up to the largest max_hands: the pipeline caps the proposals with the current
            # max_hands, which may change at run time.
            return load_localizer(path, value['localizer_threshold'], 8,
                                  value['localizer_threads'], value['threads'] or None,
                                  self.get_logger().info, value['localizer_flip_averaging'],
                                  fine_localizer_path(value['fine_localizer_model']),
                                  value['fine_localizer_max_height'], value['localizer_wide_factor'])
        except (BackendError, ValueError) as error:
            raise StartupError(f'localizer_model={str(path)!r}: {error}') from error

    # ------------------------------------------------------------------ parameters
    def _validate_parameters(self, parameters) -> SetParametersResult:
        """Refuse a change that would make invalid pipeline settings (ranges and types are
        enforced by the descriptors before this runs)."""
        changes = {PIPELINE_PARAMETERS[p.name]: p.value for p in parameters
                   if p.name in PIPELINE_PARAMETERS}
        try:
            replace(self.pipeline.settings, **changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters) -> None:
        changes = {PIPELINE_PARAMETERS[p.name]: p.value for p in parameters
                   if p.name in PIPELINE_PARAMETERS}
        if changes:
            self.pipeline.update_settings(**changes)
        for parameter in parameters:
            if parameter.name in ('heatmap_alpha', 'publish_markers', 'regions_sync_tolerance',
                                  'depth_sync_tolerance'):
                setattr(self, parameter.name, parameter.value)

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        with self._lock:
            replaced = self._latest is not None
            self._latest = _Frame(msg, now)
        self.stats.on_received(now, replaced)
        self._wake_worker.trigger()

    def _on_hand_regions(self, msg: HandRegions) -> None:
        boxes = [roi_to_box(roi) for roi in msg.regions if roi.width > 0 and roi.height > 0]
        if len(boxes) < len(msg.regions):
            self._warn(f'hand_regions: {len(msg.regions) - len(boxes)} empty region(s) ignored '
                       f'(width or height 0)')
        with self._lock:
            self._regions.append(_Regions(_nanoseconds(msg.header.stamp), msg.header.frame_id,
                                          boxes))

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._depth.append(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            matrix = camera_matrix_from_info(msg)
        except ValueError as error:
            self._warn(f'ignoring camera_info: {error}')
            return
        with self._lock:
            self._camera_matrix = matrix

    def _warn(self, text: str) -> None:
        """Log `text` at most once every WARN_PERIOD_S seconds (a broken stream repeats the same
        message every frame; a different problem gets its own line)."""
        now = time.monotonic()
        if now - self._last_warning.get(text, -float('inf')) >= WARN_PERIOD_S:
            if len(self._last_warning) > 100:
                self._last_warning.clear()
            self._last_warning[text] = now
            self.get_logger().warning(text)

    # ------------------------------------------------------------------ worker
    def _regions_for(self, header: Header) -> list[tuple[float, float, float, float]]:
        """The boxes of the buffered HandRegions for the frame of `header`: same frame_id, stamp
        closest to the frame's within regions_sync_tolerance (the newest message among equally
        close ones); none when no message qualifies. Call with self._lock held."""
        stamp = _nanoseconds(header.stamp)
        in_time = [regions for regions in self._regions
                   if abs(regions.stamp_ns - stamp) <= self.regions_sync_tolerance * 1e9]
        matching = [regions for regions in in_time if regions.frame_id == header.frame_id]
        if not matching:
            if in_time:
                self._warn(f'hand_regions for frame_id {in_time[-1].frame_id!r} not used: the '
                           f'image is in {header.frame_id!r}')
            return []
        return min(reversed(matching), key=lambda regions: abs(regions.stamp_ns - stamp)).boxes

    def _inputs_for(self, header: Header):
        """This frame's hand regions, and the depth image closest to its stamp (within
        depth_sync_tolerance) with the camera matrix, or None for both."""
        stamp = _seconds(header.stamp)
        with self._lock:
            rois = self._regions_for(header)
            if not self._depth or self._camera_matrix is None:
                return rois, None, None
            closest = min(self._depth, key=lambda m: abs(_seconds(m.header.stamp) - stamp))
            if abs(_seconds(closest.header.stamp) - stamp) > self.depth_sync_tolerance:
                return rois, None, None
            return rois, closest, self._camera_matrix

    def _process_latest(self) -> None:
        with self._lock:
            frame, self._latest = self._latest, None
        if frame is None:
            return
        header = frame.msg.header
        stamp = _seconds(header.stamp)
        rois, depth_msg, camera_matrix = self._inputs_for(header)
        try:
            image = (compressed_msg_to_bgr(frame.msg) if isinstance(frame.msg, CompressedImage)
                     else image_msg_to_bgr(frame.msg))
        except ImageConversionError as error:
            self.stats.on_bad_frame()
            self._warn(f'dropping an input image: {error}')
            return
        depth_m = None
        if depth_msg is not None:
            try:
                depth_m = depth_msg_to_metres(depth_msg)
            except ImageConversionError as error:
                self._warn(f'ignoring a depth image: {error}')
            if depth_m is not None and depth_m.shape != image.shape[:2]:
                self._warn(f'ignoring depth {depth_m.shape[1]}x{depth_m.shape[0]}: it '
                           f'must be registered to the {image.shape[1]}x'
                           f'{image.shape[0]} colour image')
                depth_m = None
        try:
            result = self.pipeline.process(image, rois, stamp=stamp if stamp > 0 else None,
                                           depth_m=depth_m,
                                           camera_matrix=None if depth_m is None else camera_matrix)
        except (ValueError, BackendError) as error:
            self.stats.on_bad_frame()
            self._warn(f'frame skipped: {error}')
            return
        if result.dropped['non_finite_maps']:
            self._warn(f'{result.dropped["non_finite_maps"]} hand crop(s) dropped: '
                       f'the backend returned NaN/inf belief maps')
        if result.dropped['roi_outside_image']:
            self._warn(f'{result.dropped["roi_outside_image"]} hand region(s) ignored: outside '
                       f'the {image.shape[1]}x{image.shape[0]} image')
        self.hands_pub.publish(hands_to_msg(result, header))
        keypoint_threshold = self.pipeline.settings.keypoint_threshold
        if self.heatmap_pub.get_subscription_count() > 0:
            self.heatmap_pub.publish(bgr_to_image_msg(
                draw_result(image, result, keypoint_threshold, self.heatmap_alpha), header))
        if self.publish_markers:
            self.markers_pub.publish(hands_to_markers(result, header, keypoint_threshold))
        now = time.monotonic()
        self.stats.on_processed(now, 1e3 * (now - frame.received), len(result.hands))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        summary = self.stats.summary(time.monotonic())
        level, message = DiagnosticStatus.OK, 'running'
        if summary['input rate (Hz)'] == 0:
            level, message = DiagnosticStatus.WARN, f'no images in the last {STATS_WINDOW_S:.0f} s'
        values = {'backend': self.pipeline.backend.describe(), 'model': self.model_path,
                  'variant': self.pipeline.backend.info.variant, **summary}
        values.update({f'hands dropped: {reason}': count
                       for reason, count in sorted(self.pipeline.dropped_total.items()) if count})
        self.diagnostics_pub.publish(diagnostics_msg(
            Header(stamp=self.get_clock().now().to_msg()), f'{self.get_name()}: hand keypoints',
            self.pipeline.backend.describe(), level, message, values))


def _seconds(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def _nanoseconds(stamp) -> int:
    """A stamp as integer nanoseconds, for exact comparisons."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; exit code 2 when it cannot start."""
    rclpy.init(args=args)
    node = None
    try:
        node = HandCpmNode()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except StartupError as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        # rclpy's signal handler shuts the context down from its own thread; when that lands
        # between the executor's ok() check and its building a wait set, spin() raises this
        # instead of ExternalShutdownException. With the context shut down it is a normal
        # Ctrl-C; anything else is a real error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
