"""Finding and reading the WebXR `generic-hand` skinned meshes (MIT, npm @webxr-input-profiles/assets).

The meshes are not part of the repository; scripts/setup.sh fetches them into `.cache/hand_asset`.
Everything is returned in the hand frame of the mesh's own wrist joint (WebXR convention): origin at
the wrist joint, -Z from the wrist towards the fingers, +Y out of the back of the hand. In that frame
the left mesh is the right mesh mirrored through X = 0.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSET_ENV_VAR = 'HAND_CPM_ASSET_DIR'
ASSET_SUBDIR = Path('.cache') / 'hand_asset'
ASSET_PACKAGE = '@webxr-input-profiles/assets@1.0.20'
SIDES = ('left', 'right')

FINGER_PREFIXES = ('index-finger', 'middle-finger', 'ring-finger', 'pinky-finger')
THUMB_JOINTS = ('thumb-metacarpal', 'thumb-phalanx-proximal', 'thumb-phalanx-distal', 'thumb-tip')
FINGER_JOINT_SUFFIXES = ('metacarpal', 'phalanx-proximal', 'phalanx-intermediate', 'phalanx-distal',
                         'tip')

# The 25 WebXR joints in a fixed order (parents before children), independent of the file's order.
JOINT_NAMES = ('wrist',) + THUMB_JOINTS + tuple(
    f'{prefix}-{suffix}' for prefix in FINGER_PREFIXES for suffix in FINGER_JOINT_SUFFIXES)
NUM_JOINTS = len(JOINT_NAMES)
# Parent of each joint in JOINT_NAMES (-1 for the wrist): a chain per digit, rooted at the wrist.
JOINT_PARENTS = tuple(-1 if name == 'wrist' else
                      0 if name.endswith('metacarpal') else index - 1
                      for index, name in enumerate(JOINT_NAMES))

# The OpenPose 21 keypoints as WebXR joints (a joint sits at the base of its bone). The four finger
# metacarpal joints have no OpenPose point.
OPENPOSE_JOINT_NAMES = ('wrist',) + THUMB_JOINTS + tuple(
    f'{prefix}-{suffix}' for prefix in FINGER_PREFIXES for suffix in FINGER_JOINT_SUFFIXES[1:])
OPENPOSE_JOINTS = np.array([JOINT_NAMES.index(name) for name in OPENPOSE_JOINT_NAMES])

_COMPONENT_DTYPES = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_TYPE_SIZES = {'SCALAR': 1, 'VEC2': 2, 'VEC3': 3, 'VEC4': 4, 'MAT4': 16}


class AssetNotFoundError(FileNotFoundError):
    """The hand meshes are missing; the message says how to get them."""


def find_asset_dir() -> Path:
    """The directory holding left.glb and right.glb.

    Order: $HAND_CPM_ASSET_DIR; `.cache/hand_asset` in the nearest parent directory of this file
    that has one (source tree or installed copy inside the project's venv); `./.cache/hand_asset`.
    """
    env_dir = os.environ.get(ASSET_ENV_VAR)
    if env_dir:
        candidates = [Path(env_dir)]
    else:
        candidates = [parent / ASSET_SUBDIR for parent in Path(__file__).resolve().parents]
        candidates.append(Path.cwd() / ASSET_SUBDIR)
    for candidate in candidates:
        if all((candidate / f'{side}.glb').is_file() for side in SIDES):
            return candidate
    target = Path(env_dir) if env_dir else Path.cwd() / ASSET_SUBDIR
    raise AssetNotFoundError(
        f'hand meshes not found (looked for left.glb and right.glb in {target}'
        f'{"" if env_dir else " and the parents of " + str(Path(__file__).parent)}): '
        f'run scripts/setup.sh, or: npm pack {ASSET_PACKAGE} and extract '
        f'dist/profiles/generic-hand/{{left,right}}.glb and LICENSE.md into {target}, '
        f'or set {ASSET_ENV_VAR}')


@dataclass(frozen=True)
class HandMesh:
    """One skinned hand mesh in its wrist frame (metres).

    vertices (V,3) and normals (V,3) float64 in the bind pose; faces (F,3) int32 counter-clockwise;
    skin_joints (V,4) indices into JOINT_NAMES with skin_weights (V,4) summing to 1;
    bind_transforms (25,4,4) joint-to-hand-frame transforms of the bind (rest) pose.
    """
    side: str
    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    skin_joints: np.ndarray
    skin_weights: np.ndarray
    bind_transforms: np.ndarray


def _read_accessor(gltf, blob: bytes, index: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    dtype = _COMPONENT_DTYPES[accessor.componentType]
    width = _TYPE_SIZES[accessor.type]
    if view.byteStride not in (None, 0, width * np.dtype(dtype).itemsize):
        raise ValueError(f'interleaved glTF buffers are not supported (accessor {index})')
    offset = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    return np.frombuffer(blob, dtype=dtype, count=accessor.count * width,
                         offset=offset).reshape(accessor.count, width)


@functools.lru_cache(maxsize=2)
def load_hand_mesh(side: str) -> HandMesh:
    """Read `side`.glb ('left' or 'right') from find_asset_dir() into the wrist frame."""
    if side not in SIDES:
        raise ValueError(f'hand side must be one of {SIDES}, got {side!r}')
    import pygltflib  # training-only dependency

    path = find_asset_dir() / f'{side}.glb'
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    if len(gltf.skins) != 1 or len(gltf.meshes) != 1 or len(gltf.meshes[0].primitives) != 1:
        raise ValueError(f'{path}: expected one skin and one single-primitive mesh')
    skin = gltf.skins[0]
    primitive = gltf.meshes[0].primitives[0]
    file_joint_names = [gltf.nodes[node].name for node in skin.joints]
    missing = sorted(set(JOINT_NAMES) - set(file_joint_names))
    if missing:
        raise ValueError(f'{path}: skin lacks joints {missing}')
    to_ours = np.array([JOINT_NAMES.index(name) for name in file_joint_names])

    inverse_bind = _read_accessor(gltf, blob, skin.inverseBindMatrices).astype(np.float64)
    bind_model = np.linalg.inv(inverse_bind.reshape(-1, 4, 4).transpose(0, 2, 1))  # column-major
    bind_model = bind_model[np.argsort(to_ours)]
    to_hand = np.linalg.inv(bind_model[0])  # the wrist frame
    bind_transforms = to_hand @ bind_model
    rotation, translation = to_hand[:3, :3], to_hand[:3, 3]

    attributes = primitive.attributes
    positions = _read_accessor(gltf, blob, attributes.POSITION).astype(np.float64)
    normals = _read_accessor(gltf, blob, attributes.NORMAL).astype(np.float64)
    faces = _read_accessor(gltf, blob, primitive.indices).reshape(-1, 3).astype(np.int32)
    skin_joints = to_ours[_read_accessor(gltf, blob, attributes.JOINTS_0)]
    skin_weights = _read_accessor(gltf, blob, attributes.WEIGHTS_0).astype(np.float64)
    skin_weights /= skin_weights.sum(axis=1, keepdims=True)
    normals = normals @ rotation.T
    return HandMesh(
        side=side,
        vertices=positions @ rotation.T + translation,
        normals=normals / np.linalg.norm(normals, axis=1, keepdims=True),
        faces=faces,
        skin_joints=skin_joints.astype(np.int32),
        skin_weights=skin_weights,
        bind_transforms=bind_transforms,
    )
