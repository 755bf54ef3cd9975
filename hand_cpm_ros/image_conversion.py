"""sensor_msgs/Image fields <-> numpy, without rclpy or cv_bridge (ROS 2 has no cv_bridge here).

Takes the raw message fields (encoding, height, width, step, data, is_bigendian), honours `step`
(row padding) and `is_bigendian`, and returns views of `data` where no conversion is needed.
"""
import array as array_module

import numpy as np

# encoding -> (channels, bytes per channel)
COLOR_ENCODINGS = {
    'bgr8': (3, 1), '8UC3': (3, 1), 'rgb8': (3, 1), 'bgra8': (4, 1), 'rgba8': (4, 1),
    'mono8': (1, 1), '8UC1': (1, 1), 'mono16': (1, 2),
}
DEPTH_ENCODINGS = {'16UC1': (1, 2), 'mono16': (1, 2), '32FC1': (1, 4)}


class ImageConversionError(ValueError):
    """An Image message that cannot be converted; the message says what is wrong."""


def _byte_buffer(data) -> np.ndarray:
    """`data` as a flat uint8 array without copying (bytes, bytearray, memoryview, array('B'), uint8 ndarray)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageConversionError(f'image data must be uint8 bytes, got a numpy array of {data.dtype}')
        return data.reshape(-1)
    if isinstance(data, array_module.array) and data.typecode not in ('B', 'b'):
        raise ImageConversionError(f"image data must be bytes, got array('{data.typecode}')")
    if isinstance(data, memoryview) and data.itemsize != 1:
        raise ImageConversionError(f'image data must be bytes, got a memoryview of {data.format!r} items')
    if not isinstance(data, (bytes, bytearray, memoryview, array_module.array)):
        raise ImageConversionError(f'image data must be bytes, bytearray, memoryview, array or uint8 ndarray, '
                                   f'got {type(data).__name__}')
    return np.frombuffer(data, dtype=np.uint8)


def _pixel_rows(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool,
                table: dict) -> np.ndarray:
    """Validated (H, W, C) view of the pixels in the encoding's native dtype (big-endian honoured)."""
    if encoding not in table:
        raise ImageConversionError(f'unsupported image encoding {encoding!r}; supported: {", ".join(table)}')
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'image is empty: height={height}, width={width}')
    channels, depth = table[encoding]
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageConversionError(f'step {step} is smaller than width * bytes per pixel = {width} * '
                                   f'{channels * depth} = {row_bytes} for {encoding}')
    buffer = _byte_buffer(data)
    if buffer.size < step * height:
        raise ImageConversionError(f'image data is truncated: {buffer.size} bytes, need step * height = '
                                   f'{step} * {height} = {step * height}')
    rows = buffer[:step * height].reshape(height, step)[:, :row_bytes]
    if depth == 1:
        return rows.reshape(height, width, channels)
    kind = 'f' if encoding == '32FC1' else 'u'
    dtype = np.dtype(f'{">" if is_bigendian else "<"}{kind}{depth}')
    return rows.view(dtype).reshape(height, width, channels)


def image_to_bgr(encoding: str, height: int, width: int, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Image fields -> (H, W, 3) uint8 BGR for bgr8, rgb8, bgra8, rgba8, mono8, mono16, 8UC3, 8UC1.

    bgr8/8UC3 without row padding come back as a view of `data` (read-only for bytes): copy it
    before drawing if the message must stay intact. mono16 is max-normalised per image
    (value * 255 / image max, rounded): a 10- or 12-bit camera in a 16-bit container would come out
    nearly black with `>> 8`; an all-zero image stays black.
    """
    pixels = _pixel_rows(encoding, height, width, step, data, is_bigendian, COLOR_ENCODINGS)
    if encoding in ('bgr8', '8UC3'):
        return pixels if pixels.flags.c_contiguous else np.ascontiguousarray(pixels)
    if encoding in ('rgb8', 'rgba8'):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    if encoding == 'bgra8':
        return np.ascontiguousarray(pixels[:, :, :3])
    gray = pixels[:, :, 0]
    if encoding == 'mono16':
        peak = int(gray.max())
        gray = np.zeros(gray.shape, np.uint8) if peak == 0 else \
            np.round(gray.astype(np.float32) * (255.0 / peak)).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def depth_to_metres(encoding: str, height: int, width: int, step: int, data,
                    is_bigendian: bool = False) -> np.ndarray:
    """Depth image fields -> (H, W) float32 metres; missing depth is NaN.

    16UC1 / mono16 hold millimetres (0 = no reading -> NaN); 32FC1 holds metres (NaN and inf -> NaN).
    """
    pixels = _pixel_rows(encoding, height, width, step, data, is_bigendian, DEPTH_ENCODINGS)[:, :, 0]
    if encoding == '32FC1':
        metres = pixels.astype(np.float32)
        metres[~np.isfinite(metres)] = np.nan
        return metres
    metres = pixels.astype(np.float32) / 1000.0
    metres[pixels == 0] = np.nan
    return metres


def bgr_to_image_fields(image_bgr: np.ndarray) -> dict:
    """(H, W, 3) uint8 BGR -> dict(encoding='bgr8', height, width, step, data=bytes, is_bigendian=0)."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 \
            or image_bgr.shape[2] != 3 or image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ImageConversionError(f'expected a non-empty (H, W, 3) uint8 BGR image, got '
                                   f'{getattr(image_bgr, "dtype", type(image_bgr))} {getattr(image_bgr, "shape", "")}')
    height, width = image_bgr.shape[:2]
    return {'encoding': 'bgr8', 'height': int(height), 'width': int(width), 'step': int(width * 3),
            'data': np.ascontiguousarray(image_bgr).tobytes(), 'is_bigendian': 0}
