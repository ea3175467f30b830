"""The named result every search returns."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray


class SearchResult(NamedTuple):
    """Nearest neighbours of a batch of queries, best first.

    Attributes
    ----------
    ids : array of shape (n_queries, k), int64
        Database row numbers; ``-1`` where fewer than ``k`` results exist.
    distances : array of shape (n_queries, k), float32
        Distances in the metric's own units (smaller is closer); ``+inf`` where
        ``ids`` is ``-1``.
    """

    ids: NDArray[np.int64]
    distances: NDArray[np.float32]


def empty_result(n_queries: int, k: int) -> SearchResult:
    """Return a result of sentinels only: ids -1, distances +inf."""
    return SearchResult(
        np.full((n_queries, k), -1, dtype=np.int64),
        np.full((n_queries, k), np.inf, dtype=np.float32),
    )
