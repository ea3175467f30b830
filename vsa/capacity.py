"""Expected field read-back accuracy of a bundle (the capacity formula)."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ._checks import check_float, check_int

# capacity_dim searches dimensions up to this one.
MAX_DIM = 1 << 20


def expected_accuracy(dim: int, n_fields: int, n_candidates: int) -> float:
    """Probability that clean-up returns the right value of one field.

    After unbinding one of ``n_fields`` equally weighted fields from a unit
    bundle, the right candidate scores ``1/sqrt(F)`` plus noise and each of the
    other ``N - 1`` candidates scores noise alone, with noise standard deviation
    ``sqrt((F - 1) / (F D))``. With ``r = sqrt(D / (F - 1))``::

        P = integral phi(z) Phi(z + r) ** (N - 1) dz

    Parameters
    ----------
    dim : int
        Dimension D.
    n_fields : int
        Fields F bundled in the object (F >= 1; F = 1 is noise-free).
    n_candidates : int
        Candidate values N in the item memory.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        When ``dim`` < 1, ``n_fields`` < 1 or ``n_candidates`` < 1.
    """
    check_int(dim, "dim", 1)
    check_int(n_fields, "n_fields", 1)
    check_int(n_candidates, "n_candidates", 1)
    if n_fields <= 1 or n_candidates <= 1:
        return 1.0
    ratio = np.sqrt(dim / (n_fields - 1))
    z = np.linspace(-10.0, 10.0, 4001)
    density = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    inside = ndtr(z + ratio) ** (n_candidates - 1)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return float(trapezoid(density * inside, z))


def capacity_dim(n_fields: int, n_candidates: int, accuracy: float = 0.99) -> int:
    """Smallest D whose :func:`expected_accuracy` reaches ``accuracy``.

    Raises
    ------
    ValueError
        When ``accuracy`` is not in (0, 1), a count is below 1, or no D up to
        ``MAX_DIM`` (2**20) reaches ``accuracy``.
    """
    check_int(n_fields, "n_fields", 1)
    check_int(n_candidates, "n_candidates", 1)
    accuracy = check_float(accuracy, "accuracy", positive=True)
    if accuracy >= 1.0:
        raise ValueError(f"accuracy must be below 1, got {accuracy!r}")
    if expected_accuracy(MAX_DIM, n_fields, n_candidates) < accuracy:
        raise ValueError(
            f"no dim up to {MAX_DIM} reaches accuracy {accuracy} with "
            f"{n_fields} fields and {n_candidates} candidates"
        )
    low, high = 1, MAX_DIM
    while low < high:
        mid = (low + high) // 2
        if expected_accuracy(mid, n_fields, n_candidates) >= accuracy:
            high = mid
        else:
            low = mid + 1
    return low
