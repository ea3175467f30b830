"""Vamana graph construction and best-first search over primary vectors.

Primary vectors (the database after reduction, possibly quantized) are read
through one tuple ``prim = (f32, f16, u8, steps, biases, aux)`` whatever their
storage, so that one compiled kernel serves every kind:

- ``PRIM_F32``: ``f32`` (n, d) float32 rows;
- ``PRIM_F16``: ``f16`` (n, d) uint16 rows holding float16 bit patterns;
- ``PRIM_LVQ8`` / ``PRIM_LVQ4``: ``u8`` rows of LVQ codes with float32 ``steps``
  and ``biases`` (see :mod:`leanvec._kernels.lvq`); rows decode to
  ``y_j = step * c_j + bias``;
- ``PRIM_LVQ8_I8``: the LVQ-8 rows of ``PRIM_LVQ8``, with the query rounded to
  signed 8 bits once per search (or prune) so that ``sum_j u_j c_j`` is an
  integer dot product (:func:`leanvec._kernels.int8.dot4`, AVX-512 VNNI where the
  processor has it). The query's rounding adds an error of the order of the
  codes' own to traversal distances; re-ranking on secondary vectors is
  unaffected;
- ``PRIM_LVQ4_I8``: the same for the 4-bit rows of ``PRIM_LVQ4``
  (:func:`leanvec._kernels.int8.dot4_nibbles`).

Unused arrays have zero rows. ``aux`` (n,) float32 holds a per-vector term added
to every distance (squared norms for L2), or has length 0.

Traversal distance of database row ``i`` to a prepared query ``u``::

    dist_i = aux_i - c * <u, y_i> + offset

with ``c`` = 1 (inner product) or 2 (L2 through ||a||^2 + ||b||^2 - 2 <a, b>) and
``offset`` constant per query. The Python layer prepares ``u``, ``c`` and
``offset`` for each metric and projection.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import COSINE, EUCLIDEAN, FASTMATH, INNER_PRODUCT
from .int8 import dot4, dot4_nibbles
from .lvq import lvq4_ip, lvq8_ip
from .memory import prefetch_items, prefetch_rows
from .topk import NO_ID, heap_push, heap_sort_inplace

PRIM_F32 = 0
PRIM_F16 = 1
PRIM_LVQ8 = 2
PRIM_LVQ4 = 3
PRIM_LVQ8_I8 = 4
PRIM_LVQ4_I8 = 5

SEC_NONE = 0
SEC_F32 = 1
SEC_F16 = 2
SEC_LVQ8 = 3

# float16 bits shifted into a float32 pattern are 2**-112 too small: scale back.
_F16_SCALE = np.float32(2.0**112)


# ------------------------------------------------------------------ decoding
@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _f16_to_f32(bits, out_u32, out_f32):
    """Decode a row of float16 bit patterns into ``out_f32`` (finite values only).

    ``out_f32`` is a float32 view of ``out_u32``. Sign and magnitude bits move to
    their float32 places; one multiplication by 2**112 fixes the exponent bias and
    also handles subnormals.
    """
    for j in range(bits.shape[0]):
        h = np.uint32(bits[j])
        out_u32[j] = ((h & np.uint32(0x7FFF)) << np.uint32(13)) | (
            (h & np.uint32(0x8000)) << np.uint32(16)
        )
    for j in range(bits.shape[0]):
        out_f32[j] *= _F16_SCALE


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _prim_decode(i, prim, kind, out_u32, out_f32):
    """Write primary row ``i`` as float32 into ``out_f32`` (``y_i``, no mean)."""
    f32, f16, u8, steps, biases, _ = prim
    d = out_f32.shape[0]
    if kind == PRIM_F32:
        for j in range(d):
            out_f32[j] = f32[i, j]
    elif kind == PRIM_F16:
        _f16_to_f32(f16[i], out_u32, out_f32)
    elif kind == PRIM_LVQ8 or kind == PRIM_LVQ8_I8:
        for j in range(d):
            out_f32[j] = steps[i] * np.float32(u8[i, j]) + biases[i]
    else:
        for j in range(d):
            b = u8[i, j >> 1]
            c = (b >> 4) if (j & 1) else (b & 15)
            out_f32[j] = steps[i] * np.float32(c) + biases[i]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def prepare_dots(u, kind, qcodes):
    """For ``PRIM_LVQ8_I8``: round ``u`` to signed 8 bits into ``qcodes`` with one
    scale; for ``PRIM_LVQ4_I8`` the same, even coordinates first, then the odd
    ones (each half ceil(d / 2) long, zero-padded). Return (scale, sum of
    ``u``); other kinds: (0, 0). ``qcodes`` holds at least d + 1 values."""
    if kind != PRIM_LVQ8_I8 and kind != PRIM_LVQ4_I8:
        return np.float32(0.0), np.float32(0.0)
    top = np.float32(0.0)
    total = np.float32(0.0)
    for j in range(u.shape[0]):
        top = max(top, abs(u[j]))
        total += u[j]
    scale = top / np.float32(127.0) if top > 0 else np.float32(1.0)
    inv = np.float32(1.0) / scale
    d = u.shape[0]
    if kind == PRIM_LVQ8_I8:
        for j in range(d):
            qcodes[j] = np.int8(min(max(np.rint(u[j] * inv), -127.0), 127.0))
        return scale, total
    half = (d + 1) // 2
    qcodes[half - 1] = 0
    qcodes[2 * half - 1] = 0
    for j in range(d):
        slot = (j >> 1) + (half if j & 1 else 0)
        qcodes[slot] = np.int8(min(max(np.rint(u[j] * inv), -127.0), 127.0))
    return scale, total


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _integer_dots(u8, steps, biases, ids, count, qcodes, qscale, usum, nibbles, out):
    """``<u, y_i>`` for the ``_I8`` kinds: step_i qscale <q8, c_i> + bias_i sum(u),
    four rows per integer kernel call; ``nibbles`` for two 4-bit codes a byte."""
    width = u8.shape[1]
    t = 0
    while t < count:
        i0 = ids[t]
        i1 = ids[t + 1] if t + 1 < count else i0
        i2 = ids[t + 2] if t + 2 < count else i0
        i3 = ids[t + 3] if t + 3 < count else i0
        if nibbles:
            a0, a1, a2, a3 = dot4_nibbles(u8, i0, i1, i2, i3, qcodes, width)
        else:
            a0, a1, a2, a3 = dot4(u8, i0, i1, i2, i3, qcodes, width)
        out[t] = steps[i0] * (qscale * np.float32(a0)) + biases[i0] * usum
        if t + 1 < count:
            out[t + 1] = steps[i1] * (qscale * np.float32(a1)) + biases[i1] * usum
        if t + 2 < count:
            out[t + 2] = steps[i2] * (qscale * np.float32(a2)) + biases[i2] * usum
        if t + 3 < count:
            out[t + 3] = steps[i3] * (qscale * np.float32(a3)) + biases[i3] * usum
        t += 4


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def batch_dist(u, c, offset, use_aux, ids, count, prim, kind, out, buf_u32, buf_f32,
               qcodes, qscale, usum):
    """Traversal distances ``aux_i - c <u, y_i> + offset`` of rows ``ids[:count]``.

    Writes ``out[:count]`` (float32). The storage kind is tested once per batch,
    not once per row: with the test inside the per-row function LLVM stopped
    vectorizing the inner loops (measured 15x slower). ``qcodes``, ``qscale``,
    ``usum``: :func:`prepare_dots` of ``u`` (read for the ``_I8`` kinds only).
    """
    f32, f16, u8, steps, biases, aux = prim
    d = u.shape[0]
    if kind == PRIM_F32:
        prefetch_rows(f32, ids, count)
    elif kind == PRIM_F16:
        prefetch_rows(f16, ids, count)
    else:
        prefetch_rows(u8, ids, count)
        prefetch_items(steps, ids, count)
        prefetch_items(biases, ids, count)
    if use_aux:
        prefetch_items(aux, ids, count)
    if kind == PRIM_F32:
        for t in range(count):
            i = ids[t]
            s = np.float32(0.0)
            for j in range(d):
                s += u[j] * f32[i, j]
            out[t] = s
    elif kind == PRIM_F16:
        for t in range(count):
            _f16_to_f32(f16[ids[t]], buf_u32, buf_f32)
            s = np.float32(0.0)
            for j in range(d):
                s += u[j] * buf_f32[j]
            out[t] = s
    elif kind == PRIM_LVQ8:
        for t in range(count):
            i = ids[t]
            out[t] = lvq8_ip(u, u8[i], steps[i], biases[i])
    elif kind == PRIM_LVQ8_I8 or kind == PRIM_LVQ4_I8:
        _integer_dots(u8, steps, biases, ids, count, qcodes, qscale, usum,
                      kind == PRIM_LVQ4_I8, out)
    else:
        for t in range(count):
            i = ids[t]
            out[t] = lvq4_ip(u, u8[i], steps[i], biases[i])
    for t in range(count):
        out[t] = offset - c * out[t]
        if use_aux:
            out[t] += aux[ids[t]]


# --------------------------------------------------------------- visited set
@njit(cache=True, nogil=True, inline="always")
def _visit(bits, node):
    """Set ``node``'s bit in a bitset; True when it was not set before."""
    word = node >> 6
    mask = np.uint64(1) << np.uint64(node & 63)
    if bits[word] & mask:
        return False
    bits[word] |= mask
    return True


