"""Image message fields <-> numpy: every encoding by pixel value, row padding, endianness, errors."""
import array

import numpy as np
import pytest

from hand_cpm_ros.image_conversion import ImageConversionError, bgr_to_image_fields, depth_to_metres, image_to_bgr

BGR = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                [[10, 11, 12], [13, 14, 15], [16, 17, 18]]], np.uint8)   # 2 rows x 3 columns


def padded(rows: np.ndarray, step: int) -> bytes:
    """Raw bytes of (H, row_bytes) rows padded with 0xEE to `step` bytes per row."""
    out = np.full((rows.shape[0], step), 0xEE, np.uint8)
    out[:, :rows.shape[1]] = rows
    return out.tobytes()


def test_bgr_round_trip_is_a_view_without_padding():
    fields = bgr_to_image_fields(BGR)
    assert fields == {'encoding': 'bgr8', 'height': 2, 'width': 3, 'step': 9, 'data': BGR.tobytes(),
                      'is_bigendian': 0}
    data = bytearray(fields['data'])
    image = image_to_bgr('bgr8', 2, 3, 9, data)
    np.testing.assert_array_equal(image, BGR)
    data[0] = 99
    assert image[0, 0, 0] == 99                                   # shares the message's memory
    np.testing.assert_array_equal(image_to_bgr('8UC3', 2, 3, 9, BGR.tobytes()), BGR)


@pytest.mark.parametrize('encoding, pixels', [
    ('rgb8', BGR[:, :, ::-1]),
    ('bgra8', np.concatenate([BGR, np.full((2, 3, 1), 200, np.uint8)], axis=2)),
    ('rgba8', np.concatenate([BGR[:, :, ::-1], np.full((2, 3, 1), 200, np.uint8)], axis=2)),
])
def test_colour_encodings_with_row_padding(encoding, pixels):
    step = pixels.shape[1] * pixels.shape[2] + 5
    data = array.array('B', padded(pixels.reshape(2, -1), step))   # rclpy hands over array('B')
    np.testing.assert_array_equal(image_to_bgr(encoding, 2, 3, step, data), BGR)


def test_mono8_and_8uc1_replicate_gray():
    gray = np.array([[0, 128, 255], [1, 2, 3]], np.uint8)
    for encoding in ('mono8', '8UC1'):
        image = image_to_bgr(encoding, 2, 3, 4, np.frombuffer(padded(gray, 4), np.uint8))
        assert image.shape == (2, 3, 3)
        np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize('is_bigendian', [False, True])
def test_mono16_is_max_normalised_and_endianness_respected(is_bigendian):
    values = np.array([[0, 1023, 4095], [2048, 10, 4095]], np.uint16)   # a 12-bit camera
    raw = values.astype('>u2' if is_bigendian else '<u2').view(np.uint8).reshape(2, 6)
    image = image_to_bgr('mono16', 2, 3, 8, padded(raw, 8), is_bigendian)
    np.testing.assert_array_equal(image[:, :, 0], np.round(values * (255 / 4095)).astype(np.uint8))
    assert image[0, 2, 0] == 255 and image[1, 0, 0] == 128
    zeros = image_to_bgr('mono16', 1, 2, 4, bytes(4))
    assert not zeros.any()


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16'])
@pytest.mark.parametrize('is_bigendian', [False, True])
def test_depth_millimetres(encoding, is_bigendian):
    millimetres = np.array([[0, 1500, 65535]], np.uint16)
    raw = millimetres.astype('>u2' if is_bigendian else '<u2').view(np.uint8).reshape(1, 6)
    metres = depth_to_metres(encoding, 1, 3, 10, padded(raw, 10), is_bigendian)
    assert metres.dtype == np.float32 and metres.shape == (1, 3)
    assert np.isnan(metres[0, 0])
    np.testing.assert_allclose(metres[0, 1:], [1.5, 65.535], rtol=1e-6)


@pytest.mark.parametrize('is_bigendian', [False, True])
def test_depth_float_metres(is_bigendian):
    values = np.array([[0.5, np.inf], [np.nan, 2.25]], np.float32)
    raw = values.astype('>f4' if is_bigendian else '<f4').view(np.uint8).reshape(2, 8)
    metres = depth_to_metres('32FC1', 2, 2, 12, padded(raw, 12), is_bigendian)
    assert metres.dtype == np.float32
    np.testing.assert_array_equal(metres, [[0.5, np.nan], [np.nan, 2.25]])


@pytest.mark.parametrize('call, message', [
    (lambda: image_to_bgr('yuv422', 2, 3, 6, bytes(12)), r"unsupported image encoding 'yuv422'; supported: bgr8"),
    (lambda: depth_to_metres('bgr8', 2, 3, 9, bytes(18)), 'supported: 16UC1, mono16, 32FC1'),
    (lambda: image_to_bgr('bgr8', 0, 3, 9, b''), 'empty'),
    (lambda: image_to_bgr('bgr8', 2, 3, 8, bytes(16)), 'step 8 is smaller than width'),
    (lambda: image_to_bgr('bgr8', 2, 3, 9, bytes(17)), 'truncated: 17 bytes, need step \\* height'),
    (lambda: image_to_bgr('mono8', 2, 3, 3, np.zeros(6, np.float32)), 'uint8 bytes'),
    (lambda: image_to_bgr('mono8', 2, 3, 3, array.array('H', [0] * 6)), "array\\('H'\\)"),
    (lambda: image_to_bgr('mono8', 2, 3, 3, [0] * 6), 'got list'),
    (lambda: bgr_to_image_fields(np.zeros((2, 3), np.uint8)), r'\(H, W, 3\) uint8'),
])
def test_errors_name_the_problem(call, message):
    with pytest.raises(ImageConversionError, match=message):
        call()
