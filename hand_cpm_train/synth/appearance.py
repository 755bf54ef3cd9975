"""Colours of skin, hands and clothes: random skin tones from light to dark, per-vertex hand colours
(lighter palm, nails, slight mottling). sRGB values are floats in [0, 1]; the renderer takes linear."""
from __future__ import annotations

import functools

import numpy as np

from hand_cpm_train.synth.asset import FINGER_PREFIXES, JOINT_NAMES
from hand_cpm_train.synth.mesh import hand_rig

# sRGB skin tones from very light to very dark (a Fitzpatrick-like scale, sampled in between).
_SKIN_RAMP = np.array([
    [0.96, 0.84, 0.76], [0.92, 0.75, 0.63], [0.85, 0.65, 0.52], [0.76, 0.55, 0.40],
    [0.62, 0.43, 0.30], [0.48, 0.32, 0.22], [0.36, 0.24, 0.17], [0.26, 0.17, 0.12]])
_NAIL_SRGB = np.array([0.93, 0.78, 0.76])


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    srgb = np.asarray(srgb, dtype=np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def sample_skin_srgb(rng: np.random.Generator) -> np.ndarray:
    """A random natural skin tone (3,) sRGB: anywhere on the light..dark ramp, varied hue."""
    position = rng.uniform(0.0, len(_SKIN_RAMP) - 1)
    low = int(position)
    high = min(low + 1, len(_SKIN_RAMP) - 1)
    tone = _SKIN_RAMP[low] + (position - low) * (_SKIN_RAMP[high] - _SKIN_RAMP[low])
    # Hue: more red/pink or more yellow/olive; overall brightness of the exposure.
    tone = tone + np.array([0.0, rng.normal(0.0, 0.025), rng.normal(0.0, 0.03)])
    return np.clip(tone * rng.uniform(0.9, 1.1), 0.02, 1.0)


def sample_cloth_srgb(rng: np.random.Generator) -> np.ndarray:
    """A sleeve colour: muted most of the time, saturated now and then."""
    grey = rng.uniform(0.05, 0.9)
    colour = rng.uniform(0.0, 1.0, 3)
    return np.clip(grey + rng.uniform(0.1, 0.8) * (colour - grey), 0.0, 1.0)


@functools.lru_cache(maxsize=2)
def _surface_regions(side: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex palm weight (0 back .. 1 palm) and nail weight (0/1) of a hand mesh."""
    rig = hand_rig(side)
    mesh = rig.mesh
    palm = np.clip((-mesh.normals[:, 1] - 0.1) / 0.6, 0.0, 1.0)
    nail = np.zeros(len(mesh.vertices))
    for prefix in ('thumb',) + FINGER_PREFIXES:
        distal = JOINT_NAMES.index(f'{prefix}-phalanx-distal')
        tip = JOINT_NAMES.index(f'{prefix}-tip')
        frame = mesh.bind_transforms[tip]
        local = (mesh.vertices - frame[:3, 3]) @ frame[:3, :3]
        local_normals = mesh.normals @ frame[:3, :3]
        on_distal = rig.dominant_joint == distal
        nail[on_distal & (local_normals[:, 1] > 0.55) & (local[:, 2] < 0.004)] = 1.0
    return palm, nail


def hand_vertex_colors(side: str, skin_srgb: np.ndarray, rng: np.random.Generator,
                       is_glove: bool = False) -> np.ndarray:
    """(V,3) linear RGB vertex colours: a lighter, pinker palm, nails and slight mottling."""
    palm, nail = _surface_regions(side)
    skin = np.asarray(skin_srgb, dtype=np.float64)
    colors = np.tile(skin, (len(palm), 1))
    if not is_glove:
        palm_tone = np.clip(skin + 0.45 * (np.array([0.95, 0.78, 0.70]) - skin), 0.0, 1.0)
        colors += palm[:, None] * rng.uniform(0.4, 0.9) * (palm_tone - skin)
        colors += nail[:, None] * rng.uniform(0.35, 0.7) * (_NAIL_SRGB - colors)
    mottling = 1.0 + rng.normal(0.0, 0.035, (len(palm), 1)) + rng.normal(0.0, 0.01, (len(palm), 3))
    return srgb_to_linear(np.clip(colors * mottling, 0.0, 1.0))
