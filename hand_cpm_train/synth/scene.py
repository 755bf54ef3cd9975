"""Synthetic scenes: hands with forearms, lights, camera, backgrounds, distractors and occluders,
rendered with exact 21-keypoint labels.

A scene is fully described by explicit parameters (SceneParams: hand sides, poses, 3D placements,
lighting, background and layer seeds); `render_scene` turns them into an image and annotations.
Random scenes (`sample_crop_scene`, `sample_frame_scene`) only draw such parameters, and
`render_sequence` interpolates them between key frames for smooth demo videos.

Camera frame: OpenCV (x right, y down, z forward, metres); pixels: centres at integer coordinates,
(0, 0) the centre of the top-left pixel.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from hand_cpm_train.synth.appearance import (hand_vertex_colors, sample_cloth_srgb,
                                             sample_skin_srgb, srgb_to_linear)
from hand_cpm_train.synth.backdrop import (draw_distractors, draw_occluders, make_background,
                                           sample_background_kind)
from hand_cpm_train.synth.effects import apply_camera_effects, sample_jpeg_quality
from hand_cpm_train.synth.mesh import PRIMITIVES, forearm_mesh, hand_rig, primitive_mesh
from hand_cpm_train.synth.pose import sample_gesture_pose, sample_pose
from hand_cpm_train.synth.renderer import Camera, Lighting, RenderObject, RenderResult, get_renderer

SCENES = ('crop', 'frame')
DEFAULT_SIZES = {'crop': (368, 368), 'frame': (640, 480)}
DISTRACTOR_ARM_ID = 200   # render ids of arms without hands start here
OBJECT_ID = 220           # render ids of the 3D things that are not hands start here
MAX_OBJECTS = 30
SUPERSAMPLE = 2           # render at 2x and box-filter down: anti-aliased edges, exact coverage
# Frame scenes: a hand's longer side as a share of the image height, drawn log-uniform from
# MIN_HAND_SIZE to max_hand_size (default DEFAULT_MAX_HAND_SIZE, the localiser's specified range;
# larger values, up to MAX_HAND_SIZE, add close-ups that fill and overflow the frame).
MIN_HAND_SIZE = 0.05
DEFAULT_MAX_HAND_SIZE = 0.8
MAX_HAND_SIZE = 2.0


@dataclass(frozen=True)
class ForearmParams:
    """The arm attached at the wrist: length (m, unscaled hand units), wrist flexion/deviation
    (degrees), girth (1 = the mesh's wrist) and an optional sleeve from `sleeve_start` (m)."""
    length: float = 0.28
    flex_deg: float = 0.0
    deviation_deg: float = 0.0
    girth: float = 1.0
    sleeve_start: float | None = None
    sleeve_srgb: tuple[float, float, float] = (0.2, 0.2, 0.25)


@dataclass(frozen=True)
class HandParams:
    """One hand: 'left'/'right', pose angles (pose.py, degrees), rotation (3,3) from the hand frame
    (asset.py) to the camera frame, camera-frame position (3,) of the wrist joint in metres,
    uniform size scale, sRGB skin (or glove) colour, seed of the colour mottling, forearm or None."""
    side: str
    pose: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0
    skin_srgb: tuple[float, float, float] = (0.85, 0.65, 0.52)
    is_glove: bool = False
    color_seed: int = 0
    forearm: ForearmParams | None = field(default_factory=ForearmParams)


@dataclass(frozen=True)
class ArmParams:
    """An arm without a visible hand (a distractor), placed like a hand's forearm."""
    rotation: np.ndarray
    translation: np.ndarray
    skin_srgb: tuple[float, float, float]
    forearm: ForearmParams


@dataclass(frozen=True)
class ObjectParams:
    """A lit 3D thing that is not a hand, so that a hand is not the only shaded solid in a scene of
    flat 2D layers: a unit primitive (mesh.PRIMITIVES) stretched by `half_extents` (3,) metres,
    rotated by `rotation` (3,3) and placed at `translation` (3,) in the camera frame, one sRGB
    colour (skin tones among them) mottled per vertex from `color_seed`."""
    kind: str
    half_extents: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    srgb: tuple[float, float, float]
    color_seed: int = 0


@dataclass(frozen=True)
class SceneParams:
    """Everything needed to render one image. 2D layers are drawn from their own seeds; a None seed
    leaves the layer out. `occluded_hands` lists the hands that get an occluder."""
    width: int
    height: int
    horizontal_fov_deg: float
    hands: tuple[HandParams, ...]
    lighting: Lighting
    background_kind: str
    background_seed: int
    distractor_count: int = 0
    distractor_seed: int = 0
    arms: tuple[ArmParams, ...] = ()
    objects: tuple[ObjectParams, ...] = ()
    occluder_seed: int | None = None
    occluded_hands: tuple[int, ...] = ()
    effects_seed: int | None = None
    jpeg_quality: int = 90

    @property
    def camera(self) -> Camera:
        return Camera.from_fov(self.width, self.height, self.horizontal_fov_deg)


@dataclass
class HandAnnotation:
    """A rendered hand: keypoints (21,2) float pixels, visible (21,) bool, is_left, the (H,W) bool
    mask of its rendered mesh (before 2D occluders) and the mask's tight box (x0, y0, x1, y1) in
    pixel edges (pixel centres are integers, so a box around pixels a..b spans a-0.5..b+0.5),
    clipped to the image; None when no pixel of the hand is in the image."""
    keypoints: np.ndarray
    visible: np.ndarray
    is_left: bool
    mask: np.ndarray
    box: tuple[float, float, float, float] | None

    def hand_pts(self) -> list[list[float]]:
        return [[round(float(x), 3), round(float(y), 3), int(v)]
                for (x, y), v in zip(self.keypoints, self.visible)]


@dataclass
class RenderedScene:
    """A rendered image (H,W,3) uint8 BGR with its hands' annotations (in SceneParams.hands order),
    the (H,W) uint8 render ids (hand_object_id(i) for hand i, + 1 for its arm, 0 background) and
    the parameters it was made from."""
    image_bgr: np.ndarray
    hands: list[HandAnnotation]
    object_ids: np.ndarray
    params: SceneParams

    def crop_annotation(self) -> dict:
        """CMU synth format: {"hand_pts": [[x, y, visible] x 21], "is_left": 0/1} (first hand)."""
        hand = self.hands[0]
        return {'hand_pts': hand.hand_pts(), 'is_left': int(hand.is_left)}

    def frame_annotation(self) -> dict:
        """{"width", "height", "hands": [{"hand_pts", "is_left", "box"}]}; hands with no pixel in the
        image are left out."""
        return {'width': self.params.width, 'height': self.params.height,
                'hands': [{'hand_pts': hand.hand_pts(), 'is_left': int(hand.is_left),
                           'box': [round(float(v), 1) for v in hand.box]}
                          for hand in self.hands if hand.box is not None]}


# ----------------------------------------------------------------------------------------------
# Rendering explicit parameters


def _posed_hand_in_camera(hand: HandParams):
    """Camera-frame vertices, normals and keypoints (21,3) of a hand."""
    rig = hand_rig(hand.side)
    posed = rig.pose(hand.pose)
    rotation = np.asarray(hand.rotation, dtype=np.float64)
    translation = np.asarray(hand.translation, dtype=np.float64)
    vertices = hand.scale * posed.vertices @ rotation.T + translation
    keypoints = hand.scale * posed.keypoints @ rotation.T + translation
    return rig, vertices, posed.normals @ rotation.T, keypoints


def _arm_objects(forearm: ForearmParams, rotation: np.ndarray, translation: np.ndarray,
                 scale: float, skin_srgb, object_id: int) -> list[RenderObject]:
    objects = []
    vertices, normals, faces = forearm_mesh(forearm.length, forearm.flex_deg, forearm.deviation_deg,
                                            forearm.girth)
    skin = np.tile(srgb_to_linear(skin_srgb), (len(vertices), 1))
    objects.append(RenderObject(scale * vertices @ rotation.T + translation, normals @ rotation.T,
                                skin, faces, object_id))
    if forearm.sleeve_start is not None and forearm.sleeve_start < forearm.length:
        vertices, normals, faces = forearm_mesh(forearm.length, forearm.flex_deg,
                                                forearm.deviation_deg, forearm.girth,
                                                start=forearm.sleeve_start, widen=1.2)
        cloth = np.tile(srgb_to_linear(forearm.sleeve_srgb), (len(vertices), 1))
        objects.append(RenderObject(scale * vertices @ rotation.T + translation,
                                    normals @ rotation.T, cloth, faces, object_id))
    return objects


def _thing_object(thing: ObjectParams, object_id: int) -> RenderObject:
    vertices, normals, faces = primitive_mesh(thing.kind)
    half = np.asarray(thing.half_extents, dtype=np.float64)
    normals = normals / half
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    rotation = np.asarray(thing.rotation)
    mottling = 1.0 + np.random.default_rng(thing.color_seed).normal(0.0, 0.04, (len(vertices), 1))
    colors = srgb_to_linear(np.clip(np.asarray(thing.srgb)[None, :] * mottling, 0.0, 1.0))
    return RenderObject((vertices * half) @ rotation.T + thing.translation, normals @ rotation.T,
                        colors, faces, object_id)


def keypoint_visibility(keypoints_camera: np.ndarray, depth_tolerances: np.ndarray,
                        camera: Camera, depth: np.ndarray) -> np.ndarray:
    """(K,) bool: a keypoint is visible when it projects inside the image and no surface lies in
    front of it by more than its tolerance (how deep it may sit under its own skin, mesh.py).

    `depth` holds per pixel the farthest surface sample (inf = none); the 3x3 neighbourhood's
    farthest is used, so a keypoint at a silhouette or an occluder's edge counts as visible.
    """
    pixels = camera.project(keypoints_camera)
    inside = ((pixels[:, 0] >= -0.5) & (pixels[:, 0] < camera.width - 0.5)
              & (pixels[:, 1] >= -0.5) & (pixels[:, 1] < camera.height - 0.5)
              & (keypoints_camera[:, 2] > camera.near))
    finite = np.where(np.isfinite(depth), depth, np.float32(1e9))
    farthest = cv2.dilate(finite, np.ones((3, 3), np.uint8))
    columns = np.clip(np.round(pixels[:, 0]), 0, camera.width - 1).astype(int)
    rows = np.clip(np.round(pixels[:, 1]), 0, camera.height - 1).astype(int)
    in_front = farthest[rows, columns] < keypoints_camera[:, 2] - depth_tolerances
    return inside & ~in_front


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(mask.any(axis=0))
    return (columns[0] - 0.5, rows[0] - 0.5, columns[-1] + 0.5, rows[-1] + 0.5)


def hand_object_id(hand_index: int) -> int:
    """Render id of hand `hand_index`'s mesh (its arm is the id + 1)."""
    return 2 * hand_index + 1


def render_scene(params: SceneParams) -> RenderedScene:
    """Render `params` into an image with annotations (deterministic for given parameters)."""
    camera = params.camera
    objects, hand_keypoints = [], []
    for index, hand in enumerate(params.hands):
        rig, vertices, normals, keypoints = _posed_hand_in_camera(hand)
        colors = hand_vertex_colors(hand.side, np.asarray(hand.skin_srgb),
                                    np.random.default_rng(hand.color_seed), hand.is_glove)
        objects.append(RenderObject(vertices, normals, colors, rig.mesh.faces, hand_object_id(index)))
        if hand.forearm is not None:
            objects += _arm_objects(hand.forearm, np.asarray(hand.rotation), np.asarray(hand.translation),
                                    hand.scale, hand.skin_srgb, hand_object_id(index) + 1)
        hand_keypoints.append((keypoints, rig.depth_tolerances * hand.scale))
    for index, arm in enumerate(params.arms):
        objects += _arm_objects(arm.forearm, np.asarray(arm.rotation), np.asarray(arm.translation),
                                1.0, arm.skin_srgb, DISTRACTOR_ARM_ID + index)
    if len(params.objects) > MAX_OBJECTS:
        raise ValueError(f'at most {MAX_OBJECTS} objects per scene, got {len(params.objects)}')
    objects += [_thing_object(thing, OBJECT_ID + index) for index, thing in enumerate(params.objects)]
    rendered: RenderResult = get_renderer().render(camera, objects, params.lighting,
                                                   supersample=SUPERSAMPLE)

    background = make_background(params.background_kind, params.background_seed,
                                 (params.width, params.height))
    if params.distractor_count:
        draw_distractors(background, params.distractor_seed, params.distractor_count)
    image = rendered.color_bgr.astype(np.float32) + background * (1.0 - rendered.coverage[:, :, None])
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)

    masks = [rendered.mask(hand_object_id(index)) for index in range(len(params.hands))]
    boxes = [_mask_box(mask) for mask in masks]
    occluded = np.zeros((params.height, params.width), bool)
    occluder_boxes = [boxes[index] for index in params.occluded_hands if boxes[index] is not None]
    if params.occluder_seed is not None and occluder_boxes:
        occluded = draw_occluders(image, params.occluder_seed, occluder_boxes, params.background_kind)
    if params.effects_seed is not None:
        image = apply_camera_effects(image, params.effects_seed)

    annotations = []
    for hand, (keypoints, tolerances), mask, box in zip(params.hands, hand_keypoints, masks, boxes):
        pixels = camera.project(keypoints)
        visible = keypoint_visibility(keypoints, tolerances, camera, rendered.depth)
        rows = np.clip(np.round(pixels[:, 1]), 0, params.height - 1).astype(int)
        columns = np.clip(np.round(pixels[:, 0]), 0, params.width - 1).astype(int)
        visible &= ~occluded[rows, columns]
        annotations.append(HandAnnotation(pixels, visible, hand.side == 'left', mask, box))
    return RenderedScene(image, annotations, rendered.object_ids, params)


