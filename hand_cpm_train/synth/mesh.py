"""Posing the hand mesh (forward kinematics + linear blend skinning) and the forearm geometry.

Everything is in the hand frame of asset.py (metres; origin at the wrist joint, -Z towards the
fingers, +Y out of the back of the hand). Pure numpy.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hand_cpm_ros.keypoints import FINGERTIPS, NUM_KEYPOINTS
from hand_cpm_train.synth.asset import (FINGER_PREFIXES, JOINT_NAMES, JOINT_PARENTS, NUM_JOINTS,
                                        OPENPOSE_JOINTS, HandMesh, load_hand_mesh)
from hand_cpm_train.synth.pose import DOF, FINGER_NAMES, NUM_DOFS

# The WebXR `-tip` joint sits inside the finger pad, about 1 cm short of the end of the finger. The
# OpenPose fingertip is the end of the finger, so the fingertip keypoint is moved along the distal
# bone to the mesh surface, this far inside it (metres) so the depth test still sees it.
FINGERTIP_INSET = 0.001
# Margin added to each keypoint's depth tolerance (metres): skinning and rasterisation error.
DEPTH_TOLERANCE_MARGIN = 0.002
# Extent (metres) along the bone of the mesh slice used to measure a joint's cross-section.
_SLICE_HALF_LENGTH = 0.005


def _rotation_x(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rotation_y(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class PosedHand:
    """A posed hand in the hand frame: mesh (V,3) vertices and unit normals, the 21 OpenPose
    keypoints (21,3) and the 25 joint transforms (25,4,4)."""
    vertices: np.ndarray
    normals: np.ndarray
    keypoints: np.ndarray
    joint_transforms: np.ndarray


class HandRig:
    """Skeleton + skin of one hand side; turns a pose (pose.py angles) into a posed mesh."""

    def __init__(self, mesh: HandMesh):
        self.mesh = mesh
        bind = mesh.bind_transforms
        parents = np.array(JOINT_PARENTS)
        self.rest_local = np.stack([bind[j] if parents[j] < 0 else
                                    np.linalg.inv(bind[parents[j]]) @ bind[j]
                                    for j in range(NUM_JOINTS)])
        self.inverse_bind = np.linalg.inv(bind)
        # +1 for a right hand (thumb on the hand frame's -X side), -1 for a left hand: rotations
        # about a joint's Y and Z axes change sign between the two mirror-image skeletons.
        thumb_x = bind[JOINT_NAMES.index('thumb-phalanx-proximal'), 0, 3]
        self.mirror = 1.0 if thumb_x < 0 else -1.0
        # The joint that moves each vertex most.
        self.dominant_joint = mesh.skin_joints[np.arange(len(mesh.skin_joints)),
                                               mesh.skin_weights.argmax(axis=1)]
        self.tip_extensions = self._measure_tip_extensions()
        self.depth_tolerances = self._measure_depth_tolerances(self._keypoints(bind))

    def _measure_tip_extensions(self) -> np.ndarray:
        """(5,) distance from each `-tip` joint along its bone to the end of the finger, less the
        inset."""
        extensions = []
        for tip in self._tip_joints():
            frame = self.mesh.bind_transforms[tip]
            local = (self.mesh.vertices - frame[:3, 3]) @ frame[:3, :3]
            near_axis = np.hypot(local[:, 0], local[:, 1]) < 0.005
            extensions.append(float(-local[near_axis, 2].min()) - FINGERTIP_INSET)
        return np.array(extensions)

    @staticmethod
    def _tip_joints() -> list[int]:
        return [JOINT_NAMES.index('thumb-tip')] + [JOINT_NAMES.index(f'{prefix}-tip')
                                                   for prefix in FINGER_PREFIXES]

    def _keypoints(self, transforms: np.ndarray) -> np.ndarray:
        keypoints = transforms[OPENPOSE_JOINTS, :3, 3].copy()
        tips = self._tip_joints()
        for keypoint, tip, extension in zip(FINGERTIPS, tips, self.tip_extensions):
            keypoints[keypoint] += transforms[tip, :3, :3] @ np.array([0.0, 0.0, -extension])
        return keypoints

    def _measure_depth_tolerances(self, rest_keypoints: np.ndarray) -> np.ndarray:
        """(21,) how deep (metres) each keypoint can lie under its own skin, from any side.

        A keypoint is inside its finger (or palm); seen from any direction, the surface in front of
        it is at most the radius of the mesh's cross-section at that joint away. That radius is
        measured on the rest mesh: the farthest vertex, skinned mainly to one of the two bones that
        meet at the joint (the distal phalanx for a fingertip), within +-5 mm along the bone.
        Anything in front by more than that (plus a margin) is another part of the hand, or another
        object.
        """
        mesh, dominant = self.mesh, self.dominant_joint
        tolerances = np.zeros(NUM_KEYPOINTS)
        tips = dict(zip(FINGERTIPS, self._tip_joints()))
        for keypoint in range(NUM_KEYPOINTS):
            joint = tips.get(keypoint, OPENPOSE_JOINTS[keypoint])
            # The bones that meet at the joint (tip joints skin nothing: only the distal phalanx).
            owners = [JOINT_PARENTS[joint]] if keypoint in tips else [joint, JOINT_PARENTS[joint]]
            axis = mesh.bind_transforms[joint, :3, 2]
            offsets = mesh.vertices - rest_keypoints[keypoint]
            in_slice = (np.abs(offsets @ axis) < _SLICE_HALF_LENGTH) & np.isin(dominant, owners)
            tolerances[keypoint] = np.linalg.norm(offsets[in_slice], axis=1).max()
        return tolerances + DEPTH_TOLERANCE_MARGIN

    def _joint_rotations(self, pose: np.ndarray) -> np.ndarray:
        """(25,3,3) rotation of each joint relative to its rest orientation, in its own frame."""
        mirror = self.mirror
        rotations = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
        rotations[JOINT_NAMES.index('thumb-metacarpal')] = (
            _rotation_y(mirror * pose[DOF['thumb_cmc_abduct']])
            @ _rotation_x(-pose[DOF['thumb_cmc_flex']])
            @ _rotation_z(mirror * pose[DOF['thumb_cmc_twist']]))
        rotations[JOINT_NAMES.index('thumb-phalanx-proximal')] = _rotation_x(-pose[DOF['thumb_mcp_flex']])
        rotations[JOINT_NAMES.index('thumb-phalanx-distal')] = _rotation_x(-pose[DOF['thumb_ip_flex']])
        # Spread is away from the middle finger; Ry(+a) swings a bone towards the joint's -X side.
        towards_thumb = {'index': 1.0, 'middle': 1.0, 'ring': -1.0, 'little': -1.0}
        for finger, prefix in zip(FINGER_NAMES, FINGER_PREFIXES):
            spread = towards_thumb[finger] * pose[DOF[f'{finger}_mcp_spread']]
            rotations[JOINT_NAMES.index(f'{prefix}-phalanx-proximal')] = (
                _rotation_y(mirror * spread) @ _rotation_x(-pose[DOF[f'{finger}_mcp_flex']]))
            rotations[JOINT_NAMES.index(f'{prefix}-phalanx-intermediate')] = _rotation_x(
                -pose[DOF[f'{finger}_pip_flex']])
            rotations[JOINT_NAMES.index(f'{prefix}-phalanx-distal')] = _rotation_x(
                -pose[DOF[f'{finger}_dip_flex']])
        cup = pose[DOF['palm_cup']]
        rotations[JOINT_NAMES.index('ring-finger-metacarpal')] = _rotation_x(-0.5 * cup)
        rotations[JOINT_NAMES.index('pinky-finger-metacarpal')] = (
            _rotation_x(-cup) @ _rotation_z(-mirror * 0.5 * cup))
        return rotations

    def joint_transforms(self, pose: np.ndarray) -> np.ndarray:
        """(25,4,4) joint-to-hand-frame transforms of `pose` (forward kinematics)."""
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (NUM_DOFS,):
            raise ValueError(f'a hand pose has {NUM_DOFS} angles, got shape {pose.shape}')
        rotations = self._joint_rotations(pose)
        transforms = np.empty((NUM_JOINTS, 4, 4))
        for joint, parent in enumerate(JOINT_PARENTS):
            local = self.rest_local[joint].copy()
            local[:3, :3] = local[:3, :3] @ rotations[joint]
            transforms[joint] = local if parent < 0 else transforms[parent] @ local
        return transforms

    def pose(self, pose: np.ndarray) -> PosedHand:
        """Posed mesh and keypoints (linear blend skinning, vectorised over the vertices)."""
        transforms = self.joint_transforms(pose)
        skinning = transforms @ self.inverse_bind                      # (25,4,4)
        blended = np.einsum('vk,vkij->vij', self.mesh.skin_weights,
                            skinning[self.mesh.skin_joints])            # (V,4,4)
        vertices = np.einsum('vij,vj->vi', blended[:, :3, :3], self.mesh.vertices) + blended[:, :3, 3]
        normals = np.einsum('vij,vj->vi', blended[:, :3, :3], self.mesh.normals)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return PosedHand(vertices, normals, self._keypoints(transforms), transforms)


@functools.lru_cache(maxsize=2)
def hand_rig(side: str) -> HandRig:
    """The (cached) rig of the 'left' or 'right' hand mesh."""
    return HandRig(load_hand_mesh(side))


# Cross-section of the mesh's open wrist end in the hand frame (metres): centre and half-axes.
WRIST_CENTER = (0.001, 0.0)
WRIST_HALF_WIDTH = 0.026      # along X (thumb to little finger side)
WRIST_HALF_THICKNESS = 0.019  # along Y (palm to back)


def forearm_mesh(length: float, flex_deg: float, deviation_deg: float, girth: float = 1.0,
                 start: float = -0.012, widen: float = 1.0,
                 segments: int = 20, rings: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tapered elliptic tube from the wrist towards the elbow, in the hand frame.

    The tube leaves the wrist along +Z, bent by the wrist's flexion (towards the palm side) and
    radial/ulnar deviation. `girth` scales the cross-section (1 = the mesh's wrist), `widen` scales
    it further (a sleeve over the arm), `start` is where along +Z it begins (inside the hand mesh
    by default, to close the open wrist end). Returns vertices (N,3), normals (N,3), faces (M,3).
    """
    along = np.linspace(0.0, 1.0, rings)
    growth = np.clip(along / 0.45, 0.0, 1.0)
    growth = growth * growth * (3.0 - 2.0 * growth)  # smoothstep: forearms widen above the wrist
    half_width = girth * widen * WRIST_HALF_WIDTH * (1.0 + 0.30 * growth)
    half_thickness = girth * widen * WRIST_HALF_THICKNESS * (1.0 + 0.55 * growth)
    angle = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    cos, sin = np.cos(angle)[None, :], np.sin(angle)[None, :]
    x = WRIST_CENTER[0] + half_width[:, None] * cos
    y = WRIST_CENTER[1] + half_thickness[:, None] * sin
    z = np.broadcast_to((start + along * (length - start))[:, None], x.shape)
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    normals = np.stack([cos / half_width[:, None], sin / half_thickness[:, None],
                        np.zeros_like(x)], axis=-1).reshape(-1, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    ring_index = np.arange(rings - 1)[:, None] * segments
    column, next_column = np.arange(segments)[None, :], (np.arange(segments)[None, :] + 1) % segments
    a, b = ring_index + column, ring_index + next_column
    c, d = a + segments, b + segments
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                            np.stack([a, d, c], -1).reshape(-1, 3)])
    # Close the far end with a fan around its centre.
    centre = len(vertices)
    last = (rings - 1) * segments + np.arange(segments)
    cap = np.stack([np.full(segments, centre), last, np.roll(last, -1)], axis=-1)
    vertices = np.vstack([vertices, [[WRIST_CENTER[0], WRIST_CENTER[1], length]]])
    normals = np.vstack([normals, [[0.0, 0.0, 1.0]]])
    faces = np.vstack([faces, cap]).astype(np.int32)
    # Bend at the wrist joint (the hand-frame origin): when the hand flexes towards the palm, the
    # arm seen from the hand swings to the palm side (-Y).
    bend = _rotation_y(deviation_deg) @ _rotation_x(flex_deg)
    return vertices @ bend.T, normals @ bend.T, faces


