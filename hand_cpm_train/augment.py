"""Training augmentation for hand crops: geometry in the crop affine, then photometric ops.

Geometric jitter (scale, rotation, translation, horizontal mirror) is folded into the one
source->crop affine, so the image and the keypoints move together through a single warp: the
keypoints are mapped with the same matrix that warps the image (geometry.apply_affine).

A mirror keeps the keypoint indices (it is still one hand, thumb stays thumb) and toggles the
handedness flag: a mirrored right hand looks like a left hand.

Photometric ops change pixels only; they take and return uint8 BGR images. Occluders and
cut-outs cover keypoints without changing their labels or visibility: the CPM is meant to infer a
hidden joint from the hand's context (OpenPose's hand network is trained the same way), and
lowering the weight of covered joints would teach it to give up exactly where real occlusions
(objects, the other hand) need it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from hand_cpm_ros.dataclass_io import from_known_fields
from hand_cpm_ros.geometry import compose_affine, crop_affine


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of every augmentation; `AugmentConfig()` is the training default
    (strong: the model is judged on real photographs after training on renders)."""
    rotation_deg: float = 180.0           # uniform in [-r, r]; hands appear at any roll
    scale_min: float = 0.8                # crop side multiplier (log-uniform); < 1 zooms in
    scale_max: float = 1.35
    translate: float = 0.12               # crop centre shift, fraction of the crop side
    flip_prob: float = 0.5
    color_prob: float = 0.9
    brightness: float = 0.35              # added, fraction of 255
    contrast: float = 0.4                 # multiplier in [1-c, 1+c] around the mean
    saturation: float = 0.5
    hue_deg: float = 12.0
    gamma_min: float = 0.6
    gamma_max: float = 1.6
    channel_swap_prob: float = 0.1
    grey_prob: float = 0.1
    random_conv_prob: float = 0.0         # a random convolution restyles the crop (off: not shipped)
    random_conv_max_kernel: int = 7       # odd kernel sides 1..this
    blur_prob: float = 0.3                # gaussian or motion blur, half each
    blur_max_sigma: float = 2.0
    motion_blur_max_length: int = 9
    noise_prob: float = 0.3
    noise_max_std: float = 12.0           # in grey levels
    jpeg_prob: float = 0.3
    jpeg_quality_min: int = 25
    jpeg_quality_max: int = 95
    occlusion_prob: float = 0.4
    occlusion_max_count: int = 2
    occlusion_max_size: float = 0.35      # fraction of the crop side
    cutout_prob: float = 0.3
    cutout_max_size: float = 0.5
    frame_zoom_min: float = 0.7           # localiser: whole-frame zoom (log-uniform); < 1 zooms out
    frame_zoom_max: float = 1.4

    def __post_init__(self):
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f'need 0 < scale_min <= scale_max, got {self.scale_min}, '
                             f'{self.scale_max}')
        if not 0 < self.frame_zoom_min <= self.frame_zoom_max:
            raise ValueError(f'need 0 < frame_zoom_min <= frame_zoom_max, got {self.frame_zoom_min}, '
                             f'{self.frame_zoom_max}')
        if not 0 < self.gamma_min <= self.gamma_max:
            raise ValueError(f'need 0 < gamma_min <= gamma_max, got {self.gamma_min}, '
                             f'{self.gamma_max}')
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ValueError('need 1 <= jpeg_quality_min <= jpeg_quality_max <= 100')
        if self.random_conv_max_kernel < 1 or self.random_conv_max_kernel % 2 == 0:
            raise ValueError(f'random_conv_max_kernel must be odd and >= 1, got {self.random_conv_max_kernel}')
        for field in fields(self):
            if field.name.endswith('_prob') and not 0.0 <= getattr(self, field.name) <= 1.0:
                raise ValueError(f'{field.name} must be in [0, 1], got {getattr(self, field.name)}')

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        return from_known_fields(cls, data, 'augmentation')


@dataclass(frozen=True)
class CropJitter:
    """One draw of the geometric augmentation, applied inside the crop affine."""
    scale: float = 1.0                        # multiplies the crop side
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)   # crop centre offset, fraction of the crop side
    flip: bool = False


