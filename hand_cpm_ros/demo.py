"""hand-cpm-demo: the whole system on a demo stream, recorded and summarised for a person.

    hand-cpm-demo [--out DIR] [--frames N] [--fps 30] [--hands 1|2|both] [--video FILE | --bag DIR]
                  [--model PATH] [--localizer PATH] [--backend NAME] [--seed S] [--offline]
                  [--warm-up-frames N] [--overwrite]

Starts hand_cpm_node as a subprocess (its ROS log under DIR/ros_log, discovery limited to this
machine, topics under the /hand_cpm_demo namespace so a running camera is never mixed in), waits for
it to subscribe, then plays a stream at --fps with real stamps: by default a rendered sequence
(hand_cpm_train.synth: one hand for the first half, two for the second, moving smoothly so that
tracking is exercised), or the frames of a video file or of a ROS 2 bag. It records what the node
publishes (hands, hands/heatmap, diagnostics), matches results to frames by stamp, stops the node
and writes to DIR:

    demo.mp4      annotated frames (skeletons, track ids, scores from the hands messages) beside
                  the node's heatmap view (demo.avi, MJPG, where OpenCV has no mp4v encoder)
    demo.gif      a few seconds of the same, downscaled (needs Pillow; skipped with a note without)
    summary.json  frames published / processed / dropped, hands found against the rendered truth,
                  keypoint error (EPE, PCK) of matched hands, latency median and p95 (receive time
                  minus stamp), the node's own diagnostics
    results.jsonl one line per published frame: stamp, latency, the hands found, the truth
    node.log      the node's output

--regions-from-truth publishes each frame's rendered truth boxes on the node's hand_regions topic
(HandRegions with the frame's header) REGIONS_LEAD_FRAMES frames before the frame, and runs the
node without tracking: the keypoint network is then evaluated alone, on the true hand boxes,
without a hand localiser (track ids are then new every frame). The node uses a frame's own boxes
only, so they must be there before the frame; the lead covers a message lost in transit and sent
again (reliable QoS), which took about 0.3 s on the build machine.

--offline runs no node: every frame goes through the node's HandPipeline in this process, in turn,
stamped as if played at --fps (the tracker's clock), with the node's defaults and the pipeline's
--param values. Nothing is dropped and nothing else shares the CPU, so two runs give the same hands:
for comparing settings or models without the noise of DDS and a shared machine. Its latency is the
pipeline's own time per frame. The outputs are the same, without node.log. --warm-up-frames N first
passes the first frame N times, unrecorded, as the node's warm-up does: it sets which frames the
localiser runs on while tracking (localizer_interval).

Frames are prepared (rendered, decoded) before publishing so that preparation speed never limits
the stream. Each frame is stamped with the time it is due at --fps, and published then, also for
bags and videos, so latency is measurable.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

import hand_cpm_ros

from . import metrics
from .backends import BACKEND_NAMES
from .drawing import draw_hand, draw_label
from .geometry import box_from_keypoints, clip_box
from .image_conversion import ImageConversionError
from .pipeline import DEFAULT_LOCALIZER_NAME, MAX_LOCALIZER_INTERVAL, default_model_path

NAMESPACE = '/hand_cpm_demo'
FRAME_ID = 'demo_camera_optical_frame'
RENDER_SIZE = (640, 480)
MAX_FRAMES = 1800               # all frames are held in memory (about 1 MB each at 640x480)
MAX_WARM_UP_FRAMES = MAX_LOCALIZER_INTERVAL  # --offline --warm-up-frames: any localiser phase
DEFAULT_FRAMES = 300
KEYPOINT_THRESHOLD = 0.2        # the node's default: keypoints below it are not drawn
DETECTION_IOU = 0.5             # a found hand matches a true hand at this box IoU
STARTUP_TIMEOUT_S = 60.0
WARM_UP_PERIOD_S = 0.5
# --regions-from-truth: warm-up frames (10 s) that wait for the hand_regions topic to connect both
# ways. With 6 (3 s), one full-suite run found no hand in any of test_demo's 20 frames, most
# likely because the node had not matched the regions yet (not reproduced in 8 later runs).
WARM_UP_REGIONS_TRIES = 20
REGIONS_LEAD_FRAMES = 15        # --regions-from-truth: 0.5 s at 30 Hz; the node keeps 30 messages
QUIET_S = 2.0                   # after the last frame: stop when nothing arrives for this long
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
GIF_SECONDS = 4.0
GIF_FPS = 10.0
GIF_WIDTH = 480
HEATMAP_JPEG_QUALITY = 90
NO_DEFAULT_MODEL = 'no default model is shipped yet: train one (README) or pass --model'


class DemoError(Exception):
    """A user error or a node that cannot run: printed as one line, exit code 2."""


@dataclass
class Frame:
    """One frame to publish: the message (restamped at publish time) and the rendered truth
    ([{'hand_pts', 'is_left', 'box'}]) or None without truth."""
    msg: object  # sensor_msgs/Image
    truth: list[dict] | None

    @property
    def size(self) -> tuple[int, int]:
        return self.msg.width, self.msg.height

    def image(self) -> np.ndarray:
        """Its BGR pixels (converted on demand: frames are held once, as messages)."""
        from .ros_messages import image_msg_to_bgr
        return image_msg_to_bgr(self.msg)


def positive_fps(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and 0 < value <= 1000):
        raise argparse.ArgumentTypeError(f'--fps must be in (0, 1000] frames per second, got {text}')
    return value


def frame_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_FRAMES:
        raise argparse.ArgumentTypeError(f'--frames must be in 1..{MAX_FRAMES}, got {text}')
    return value


def warm_up_count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_WARM_UP_FRAMES:
        raise argparse.ArgumentTypeError(
            f'--warm-up-frames must be in 0..{MAX_WARM_UP_FRAMES}, got {text}')
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-demo',
        description='Run hand_cpm_node on a demo stream (rendered hands, a video or a bag) at a '
                    'fixed rate, record what it publishes and write an annotated video, a GIF '
                    'preview and a summary (drops, detection rate, keypoint error, latency).')
    parser.add_argument('--out', type=Path, default=None, metavar='DIR',
                        help='output directory (default: outputs/demo_<timestamp>)')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into an existing --out directory, replacing its demo files')
    parser.add_argument('--frames', type=frame_count, default=DEFAULT_FRAMES,
                        help=f'frames to play (default {DEFAULT_FRAMES}: 10 s at 30 Hz); at most '
                             'this many of a video or bag')
    parser.add_argument('--fps', type=positive_fps, default=30.0, help='publish rate (Hz)')
    parser.add_argument('--hands', choices=('1', '2', 'both'), default='both',
                        help='hands in the rendered stream (both: one for the first half, two '
                             'for the second)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the rendered stream')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--video', type=Path, metavar='FILE', help='play this video file instead')
    source.add_argument('--bag', type=Path, metavar='DIR',
                        help='replay sensor_msgs/Image messages of this ROS 2 bag instead')
    parser.add_argument('--topic', default=None,
                        help='image topic to replay from --bag (needed when it has several)')
    add_model_arguments(parser)
    parser.add_argument('--regions-from-truth', action='store_true',
                        help='give the node each frame\'s rendered truth boxes on its '
                             'hand_regions topic (evaluates the keypoint network alone: no '
                             'localiser, no tracking)')
    parser.add_argument('--offline', action='store_true',
                        help='run no node: every frame through the node\'s pipeline in this '
                             'process, in turn (the same hands on every run; --param takes the '
                             'pipeline\'s parameters)')
    parser.add_argument('--warm-up-frames', type=warm_up_count, default=0, metavar='N',
                        help='with --offline: first put the stream\'s first frame through the '
                             'pipeline N times, not recorded, as the node\'s warm-up does; this '
                             'sets which frames the localiser runs on (localizer_interval)')
    parser.add_argument('--frames-processed-in', type=Path, default=None, metavar='RESULTS',
                        help='with --offline: put through the pipeline only the frames that an '
                             'earlier run of the same stream processed (its results.jsonl, or '
                             'the directory holding it) and count the others as dropped, so that '
                             'a node run with its drops is reproduced here (give the node\'s '
                             'warm-up with --warm-up-frames, usually 1)')
    return parser


# ---------------------------------------------------------------------------------- sources
def _progress(iterable, total: int, description: str):
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=description, unit='frame', file=sys.stderr,
                leave=False)


def rendered_frames(num_frames: int, hands: str, seed: int) -> list[Frame]:
    """The rendered demo stream: `hands` '1' or '2' for the whole stream, 'both' for one hand in
    the first half and two in the second (a second sequence, seed + 1)."""
    from hand_cpm_train.synth.scene import render_sequence

    from .ros_messages import bgr_to_image_msg
    from std_msgs.msg import Header

    if hands == 'both':
        parts = [(1, num_frames // 2, seed), (2, num_frames - num_frames // 2, seed + 1)]
    else:
        parts = [(int(hands), num_frames, seed)]
    frames = []
    progress = _progress(None, num_frames, 'rendering')
    for count, length, part_seed in parts:
        if length == 0:
            continue
        for image, annotation in render_sequence(length, count, part_seed, size=RENDER_SIZE):
            frames.append(Frame(bgr_to_image_msg(image, Header(frame_id=FRAME_ID)),
                                annotation['hands']))
            progress.update()
    progress.close()
    return frames


def video_frames(path: Path, max_frames: int) -> list[Frame]:
    """Up to `max_frames` frames of a video file (played at --fps, not the file's rate)."""
    from .ros_messages import bgr_to_image_msg
    from std_msgs.msg import Header

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DemoError(f'--video {path}: cannot open it as a video file')
    frames = []
    try:
        for _ in _progress(range(max_frames), max_frames, 'reading video'):
            ok, image = capture.read()
            if not ok:
                break
            frames.append(Frame(bgr_to_image_msg(image, Header(frame_id=FRAME_ID)), None))
    finally:
        capture.release()
    if not frames:
        raise DemoError(f'--video {path} has no readable frames')
    return frames


def bag_frames(path: Path, topic: str | None, max_frames: int) -> list[Frame]:
    """Up to `max_frames` sensor_msgs/Image messages of one topic of a ROS 2 bag (read with
    rosbags, deserialised by rclpy), with their own frame_id and encoding."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader, ReaderError
    from sensor_msgs.msg import Image

    from .ros_messages import image_msg_to_bgr

    try:
        with Reader(path) as reader:
            images = [c for c in reader.connections if c.msgtype == 'sensor_msgs/msg/Image']
            topics = sorted({c.topic for c in images})
            if not topics:
                raise DemoError(f'--bag {path} has no sensor_msgs/msg/Image topic')
            if topic is None and len(topics) > 1:
                raise DemoError(f'--bag {path} has several image topics ({", ".join(topics)}): '
                                'choose one with --topic')
            chosen = topic or topics[0]
            if chosen not in topics:
                raise DemoError(f'--topic {chosen} is not an image topic of {path}; its image '
                                f'topics: {", ".join(topics)}')
            connections = [c for c in images if c.topic == chosen]
            total = min(max_frames, sum(c.msgcount for c in connections))
            frames = []
            for _, _, raw in _progress(reader.messages(connections=connections), total,
                                       'reading bag'):
                msg = deserialize_message(raw, Image)
                try:
                    image_msg_to_bgr(msg)  # the video needs its pixels: fail now, not at the end
                except ImageConversionError as error:
                    raise DemoError(f'--bag {path}: message {len(frames)} of {chosen}: '
                                    f'{error}') from error
                frames.append(Frame(msg, None))
                if len(frames) == max_frames:
                    break
    except ReaderError as error:
        raise DemoError(f'--bag {path} cannot be read as a ROS 2 bag: {error}') from error
    if not frames:
        raise DemoError(f'--bag {path} has no messages on {chosen}')
    return frames


# ---------------------------------------------------------------------------------- the node
def node_command(model: Path, localizer: Path | None, backend: str,
                 regions_from_truth: bool, parameters: Sequence[str] = ()) -> list[str]:
    """hand_cpm_node from the same installation as this module, with the demo's parameters and
    then the user's `parameters` (NAME:=VALUE, which win)."""
    command = [sys.executable, '-m', 'hand_cpm_ros.node', '--ros-args',
               '-r', f'__ns:={NAMESPACE}', '-r', f'/diagnostics:={NAMESPACE}/diagnostics',
               '-p', f'model_path:={model}', '-p', f'backend:={backend}',
               # frames this large are lost with best effort over shared memory; the demo's
               # publisher is reliable
               '-p', f'qos_overrides.{NAMESPACE}/image.subscription.reliability:=reliable']
    command += ['-p', f'localizer_model:={"none" if localizer is None else localizer}']
    if regions_from_truth:
        # crops come from the truth boxes only (no tracking proposals): the keypoint network is
        # measured alone
        command += ['-p', 'tracking:=false']
    for parameter in parameters:
        command += ['-p', parameter]
    return command


def start_node(command: list[str], out_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env['ROS_LOG_DIR'] = str(out_dir / 'ros_log')
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    package_root = str(Path(hand_cpm_ros.__file__).resolve().parents[1])
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [package_root, env.get('PYTHONPATH')]))
    log = (out_dir / 'node.log').open('w')
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=out_dir)
    finally:
        log.close()


