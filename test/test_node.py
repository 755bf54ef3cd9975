"""hand_cpm_node in its own process, over real DDS, with the fixed-peaks TEST MODEL run by real
ONNX Runtime: keypoint positions, headers and every field; heatmap, markers, diagnostics; bad input
survived; parameters through the parameter services; hand regions used only for the frame they are
stamped for; a rosbag replay equal to live; compressed input with depth for 3D; a missing model is
exit code 2. Every wait is for a condition."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from hand_cpm_ros.geometry import apply_affine, crop_to_source_affine, square_crop  # noqa: E402
from hand_cpm_ros.msg import HandKeypointsArray, HandRegions  # noqa: E402
from hand_cpm_ros.ros_messages import bgr_to_image_msg, box_to_roi, roi_to_box  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_peaks_model import (TEST_INPUT_SIZE, TEST_KEYPOINTS_CROP,  # noqa: E402
                               build_fixed_peaks_model)

ROI = RegionOfInterest(x_offset=100, y_offset=100, width=120, height=140)
OTHER_ROI = RegionOfInterest(x_offset=300, y_offset=200, width=100, height=110)
FRAME_ID = 'camera_color_optical_frame'
# Best-effort delivery (the sensor-data default) loses 640x480 frames here: they exceed Fast DDS's
# shared-memory segment and go as UDP fragments. The QoS override parameters make it reliable.
RELIABLE_IMAGE = 'qos_overrides./image.subscription.reliability:=reliable'
K = (500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0)


def expected_keypoints(box, margin=0.25):
    cx, cy, side = square_crop(box, margin)
    return apply_affine(crop_to_source_affine(cx, cy, side, TEST_INPUT_SIZE), TEST_KEYPOINTS_CROP)


def pixels(hand) -> np.ndarray:
    return np.array([(p.x, p.y) for p in hand.keypoints])


def start_node(model_path: Path, log_path: Path, *parameters: str,
               namespace: str = '/') -> subprocess.Popen:
    command = [sys.executable, '-m', 'hand_cpm_ros.node', '--ros-args', '-r', f'__ns:={namespace}',
               '-p', f'model_path:={model_path}', '-p', 'threads:=1']
    for parameter in parameters:
        command += ['-p', parameter]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=log_path.open('w'))


def stop_node(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Client:
    """The test's side of the graph: publishers for the node's inputs, recorders of its outputs."""

    def __init__(self, context, name: str, namespace: str = '/'):
        self.node = Node(name, namespace=namespace, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        create = self.node.create_publisher
        self.image_pub = create(Image, 'image', 10)
        self.compressed_pub = create(CompressedImage, 'image/compressed', 10)
        self.regions_pub = create(HandRegions, 'hand_regions', 10)
        self.depth_pub = create(Image, 'depth', 10)
        self.info_pub = create(CameraInfo, 'camera_info', 10)
        self.hands, self.heatmaps, self.markers, self.diagnostics = [], [], [], []
        for kind, topic, store in ((HandKeypointsArray, 'hands', self.hands),
                                   (Image, 'hands/heatmap', self.heatmaps),
                                   (MarkerArray, 'hands/markers', self.markers),
                                   (DiagnosticArray, '/diagnostics', self.diagnostics)):
            self.node.create_subscription(kind, topic, store.append, 50)
        self.stamp = 1000

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def header(self) -> Header:
        self.stamp += 1
        return Header(stamp=Time(sec=self.stamp, nanosec=250_000_000), frame_id=FRAME_ID)

    def result_for(self, header: Header):
        return next((msg for msg in self.hands if msg.header.stamp == header.stamp), None)

    def send_until(self, publish_frame, accept, timeout: float = 20.0):
        """Publish a frame (publish_frame(header)) every 0.2 s until a result for one of them
        satisfies accept(msg); return that result."""
        sent: list[Header] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            header = self.header()
            sent.append(header)
            publish_frame(header)
            next_frame = time.monotonic() + 0.2
            while time.monotonic() < next_frame:
                for earlier in sent:
                    result = self.result_for(earlier)
                    if result is not None and accept(result):
                        return result
                self.executor.spin_once(timeout_sec=0.02)
        raise AssertionError(f'no accepted result within {timeout} s; got {len(self.hands)} results')

    def publish_regions(self, header: Header, regions=(ROI,)) -> None:
        assert self.wait_for(lambda: self.regions_pub.get_subscription_count() > 0), \
            'node not found'
        self.regions_pub.publish(HandRegions(header=header, regions=list(regions)))

    def publish_with_regions(self, header: Header, regions=(ROI,), **image) -> None:
        """A grey frame (grey_image(header, **image)), its HandRegions just before it."""
        self.publish_regions(header, regions)
        self.image_pub.publish(grey_image(header, **image))

    def regions_received(self) -> None:
        """Return once the node has every HandRegions published so far: a frame sent with its
        regions after them comes back with a hand (one publisher delivers in order). A plain
        frame's answer comes first, so that a node slowed by a busy machine does not get so many
        probe regions that they push the test's own out of its REGIONS_BUFFER."""
        self.send_until(lambda header: self.image_pub.publish(grey_image(header)), lambda msg: True)
        self.send_until(self.publish_with_regions, has_hands())

    def result_of(self, image: Image):
        """Publish `image` alone and return the node's result for it."""
        self.image_pub.publish(image)
        assert self.wait_for(lambda: self.result_for(image.header) is not None), \
            f'no result for {image.header.stamp}'
        return self.result_for(image.header)

    def call(self, service_type, name: str, request):
        client = self.node.create_client(service_type, name)
        assert client.wait_for_service(timeout_sec=20.0), f'service {name} not available'
        future = client.call_async(request)
        assert self.wait_for(future.done), f'{name} did not answer'
        self.node.destroy_client(client)
        return future.result()

    def set_parameters(self, **values):
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        return self.call(SetParameters, '/hand_cpm_node/set_parameters', request).results


