"""Top-k selection over blocks of scores and exact re-scoring of candidates."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import EUCLIDEAN, FASTMATH, INNER_PRODUCT, SQEUCLIDEAN

NO_ID = np.iinfo(np.int64).max  # heap sentinel; turned into -1 on the way out


@njit(cache=True, nogil=True, inline="always")
def _worse(d1, i1, d2, i2):
    """True when (d1, i1) ranks after (d2, i2): larger distance, ties by larger id."""
    return d1 > d2 or (d1 == d2 and i1 > i2)


@njit(cache=True, nogil=True)
def heap_push(heap_d, heap_i, d, i):
    """Offer (d, i) to a max-heap of fixed size whose root is the worst kept pair."""
    if not _worse(heap_d[0], heap_i[0], d, i):
        return
    k = heap_d.shape[0]
    pos = 0
    while True:
        left = 2 * pos + 1
        if left >= k:
            break
        child = left
        right = left + 1
        if right < k and _worse(heap_d[right], heap_i[right], heap_d[left], heap_i[left]):
            child = right
        if not _worse(heap_d[child], heap_i[child], d, i):
            break
        heap_d[pos] = heap_d[child]
        heap_i[pos] = heap_i[child]
        pos = child
    heap_d[pos] = d
    heap_i[pos] = i


@njit(cache=True, nogil=True)
def heap_sort_inplace(heap_d, heap_i):
    """Sort a heap's pairs ascending by (distance, id); insertion sort, k is small."""
    k = heap_d.shape[0]
    for a in range(1, k):
        d = heap_d[a]
        i = heap_i[a]
        b = a - 1
        while b >= 0 and _worse(heap_d[b], heap_i[b], d, i):
            heap_d[b + 1] = heap_d[b]
            heap_i[b + 1] = heap_i[b]
            b -= 1
        heap_d[b + 1] = d
        heap_i[b + 1] = i


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def exact_distance(q, x, metric):
    """Distance between two float32 vectors, accumulated in float64.

    cosine: 1 - <q, x> / sqrt(||q||^2 ||x||^2), and 1 when either vector is zero.
    Only the sums a metric needs are formed, in one pass that vectorizes; equal
    vectors give equal sums, so a duplicate is at distance exactly 0.
    """
    n = q.shape[0]
    if metric == SQEUCLIDEAN or metric == EUCLIDEAN:
        diff = 0.0
        for t in range(n):
            delta = np.float64(q[t]) - np.float64(x[t])
            diff += delta * delta
        return diff if metric == SQEUCLIDEAN else np.sqrt(diff)
    dot = 0.0
    if metric == INNER_PRODUCT:
        for t in range(n):
            dot += np.float64(q[t]) * np.float64(x[t])
        return -dot
    qq = 0.0
    xx = 0.0
    for t in range(n):
        a = np.float64(q[t])
        b = np.float64(x[t])
        dot += a * b
        qq += a * a
        xx += b * b
    denom = np.sqrt(qq * xx)
    if denom == 0.0:
        return 1.0
    return max(1.0 - dot / denom, 0.0)


@njit(parallel=True, cache=True, nogil=True)
def rescore(queries, base, cand_ids, metric, k, out_ids, out_d):
    """Re-score candidate ids exactly in float64 and keep the best ``k`` per query.

    ``cand_ids`` rows may hold -1 for missing candidates; those stay last.
    """
    n_queries, n_cand = cand_ids.shape
    for q in prange(n_queries):
        hd = np.full(k, np.inf)
        hi = np.full(k, NO_ID, dtype=np.int64)
        for c in range(n_cand):
            i = cand_ids[q, c]
            if i < 0:
                continue
            heap_push(hd, hi, exact_distance(queries[q], base[i], metric), i)
        heap_sort_inplace(hd, hi)
        for c in range(k):
            if hi[c] == NO_ID:
                out_ids[q, c] = -1
                out_d[q, c] = np.inf
            else:
                out_ids[q, c] = hi[c]
                out_d[q, c] = hd[c]