# ----------------------------------------------------------------------------------------------
# Random scene parameters


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    quaternion = rng.normal(size=4)
    return Rotation.from_quat(quaternion / np.linalg.norm(quaternion)).as_matrix()


# Hand frame -> camera frame with the palm facing the camera and the fingers pointing up.
PALM_TO_CAMERA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def sample_hand_rotation(rng: np.random.Generator, max_tilt_deg: float = 70.0) -> np.ndarray:
    """Hand-to-camera rotation: any orientation for 40% of the hands, else palm or back towards the
    camera, tilted (up to `max_tilt_deg`) and rolled (fingers up more often than not)."""
    if rng.random() < 0.4:
        return _random_rotation(rng)
    facing = PALM_TO_CAMERA if rng.random() < 0.5 else (
        Rotation.from_euler('y', 180, degrees=True).as_matrix() @ PALM_TO_CAMERA)
    roll = rng.uniform(-180, 180) if rng.random() < 0.5 else rng.normal(0, 40)
    tilt_axis_angle = rng.uniform(0, 2 * np.pi)
    tilt = min(abs(rng.normal(0, max_tilt_deg / 2)), max_tilt_deg)
    tilt_axis = np.array([np.cos(tilt_axis_angle), np.sin(tilt_axis_angle), 0.0])
    return (Rotation.from_rotvec(np.radians(tilt) * tilt_axis).as_matrix()
            @ Rotation.from_euler('z', roll, degrees=True).as_matrix() @ facing)