def stop_node(process: subprocess.Popen) -> int:
    """SIGINT, wait, then kill; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def node_failure(process: subprocess.Popen, out_dir: Path) -> DemoError:
    """The error for a node that exited: its 'cannot start' line, or the last line it wrote."""
    lines = [line for line in (out_dir / 'node.log').read_text(errors='replace').splitlines()
             if line.strip()]
    reason = next((line for line in lines if 'cannot start' in line),
                  lines[-1] if lines else 'no output')
    return DemoError(f'hand_cpm_node exited with code {process.returncode}: {reason.strip()} '
                     f'(log: {out_dir / "node.log"})')


def _stamp_key(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Recorder:
    """The demo's ROS side: publishers of the node's inputs, recorders of its outputs (received
    time in the node's clock, nanoseconds), all spun from the caller's thread. Without `heatmaps`
    hands/heatmap is not subscribed, so the node does not draw it (hand-cpm-node-benchmark)."""

    def __init__(self, context, heatmaps: bool = True):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        from .msg import HandKeypointsArray, HandRegions

        self.node = Node('hand_cpm_demo_player', namespace=NAMESPACE, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.image_pub = self.node.create_publisher(Image, 'image', 10)
        # deep enough for every message of the lead, until the node has acknowledged them
        self.regions_pub = self.node.create_publisher(HandRegions, 'hand_regions',
                                                      2 * REGIONS_LEAD_FRAMES)
        self.hands: dict[int, tuple[object, int]] = {}
        self.heatmaps: dict[int, bytes] = {}
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_arrival = -math.inf
        self.last_arrival = time.monotonic()
        self.hands_sub = self.node.create_subscription(HandKeypointsArray, 'hands',
                                                       self._on_hands, 50)
        self.heatmap_sub = self.node.create_subscription(
            Image, 'hands/heatmap', self._on_heatmap, 10) if heatmaps else None
        self.node.create_subscription(DiagnosticArray, 'diagnostics', self._on_diagnostics, 10)

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_hands(self, msg) -> None:
        self.hands[_stamp_key(msg.header.stamp)] = (msg, self.now_ns())
        self.last_arrival = time.monotonic()

    def _on_heatmap(self, msg) -> None:
        from .ros_messages import image_msg_to_bgr
        image = image_msg_to_bgr(msg)
        self.heatmaps[_stamp_key(msg.header.stamp)] = cv2.imencode(
            '.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, HEATMAP_JPEG_QUALITY])[1].tobytes()
        self.last_arrival = time.monotonic()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.values:
                self.diagnostics = {value.key: value.value for value in status.values}
                self.diagnostics_arrival = time.monotonic()

    def connected(self, regions: bool) -> bool:
        return (self.image_pub.get_subscription_count() > 0
                and self.hands_sub.get_publisher_count() > 0
                and (self.heatmap_sub is None or self.heatmap_sub.get_publisher_count() > 0)
                and (not regions or self.regions_pub.get_subscription_count() > 0))

    def answered(self, stamp: int) -> bool:
        """Whether the frame stamped `stamp` came back: its hands, and its heatmap if subscribed."""
        return stamp in self.hands and (self.heatmap_sub is None or stamp in self.heatmaps)

    def spin_until(self, deadline: float) -> None:
        """Handle arrivals until time.monotonic() reaches `deadline`."""
        while (remaining := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=remaining)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _set_stamp(frame: Frame, stamp_ns: int) -> None:
    from rclpy.time import Time

    frame.msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()


def _publish_truth_regions(recorder: Recorder, frame: Frame) -> None:
    """Publish a stamped frame's truth boxes as HandRegions with the frame's header."""
    from .ros_messages import hand_regions_msg

    width, height = frame.size
    recorder.regions_pub.publish(hand_regions_msg(
        frame.msg.header, [clip_box(hand['box'], width, height) for hand in frame.truth]))


def wait_connected(recorder: Recorder, regions_from_truth: bool, process: subprocess.Popen,
                   out_dir: Path) -> None:
    """Spin until the started node and the recorder see each other's topics."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not recorder.connected(regions_from_truth):
        if process.poll() is not None:
            raise node_failure(process, out_dir)
        if time.monotonic() > deadline:
            raise DemoError(f'hand_cpm_node did not connect within {STARTUP_TIMEOUT_S:.0f} s '
                            f'(log: {out_dir / "node.log"})')
        recorder.executor.spin_once(timeout_sec=0.05)


def warm_up(recorder: Recorder, frame: Frame, regions_from_truth: bool,
            process: subprocess.Popen, out_dir: Path) -> None:
    """Publish `frame` every WARM_UP_PERIOD_S until it comes back (Recorder.answered): the node's
    publishers have then matched the recorder (a subscriber can see a publisher before that
    publisher sees it) and its first, slowest inference is behind it. With --regions-from-truth,
    the first WARM_UP_REGIONS_TRIES also wait for as many hands as boxes (the hand_regions topic is
    connected both ways); a model too poor to find them is then accepted as it is. Not counted."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        if process.poll() is not None:
            raise node_failure(process, out_dir)
        stamp = recorder.now_ns()
        _set_stamp(frame, stamp)
        if regions_from_truth:
            _publish_truth_regions(recorder, frame)
        recorder.image_pub.publish(frame.msg)
        recorder.spin_until(time.monotonic() + WARM_UP_PERIOD_S)
        if recorder.answered(stamp) and (
                not regions_from_truth or tries >= WARM_UP_REGIONS_TRIES
                or len(recorder.hands[stamp][0].hands) == len(frame.truth)):
            recorder.hands.clear()
            recorder.heatmaps.clear()
            return
    raise DemoError(f'hand_cpm_node did not answer a frame within {STARTUP_TIMEOUT_S:.0f} s '
                    f'(log: {out_dir / "node.log"})')


def play(recorder: Recorder, frames: list[Frame], fps: float, regions_from_truth: bool,
         process: subprocess.Popen, out_dir: Path,
         seconds: float | None = None) -> tuple[list[int], float]:
    """Publish every frame at `fps`, stamped with the time it is due; with --regions-from-truth
    its truth boxes REGIONS_LEAD_FRAMES frames earlier (the stream starts once the first ones are
    out). With `seconds`, the frames are played in a loop for that long, each restamped when it
    comes round again (frame i of the stream is frames[i % len(frames)]). Then wait for the node's
    last results and for diagnostics sent after the last frame (so its counters are final).
    Returns the stamps (ns) and the achieved publish rate."""
    count = len(frames) if seconds is None else max(1, round(seconds * fps))
    lead = REGIONS_LEAD_FRAMES if regions_from_truth else 0
    started = time.monotonic() + lead / fps
    first_stamp = recorder.now_ns() + round(lead / fps * 1e9)
    stamps = [first_stamp + round(index / fps * 1e9) for index in range(count)]

    def stamped(index: int) -> Frame:
        frame = frames[index % len(frames)]
        _set_stamp(frame, stamps[index])
        return frame

    for index in range(min(lead, count)):
        _publish_truth_regions(recorder, stamped(index))
    for index in _progress(range(count), count, 'playing'):
        if process.poll() is not None:
            raise node_failure(process, out_dir)
        recorder.spin_until(started + index / fps)
        recorder.image_pub.publish(stamped(index).msg)
        if lead and index + lead < count:
            _publish_truth_regions(recorder, stamped(index + lead))
    finished = time.monotonic()
    rate = (count - 1) / (finished - started) if count > 1 else float('nan')
    recorder.last_arrival = max(recorder.last_arrival, finished)
    while time.monotonic() < finished + DRAIN_TIMEOUT_S:
        if recorder.diagnostics_arrival > finished and all(map(recorder.answered, stamps)):
            break
        latencies = [(received - stamp) * 1e-9 for stamp, (_, received) in recorder.hands.items()]
        quiet = max([QUIET_S] + [3 * latency for latency in latencies])
        if time.monotonic() - recorder.last_arrival > quiet:
            break
        recorder.executor.spin_once(timeout_sec=0.05)
    return stamps, rate


# ---------------------------------------------------------------------------------- evaluation
def _hand_arrays(hand) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([(p.x, p.y) for p in hand.keypoints], np.float64),
            np.array(hand.confidences, np.float64))


def _truth_arrays(truth_hand: dict) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(truth_hand['hand_pts'], np.float64)
    return points[:, :2], points[:, 2] > 0


def _truth_box(truth_hand: dict, width: int, height: int) -> tuple[float, float, float, float]:
    """Box around all of a true hand's keypoints, clipped to the image (the node's hand boxes
    are likewise keypoint boxes)."""
    keypoints, _ = _truth_arrays(truth_hand)
    return clip_box(box_from_keypoints(keypoints), width, height)


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def evaluate(frames: list[Frame], stamps: list[int], recorder: Recorder) -> tuple[dict, list[dict]]:
    """The summary numbers and one record per frame."""
    from .ros_messages import roi_to_box

    latencies, found, truth_counts, records = [], [], [], []
    matched_pred, matched_gt, matched_visible = [], [], []
    sides_given, sides_right = 0, 0  # of the matched hands: with a side, with the true side
    false_positives = 0
    for index, (frame, stamp) in enumerate(zip(frames, stamps)):
        received = recorder.hands.get(stamp)
        record: dict = {'frame': index, 'stamp_ns': stamp, 'processed': received is not None,
                        'heatmap': stamp in recorder.heatmaps}
        if frame.truth is not None:
            record['truth'] = [{'keypoints': hand['hand_pts'], 'box': hand['box'],
                                'is_left': hand['is_left']} for hand in frame.truth]
        if received is None:
            records.append(record)
            continue
        msg, arrival = received
        latencies.append((arrival - stamp) * 1e-6)
        record['latency_ms'] = round(latencies[-1], 3)
        record['hands'] = [{
            'track_id': hand.track_id, 'score': round(hand.score, 4),
            'handedness': int(hand.handedness), 'handedness_score': round(hand.handedness_score, 4),
            'box': list(roi_to_box(hand.box)),
            'keypoints': [[round(x, 3), round(y, 3), round(c, 4)] for (x, y), c in
                          zip(_hand_arrays(hand)[0].tolist(), map(float, hand.confidences))]}
            for hand in msg.hands]
        found.append(len(msg.hands))
        records.append(record)
        if frame.truth is None:
            continue
        truth_counts.append(len(frame.truth))
        width, height = frame.size
        matches = metrics.match_detections(
            np.array([roi_to_box(hand.box) for hand in msg.hands]).reshape(-1, 4),
            [hand.score for hand in msg.hands],
            np.array([_truth_box(hand, width, height) for hand in frame.truth]).reshape(-1, 4),
            DETECTION_IOU)
        false_positives += int(np.count_nonzero(matches < 0))
        for hand, truth_index in zip(msg.hands, matches):
            if truth_index >= 0:
                keypoints, visible = _truth_arrays(frame.truth[truth_index])
                matched_pred.append(_hand_arrays(hand)[0])
                matched_gt.append(keypoints)
                matched_visible.append(visible)
                if hand.handedness != hand.HANDEDNESS_UNKNOWN:
                    sides_given += 1
                    true_side = hand.HANDEDNESS_LEFT if frame.truth[truth_index]['is_left'] \
                        else hand.HANDEDNESS_RIGHT
                    sides_right += int(hand.handedness == true_side)
    processed = len(found)
    summary: dict = {
        'frames_published': len(stamps),
        'frames_processed': processed,
        'frames_dropped': len(stamps) - processed,
        'heatmaps_received': sum(stamp in recorder.heatmaps for stamp in stamps),
        'hands_per_frame': _finite_or_none(np.mean(found)) if found else None,
        'latency_ms': None if not latencies else {
            'median': _finite_or_none(np.median(latencies)),
            'p95': _finite_or_none(np.percentile(latencies, 95)),
            'max': _finite_or_none(np.max(latencies))},
    }
    if frames and frames[0].truth is not None:
        true_hands = int(np.sum(truth_counts))
        summary['truth_hands_per_frame'] = _finite_or_none(np.mean(truth_counts)) if truth_counts else None
        summary['detection'] = {
            'true_hands': true_hands, 'matched': len(matched_pred),
            'rate': _finite_or_none(len(matched_pred) / true_hands) if true_hands else None,
            'false_positives': false_positives, 'iou_threshold': DETECTION_IOU}
        keypoint_report = {'n': 0}
        if matched_pred:
            keypoint_report = metrics.summary(np.stack(matched_pred), np.stack(matched_gt),
                                              np.stack(matched_visible))
        summary['keypoints'] = {key: value if key == 'n' else _finite_or_none(value)
                                for key, value in keypoint_report.items()}
        summary['handedness'] = {'matched': len(matched_pred), 'given': sides_given,
                                 'right': sides_right}
    return summary, records


# ---------------------------------------------------------------------------------- outputs
def annotate(image: np.ndarray, truth: list[dict] | None, record: dict, msg,
             heatmap_jpeg: bytes | None) -> np.ndarray:
    """The video frame: `image` with the hands of `msg` drawn (skeleton, box, '#track score'),
    beside the node's heatmap view (the image dimmed when the node sent none)."""
    from .ros_messages import roi_to_box

    left = image.copy()
    if msg is None:
        banner = f'frame {record["frame"]}: dropped by the node'
    else:
        for hand in msg.hands:
            keypoints, confidences = _hand_arrays(hand)
            x0, y0, x1, y1 = (int(round(v)) for v in roi_to_box(hand.box))
            cv2.rectangle(left, (x0, y0), (x1, y1), (255, 255, 255), 1, cv2.LINE_AA)
            draw_hand(left, keypoints, confidences, threshold=KEYPOINT_THRESHOLD,
                      label=f'#{hand.track_id} {hand.score:.2f}')
        banner = (f'frame {record["frame"]}: {len(msg.hands)} hand(s), '
                  f'latency {record["latency_ms"]:.0f} ms')
    if truth is not None:
        banner += f' (truth {len(truth)})'
    draw_label(left, banner, (4, 20))
    if heatmap_jpeg is not None:
        right = cv2.imdecode(np.frombuffer(heatmap_jpeg, np.uint8), cv2.IMREAD_COLOR)
        if right.shape != left.shape:
            right = cv2.resize(right, (left.shape[1], left.shape[0]))
        draw_label(right, 'hands/heatmap', (4, 20))
    else:
        right = image // 3
        draw_label(right, 'no heatmap for this frame', (4, 20))
    return np.hstack([left, right])


