"""LeanVec projections: reduce embeddings so reduced inner products rank like full ones.

LeanVec approximates ``<q, x>`` by ``<A^T q, B^T x>`` with ``A`` and ``B`` of shape
``(dim, leanvec_dims)``. LeanVec-ID is PCA of the database; LeanVec-OOD fits ``A`` and
``B`` to a sample of training queries as well (ALGORITHMS.md, section 1).
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Literal

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray

from ._kernels.topk import largest_ids
from ._validation import (
    apply_scale,
    as_matrix,
    check_metric,
    check_n_threads,
    check_positive_int,
    max_abs,
    range_scale,
)
from .persistence import Saveable

logger = logging.getLogger(__name__)

Kind = Literal["id", "ood"]
Solver = Literal["frank_wolfe", "eigen", "whitened"]
SOLVERS = ("whitened", "eigen", "frank_wolfe")
DEFAULT_SOLVER = "whitened"
STATE_KIND = "leanvec.LeanVec"

# Rows per matrix product when forming second moments or transforming a database.
_BLOCK = 8192
# Eigenvalues below this fraction of the largest are treated as zero (pseudo-inverse).
_EIG_FLOOR = 1e-10
# Cholesky is trusted when its smallest pivot^2 exceeds this share of max(diag K).
_CHOL_FLOOR = 1e-9
# Mixing weights tried by the eigenvector search before its golden-section refinement.
_BETA_GRID = np.linspace(0.0, 1.0, 11)
_GOLDEN_STEPS = 8
# Spectrum powers tried for the whitened solver, and its validation sizes.
_POWERS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
_VAL_QUERIES = 256
_MIN_VAL_QUERIES = 16
_VAL_ROWS = 10_000
_VAL_K = 10
_L2_METRICS = ("sqeuclidean", "euclidean")


def _cpu_count() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextlib.contextmanager
def _blas_workers(n_threads: int | None) -> Iterator[int]:
    """Limit BLAS to one thread and yield how many Python worker threads to use.

    On a busy machine OpenBLAS's own threads spin: with two of them, an
    eigendecomposition at dim 768 took 3-11 s instead of 0.09 s, and a Gram
    matrix ran 3.5x slower than with one. Single-threaded BLAS calls on row blocks,
    spread over Python threads (numpy releases the GIL), degrade gracefully
    instead. Needs ``threadpoolctl``; without it BLAS keeps its own threads and
    the blocks run one at a time.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield 1
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield n_threads or _cpu_count()


def _map_blocks(func: Callable[[int, int], object], n_rows: int,
                workers: int) -> Iterator:
    """Yield ``func(start, stop)`` for consecutive row blocks, in order."""
    spans = [(start, min(start + _BLOCK, n_rows)) for start in range(0, n_rows, _BLOCK)]
    if workers <= 1 or len(spans) <= 1:
        yield from (func(*span) for span in spans)
        return
    with ThreadPoolExecutor(min(workers, len(spans))) as pool:
        yield from pool.map(lambda span: func(*span), spans)


# ---------------------------------------------------------------- second moments
def _prepare(x: NDArray[np.float32], metric: str) -> NDArray[np.float32]:
    """Rows as the projection sees them: unit norm under cosine, else unchanged."""
    if metric != "cosine":
        return x
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return x * scale[:, None]


def _mean(x: NDArray[np.float32], metric: str, workers: int) -> NDArray[np.float32]:
    """Mean of the prepared rows of ``x`` (float32), accumulated in float64."""
    def block_sum(start: int, stop: int) -> NDArray:
        return _prepare(x[start:stop], metric).sum(axis=0, dtype=np.float64)

    total = sum(_map_blocks(block_sum, x.shape[0], workers))
    return (total / x.shape[0]).astype(np.float32)


def _second_moment(x: NDArray[np.float32], mean: NDArray[np.float32],
                   metric: str, workers: int) -> NDArray:
    """Return ``(p - mean)^T (p - mean) / n`` in float64, ``p`` the prepared rows.

    Parameters
    ----------
    x : array of shape (n, dim), float32
    mean : array of shape (dim,), float32
    metric : str
        Rows are scaled to unit norm block by block under ``"cosine"``.
    workers : int
        Threads computing the float32 block products (summed in float64).

    Returns
    -------
    array of shape (dim, dim), float64, symmetric
    """
    def block_gram(start: int, stop: int) -> NDArray:
        block = _prepare(x[start:stop], metric)
        block = block - mean if mean.any() else block
        return block.T @ block

    acc = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for gram in _map_blocks(block_gram, x.shape[0], workers):
        acc += gram
    acc /= x.shape[0]
    return (acc + acc.T) / 2


def _fit_scale(x: NDArray[np.float32], q: NDArray[np.float32] | None,
               metric: str) -> float:
    """Power of two that brings the largest magnitude into [2^49, 2^50) when it
    lies outside [2^-40, 2^50] (float32 second moments would overflow or
    underflow), else 1.

    Every solver's matrices are unchanged when ``x`` and ``q`` are scaled by the
    same factor; only the mean is scaled back.
    """
    if metric == "cosine":
        return 1.0
    largest = max_abs(x)
    if q is not None:
        largest = max(largest, max_abs(q))
    return range_scale(largest)