def place_hand(hand: HandParams, camera: Camera, box_size_px: float,
               centre_px: tuple[float, float]) -> HandParams:
    """The hand moved (keeping its rotation) so that its mesh's projected box has the longer side
    `box_size_px` and its centre at `centre_px`."""
    rig = hand_rig(hand.side)
    points = hand.scale * rig.pose(hand.pose).vertices @ np.asarray(hand.rotation).T
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    extent = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    distance = 1.0
    for _ in range(3):  # the box shrinks about as 1/distance; refine for perspective
        translation = np.array([-centre[0], -centre[1], distance - centre[2]])
        pixels = camera.project(points + translation)
        size = max(np.ptp(pixels[:, 0]), np.ptp(pixels[:, 1]))
        distance = max(distance * size / box_size_px, 0.5 * extent + camera.near + 0.02)
    translation = np.array([-centre[0], -centre[1], distance - centre[2]])
    pixels = camera.project(points + translation)
    box_centre = 0.5 * (pixels.min(axis=0) + pixels.max(axis=0))
    shift = (np.asarray(centre_px) - box_centre) * distance / np.array([camera.fx, camera.fy])
    return replace(hand, translation=translation + np.array([shift[0], shift[1], 0.0]))


def sample_forearm(rng: np.random.Generator) -> ForearmParams | None:
    """A bare or sleeved forearm for 93% of the hands."""
    if rng.random() < 0.07:
        return None
    sleeve = rng.random() < 0.5
    return ForearmParams(length=float(rng.uniform(0.22, 0.34)),
                         flex_deg=float(np.clip(rng.normal(0, 25), -60, 60)),
                         deviation_deg=float(rng.uniform(-20, 20)),
                         girth=float(rng.uniform(0.9, 1.15)),
                         sleeve_start=float(rng.uniform(0.03, 0.2)) if sleeve else None,
                         sleeve_srgb=tuple(sample_cloth_srgb(rng)))