def grey_image(header: Header, width: int = 640, height: int = 480, value: int = 128) -> Image:
    return bgr_to_image_msg(np.full((height, width, 3), value, np.uint8), header)


def has_hands(count: int = 1):
    return lambda msg: len(msg.hands) == count


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    return build_fixed_peaks_model(tmp_path_factory.mktemp('model') / 'fixed_peaks_test.onnx')


@pytest.fixture(scope='module')
def context(isolated_ros_environment):
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.fixture(scope='module')
def node_log(tmp_path_factory):
    return tmp_path_factory.mktemp('node') / 'stderr.log'


@pytest.fixture(scope='module')
def client(context, model_path, node_log):
    process = start_node(model_path, node_log, 'tracking:=false', 'localizer_model:=none',
                         RELIABLE_IMAGE)
    client = Client(context, 'hand_cpm_test_client')
    try:
        yield client
    finally:
        client.close()
        stop_node(process)
        assert process.returncode == 0, node_log.read_text()


def test_hands_carry_header_size_and_exact_keypoints(client):
    result = client.send_until(client.publish_with_regions, has_hands())
    assert result.header.frame_id == FRAME_ID and result.header.stamp.nanosec == 250_000_000
    assert (result.image_width, result.image_height) == (640, 480)
    (hand,) = result.hands
    got = pixels(hand)
    np.testing.assert_allclose(got, expected_keypoints(roi_to_box(ROI)), atol=0.5)
    np.testing.assert_allclose(got[9], (159.5, 169.5), atol=0.5)  # the ROI's centre
    assert all(p.z == 0.0 for p in hand.keypoints)
    assert min(hand.confidences) > 0.9 and hand.score == pytest.approx(np.mean(hand.confidences), abs=1e-6)
    assert hand.box == box_to_roi((*got.min(0), *got.max(0)))
    assert hand.box.width > 50 and hand.box.height > 50
    assert (hand.handedness, hand.handedness_score) == (0, 0.0)
    assert hand.track_id >= 1 and list(hand.keypoints_3d) == []