def open_video(out_dir: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, Path]:
    """mp4v .mp4, or MJPG .avi where OpenCV cannot write mp4v."""
    for name, codec in (('demo.mp4', 'mp4v'), ('demo.avi', 'MJPG')):
        path = out_dir / name
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer, path
        writer.release()
    raise DemoError(f'OpenCV can write neither mp4v nor MJPG video into {out_dir}')


def gif_window(num_frames: int, fps: float) -> range:
    """Indices of the GIF preview: GIF_SECONDS around the middle (in the default stream, where
    the second hand comes in), GIF_FPS frames per second."""
    length = min(num_frames, max(1, round(GIF_SECONDS * fps)))
    start = max(0, num_frames // 2 - length // 2)
    return range(start, start + length, max(1, round(fps / GIF_FPS)))


def write_outputs(out_dir: Path, frames: list[Frame], records: list[dict], recorder: Recorder,
                  fps: float) -> tuple[Path, Path | None, str | None]:
    """The video and the GIF; returns their paths and a note when the GIF was skipped."""
    width, height = frames[0].size
    writer, video_path = open_video(out_dir, fps, (2 * width, height))
    preview = set(gif_window(len(frames), fps))
    gif_frames = []
    try:
        for frame, record in _progress(zip(frames, records), len(frames), 'writing video'):
            image = frame.image()
            if frame.size != (width, height):  # a bag may change resolution midway
                image = cv2.resize(image, (width, height))
            msg = recorder.hands.get(record['stamp_ns'], (None, 0))[0]
            canvas = annotate(image, frame.truth, record, msg,
                              recorder.heatmaps.get(record['stamp_ns']))
            writer.write(canvas)
            if record['frame'] in preview:
                scale = GIF_WIDTH / canvas.shape[1]
                gif_frames.append(cv2.resize(canvas, None, fx=scale, fy=scale,
                                             interpolation=cv2.INTER_AREA))
    finally:
        writer.release()
    try:
        from PIL import Image as PilImage
    except ImportError:
        return video_path, None, 'demo.gif skipped: Pillow is not installed (pip install pillow)'
    gif_path = out_dir / 'demo.gif'
    pictures = [PilImage.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)) for image in gif_frames]
    step = max(1, round(fps / GIF_FPS))
    pictures[0].save(gif_path, save_all=True, append_images=pictures[1:],
                     duration=int(round(1000 * step / fps)), loop=0)
    return video_path, gif_path, None


