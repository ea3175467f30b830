"""Input checks shared by every public entry point, run before any kernel."""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray

METRICS = ("sqeuclidean", "euclidean", "inner_product", "cosine")
_ALIASES = {"angular": "cosine", "l2": "sqeuclidean", "ip": "inner_product"}


def check_metric(metric: str) -> str:
    """Return the canonical metric name, or raise naming the valid ones."""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string, got {type(metric).__name__}")
    name = _ALIASES.get(metric.lower(), metric.lower())
    if name not in METRICS:
        valid = ", ".join(repr(m) for m in METRICS + tuple(_ALIASES))
        raise ValueError(f"metric must be one of {valid}; got {metric!r}")
    return name


def as_matrix(
    x: ArrayLike,
    name: str,
    dim: int | None = None,
    allow_empty: bool = False,
) -> NDArray[np.float32]:
    """Convert ``x`` once to a C-contiguous float32 matrix and check it.

    A 1-d input is read as one row. Integer and float inputs are cast; booleans,
    complex numbers, strings and objects raise ``TypeError``. Non-finite values raise
    ``ValueError`` naming the first bad row.
    """
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{name} must be a rectangular array of shape (n, dim): {exc}"
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(
            f"{name} must hold real numbers (float or integer dtype), "
            f"got dtype {arr.dtype}"
        )
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-d array of shape (n, dim), got {arr.ndim} dimensions "
            f"with shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features per row, shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {arr.shape}); need at least one row")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per row, but {dim} are expected"
        )
    if np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > 4:
        big = np.abs(arr[np.isfinite(arr)]) > np.finfo(np.float32).max
        if big.any():
            raise ValueError(f"{name} holds values beyond the float32 range (3.4e38)")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    check_finite(out, name)
    return out


def check_finite(arr: NDArray, name: str) -> None:
    """Raise ``ValueError`` naming the first row with a NaN or an infinity.

    A matrix-vector product with ones screens every row at BLAS speed (NaN and
    infinity propagate into the row sum); only a non-finite sum, which may also come
    from overflow of large finite values, triggers the exact element-wise check.
    """
    if arr.size == 0:
        return
    if arr.ndim == 2 and arr.dtype == np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            sums = arr @ np.ones(arr.shape[1], dtype=np.float32)
        if np.isfinite(sums).all():
            return
    finite_rows = np.isfinite(arr).all(axis=1) if arr.ndim == 2 else np.isfinite(arr)
    if not finite_rows.all():
        row = int(np.flatnonzero(~finite_rows)[0])
        raise ValueError(
            f"{name} holds NaN or infinite values (first at row {row}); "
            "remove or replace them before calling"
        )


def check_k(k: object, name: str = "k") -> int:
    """Return ``k`` as an int after checking that it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking ``value >= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_n_threads(n_threads: object) -> int | None:
    """Return ``n_threads`` (None means all cores) after checking it."""
    if n_threads is None:
        return None
    return check_positive_int(n_threads, "n_threads")


def max_abs(x: NDArray) -> float:
    """Largest magnitude in ``x`` (0 for an empty array), without a temporary copy."""
    if x.size == 0:
        return 0.0
    return float(max(x.max(), -x.min()))


# Magnitudes that float32 products and squared norms handle without rescaling: up
# to 2^50 a sum of 10^5 squares stays below 2.5e35; from 2^-40 they stay normal.
SAFE_LOW = 2.0**-40
SAFE_HIGH = 2.0**50


def range_scale(largest: float) -> float:
    """1, or the power of two taking ``largest`` into [2^49, 2^50) when it lies
    outside [SAFE_LOW, SAFE_HIGH].

    Scaling towards the top of the safe band, not towards 1, keeps the smaller
    values of the data as far from float32 underflow as possible.
    """
    if largest == 0.0 or SAFE_LOW <= largest <= SAFE_HIGH:
        return 1.0
    return float(np.ldexp(1.0, 50 - int(np.frexp(largest)[1])))


def apply_scale(x: NDArray[np.float32], scale: float) -> NDArray[np.float32]:
    """``x * scale`` for a power of two ``scale`` that may itself lie beyond the
    float32 range (two float32 factors, each step exact)."""
    if scale == 1.0:
        return x
    exponent = int(np.frexp(scale)[1]) - 1
    half = exponent // 2
    first = x * np.float32(np.ldexp(1.0, half))
    return first * np.float32(np.ldexp(1.0, exponent - half))


def normalize_rows(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Scale rows to unit L2 norm; zero rows stay zero (cosine defines them below).

    Under the cosine metric a zero vector has similarity 0 to everything, so its
    distance to any vector is exactly 1.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    scale = np.zeros_like(norms)
    np.divide(1.0, norms, out=scale, where=norms > 0)
    # rows of subnormal norm need a factor beyond float32: scale those in float64
    tiny = scale > np.finfo(np.float32).max
    out = np.ascontiguousarray(x * np.where(tiny, 0.0, scale)[:, None].astype(np.float32))
    if tiny.any():
        out[tiny] = (x[tiny].astype(np.float64) * scale[tiny, None]).astype(np.float32)
    return out