def sample_hand(rng: np.random.Generator, side: str | None = None,
                skin_srgb: np.ndarray | None = None) -> HandParams:
    """A random hand at the camera origin (place it with place_hand)."""
    if side is None:
        side = 'left' if rng.random() < 0.5 else 'right'
    is_glove = skin_srgb is None and rng.random() < 0.04
    if skin_srgb is None:
        skin_srgb = rng.uniform(0.05, 0.95, 3) if is_glove else sample_skin_srgb(rng)
    return HandParams(side=side, pose=sample_pose(rng), rotation=sample_hand_rotation(rng),
                      translation=np.zeros(3), scale=float(rng.uniform(0.85, 1.15)),
                      skin_srgb=tuple(float(c) for c in skin_srgb), is_glove=is_glove,
                      color_seed=int(rng.integers(2**31)), forearm=sample_forearm(rng))


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """One key light (mostly from the camera's side and above), sometimes a fill or rim light,
    coloured ambient light."""
    count = 1 if rng.random() < 0.5 else 2
    directions, colors = [], []
    for light in range(count):
        direction = rng.normal(size=3)
        direction[1] -= rng.uniform(0.0, 1.0)      # more light from above
        if rng.random() < (0.9 if light == 0 else 0.6):
            direction[2] = -abs(direction[2])      # from the camera's side
        directions.append(direction / np.linalg.norm(direction))
        warmth = rng.uniform(-0.15, 0.15)
        intensity = rng.uniform(0.6, 1.3) if light == 0 else rng.uniform(0.15, 0.6)
        colors.append(intensity * np.array([1.0 + warmth, 1.0, 1.0 - warmth]))
    ambient = rng.uniform(0.08, 0.4) * (1.0 + rng.uniform(-0.15, 0.15, 3))
    return Lighting(np.array(directions), np.array(colors), ambient,
                    specular=float(rng.uniform(0.02, 0.25)), shininess=float(rng.uniform(6, 40)),
                    wrap=float(rng.uniform(0.1, 0.5)))