def describe(summary: dict) -> str:
    """The human summary printed at the end."""
    published, processed = summary['frames_published'], summary['frames_processed']
    rate = (f'offline, every frame in turn, stamped at {summary["fps_requested"]} Hz'
            if summary.get('offline') else f'at {summary["publish_rate_hz"]} Hz')
    lines = [f'hand-cpm-demo: {summary["source"]}, {published} frames {rate}',
             f'  frames processed  {processed} of {published} (dropped '
             f'{summary["frames_dropped"]}, {100 * summary["frames_dropped"] / published:.1f} %)']
    hands = summary['hands_per_frame']
    text = f'  hands found       {hands:.2f} per processed frame' if hands is not None \
        else '  hands found       -'
    if 'detection' in summary:
        detection = summary['detection']
        truth = summary['truth_hands_per_frame']
        rate = detection['rate']
        text += (f' (truth {truth:.2f}); detection rate '
                 f'{"-" if rate is None else f"{100 * rate:.1f} %"} '
                 f'(box IoU >= {DETECTION_IOU}), {detection["false_positives"]} false positive(s)'
                 if truth is not None else '')
    lines.append(text)
    keypoints = summary.get('keypoints')
    if keypoints is not None:
        if keypoints['n']:
            lines.append(f'  keypoint error    EPE {keypoints["epe_px"]:.2f} px, PCK@0.2 '
                         f'{keypoints["pck@0.2"]:.3f} over {keypoints["n"]} matched hands '
                         '(visible keypoints)')
        else:
            lines.append('  keypoint error    - (no hand matched the truth)')
    sides = summary.get('handedness')
    if sides is not None and sides['matched']:
        lines.append(f'  handedness        given on {sides["given"]} of {sides["matched"]} matched '
                     f'hands' + (f', right on {100 * sides["right"] / sides["given"]:.1f} % of '
                                 f'those' if sides['given'] else ''))
    latency = summary['latency_ms']
    lines.append('  latency           -' if latency is None else
                 f'  latency           median {latency["median"]:.1f} ms, p95 '
                 f'{latency["p95"]:.1f} ms (receive time - stamp)')
    diagnostics = summary['node_diagnostics']
    if diagnostics:
        lines.append(f'  {"pipeline" if summary.get("offline") else "node":<18}'
                     f'{diagnostics.get("backend", "?")}; its latency median '
                     f'{diagnostics.get("latency median (ms)", "?")} ms, p95 '
                     f'{diagnostics.get("latency p95 (ms)", "?")} ms; dropped '
                     f'{diagnostics.get("dropped frames", "?")}')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------- offline