def sample_jitter(rng: np.random.Generator, config: AugmentConfig) -> CropJitter:
    """Draw scale (log-uniform), rotation, shift and mirror from `config`'s ranges."""
    scale = math.exp(rng.uniform(math.log(config.scale_min), math.log(config.scale_max)))
    rotation = rng.uniform(-config.rotation_deg, config.rotation_deg)
    shift = tuple(rng.uniform(-config.translate, config.translate, size=2).tolist())
    return CropJitter(scale=scale, rotation_deg=rotation, shift=shift,
                      flip=bool(rng.random() < config.flip_prob))


def mirror_affine(width: int) -> np.ndarray:
    """2x3 horizontal mirror of an image `width` pixels wide (pixel centres at integers:
    x -> width - 1 - x, which is exactly cv2.flip(image, 1))."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def jittered_crop_affine(cx: float, cy: float, side: float, out_size: int,
                         jitter: CropJitter) -> np.ndarray:
    """Source->crop 2x3 affine of the square crop (cx, cy, side) with `jitter` applied: the
    centre shifted by jitter.shift * side, the side scaled, rotated, and mirrored in the crop."""
    affine = crop_affine(cx + jitter.shift[0] * side, cy + jitter.shift[1] * side,
                         side * jitter.scale, out_size, jitter.rotation_deg)
    return compose_affine(mirror_affine(out_size), affine) if jitter.flip else affine


# ------------------------------------------------------------------------------------------
# Photometric ops: uint8 BGR in, uint8 BGR out, pixels only
# ------------------------------------------------------------------------------------------

def color_jitter(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation, hue and gamma, each drawn from `config`."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-config.hue_deg, config.hue_deg) * 256 / 360) % 256
    hsv[..., 1] *= rng.uniform(1 - config.saturation, 1 + config.saturation)
    image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR_FULL)
    values = image.astype(np.float32)
    values = (values - values.mean()) * rng.uniform(1 - config.contrast, 1 + config.contrast) \
        + values.mean() + rng.uniform(-config.brightness, config.brightness) * 255
    values = np.clip(values, 0, 255) / 255
    gamma = math.exp(rng.uniform(math.log(config.gamma_min), math.log(config.gamma_max)))
    return np.clip(values ** gamma * 255 + 0.5, 0, 255).astype(np.uint8)


def swap_channels(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random non-identity permutation of the colour channels."""
    order = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)][rng.integers(5)]
    return np.ascontiguousarray(image[..., order])


def to_grey(image: np.ndarray) -> np.ndarray:
    """Grey image in three channels (the network always sees 3)."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def random_convolution(image: np.ndarray, rng: np.random.Generator, max_kernel: int) -> np.ndarray:
    """Restyle the crop with a random k x k convolution across the colour channels (k odd, 1 to
    max_kernel; weights N(0, 1/(3 k k))), rescaled to the crop's mean and spread and blended with it
    at a random weight (RandConv, Xu et al., ICLR 2021). Colours and local texture change at random
    while every shape stays where it was, so the network must lean on shape rather than on the
    renderer's look. The kernel is centred: the crop stays registered to its keypoints."""
    side = int(rng.choice(np.arange(1, max_kernel + 1, 2)))
    weights = rng.normal(0.0, 1.0 / math.sqrt(3 * side * side), (3, 3, side, side)).astype(np.float32)
    values = image.astype(np.float32)
    styled = np.zeros_like(values)
    for out_channel in range(3):
        for in_channel in range(3):
            styled[..., out_channel] += cv2.filter2D(values[..., in_channel], -1,
                                                     weights[out_channel, in_channel],
                                                     borderType=cv2.BORDER_REFLECT)
    styled = (styled - styled.mean(axis=(0, 1))) / (styled.std(axis=(0, 1)) + 1e-6) \
        * values.std() + values.mean()
    blend = rng.uniform(0.0, 1.0)
    return np.clip(blend * values + (1 - blend) * styled + 0.5, 0, 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, max_sigma: float) -> np.ndarray:
    sigma = rng.uniform(0.3, max_sigma)
    return cv2.GaussianBlur(image, (0, 0), sigma)