@njit(parallel=True, cache=True, nogil=True)
def finish_heaps(heap_d, heap_i):
    """Sort every heap row and turn sentinel ids into -1 (distance +inf)."""
    for q in prange(heap_d.shape[0]):
        heap_sort_inplace(heap_d[q], heap_i[q])
        for c in range(heap_d.shape[1]):
            if heap_i[q, c] == NO_ID:
                heap_i[q, c] = -1
                heap_d[q, c] = np.inf


SEGMENT = 64  # columns tested together in select_block before any is looked at alone


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _entrants_ip(scores, bias, limit):
    """How many of ``scores`` give bias - score <= limit. One branch-free count
    over a slice: the loop vectorizes."""
    hits = 0
    for j in range(scores.shape[0]):
        if bias - scores[j] <= limit:
            hits += 1
    return hits


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _entrants_l2(scores, base_sq, bias, limit):
    """As :func:`_entrants_ip` for the L2 score 2 <q, x> - |x|^2."""
    hits = 0
    for j in range(scores.shape[0]):
        if bias - (np.float32(2.0) * scores[j] - base_sq[j]) <= limit:
            hits += 1
    return hits


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def select_block(scores, offset, query_bias, base_sq, l2, heap_d, heap_i):
    """Merge a block of inner products into per-query top-k heaps.

    Parameters
    ----------
    scores : float32 (n_queries, width)
        <q, x_j> for database rows ``offset + j``.
    query_bias : float32 (n_queries,)
        Distance = bias - <q, x> (inner product: 0, cosine on unit rows: 1), or
        under L2 (``l2``) bias - (2 <q, x> - |x|^2) with bias |q|^2, clamped at 0.
    base_sq : float32 (>= offset + width,)
        |x|^2 per database row; read only when ``l2``.
    heap_d, heap_i : float32 / int64 (n_queries, keep)
        Max-heaps of the best (distance, id) pairs so far, updated in place.

    Each query's row is read in segments of SEGMENT columns; a segment in which no
    column can enter the heap (a vectorized count) is skipped whole.
    """
    n_queries, width = scores.shape
    for q in prange(n_queries):
        row = scores[q]
        hd = heap_d[q]
        hi = heap_i[q]
        bias = query_bias[q]
        for c0 in range(0, width, SEGMENT):
            c1 = min(c0 + SEGMENT, width)
            if l2:
                hits = _entrants_l2(row[c0:c1], base_sq[offset + c0:offset + c1], bias,
                                    hd[0])
            else:
                hits = _entrants_ip(row[c0:c1], bias, hd[0])
            if hits == 0:
                continue
            for j in range(c0, c1):
                if l2:
                    d = bias - (np.float32(2.0) * row[j] - base_sq[offset + j])
                    if d < 0.0:
                        d = np.float32(0.0)
                else:
                    d = bias - row[j]
                if d <= hd[0]:
                    heap_push(hd, hi, d, offset + j)


@njit(parallel=True, cache=True, nogil=True)
def largest_ids(scores, k):
    """Column ids of the ``k`` largest scores of each row, unordered (ties: the
    earlier column), shape (n_rows, k) int64; a size-k min-heap per row."""
    n_rows, n_cols = scores.shape
    out = np.empty((n_rows, k), dtype=np.int64)
    for r in prange(n_rows):
        heap_v = np.empty(k, dtype=scores.dtype)
        heap_i = out[r]
        for j in range(k):  # heapify the first k
            v = scores[r, j]
            pos = j
            while pos > 0:
                parent = (pos - 1) >> 1
                if heap_v[parent] <= v:
                    break
                heap_v[pos] = heap_v[parent]
                heap_i[pos] = heap_i[parent]
                pos = parent
            heap_v[pos] = v
            heap_i[pos] = j
        for j in range(k, n_cols):
            v = scores[r, j]
            if not v > heap_v[0]:
                continue
            pos = 0
            while True:
                child = 2 * pos + 1
                if child >= k:
                    break
                if child + 1 < k and heap_v[child + 1] < heap_v[child]:
                    child += 1
                if heap_v[child] >= v:
                    break
                heap_v[pos] = heap_v[child]
                heap_i[pos] = heap_i[child]
                pos = child
            heap_v[pos] = v
            heap_i[pos] = j
    return out
