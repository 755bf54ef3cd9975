"""Crash-safe file writing shared by checkpoints, TensorRT engines, their sidecars and caches."""
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object] | bytes) -> Path:
    """Write `path` so that it is either the complete new content or left as it was.

    `write` is the bytes to store or a function that writes into the open binary stream. The data
    goes to a temporary file in the same directory, is fsynced, then renamed over `path`, and the
    directory is fsynced so the rename survives a power cut. The file gets the permissions a
    plain open() would give it (0666 less the umask), not the temporary file's private 0600.
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
            os.fchmod(stream.fileno(), 0o666 & ~_current_umask())
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