def _sample_layers(rng: np.random.Generator, distractor_probability: float,
                   max_distractors: int) -> dict:
    has_distractors = rng.random() < distractor_probability
    return dict(background_kind=sample_background_kind(rng),
                background_seed=int(rng.integers(2**31)),
                distractor_count=int(rng.integers(1, max_distractors + 1)) if has_distractors else 0,
                distractor_seed=int(rng.integers(2**31)),
                effects_seed=int(rng.integers(2**31)),
                jpeg_quality=sample_jpeg_quality(rng))


def sample_crop_scene(rng: np.random.Generator, size: tuple[int, int] = (368, 368),
                      max_objects: int = 0) -> SceneParams:
    """One hand filling most of the image (box side 50..90% of the image, random offset, may be
    cut by the border), like the CMU synthetic hand crops; 0 to `max_objects` 3D things that are
    not hands (sample_objects; drawn last, so 0 draws exactly what it always drew)."""
    width, height = size
    fov = float(rng.uniform(30, 70))
    camera = Camera.from_fov(width, height, fov)
    side_px = min(width, height) * rng.uniform(0.5, 0.9)
    slack = (np.array([width, height]) - side_px) / 2 + 0.1 * side_px
    centre = np.array([(width - 1) / 2, (height - 1) / 2]) + rng.uniform(-slack, slack)
    hand = place_hand(sample_hand(rng), camera, side_px, tuple(centre))
    occluded = rng.random() < 0.25
    params = SceneParams(width=width, height=height, horizontal_fov_deg=fov, hands=(hand,),
                         lighting=sample_lighting(rng),
                         occluder_seed=int(rng.integers(2**31)) if occluded else None,
                         occluded_hands=(0,) if occluded else (),
                         **_sample_layers(rng, distractor_probability=0.3, max_distractors=3))
    return _with_objects(params, rng, max_objects)