def motion_blur(image: np.ndarray, rng: np.random.Generator, max_length: int) -> np.ndarray:
    """Blur along a random direction with a line kernel of 3..max_length pixels (centred, so
    the blurred image stays registered to the keypoints)."""
    length = int(rng.integers(3, max(3, max_length) + 1)) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, max_std: float) -> np.ndarray:
    noise = rng.normal(0.0, rng.uniform(1.0, max_std), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def jpeg_recompress(image: np.ndarray, rng: np.random.Generator, quality_min: int,
                    quality_max: int) -> np.ndarray:
    """Encode and decode as JPEG at a random quality (the artefacts of real camera streams)."""
    quality = int(rng.integers(quality_min, quality_max + 1))
    ok, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('OpenCV could not JPEG-encode the augmented crop')
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def _random_fill(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 BGR patch: a flat colour (skin tones half the time: the other hand, an arm),
    a linear gradient, or noise/blotch texture (cluttered background)."""
    kind = rng.integers(4)
    if kind == 0:   # skin-like flat colour
        hsv = np.uint8([[[rng.integers(0, 25), rng.integers(40, 170), rng.integers(60, 255)]]])
        return np.broadcast_to(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), (height, width, 3)).copy()
    if kind == 1:
        return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (height, width, 3)).copy()
    if kind == 2:
        start, end = rng.integers(0, 256, (2, 3)).astype(np.float32)
        ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
        patch = np.broadcast_to(start + (end - start) * ramp, (height, width, 3))
        return patch.astype(np.uint8)
    coarse = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3)).astype(np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def occlude(image: np.ndarray, rng: np.random.Generator, max_count: int,
            max_size: float) -> np.ndarray:
    """Paint 1..max_count random rectangles or ellipses (sides up to max_size x the crop side)
    filled with a colour or texture. Keypoints under them keep their labels (see module doc)."""
    height, width = image.shape[:2]
    out = image.copy()
    for _ in range(int(rng.integers(1, max_count + 1))):
        w = max(2, int(rng.uniform(0.08, max_size) * width))
        h = max(2, int(rng.uniform(0.08, max_size) * height))
        x0 = int(rng.integers(-w // 2, width - w // 2))
        y0 = int(rng.integers(-h // 2, height - h // 2))
        mask = np.zeros((height, width), np.uint8)
        if rng.random() < 0.5:
            cv2.rectangle(mask, (x0, y0), (x0 + w, y0 + h), 255, -1)
        else:
            cv2.ellipse(mask, (x0 + w // 2, y0 + h // 2), (w // 2, h // 2), rng.uniform(0, 180),
                        0, 360, 255, -1)
        fill = _random_fill(rng, height, width)
        out[mask > 0] = fill[mask > 0]
    return out


def cutout(image: np.ndarray, rng: np.random.Generator, max_size: float) -> np.ndarray:
    """Replace one random rectangle, anywhere in the crop, with background-like texture (random
    erasing): against learning the renderer's clean backgrounds."""
    height, width = image.shape[:2]
    w = max(2, int(rng.uniform(0.1, max_size) * width))
    h = max(2, int(rng.uniform(0.1, max_size) * height))
    x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    out = image.copy()
    out[y0:y0 + h, x0:x0 + w] = _random_fill(rng, h, w)
    return out


def photometric(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """All pixel-only augmentations with their probabilities, in the order a camera would add
    them: scene (occluders, clutter), colour, optics (blur), sensor (noise), codec (JPEG)."""
    if rng.random() < config.occlusion_prob:
        image = occlude(image, rng, config.occlusion_max_count, config.occlusion_max_size)
    if rng.random() < config.cutout_prob:
        image = cutout(image, rng, config.cutout_max_size)
    if rng.random() < config.color_prob:
        image = color_jitter(image, rng, config)
    if rng.random() < config.channel_swap_prob:
        image = swap_channels(image, rng)
    if rng.random() < config.grey_prob:
        image = to_grey(image)
    # drawn only when on, so that recipes without it keep their exact random sequence
    if config.random_conv_prob and rng.random() < config.random_conv_prob:
        image = random_convolution(image, rng, config.random_conv_max_kernel)
    if rng.random() < config.blur_prob:
        image = (gaussian_blur(image, rng, config.blur_max_sigma) if rng.random() < 0.5
                 else motion_blur(image, rng, config.motion_blur_max_length))
    if rng.random() < config.noise_prob:
        image = gaussian_noise(image, rng, config.noise_max_std)
    if rng.random() < config.jpeg_prob:
        image = jpeg_recompress(image, rng, config.jpeg_quality_min, config.jpeg_quality_max)
    return image