def test_heatmap_and_markers_follow_the_image(client):
    result = client.send_until(client.publish_with_regions, has_hands())
    stamp = result.header.stamp
    assert client.wait_for(lambda: any(m.header.stamp == stamp for m in client.heatmaps))
    heatmap = next(m for m in client.heatmaps if m.header.stamp == stamp)
    assert (heatmap.header.frame_id, heatmap.encoding) == (FRAME_ID, 'bgr8')
    assert (heatmap.width, heatmap.height, heatmap.step) == (640, 480, 1920)
    pixels = np.frombuffer(heatmap.data, np.uint8).reshape(480, 640, 3)
    tip = result.hands[0].keypoints[8]
    assert (pixels[int(round(tip.y)), int(round(tip.x))] != 128).any()
    assert (pixels[5, 600] == 128).all()  # far from the hand: untouched

    assert client.wait_for(lambda: any(m.markers and m.markers[0].header.stamp == stamp
                                       for m in client.markers))
    markers = next(m for m in client.markers if m.markers[0].header.stamp == stamp).markers
    assert markers[0].action == Marker.DELETEALL
    bones, joints = markers[1:]
    assert (bones.type, joints.type) == (Marker.LINE_LIST, Marker.SPHERE_LIST)
    assert bones.id == joints.id == result.hands[0].track_id
    assert len(joints.points) == 21 and len(bones.points) == 40 and len(bones.colors) == 40
    tip_marker = joints.points[8]
    assert (tip_marker.x, tip_marker.y, tip_marker.z) == pytest.approx(
        ((tip.x - 319.5) * 0.001, (tip.y - 239.5) * 0.001, 1.0))


def test_diagnostics_report_rates_latency_and_backend(client):
    def ready():
        return any(s.values and float(dict((v.key, v.value) for v in s.values)['processed rate (Hz)']) > 0
                   for m in client.diagnostics for s in m.status)
    client.send_until(client.publish_with_regions, has_hands())
    assert client.wait_for(ready, timeout=10)
    status = [s for m in client.diagnostics for s in m.status if s.values][-1]
    values = {v.key: v.value for v in status.values}
    assert 'hand_cpm_node' in status.name
    for key in ('backend', 'model', 'input rate (Hz)', 'processed rate (Hz)', 'dropped frames',
                'bad input frames', 'latency median (ms)', 'latency p95 (ms)', 'hands per frame'):
        assert key in values, key
    assert 'onnxruntime' in values['backend'] and values['model'].endswith('fixed_peaks_test.onnx')
    assert float(values['latency p95 (ms)']) >= float(values['latency median (ms)']) > 0


def test_bad_input_is_logged_and_survived(client, node_log):
    client.send_until(client.publish_with_regions, has_hands())

    def bad(mutate, expected_log):
        msg = grey_image(client.header())
        mutate(msg)
        client.image_pub.publish(msg)
        assert client.wait_for(lambda: expected_log in node_log.read_text(), timeout=10), expected_log

    bad(lambda m: setattr(m, 'encoding', 'yuv999'), "unsupported image encoding 'yuv999'")
    bad(lambda m: (setattr(m, 'width', 0), setattr(m, 'data', b'')), 'image is empty')
    bad(lambda m: setattr(m, 'step', 100), 'step 100 is smaller than width')
    bad(lambda m: setattr(m, 'data', bytes(1000)), 'image data is truncated')
    # an all-black frame: the test model returns NaN maps for that crop
    client.send_until(lambda h: client.publish_with_regions(h, value=0),
                      lambda msg: msg.hands == [] and 'NaN/inf belief maps' in node_log.read_text())
    client.send_until(client.publish_with_regions, has_hands())  # still working

    def counted():
        for msg in reversed(client.diagnostics):
            values = {v.key: v.value for s in msg.status for v in s.values}
            return int(values.get('bad input frames', 0)) >= 4 and \
                int(values.get('hands dropped: non_finite_maps', 0)) >= 1
        return False
    assert client.wait_for(counted, timeout=10)
    assert 'Traceback' not in node_log.read_text()