def sample_objects(rng: np.random.Generator, camera: Camera, hands: tuple[HandParams, ...],
                   count: int) -> tuple[ObjectParams, ...]:
    """`count` lit 3D things that are not hands: 40% skin-coloured (heads, limbs, bald patches to
    tell hands from), the rest clothes-like or any colour; 30% of them, where there is a hand, in
    front of part of one (something held or passing), the others anywhere at 0.4-4 m but behind
    every hand (so that only those in front hide keypoints, and only part of a hand)."""
    things = []
    posed = [_posed_hand_in_camera(hand)[1] for hand in hands]
    farthest_hand = max((float(vertices[:, 2].max()) for vertices in posed), default=0.0)
    for _ in range(count):
        kind = PRIMITIVES[int(rng.integers(len(PRIMITIVES)))]
        shape = np.exp(rng.uniform(np.log(0.2), 0.0, 3))
        shape /= shape.max()
        if hands and rng.random() < 0.3:
            vertices = posed[int(rng.integers(len(hands)))]
            pixels = camera.project(vertices)
            hand_size = float(np.max(np.ptp(pixels, axis=0)))
            centre = 0.5 * (pixels.min(axis=0) + pixels.max(axis=0)) + rng.normal(0.0, 0.25 * hand_size, 2)
            size_px = hand_size * rng.uniform(0.2, 0.5)
            depth = float(vertices[:, 2].min()) * rng.uniform(0.6, 0.95)
        else:
            margin = -0.1
            centre = rng.uniform([margin * camera.width, margin * camera.height],
                                 [(1 - margin) * camera.width, (1 - margin) * camera.height])
            size_px = camera.height * np.exp(rng.uniform(np.log(0.05), np.log(0.7)))
            depth = float(np.exp(rng.uniform(np.log(0.4), np.log(4.0))))
            # Its nearest point (centre depth less 1.8 radii, the radius growing with depth to keep
            # its size in pixels) behind the farthest hand.
            depth = max(depth, farthest_hand / (1.0 - 0.9 * size_px / camera.fy))
        radius = 0.5 * size_px * depth / camera.fy
        depth = max(depth, 1.8 * radius + camera.near)
        translation = depth * np.array([(centre[0] - camera.cx) / camera.fx,
                                        (centre[1] - camera.cy) / camera.fy, 1.0])
        draw = rng.random()
        colour = (sample_skin_srgb(rng) if draw < 0.4 else sample_cloth_srgb(rng) if draw < 0.8
                  else rng.uniform(0.0, 1.0, 3))
        things.append(ObjectParams(kind, radius * shape, _random_rotation(rng), translation,
                                   tuple(float(c) for c in colour), int(rng.integers(2**31))))
    return tuple(things)


def _sample_distractor_arm(rng: np.random.Generator, camera: Camera) -> ArmParams:
    """An arm crossing the image with its hand outside it."""
    distance = rng.uniform(0.4, 2.5)
    border_angle = rng.uniform(0, 2 * np.pi)
    centre = np.array([(camera.width - 1) / 2, (camera.height - 1) / 2])
    half_diagonal = 0.5 * np.hypot(camera.width, camera.height) * 1.15
    wrist_px = centre + half_diagonal * np.array([np.cos(border_angle), np.sin(border_angle)])
    target_px = centre + rng.uniform(-0.3, 0.3, 2) * [camera.width, camera.height]
    wrist = distance * np.array([(wrist_px[0] - camera.cx) / camera.fx,
                                 (wrist_px[1] - camera.cy) / camera.fy, 1.0])
    target = rng.uniform(0.8, 1.2) * distance * np.array([(target_px[0] - camera.cx) / camera.fx,
                                                          (target_px[1] - camera.cy) / camera.fy, 1.0])
    direction = (target - wrist) / np.linalg.norm(target - wrist)
    lateral = np.cross(direction, rng.normal(size=3))
    lateral /= np.linalg.norm(lateral)
    rotation = np.stack([lateral, np.cross(direction, lateral), direction], axis=1)
    forearm = sample_forearm(rng) or ForearmParams()
    length = 2.5 * float(np.linalg.norm(target - wrist))
    return ArmParams(rotation, wrist, tuple(sample_skin_srgb(rng)),
                     replace(forearm, length=length, flex_deg=0.0, deviation_deg=0.0,
                             girth=forearm.girth * rng.uniform(1.0, 1.3)))


