"""Shared test set-up: every test session gets its own ROS domain, log directory and a local-only
discovery range, so parallel runs on one machine never see each other's topics and nothing is
written to ~/.ros."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope='session', autouse=True)
def isolated_ros_environment(tmp_path_factory):
    ros_home = tmp_path_factory.mktemp('ros_home')
    os.environ['ROS_HOME'] = str(ros_home)
    os.environ['ROS_LOG_DIR'] = str(ros_home / 'log')
    os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    yield ros_home


@pytest.fixture
def ros_context():
    """A fresh rclpy context for one test, shut down afterwards."""
    rclpy = pytest.importorskip('rclpy')
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()
