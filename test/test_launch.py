"""The launch file, its parameter file and RViz config: what can be checked without launch_ros
(parsed with ast: every argument declared with a description, the files it points to exist and are
installed; the YAML holds every node parameter with the node's default and the node starts with it),
and, where launch_ros imports (a robot), the LaunchDescription itself."""
import ast
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'hand.launch.py'
EXPECTED_ARGUMENTS = {'image', 'compressed_input', 'camera_info', 'depth', 'use_depth',
                      'hand_regions', 'backend', 'model', 'engine', 'params_file', 'namespace',
                      'use_rviz', 'use_sim_time'}


def launch_calls(name: str) -> list[ast.Call]:
    tree = ast.parse(LAUNCH_FILE.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, 'id', getattr(node.func, 'attr', None)) == name]


def keyword(call: ast.Call, name: str):
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def test_every_argument_is_declared_with_a_description():
    declared = {}
    for call in launch_calls('DeclareLaunchArgument'):
        description = keyword(call, 'description')
        assert description is not None, ast.unparse(call)
        declared[call.args[0].value] = ast.literal_eval(description)
    assert set(declared) == EXPECTED_ARGUMENTS
    assert all(len(text) > 10 for text in declared.values())
    used = {call.args[0].value for call in launch_calls('LaunchConfiguration')}
    assert used == EXPECTED_ARGUMENTS  # every argument is used, none is undeclared


def test_launch_runs_the_registered_node_with_its_remappings():
    (node,) = [call for call in launch_calls('Node')
               if ast.literal_eval(keyword(call, 'executable')) == 'hand_cpm_node']
    assert ast.literal_eval(keyword(node, 'package')) == 'hand_cpm_ros'
    assert "'hand_cpm_node = hand_cpm_ros.node:main'," in (REPO / 'setup.py').read_text()
    remapped = {ast.literal_eval(pair.elts[0]) for pair in keyword(node, 'remappings').elts}
    assert remapped == {'image', 'image/compressed', 'camera_info', 'depth', 'hand_regions'}


def test_files_the_launch_points_to_exist_and_are_installed():
    source = LAUNCH_FILE.read_text()
    referenced = set(re.findall(r"share / '(\w+)' / '([\w.]+)'", source))
    assert referenced == {('config', 'hand.yaml'), ('config', 'hand.rviz')}
    for folder, name in referenced:
        assert (REPO / folder / name).is_file()
    cmake = (REPO / 'CMakeLists.txt').read_text()
    assert re.search(r'install\(DIRECTORY launch config DESTINATION share/\$\{PROJECT_NAME\}\)', cmake)
    rviz = yaml.safe_load((REPO / 'config' / 'hand.rviz').read_text())
    topics = {display.get('Topic', {}).get('Value')
              for display in rviz['Visualization Manager']['Displays']}
    assert {'/hands/heatmap', '/hands/markers'} <= topics


def test_installed_copy_matches_the_source():
    share = Path(sys.prefix) / 'share' / 'hand_cpm_ros'
    if not (share / 'launch').is_dir():
        pytest.skip('package not installed into this environment: run scripts/setup.sh')
    for relative in ('launch/hand.launch.py', 'config/hand.yaml', 'config/hand.rviz'):
        assert (share / relative).read_text() == (REPO / relative).read_text(), \
            f'{relative} installed copy is stale: run scripts/setup.sh'


def test_yaml_holds_every_parameter_with_the_node_default():
    from hand_cpm_ros.node import PARAMETERS
    parameters = yaml.safe_load((REPO / 'config' / 'hand.yaml').read_text())['/**']['ros__parameters']
    assert parameters == {name: default for name, (default, _) in PARAMETERS.items()}


def test_node_reads_the_yaml(tmp_path, ros_context):
    """rcl parses the file: a copy with one value changed is what the node then reports."""
    pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
    from fixed_peaks_model import build_fixed_peaks_model
    model = build_fixed_peaks_model(tmp_path / 'fixed_peaks_test.onnx')
    params = tmp_path / 'hand.yaml'
    params.write_text((REPO / 'config' / 'hand.yaml').read_text()
                      .replace('crop_margin: 0.25', 'crop_margin: 0.4'))
    log = tmp_path / 'stderr.log'
    process = subprocess.Popen(
        [sys.executable, '-m', 'hand_cpm_ros.node', '--ros-args', '-r', '__ns:=/launch_test',
         '--params-file', str(params), '-p', f'model_path:={model}'],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open('w'))
    node = Node('yaml_test_client', context=ros_context)
    try:
        client = node.create_client(GetParameters, '/launch_test/hand_cpm_node/get_parameters')
        assert client.wait_for_service(timeout_sec=30.0), log.read_text()
        future = client.call_async(GetParameters.Request(names=['crop_margin', 'max_hands']))
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=30.0)
        executor.shutdown()
        values = future.result().values
        assert (values[0].double_value, values[1].integer_value) == (0.4, 2)
    finally:
        node.destroy_node()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0, log.read_text()


def test_launch_description_where_launch_ros_exists():
    pytest.importorskip('launch_ros', reason='launch_ros is not installable here (no PyPI wheel); '
                                             'this runs on a machine with ROS 2 installed')
    from launch.actions import DeclareLaunchArgument
    namespace = {}
    exec(compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), 'exec'), namespace)
    description = namespace['generate_launch_description']()
    names = {entity.name for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert names == EXPECTED_ARGUMENTS