def test_parameters_are_validated_through_the_parameter_service(client):
    refused = client.set_parameters(max_hands=20)[0]
    assert not refused.successful and 'out of range' in refused.reason
    refused = client.set_parameters(smoothing=True)[0]  # the node runs with tracking off
    assert not refused.successful and 'smoothing needs tracking' in refused.reason
    refused = client.set_parameters(model_path='/tmp/other.onnx')[0]
    assert not refused.successful and 'read-only' in refused.reason
    refused = client.set_parameters(keypoint_threshold='high')[0]
    assert not refused.successful
    refused = client.set_parameters(regions_sync_tolerance=2.0)[0]
    assert not refused.successful and 'out of range' in refused.reason
    refused = client.set_parameters(track_half_life=0.0)[0]
    assert not refused.successful and 'out of range' in refused.reason
    refused = client.set_parameters(localizer_interval=0)[0]
    assert not refused.successful and 'out of range' in refused.reason
    refused = client.set_parameters(min_hand_size=1.5)[0]
    assert not refused.successful and 'out of range' in refused.reason
    refused = client.set_parameters(flip_averaging=1)[0]
    assert not refused.successful
    assert client.set_parameters(flip_averaging=True)[0].successful
    value, = client.call(GetParameters, '/hand_cpm_node/get_parameters',
                         GetParameters.Request(names=['flip_averaging'])).values
    assert value.bool_value
    assert client.set_parameters(flip_averaging=False)[0].successful

    accepted = client.set_parameters(crop_margin=0.5, keypoint_threshold=0.4)
    assert [r.successful for r in accepted] == [True, True]
    values = client.call(GetParameters, '/hand_cpm_node/get_parameters',
                         GetParameters.Request(names=['crop_margin', 'keypoint_threshold'])).values
    assert [v.double_value for v in values] == [0.5, 0.4]
    try:
        expected = expected_keypoints(roi_to_box(ROI), margin=0.5)
        result = client.send_until(
            client.publish_with_regions,
            lambda msg: len(msg.hands) == 1 and abs(msg.hands[0].keypoints[0].y - expected[0, 1]) < 0.5)
        np.testing.assert_allclose(pixels(result.hands[0]), expected, atol=0.5)
    finally:
        assert all(r.successful for r in client.set_parameters(crop_margin=0.25, keypoint_threshold=0.2))


def shifted(header: Header, milliseconds: int, frame_id: str = FRAME_ID) -> Header:
    """`header`'s stamp moved by `milliseconds` (within its second), in `frame_id`."""
    return Header(stamp=Time(sec=header.stamp.sec,
                             nanosec=header.stamp.nanosec + 1_000_000 * milliseconds),
                  frame_id=frame_id)


def test_regions_are_used_only_for_the_frame_they_are_stamped_for(client, node_log):
    owner, other = client.header(), client.header()
    client.publish_regions(owner, [OTHER_ROI])
    client.publish_regions(shifted(other, 0, frame_id='other_camera_frame'))  # same stamp
    client.publish_regions(shifted(other, 33))  # the next camera frame's
    client.regions_received()

    assert client.result_of(grey_image(other)).hands == []
    assert client.wait_for(lambda: "hand_regions for frame_id 'other_camera_frame' not used: the "
                                   f"image is in '{FRAME_ID}'" in node_log.read_text(), timeout=10)
    (hand,) = client.result_of(grey_image(owner)).hands  # its regions were kept for it
    np.testing.assert_allclose(pixels(hand), expected_keypoints(roi_to_box(OTHER_ROI)), atol=0.5)


def test_regions_sync_tolerance_takes_the_closest_regions(client):
    """Within the tolerance the closest stamp wins, and an exact match, even an empty one ("no
    boxes for this frame"), beats all others; beyond it nothing is used."""
    assert client.set_parameters(regions_sync_tolerance=0.15)[0].successful
    try:
        closest, exact, far = client.header(), client.header(), client.header()
        client.publish_regions(shifted(closest, 100), [ROI])
        client.publish_regions(shifted(closest, -60), [OTHER_ROI])
        client.publish_regions(shifted(exact, 50), [ROI])
        client.publish_regions(exact, [])
        client.publish_regions(shifted(far, 160), [ROI])
        client.regions_received()

        (hand,) = client.result_of(grey_image(closest)).hands
        np.testing.assert_allclose(pixels(hand), expected_keypoints(roi_to_box(OTHER_ROI)),
                                   atol=0.5)
        assert client.result_of(grey_image(exact)).hands == []
        assert client.result_of(grey_image(far)).hands == []
    finally:
        assert client.set_parameters(regions_sync_tolerance=0.0)[0].successful


