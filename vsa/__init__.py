"""MBAT vector symbolic architecture: orthogonal-matrix binding and JSON vectors."""

from ._flatten import RecordError
from .capacity import capacity_dim, expected_accuracy
from .core import (
    ItemMemory,
    Role,
    atom,
    atoms,
    bind,
    bundle,
    make_role,
    similarity,
    stable_hash,
    unbind,
)
from .encoder import JSONEncoder

__all__ = [
    "ItemMemory",
    "JSONEncoder",
    "RecordError",
    "Role",
    "atom",
    "atoms",
    "bind",
    "bundle",
    "capacity_dim",
    "expected_accuracy",
    "make_role",
    "similarity",
    "stable_hash",
    "unbind",
]
