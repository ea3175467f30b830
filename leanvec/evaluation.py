"""Recall as users measure it, and a QPS timer."""

from __future__ import annotations

import dataclasses
import numbers
import time
from collections.abc import Callable

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_matrix, check_k, check_n_threads, check_positive_int

ANNB_EPSILON = 1e-3


def _as_ids(ids: ArrayLike, name: str) -> NDArray[np.int64]:
    arr = np.asarray(ids)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} must be a 2-d integer array of shape (n_queries, k), "
            f"got dtype {arr.dtype} and shape {arr.shape}"
        )
    return arr.astype(np.int64, copy=False)


def recall_at_k(ids: ArrayLike, gt_ids: ArrayLike, k: int) -> float:
    """Mean over queries of |ids[:, :k] ∩ gt_ids[:, :k]| / k.

    Ids of -1 (missing results) never count. When fewer than ``k`` ids are
    returned, the missing ones count as misses.
    """
    k = check_k(k)
    ids = _as_ids(ids, "ids")
    gt_ids = _as_ids(gt_ids, "gt_ids")
    if ids.shape[0] != gt_ids.shape[0]:
        raise ValueError(
            f"ids has {ids.shape[0]} rows but gt_ids has {gt_ids.shape[0]}"
        )
    if gt_ids.shape[1] < k:
        raise ValueError(f"gt_ids has {gt_ids.shape[1]} columns, fewer than k={k}")
    if ids.shape[0] == 0:
        return float("nan")
    hits = 0
    for got, true in zip(ids[:, :k], gt_ids[:, :k]):
        hits += np.intersect1d(got[got >= 0], true[true >= 0]).size
    return hits / (k * ids.shape[0])


def annb_recall_at_k(
    distances: ArrayLike, gt_distances: ArrayLike, k: int, epsilon: float = ANNB_EPSILON
) -> float:
    """ann-benchmarks recall: a returned neighbour counts when its true distance is
    at most the true k-th distance + ``epsilon``.

    ``distances`` are the true distances of the returned ids (recomputed from the
    vectors, as ann-benchmarks does), in the file's units (L2, or 1 - cos for
    angular); +inf marks missing results.
    """
    k = check_k(k)
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"epsilon must be a real number, got {epsilon!r}")
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon!r}")
    dist = np.asarray(distances, dtype=np.float64)
    gt = np.asarray(gt_distances, dtype=np.float64)
    if dist.ndim != 2 or gt.ndim != 2 or dist.shape[0] != gt.shape[0]:
        raise ValueError(
            "distances and gt_distances must be 2-d with the same number of rows, "
            f"got shapes {dist.shape} and {gt.shape}"
        )
    if gt.shape[1] < k:
        raise ValueError(f"gt_distances has {gt.shape[1]} columns, fewer than k={k}")
    threshold = gt[:, k - 1 : k] + epsilon
    counted = (dist[:, :k] <= threshold).sum(axis=1)
    return float(np.mean(counted / k)) if dist.shape[0] else float("nan")


@dataclasses.dataclass
class Timing:
    """Result of :func:`time_queries`."""

    qps: float
    seconds: float
    n_queries: int
    mode: str
    n_threads: int
    runs: int


def time_queries(
    search: Callable[[NDArray[np.float32]], object],
    queries: NDArray[np.float32],
    batch: bool = True,
    runs: int = 5,
    warmup: int = 1,
    n_threads: int | None = None,
) -> Timing:
    """Time ``search`` over all queries and return the best of ``runs``.

    ``search`` takes an array of shape (m, dim). In batch mode it gets every query
    at once; otherwise one call per query (shape (1, dim)). A 1-d ``queries`` is
    one query. ``n_threads`` is recorded as given (None: numba's current thread
    count).
    """
    runs = check_positive_int(runs, "runs")
    warmup = check_positive_int(warmup, "warmup", minimum=0)
    n_threads = check_n_threads(n_threads)
    queries = as_matrix(queries, "queries")
    singles = [queries[i : i + 1] for i in range(queries.shape[0])]

    def one_pass() -> float:
        start = time.perf_counter()
        if batch:
            search(queries)
        else:
            for q in singles:
                search(q)
        return time.perf_counter() - start

    for _ in range(warmup):
        one_pass()
    best = min(one_pass() for _ in range(runs))
    threads = n_threads if n_threads is not None else numba.get_num_threads()
    return Timing(
        qps=queries.shape[0] / best if best > 0 else float("inf"),
        seconds=best,
        n_queries=queries.shape[0],
        mode="batch" if batch else "single",
        n_threads=threads,
        runs=runs,
    )