def _sample_rows(x: NDArray, size: int, rng: np.random.Generator) -> NDArray:
    """Return at most ``size`` rows of ``x`` drawn without replacement, in order."""
    if x.shape[0] <= size:
        return x
    return x[np.sort(rng.choice(x.shape[0], size, replace=False))]


def _eigh_desc(k: NDArray) -> tuple[NDArray, NDArray]:
    """Eigenvalues (clipped at 0) and eigenvectors of a symmetric matrix, largest
    first."""
    values, vectors = np.linalg.eigh(k)
    return np.maximum(values[::-1], 0.0), np.ascontiguousarray(vectors[:, ::-1])


# ---------------------------------------------------------------- the loss
def ood_loss(k_x: NDArray, k_q: NDArray, a: NDArray, b: NDArray) -> float:
    """Return ``f(A, B) = ||Q X^T - (Q A)(X B)^T||_F^2`` from the second moments.

    ``f = tr((A^T K_Q A)(B^T K_X B)) - 2 tr(B^T K_X K_Q A) + tr(K_Q K_X)`` with
    ``K_X = X^T X`` and ``K_Q = Q^T Q`` (any common scaling carries over), computed in
    O(dim^2 leanvec_dims) operations.

    Parameters
    ----------
    k_x, k_q : arrays of shape (dim, dim), float64, symmetric
    a, b : arrays of shape (dim, d)

    Returns
    -------
    float
    """
    kqa, kxb = k_q @ a, k_x @ b
    quad = np.sum((a.T @ kqa) * (b.T @ kxb))
    return float(quad - 2.0 * np.sum(kxb * kqa) + np.sum(k_q * k_x))


# ---------------------------------------------------------------- solvers
def _fit_whitened(k_x: NDArray, k_q: NDArray, d: int, root: tuple | None = None,
                  ) -> tuple[NDArray, NDArray, NDArray]:
    """Closed-form minimiser of the OOD loss over all rank-``d`` pairs ``(A, B)``.

    With a factor ``R^T R = K_X`` (Cholesky, or eigenvectors when ``K_X`` is
    singular) and the top eigenpairs ``(S^2, V)`` of ``R K_Q R^T`` (the right
    singular pairs of ``K_Q^(1/2) R^T``): ``B = R^+ V_d S_d^(1/2)`` and
    ``A = R^T V_d S_d^(-1/2) = K_X B S_d^(-1)``, so ``A B^T`` is the best rank-``d``
    approximation in the loss. Returns ``A``, ``B`` (dim, d) and ``S_d^2``, the loss
    each column captures. Columns whose ``S^2`` is below a relative floor are zero.
    ``root`` is ``_root_factor(k_x)`` when already computed.
    """
    factor, solve = root or _root_factor(k_x)
    inner = factor @ k_q @ factor.T
    inner = (inner + inner.T) / 2
    rank = min(d, inner.shape[0])
    gains, vectors = _top_eigh(inner, rank)
    keep = gains > _EIG_FLOOR * max(gains[0], np.finfo(float).tiny)
    s = np.sqrt(np.where(keep, gains, 1.0))
    a = np.zeros((k_x.shape[0], d))
    b = np.zeros((k_x.shape[0], d))
    a[:, :rank] = factor.T @ (vectors * np.where(keep, 1.0 / np.sqrt(s), 0.0))
    b[:, :rank] = solve(vectors * np.where(keep, np.sqrt(s), 0.0))
    return a, b, np.where(keep, gains, 0.0)


def _column_weights(gains: NDArray, power: float) -> NDArray:
    """Weights ``w_i = c s_i^(power - 1)`` that turn singular values ``s_i`` into
    ``c s_i^power``, with ``c`` the least-squares scale ``argmin ||s - c s^power||``.

    ``gains`` holds ``s_i^2``; zero gains get weight 0. ``power = 1`` gives all ones.
    """
    s = np.sqrt(np.maximum(gains, 0.0))
    weights = np.zeros_like(s)
    pos = s > 0
    if pos.any():
        shaped = s[pos] ** power
        scale = np.sum(s[pos] * shaped) / np.sum(shaped * shaped)
        weights[pos] = scale * shaped / s[pos]
    return weights


def _weighted_loss(gains: NDArray, total: float, power: float, d: int) -> float:
    """Relative loss of the first ``d`` columns: ``(total - sum g_i +
    sum g_i (1 - w_i)^2) / total``, ``w`` from :func:`_column_weights`."""
    if total <= 0.0:
        return 0.0
    g = np.maximum(gains[:d], 0.0)
    w = _column_weights(g, power)
    residual = total - np.sum(g) + np.sum(g * (1.0 - w) ** 2)
    return float(min(max(residual / total, 0.0), 1.0))


def _top_ids(scores: NDArray, k: int) -> NDArray:
    """Column ids of the ``k`` largest scores per row (unordered)."""
    return largest_ids(np.ascontiguousarray(scores), k)


