"""Argument checks of the JSON encoder, run before any work."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray


def check_records(records: object) -> None:
    if isinstance(records, (dict, str, bytes)):
        raise TypeError(
            f"records must be an iterable of JSON values, got a single "
            f"{type(records).__name__}; wrap one record in a list: [record]"
        )


def as_rows(vectors: ArrayLike, dim: int) -> NDArray[np.float32]:
    arr = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(
            f"vectors must have shape (dim,) or (m, dim) with dim={dim}, got "
            f"shape {np.shape(vectors)}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("vectors hold NaN or infinite values")
    return arr


def check_int(value: object, name: str, low: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
    ):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_float(value: object, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {need}, got {value!r}")
    return float(value)


def check_range(value: object, path: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"ranges[{path!r}] must be a pair (low, high), got {value!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(
            f"ranges[{path!r}] must be finite with low <= high, got {value!r}"
        )
    return lo, hi
