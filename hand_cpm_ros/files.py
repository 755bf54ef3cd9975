"""Crash-safe file writing shared by checkpoints, TensorRT engines, their sidecars and caches."""
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object] | bytes) -> Path:
    """Write `path` so that it is either the complete new content or left as it was.

    `write` is the bytes to store or a function that writes into the open binary stream. The data
    goes to a temporary file in the same directory, is fsynced, then renamed over `path`, and the
    directory is fsynced so the rename survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(handle, 'wb') as stream:
            if isinstance(write, (bytes, bytearray, memoryview)):
                stream.write(write)
            else:
                write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path
