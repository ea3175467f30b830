"""Product-quantization kernels: asymmetric distance tables scanned over uint8 codes.

A database vector is ``M`` bytes, one centroid id per subspace. For a query, the
Python layer builds ``tables`` of shape (M, 256): ``tables[m, c]`` is the distance
contribution of centroid ``c`` of subspace ``m`` (``||y_m - C_m[c]||^2`` for L2,
``-<y_m, C_m[c]>`` for inner product) and a per-query ``offset``. The distance to
code row ``i`` is then

    offset + sum_m tables[m, codes[i, m]]

summed in float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .topk import heap_push


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pq_distance(table, offset, code):
    """Distance of one code row (M,) uint8 under one query's (M, 256) float32 table."""
    acc = np.float32(offset)
    for m in range(code.shape[0]):
        acc += table[m, code[m]]
    return acc


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def pq_scan(tables, offsets, codes, heap_d, heap_i):
    """Scan every code row for every query and keep per-query top-k heaps.

    Rows are summed four at a time in independent accumulators, so the table
    look-ups of different rows overlap instead of waiting on one running sum.

    Parameters
    ----------
    tables : array of shape (n_queries, M, 256), float32
    offsets : array of shape (n_queries,), float32
    codes : array of shape (n, M), uint8
    heap_d : array of shape (n_queries, k), float32, filled with +inf
    heap_i : array of shape (n_queries, k), int64, filled with ``NO_ID``
        Updated in place; sort with ``finish_heaps`` afterwards.
    """
    n, n_sub = codes.shape
    n4 = n - n % 4
    for q in prange(tables.shape[0]):
        table = tables[q]
        hd = heap_d[q]
        hi = heap_i[q]
        off = offsets[q]
        for i in range(0, n4, 4):
            a0 = off
            a1 = off
            a2 = off
            a3 = off
            for m in range(n_sub):
                row = table[m]
                a0 += row[codes[i, m]]
                a1 += row[codes[i + 1, m]]
                a2 += row[codes[i + 2, m]]
                a3 += row[codes[i + 3, m]]
            if a0 < hd[0]:
                heap_push(hd, hi, a0, i)
            if a1 < hd[0]:
                heap_push(hd, hi, a1, i + 1)
            if a2 < hd[0]:
                heap_push(hd, hi, a2, i + 2)
            if a3 < hd[0]:
                heap_push(hd, hi, a3, i + 3)
        for i in range(n4, n):
            d = pq_distance(table, off, codes[i])
            if d < hd[0]:
                heap_push(hd, hi, d, i)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def pq_candidate_distances(tables, offsets, codes, cand_ids, out):
    """Table distances from each query to its candidate ids; -1 ids give +inf.

    ``cand_ids`` (n_queries, n_cand) int64; ``out`` (n_queries, n_cand) float32.
    """
    for q in prange(tables.shape[0]):
        for c in range(cand_ids.shape[1]):
            i = cand_ids[q, c]
            if i < 0:
                out[q, c] = np.inf
            else:
                out[q, c] = pq_distance(tables[q], offsets[q], codes[i])


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def assign_nearest(x, centroids, centroid_sq, labels, errors):
    """Nearest centroid of each row by squared L2 (k-means assignment step).

    Parameters
    ----------
    x : array of shape (n, d), float32
    centroids : array of shape (k, d), float32
    centroid_sq : array of shape (k,), float32
        ``||c||^2`` per centroid.
    labels : array of shape (n,), int64, written in place
    errors : array of shape (n,), float32, written in place
        Squared distance to the chosen centroid.
    """
    n, d = x.shape
    for i in prange(n):
        xx = np.float32(0.0)
        for t in range(d):
            xx += x[i, t] * x[i, t]
        best = np.inf
        arg = 0
        for c in range(centroids.shape[0]):
            dot = np.float32(0.0)
            for t in range(d):
                dot += x[i, t] * centroids[c, t]
            dist = centroid_sq[c] - 2.0 * dot
            if dist < best:
                best = dist
                arg = c
        labels[i] = arg
        err = xx + best
        errors[i] = err if err > 0.0 else 0.0


@njit(cache=True, nogil=True)
def cluster_sums(x, labels, sums, counts):
    """Add each row of ``x`` (n, d) float32 to ``sums[labels[i]]`` (k, d) float64.

    ``counts`` (k,) int64 gets the cluster sizes; both outputs start at zero.
    """
    for i in range(x.shape[0]):
        c = labels[i]
        counts[c] += 1
        for t in range(x.shape[1]):
            sums[c, t] += x[i, t]