def sample_frame_scene(rng: np.random.Generator, size: tuple[int, int] = (640, 480),
                       max_hand_size: float = DEFAULT_MAX_HAND_SIZE, max_objects: int = 0) -> SceneParams:
    """A camera-sized image with 0 (15%), 1 (55%) or 2 (30%) hands whose longer side is 5% to
    `max_hand_size` of the image height (log-uniform), sometimes cut by the border, two hands
    sometimes close together or overlapping, and distractors that are not hands (skin-coloured
    shapes, faces, arms without hands), and 0 to `max_objects` 3D things that are not hands
    (sample_objects). A larger `max_hand_size` adds close-ups; the defaults draw exactly what they
    always drew (objects are drawn last)."""
    if not MIN_HAND_SIZE < max_hand_size <= MAX_HAND_SIZE:
        raise ValueError(f'max_hand_size must be in ({MIN_HAND_SIZE}, {MAX_HAND_SIZE}], got {max_hand_size}')
    width, height = size
    fov = float(rng.uniform(40, 75))
    camera = Camera.from_fov(width, height, fov)
    draw = rng.random()
    count = 0 if draw < 0.15 else 1 if draw < 0.70 else 2
    hands: list[HandParams] = []
    size_px, centre = 0.0, np.zeros(2)  # of the previous hand, which a second one may stay near

    def random_centre() -> np.ndarray:
        margin = -0.1 if rng.random() < 0.15 else 0.05
        return rng.uniform([margin * width, margin * height],
                           [(1 - margin) * width, (1 - margin) * height])

    for index in range(count):
        if index == 1 and rng.random() < 0.5:  # the other hand of the same person, close by
            first = hands[0]
            side = ('right' if first.side == 'left' else 'left') if rng.random() < 0.85 else first.side
            skin = np.asarray(first.skin_srgb) if not first.is_glove and rng.random() < 0.8 else None
            hand = sample_hand(rng, side=side, skin_srgb=skin)
            first_box = size_px * rng.uniform(0.3, 1.0)
            angle = rng.uniform(0, 2 * np.pi)
            centre = centre + first_box * np.array([np.cos(angle), np.sin(angle)])
            size_px = size_px * rng.uniform(0.8, 1.2)
        else:
            hand = sample_hand(rng)
            size_px = height * np.exp(rng.uniform(np.log(MIN_HAND_SIZE), np.log(max_hand_size)))
            centre = random_centre()
        hands.append(place_hand(hand, camera, size_px, tuple(centre)))
    arms = tuple(_sample_distractor_arm(rng, camera)
                 for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.3 else 0))
    occluded = tuple(index for index in range(count) if rng.random() < 0.2)
    params = SceneParams(width=width, height=height, horizontal_fov_deg=fov, hands=tuple(hands),
                         lighting=sample_lighting(rng), arms=arms,
                         occluder_seed=int(rng.integers(2**31)) if occluded else None,
                         occluded_hands=occluded,
                         **_sample_layers(rng, distractor_probability=0.75, max_distractors=4))
    return _with_objects(params, rng, max_objects)


