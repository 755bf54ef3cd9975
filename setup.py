"""pip installation of the pure-Python runtime, the training module and the command-line tools.

A GPU training box needs no ROS: `pip install .[train]` gives hand-cpm-train and the other tools.
On a robot, colcon builds this repository as the ament_cmake package `hand_cpm_ros`
(CMakeLists.txt), which also generates the messages and installs these same console scripts.
The distribution is named `hand-cpm`, not `hand_cpm_ros`, so that it never replaces the
`hand_cpm_ros` distribution that rosidl installs together with the generated messages.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'<version>(.+?)</version>',
                    (Path(__file__).parent / 'package.xml').read_text()).group(1)

setup(
    name='hand-cpm',
    version=VERSION,
    description='Hand keypoint detection (Convolutional Pose Machine) for ROS 2, with training',
    license='Apache-2.0',
    packages=find_packages(include=['hand_cpm_ros', 'hand_cpm_ros.*',
                                    'hand_cpm_train', 'hand_cpm_train.*']),
    python_requires='>=3.10',
    install_requires=['numpy>=1.24', 'opencv-python-headless>=4.8', 'onnxruntime>=1.17'],
    extras_require={
        'train': ['torch>=2.3', 'onnx>=1.16', 'onnxscript>=0.2', 'tqdm', 'matplotlib',
                  'tensorboard', 'moderngl>=5.10', 'pygltflib>=1.16', 'scikit-image'],
        'tensorrt': ['tensorrt>=10', 'cuda-python>=12'],
    },
    # One entry per line in exactly this form: CMakeLists.txt reads this list to install the same
    # commands on a robot.
    entry_points={'console_scripts': [
        'hand_cpm_node = hand_cpm_ros.node:main',
        'hand-cpm-detect = hand_cpm_ros.detect_cli:main',
        'hand-cpm-demo = hand_cpm_ros.demo:main',
        'hand-cpm-node-benchmark = hand_cpm_ros.node_benchmark:main',
        'hand-cpm-models = hand_cpm_train.models:main',
        'hand-cpm-synth = hand_cpm_train.synth.cli:main',
        'hand-cpm-export = hand_cpm_train.export:main',
        'hand-cpm-train = hand_cpm_train.train:main',
        'hand-cpm-train-handedness = hand_cpm_train.handedness:main',
        'hand-cpm-eval = hand_cpm_train.evaluate:main',
        'hand-cpm-plot-runs = hand_cpm_train.run_history:main',
        'hand-cpm-benchmark = hand_cpm_train.benchmark:main',
        'hand-cpm-compare-mediapipe = hand_cpm_train.compare_mediapipe:main',
        'hand-cpm-mediapipe-labels = hand_cpm_train.mediapipe_labels:main',
        'hand-cpm-quantize = hand_cpm_train.quantize:main',
        'hand-cpm-build-engine = hand_cpm_ros.tensorrt_build:main',
    ]},
)
