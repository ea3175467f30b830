"""Residual-quantization kernels: one beam-search step over a new codebook.

A vector ``x`` is coded as a sum of codewords, one from each of ``M`` codebooks of
256 full-width centroids. Encoding keeps, per row, a beam of the ``B`` best partial
sums found so far. One step extends each of the ``b`` current candidates by every
centroid ``c`` of the next codebook ``m`` and keeps the ``B`` extensions of
smallest squared residual

    ||r - c||^2 = ||r||^2 - 2 <r, c> + ||c||^2,
    <r, c> = <x, c> - sum_{l < m} <C_l[code_l], c>.

``<x, c>`` comes from BLAS and the codebooks' cross products ``<C_l[a], C_m[c]>``
from a (m, 256, 256) table, so a candidate costs ``m`` table rows instead of a
product over every coordinate.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _rank(i, xdots, cross, centroid_sq, sq, codes, best, from_j, from_c, dot):
    """The ``len(best)`` smallest extensions of row ``i``'s beam, ascending."""
    width = best.shape[0]
    k = xdots.shape[1]
    best[:] = np.inf
    for j in range(sq.shape[1]):
        for c in range(k):
            dot[c] = xdots[i, c]
        for u in range(codes.shape[2]):
            row = cross[u, codes[i, j, u]]
            for c in range(k):
                dot[c] -= row[c]
        base = sq[i, j]
        for c in range(k):
            v = base - np.float32(2.0) * dot[c] + centroid_sq[c]
            if v < best[width - 1]:
                t = width - 1
                while t > 0 and best[t - 1] > v:
                    best[t] = best[t - 1]
                    from_j[t] = from_j[t - 1]
                    from_c[t] = from_c[t - 1]
                    t -= 1
                best[t] = v
                from_j[t] = j
                from_c[t] = c


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def beam_step(xdots, cross, centroid_sq, sq, codes, out_sq, out_codes):
    """Extend every row's beam by one codebook and keep the best ``B``.

    Parameters
    ----------
    xdots : array of shape (n, K), float32
        ``<x_i, C_m[c]>``.
    cross : array of shape (m, K, K), float32
        ``<C_l[a], C_m[c]>`` for the earlier codebooks ``l``.
    centroid_sq : array of shape (K,), float32
        ``||C_m[c]||^2``.
    sq : array of shape (n, b), float32
        Squared residual of each current candidate.
    codes : array of shape (n, b, m), int16
        Codes of each current candidate (``m`` may be 0).
    out_sq : array of shape (n, B), float32, written
        Squared residuals of the new candidates, best first (``B <= b K``).
    out_codes : array of shape (n, B, m + 1), int16, written
    """
    n = xdots.shape[0]
    width = out_sq.shape[1]
    m = codes.shape[2]
    for i in prange(n):
        best = np.empty(width, dtype=np.float32)
        from_j = np.zeros(width, dtype=np.int64)
        from_c = np.zeros(width, dtype=np.int64)
        dot = np.empty(xdots.shape[1], dtype=np.float32)
        _rank(i, xdots, cross, centroid_sq, sq, codes, best, from_j, from_c, dot)
        for t in range(width):
            out_sq[i, t] = max(best[t], np.float32(0.0))
            for u in range(m):
                out_codes[i, t, u] = codes[i, from_j[t], u]
            out_codes[i, t, m] = from_c[t]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def beam_step_residuals(xdots, cross, centroid_sq, book, sq, codes, res,
                        out_sq, out_codes, out_res):
    """:func:`beam_step` that also carries the residuals (for training).

    ``res`` (n, b, d) holds the current residuals and ``out_res`` (n, B, d) gets
    the new ones; ``out_sq`` is then recomputed exactly from them.
    """
    n = xdots.shape[0]
    width = out_sq.shape[1]
    m = codes.shape[2]
    d = book.shape[1]
    for i in prange(n):
        best = np.empty(width, dtype=np.float32)
        from_j = np.zeros(width, dtype=np.int64)
        from_c = np.zeros(width, dtype=np.int64)
        dot = np.empty(xdots.shape[1], dtype=np.float32)
        _rank(i, xdots, cross, centroid_sq, sq, codes, best, from_j, from_c, dot)
        for t in range(width):
            j = from_j[t]
            c = from_c[t]
            acc = np.float32(0.0)
            for u in range(d):
                r = res[i, j, u] - book[c, u]
                out_res[i, t, u] = r
                acc += r * r
            out_sq[i, t] = acc
            for u in range(m):
                out_codes[i, t, u] = codes[i, j, u]
            out_codes[i, t, m] = c

