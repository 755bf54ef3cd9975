"""Hand articulation: the degrees of freedom, their anatomical limits, named gestures and sampling.

A pose is a float array of NUM_DOFS angles in degrees, relative to the mesh's rest pose (which is a
flat, nearly straight hand). Flexion is positive towards the palm; `spread` is positive away from
the middle finger (for the middle finger itself: towards the index finger). Pure numpy.
"""
from __future__ import annotations

import numpy as np

FINGER_NAMES = ('index', 'middle', 'ring', 'little')

DOF_NAMES = (
    'thumb_cmc_flex', 'thumb_cmc_abduct', 'thumb_cmc_twist', 'thumb_mcp_flex', 'thumb_ip_flex',
) + tuple(f'{finger}_{dof}' for finger in FINGER_NAMES
          for dof in ('mcp_flex', 'mcp_spread', 'pip_flex', 'dip_flex')) + ('palm_cup',)
NUM_DOFS = len(DOF_NAMES)
DOF = {name: index for index, name in enumerate(DOF_NAMES)}

# Anatomical range of motion in degrees (active motion, slightly widened for passive poses).
_LIMITS = {
    'thumb_cmc_flex': (-20.0, 45.0), 'thumb_cmc_abduct': (-25.0, 35.0),
    'thumb_cmc_twist': (-15.0, 40.0), 'thumb_mcp_flex': (-10.0, 60.0),
    'thumb_ip_flex': (-15.0, 80.0), 'palm_cup': (0.0, 25.0),
}
for _finger in FINGER_NAMES:
    _LIMITS.update({f'{_finger}_mcp_flex': (-20.0, 90.0), f'{_finger}_mcp_spread': (-20.0, 20.0),
                    f'{_finger}_pip_flex': (0.0, 110.0), f'{_finger}_dip_flex': (0.0, 80.0)})
LIMITS = np.array([_LIMITS[name] for name in DOF_NAMES])  # (NUM_DOFS, 2) low, high

# Typical DIP/PIP ratio of an unloaded finger (tendon coupling).
DIP_PIP_COUPLING = 2.0 / 3.0


def _gesture(thumb: tuple[float, float, float, float, float],
             fingers: dict[str, tuple[float, float, float, float]],
             cup: float = 0.0) -> np.ndarray:
    pose = np.zeros(NUM_DOFS)
    pose[:5] = thumb
    for finger, values in fingers.items():
        start = DOF[f'{finger}_mcp_flex']
        pose[start:start + 4] = values
    pose[DOF['palm_cup']] = cup
    return pose


_STRAIGHT = (0.0, 0.0, 0.0, 0.0)
# Thumb tip on the middle finger's PIP (fitted on the mesh), for the closed fingers of a fist.
_THUMB_OVER_FIST = (12.0, 13.0, 16.0, 54.0, 70.0)
_CURLED = (85.0, 0.0, 100.0, 65.0)