PRIMITIVES = ('ellipsoid', 'box', 'cylinder')


def _outward_faces(vertices: np.ndarray, normals: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """`faces` reordered where needed so that each one winds counter-clockwise around its normal,
    as the hand and forearm meshes do (the renderer lights back faces with the flipped normal)."""
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inward = (cross * normals[faces].mean(axis=1)).sum(axis=1) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, [0, 2, 1]]
    return faces.astype(np.int32)


def primitive_mesh(kind: str, segments: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed unit primitive centred at the origin, for things in a scene that are not hands:
    'ellipsoid' (the unit sphere), 'box' (the cube [-1, 1]^3, flat faces) or 'cylinder' (radius 1
    around Z from -1 to 1, flat caps). Stretch it by half-extents s with vertices * s and
    normals / s (renormalised). Returns vertices (N,3), normals (N,3), faces (M,3)."""
    if kind == 'ellipsoid':
        polar = np.linspace(0.0, np.pi, segments // 2 + 1)
        azimuth = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
        p, a = np.meshgrid(polar, azimuth, indexing='ij')
        vertices = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], -1).reshape(-1, 3)
        normals = vertices.copy()
        row = np.arange(len(polar) - 1)[:, None] * segments
        column, next_column = np.arange(segments)[None, :], (np.arange(segments)[None, :] + 1) % segments
        a0, b0 = row + column, row + next_column
        faces = np.concatenate([np.stack([a0, b0, b0 + segments], -1).reshape(-1, 3),
                                np.stack([a0, b0 + segments, a0 + segments], -1).reshape(-1, 3)])
        # Drop the degenerate triangles at the poles (all their corners on one point).
        corners = vertices[faces]
        area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
        faces = faces[area > 1e-9]
    elif kind == 'box':
        vertices, normals, faces = [], [], []
        for axis in range(3):
            for sign in (-1.0, 1.0):
                normal = np.zeros(3)
                normal[axis] = sign
                u, v = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3]
                start = len(vertices)
                vertices += [normal + du * u + dv * v for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
                normals += [normal] * 4
                faces += [[start, start + 1, start + 2], [start, start + 2, start + 3]]
        vertices, normals, faces = np.array(vertices), np.array(normals), np.array(faces)
    elif kind == 'cylinder':
        angle = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
        ring = np.stack([np.cos(angle), np.sin(angle), np.zeros(segments)], -1)
        side = np.concatenate([ring - [0, 0, 1], ring + [0, 0, 1]])
        column, next_column = np.arange(segments), (np.arange(segments) + 1) % segments
        side_faces = np.concatenate([np.stack([column, next_column, next_column + segments], -1),
                                     np.stack([column, next_column + segments, column + segments], -1)])
        vertices, normals, faces = [side], [np.concatenate([ring, ring])], [side_faces]
        for sign in (-1.0, 1.0):  # caps: a fan around the centre, with their own flat normals
            start = sum(len(part) for part in vertices)
            vertices.append(np.vstack([[0.0, 0.0, sign], ring + [0, 0, sign]]))
            normals.append(np.tile([0.0, 0.0, sign], (segments + 1, 1)))
            faces.append(np.stack([np.full(segments, start), start + 1 + column, start + 1 + next_column], -1))
        vertices, normals, faces = np.concatenate(vertices), np.concatenate(normals), np.concatenate(faces)
    else:
        raise ValueError(f'unknown primitive {kind!r}; choose from {", ".join(PRIMITIVES)}')
    return vertices, normals, _outward_faces(vertices, normals, faces)
