"""LVQ distance kernels: a float32 query against per-vector scalar-quantized codes.

Storage (see :mod:`leanvec.lvq`): a vector ``x`` of ``dim`` values is stored
relative to a global ``mean`` as ``xhat_j = mean_j + step * c_j + bias`` with
integer codes ``c_j`` in ``[0, 2**bits - 1]``. 8-bit codes take one byte each;
4-bit codes pack two a byte, coordinate ``2 i`` in the low nibble of byte ``i`` and
``2 i + 1`` in the high nibble (an odd ``dim`` leaves the last high nibble 0).

A second level adds ``delta * r_j - step / 2`` with ``delta = step / (2**rbits - 1)``
and residual codes ``r_j`` packed the same way.

Every per-vector kernel works on the *centred* reconstruction
``xc_j = step * c_j + bias (+ delta * r_j - step / 2)``; the caller adds the mean
terms:

- inner product: ``<q, xhat> = <q, mean> + lvq*_ip(q, ...)``, with ``<q, mean>``
  computed once per query;
- squared L2: ``||q - xhat||^2 = lvq*_l2(q - mean, ...)``, with the query centred
  once per query;
- cosine: normalise the database before encoding and the query once, then use the
  inner product (distance ``1 - <q, xhat>``).

Steps and biases are float16 in storage; pass them as float32 scalars (the Python
layer keeps float32 copies, already multiplied by the quantizer's ``scale``).
All kernels accumulate in float32 and return a float32-precision Python float.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import FASTMATH
from .amx import GROUP, QUERY_TILES, ROW_TILE, rows_tile
from .int8 import dot4, row_dots
from .topk import NO_ID, heap_push, heap_sort_inplace

# Distance kinds understood by the batch kernels.
KIND_IP = 0  # distance = -(offset[q] + <q, xc>)
KIND_L2 = 1  # distance = ||q - xc||^2 (queries already centred)

FILTER_ROWS = 256  # rows whose integer products lvq8_ip_scan forms before filtering
_TILES = 8  # tiles of 16 rows whose products lvq8_scan_tiles forms a call


@njit(cache=True, nogil=True, inline="always")
def _code(codes, j, bits):
    """Code of coordinate ``j`` in a row of 8-bit or packed 4-bit codes."""
    if bits == 8:
        return np.float32(codes[j])
    b = codes[j >> 1]
    if j & 1:
        return np.float32(b >> 4)
    return np.float32(b & 15)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq8_ip(query, codes, step, bias):
    """Inner product of a query with one centred 8-bit LVQ vector.

    Parameters
    ----------
    query : array of shape (dim,), float32
    codes : array of shape (dim,), uint8
    step, bias : float32

    Returns
    -------
    float
        ``step * sum_j q_j c_j + bias * sum_j q_j``; add ``<q, mean>`` for
        ``<q, xhat>``.
    """
    qc = np.float32(0.0)
    qs = np.float32(0.0)
    for j in range(query.shape[0]):
        qc += query[j] * np.float32(codes[j])
        qs += query[j]
    return step * qc + bias * qs


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq4_ip(query, codes, step, bias):
    """Inner product of a query with one centred 4-bit LVQ vector.

    Parameters
    ----------
    query : array of shape (dim,), float32
    codes : array of shape (ceil(dim / 2),), uint8
        Two codes a byte, even coordinates in the low nibble.
    step, bias : float32

    Returns
    -------
    float
        ``step * sum_j q_j c_j + bias * sum_j q_j``.
    """
    dim = query.shape[0]
    half = dim // 2
    qc = np.float32(0.0)
    qs = np.float32(0.0)
    for i in range(half):
        b = codes[i]
        q0 = query[2 * i]
        q1 = query[2 * i + 1]
        qc += q0 * np.float32(b & 15) + q1 * np.float32(b >> 4)
        qs += q0 + q1
    if dim & 1:
        qc += query[dim - 1] * np.float32(codes[half] & 15)
        qs += query[dim - 1]
    return step * qc + bias * qs


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq8_l2(query, codes, step, bias):
    """Squared L2 distance from a centred query to one centred 8-bit LVQ vector.

    Parameters
    ----------
    query : array of shape (dim,), float32
        The query minus the quantizer's mean.
    codes : array of shape (dim,), uint8
    step, bias : float32

    Returns
    -------
    float
        ``sum_j (q_j - step c_j - bias)^2``.
    """
    acc = np.float32(0.0)
    for j in range(query.shape[0]):
        d = query[j] - bias - step * np.float32(codes[j])
        acc += d * d
    return acc


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq4_l2(query, codes, step, bias):
    """Squared L2 distance from a centred query to one centred 4-bit LVQ vector.

    Parameters
    ----------
    query : array of shape (dim,), float32
        The query minus the quantizer's mean.
    codes : array of shape (ceil(dim / 2),), uint8
    step, bias : float32

    Returns
    -------
    float
        ``sum_j (q_j - step c_j - bias)^2``.
    """
    dim = query.shape[0]
    half = dim // 2
    acc = np.float32(0.0)
    for i in range(half):
        b = codes[i]
        d0 = query[2 * i] - bias - step * np.float32(b & 15)
        d1 = query[2 * i + 1] - bias - step * np.float32(b >> 4)
        acc += d0 * d0 + d1 * d1
    if dim & 1:
        d = query[dim - 1] - bias - step * np.float32(codes[half] & 15)
        acc += d * d
    return acc


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq_residual_ip(query, codes, residual, step, bias, bits, residual_bits):
    """Inner product of a query with one centred two-level LVQ vector.

    Parameters
    ----------
    query : array of shape (dim,), float32
    codes : array of shape (ceil(bits * dim / 8),), uint8
    residual : array of shape (ceil(residual_bits * dim / 8),), uint8
    step, bias : float32
    bits, residual_bits : int
        4 or 8 each.

    Returns
    -------
    float
        ``sum_j q_j (step c_j + bias + delta r_j - step / 2)`` with
        ``delta = step / (2**residual_bits - 1)``.
    """
    delta = step / np.float32((1 << residual_bits) - 1)
    shift = bias - np.float32(0.5) * step
    one = np.float32(1.0)
    zero = np.float32(0.0)
    # Both levels are sums of one-level terms, so the vectorized kernels serve.
    if bits == 8:
        first = lvq8_ip(query, codes, step, shift)
    else:
        first = lvq4_ip(query, codes, step, shift)
    if residual_bits == 8:
        return first + delta * lvq8_ip(query, residual, one, zero)
    return first + delta * lvq4_ip(query, residual, one, zero)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq_residual_l2(query, codes, residual, step, bias, bits, residual_bits):
    """Squared L2 distance from a centred query to one centred two-level LVQ vector.

    Parameters
    ----------
    query : array of shape (dim,), float32
        The query minus the quantizer's mean.
    codes, residual, step, bias, bits, residual_bits
        As in :func:`lvq_residual_ip`.

    Returns
    -------
    float
        ``sum_j (q_j - step c_j - bias - delta r_j + step / 2)^2``.
    """
    delta = step / np.float32((1 << residual_bits) - 1)
    shift = bias - np.float32(0.5) * step
    acc = np.float32(0.0)
    for j in range(query.shape[0]):
        x = step * _code(codes, j, bits) + delta * _code(residual, j, residual_bits)
        d = query[j] - shift - x
        acc += d * d
    return acc


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq_distance(query, offset, codes, residual, step, bias, bits, residual_bits, kind):
    """Distance of one query to one LVQ vector, picking the kernel by its arguments.

    ``kind`` is :data:`KIND_IP` (returns ``-(offset + <q, xc>)``, with ``offset`` the
    query's ``<q, mean>``) or :data:`KIND_L2` (returns ``||q - xc||^2`` for a centred
    query; ``offset`` unused). ``residual_bits`` 0 uses the first level only, and then
    ``residual`` may be any (unused) uint8 row.
    """
    if kind == KIND_L2:
        if residual_bits > 0:
            return lvq_residual_l2(query, codes, residual, step, bias, bits,
                                   residual_bits)
        if bits == 8:
            return lvq8_l2(query, codes, step, bias)
        return lvq4_l2(query, codes, step, bias)
    if residual_bits > 0:
        ip = lvq_residual_ip(query, codes, residual, step, bias, bits, residual_bits)
    elif bits == 8:
        ip = lvq8_ip(query, codes, step, bias)
    else:
        ip = lvq4_ip(query, codes, step, bias)
    return -(offset + ip)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def lvq_scan(queries, offsets, codes, residual, steps, biases, bits, residual_bits,
             kind, heap_d, heap_i):
    """Scan every LVQ vector for every query and keep per-query top-k heaps.

    Parameters
    ----------
    queries : array of shape (n_queries, dim), float32
        Centred for :data:`KIND_L2`, plain for :data:`KIND_IP`.
    offsets : array of shape (n_queries,), float32
        ``<q, mean>`` per query (used by :data:`KIND_IP` only).
    codes : array of shape (n, ceil(bits * dim / 8)), uint8
    residual : array of shape (n, ceil(residual_bits * dim / 8)), uint8
        Any uint8 array with ``n`` rows when ``residual_bits`` is 0.
    steps, biases : array of shape (n,), float32
    bits, residual_bits, kind : int
    heap_d : array of shape (n_queries, k), float32, filled with +inf
    heap_i : array of shape (n_queries, k), int64, filled with ``NO_ID``
        Updated in place; sort with ``finish_heaps`` afterwards.
    """
    n = codes.shape[0]
    for q in prange(queries.shape[0]):
        query = queries[q]
        hd = heap_d[q]
        hi = heap_i[q]
        for i in range(n):
            d = lvq_distance(query, offsets[q], codes[i], residual[i], steps[i],
                             biases[i], bits, residual_bits, kind)
            if d < hd[0]:
                heap_push(hd, hi, d, i)


@njit(cache=True, nogil=True)
def _dot_i16_u8(qi, codes):
    """Exact integer ``sum_j qi_j codes_j`` of int16 and uint8 rows, in int32.

    Casting every partial sum back to int32 lets LLVM keep 32-bit lanes and use
    ``vpmaddwd``; the caller bounds ``qi`` so that the sum cannot overflow.
    """
    acc = np.int32(0)
    for j in range(qi.shape[0]):
        acc = np.int32(acc + np.int32(qi[j]) * np.int32(codes[j]))
    return acc


@njit(cache=True, nogil=True)
def _quantize_query(query, qi):
    """Round ``query`` to int16 ``qi`` with scale ``s``; return (s, error, l1).

    ``error`` is ``sum_j |query_j - s qi_j|`` and ``l1`` is ``sum_j |query_j|``,
    both in float64. ``|qi_j| <= (2**31 - 1) // (255 dim)`` (and 32767), so an
    int32 sum of ``qi_j c_j`` over 8-bit codes cannot overflow.
    """
    dim = query.shape[0]
    # 32639: the high byte of 256 h + l (l in [-128, 127]) stays within int8
    top = min(32639, (2**31 - 1) // (255 * max(dim, 1)))
    amax = 0.0
    for j in range(dim):
        amax = max(amax, abs(np.float64(query[j])))
    scale = amax / top if amax > 0.0 else 1.0
    error = 0.0
    l1 = 0.0
    for j in range(dim):
        v = np.float64(query[j])
        r = min(max(np.rint(v / scale), -top), top)
        qi[j] = np.int16(r)
        error += abs(v - scale * r)
        l1 += abs(v)
    return scale, error, l1


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _dots_split(hi8, lo8, codes, r0, rows, dots):
    """``dots[r] = <256 hi8 + lo8, codes[r0 + r]>`` for ``rows`` rows, exactly, from
    two 8-bit dot products (:func:`leanvec._kernels.int8.dot4`) four rows at a
    time. Both bytes in one pass, not :func:`leanvec._kernels.int8.row_dots`
    twice: a second pass re-reads the rows and cost 25 % of one-query scans."""
    width = codes.shape[1]
    for r in range(0, rows, 4):
        i0 = r0 + r
        i1 = r0 + min(r + 1, rows - 1)
        i2 = r0 + min(r + 2, rows - 1)
        i3 = r0 + min(r + 3, rows - 1)
        h0, h1, h2, h3 = dot4(codes, i0, i1, i2, i3, hi8, width)
        l0, l1, l2, l3 = dot4(codes, i0, i1, i2, i3, lo8, width)
        dots[r] = np.int32(np.int64(h0) * 256 + l0)
        if r + 1 < rows:
            dots[r + 1] = np.int32(np.int64(h1) * 256 + l1)
        if r + 2 < rows:
            dots[r + 2] = np.int32(np.int64(h2) * 256 + l2)
        if r + 3 < rows:
            dots[r + 3] = np.int32(np.int64(h3) * 256 + l3)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def lvq8_ip_scan(queries, offsets, codes, steps, biases, heap_d, heap_i,
                 split=False):
    """:func:`lvq_scan` for one-level 8-bit codes and :data:`KIND_IP`, filtered.

    Each query is rounded to int16 once; a row's inner product with it is an exact
    int32 sum, whose distance differs from :func:`lvq8_ip`'s float32 result by at
    most ``margin`` (the query's rounding error times 255 times the row's step,
    plus float32 rounding allowances). Only rows whose lower bound
    ``approx - margin`` beats the heap's root are scored by :func:`lvq8_ip` and
    offered; a skipped row could not have entered the heap, so the heaps end as
    :func:`lvq_scan` leaves them (distances equal up to float32 rounding).

    Parameters
    ----------
    queries : array of shape (n_queries, dim), float32
    offsets : array of shape (n_queries,), float32
        ``<q, mean>`` per query.
    codes : array of shape (n, dim), uint8
    steps, biases : array of shape (n,), float32
    heap_d : array of shape (n_queries, k), float32, filled with +inf
    heap_i : array of shape (n_queries, k), int64, filled with ``NO_ID``
        Updated in place; sort with ``finish_heaps`` afterwards.
    split : bool
        Form the int32 products from the int16 query's two bytes with 8-bit dot
        products (AVX-512 VNNI; see :mod:`leanvec._kernels.int8`) instead of
        16-bit multiplies. Same integers either way.
    """
    n, dim = codes.shape
    # float32 sums of dim terms: each within dim * 2**-23 of its absolute sum
    tol = 2.0 * (dim + 8) * 2.0**-23
    for q in prange(queries.shape[0]):
        query = queries[q]
        qi = np.empty(dim, dtype=np.int16)
        scale, error, l1 = _quantize_query(query, qi)
        hi8 = np.empty(dim, dtype=np.int8)
        lo8 = np.empty(dim, dtype=np.int8)
        if split:
            for j in range(dim):  # qi = 256 hi8 + lo8, lo8 in [-128, 127]
                low = ((np.int32(qi[j]) + 128) & 255) - 128
                lo8[j] = np.int8(low)
                hi8[j] = np.int8((np.int32(qi[j]) - low) >> 8)
        qsum = np.float32(0.0)
        for j in range(dim):
            qsum += query[j]
        off = np.float64(offsets[q])
        # lower bound of row i: base - steps[i] * (scale dot_i + slack) - biases[i]
        # * qsum - tol l1 |biases[i]|, every term rounded in float32 within tol
        base = np.float32(-off - tol * abs(off))
        slack = np.float32(255.0 * (error + tol * l1))
        spread = np.float32(tol * l1)
        sc = np.float32(scale)
        dots = np.empty(FILTER_ROWS, dtype=np.int32)
        lower = np.empty(FILTER_ROWS, dtype=np.float32)
        hd = heap_d[q]
        hi = heap_i[q]
        for r0 in range(0, n, FILTER_ROWS):
            rows = min(FILTER_ROWS, n - r0)
            if split:
                _dots_split(hi8, lo8, codes, r0, rows, dots)
            else:
                for r in range(rows):
                    dots[r] = _dot_i16_u8(qi, codes[r0 + r])
            for r in range(rows):
                i = r0 + r
                lower[r] = (base - steps[i] * (sc * np.float32(dots[r]) + slack)
                            - biases[i] * qsum - spread * abs(biases[i]))
            for r in range(rows):
                if lower[r] < hd[0]:
                    i = r0 + r
                    d = -(offsets[q] + lvq8_ip(query, codes[i], steps[i], biases[i]))
                    if d < hd[0]:
                        heap_push(hd, hi, d, i)


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _tile_hits(dots, base, sc, es, er, tl, qs, roots, c, u, v, w, y, z, lows):
    """Lower bounds (see :func:`lvq8_scan_tiles`) of one row's distance to
    each query into ``lows``; returns how many beat their heap roots. One
    branch-free pass over contiguous arrays, so that the loop vectorizes."""
    hits = np.float32(0.0)  # a float count vectorizes eight lanes wide
    for qq in range(dots.shape[0]):
        low = (base[qq] + c - u * (sc[qq] * np.float32(dots[qq])) - v * es[qq]
               - w * er[qq] - y * tl[qq] - z * qs[qq])
        lows[qq] = low
        hits += np.float32(1.0) if low < roots[qq] else np.float32(0.0)
    return hits


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def lvq8_scan_tiles(fn, kind, queries, qpacked, qconst, offsets, codes, steps, biases,
                    code_means, code_norms, row_sq, row_norms, r0, r1, heap_d, heap_i):
    """:func:`lvq_scan` for a batch of queries over one-level 8-bit codes on AMX
    tiles, rows [r0, r1), filtered exactly.

    Each query is rounded to int8 (``qpacked``, from
    :func:`leanvec._kernels.amx.pack_queries`, with scale s, rounding error
    e = q - s q~); the tile function at address ``fn`` forms the exact int32
    products of 16 rows with 48 queries at a time. With a row's mean code m and
    |c - m| from :func:`code_stats`, <q, c> = s dot + m sum(e) + <e, c - m>, the
    last term at most |e| |c - m|. So, with tol a float32 rounding allowance for
    sums of dim terms (see :func:`tile_query_constants`), l1 the query's absolute
    sum and qsum its sum:

    - :data:`KIND_IP`: the float32 distance :func:`lvq8_ip` lies above
      -offset - tol |offset| - step (s dot + m sum(e) + |e| |c - m|)
      - (255 step + |bias|) tol l1 - bias qsum;
    - :data:`KIND_L2` (queries centred): :func:`lvq8_l2` lies above
      (|q|^2 + |x|^2)(1 - tol) - 2 step (s dot + m sum(e) + |e| |c - m|)
      - 2 bias qsum - tol |q| (2 |x| + 2 sqrt(dim) b) - tol sqrt(dim) b |x|,
      with |x|^2 and |x| of the centred reconstruction x_j = step c_j + bias and
      b = |bias| + 255 step (``row_sq`` and ``row_norms`` from
      :func:`code_l2_stats` hold the row terms). The b terms cover rounding that
      scales with the bias and the step rather than with x (a row whose bias
      nearly cancels its codes) in :func:`lvq8_l2`'s differences and in the
      bound's own products, whose terms cancel.

    ``qconst`` (6, n_padded) float32 holds per query the constant term, s,
    sum(e), |e| (rounded up), tol l1 (IP) or |q| (L2), and qsum. Only rows whose
    bound beats a query's heap root are scored by the float32 kernel and offered,
    so the heaps end as :func:`lvq_scan` leaves them (distances equal up to
    float32 rounding, ids up to ties). Queries far below the codes' scale
    (largest magnitude under about 2**-40) belong in :func:`lvq_scan`: the bound
    assumes float32 normals. Call it on consecutive row ranges (``r0`` a
    multiple of 16) so that the range's codes stay in cache while every query
    passes over them.
    """
    n, dim = codes.shape
    n_queries = queries.shape[0]
    # rows that may be read in whole 64-byte steps from the array itself
    over = 0 if dim % 64 == 0 else (63 + dim - 1) // dim
    n_groups = qpacked.shape[0] // QUERY_TILES
    for g in prange(n_groups):
        q0 = g * GROUP
        nq = min(GROUP, n_queries - q0)
        if nq <= 0:
            continue
        base = qconst[0, q0:q0 + GROUP]
        sc = qconst[1, q0:q0 + GROUP]
        es = qconst[2, q0:q0 + GROUP]
        er = qconst[3, q0:q0 + GROUP]
        tl = qconst[4, q0:q0 + GROUP]
        qs = qconst[5, q0:q0 + GROUP]
        roots = np.full(GROUP, -np.inf, dtype=np.float32)
        for i in range(nq):
            roots[i] = heap_d[q0 + i, 0]
        block = np.empty((_TILES * ROW_TILE, GROUP), dtype=np.int32)
        lows = np.empty(GROUP, dtype=np.float32)
        scratch = np.zeros((ROW_TILE + over, dim), dtype=np.uint8)
        t = r0
        while t < r1:
            rows = min(_TILES * ROW_TILE, r1 - t) // ROW_TILE * ROW_TILE
            if rows > 0 and t + rows + over <= n:
                dots = block[:rows]
                rows_tile(fn, codes, t, qpacked, g * QUERY_TILES, dots)
            else:  # the last rows, through a zero-padded copy
                rows = min(ROW_TILE, n - t)
                scratch[:] = 0
                scratch[:rows] = codes[t:t + rows]
                dots = block[:ROW_TILE]
                rows_tile(fn, scratch, 0, qpacked, g * QUERY_TILES, dots)
            for r in range(rows):
                i = t + r
                u = steps[i]
                z = biases[i]
                if kind == KIND_IP:
                    c = np.float32(0.0)
                    y = np.float32(255.0) * u + abs(z)
                else:
                    c = row_sq[i]
                    y = row_norms[i]
                    u = np.float32(2.0) * u
                    z = np.float32(2.0) * z
                v = u * code_means[i]
                w = u * code_norms[i]
                if _tile_hits(dots[r], base, sc, es, er, tl, qs, roots, c, u, v, w, y,
                              z, lows) == 0:
                    continue
                for qq in range(nq):
                    if lows[qq] < roots[qq]:
                        q = q0 + qq
                        if kind == KIND_IP:
                            d = -(offsets[q] + lvq8_ip(queries[q], codes[i], steps[i],
                                                       biases[i]))
                        else:
                            d = lvq8_l2(queries[q], codes[i], steps[i], biases[i])
                        if d < heap_d[q, 0]:
                            heap_push(heap_d[q], heap_i[q], d, i)
                            roots[qq] = heap_d[q, 0]
            t += rows


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _rows_hits(dots, steps, biases, means, norms, row_sq, row_norms, l2, base, sc, es,
               er, tl, qs, root, lows):
    """Lower bounds of :func:`lvq8_scan_tiles` for one query and a run of rows
    (row arrays sliced to the run) into ``lows``; returns how many beat ``root``."""
    hits = np.float32(0.0)
    if l2:
        for r in range(dots.shape[0]):
            u = np.float32(2.0) * steps[r]
            low = (base + row_sq[r] - u * (sc * np.float32(dots[r]))
                   - u * means[r] * es - u * norms[r] * er - row_norms[r] * tl
                   - np.float32(2.0) * biases[r] * qs)
            lows[r] = low
            hits += np.float32(1.0) if low < root else np.float32(0.0)
    else:
        for r in range(dots.shape[0]):
            u = steps[r]
            z = biases[r]
            low = (base - u * (sc * np.float32(dots[r])) - u * means[r] * es
                   - u * norms[r] * er - (np.float32(255.0) * u + abs(z)) * tl - z * qs)
            lows[r] = low
            hits += np.float32(1.0) if low < root else np.float32(0.0)
    return hits


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def lvq8_scan_rows(kind, queries, qcodes, qconst, offsets, codes, steps, biases,
                   code_means, code_norms, row_sq, row_norms, heap_d, heap_i):
    """:func:`lvq8_scan_tiles` for a few queries, each on its own: int8 query
    ``qcodes`` (n_queries, dim) against four rows at a time through
    :func:`leanvec._kernels.int8.dot4` (AVX-512 VNNI where present), the same
    bounds, the same exactly filtered heaps."""
    n = codes.shape[0]
    l2 = kind == KIND_L2
    for q in prange(queries.shape[0]):
        base = qconst[0, q]
        sc = qconst[1, q]
        es = qconst[2, q]
        er = qconst[3, q]
        tl = qconst[4, q]
        qs = qconst[5, q]
        qc = qcodes[q]
        hd = heap_d[q]
        hi = heap_i[q]
        dots = np.empty(FILTER_ROWS, dtype=np.int32)
        lows = np.empty(FILTER_ROWS, dtype=np.float32)
        for r0 in range(0, n, FILTER_ROWS):
            rows = min(FILTER_ROWS, n - r0)
            row_dots(codes, r0, rows, qc, dots)
            r1 = r0 + rows
            if l2:
                rs, rn = row_sq[r0:r1], row_norms[r0:r1]
            else:
                rs, rn = row_sq, row_norms
            if _rows_hits(dots[:rows], steps[r0:r1], biases[r0:r1], code_means[r0:r1],
                          code_norms[r0:r1], rs, rn, l2, base, sc, es, er, tl, qs,
                          hd[0], lows) == 0:
                continue
            for r in range(rows):
                if lows[r] < hd[0]:
                    i = r0 + r
                    if l2:
                        d = lvq8_l2(queries[q], codes[i], steps[i], biases[i])
                    else:
                        d = -(offsets[q] + lvq8_ip(queries[q], codes[i], steps[i],
                                                   biases[i]))
                    if d < hd[0]:
                        heap_push(hd, hi, d, i)


@njit(cache=True, nogil=True)
def outside_band(queries, low, high_square):
    """Per query: whether its largest magnitude is below ``low`` or its float64
    squared norm is not below ``high_square`` (NaN counts as outside)."""
    n, dim = queries.shape
    out = np.empty(n, dtype=np.bool_)
    for q in range(n):
        top = 0.0
        sq = 0.0
        for j in range(dim):
            v = np.float64(queries[q, j])
            top = max(top, abs(v))
            sq += v * v
        out[q] = not (top >= low and sq < high_square)
    return out


def l2_tolerance(dim):
    """The relative allowance ``tol`` of :func:`lvq8_scan_tiles` under
    :data:`KIND_L2`: float32 rounding of the bound and of :func:`lvq8_l2`, as a
    share of (|q| + |x|)^2."""
    return 4.0 * (dim + 8) * 2.0**-23


def tile_query_constants(kind, queries, offsets, qscale, qerr, qesum, padded):
    """The ``qconst`` array of :func:`lvq8_scan_tiles` (queries padded with
    zeros to ``padded``)."""
    n, dim = queries.shape
    out = np.zeros((6, padded), dtype=np.float32)
    if kind == KIND_IP:
        tol = 2.0 * (dim + 8) * 2.0**-23
        off = offsets.astype(np.float64)
        out[0, :n] = -off - tol * np.abs(off)
        out[4, :n] = tol * np.abs(queries).sum(axis=1, dtype=np.float64)
    else:
        sq = np.einsum("ij,ij->i", queries, queries, dtype=np.float64)
        out[0, :n] = sq * (1.0 - l2_tolerance(dim))
        out[4, :n] = np.sqrt(sq) * (1.0 + 2.0**-20)
    out[1, :n] = qscale
    out[2, :n] = qesum
    out[3, :n] = qerr
    out[5, :n] = queries.sum(axis=1, dtype=np.float64)
    return out


@njit(parallel=True, cache=True, nogil=True)
def code_l2_stats(codes, steps, biases):
    """Per row, in float32, the row terms of :func:`lvq8_scan_tiles`'s
    squared-L2 bound for the centred reconstruction x_j = step c_j + bias:
    |x|^2 (1 - tol) - tol sqrt(dim) b |x| (rounded down) and
    tol (2 |x| + 2 sqrt(dim) b) (rounded up), b = |bias| + 255 step and ``tol``
    from :func:`l2_tolerance`."""
    n, dim = codes.shape
    tol = 4.0 * (dim + 8) * 2.0**-23
    root = np.sqrt(np.float64(dim))
    row_sq = np.empty(n, dtype=np.float32)
    row_norms = np.empty(n, dtype=np.float32)
    for i in prange(n):
        u = np.float64(steps[i])
        z = np.float64(biases[i])
        acc = 0.0
        for j in range(dim):
            v = u * np.float64(codes[i, j]) + z
            acc += v * v
        norm = np.sqrt(acc)
        b = abs(z) + 255.0 * u
        low = acc * (1.0 - tol) - tol * root * b * norm
        row_sq[i] = np.float32(low - abs(low) * 2.0**-20)
        row_norms[i] = np.float32(tol * (2.0 * norm + 2.0 * root * b) * (1.0 + 2.0**-20))
    return row_sq, row_norms


@njit(parallel=True, cache=True, nogil=True)
def code_stats(codes):
    """Per row of 8-bit codes: the mean code m and the norm |c - m| (float32,
    rounded up), which bound a rounded query's error in
    :func:`lvq8_scan_tiles`."""
    n, dim = codes.shape
    means = np.empty(n, dtype=np.float32)
    norms = np.empty(n, dtype=np.float32)
    for i in prange(n):
        total = np.int64(0)
        for j in range(dim):
            total += np.int64(codes[i, j])
        m = np.float32(total / max(dim, 1))
        acc = 0.0
        for j in range(dim):
            v = np.float64(codes[i, j]) - np.float64(m)
            acc += v * v
        means[i] = m
        norms[i] = np.float32(np.sqrt(acc) * (1.0 + 2.0**-20))
    return means, norms


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def lvq_decode_rows(codes, residual, steps, biases, bits, residual_bits, start, out):
    """Centred reconstructions of rows ``start .. start + len(out)``, for a batch scan.

    Row ``i`` becomes ``xc_j = steps[i] c_j + biases[i]``, plus ``delta r_j -
    steps[i] / 2`` with the second level (see the module docstring), so that
    ``<q, xc>`` is the inner product :func:`lvq_distance` computes.

    Parameters
    ----------
    codes, residual, steps, biases, bits, residual_bits
        As in :func:`lvq_scan`.
    start : int
        First row to decode.
    out : array of shape (rows, dim), float32
        Written in place.
    """
    dim = out.shape[1]
    for r in range(out.shape[0]):
        i = start + r
        step = steps[i]
        if residual_bits == 0 and bits == 8:
            bias = biases[i]
            for j in range(dim):
                out[r, j] = step * np.float32(codes[i, j]) + bias
        elif residual_bits == 0:
            bias = biases[i]
            for j in range(dim):
                out[r, j] = step * _code(codes[i], j, bits) + bias
        else:
            delta = step / np.float32((1 << residual_bits) - 1)
            shift = biases[i] - np.float32(0.5) * step
            for j in range(dim):
                out[r, j] = (step * _code(codes[i], j, bits)
                             + delta * _code(residual[i], j, residual_bits) + shift)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def lvq_candidate_distances(queries, offsets, codes, residual, steps, biases, bits,
                            residual_bits, kind, cand_ids, out):
    """Distances from each query to its candidate ids (re-scoring a short list).

    ``cand_ids`` (n_queries, n_cand) int64 may hold -1 for missing candidates, whose
    distance is +inf. Other arguments as in :func:`lvq_scan`; ``out`` is
    (n_queries, n_cand) float32, written in place.
    """
    for q in prange(queries.shape[0]):
        for c in range(cand_ids.shape[1]):
            i = cand_ids[q, c]
            if i < 0:
                out[q, c] = np.inf
                continue
            out[q, c] = lvq_distance(queries[q], offsets[q], codes[i], residual[i],
                                     steps[i], biases[i], bits, residual_bits, kind)


@njit(parallel=True, cache=True, nogil=True)
def sort_candidates(cand_d, cand_ids, k, out_d, out_ids):
    """Keep the best ``k`` of each row of (distance, id) candidates, ascending.

    Ids of -1 are skipped; missing slots get id -1 and distance +inf.
    """
    for q in prange(cand_d.shape[0]):
        hd = np.full(k, np.inf, dtype=np.float32)
        hi = np.full(k, NO_ID, dtype=np.int64)
        for c in range(cand_d.shape[1]):
            if cand_ids[q, c] >= 0:
                heap_push(hd, hi, cand_d[q, c], cand_ids[q, c])
        heap_sort_inplace(hd, hi)
        for c in range(k):
            out_ids[q, c] = -1 if hi[c] == NO_ID else hi[c]
            out_d[q, c] = np.inf if hi[c] == NO_ID else hd[c]