# Named gestures (the thumb of `ok` and `pinch` touches the index tip, fitted on the mesh):
# thumb (cmc flex, cmc abduct, cmc twist, mcp, ip); per finger (mcp, spread, pip, dip).
GESTURES: dict[str, np.ndarray] = {
    'open_palm': _gesture((-10.0, 25.0, 0.0, 0.0, 0.0), {
        'index': (0.0, 12.0, 0.0, 0.0), 'middle': (0.0, 2.0, 0.0, 0.0),
        'ring': (0.0, 10.0, 0.0, 0.0), 'little': (0.0, 18.0, 0.0, 0.0)}),
    'relaxed': _gesture((10.0, 10.0, 10.0, 15.0, 15.0), {
        'index': (20.0, 3.0, 25.0, 15.0), 'middle': (25.0, 0.0, 30.0, 20.0),
        'ring': (30.0, 2.0, 35.0, 22.0), 'little': (35.0, 5.0, 40.0, 25.0)}, cup=8.0),
    'fist': _gesture(_THUMB_OVER_FIST, {
        'index': _CURLED, 'middle': _CURLED, 'ring': _CURLED, 'little': _CURLED}, cup=15.0),
    'pointing': _gesture(_THUMB_OVER_FIST, {
        'index': _STRAIGHT, 'middle': _CURLED, 'ring': _CURLED, 'little': _CURLED}, cup=12.0),
    'pinch': _gesture((36.0, 21.0, 30.0, 10.0, 7.0), {
        'index': (45.0, 0.0, 50.0, 25.0), 'middle': (15.0, 0.0, 20.0, 10.0),
        'ring': (15.0, 3.0, 20.0, 10.0), 'little': (15.0, 8.0, 20.0, 10.0)}),
    'ok': _gesture((18.0, 35.0, 29.0, 29.0, 35.0), {
        'index': (50.0, 0.0, 55.0, 30.0), 'middle': (5.0, 5.0, 5.0, 0.0),
        'ring': (5.0, 8.0, 5.0, 0.0), 'little': (5.0, 15.0, 5.0, 0.0)}),
    'grasp': _gesture((20.0, 20.0, 25.0, 20.0, 20.0), {
        'index': (40.0, 5.0, 45.0, 30.0), 'middle': (45.0, 0.0, 50.0, 33.0),
        'ring': (45.0, 3.0, 50.0, 33.0), 'little': (45.0, 8.0, 50.0, 33.0)}, cup=15.0),
    'thumbs_up': _gesture((-15.0, 25.0, 0.0, 0.0, -10.0), {
        'index': _CURLED, 'middle': _CURLED, 'ring': _CURLED, 'little': _CURLED}, cup=15.0),
    'peace': _gesture(_THUMB_OVER_FIST, {
        'index': (0.0, 12.0, 0.0, 0.0), 'middle': (0.0, 10.0, 0.0, 0.0),
        'ring': _CURLED, 'little': _CURLED}, cup=12.0),
    'three': _gesture(_THUMB_OVER_FIST, {
        'index': (0.0, 10.0, 0.0, 0.0), 'middle': (0.0, 5.0, 0.0, 0.0),
        'ring': (0.0, 8.0, 0.0, 0.0), 'little': _CURLED}, cup=10.0),
    'rock': _gesture((25.0, 0.0, 30.0, 40.0, 45.0), {
        'index': (0.0, 10.0, 0.0, 0.0), 'middle': _CURLED, 'ring': _CURLED,
        'little': (0.0, 15.0, 0.0, 0.0)}, cup=10.0),
    'call_me': _gesture((-15.0, 25.0, 0.0, 0.0, -5.0), {
        'index': _CURLED, 'middle': _CURLED, 'ring': _CURLED,
        'little': (0.0, 15.0, 0.0, 0.0)}, cup=10.0),
    'claw': _gesture((15.0, 15.0, 15.0, 30.0, 40.0), {
        'index': (-10.0, 10.0, 80.0, 60.0), 'middle': (-10.0, 0.0, 80.0, 60.0),
        'ring': (-10.0, 8.0, 80.0, 60.0), 'little': (-10.0, 15.0, 80.0, 60.0)}, cup=10.0),
}
GESTURE_NAMES = tuple(GESTURES)


def clip_pose(pose: np.ndarray) -> np.ndarray:
    """The pose with every angle clipped into LIMITS."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (NUM_DOFS,):
        raise ValueError(f'a hand pose has {NUM_DOFS} angles, got shape {pose.shape}')
    return np.clip(pose, LIMITS[:, 0], LIMITS[:, 1])


def couple_distal_joints(pose: np.ndarray, rng: np.random.Generator,
                         jitter_deg: float = 8.0) -> np.ndarray:
    """Set each finger's DIP to about 2/3 of its PIP (plus a little noise), like a real finger."""
    pose = pose.copy()
    for finger in FINGER_NAMES:
        pose[DOF[f'{finger}_dip_flex']] = (DIP_PIP_COUPLING * pose[DOF[f'{finger}_pip_flex']]
                                           + rng.normal(0.0, jitter_deg))
    return clip_pose(pose)


def sample_uniform_pose(rng: np.random.Generator) -> np.ndarray:
    """Every angle uniform within its limits (DIP coupled to PIP most of the time)."""
    pose = rng.uniform(LIMITS[:, 0], LIMITS[:, 1])
    return couple_distal_joints(pose, rng) if rng.random() < 0.8 else pose


def sample_gesture_pose(rng: np.random.Generator, gesture: str | None = None,
                        noise_deg: float = 10.0) -> np.ndarray:
    """A named gesture (random if None) with Gaussian noise on every angle."""
    name = gesture if gesture is not None else GESTURE_NAMES[rng.integers(len(GESTURE_NAMES))]
    if name not in GESTURES:
        raise ValueError(f'unknown gesture {name!r}; choose from {", ".join(GESTURE_NAMES)}')
    pose = GESTURES[name] + rng.normal(0.0, noise_deg, NUM_DOFS)
    return couple_distal_joints(pose, rng, jitter_deg=5.0) if rng.random() < 0.8 else clip_pose(pose)


def sample_pose(rng: np.random.Generator, uniform_fraction: float = 0.35) -> np.ndarray:
    """Uniform within limits for `uniform_fraction` of the calls, else a noisy gesture."""
    if rng.random() < uniform_fraction:
        return sample_uniform_pose(rng)
    return sample_gesture_pose(rng, noise_deg=float(rng.uniform(4.0, 15.0)))