def test_regions_outside_the_image_or_empty_are_skipped_with_a_warning(client, node_log):
    regions = [RegionOfInterest(x_offset=700, y_offset=10, width=50, height=50),
               RegionOfInterest(x_offset=10, y_offset=10, width=0, height=30)]
    client.send_until(
        lambda h: client.publish_with_regions(h, regions),
        lambda msg: msg.hands == [] and all(
            line in node_log.read_text()
            for line in ('1 hand region(s) ignored: outside the 640x480 image',
                         'hand_regions: 1 empty region(s) ignored (width or height 0)')))


def test_rosbag_replay_gives_the_live_results(client, tmp_path):
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import Stores, get_typestore

    # content decides the result: big frame, small frame (the ROI gets clipped), black frame (NaN)
    frames = [grey_image(Header(stamp=Time(sec=50 + i), frame_id=FRAME_ID), width, height, value)
              for i, (width, height, value) in enumerate([(640, 480, 128), (320, 240, 90), (640, 480, 0)])]
    for frame in frames:  # the bag holds images only: the regions come live, for both plays
        client.publish_regions(frame.header)
    client.regions_received()

    def play(messages):
        results = []
        for msg in messages:
            results.append(client.result_of(msg))
            client.hands.remove(results[-1])
        return results

    live = play(frames)
    bag = tmp_path / 'frames_bag'
    typestore = get_typestore(Stores.ROS2_KILTED)
    with Writer(bag, version=8) as writer:
        connection = writer.add_connection('/image', 'sensor_msgs/msg/Image', typestore=typestore)
        for msg in frames:
            writer.write(connection, msg.header.stamp.sec * 10**9, serialize_message(msg))
    with Reader(bag) as reader:
        replayed = [deserialize_message(raw, Image) for _, _, raw in reader.messages()]
    assert [bytes(m.data) == bytes(f.data) for m, f in zip(replayed, frames)] == [True] * 3
    replay = play(replayed)

    assert [len(r.hands) for r in live] == [1, 1, 0]
    for a, b in zip(live, replay):
        assert a.header == b.header and (a.image_width, a.image_height) == (b.image_width, b.image_height)
        for hand_a, hand_b in zip(a.hands, b.hands):
            assert [(p.x, p.y) for p in hand_a.keypoints] == [(p.x, p.y) for p in hand_b.keypoints]
            assert list(hand_a.confidences) == list(hand_b.confidences)
            assert hand_a.box == hand_b.box
    np.testing.assert_allclose(pixels(live[1].hands[0]),
                               expected_keypoints((99.5, 99.5, 219.5, 239.5)), atol=0.5)