@njit(cache=True, nogil=True)
def _visited_words(n):
    return np.zeros((n + 63) // 64 + 1, dtype=np.uint64)


@njit(cache=True, nogil=True)
def _clear_visited(bits, graph, degrees, entries, exp_i, exp_n):
    """Clear every bit a search set: the entries and the expanded nodes' neighbours.

    Costs O(visited), so one bitset serves many queries of a thread.
    """
    for e in range(entries.shape[0]):
        bits[entries[e] >> 6] = 0
    for e in range(exp_n):
        node = exp_i[e]
        for t in range(degrees[node]):
            bits[graph[node, t] >> 6] = 0


@njit(cache=True, nogil=True, inline="always")
def _pool_push(pool_d, pool_i, d, i):
    """Replace the root (the worst) of a max-heap of distances by ``(d, i)``.

    The caller has checked ``d < pool_d[0]``.
    """
    size = pool_d.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and pool_d[child + 1] > pool_d[child]:
            child += 1
        if pool_d[child] <= d:
            break
        pool_d[pos] = pool_d[child]
        pool_i[pos] = pool_i[child]
        pos = child
    pool_d[pos] = d
    pool_i[pos] = i


# ------------------------------------------------------------------- search
@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _offer(fresh, fresh_d, n_fresh, buf_d, buf_i, expanded, size, cur, use_pool,
           pool_d, pool_i, ent_d, ent_i):
    """Offer scored nodes ``fresh[:n_fresh]`` to the sorted buffer; return the new
    (size, cur). Entrants (beating the current worst of a full buffer) are
    sorted, then merged into the buffer from its end: O(window + entrants), not
    O(window) per entrant. Nodes that fall off a full buffer go to the pool."""
    cap = buf_d.shape[0]
    m = 0
    if use_pool:
        for t in range(n_fresh):
            d = fresh_d[t]
            if size == cap and d >= buf_d[size - 1]:
                if d < pool_d[0]:
                    _pool_push(pool_d, pool_i, d, fresh[t])
                continue
            ent_d[m] = d
            ent_i[m] = fresh[t]
            m += 1
    else:  # branch-free filter: most nodes fail the test, unpredictably
        worst = buf_d[size - 1] if size == cap else np.float32(np.inf)
        for t in range(n_fresh):
            d = fresh_d[t]
            ent_d[m] = d
            ent_i[m] = fresh[t]
            m += d < worst
    # insertion sort, stable: after equal distances
    for a in range(1, m):
        d = ent_d[a]
        node_a = ent_i[a]
        pos = a
        while pos > 0 and ent_d[pos - 1] > d:
            ent_d[pos] = ent_d[pos - 1]
            ent_i[pos] = ent_i[pos - 1]
            pos -= 1
        ent_d[pos] = d
        ent_i[pos] = node_a
    if m > 0:
        i = size - 1
        j = m - 1
        w = size + m - 1
        while j >= 0:
            if i >= 0 and buf_d[i] > ent_d[j]:
                d = buf_d[i]
                node_w = buf_i[i]
                done_w = expanded[i]
                i -= 1
            else:
                d = ent_d[j]
                node_w = ent_i[j]
                done_w = False
                j -= 1
            if w < cap:
                buf_d[w] = d
                buf_i[w] = node_w
                expanded[w] = done_w
                if not done_w:
                    cur = min(cur, w)
            elif use_pool and d < pool_d[0]:
                _pool_push(pool_d, pool_i, d, node_w)
            w -= 1
        size = min(size + m, cap)
    return size, cur


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def beam_search(u, c, offset, use_aux, prim, kind, graph, degrees, entries, window,
                buf_d, buf_i, visited, pool_d, pool_i):
    """Best-first search from the nodes ``entries`` (1-d int32, at least one) with
    a sorted candidate buffer, which starts with the best of them.

    The buffer (``buf_d``/``buf_i``, capacity ``cap`` >= ``window``) keeps the
    closest nodes seen, ascending; the search expands the best unexpanded node
    among the first ``window`` entries until none is left (the paper's search
    list size L is ``window``). ``visited`` is a bitset of ``n`` bits, all clear;
    the search clears the bits it set before returning, so each thread allocates
    one bitset for all its queries and a query costs O(visited), not O(n).
    ``pool_d``/``pool_i`` (length 0 to skip) form a max-heap that keeps the best
    nodes visited that are not in the final buffer (those it rejected or
    evicted): with the buffer, the best ``cap + pool size`` nodes visited, for
    re-ranking at a depth independent of the window.

    Returns
    -------
    size : int
        Valid entries in the buffer.
    exp_i, exp_d : arrays of shape (n_expanded,), int32 / float32
        Expanded nodes and their distances (the build's prune candidates).
    """
    cap = buf_d.shape[0]
    expanded = np.zeros(cap, dtype=np.bool_)
    buf_u32 = np.empty(u.shape[0], dtype=np.uint32)
    buf_f32 = buf_u32.view(np.float32)
    fresh = np.empty(max(graph.shape[1], entries.shape[0], 1), dtype=np.int32)
    fresh_d = np.empty(fresh.shape[0], dtype=np.float32)
    ent_i = np.empty(fresh.shape[0], dtype=np.int32)
    ent_d = np.empty(fresh.shape[0], dtype=np.float32)
    exp_n = 0
    exp_i = np.empty(window * 2, dtype=np.int32)
    exp_d = np.empty(exp_i.shape[0], dtype=np.float32)
    qcodes = np.empty(u.shape[0] + 1, dtype=np.int8)
    qscale, usum = prepare_dots(u, kind, qcodes)

    n_fresh = 0
    for t in range(entries.shape[0]):
        if _visit(visited, entries[t]):
            fresh[n_fresh] = entries[t]
            n_fresh += 1
    batch_dist(u, c, offset, use_aux, fresh, n_fresh, prim, kind, fresh_d, buf_u32,
               buf_f32, qcodes, qscale, usum)
    use_pool = pool_d.shape[0] > 0
    size, cur = _offer(fresh, fresh_d, n_fresh, buf_d, buf_i, expanded, 0, 0,
                       use_pool, pool_d, pool_i, ent_d, ent_i)
    while True:
        while cur < size and expanded[cur]:
            cur += 1
        if cur >= size or cur >= window:
            break
        node = buf_i[cur]
        expanded[cur] = True
        # the next node to expand, unless a neighbour of this one beats it
        ahead = cur + 1
        while ahead < size and expanded[ahead]:
            ahead += 1
        if ahead < size and ahead < window:
            prefetch_rows(graph, buf_i[ahead:], 1)
        if exp_n == exp_i.shape[0]:
            exp_i = np.concatenate((exp_i, np.empty_like(exp_i)))
            exp_d = np.concatenate((exp_d, np.empty_like(exp_d)))
        exp_i[exp_n] = node
        exp_d[exp_n] = buf_d[cur]
        exp_n += 1

        # Gather the unvisited neighbours, then score them in one batch.
        n_fresh = 0
        for t in range(degrees[node]):  # branch-free: the test is a coin flip
            nb = graph[node, t]
            word = nb >> 6
            mask = np.uint64(1) << np.uint64(nb & 63)
            seen = visited[word] & mask
            visited[word] |= mask
            fresh[n_fresh] = nb
            n_fresh += seen == 0
        batch_dist(u, c, offset, use_aux, fresh, n_fresh, prim, kind, fresh_d,
                   buf_u32, buf_f32, qcodes, qscale, usum)

        size, cur = _offer(fresh, fresh_d, n_fresh, buf_d, buf_i, expanded, size,
                           cur, use_pool, pool_d, pool_i, ent_d, ent_i)
    _clear_visited(visited, graph, degrees, entries, exp_i, exp_n)
    return size, exp_i[:exp_n], exp_d[:exp_n]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _row_distance(q, x, metric):
    """Distance of float32 rows ``q`` and ``x`` in the metric's units, as float64.

    cosine: 1 - <q, x> / sqrt(||q||^2 ||x||^2) clamped to [0, 2] (1 for a zero
    vector); ||q||^2 is summed in the same loop and order as <q, x> and ||x||^2,
    so x == q gives exactly 0. inner product: -<q, x>. L2: sum (q_j - x_j)^2
    (its root for euclidean). Sums run in float32, 8 lanes wide.
    """
    dot = np.float32(0.0)
    if metric == COSINE:
        xx = np.float32(0.0)
        qq = np.float32(0.0)
        for j in range(q.shape[0]):
            dot += q[j] * x[j]
            xx += x[j] * x[j]
            qq += q[j] * q[j]
        denom = np.sqrt(np.float64(qq) * np.float64(xx))
        d = 1.0
        if denom > 0.0:
            d = min(max(1.0 - np.float64(dot) / denom, 0.0), 2.0)
    elif metric == INNER_PRODUCT:
        for j in range(q.shape[0]):
            dot += q[j] * x[j]
        d = -np.float64(dot)
    else:
        for j in range(q.shape[0]):
            t = q[j] - x[j]
            dot += t * t
        d = np.float64(dot)
        if metric == EUCLIDEAN:
            d = np.sqrt(d)
    return d


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _lvq8_rerank(q, ids, count, sec, metric, out):
    """Cosine or inner-product distances of ``q`` to LVQ-8 secondary rows, scored
    in the code domain: ``<q, xhat> = <q, mean> + lvq8_ip(q, ...)``, ``<q, mean>``
    once a query; cosine divides by ``||q||`` and the stored norm of each
    decoded row (``norms``), and is 1 when either is zero."""
    _, _, u8, steps, biases, mean, norms = sec
    qm = np.float32(0.0)
    qq = np.float32(0.0)
    for j in range(q.shape[0]):
        qm += q[j] * mean[j]
        qq += q[j] * q[j]
    qn = np.sqrt(np.float64(qq))
    for t in range(count):
        i = ids[t]
        dot = np.float64(qm) + np.float64(lvq8_ip(q, u8[i], steps[i], biases[i]))
        if metric == COSINE:
            denom = qn * np.float64(norms[i])
            d = 1.0
            if denom > 0.0:
                d = min(max(1.0 - dot / denom, 0.0), 2.0)
            out[t] = d
        else:
            out[t] = -dot


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def rerank_distances(q, ids, count, sec, sec_kind, metric, out):
    """Distances of the original query ``q`` to secondary rows ``ids[:count]``.

    ``sec`` is ``(f32, f16, u8, steps, biases, mean, norms)``. LVQ-8 rows under
    cosine or inner product are scored in the code domain (:func:`_lvq8_rerank`);
    other rows decode to float32 (float16 bits, or LVQ-8 ``mean + step * c +
    bias``), then :func:`_row_distance`. Writes ``out[:count]`` (float64).
    """
    f32, f16, u8, steps, biases, mean, norms = sec
    dim = q.shape[0]
    buf_u32 = np.empty(dim, dtype=np.uint32)
    buf_f32 = buf_u32.view(np.float32)
    if sec_kind == SEC_F32:
        prefetch_rows(f32, ids, count)
    elif sec_kind == SEC_F16:
        prefetch_rows(f16, ids, count)
    else:
        prefetch_rows(u8, ids, count)
        prefetch_items(steps, ids, count)
        prefetch_items(biases, ids, count)
        if norms.shape[0] > 0:
            prefetch_items(norms, ids, count)
    if sec_kind == SEC_LVQ8 and (metric == COSINE or metric == INNER_PRODUCT):
        _lvq8_rerank(q, ids, count, sec, metric, out)
        return

    for t in range(count):
        i = ids[t]
        if sec_kind == SEC_F32:
            for j in range(dim):
                buf_f32[j] = f32[i, j]
        elif sec_kind == SEC_F16:
            _f16_to_f32(f16[i], buf_u32, buf_f32)
        else:
            for j in range(dim):
                buf_f32[j] = mean[j] + steps[i] * np.float32(u8[i, j]) + biases[i]
        out[t] = _row_distance(q, buf_f32, metric)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _search_query(u, c, offset, use_aux, prim, kind, graph, degrees, entries, window,
                  cap, rerank, q, sec, sec_kind, metric, final_offset, out_i, out_d,
                  visited):
    """Traverse, re-score the best ``rerank`` candidates, write the best k."""
    buf_d = np.empty(window, dtype=np.float32)
    buf_i = np.empty(window, dtype=np.int32)
    # The buffer holds the best `window` nodes visited; the pool the next best.
    pool_d = np.full(max(cap - window, 0), np.inf, dtype=np.float32)
    pool_i = np.full(pool_d.shape[0], -1, dtype=np.int32)
    size, _, _ = beam_search(u, c, offset, use_aux, prim, kind, graph, degrees,
                             entries, window, buf_d, buf_i, visited, pool_d, pool_i)
    # The candidates' order does not matter: the final top-k heap sorts.
    cand = np.empty(cap, dtype=np.int32)
    cand_d = np.empty(cap, dtype=np.float32)
    count = min(size, cap)
    cand[:count] = buf_i[:count]
    cand_d[:count] = buf_d[:count]
    for t in range(pool_i.shape[0]):
        if pool_i[t] >= 0:
            cand[count] = pool_i[t]
            cand_d[count] = pool_d[t]
            count += 1
    dist = np.empty(count, dtype=np.float64)
    if sec_kind == SEC_NONE:
        for t in range(count):
            d = np.float64(cand_d[t]) + final_offset
            if metric != INNER_PRODUCT:
                d = max(d, 0.0)
            dist[t] = np.sqrt(d) if metric == EUCLIDEAN else d
    else:
        rerank_distances(q, cand, count, sec, sec_kind, metric, dist)

    k = out_i.shape[0]
    hd = np.full(k, np.inf)
    hi = np.full(k, NO_ID, dtype=np.int64)
    for t in range(count):
        heap_push(hd, hi, dist[t], np.int64(cand[t]))
    heap_sort_inplace(hd, hi)
    for t in range(k):
        if hi[t] == NO_ID:
            out_i[t] = -1
            out_d[t] = np.inf
        else:
            out_i[t] = hi[t]
            out_d[t] = hd[t]


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def search_batch(us, c, offsets, use_aux, prim, kind, graph, degrees, entries, window,
                 cap, rerank, queries, sec, sec_kind, metric, final_offsets, out_i,
                 out_d, n_threads):
    """Search every query in parallel: one task a thread, queries interleaved.

    Parameters
    ----------
    us : array of shape (n_queries, d), float32
        Prepared traversal queries.
    c, offsets, use_aux
        Distance terms of the module docstring (``offsets`` per query).
    prim, kind : primary tuple and storage kind.
    graph : array of shape (n, degree), int32; degrees : array of shape (n,), int32
    entries : array of shape (m,), int32
        Entry nodes (at least one): the search starts from the best of them.
    window, cap, rerank : int
        Search window, size of the pool of best visited nodes that is
        re-ranked (``max(rerank, k)``), and the re-rank depth.
    queries : array of shape (n_queries, D), float32
        Original queries (unit length for cosine) for re-scoring.
    sec, sec_kind : secondary tuple ``(f32, f16, u8, steps, biases, mean, norms)``
        (``norms``: decoded LVQ-8 row norms under cosine, else empty), kind.
    metric : int
        Metric code of :mod:`leanvec._kernels`.
    final_offsets : array of shape (n_queries,), float64
        Added to traversal distances when there is no secondary.
    out_i, out_d : arrays of shape (n_queries, k), int64 / float64
        Written in place, best first, -1 / +inf padded.
    n_threads : int
        Tasks to split the queries into (numba's current thread count).

    A ``window`` or ``cap`` beyond the ``n`` nodes acts as ``n`` (nothing more
    can be held), so huge values cost no memory.
    """
    window = min(window, graph.shape[0])
    cap = min(cap, graph.shape[0])
    n_tasks = min(us.shape[0], n_threads)
    for task in prange(n_tasks):
        visited = _visited_words(graph.shape[0])
        for q in range(task, us.shape[0], n_tasks):
            _search_query(us[q], c, offsets[q], use_aux, prim, kind, graph, degrees,
                          entries, window, cap, rerank, queries[q], sec, sec_kind,
                          metric, final_offsets[q], out_i[q], out_d[q], visited)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def search_serial(us, c, offsets, use_aux, prim, kind, graph, degrees, entries, window,
                  cap, rerank, queries, sec, sec_kind, metric, final_offsets, out_i,
                  out_d):
    """:func:`search_batch` on the calling thread: the low-latency path for few
    queries (no thread-pool launch)."""
    window = min(window, graph.shape[0])
    cap = min(cap, graph.shape[0])
    visited = _visited_words(graph.shape[0])
    for q in range(us.shape[0]):
        _search_query(us[q], c, offsets[q], use_aux, prim, kind, graph, degrees,
                      entries, window, cap, rerank, queries[q], sec, sec_kind, metric,
                      final_offsets[q], out_i[q], out_d[q], visited)


# -------------------------------------------------------------------- build
@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _build_query(p, prim, kind, shift, ip_mode, u_u32, u_f32):
    """Prepare database row ``p`` as a traversal query; return (c, offset, use_aux).

    L2 geometry: u = y_p, dist = ||y_i||^2 - 2 <u, y_i> + ||y_p||^2.
    Inner-product geometry: u = y_p + shift, dist = -<u, y_i> - <u, shift>.
    """
    _prim_decode(p, prim, kind, u_u32, u_f32)
    if ip_mode:
        off = np.float32(0.0)
        for j in range(u_f32.shape[0]):
            u_f32[j] += shift[j]
            off += u_f32[j] * shift[j]
        return np.float32(1.0), -off, False
    return np.float32(2.0), prim[5][p], True


@njit(cache=True, nogil=True)
def _same_row(x, prim, kind, ref_u32, buf_u32, buf_f32):
    """True when primary row ``x`` decodes to the bits ``ref_u32``."""
    _prim_decode(x, prim, kind, buf_u32, buf_f32)
    for j in range(ref_u32.shape[0]):
        if buf_u32[j] != ref_u32[j]:
            return False
    return True


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _split_duplicates(p, rem_i, rem_d, n_rem, prim, kind, shift, ip_mode, dups):
    """Move the candidates whose primary row equals ``p``'s out of ``rem`` into
    ``dups``, the next ids after ``p`` first (cyclically); return (n_rem, n_dups).

    A duplicate lies at ``p``'s distance to itself (up to rounding), so only
    candidates within a small tolerance of it are decoded and compared.
    """
    dim = shift.shape[0]
    u_u32 = np.empty(dim, dtype=np.uint32)
    u_f32 = u_u32.view(np.float32)
    buf_u32 = np.empty(dim, dtype=np.uint32)
    buf_f32 = buf_u32.view(np.float32)
    c, off, use_aux = _build_query(p, prim, kind, shift, ip_mode, u_u32, u_f32)
    qcodes = np.empty(dim + 1, dtype=np.int8)
    qscale, usum = prepare_dots(u_f32, kind, qcodes)
    me = np.full(1, p, dtype=np.int32)
    d_self = np.empty(1, dtype=np.float32)
    batch_dist(u_f32, c, off, use_aux, me, 1, prim, kind, d_self, buf_u32, buf_f32,
               qcodes, qscale, usum)
    tol = np.float32(1e-4) * (abs(d_self[0]) + abs(off) + np.float32(1e-30))
    _prim_decode(p, prim, kind, u_u32, u_f32)
    n_dups = 0
    kept = 0
    for t in range(n_rem):
        x = rem_i[t]
        if (abs(rem_d[t] - d_self[0]) <= tol
                and _same_row(x, prim, kind, u_u32, buf_u32, buf_f32)):
            dups[n_dups] = x
            n_dups += 1
        else:
            rem_i[kept] = x
            rem_d[kept] = rem_d[t]
            kept += 1
    keys = np.empty(n_dups, dtype=np.int64)
    for t in range(n_dups):
        keys[t] = dups[t] - p + (np.int64(1) << 32 if dups[t] < p else 0)
    order = np.argsort(keys)
    dups[:n_dups] = dups[:n_dups][order]
    return kept, n_dups


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def robust_prune(p, cand_i, cand_d, degree, alpha, ip_mode, prim, kind, shift,
                 out):
    """Robust prune (Vamana): keep at most ``degree`` diverse neighbours of ``p``.

    Candidates are taken by increasing distance to ``p``; once ``k`` is kept, every
    later candidate ``x`` with ``alpha * d(k, x) <= d(p, x) > 0`` (L2 geometry) or
    ``alpha * <k, x> >= <p, x>`` (inner-product geometry, where distances are
    negated similarities) is dropped. Self and repeated ids are skipped.

    Exact duplicates of ``p`` (same stored row) are linked first, at most half
    the list (all of it when there is nothing else), taking the next ids after
    ``p`` cyclically so that a group of equal rows forms a ring; they occlude
    nothing. Otherwise a duplicate, at distance 0 from ``p``, occludes every
    other candidate: a group of ``degree`` or more equal rows linked only to
    itself, and searches never reached it from outside (nor left it).

    Returns the number of neighbours written to ``out``.
    """
    order = np.argsort(cand_d, kind="mergesort")
    n_cand = order.shape[0]
    rem_i = np.empty(n_cand, dtype=np.int32)
    rem_d = np.empty(n_cand, dtype=np.float32)
    n_rem = 0
    for o in order:
        x = cand_i[o]
        if x == p or (n_rem > 0 and rem_i[n_rem - 1] == x):
            continue
        rem_i[n_rem] = x
        rem_d[n_rem] = cand_d[o]
        n_rem += 1

    dups = np.empty(n_rem, dtype=np.int32)
    n_rem, n_dups = _split_duplicates(p, rem_i, rem_d, n_rem, prim, kind, shift,
                                      ip_mode, dups)
    count = 0
    take = degree if n_rem == 0 else max(1, degree // 2)
    for t in range(n_dups):
        if count == take:
            break
        repeated = False
        for s in range(count):
            repeated = repeated or out[s] == dups[t]
        if not repeated:
            out[count] = dups[t]
            count += 1

    dim = shift.shape[0]
    u_u32 = np.empty(dim, dtype=np.uint32)
    u_f32 = u_u32.view(np.float32)
    buf_u32 = np.empty(dim, dtype=np.uint32)
    buf_f32 = buf_u32.view(np.float32)
    d_kx = np.empty(n_rem, dtype=np.float32)
    qcodes = np.empty(dim + 1, dtype=np.int8)
    head = 0
    while head < n_rem and count < degree:
        x = rem_i[head]
        head += 1
        repeated = False
        for t in range(count):
            repeated = repeated or out[t] == x
        if repeated:
            continue
        out[count] = x
        count += 1

        # Drop the remaining candidates that x occludes, compacting the rest.
        rest = n_rem - head
        c, off, use_aux = _build_query(x, prim, kind, shift, ip_mode, u_u32, u_f32)
        qscale, usum = prepare_dots(u_f32, kind, qcodes)
        batch_dist(u_f32, c, off, use_aux, rem_i[head:], rest, prim, kind, d_kx,
                   buf_u32, buf_f32, qcodes, qscale, usum)
        kept = head
        for t in range(rest):
            dpx = rem_d[head + t]
            if ip_mode:
                occluded = alpha * -d_kx[t] >= -dpx
            else:
                # Exact duplicates of p are never occluded: they stay linked.
                occluded = alpha * d_kx[t] <= dpx and dpx > 0.0
            if not occluded:
                rem_i[kept] = rem_i[head + t]
                rem_d[kept] = dpx
                kept += 1
        n_rem = kept
    return count


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def insert_batch(points, prim, kind, shift, ip_mode, graph, degrees, degree, entries,
                 window, alpha, out_lists, out_counts, n_threads):
    """Search for each point of a batch and robust-prune its new neighbour list.

    The graph is only read, so the result does not depend on the thread count.
    Candidates are the expanded nodes of the search plus the current neighbours.
    ``out_lists`` (batch, degree) int32 and ``out_counts`` (batch,) receive the
    lists (at most ``degree`` long); the caller writes them into the graph and
    adds reverse edges. A ``window`` beyond the ``n`` nodes acts as ``n``.
    """
    window = min(window, graph.shape[0])
    n_tasks = min(points.shape[0], n_threads)
    for task in prange(n_tasks):
        visited = _visited_words(graph.shape[0])
        for b in range(task, points.shape[0], n_tasks):
            out_counts[b] = _insert_one(points[b], prim, kind, shift, ip_mode, graph,
                                        degrees, degree, entries, window, alpha,
                                        out_lists[b], visited)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _insert_one(p, prim, kind, shift, ip_mode, graph, degrees, degree, entries, window,
                alpha, out, visited):
    """Search for point ``p``, prune its candidates into ``out``; return the count."""
    dim = shift.shape[0]
    u_u32 = np.empty(dim, dtype=np.uint32)
    u_f32 = u_u32.view(np.float32)
    c, off, use_aux = _build_query(p, prim, kind, shift, ip_mode, u_u32, u_f32)
    buf_d = np.empty(window, dtype=np.float32)
    buf_i = np.empty(window, dtype=np.int32)
    _, exp_i, exp_d = beam_search(u_f32, c, off, use_aux, prim, kind, graph, degrees,
                                  entries, window, buf_d, buf_i, visited,
                                  np.empty(0, np.float32), np.empty(0, np.int32))

    # Candidates: the expanded nodes plus the current neighbours.
    ne = exp_i.shape[0]
    nd = degrees[p]
    cand_i = np.empty(ne + nd, dtype=np.int32)
    cand_d = np.empty(ne + nd, dtype=np.float32)
    cand_i[:ne] = exp_i
    cand_d[:ne] = exp_d
    cand_i[ne:] = graph[p, :nd]
    tmp_u32 = np.empty(dim, dtype=np.uint32)
    qcodes = np.empty(dim + 1, dtype=np.int8)
    qscale, usum = prepare_dots(u_f32, kind, qcodes)
    batch_dist(u_f32, c, off, use_aux, cand_i[ne:], nd, prim, kind, cand_d[ne:],
               tmp_u32, tmp_u32.view(np.float32), qcodes, qscale, usum)
    return robust_prune(p, cand_i, cand_d, degree, alpha, ip_mode, prim, kind, shift,
                        out)


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def add_reverse_edges(targets, starts, sources, prim, kind, shift, ip_mode,
                      graph, degrees, degree, alpha):
    """Add edges ``target -> source`` for each group; prune lists that overflow.

    ``targets`` are distinct, ``sources[starts[g]:starts[g + 1]]`` are the new
    in-neighbours of ``targets[g]``. Groups touch disjoint rows, so they run in
    parallel without changing the result. Lists grow up to the graph's width (a
    slack above ``degree`` during construction) and are then pruned to
    ``degree``, so a prune is not paid for every new edge; with no sources, this
    prunes every target list longer than ``degree``.
    """
    width = graph.shape[1]
    dim = shift.shape[0]
    for g in prange(targets.shape[0]):
        j = targets[g]
        nd = degrees[j]
        cand_i = np.empty(nd + starts[g + 1] - starts[g], dtype=np.int32)
        cand_i[:nd] = graph[j, :nd]
        n_cand = nd
        for s in range(starts[g], starts[g + 1]):
            x = sources[s]
            fresh = x != j
            for t in range(n_cand):
                if cand_i[t] == x:
                    fresh = False
                    break
            if fresh:
                cand_i[n_cand] = x
                n_cand += 1
        if n_cand <= width and (n_cand <= degree or starts[g + 1] > starts[g]):
            graph[j, :n_cand] = cand_i[:n_cand]
            degrees[j] = n_cand
            continue

        u_u32 = np.empty(dim, dtype=np.uint32)
        u_f32 = u_u32.view(np.float32)
        c, off, use_aux = _build_query(j, prim, kind, shift, ip_mode, u_u32, u_f32)
        tmp_u32 = np.empty(dim, dtype=np.uint32)
        tmp_f32 = tmp_u32.view(np.float32)
        cand_d = np.empty(n_cand, dtype=np.float32)
        qcodes = np.empty(dim + 1, dtype=np.int8)
        qscale, usum = prepare_dots(u_f32, kind, qcodes)
        batch_dist(u_f32, c, off, use_aux, cand_i, n_cand, prim, kind, cand_d,
                   tmp_u32, tmp_f32, qcodes, qscale, usum)
        degrees[j] = robust_prune(j, cand_i[:n_cand], cand_d, degree, alpha,
                                  ip_mode, prim, kind, shift, graph[j])


@njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)
def decode_all(prim, kind, out):
    """Decode every primary row into ``out`` (n, dim) float32 (``y_i``, no mean)."""
    for i in prange(out.shape[0]):
        tmp = np.empty(out.shape[1], dtype=np.uint32)
        tmp_f32 = tmp.view(np.float32)
        _prim_decode(i, prim, kind, tmp, tmp_f32)
        out[i] = tmp_f32