def _choose_power(x: NDArray[np.float32], q: NDArray[np.float32],
                  mean: NDArray[np.float32], k_x: NDArray, k_q: NDArray, d: int,
                  metric: str, rng: np.random.Generator, root: tuple,
                  ) -> tuple[float, dict[float, float]]:
    """Pick the spectrum power with the best primary recall@10 on held-out queries.

    ``_VAL_QUERIES`` training queries are held out; the closed form is fitted to
    the rest; each power in ``_POWERS`` is scored by the recall@10 of the reduced
    inner products against the exact top 10 in a sample of ``_VAL_ROWS`` database
    rows. Returns the best power (the largest on ties) and every score.
    """
    n_val = min(_VAL_QUERIES, q.shape[0] // 4)
    k = min(_VAL_K, x.shape[0] - 1)
    if n_val < _MIN_VAL_QUERIES or q.shape[0] - n_val < d or k < 1:
        return 1.0, {}
    order = rng.permutation(q.shape[0])
    l2 = metric in _L2_METRICS
    q_mean = mean if l2 else np.zeros_like(mean)
    val = _prepare(q[order[:n_val]], metric) - q_mean
    # Second moment of the other queries: remove the held-out ones from K_Q.
    k_fit = (q.shape[0] * k_q - val.T.astype(np.float64) @ val) / (q.shape[0] - n_val)
    rows = _prepare(_sample_rows(x, _VAL_ROWS, rng), metric) - mean
    penalty = np.einsum("ij,ij->i", rows, rows) if l2 else np.zeros(rows.shape[0])

    truth = _top_ids(2.0 * (val @ rows.T) - penalty, k)
    a, b, gains = _fit_whitened(k_x, k_fit, d, root)
    qa, xb = val @ a.astype(np.float32), rows @ b.astype(np.float32)
    scores = {}
    for power in _POWERS:
        w = _column_weights(gains, power).astype(np.float32)
        found = _top_ids(2.0 * ((qa * w) @ xb.T) - penalty, k)
        hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
        scores[power] = hits / truth.size
    best = max(sorted(scores, reverse=True), key=lambda p: scores[p])
    return best, scores


def _top_eigh(k: NDArray, count: int) -> tuple[NDArray, NDArray]:
    """The ``count`` largest eigenpairs of a symmetric matrix, largest first."""
    n = k.shape[0]
    values, vectors = scipy.linalg.eigh(k, subset_by_index=(n - count, n - 1),
                                        driver="evr")
    return np.maximum(values[::-1], 0.0), np.ascontiguousarray(vectors[:, ::-1])


def _root_factor(k: NDArray) -> tuple[NDArray, Callable[[NDArray], NDArray]]:
    """Return ``R`` (r, dim) with ``R^T R = K`` and a function applying ``R^+``.

    Cholesky when ``K`` is well conditioned; otherwise eigenvectors, with
    eigenvalues below a relative floor dropped (a pseudo-inverse root).
    """
    scale = max(float(np.max(np.diag(k))), np.finfo(float).tiny)
    try:
        lower = scipy.linalg.cholesky(k, lower=True)
    except np.linalg.LinAlgError:
        lower = None
    if lower is not None and np.min(np.diag(lower)) ** 2 > _CHOL_FLOOR * scale:
        return lower.T, partial(scipy.linalg.solve_triangular, lower, trans="T",
                                lower=True)
    values, vectors = _eigh_desc(k)
    keep = values > _EIG_FLOOR * max(values[0], np.finfo(float).tiny)
    keep[0] = True
    root = np.sqrt(values[keep])
    inverse = vectors[:, keep] / np.where(root > 0, root, 1.0)
    return root[:, None] * vectors[:, keep].T, partial(np.matmul, inverse)


def _fit_eigen(k_x: NDArray, k_q: NDArray, d: int) -> tuple[NDArray, float]:
    """Top-``d`` eigenvectors of ``(1 - beta) K_X / ||K_X|| + beta K_Q / ||K_Q||``.

    ``beta`` minimises ``f(P, P)``: a grid of 11 values, then golden-section steps
    in the bracket around the best grid point. Returns ``P`` (dim, d) and ``beta``.
    """
    k_x = k_x / max(np.linalg.norm(k_x), np.finfo(float).tiny)
    k_q = k_q / max(np.linalg.norm(k_q), np.finfo(float).tiny)
    cache: dict[float, tuple[float, NDArray]] = {}

    def evaluate(beta: float) -> float:
        if beta not in cache:
            p = _eigh_desc((1.0 - beta) * k_x + beta * k_q)[1][:, :d]
            cache[beta] = (ood_loss(k_x, k_q, p, p), p)
        return cache[beta][0]

    losses = [evaluate(float(beta)) for beta in _BETA_GRID]
    best = int(np.argmin(losses))
    low = _BETA_GRID[max(best - 1, 0)]
    high = _BETA_GRID[min(best + 1, _BETA_GRID.size - 1)]
    _golden_section(evaluate, float(low), float(high))
    beta = min(cache, key=lambda key: cache[key][0])
    return cache[beta][1], beta


def _golden_section(func: Callable[[float], float], low: float, high: float) -> None:
    """Run a few golden-section steps of ``func`` on ``[low, high]``."""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    for _ in range(_GOLDEN_STEPS):
        if func(left) <= func(right):
            high, right = right, left
            left = high - ratio * (high - low)
        else:
            low, left = left, right
            right = low + ratio * (high - low)


def _fit_frank_wolfe(
    k_x: NDArray, k_q: NDArray, start: NDArray, max_steps: int, tol: float
) -> tuple[NDArray, NDArray, list[float]]:
    """Frank-Wolfe block-coordinate descent on the spectral-norm ball.

    Each block moves to ``(1 - gamma) M + gamma S`` with ``S = -U V^T`` from the thin
    SVD of the block gradient and ``gamma`` the exact minimiser on [0, 1] (the loss
    is quadratic in each block). Each step costs four (dim, dim) x (dim, d) products.
    Returns ``A``, ``B`` and the loss after every step (the start first).
    """
    a, b = start.copy(), start.copy()
    kqa, kxb = k_q @ a, k_x @ b
    history = [ood_loss(k_x, k_q, a, b)]
    for _ in range(max_steps):
        a, kqa = _block_step(k_q, k_x, a, kqa, b, kxb)
        b, kxb = _block_step(k_x, k_q, b, kxb, a, kqa)
        history.append(ood_loss(k_x, k_q, a, b))
        if abs(history[-2] - history[-1]) <= tol * abs(history[-2]):
            break
    return a, b, history


def _block_step(
    k_own: NDArray, k_other: NDArray, own: NDArray, k_own_own: NDArray,
    other: NDArray, k_other_other: NDArray,
) -> tuple[NDArray, NDArray]:
    """One exact-line-search Frank-Wolfe step on one block; returns it and K times it.

    For block ``A`` (own) with ``B`` fixed: ``grad = 2 (K_Q A M - K_Q K_X B)`` with
    ``M = B^T K_X B``; along ``delta = S - A`` the loss changes by
    ``gamma <grad, delta> + gamma^2 tr(delta^T K_Q delta M)``.
    """
    m = other.T @ k_other_other
    grad = 2.0 * (k_own_own @ m - k_own @ k_other_other)
    u, _, vt = np.linalg.svd(grad, full_matrices=False)
    target = -(u @ vt)
    k_target = k_own @ target
    delta, k_delta = target - own, k_target - k_own_own
    slope = float(np.sum(grad * delta))
    curve = float(np.sum((delta.T @ k_delta) * m))
    gamma = 0.0
    if slope < 0:
        gamma = min(1.0, -slope / (2.0 * curve)) if curve > 0 else 1.0
    return own + gamma * delta, k_own_own + gamma * k_delta


# ---------------------------------------------------------------- validation
def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` when it is one of ``choices``, else raise naming them."""
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")
    return value


def _check_tol(tol: object) -> float:
    """Return ``tol`` as a float in [0, 1)."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a real number, got {tol!r}")
    if not 0.0 <= float(tol) < 1.0:
        raise ValueError(f"tol must be in [0, 1), got {tol}")
    return float(tol)


def _check_rows(x: NDArray, name: str, leanvec_dims: int) -> None:
    """Raise when ``x`` has fewer rows than ``leanvec_dims``."""
    if x.shape[0] < leanvec_dims:
        raise ValueError(
            f"{name} has {x.shape[0]} rows (after sampling), fewer than "
            f"leanvec_dims={leanvec_dims}: pass more rows or a smaller leanvec_dims"
        )


# ---------------------------------------------------------------- the model
class LeanVec(Saveable):
    """Linear reduction of embeddings for search: LeanVec-ID (PCA) or LeanVec-OOD.

    A query ``q`` and a database vector ``x`` are reduced to ``A^T q`` and
    ``B^T (x - mean)`` (the *primary* vectors), so that their inner product
    approximates ``<q, x> - <q, mean>``: the same ranking as ``<q, x>``.

    Parameters
    ----------
    leanvec_dims : int
        Dimension ``d`` of the reduced vectors; ``1 <= d < dim``.
    kind : {"id", "ood"}
        ``"id"``: PCA of the database (A == B). ``"ood"``: fit ``A`` and ``B`` to
        ``train_queries`` too, by minimising the error of all query-database inner
        products (ALGORITHMS.md, section 1).
    solver : {"whitened", "eigen", "frank_wolfe"} or None
        OOD solver; None picks ``"whitened"``. Must be None for ``kind="id"``.
        ``"whitened"`` is the exact minimiser over all rank-``d`` pairs (A, B) and
        is nested in ``d``; ``"eigen"`` searches the top eigenvectors of a mix of the
        two second moments (A == B, orthonormal); ``"frank_wolfe"`` is block
        coordinate descent on the spectral-norm ball, started from PCA.
    metric : {"cosine", "inner_product", "sqeuclidean", "euclidean"}
        The search metric (``"angular"`` is an alias of ``"cosine"``). Under cosine
        rows are scaled to unit norm in fit and transform (zero rows stay zero).
        Under the L2 metrics queries are centred by ``mean`` as well.
    sample_size : int
        At most this many database rows (and training queries), drawn with
        ``seed``, are used to fit.
    seed : int
        Seed of the row sample.
    center : bool
        Subtract the database mean before fitting and transforming the database.
        Without it ``mean`` is all zeros.
    max_steps, tol : int, float
        Frank-Wolfe stops after ``max_steps`` steps or when the loss changes by less
        than ``tol`` relative to the previous step.
    n_threads : int or None
        Threads for fitting and transforming (None: every core). When
        ``threadpoolctl`` is installed, BLAS is limited to one thread per worker
        for the duration of the call (process-wide, restored afterwards).
    spectrum_power : float in (0, 2] or None
        ``"whitened"`` only. The reduced inner product weights the ``i``-th
        direction of the closed form by ``c s_i^p`` instead of its singular value
        ``s_i`` (``c``: the least-squares scale). ``1`` is the exact closed form
        (least training loss). None holds out 256 training queries (a quarter when
        fewer than 1,024; at least 16, else ``p = 1``), fits to the rest, and picks
        ``p`` in {1, 0.9, ..., 0.5} by their primary recall@10 against the exact top
        10 in 10,000 sampled database rows.

    Attributes
    ----------
    database_matrix : array of shape (dim, leanvec_dims), float32
        ``B``.
    query_matrix : array of shape (dim, leanvec_dims), float32
        ``A`` (the same array as ``B`` when ``orthonormal``).
    mean : array of shape (dim,), float32
        Subtracted from database rows (and, under the L2 metrics, from queries).
    orthonormal : bool
        True when ``A == B`` with orthonormal columns (``kind="id"``, ``"eigen"``):
        primary vectors then keep L2 and inner-product geometry. False for
        ``"whitened"`` and ``"frank_wolfe"``: search the primary vectors by inner
        product.
    loss_ : float
        Relative training loss: ``f(A, B) / ||Q X^T||_F^2`` for OOD, the share of
        the database variance left out for ID; 0 when there is nothing to capture.
    fit_seconds_ : float
        Wall time of :meth:`fit`.
    solver_ : str
        The solver used: ``"pca"`` for ID.
    beta_ : float or None
        The mixing weight the eigenvector search chose.
    loss_history_ : list of float
        Frank-Wolfe's absolute loss before the first step and after each step.
    spectrum_power_ : float
        The spectrum power used (1 for the other solvers).
    power_scores_ : dict of float to float
        Held-out recall@10 of each spectrum power tried (empty when none was).

    Notes
    -----
    Why ``"whitened"`` with an automatic spectrum power is the default
    (docs/benchmarks.md, 2026-12-04): on the wordnet OOD set its primary
    recall@10 was 0.635 / 0.740 at d = 96 / 128, against 0.555 / 0.669 for PCA,
    0.600 / 0.715 for the exact closed form, 0.596 / 0.711 for ``"eigen"``, 0.597 /
    0.709 for ``"frank_wolfe"`` and 0.603 / 0.716 for the reference Frank-Wolfe of
    ``svs.compute_leanvec_matrices``; it was ahead of the reference at every d from
    32 to 192, and on the ID set too. It fits in 1.4 s of CPU at dim 768 with 100k
    rows and 10k queries (the reference: 13-46 s). The exact closed form
    (``spectrum_power=1``) has the lowest held-out inner-product error; the power
    trades some of it for ranking. On the synthetic 768-d set the validation picks
    ``p = 1``. Its primary vectors live in inner-product geometry.

    Frank-Wolfe takes the exact minimising step along each block's direction (the
    loss is quadratic in one block) instead of the fixed ``1 / (t + 1)`` schedule:
    the loss never increases and the PCA start is not discarded by a first full
    step.

    L2 with a non-orthonormal projection: ``||q - x||^2 = ||q - mean||^2 +
    ||x - mean||^2 - 2 <q - mean, x - mean>``. Keep :meth:`centred_sq_norms` of every
    database vector (computed once from the full vectors), compute it for each
    query, and approximate the inner product by the primary vectors' inner product.

    Columns beyond the rank of the problem (rank-deficient data, duplicate rows,
    constant columns) are zero for ``"whitened"``; for PCA and ``"eigen"`` they are
    arbitrary orthonormal directions that carry no variance. Either way the
    reduced inner products are exact when the data has rank at most ``d``.
    """

    state_kind = STATE_KIND

    def __init__(
        self,
        leanvec_dims: int,
        kind: Kind = "id",
        solver: Solver | None = None,
        metric: str = "cosine",
        sample_size: int = 100_000,
        seed: int = 0,
        center: bool = True,
        max_steps: int = 500,
        tol: float = 1e-3,
        n_threads: int | None = None,
        spectrum_power: float | None = None,
    ) -> None:
        self.leanvec_dims = check_positive_int(leanvec_dims, "leanvec_dims")
        self.kind = _check_choice(kind, "kind", ("id", "ood"))
        if solver is not None and self.kind == "id":
            raise ValueError(
                f"solver applies to kind='ood' only; got solver={solver!r} with "
                "kind='id' (PCA)"
            )
        if solver is not None:
            _check_choice(solver, "solver", SOLVERS)
        self.solver = solver
        self.metric = check_metric(metric)
        self.sample_size = check_positive_int(sample_size, "sample_size")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        if not isinstance(center, (bool, np.bool_)):
            raise TypeError(f"center must be a bool, got {center!r}")
        self.center = bool(center)
        self.max_steps = check_positive_int(max_steps, "max_steps")
        self.tol = _check_tol(tol)
        self.n_threads = check_n_threads(n_threads)
        self.spectrum_power = self._check_power(spectrum_power)
        self._reset()

    def _check_power(self, power: object) -> float | None:
        """Validate ``spectrum_power``: None, or a real in (0, 2], whitened only."""
        if power is None:
            return None
        if isinstance(power, bool) or not isinstance(power, numbers.Real):
            raise TypeError(f"spectrum_power must be a real number or None, got "
                            f"{power!r}")
        if not 0.0 < float(power) <= 2.0:
            raise ValueError(f"spectrum_power must be in (0, 2], got {power}")
        if self.kind != "ood" or (self.solver or DEFAULT_SOLVER) != "whitened":
            raise ValueError("spectrum_power applies to kind='ood' with the "
                             f"'whitened' solver only; got kind={self.kind!r}, "
                             f"solver={self.solver!r}")
        return float(power)

    def _reset(self) -> None:
        self.solver_ = "pca" if self.kind == "id" else self.solver or DEFAULT_SOLVER
        self.dim: int | None = None
        self.database_matrix: NDArray[np.float32] | None = None
        self.query_matrix: NDArray[np.float32] | None = None
        self.mean: NDArray[np.float32] | None = None
        self.loss_: float | None = None
        self.fit_seconds_: float | None = None
        self.beta_: float | None = None
        self.spectrum_power_ = 1.0
        self.power_scores_: dict[float, float] = {}
        self.loss_history_: list[float] = []
        self._gains = np.zeros(0)
        self._total = 0.0

    def __repr__(self) -> str:
        state = "unfitted" if self.dim is None else f"dim={self.dim}"
        return (f"LeanVec(leanvec_dims={self.leanvec_dims}, kind={self.kind!r}, "
                f"solver={self.solver_!r}, metric={self.metric!r}, {state})")

    @property
    def orthonormal(self) -> bool:
        """True when ``A == B`` with orthonormal columns (PCA and ``"eigen"``)."""
        return self.solver_ in ("pca", "eigen")

    @property
    def nested(self) -> bool:
        """True when :meth:`truncate` is exact: PCA and ``"whitened"``."""
        return self.solver_ in ("pca", "whitened")

    # ------------------------------------------------------------ fitting
    def fit(
        self, database: ArrayLike, train_queries: ArrayLike | None = None
    ) -> LeanVec:
        """Fit the projection.

        Parameters
        ----------
        database : array-like of shape (n, dim)
            Database vectors (any real dtype, cast to float32); a random sample of
            ``sample_size`` rows is used.
        train_queries : array-like of shape (m, dim) or None
            Training queries, required for ``kind="ood"`` and refused for
            ``kind="id"``. Never the test queries. Inputs whose largest magnitude
            lies outside [2^-40, 2^50] are fitted after a common power-of-two
            scaling (the matrices do not depend on it; the mean is scaled back).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When ``leanvec_dims >= dim``, a sample has fewer rows than
            ``leanvec_dims``, ``train_queries`` is missing (OOD) or given (ID), the
            widths differ, or an input holds NaN or infinity.
        TypeError
            When an input does not hold real numbers.
        """
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        x, q = self._check_fit_input(database, train_queries)
        x = _sample_rows(x, self.sample_size, rng)
        _check_rows(x, "database", self.leanvec_dims)
        if q is not None:
            q = _sample_rows(q, self.sample_size, rng)
            _check_rows(q, "train_queries", self.leanvec_dims)

        self._reset()
        scale = _fit_scale(x, q, self.metric)
        if scale != 1.0:
            x = apply_scale(x, scale)
            q = None if q is None else apply_scale(q, scale)
        with _blas_workers(self.n_threads) as workers:
            mean = self._mean_of(x, workers)
            k_x = _second_moment(x, mean, self.metric, workers)
            if self.kind == "id":
                a, b = self._fit_pca(k_x)
            else:
                q_mean = mean if self.metric in _L2_METRICS else np.zeros_like(mean)
                k_q = _second_moment(q, q_mean, self.metric, workers)
                a, b = self._fit_ood(k_x, k_q, x, q, mean, rng)

        self._set_matrices(a, b, apply_scale(mean, 1.0 / scale), x.shape[1])
        self.fit_seconds_ = time.perf_counter() - start
        logger.info("%r fitted in %.2f s, relative loss %.4g", self,
                    self.fit_seconds_, self.loss_)
        return self

    def _check_fit_input(
        self, database: ArrayLike, train_queries: ArrayLike | None
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Validate the inputs of :meth:`fit`; return them as float32 matrices."""
        x = as_matrix(database, "database")
        if self.leanvec_dims >= x.shape[1]:
            raise ValueError(
                f"leanvec_dims must be smaller than the database dimension "
                f"{x.shape[1]}; got leanvec_dims={self.leanvec_dims}"
            )
        if self.kind == "ood" and train_queries is None:
            raise ValueError(
                "kind='ood' needs train_queries (a sample of queries, not the test "
                "queries); pass them, or use kind='id'"
            )
        if self.kind == "id" and train_queries is not None:
            raise ValueError(
                "train_queries are used only by kind='ood'; create "
                "LeanVec(leanvec_dims, kind='ood') to fit to them, or leave them out "
                "for kind='id'"
            )
        if train_queries is None:
            return x, None
        return x, as_matrix(train_queries, "train_queries", dim=x.shape[1])

    def _mean_of(self, x: NDArray[np.float32], workers: int) -> NDArray[np.float32]:
        """The database mean (float32), or zeros when ``center`` is off."""
        if not self.center:
            return np.zeros(x.shape[1], dtype=np.float32)
        return _mean(x, self.metric, workers)

    def _fit_pca(self, k_x: NDArray) -> tuple[NDArray, NDArray]:
        """PCA: the top eigenvectors of the database covariance, for A and B."""
        values, vectors = _eigh_desc(k_x)
        self._gains, self._total = values, float(np.trace(k_x))
        self.loss_ = _weighted_loss(values, self._total, 1.0, self.leanvec_dims)
        p = vectors[:, :self.leanvec_dims]
        return p, p

    def _fit_ood(self, k_x: NDArray, k_q: NDArray, x: NDArray, q: NDArray,
                 mean: NDArray, rng: np.random.Generator) -> tuple[NDArray, NDArray]:
        """Run the chosen OOD solver; set ``loss_`` (and the solver's extras)."""
        d, total = self.leanvec_dims, float(np.sum(k_q * k_x))
        if self.solver_ == "whitened":
            power, root = self.spectrum_power, _root_factor(k_x)
            if power is None:
                power, self.power_scores_ = _choose_power(
                    x, q, mean, k_x, k_q, d, self.metric, rng, root)
                logger.info("spectrum power %.2f chosen; held-out recall@10 %s",
                            power, self.power_scores_)
            a, b, self._gains = _fit_whitened(k_x, k_q, d, root)
            root = np.sqrt(_column_weights(self._gains, power))
            a, b = a * root, b * root
            self._total, self.spectrum_power_ = total, power
        elif self.solver_ == "eigen":
            a, self.beta_ = _fit_eigen(k_x, k_q, d)
            b = a
        else:
            start = _eigh_desc(k_x)[1][:, :d]
            a, b, self.loss_history_ = _fit_frank_wolfe(
                k_x, k_q, start, self.max_steps, self.tol)
            logger.info("Frank-Wolfe ran %d steps", len(self.loss_history_) - 1)
        loss = ood_loss(k_x, k_q, a, b)
        self.loss_ = float(min(max(loss / total, 0.0), 1.0)) if total > 0 else 0.0
        return a, b

    def _set_matrices(self, a: NDArray, b: NDArray, mean: NDArray, dim: int) -> None:
        """Store the fitted matrices as float32 (one shared array when A is B)."""
        self.dim = dim
        self.database_matrix = np.ascontiguousarray(b, dtype=np.float32)
        if a is b:
            self.query_matrix = self.database_matrix
        else:
            self.query_matrix = np.ascontiguousarray(a, dtype=np.float32)
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)

    # ------------------------------------------------------------ transforms
    def _check_fitted(self) -> None:
        if self.database_matrix is None:
            raise ValueError(
                "this LeanVec is not fitted yet; call fit(database, ...) or load one"
            )

    def transform_database(
        self,
        database: ArrayLike,
        progress: Callable[[int, int], None] | None = None,
    ) -> NDArray[np.float32]:
        """Reduce database vectors: ``B^T (x - mean)`` per row, in row blocks.

        Parameters
        ----------
        database : array-like of shape (n, dim)
        progress : callable or None
            Called as ``progress(rows_done, n)`` after each block of 8192 rows.

        Returns
        -------
        array of shape (n, leanvec_dims), float32
        """
        self._check_fitted()
        x = as_matrix(database, "database", dim=self.dim, allow_empty=True)
        out = np.empty((x.shape[0], self.leanvec_dims), dtype=np.float32)

        def reduce_block(start: int, stop: int) -> int:
            block = _prepare(x[start:stop], self.metric) - self.mean
            np.matmul(block, self.database_matrix, out=out[start:stop])
            return stop

        with _blas_workers(self.n_threads) as workers:
            for stop in _map_blocks(reduce_block, x.shape[0], workers):
                if progress is not None:
                    progress(stop, x.shape[0])
        return out

    def transform_queries(self, queries: ArrayLike) -> NDArray[np.float32]:
        """Reduce queries: ``A^T q`` (``A^T (q - mean)`` under the L2 metrics).

        Parameters
        ----------
        queries : array-like of shape (m, dim)

        Returns
        -------
        array of shape (m, leanvec_dims), float32
        """
        self._check_fitted()
        q = _prepare(as_matrix(queries, "queries", dim=self.dim, allow_empty=True),
                     self.metric)
        if self.metric in _L2_METRICS:
            q = q - self.mean
        return np.ascontiguousarray(q @ self.query_matrix, dtype=np.float32)

    def centred_sq_norms(self, vectors: ArrayLike) -> NDArray[np.float32]:
        """Return ``||v - mean||^2`` per row (after unit scaling under cosine).

        The L2 metrics with a non-orthonormal projection need it for every
        database vector and query: see the class Notes.

        Parameters
        ----------
        vectors : array-like of shape (n, dim)

        Returns
        -------
        array of shape (n,), float32
        """
        self._check_fitted()
        v = as_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        v = _prepare(v, self.metric) - self.mean
        return np.einsum("ij,ij->i", v, v, dtype=np.float64).astype(np.float32)

    def truncate(self, leanvec_dims: int) -> LeanVec:
        """Return a new model keeping the first ``leanvec_dims`` columns.

        Exact for PCA and ``"whitened"`` (their solutions are nested in ``d``: the
        result equals a fit at the smaller ``d`` with the same spectrum power);
        refused for the other solvers. An automatically chosen spectrum power is
        kept, not chosen again for the smaller ``d``.

        Raises
        ------
        ValueError
            When the model is not fitted, not nested, or ``leanvec_dims`` is not in
            ``[1, self.leanvec_dims]``.
        """
        self._check_fitted()
        d = check_positive_int(leanvec_dims, "leanvec_dims")
        if d > self.leanvec_dims:
            raise ValueError(
                f"leanvec_dims must be at most the fitted {self.leanvec_dims}; got {d}"
            )
        if not self.nested:
            raise ValueError(
                f"solver {self.solver_!r} is not nested in leanvec_dims; refit at "
                f"leanvec_dims={d}, or use kind='id' or solver='whitened'"
            )
        meta, arrays = self.to_state()
        meta["leanvec_dims"] = d
        meta["loss_"] = _weighted_loss(self._gains, self._total,
                                       self.spectrum_power_, d)
        scale = self._truncation_scale(d)
        for name in ("database_matrix", "query_matrix"):
            if name in arrays:
                arrays[name] = np.ascontiguousarray(arrays[name][:, :d] * scale)
        return LeanVec.from_state(meta, arrays)

    def _truncation_scale(self, d: int) -> np.float32:
        """Column scale that refits the least-squares constant of a spectrum power
        other than 1 to the first ``d`` columns (1 otherwise)."""
        old = _column_weights(self._gains[:self.leanvec_dims], self.spectrum_power_)
        new = _column_weights(self._gains[:d], self.spectrum_power_)
        if self.spectrum_power_ == 1.0 or old.size == 0 or old[0] <= 0:
            return np.float32(1.0)
        return np.float32(np.sqrt(new[0] / old[0]))

    # ------------------------------------------------------------ persistence
    _PARAMS = ("leanvec_dims", "kind", "solver", "metric", "sample_size", "seed",
               "center", "max_steps", "tol", "n_threads", "spectrum_power")

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return ``(meta, arrays)`` for :mod:`leanvec.persistence` (see ``nest``)."""
        self._check_fitted()
        meta = {name: getattr(self, name) for name in self._PARAMS}
        meta.update(dim=self.dim, loss_=self.loss_, fit_seconds_=self.fit_seconds_,
                    beta_=self.beta_, total=self._total,
                    spectrum_power_=self.spectrum_power_,
                    power_scores_=[[k, v] for k, v in self.power_scores_.items()],
                    shared=self.query_matrix is self.database_matrix)
        arrays = {"database_matrix": self.database_matrix, "mean": self.mean,
                  "gains": np.asarray(self._gains, dtype=np.float64),
                  "loss_history": np.asarray(self.loss_history_, dtype=np.float64)}
        if not meta["shared"]:
            arrays["query_matrix"] = self.query_matrix
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LeanVec:
        """Rebuild a fitted model from :meth:`to_state`'s output.

        Raises
        ------
        ValueError
            When an entry is missing or the arrays' shapes disagree with ``meta``.
        """
        try:
            model = cls(**{name: meta[name] for name in cls._PARAMS})
            b = arrays["database_matrix"]
            a = b if meta["shared"] else arrays["query_matrix"]
            mean, dim = arrays["mean"], int(meta["dim"])
        except KeyError as err:
            raise ValueError(f"LeanVec state lacks the entry {err}") from None
        expected = (dim, model.leanvec_dims)
        if a.shape != expected or b.shape != expected or mean.shape != (dim,):
            raise ValueError(
                f"LeanVec state holds matrices {a.shape} and {b.shape} and mean "
                f"{mean.shape}; expected {expected} and ({dim},)"
            )
        model._set_matrices(a, a if meta["shared"] else b, mean, dim)
        model.loss_, model.fit_seconds_ = meta["loss_"], meta["fit_seconds_"]
        model.beta_, model._total = meta["beta_"], float(meta["total"])
        model.spectrum_power_ = float(meta.get("spectrum_power_", 1.0))
        model.power_scores_ = {float(k): float(v)
                               for k, v in meta.get("power_scores_", [])}
        model._gains = arrays.get("gains", np.zeros(0))
        model.loss_history_ = [float(v) for v in arrays.get("loss_history", [])]
        return model