def test_compressed_input_with_depth_gives_3d_keypoints(context, model_path, tmp_path):
    log = tmp_path / 'stderr.log'
    process = start_node(model_path, log, 'compressed_input:=true', 'use_depth:=true',
                         'tracking:=false', 'localizer_model:=none',
                         'qos_overrides./depth_test/depth.subscription.reliability:=reliable',
                         namespace='/depth_test')
    client = Client(context, 'hand_cpm_test_client_3d', namespace='/depth_test')
    try:
        info = CameraInfo(width=640, height=480, k=K)
        depth = np.full((480, 640), 800, np.uint16)  # 0.8 m
        jpeg = cv2.imencode('.jpg', np.full((480, 640, 3), 128, np.uint8))[1].tobytes()

        def publish(header):
            info.header = header
            client.info_pub.publish(info)
            client.depth_pub.publish(Image(header=header, height=480, width=640, encoding='16UC1',
                                           step=1280, data=depth.tobytes()))
            client.publish_regions(header)
            client.compressed_pub.publish(CompressedImage(header=header, format='jpeg', data=jpeg))

        result = client.send_until(
            publish, lambda m: len(m.hands) == 1 and len(m.hands[0].keypoints_3d) == 21)
        hand = result.hands[0]
        uv = pixels(hand)
        xyz = np.array([(p.x, p.y, p.z) for p in hand.keypoints_3d])
        np.testing.assert_allclose(uv, expected_keypoints(roi_to_box(ROI)), atol=0.5)
        np.testing.assert_allclose(xyz[:, 2], 0.8, atol=1e-6)
        np.testing.assert_allclose(xyz[:, 0], (uv[:, 0] - 319.5) * 0.8 / 500, atol=1e-6)
        np.testing.assert_allclose(xyz[:, 1], (uv[:, 1] - 239.5) * 0.8 / 500, atol=1e-6)
        stamp = result.header.stamp
        assert client.wait_for(lambda: any(m.markers and m.markers[0].header.stamp == stamp
                                           for m in client.markers))
        joints = next(m for m in client.markers if m.markers[0].header.stamp == stamp).markers[2]
        assert (joints.points[8].x, joints.points[8].y, joints.points[8].z) == pytest.approx(tuple(xyz[8]))
    finally:
        client.close()
        stop_node(process)
    assert process.returncode == 0, log.read_text()


def test_missing_model_is_exit_code_2_with_one_clear_line(tmp_path):
    log = tmp_path / 'stderr.log'
    process = start_node(tmp_path / 'no_such_model.onnx', log)
    assert process.wait(timeout=60) == 2
    text = log.read_text()
    assert 'no_such_model.onnx does not exist' in text and 'Traceback' not in text
    assert len([line for line in text.splitlines() if 'cannot start' in line]) == 1


def test_an_integer_for_a_float_parameter_is_exit_code_2_with_the_fix(model_path, tmp_path):
    log = tmp_path / 'stderr.log'
    process = start_node(model_path, log, 'crop_margin:=1')
    assert process.wait(timeout=60) == 2
    text = log.read_text()
    (line,) = [line for line in text.splitlines() if 'cannot start' in line]
    assert 'parameter crop_margin' in line and '1.0 instead of 1' in line
    assert 'Traceback' not in text


def test_missing_fine_localizer_is_exit_code_2_with_one_clear_line(model_path, tmp_path):
    log = tmp_path / 'stderr.log'
    process = start_node(model_path, log, f'fine_localizer_model:={tmp_path / "no_fine.onnx"}')
    assert process.wait(timeout=60) == 2
    text = log.read_text()
    assert 'no_fine.onnx does not exist' in text and 'hand-cpm-export --frame-size' in text
    assert 'Traceback' not in text and len([line for line in text.splitlines() if 'cannot start' in line]) == 1


# Runs the node's main() with the executor's spin() replaced by the moment of a Ctrl-C race: the
# context shut down (as rclpy's signal handler does from its own thread) just before the real
# executor builds its wait set, which raises rclpy's real RCLError.
CTRL_C_RACE = """
import sys
import rclpy
from rclpy.executors import MultiThreadedExecutor
from hand_cpm_ros import node

def spin_into_the_race(executor):
    rclpy.shutdown()
    executor.spin_once()
    raise AssertionError('spin_once on a shut-down context did not raise')

MultiThreadedExecutor.spin = spin_into_the_race
sys.exit(node.main(sys.argv[1:]))
"""


def test_ctrl_c_racing_the_executor_is_a_clean_exit(model_path, tmp_path, isolated_ros_environment):
    log = tmp_path / 'stderr.log'
    with log.open('w') as stderr:
        result = subprocess.run([sys.executable, '-c', CTRL_C_RACE, '--ros-args',
                                 '-p', f'model_path:={model_path}', '-p', 'threads:=1',
                                 '-p', 'localizer_model:=none'],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, timeout=60)
    text = log.read_text()
    assert result.returncode == 0, text
    assert 'Traceback' not in text and 'ready:' in text