# Node parameters an offline run uses besides the pipeline's (hand_cpm_ros.node.PIPELINE_PARAMETERS).
OFFLINE_NODE_PARAMETERS = ('threads', 'localizer_threads', 'localizer_threshold', 'localizer_flip_averaging',
                           'fine_localizer_model', 'fine_localizer_max_height', 'localizer_wide_factor',
                           'heatmap_alpha')


@dataclass
class OfflineRecording:
    """What an offline run hands to evaluate() and write_outputs() in place of a Recorder: the hands
    messages (with their 'arrival': stamp + the pipeline's time) and heatmap views by stamp, and
    the pipeline's figures in place of the node's diagnostics."""
    hands: dict
    heatmaps: dict
    diagnostics: dict


def offline_parameters(assignments: Sequence[str]) -> dict:
    """The node's defaults of the parameters an offline run uses, with the NAME:=VALUE
    `assignments` (YAML values, as ros2 reads them) applied; DemoError for another name or a
    value of the wrong type."""
    import yaml

    from .node import PARAMETERS, PIPELINE_PARAMETERS

    values = {name: PARAMETERS[name][0] for name in (*PIPELINE_PARAMETERS, *OFFLINE_NODE_PARAMETERS)}
    for assignment in assignments:
        name, _, text = assignment.partition(':=')
        if name not in values:
            raise DemoError(f'--param {name} does not apply with --offline (no node runs); it '
                            f'takes {", ".join(sorted(values))}')
        value, default = yaml.safe_load(text), values[name]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            kind = {bool: 'true or false', int: 'an integer', float: 'a number'}.get(
                type(default), 'a string')
            raise DemoError(f'--param {assignment}: {name} takes {kind}, e.g. '
                            f'{name}:={json.dumps(default)}')
        values[name] = value
    return values


