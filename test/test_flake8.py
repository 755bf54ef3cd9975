"""Static checks over the package's Python (as ament_flake8 does for ROS 2 packages): an
undefined or unused name, or a style slip, fails the suite. Settings in .flake8."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ['hand_cpm_ros', 'hand_cpm_train', 'launch', 'scripts', 'test', 'examples', 'setup.py']


def test_flake8_finds_nothing():
    pytest.importorskip('flake8', reason='flake8 is not installed (requirements.txt has it)')
    result = subprocess.run([sys.executable, '-m', 'flake8', *CHECKED], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f'flake8 found:\n{result.stdout}{result.stderr}'
