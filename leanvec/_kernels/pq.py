"""Product-quantization kernels: asymmetric distance tables scanned over uint8 codes.

A database vector is ``M`` bytes, one centroid id per subspace. For a query, the
Python layer builds ``tables`` of shape (M, 256): ``tables[m, c]`` is the distance
contribution of centroid ``c`` of subspace ``m`` (``||y_m - C_m[c]||^2`` for L2,
``-<y_m, C_m[c]>`` for inner product) and a per-query ``offset``. The distance to
code row ``i`` is then

    offset + sum_m tables[m, codes[i, m]]

summed in float32.

:func:`pq_scan` walks the codes once per query. :func:`pq_scan_blocked` serves a
batch: its tables come in blocks of ``LANES`` queries, (M, 256, LANES) per block, so
the entries of one centroid for the block's queries lie side by side and one code
byte adds them as one vector. Each pass over the codes then serves ``LANES``
queries, and one subspace's slice of a block's tables (256 x ``LANES`` float32, 32
KiB) stays in L1 while a tile of ``ROWS`` code rows is summed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .topk import heap_push

LANES = 32  # queries per block of pq_scan_blocked (one pass over the codes each)
ROWS = 128  # code rows summed per tile (a (ROWS, LANES) float32 accumulator, 16 KiB)


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
def pq_scan_blocked(blocked_tables, offsets, codes, heap_d, heap_i):
    """:func:`pq_scan` for a batch: one pass over the codes per block of queries.

    Parameters
    ----------
    blocked_tables : array of shape (n_blocks, M, 256, lanes), float32
        The tables of queries ``b * lanes + j`` in ``blocked_tables[b, :, :, j]``
        (see :meth:`leanvec.PQ.distance_tables`); lanes past the last query are ignored.
    offsets : array of shape (n_queries,), float32
    codes : array of shape (n, M), uint8
    heap_d : array of shape (n_queries, k), float32, filled with +inf
    heap_i : array of shape (n_queries, k), int64, filled with ``NO_ID``
        Updated in place; sort with ``finish_heaps`` afterwards.

    Notes
    -----
    Each distance is ``offset`` plus the table terms added in subspace order, in
    float32, as in :func:`pq_scan`, so both kernels return the same distances.
    A row is offered to a query's heap only when it beats the heap's root.
    """
    n_queries = offsets.shape[0]
    lanes = blocked_tables.shape[3]
    for b in prange(blocked_tables.shape[0]):
        q0 = b * lanes
        width = min(lanes, n_queries - q0)
        start = np.zeros(lanes, dtype=np.float32)
        bound = np.full(lanes, -np.inf, dtype=np.float32)  # padding never passes
        for j in range(width):
            start[j] = offsets[q0 + j]
            bound[j] = heap_d[q0 + j, 0]
        acc = np.empty((ROWS, lanes), dtype=np.float32)
        for r0 in range(0, codes.shape[0], ROWS):
            rows = min(ROWS, codes.shape[0] - r0)
            _sum_tile(blocked_tables[b], codes, r0, rows, start, acc)
            _offer_tile(acc, rows, r0, bound, heap_d[q0:q0 + width],
                        heap_i[q0:q0 + width])


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _sum_tile(lut, codes, r0, rows, start, acc):
    """acc[r, :] = start + sum_m lut[m, codes[r0 + r, m], :] for r < rows."""
    lanes = lut.shape[2]  # a run-time trip count, which LLVM vectorizes
    for r in range(rows):
        ar = acc[r]
        for j in range(lanes):
            ar[j] = start[j]
    for m in range(lut.shape[0]):
        lm = lut[m]
        for r in range(rows):
            ar = acc[r]
            lc = lm[codes[r0 + r, m]]
            for j in range(lanes):
                ar[j] += lc[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _offer_tile(acc, rows, r0, bound, heap_d, heap_i):
    """Push each tile row that beats a lane's heap root; keep ``bound`` current."""
    lanes = acc.shape[1]
    for r in range(rows):
        ar = acc[r]
        hits = 0
        for j in range(lanes):
            if ar[j] < bound[j]:
                hits += 1
        if hits == 0:
            continue
        for j in range(heap_d.shape[0]):
            if ar[j] < bound[j]:
                heap_push(heap_d[j], heap_i[j], ar[j], r0 + r)
                bound[j] = heap_d[j, 0]


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
