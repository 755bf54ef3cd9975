"""Augmentations move image and keypoints together: a bright dot drawn at a keypoint is still
under the transformed keypoint after every op."""
import cv2
import numpy as np
import pytest

from hand_cpm_ros.geometry import apply_affine, compose_affine, warp_crop
from hand_cpm_train import augment
from hand_cpm_train.augment import AugmentConfig, CropJitter

POINTS = np.array([[60.0, 70.0], [140.0, 90.0], [100.0, 150.0]])


def dotted_image(points=POINTS, size=200, background=40):
    image = np.full((size, size, 3), background, np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return image


def brightest_near(image, point, radius=6):
    """(x, y) of the intensity-weighted centre of the brightest blob within `radius` of point."""
    grey = image.astype(np.float64).mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    x0, y0 = int(round(point[0])) - radius, int(round(point[1])) - radius
    window = grey[max(y0, 0):y0 + 2 * radius + 1, max(x0, 0):x0 + 2 * radius + 1]
    weights = np.clip(window - np.percentile(window, 60), 0, None)
    ys, xs = np.mgrid[0:window.shape[0], 0:window.shape[1]]
    return np.array([(weights * xs).sum() / weights.sum() + max(x0, 0),
                     (weights * ys).sum() / weights.sum() + max(y0, 0)])


@pytest.mark.parametrize('jitter', [
    CropJitter(),
    CropJitter(rotation_deg=37.0),
    CropJitter(rotation_deg=-170.0, scale=1.3),
    CropJitter(scale=0.8, shift=(0.1, -0.05)),
    CropJitter(flip=True),
    CropJitter(rotation_deg=95.0, scale=1.1, shift=(-0.08, 0.1), flip=True),
])
def test_geometric_jitter_moves_dots_with_keypoints(jitter):
    image = dotted_image()
    affine = augment.jittered_crop_affine(100.0, 110.0, 150.0, 128, jitter)
    crop = warp_crop(image, affine, 128)
    for point in apply_affine(affine, POINTS):
        assert np.linalg.norm(brightest_near(crop, point) - point) < 0.75


def test_mirror_is_cv2_flip_and_its_own_inverse():
    image = dotted_image()
    mirrored = cv2.warpAffine(image, augment.mirror_affine(200), (200, 200), flags=cv2.INTER_NEAREST)
    assert np.array_equal(mirrored, cv2.flip(image, 1))
    twice = compose_affine(augment.mirror_affine(200), augment.mirror_affine(200))
    assert np.allclose(twice, [[1, 0, 0], [0, 1, 0]])
    assert np.allclose(apply_affine(augment.mirror_affine(200), [[0.0, 5.0], [199.0, 7.0]]),
                       [[199.0, 5.0], [0.0, 7.0]])


def test_flip_mirrors_keypoint_x_and_keeps_indices():
    plain = augment.jittered_crop_affine(100.0, 110.0, 150.0, 96, CropJitter(rotation_deg=20.0))
    flipped = augment.jittered_crop_affine(100.0, 110.0, 150.0, 96,
                                           CropJitter(rotation_deg=20.0, flip=True))
    a, b = apply_affine(plain, POINTS), apply_affine(flipped, POINTS)
    assert np.allclose(b[:, 0], 95.0 - a[:, 0]) and np.allclose(b[:, 1], a[:, 1])


@pytest.mark.parametrize('op', [
    lambda image, rng: augment.color_jitter(image, rng, AugmentConfig()),
    lambda image, rng: augment.swap_channels(image, rng),
    lambda image, rng: augment.to_grey(image),
    lambda image, rng: augment.gaussian_blur(image, rng, 2.0),
    lambda image, rng: augment.motion_blur(image, rng, 9),
    lambda image, rng: augment.gaussian_noise(image, rng, 12.0),
    lambda image, rng: augment.jpeg_recompress(image, rng, 25, 60),
], ids=['color', 'channels', 'grey', 'gaussian_blur', 'motion_blur', 'noise', 'jpeg'])
def test_photometric_ops_keep_dots_in_place(op):
    for seed in range(4):
        image = dotted_image()
        out = op(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8
        for point in POINTS:
            assert np.linalg.norm(brightest_near(out, point) - point) < 1.0


@pytest.mark.parametrize('max_kernel', [1, 7])
def test_random_convolution_restyles_but_keeps_every_dot_in_place(max_kernel):
    image = dotted_image()
    for seed in range(6):
        out = augment.random_convolution(image, np.random.default_rng(seed), max_kernel)
        assert out.shape == image.shape and out.dtype == np.uint8
        # a kernel may darken a dot or ring it: what stays is where it stands out from the rest;
        # an uneven kernel can move that centre by at most half its side
        contrast = np.abs(out.astype(np.float64) - np.median(out, axis=(0, 1))).sum(axis=2)
        for point in POINTS:
            assert np.linalg.norm(brightest_near(contrast, point) - point) < max_kernel // 2 + 1.0
    colourful = cv2.resize(np.random.default_rng(9).integers(0, 256, (8, 8, 3)).astype(np.uint8), (200, 200))
    styles = [augment.random_convolution(colourful, np.random.default_rng(seed), max_kernel) for seed in range(2)]
    assert np.abs(styles[0].astype(int) - styles[1].astype(int)).mean() > 10


def test_random_convolution_kernel_must_be_odd():
    with pytest.raises(ValueError, match='random_conv_max_kernel must be odd'):
        AugmentConfig(random_conv_max_kernel=4)


def test_color_jitter_changes_colours():
    image = dotted_image()
    image[:100] = (30, 120, 200)
    out = augment.color_jitter(image, np.random.default_rng(3), AugmentConfig())
    assert np.abs(out.astype(int) - image.astype(int)).mean() > 3


def test_swap_channels_permutes_and_grey_equalises():
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 100, 200
    swapped = augment.swap_channels(image, np.random.default_rng(0))
    assert sorted(swapped[0, 0].tolist()) == [10, 100, 200]
    assert swapped[0, 0].tolist() != [10, 100, 200]
    grey = augment.to_grey(image)
    assert grey[0, 0, 0] == grey[0, 0, 1] == grey[0, 0, 2]


def test_occlusion_and_cutout_cover_part_of_the_crop():
    image = np.full((96, 96, 3), 255, np.uint8)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        occluded = augment.occlude(image, rng, max_count=2, max_size=0.35)
        changed = np.any(occluded != image, axis=2).mean()
        assert 0.0 < changed < 2 * 0.35 ** 2 + 0.05
        cut = augment.cutout(image, rng, max_size=0.5)
        rows, cols = np.nonzero(np.any(cut != image, axis=2))
        assert rows.size > 0
        assert rows.max() - rows.min() < 0.5 * 96 + 1 and cols.max() - cols.min() < 0.5 * 96 + 1


def test_sample_jitter_covers_the_configured_ranges():
    config = AugmentConfig(rotation_deg=180.0, scale_min=0.8, scale_max=1.3, translate=0.1,
                           flip_prob=0.5)
    rng = np.random.default_rng(0)
    draws = [augment.sample_jitter(rng, config) for _ in range(400)]
    rotations = np.array([d.rotation_deg for d in draws])
    scales = np.array([d.scale for d in draws])
    shifts = np.array([d.shift for d in draws])
    assert rotations.min() < -150 and rotations.max() > 150
    assert 0.8 <= scales.min() and scales.max() <= 1.3 and scales.max() - scales.min() > 0.4
    assert np.abs(shifts).max() <= 0.1
    assert 150 < sum(d.flip for d in draws) < 250


def test_photometric_pipeline_all_on_keeps_shape_and_type():
    config = AugmentConfig(color_prob=1, channel_swap_prob=1, grey_prob=0, blur_prob=1,
                           noise_prob=1, jpeg_prob=1, occlusion_prob=1, cutout_prob=1)
    out = augment.photometric(dotted_image(), np.random.default_rng(1), config)
    assert out.shape == (200, 200, 3) and out.dtype == np.uint8
    assert not np.array_equal(out, dotted_image())


def test_config_round_trip_and_validation():
    config = AugmentConfig(rotation_deg=30.0, flip_prob=0.0)
    assert AugmentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match='flip_prob'):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match='scale_min'):
        AugmentConfig(scale_min=1.5, scale_max=1.0)
    with pytest.raises(ValueError, match='unknown augmentation keys'):
        AugmentConfig.from_dict({'rotate': 10})