def _with_objects(params: SceneParams, rng: np.random.Generator, max_objects: int) -> SceneParams:
    """`params` with 0..max_objects 3D things added; draws nothing from `rng` when max_objects is 0."""
    if not 0 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f'max_objects must be 0..{MAX_OBJECTS}, got {max_objects}')
    if max_objects == 0:
        return params
    count = int(rng.integers(0, max_objects + 1))
    return replace(params, objects=sample_objects(rng, params.camera, params.hands, count))


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of image `index` of a data set made with `seed` (independent of the
    order or the process in which images are made)."""
    return np.random.default_rng([seed, index])


def render_sample(scene: str, seed: int, index: int, size: tuple[int, int] | None = None,
                  max_hand_size: float = DEFAULT_MAX_HAND_SIZE, max_objects: int = 0) -> RenderedScene:
    """Random image `index` of the `scene` data set ('crop' or 'frame') made with `seed`;
    `max_hand_size` (frame scenes only) and `max_objects`: see sample_frame_scene."""
    if scene not in SCENES:
        raise ValueError(f'unknown scene {scene!r}; choose from {", ".join(SCENES)}')
    size = size or DEFAULT_SIZES[scene]
    rng = sample_rng(seed, index)
    if scene == 'crop':
        return render_scene(sample_crop_scene(rng, size, max_objects))
    return render_scene(sample_frame_scene(rng, size, max_hand_size, max_objects))


# ----------------------------------------------------------------------------------------------
# Smooth sequences


def _ease(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def _interpolate_hand(first: HandParams, second: HandParams, t: float) -> HandParams:
    weight = _ease(t)
    rotations = Rotation.from_matrix(np.stack([first.rotation, second.rotation]))
    rotation = Slerp([0.0, 1.0], rotations)([weight]).as_matrix()[0]
    forearm = first.forearm
    if first.forearm is not None and second.forearm is not None:
        forearm = replace(first.forearm, flex_deg=(1 - weight) * first.forearm.flex_deg
                          + weight * second.forearm.flex_deg,
                          deviation_deg=(1 - weight) * first.forearm.deviation_deg
                          + weight * second.forearm.deviation_deg)
    return replace(first, pose=(1 - weight) * first.pose + weight * second.pose, rotation=rotation,
                   translation=(1 - weight) * first.translation + weight * second.translation,
                   forearm=forearm)


def render_sequence(num_frames: int, num_hands: int, seed: int,
                    size: tuple[int, int] = (640, 480),
                    frames_per_key: int = 24) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (image_bgr, frame annotation dict) for `num_frames` frames of `num_hands` (1 or 2)
    hands that move, turn and change gesture smoothly in front of a fixed background."""
    if num_frames <= 0:
        raise ValueError(f'num_frames must be positive, got {num_frames}')
    if num_hands not in (1, 2):
        raise ValueError(f'num_hands must be 1 or 2, got {num_hands}')
    if frames_per_key <= 0:
        raise ValueError(f'frames_per_key must be positive, got {frames_per_key}')
    rng = np.random.default_rng(seed)
    width, height = size
    fov = 60.0
    camera = Camera.from_fov(width, height, fov)
    skin = sample_skin_srgb(rng)
    sides = ('right', 'left')[:num_hands] if rng.random() < 0.5 else ('left', 'right')[:num_hands]
    num_keys = num_frames // frames_per_key + 2
    keys: list[list[HandParams]] = []
    for hand_index, side in enumerate(sides):
        base = replace(sample_hand(rng, side=side, skin_srgb=skin),
                       forearm=replace(sample_forearm(rng) or ForearmParams(), sleeve_start=0.1))
        lane = (hand_index + 0.5) / num_hands if num_hands == 2 else 0.5
        hand_keys = []
        for _ in range(num_keys):
            rotation = (Rotation.from_euler('xyz', rng.normal(0, [25, 35, 30]), degrees=True).as_matrix()
                        @ (PALM_TO_CAMERA if rng.random() < 0.6 else
                           Rotation.from_euler('y', 180, degrees=True).as_matrix() @ PALM_TO_CAMERA))
            key = replace(base, pose=sample_gesture_pose(rng, noise_deg=5.0), rotation=rotation)
            centre = (width * (lane + rng.uniform(-0.15, 0.15)), height * rng.uniform(0.35, 0.65))
            hand_keys.append(place_hand(key, camera, height * rng.uniform(0.3, 0.5), centre))
        keys.append(hand_keys)
    scene = SceneParams(width=width, height=height, horizontal_fov_deg=fov, hands=(),
                        lighting=sample_lighting(rng), background_kind=sample_background_kind(rng),
                        background_seed=int(rng.integers(2**31)))
    for frame in range(num_frames):
        key, t = divmod(frame, frames_per_key)
        hands = tuple(_interpolate_hand(hand_keys[key], hand_keys[key + 1], t / frames_per_key)
                      for hand_keys in keys)
        rendered = render_scene(replace(scene, hands=hands))
        yield rendered.image_bgr, rendered.frame_annotation()
