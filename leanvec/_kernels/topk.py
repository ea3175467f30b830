"""Top-k selection over blocks of scores and exact re-scoring of candidates."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import COSINE, EUCLIDEAN, FASTMATH, INNER_PRODUCT, SQEUCLIDEAN

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


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def merge_scores(scores, query_sq, base_sq, offset, metric, heap_d, heap_i):
    """Merge a block of inner products into per-query top-k heaps.

    For row q and column j of ``scores`` (= <q, x_j>), the distance is
    ||q||^2 + ||x_j||^2 - 2 <q, x_j> for L2 metrics, -<q, x_j> for inner product and
    1 - <q, x_j> for cosine (rows already unit length). Database ids are
    ``offset + j``. The worst kept distance is held in a local so the scan is a
    compare per score; the heap is touched only when a score may enter it.
    """
    n_queries, n_block = scores.shape
    l2 = metric == SQEUCLIDEAN or metric == EUCLIDEAN
    for q in prange(n_queries):
        hd = heap_d[q]
        hi = heap_i[q]
        row = scores[q]
        worst = hd[0]
        if l2:
            qsq = query_sq[q]
            for j in range(n_block):
                d = qsq + base_sq[j] - 2.0 * row[j]
                if d <= worst:
                    heap_push(hd, hi, max(d, np.float32(0.0)), offset + j)
                    worst = hd[0]
        else:
            # scores only: skip 64-wide chunks whose best score cannot enter the heap
            shift = np.float32(1.0) if metric == COSINE else np.float32(0.0)
            for c0 in range(0, n_block, 64):
                c1 = min(c0 + 64, n_block)
                best = row[c0]
                for j in range(c0 + 1, c1):
                    best = max(best, row[j])
                if shift - best > worst:
                    continue
                for j in range(c0, c1):
                    d = shift - row[j]
                    if d <= worst:
                        heap_push(hd, hi, d, offset + j)
                        worst = hd[0]


@njit(cache=True, nogil=True)
def exact_distance(q, x, metric):
    """Distance between two float32 vectors, accumulated in float64.

    cosine: 1 - <q, x> / sqrt(||q||^2 ||x||^2), and 1 when either vector is zero.
    """
    dot = 0.0
    qq = 0.0
    xx = 0.0
    diff = 0.0
    for t in range(q.shape[0]):
        a = np.float64(q[t])
        b = np.float64(x[t])
        dot += a * b
        qq += a * a
        xx += b * b
        diff += (a - b) * (a - b)
    if metric == SQEUCLIDEAN:
        return diff
    if metric == EUCLIDEAN:
        return np.sqrt(diff)
    if metric == INNER_PRODUCT:
        return -dot
    denom = np.sqrt(qq * xx)
    if denom == 0.0:
        return 1.0
    d = 1.0 - dot / denom
    if d < 0.0:
        return 0.0
    return d


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
