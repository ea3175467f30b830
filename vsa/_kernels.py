"""Numba kernels for the vsa package: structured orthogonal roles and level codes."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from leanvec._kernels import FASTMATH


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _stage(src: np.ndarray, dst: np.ndarray, transpose: bool) -> None:
    """One constant-geometry Walsh-Hadamard stage (or its transpose), src -> dst.

    Forward: ``dst[j] = src[2j] + src[2j+1]``, ``dst[j + n/2] = src[2j] - src[2j+1]``.
    log2(n) forward stages compose to the Sylvester Hadamard matrix ``H``.
    """
    half = src.shape[0] // 2
    if not transpose:
        for j in range(half):
            a = src[2 * j]
            b = src[2 * j + 1]
            dst[j] = a + b
            dst[j + half] = a - b
    else:
        for j in range(half):
            a = src[j]
            b = src[j + half]
            dst[2 * j] = a + b
            dst[2 * j + 1] = a - b


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _hadamard(v: np.ndarray, tmp: np.ndarray, transpose: bool) -> None:
    """``v <- H v`` in place (tmp is scratch of the same length)."""
    n = v.shape[0]
    src, dst = v, tmp
    h = 1
    while h < n:
        _stage(src, dst, transpose)
        src, dst = dst, src
        h *= 2
    if src is not v:
        v[:] = src


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def hadamard_roles(x: np.ndarray, signs: np.ndarray, transpose: bool) -> None:
    """Apply ``Q`` (or ``Q^T``) in place to every row of ``x`` (float32, (m, D)).

    ``Q = (H S_r / sqrt(D)) ... (H S_1 / sqrt(D))`` with ``S_i = diag(signs[i])``
    and ``H`` the Walsh-Hadamard matrix, so ``Q`` is orthogonal and
    ``Q^T = (S_1 H / sqrt(D)) ... (S_r H / sqrt(D))``.
    """
    m, dim = x.shape
    rounds = signs.shape[0]
    scale = np.float32(1.0 / np.sqrt(dim))
    for row in prange(m):
        v = x[row]
        tmp = np.empty(dim, dtype=x.dtype)
        for step in range(rounds):
            r = step if not transpose else rounds - 1 - step
            if not transpose:
                for j in range(dim):
                    v[j] *= signs[r, j]
            _hadamard(v, tmp, transpose)
            for j in range(dim):
                v[j] *= scale if not transpose else scale * signs[r, j]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def level_codes(
    out: np.ndarray,
    rows: np.ndarray,
    levels: np.ndarray,
    base: np.ndarray,
    rank: np.ndarray,
) -> None:
    """Unit level codes: ``out[rows[i]] = base * (1 - 2 clip(t_i D/2 - rank, 0, 1))``.

    ``t_i = levels[i]``.

    levels: (m,) float64 in [0, 1]; base: (D,) float32; rank: (D,) float64, a
    permutation of 0..D-1; out: float32 (n, D). Rows are scaled to unit norm.
    """
    m = levels.shape[0]
    dim = base.shape[0]
    for k in range(m):
        i = rows[k]
        edge = levels[k] * (dim / 2)
        total = 0.0
        for j in range(dim):
            flip = min(max(edge - rank[j], 0.0), 1.0)
            value = base[j] * (1.0 - 2.0 * flip)
            out[i, j] = value
            total += value * value
        scale = 1.0 / np.sqrt(total)
        for j in range(dim):
            out[i, j] *= scale


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _bind_one(
    x: np.ndarray,
    c: int,
    p: int,
    w: float,
    signs: np.ndarray,
    soft: float,
    horner: bool,
    v: np.ndarray,
    tmp: np.ndarray,
) -> None:
    """One pair of :func:`bind_rows`; ``v`` and ``tmp`` are scratch rows."""
    dim = x.shape[1]
    scale = np.float32(1.0 / np.sqrt(dim))
    w32 = np.float32(w)
    child = x[c]
    target = x[p]
    if horner:
        for j in range(dim):
            v[j] = w32 * child[j] + target[j]
    else:
        for j in range(dim):
            v[j] = w32 * child[j]
    for r in range(signs.shape[0]):
        sign = signs[r]
        for j in range(dim):
            v[j] *= sign[j]
        _hadamard(v, tmp, False)
        for j in range(dim):
            v[j] *= scale
    if horner:
        for j in range(dim):
            target[j] = v[j]
    elif soft != 0.0:
        ws = np.float32(soft * w)
        for j in range(dim):
            target[j] += v[j] + ws * child[j]
    else:
        for j in range(dim):
            target[j] += v[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def bind_rows(
    x: np.ndarray,
    children: np.ndarray,
    parents: np.ndarray,
    weights: np.ndarray,
    signs: np.ndarray,
    soft: float,
    horner: bool,
) -> None:
    """Bind child rows of ``x`` into their parent rows with one structured role.

    For each pair ``(c, p) = (children[i], parents[i])`` with ``w = weights[c]``:
    ``x[p] += Q (w x[c]) + soft w x[c]`` (object members), or, with ``horner``,
    ``x[p] = Q (x[p] + w x[c])`` (one Horner step of an array). ``x`` is float32
    (n_nodes, D); parents must be distinct within one call. One thread: groups
    are small, and a thread pool's start-up per group costs more than it saves.
    """
    dim = x.shape[1]
    v = np.empty(dim, dtype=np.float32)
    tmp = np.empty(dim, dtype=np.float32)
    for i in range(children.shape[0]):
        _bind_one(
            x,
            children[i],
            parents[i],
            weights[children[i]],
            signs,
            soft,
            horner,
            v,
            tmp,
        )


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _add_atom(acc: np.ndarray, bits: np.ndarray, weight: float) -> None:
    """``acc += weight * atom`` for a packed atom (bit set: +1/sqrt(D), else -1)."""
    dim = acc.shape[0]
    plus = np.float32(weight / np.sqrt(dim))
    for j in range(dim):
        bit = (bits[j >> 3] >> (7 - (j & 7))) & 1
        acc[j] += plus if bit else -plus


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def string_codes(
    out: np.ndarray,
    rows: np.ndarray,
    indptr: np.ndarray,
    tokens: np.ndarray,
    token_bits: np.ndarray,
    whole: np.ndarray,
    whole_bits: np.ndarray,
    token_weight: float,
    whole_weight: float,
) -> None:
    """``out[rows[i]] = normalize(a normalize(sum_t token_i) + b whole_i)``.

    The tokens of string i are atoms ``token_bits[tokens[indptr[i]:indptr[i+1]]]``
    (repeats count), ``whole_i`` is atom ``whole_bits[whole[i]]``; atoms are
    packed as by :func:`vsa.core.atom_bits`. ``a = token_weight`` and ``b =
    whole_weight`` (1 when the token part is empty and ``b`` is 0). ``out`` is
    float32 (n, D).
    """
    dim = out.shape[1]
    acc = np.zeros(dim, dtype=np.float32)
    for i in range(whole.shape[0]):
        acc[:] = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            _add_atom(acc, token_bits[tokens[t]], 1.0)
        total = np.float32(0.0)
        for j in range(dim):
            total += acc[j] * acc[j]
        a = np.float32(token_weight / np.sqrt(total)) if total > 0 else np.float32(0.0)
        for j in range(dim):
            acc[j] *= a
        # A string without tokens falls back to its whole-string atom.
        b = whole_weight if whole_weight > 0 or a > 0 else 1.0
        _add_atom(acc, whole_bits[whole[i]], b)
        total = np.float32(0.0)
        for j in range(dim):
            total += acc[j] * acc[j]
        scale = np.float32(1.0 / np.sqrt(total)) if total > 0 else np.float32(0.0)
        row = out[rows[i]]
        for j in range(dim):
            row[j] = acc[j] * scale