def offline_pipeline(model: Path, localizer: Path | None, backend: str, values: dict,
                     regions_from_truth: bool):
    """The node's HandPipeline as hand_cpm_node builds it from these parameter `values` (no
    tracking with `regions_from_truth`, as the demo's node runs then)."""
    from .backends import BackendError, create_backend
    from .localizer import load_localizer
    from .node import PIPELINE_PARAMETERS
    from .pipeline import HandPipeline, fine_localizer_path

    threads = values['threads'] or None
    settings = {field: values[name] for name, field in PIPELINE_PARAMETERS.items()}
    if regions_from_truth:
        settings['tracking'] = False
    try:
        boxes = None if localizer is None else load_localizer(
            localizer, values['localizer_threshold'], 8, values['localizer_threads'], threads,
            logger=lambda text: None, flip_averaging=values['localizer_flip_averaging'],
            fine_path=fine_localizer_path(values['fine_localizer_model']),
            fine_max_height=values['fine_localizer_max_height'], wide_factor=values['localizer_wide_factor'])
        return HandPipeline(create_backend(backend, model_path=str(model), threads=threads,
                                           logger=lambda text: None),
                            localizer=boxes, **settings)
    except (BackendError, ValueError) as error:
        raise DemoError(str(error)) from error


def processed_frames(path: Path) -> tuple[set[int], int]:
    """The indices of the frames that the run whose results.jsonl is `path` (or is in the directory
    `path`) processed, and how many frames it recorded; DemoError when it is missing or unreadable
    or processed none."""
    results = path / 'results.jsonl' if path.is_dir() else path
    if not results.is_file():
        raise DemoError(f'--frames-processed-in {path}: no such results.jsonl (give the one a '
                        'hand-cpm-demo run wrote, or its directory)')
    processed, count = set(), 0
    for line_number, line in enumerate(results.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
            frame, was_processed = record['frame'], record['processed']
        except (ValueError, TypeError, KeyError):
            raise DemoError(f'{results}, line {line_number}: not a hand-cpm-demo record (a JSON '
                            'object with "frame" and "processed")') from None
        if frame != count or not isinstance(was_processed, bool):
            raise DemoError(f'{results}, line {line_number}: expected frame {count} with '
                            f'"processed" true or false, got {line[:80]}')
        count += 1
        if was_processed:
            processed.add(frame)
    if not processed:
        raise DemoError(f'{results}: its run processed no frame, so there is nothing to reproduce')
    return processed, count


def play_offline(frames: list[Frame], fps: float, pipeline, regions_from_truth: bool,
                 heatmap_alpha: float, warm_up_frames: int = 0,
                 only: set[int] | None = None) -> tuple[list[int], OfflineRecording]:
    """Every frame (or those whose index is in `only`) through `pipeline` in turn, stamped at
    `fps` from 0, after `warm_up_frames` unrecorded passes of the first frame stamped before 0;
    the stamps of all frames and the recording. A frame's heatmap view is drawn as the node
    draws it."""
    from std_msgs.msg import Header

    from .pipeline import draw_result
    from .ros_messages import hands_to_msg

    def regions(frame: Frame) -> list:
        width, height = frame.size
        return [clip_box(hand['box'], width, height) for hand in frame.truth] \
            if regions_from_truth else []

    if warm_up_frames:
        first_image, first_rois = frames[0].image(), regions(frames[0])
        for index in range(-warm_up_frames, 0):
            pipeline.process(first_image, rois=first_rois, stamp=index / fps)
    recording = OfflineRecording({}, {}, {})
    stamps, times_ms, localized = [], [], 0
    for index, frame in enumerate(_progress(frames, len(frames), 'processing')):
        stamp = round(index * 1e9 / fps)
        _set_stamp(frame, stamp)
        stamps.append(stamp)
        if only is not None and index not in only:
            continue
        image = frame.image()
        rois = regions(frame)
        started = time.perf_counter()
        result = pipeline.process(image, rois=rois, stamp=stamp * 1e-9)
        times_ms.append(1e3 * (time.perf_counter() - started))
        localized += result.localized
        recording.hands[stamp] = (hands_to_msg(result, Header(stamp=frame.msg.header.stamp)),
                                  stamp + round(1e6 * times_ms[-1]))
        view = draw_result(image, result, pipeline.settings.keypoint_threshold, heatmap_alpha)
        recording.heatmaps[stamp] = cv2.imencode(
            '.jpg', view, [cv2.IMWRITE_JPEG_QUALITY, HEATMAP_JPEG_QUALITY])[1].tobytes()
    recording.diagnostics = {
        'backend': pipeline.backend.describe(),
        'latency median (ms)': f'{np.median(times_ms):.3f}',
        'latency p95 (ms)': f'{np.percentile(times_ms, 95):.3f}',
        'dropped frames': str(len(frames) - len(times_ms)),
        'localizer frames': str(localized), 'warm-up frames': str(warm_up_frames),
        **{f'hands dropped: {reason}': str(count)
           for reason, count in sorted(pipeline.dropped_total.items()) if count}}
    return stamps, recording


# ---------------------------------------------------------------------------------- main
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --localizer, --backend and --param of the node that the demo and the benchmark start
    (resolve_models reads the first two)."""
    parser.add_argument('--model', type=Path, default=None,
                        help=f'keypoint model .onnx / .pt (default: {default_model_path()})')
    parser.add_argument('--localizer', type=Path, default=None,
                        help='hand localiser model (default: the shipped '
                             f'{DEFAULT_LOCALIZER_NAME} when it exists, else none)')
    parser.add_argument('--backend', choices=BACKEND_NAMES, default='auto',
                        help='inference backend of the node (default: auto)')
    parser.add_argument('--param', type=node_parameter, action='append', default=[],
                        metavar='NAME:=VALUE',
                        help='a node parameter, as in --ros-args -p (repeatable), e.g. '
                             'localizer_interval:=1; the node refuses a bad value, and the run '
                             'stops with its reason')


def node_parameter(text: str) -> str:
    """A NAME:=VALUE node parameter assignment (the value is checked by the node itself); names may
    hold the dots and slashes of QoS overrides (qos_overrides./ns/image.subscription.depth)."""
    name, separator, value = text.partition(':=')
    if not separator or not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_./]*', name) or not value:
        raise argparse.ArgumentTypeError(f'{text!r} is not NAME:=VALUE (e.g. '
                                         f'localizer_interval:=1)')
    return text


def resolve_models(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The keypoint model and the localiser (None: none, and always none with
    --regions-from-truth, which measures the keypoint network alone)."""
    model = args.model or default_model_path()
    if not model.is_file():
        raise DemoError(NO_DEFAULT_MODEL if args.model is None else
                        f'--model {model} does not exist or is not a file')
    localizer = args.localizer
    if localizer is not None and not localizer.is_file():
        raise DemoError(f'--localizer {localizer} does not exist or is not a file')
    shipped = default_model_path(DEFAULT_LOCALIZER_NAME)
    if localizer is None and shipped.is_file() and not args.regions_from_truth:
        localizer = shipped
    return model.resolve(), None if localizer is None else localizer.resolve()


def prepare_out_dir(args: argparse.Namespace, prefix: str = 'demo',
                    stale: tuple[str, ...] = ('demo.mp4', 'demo.avi', 'demo.gif')) -> Path:
    """--out (default outputs/<prefix>_<timestamp>), created; an existing non-empty one only with
    --overwrite, and then without the `stale` outputs of an earlier run."""
    out_dir = args.out or Path('outputs') / f'{prefix}_{datetime.now():%Y%m%d_%H%M%S}'
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoError(f'--out {out_dir} exists and is not a directory')
    if out_dir.exists() and any(out_dir.iterdir()) and not args.overwrite:
        raise DemoError(f'--out {out_dir} exists; pass --overwrite to write into it')
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (out_dir / name).unlink(missing_ok=True)
    return out_dir.resolve()


def check_args(args: argparse.Namespace) -> None:
    if args.topic is not None and args.bag is None:
        raise DemoError('--topic only applies to --bag')
    if args.regions_from_truth and (args.video or args.bag):
        raise DemoError('--regions-from-truth needs the rendered stream (a video or bag has no '
                        'truth boxes): drop --video/--bag or --regions-from-truth')
    if args.warm_up_frames and not args.offline:
        raise DemoError('--warm-up-frames only applies to --offline (the node is warmed up until '
                        'it answers)')
    if args.frames_processed_in is not None and not args.offline:
        raise DemoError('--frames-processed-in only applies to --offline (a node drops frames '
                        'of its own)')
    if args.regions_from_truth and args.localizer:
        raise DemoError('--regions-from-truth measures the keypoint network alone, without a '
                        'localiser: drop --localizer or --regions-from-truth')


def run(args: argparse.Namespace) -> int:
    check_args(args)
    model, localizer = resolve_models(args)
    if args.video is not None and not args.video.is_file():
        raise DemoError(f'--video {args.video} does not exist or is not a file')
    if args.bag is not None and not args.bag.exists():
        raise DemoError(f'--bag {args.bag} does not exist')
    values = offline_parameters(args.param) if args.offline else None
    # read before any frame is rendered or any output written, so a bad file costs nothing
    replay = None if args.frames_processed_in is None else processed_frames(args.frames_processed_in)
    out_dir = prepare_out_dir(args)
    if localizer is None and not args.regions_from_truth:
        print('hand-cpm-demo: note: no hand localiser (no --localizer, no '
              f'{default_model_path(DEFAULT_LOCALIZER_NAME)}): the node finds no hands without '
              'boxes; --regions-from-truth gives it the rendered ones', file=sys.stderr)

    import rclpy

    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'  # read by rclpy.init below
    context = rclpy.Context()
    rclpy.init(context=context, args=['--ros-args', '--disable-external-lib-logs'])
    process = None
    recorder = None
    try:
        if args.video is not None:
            frames = video_frames(args.video, args.frames)
            source = f'video {args.video}'
        elif args.bag is not None:
            frames = bag_frames(args.bag, args.topic, args.frames)
            source = f'bag {args.bag}'
        else:
            frames = rendered_frames(args.frames, args.hands, args.seed)
            source = f'rendered stream (hands: {args.hands}, seed {args.seed})'
        if replay is not None and replay[1] != len(frames):
            raise DemoError(f'{args.frames_processed_in} records {replay[1]} frames, this stream has '
                            f'{len(frames)}: play the same stream (--frames {replay[1]} and the same '
                            '--hands, --seed or source)')
        if args.offline:
            only = None if replay is None else replay[0]
            pipeline = offline_pipeline(model, localizer, args.backend, values,
                                        args.regions_from_truth)
            stamps, recorder = play_offline(frames, args.fps, pipeline, args.regions_from_truth,
                                            values['heatmap_alpha'], args.warm_up_frames, only)
            rate = math.nan
        else:
            recorder = Recorder(context)
            process = start_node(node_command(model, localizer, args.backend,
                                              args.regions_from_truth, args.param), out_dir)
            wait_connected(recorder, args.regions_from_truth, process, out_dir)
            warm_up(recorder, frames[0], args.regions_from_truth, process, out_dir)
            stamps, rate = play(recorder, frames, args.fps, args.regions_from_truth, process,
                                out_dir)
            exit_code = stop_node(process)
            if exit_code != 0:
                raise node_failure(process, out_dir)
        summary, records = evaluate(frames, stamps, recorder)
        video_path, gif_path, gif_note = write_outputs(out_dir, frames, records, recorder,
                                                       args.fps)
    finally:
        if process is not None:
            stop_node(process)
        if isinstance(recorder, Recorder):
            recorder.close()
        context.try_shutdown()

    summary = {'source': source, 'model': str(model),
               'localizer': None if localizer is None else str(localizer),
               'backend': args.backend, 'node_parameters': args.param,
               'regions_from_truth': args.regions_from_truth, 'offline': args.offline,
               'fps_requested': args.fps, 'publish_rate_hz': _finite_or_none(rate),
               **summary, 'node_diagnostics': recorder.diagnostics,
               'outputs': {'video': video_path.name, 'gif': None if gif_path is None else gif_path.name,
                           'results': 'results.jsonl',
                           'node_log': None if args.offline else 'node.log'}}
    (out_dir / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    with (out_dir / 'results.jsonl').open('w') as stream:
        for record in records:
            stream.write(json.dumps(record) + '\n')
    print(describe(summary))
    if gif_note:
        print(gif_note)
    print(f'outputs in {out_dir}: {video_path.name}, {"" if gif_path is None else gif_path.name + ", "}'
          f'summary.json, results.jsonl{"" if args.offline else ", node.log"}')
    if summary['frames_processed'] == 0:
        print(f'hand-cpm-demo: error: the node processed none of the {len(stamps)} frames; see '
              f'{out_dir / "node.log"}', file=sys.stderr)
        return 1
    return 0


def run_command(prog: str, parser: argparse.ArgumentParser, run_args, argv: list[str] | None) -> int:
    """A node-driving command's exit code: run_args(parsed args); a DemoError is one line and
    exit code 2, Ctrl-C exit code 130 (the node is stopped by run_args' clean-up)."""
    args = parser.parse_args(argv)
    try:
        return run_args(args)
    except DemoError as error:
        print(f'{prog}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'{prog}: interrupted; the node was stopped', file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_command('hand-cpm-demo', get_args_parser(), run, argv)


if __name__ == '__main__':
    sys.exit(main())
