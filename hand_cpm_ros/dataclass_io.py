"""Building the package's frozen config dataclasses from plain dicts (checkpoints, ONNX metadata,
YAML files), refusing keys the dataclass does not have so that a typo never passes silently."""
from dataclasses import fields
from typing import TypeVar

T = TypeVar('T')


def from_known_fields(cls: type[T], data: dict, what: str) -> T:
    """cls(**data); ValueError naming the unknown keys (e.g. what='model config') and the valid ones."""
    known = {field.name for field in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'unknown {what} keys {unknown}; valid: {sorted(known)}')
    return cls(**data)
