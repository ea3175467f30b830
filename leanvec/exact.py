"""Exact k-nearest-neighbour search: blocked BLAS products and a numba top-k."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import METRIC_CODES
from ._kernels.topk import NO_ID, finish_heaps, rescore, select_block
from ._result import SearchResult, empty_result
from ._threads import limit_threads
from ._validation import (
    apply_scale,
    as_matrix,
    check_k,
    check_metric,
    check_n_threads,
    max_abs,
    normalize_rows,
    range_scale,
)

logger = logging.getLogger(__name__)

# Scores are computed for at most QUERY_BLOCK x BASE_BLOCK pairs at a time (16 MiB).
QUERY_BLOCK = 2048
BASE_BLOCK = 2048
_SMALL_BATCH_VALUES = 1 << 21
# Extra candidates kept from the float32 pass before the float64 re-score.
_REFINE_MARGIN = 4
_F32_MAX = float(np.finfo(np.float32).max)
_NO_NORMS = np.zeros(0, dtype=np.float32)
# Under L2, candidates are scored about the database's mean when its norm exceeds
# this many times the rows' RMS distance to it (float32 products about the origin
# then cancel most digits of the distances).
_CENTRE_RATIO = 4.0
_CHUNK_ROWS = 8192


_scratch_lock = threading.Lock()
_scratch_buffer = np.empty(0, dtype=np.float32)


class _Stored(NamedTuple):
    """A FlatIndex's database, replaced whole (one attribute store) by fit and add,
    so that a search running meanwhile in another thread sees one consistent
    snapshot: rows, squared norms (L2 only, of the rows minus ``centre``), largest
    magnitude (of the rows minus ``centre``) and the centre (L2 data far from the
    origin, else None)."""

    base: NDArray[np.float32]
    base_sq: NDArray[np.float32] | None
    amax: float
    centre: NDArray[np.float32] | None = None


def _l2_centre(rows: NDArray[np.float32]) -> NDArray[np.float32] | None:
    """The rows' mean when it lies far from the origin compared with the rows'
    spread about it (see ``_CENTRE_RATIO``), else None."""
    if rows.shape[0] < 2:
        return None
    mean = rows.mean(axis=0, dtype=np.float64)
    # mean |x - mean|^2 = mean |x|^2 - |mean|^2, in float64
    spread = 0.0
    for s in range(0, rows.shape[0], _CHUNK_ROWS):
        part = rows[s:s + _CHUNK_ROWS]
        spread += float(np.einsum("ij,ij->", part, part, dtype=np.float64))
    spread = spread / rows.shape[0] - float(mean @ mean)
    if float(mean @ mean) <= _CENTRE_RATIO**2 * spread:
        return None
    centre = mean.astype(np.float32)
    return centre if np.isfinite(centre).all() else None


def _centred_norms(rows: NDArray[np.float32], centre: NDArray[np.float32] | None,
                   ) -> tuple[NDArray[np.float32], float]:
    """|x - centre|^2 (float32) of every row, and the largest |x_j - centre_j|."""
    if centre is None:
        with np.errstate(over="ignore"):
            return np.einsum("ij,ij->i", rows, rows).astype(np.float32), max_abs(rows)
    sq = np.empty(rows.shape[0], dtype=np.float32)
    amax = 0.0
    for s in range(0, rows.shape[0], _CHUNK_ROWS):
        with np.errstate(over="ignore"):
            part = rows[s:s + _CHUNK_ROWS] - centre
            sq[s:s + part.shape[0]] = np.einsum("ij,ij->i", part, part)
        amax = max(amax, max_abs(part))
    return sq, amax


@contextmanager
def _scratch(size: int) -> Iterator[NDArray[np.float32]]:
    """A float32 work array of ``size`` values, reused across searches.

    A fresh array's pages each cost a fault and a zeroing on first write, a visible
    share of a search that writes tens of megabytes of scores. The process keeps
    one buffer; a search that finds it in use (another thread) takes a fresh array.
    """
    global _scratch_buffer
    if not _scratch_lock.acquire(blocking=False):
        yield np.empty(size, dtype=np.float32)
        return
    try:
        if _scratch_buffer.size < size:
            _scratch_buffer = np.empty(0, dtype=np.float32)
            _scratch_buffer = np.empty(size, dtype=np.float32)
        yield _scratch_buffer[:size]
    finally:
        _scratch_lock.release()


class FlatIndex:
    """Exact search over a database held as float32 rows.

    Parameters
    ----------
    metric : {"sqeuclidean", "euclidean", "inner_product", "cosine", "angular"}
        Distance returned by :meth:`search` (smaller is closer): squared or true L2,
        the negated inner product, or 1 - cosine similarity. Under cosine a zero
        vector has similarity 0 to every vector (distance 1).
    n_threads : int or None
        Threads for batch search; None uses every core.

    Notes
    -----
    Candidates are selected with float32 matrix products, then the best
    ``k + 4`` are re-scored in float64, so reported distances are exact to float32
    rounding and duplicates are at distance exactly 0.

    Data whose largest magnitude lies outside [2^-40, 2^50] (1e-12 .. 1e15) is
    scored after scaling by a power of two, which keeps the ranking exact. Under
    L2, a database whose mean lies far from the origin (beyond 4 times the rows'
    RMS distance to it) is scored about that mean, block by block, so that the
    float32 products keep the digits of the distances. Reported
    distances are float32: ones beyond its range are clipped to +-3.4e38 (valid hits
    never read +inf), and ones below its smallest subnormal read 0.
    """

    def __init__(self, metric: str = "cosine", n_threads: int | None = None) -> None:
        self.metric = check_metric(metric)
        self.n_threads = check_n_threads(n_threads)
        self._stored: _Stored | None = None

    @property
    def dim(self) -> int | None:
        """Number of features per vector, or None before :meth:`fit`."""
        stored = self._stored
        return None if stored is None else stored.base.shape[1]

    @property
    def n(self) -> int:
        """Number of database vectors."""
        stored = self._stored
        return 0 if stored is None else stored.base.shape[0]

    def __len__(self) -> int:
        return self.n

    @property
    def bytes_per_vector(self) -> int:
        """Memory the index keeps per database vector."""
        stored = self._stored
        extra = 4 if stored is not None and stored.base_sq is not None else 0
        return 4 * (self.dim or 0) + extra

    def fit(self, database: ArrayLike) -> FlatIndex:
        """Store ``database`` (array of shape (n, dim)) and return ``self``.

        A search running in another thread meanwhile uses the database it started
        with.
        """
        stored = self._store(as_matrix(database, "database"))
        self._stored = stored
        logger.debug("FlatIndex holds %d vectors of dim %d", *stored.base.shape)
        return self

    def _store(self, rows: NDArray[np.float32], old: _Stored | None = None,
               ) -> _Stored:
        """The stored form of validated ``rows`` (n, dim) float32; ``old`` (adding
        to it) gives the centre."""
        if self.metric not in ("sqeuclidean", "euclidean"):
            base = rows if self.metric != "cosine" else normalize_rows(rows)
            return _Stored(base, None, max_abs(base))
        centre = _l2_centre(rows) if old is None else old.centre
        base_sq, amax = _centred_norms(rows, centre)
        if not np.isfinite(amax):
            raise ValueError(f"vectors minus the database's mean overflow float32 "
                             f"(largest magnitude {max_abs(rows):.3g})")
        return _Stored(rows, base_sq, amax, centre)

    def add(self, vectors: ArrayLike) -> NDArray[np.int64]:
        """Append ``vectors`` to the database and return their ids.

        Not to be called from two threads at once on one index (one of the two
        additions may be lost); searches may run meanwhile.
        """
        old = self._stored
        if old is None:
            self.fit(vectors)
            return np.arange(self.n, dtype=np.int64)
        extra = self._store(as_matrix(vectors, "vectors", old.base.shape[1]), old)
        base_sq = None
        if old.base_sq is not None:
            base_sq = np.concatenate([old.base_sq, extra.base_sq])
        self._stored = _Stored(np.concatenate([old.base, extra.base]), base_sq,
                               max(old.amax, extra.amax), old.centre)
        return np.arange(old.base.shape[0], self._stored.base.shape[0],
                         dtype=np.int64)

    def search(self, queries: ArrayLike, k: int) -> SearchResult:
        """Return the ``k`` nearest database vectors of each query.

        Parameters
        ----------
        queries : array of shape (n_queries, dim)
            A 1-d array is one query.
        k : int
            Neighbours per query. When ``k`` exceeds the database size the extra
            slots hold id -1 and distance +inf.

        Returns
        -------
        SearchResult
            ``ids`` (n_queries, k) int64 and ``distances`` (n_queries, k) float32.
        """
        stored = self._stored  # one snapshot: fit or add may run meanwhile
        if stored is None:
            raise ValueError("this FlatIndex is empty: call fit(database) first")
        k = check_k(k)
        queries = as_matrix(queries, "queries", stored.base.shape[1],
                            allow_empty=True)
        if queries.shape[0] == 0:
            return empty_result(0, k)
        with limit_threads(self.n_threads):
            return self._search(stored, queries, k)

    def _scale(self, stored: _Stored, queries: NDArray[np.float32]) -> float:
        """Power of two bringing the largest magnitude into the float32-safe band
        (beyond it products and squared norms overflow or underflow), else 1."""
        if self.metric == "cosine":
            return 1.0
        return range_scale(max(stored.amax, max_abs(queries)))

    def _search(self, stored: _Stored, queries: NDArray[np.float32],
                k: int) -> SearchResult:
        n = stored.base.shape[0]
        keep = min(k + _REFINE_MARGIN, n)
        scored = queries if self.metric != "cosine" else normalize_rows(queries)
        ranked = scored
        if stored.centre is not None:
            with np.errstate(over="ignore"):
                ranked = scored - stored.centre
            if not np.isfinite(max_abs(ranked)):
                raise ValueError(f"queries minus the database's mean overflow "
                                 f"float32 (largest magnitude {max_abs(scored):.3g})")
        scale = self._scale(stored, ranked)
        ranked = apply_scale(ranked, scale)
        if stored.base_sq is not None:
            bias = np.einsum("ij,ij->i", ranked, ranked).astype(np.float32)
        else:
            bias = np.full(queries.shape[0], self.metric == "cosine", dtype=np.float32)
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        dists = np.empty((queries.shape[0], k), dtype=np.float64)

        rows = min(QUERY_BLOCK, queries.shape[0])
        # few queries: wider blocks, fewer calls (one matrix-vector product for one)
        columns = min(n, max(BASE_BLOCK, _SMALL_BATCH_VALUES // rows))
        base_sq = _scaled_norms(stored, scale)
        with _scratch(rows * columns) as buffer:
            for q0 in range(0, queries.shape[0], QUERY_BLOCK):
                q1 = min(q0 + QUERY_BLOCK, queries.shape[0])
                heap_d = np.full((q1 - q0, keep), np.inf, dtype=np.float32)
                heap_i = np.full((q1 - q0, keep), NO_ID, dtype=np.int64)
                for b0 in range(0, n, columns):
                    width = min(columns, n - b0)
                    scores = buffer[:(q1 - q0) * width].reshape(q1 - q0, width)
                    _block_products(stored, ranked[q0:q1], b0, scale, scores)
                    select_block(scores, b0, bias[q0:q1],
                                 _NO_NORMS if base_sq is None else base_sq,
                                 base_sq is not None, heap_d, heap_i)
                finish_heaps(heap_d, heap_i)
                rescore(scored[q0:q1], stored.base, heap_i, METRIC_CODES[self.metric],
                        k, ids[q0:q1], dists[q0:q1])
        np.clip(dists, -_F32_MAX, _F32_MAX, out=dists, where=ids >= 0)
        return SearchResult(ids, dists.astype(np.float32))


def _block_products(stored: _Stored, queries: NDArray[np.float32], b0: int,
                    scale: float, out: NDArray[np.float32]) -> None:
    """Write <q, x> for database rows [b0, b0 + out.shape[1]) into ``out``.

    ``queries`` are already multiplied by ``scale``; the block is scaled here.
    """
    block = stored.base[b0:b0 + out.shape[1]]
    if stored.centre is not None:
        block = block - stored.centre
    np.dot(queries, apply_scale(block, scale).T, out=out)


def _scaled_norms(stored: _Stored, scale: float) -> NDArray[np.float32] | None:
    """|scale (x - centre)|^2 of every row under L2 (None otherwise): the stored
    norms, or when ``scale`` is not 1 the norms of the scaled rows, computed once
    per search, a block of rows at a time."""
    if stored.base_sq is None or scale == 1.0:
        return stored.base_sq
    out = np.empty(stored.base.shape[0], dtype=np.float32)
    for s in range(0, stored.base.shape[0], _CHUNK_ROWS):
        block = stored.base[s:s + _CHUNK_ROWS]
        if stored.centre is not None:
            block = block - stored.centre
        block = apply_scale(block, scale)
        out[s:s + block.shape[0]] = np.einsum("ij,ij->i", block, block)
    return out


def exact_search(
    database: ArrayLike,
    queries: ArrayLike,
    k: int,
    metric: str = "cosine",
    n_threads: int | None = None,
) -> SearchResult:
    """Exact k-NN of ``queries`` in ``database``; see :class:`FlatIndex`."""
    return FlatIndex(metric, n_threads).fit(database).search(queries, k)


def exact_knn_graph(
    database: ArrayLike, k: int, metric: str = "cosine", n_threads: int | None = None
) -> SearchResult:
    """The ``k`` nearest *other* rows of every database row.

    A row never lists itself (excluded by index, not by distance), so an exact
    duplicate of it still appears, at distance 0. Rows with fewer than ``k`` others
    are padded with -1 / +inf.
    """
    k = check_k(k)
    index = FlatIndex(metric, n_threads).fit(database)
    base = as_matrix(database, "database")
    found = index.search(base, min(k + 1, index.n))
    ids = np.full((index.n, k), -1, dtype=np.int64)
    dists = np.full((index.n, k), np.inf, dtype=np.float32)
    for row in range(index.n):
        keep = found.ids[row] != row
        kept_ids = found.ids[row][keep][:k]
        ids[row, : kept_ids.size] = kept_ids
        dists[row, : kept_ids.size] = found.distances[row][keep][:k]
    return SearchResult(ids, dists)
