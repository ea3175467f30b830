"""Product quantization (PQ) and LR²VQ: a learned orthonormal projection, then PQ.

Both store a vector as ``n_bytes`` uint8 centroid ids (256 centroids a subspace)
and compute asymmetric distances from per-query tables (see
:mod:`leanvec._kernels.pq`). :func:`estimate_dims` predicts LR²VQ's projected
dimension from the data's spectrum. ``LR2VQ(codebooks="residual")`` codes the
projected vectors with additive codebooks instead (:mod:`leanvec.rq`), searched
through the same tables.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels.pq import assign_nearest, cluster_sums, pq_scan
from ._kernels.topk import NO_ID, finish_heaps
from ._validation import as_matrix, check_metric, check_positive_int
from .persistence import Saveable
from .rq import ResidualCodebooks

logger = logging.getLogger(__name__)

__all__ = ["LR2VQ", "PQ", "DimsEstimate", "estimate_dims"]

N_CENTROIDS = 256
_ENCODE_BLOCK = 65536
_PQ_KIND = "leanvec.PQ"
_LR2VQ_KIND = "leanvec.LR2VQ"
# recall@10 a larger d' may lose in the sweep's short trials and still be chosen:
# at 8 bytes on 384-d text embeddings a full-width rotation trailed d' = 120 by
# 0.008-0.015 in the trials and beat it by 0.01-0.025 after full training
_SWEEP_SLACK = 0.025
_CODEBOOKS = ("product", "residual")
_RESIDUAL_MAX_ABS = 2.0 ** 56


# -- k-means ---------------------------------------------------------------------


def _assign(x: NDArray[np.float32], centroids: NDArray[np.float32],
            ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Nearest centroid of each row of ``x`` and the squared error.

    Distances are expanded as ||x||^2 - 2 <x, c> + ||c||^2 around the centroids'
    mean: about the origin, data far from it (norms much larger than the
    distances) lost every digit in float32 and was coded to arbitrary centroids.
    """
    labels = np.empty(x.shape[0], dtype=np.int64)
    errors = np.empty(x.shape[0], dtype=np.float32)
    centre = centroids.mean(axis=0, dtype=np.float64).astype(np.float32)
    centroids = np.ascontiguousarray(centroids - centre)
    x = np.ascontiguousarray(x - centre)
    sq = np.einsum("ij,ij->i", centroids, centroids).astype(np.float32)
    assign_nearest(x, centroids, sq, labels, errors)
    return labels, errors


def _update(x, labels, errors, centroids) -> None:
    """Move centroids to their clusters' means; re-seed empty ones in place.

    An empty cluster takes the row with the largest current error (rows already
    used for re-seeding are skipped), so no centroid is ever NaN.
    """
    k, d = centroids.shape
    counts = np.zeros(k, dtype=np.int64)
    sums = np.zeros((k, d), dtype=np.float64)
    cluster_sums(x, labels, sums, counts)
    full = counts > 0
    centroids[full] = (sums[full] / counts[full, None]).astype(np.float32)
    empty = np.flatnonzero(~full)
    if empty.size:
        worst = np.argsort(-errors, kind="stable")[: empty.size]
        centroids[empty] = x[worst]
        errors[worst] = 0.0


def kmeans(x: NDArray[np.float32], k: int, n_iter: int, rng: np.random.Generator,
           init: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
    """Lloyd's k-means on rows of ``x``; returns centroids (k, d) float32.

    Starts from ``init`` or from ``k`` distinct random rows; needs ``len(x) >= k``.
    """
    if init is None:
        centroids = x[rng.choice(x.shape[0], k, replace=False)].copy()
    else:
        centroids = init.copy()
    for _ in range(n_iter):
        labels, errors = _assign(x, centroids)
        _update(x, labels, errors, centroids)
    return centroids


# -- product quantization ----------------------------------------------------------


def _check_n_bytes(n_bytes: object) -> int:
    return check_positive_int(n_bytes, "n_bytes")


def _check_divides(dim: int, n_bytes: int, name: str) -> None:
    if dim % n_bytes:
        raise ValueError(
            f"n_bytes={n_bytes} must divide {name}={dim} (each byte codes "
            f"{name} / n_bytes coordinates); try n_bytes in "
            f"{[m for m in range(1, min(dim, 64) + 1) if dim % m == 0]}"
        )


def _check_train_rows(n: int, name: str = "train") -> None:
    if n < N_CENTROIDS:
        raise ValueError(
            f"{name} has {n} rows, fewer than the {N_CENTROIDS} centroids of each "
            f"codebook; give at least {N_CENTROIDS} training rows"
        )


class PQ(Saveable):
    """Product quantizer: ``n_bytes`` subspaces of 256 k-means centroids each.

    Parameters
    ----------
    n_bytes : int
        Subspaces (bytes per vector); must divide the data's dimension.
    n_iter : int
        k-means iterations per subspace.
    max_train : int
        Rows sampled (with ``seed``) from the training data.
    seed : int
        Seed of the sample and the k-means initialisation.

    Attributes
    ----------
    codebooks : array of shape (n_bytes, 256, dim / n_bytes), float32
    """

    state_kind = _PQ_KIND

    def __init__(self, n_bytes: int, n_iter: int = 20, max_train: int = 100_000,
                 seed: int = 0) -> None:
        self.n_bytes = _check_n_bytes(n_bytes)
        self.n_iter = check_positive_int(n_iter, "n_iter")
        self.max_train = check_positive_int(max_train, "max_train", N_CENTROIDS)
        self.seed = seed
        self.codebooks: NDArray[np.float32] | None = None

    @property
    def dim(self) -> int | None:
        """Features per vector, or None before :meth:`fit`."""
        if self.codebooks is None:
            return None
        return self.codebooks.shape[0] * self.codebooks.shape[2]

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector."""
        return self.n_bytes

    def fit(self, train: ArrayLike) -> PQ:
        """Learn the codebooks from ``train`` (n, dim); returns ``self``."""
        train = as_matrix(train, "train")
        _check_divides(train.shape[1], self.n_bytes, "dim")
        _check_train_rows(train.shape[0])
        rng = np.random.default_rng(self.seed)
        train = _sample(train, self.max_train, rng)
        self.codebooks = self._train(train, rng, self.n_iter)
        return self

    def encode(self, vectors: ArrayLike) -> NDArray[np.uint8]:
        """Codes of ``vectors`` (n, dim): array of shape (n, n_bytes), uint8."""
        vectors = as_matrix(vectors, "vectors", self._require_dim(), allow_empty=True)
        return self._encode(vectors)

    def decode(self, codes: ArrayLike) -> NDArray[np.float32]:
        """Reconstruct vectors (n, dim) float32 from codes (n, n_bytes) uint8."""
        codes = self._check_codes(codes)
        m = np.arange(self.n_bytes)
        parts = self.codebooks[m[None, :], codes]  # (n, M, dsub)
        return np.ascontiguousarray(parts.reshape(codes.shape[0], -1))

    def distance_tables(self, queries: NDArray[np.float32], metric: str,
                        lanes: int = 0) -> NDArray[np.float32]:
        """Per-query tables (n_queries, n_bytes, 256) float32 of distance terms.

        ``metric`` "inner_product" gives ``-<y_m, C_m[c]>``; "sqeuclidean" gives
        ``||y_m - C_m[c]||^2``. ``queries`` are already checked float32 rows.
        ``lanes`` > 0 returns them in blocks of ``lanes`` queries instead: an array
        of shape (ceil(n_queries / lanes), n_bytes, 256, lanes) holding query
        ``b * lanes + j`` at ``[b, :, :, j]`` (the layout of
        :func:`leanvec._kernels.pq.pq_scan_blocked`; lanes past the last query hold
        the tables of a zero query).
        """
        n_queries = queries.shape[0]
        width = lanes if lanes > 0 else max(n_queries, 1)
        n_blocks = -(-n_queries // width)
        dsub = self.codebooks.shape[2]
        books = self.codebooks
        sub = np.zeros((n_blocks * width, self.n_bytes, dsub), dtype=np.float32)
        sub[:n_queries] = queries.reshape(n_queries, self.n_bytes, dsub)
        if metric != "inner_product":
            # ||y - c||^2 = ||y||^2 + ||c||^2 - 2 <y, c> loses every digit in
            # float32 when the norms dwarf the distances (data far from the origin):
            # expand around each subspace's codebook centre instead.
            centre = books.mean(axis=1, dtype=np.float64).astype(np.float32)
            books = books - centre[:, None, :]
            sub[:n_queries] -= centre[None]
        sub = sub.reshape(n_blocks, width, self.n_bytes, dsub).transpose(0, 2, 3, 1)
        ip = np.matmul(books, sub)  # (n_blocks, n_bytes, 256, width)
        if metric == "inner_product":
            tables = np.negative(ip, out=ip)
        else:
            csq = np.einsum("mcd,mcd->mc", books, books)
            qsq = np.einsum("bmdw,bmdw->bmw", sub, sub)
            tables = (qsq[:, :, None, :] + csq[None, :, :, None]
                      - np.float32(2.0) * ip)
            np.maximum(tables, 0.0, out=tables)
        if lanes <= 0:
            tables = tables.transpose(0, 3, 1, 2).reshape(
                n_blocks * width, self.n_bytes, -1)[:n_queries]
        return np.ascontiguousarray(tables, dtype=np.float32)

    def search_tables(self, queries: NDArray[np.float32], metric: str,
                      lanes: int = 0,
                      ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Tables (n_queries, n_bytes, 256) and offsets (n_queries,), float32.

        The table distance ``offset + sum_m tables[m, code_m]`` is ``-<q, xhat>`` for
        "inner_product" and ``||q - xhat||^2`` for "sqeuclidean". ``lanes`` > 0
        gives the tables in blocks of queries (see :meth:`distance_tables`).
        """
        queries = _check_table_args(queries, metric, self._require_dim())
        offsets = np.zeros(queries.shape[0], dtype=np.float32)
        return self.distance_tables(queries, metric, lanes), offsets

    # -- persistence -------------------------------------------------------------

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return ``(meta, arrays)`` for :func:`leanvec.persistence.nest`."""
        self._require_dim()
        meta = {"n_bytes": self.n_bytes, "n_iter": self.n_iter,
                "max_train": self.max_train, "seed": self.seed}
        return meta, {"codebooks": self.codebooks}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> PQ:
        """Inverse of :meth:`to_state`."""
        pq = cls(meta["n_bytes"], meta["n_iter"], meta["max_train"], meta["seed"])
        pq.codebooks = np.ascontiguousarray(arrays["codebooks"], dtype=np.float32)
        return pq

    # -- helpers -----------------------------------------------------------------

    def _require_dim(self) -> int:
        if self.codebooks is None:
            name = type(self).__name__
            raise ValueError(f"this {name} is not fitted: call fit first")
        return self.dim

    def _train(self, train, rng, n_iter, init=None) -> NDArray[np.float32]:
        dsub = train.shape[1] // self.n_bytes
        books = np.empty((self.n_bytes, N_CENTROIDS, dsub), dtype=np.float32)
        for m in range(self.n_bytes):
            part = np.ascontiguousarray(train[:, m * dsub:(m + 1) * dsub])
            start = None if init is None else init[m]
            books[m] = kmeans(part, N_CENTROIDS, n_iter, rng, start)
        return books

    def _encode(self, vectors: NDArray[np.float32]) -> NDArray[np.uint8]:
        dsub = self.codebooks.shape[2]
        codes = np.empty((vectors.shape[0], self.n_bytes), dtype=np.uint8)
        for m in range(self.n_bytes):
            part = np.ascontiguousarray(vectors[:, m * dsub:(m + 1) * dsub])
            codes[:, m] = _assign(part, self.codebooks[m])[0]
        return codes

    def _check_codes(self, codes: ArrayLike) -> NDArray[np.uint8]:
        self._require_dim()
        arr = np.asarray(codes)
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != self.n_bytes:
            raise ValueError(
                f"codes must be a uint8 array of shape (n, {self.n_bytes}), got "
                f"dtype {arr.dtype} and shape {arr.shape}"
            )
        return arr


def _check_table_args(queries, metric: str, dim: int) -> NDArray[np.float32]:
    if metric not in ("inner_product", "sqeuclidean"):
        raise ValueError(f"table metric must be 'inner_product' or 'sqeuclidean' "
                         f"(cosine: normalised queries under inner_product), got "
                         f"{metric!r}")
    return as_matrix(queries, "queries", dim, allow_empty=True)


def _check_residual_range(x: NDArray[np.float32], name: str) -> None:
    """Residual codes rank by squared norms in float32: keep them finite."""
    top = float(np.abs(x).max()) if x.size else 0.0
    if top >= _RESIDUAL_MAX_ABS:
        raise ValueError(
            f"{name} has values {top:.3g} away from the fitted mean; residual "
            f"codebooks need less than {_RESIDUAL_MAX_ABS:.3g} (squared norms "
            f"overflow float32): scale the data first (CompressedIndex does)")


def _sample(x: NDArray[np.float32], size: int, rng: np.random.Generator):
    if x.shape[0] <= size:
        return x
    return x[np.sort(rng.choice(x.shape[0], size, replace=False))]


# -- the projected dimension from the spectrum --------------------------------------


@dataclasses.dataclass
class DimsEstimate:
    """Predicted per-vector squared error of "project to d', then PQ" for each d'.

    Attributes
    ----------
    dims : array of shape (n_candidates,), int64
        Candidate projected dimensions, the multiples of ``n_bytes`` up to ``dim``.
    lowrank_error : array of shape (n_candidates,), float64
        Variance discarded by the projection: the sum of the dropped eigenvalues.
    cluster_error : array of shape (n_candidates,), float64
        High-resolution estimate of the PQ error, ``d' GM(lambda_1..d') 256^(-2 / s)``
        with ``s = d' / n_bytes`` coordinates per byte.
    total_error : array of shape (n_candidates,), float64
    valid : array of shape (n_candidates,), bool
        Whether the estimate's assumption holds: every kept eigenvalue is at least
        the per-coordinate quantization error (reverse water-filling).
    best : int
        The valid candidate with the smallest total error.
    """

    dims: NDArray[np.int64]
    lowrank_error: NDArray[np.float64]
    cluster_error: NDArray[np.float64]
    total_error: NDArray[np.float64]
    valid: NDArray[np.bool_]
    best: int


def _spectrum(centred: NDArray[np.float32]) -> tuple[NDArray, NDArray]:
    """Eigenvalues (descending, float64) and eigenvectors of the covariance."""
    cov = centred.T.astype(np.float64) @ centred.astype(np.float64) / centred.shape[0]
    values, vectors = np.linalg.eigh(cov)
    return np.maximum(values[::-1], 0.0), vectors[:, ::-1]


def _estimate_from_spectrum(values: NDArray[np.float64], n_bytes: int,
                            ) -> DimsEstimate:
    dims = np.arange(n_bytes, values.shape[0] + 1, n_bytes, dtype=np.int64)
    tiny = np.finfo(np.float64).tiny
    log_cum = np.cumsum(np.log(np.maximum(values, tiny)))
    lowrank = np.array([values[d:].sum() for d in dims])
    theta = np.exp(log_cum[dims - 1] / dims) * N_CENTROIDS ** (-2.0 * n_bytes / dims)
    cluster = dims * theta
    valid = values[dims - 1] >= theta
    total = lowrank + cluster
    pool = np.flatnonzero(valid) if valid.any() else np.array([0])
    best = int(dims[pool[np.argmin(total[pool])]])
    return DimsEstimate(dims, lowrank, cluster, total, valid, best)


def estimate_dims(train: ArrayLike, n_bytes: int) -> DimsEstimate:
    """Predict the best projected dimension for LR²VQ from the spectrum of ``train``.

    Parameters
    ----------
    train : array of shape (n, dim)
        Centred internally.
    n_bytes : int
        Bytes per vector (PQ subspaces of 256 centroids); at most ``dim``.

    Returns
    -------
    DimsEstimate
        The error curve over every multiple of ``n_bytes`` and its minimiser.

    Notes
    -----
    The d' that minimises reconstruction error is not always the d' that maximises
    search recall; :class:`LR2VQ` uses this estimate to seed a short recall sweep.
    """
    train = as_matrix(train, "train")
    n_bytes = _check_n_bytes(n_bytes)
    if n_bytes > train.shape[1]:
        raise ValueError(f"n_bytes={n_bytes} exceeds the dimension {train.shape[1]}")
    centred = train - train.mean(axis=0, dtype=np.float64).astype(np.float32)
    return _estimate_from_spectrum(_spectrum(centred)[0], n_bytes)


# -- LR²VQ ------------------------------------------------------------------------


def _allocate(values: NDArray[np.float64], n_bytes: int) -> NDArray[np.int64]:
    """Order components so each subspace gets a balanced product of eigenvalues.

    Greedy eigenvalue allocation: components, largest first, go to the open
    subspace whose log-eigenvalue sum is smallest. Returns the column order.
    """
    dsub = values.shape[0] // n_bytes
    logs = np.log(np.maximum(values, np.finfo(np.float64).tiny))
    buckets: list[list[int]] = [[] for _ in range(n_bytes)]
    load = np.zeros(n_bytes)
    for j in range(values.shape[0]):
        open_ = [m for m in range(n_bytes) if len(buckets[m]) < dsub]
        m = min(open_, key=lambda b: load[b])
        buckets[m].append(j)
        load[m] += logs[j]
    return np.array([j for b in buckets for j in b], dtype=np.int64)


def _procrustes(cross: NDArray[np.float64]) -> NDArray[np.float32]:
    """Orthonormal-column R maximising tr(R^T cross): U V^T of cross's thin SVD."""
    u, _, vt = np.linalg.svd(cross, full_matrices=False)
    return (u @ vt).astype(np.float32)


class LR2VQ(Saveable):
    """Low-rank projection plus product quantization, trained alternately.

    A vector ``x`` is stored as the PQ code of ``(x - mean) R`` with ``R`` a
    (dim, dims) matrix of orthonormal columns. Training alternates PQ codebook
    updates (k-means) with orthogonal Procrustes updates of ``R``; neither step
    increases ``||X - mean - Xhat R^T||^2``.

    Parameters
    ----------
    n_bytes : int
        Bytes per vector (subspaces of 256 centroids).
    dims : int or None
        Projected dimension d'; a multiple of ``n_bytes`` (product codebooks).
        None chooses it at fit time by a recall sweep on held-out queries, seeded
        by :func:`estimate_dims` (residual codebooks: every dimension).
    per_block : bool
        The literal paper form: split the input into ``n_bytes`` blocks and project
        each block on its own (``R`` block-diagonal); ``dim`` must then be a
        multiple of ``n_bytes``. Product codebooks only.
    codebooks : {"product", "residual"}
        "product" (default): PQ of the projected vectors, ``R`` learned by the
        alternation above. "residual": additive codebooks over the whole
        projected space (:class:`leanvec.rq.ResidualCodebooks`), each trained on
        the residuals of the ones before and encoded by beam search; ``R`` is
        then the principal axes (full-width codebooks do not depend on a
        rotation) and ``dims`` None keeps every dimension. More recall per byte
        (recall@10 0.48 against 0.38 at 8 bytes on 384-d text embeddings) and the
        same scan; training is shorter than the product form's alternations,
        encoding (beam search) several times slower. ``n_iter``,
        ``kmeans_iter`` and ``refine_iter`` apply to product codebooks only; the
        encoder holds ``2 * max_train * beam * dims`` float32 while training,
        so keep ``beam`` small. Fitted with
        ``metric`` "sqeuclidean" or "euclidean", the last byte stores the
        reconstruction's squared norm (L2 needs it); fitted for inner product or
        cosine, every byte holds a codeword and L2 tables are refused.
    beam : int
        Beam width of the residual encoder (1 is greedy).
    n_iter : int
        Alternations of codebook and projection updates. 24 alternations of 4
        k-means steps took recall@10 on wordnet-id from 0.6773 / 0.7999 (12 of
        2) to 0.6875 / 0.8179 at 32 / 64 bytes, for twice the training time.
    kmeans_iter, refine_iter : int
        k-means iterations of the first codebooks and of each later refinement.
    max_train : int
        Rows sampled (with ``seed``) for training.
    seed : int

    Attributes
    ----------
    mean : array of shape (dim,), float32
    projection : array of shape (dim, dims), float32
    pq : PQ
        Codebooks of the projected vectors ("product").
    rq : ResidualCodebooks or None
        Codebooks of the projected vectors ("residual").
    dims_ : int
        The projected dimension in use.
    sweep_ : dict[int, float]
        recall@10 of each swept d' (empty when ``dims`` was given).
    loss_history_ : list[tuple[str, float]]
        Mean squared reconstruction error after each "codebook" and "procrustes"
        step.
    """

    state_kind = _LR2VQ_KIND

    def __init__(self, n_bytes: int, dims: int | None = None, per_block: bool = False,
                 n_iter: int = 24, kmeans_iter: int = 16, refine_iter: int = 4,
                 max_train: int = 50_000, seed: int = 0, codebooks: str = "product",
                 beam: int = 5) -> None:
        self.n_bytes = _check_n_bytes(n_bytes)
        if codebooks not in _CODEBOOKS:
            raise ValueError(f"codebooks must be one of {_CODEBOOKS}, got {codebooks!r}")
        if codebooks == "residual" and per_block:
            raise ValueError("per_block=True needs codebooks='product' (residual "
                             "codebooks span the whole projected space)")
        self.codebooks = codebooks
        self.beam = check_positive_int(beam, "beam")
        if self.beam > N_CENTROIDS:
            raise ValueError(f"beam must be at most {N_CENTROIDS}, got {beam}")
        if dims is not None:
            dims = check_positive_int(dims, "dims")
            if codebooks == "product":
                _check_divides(dims, self.n_bytes, "dims")
        self.dims = dims
        self.per_block = bool(per_block)
        self.n_iter = check_positive_int(n_iter, "n_iter", 0)
        self.kmeans_iter = check_positive_int(kmeans_iter, "kmeans_iter")
        self.refine_iter = check_positive_int(refine_iter, "refine_iter")
        self.max_train = check_positive_int(max_train, "max_train", N_CENTROIDS)
        self.seed = seed
        self.mean: NDArray[np.float32] | None = None
        self.projection: NDArray[np.float32] | None = None
        self.pq = PQ(self.n_bytes, kmeans_iter, max_train, seed)
        self.rq: ResidualCodebooks | None = None
        self.dims_: int | None = None
        self.sweep_: dict[int, float] = {}
        self.loss_history_: list[tuple[str, float]] = []

    @property
    def dim(self) -> int | None:
        """Input features per vector, or None before :meth:`fit`."""
        return None if self.mean is None else self.mean.shape[0]

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector."""
        return self.n_bytes

    def fit(self, train: ArrayLike, train_queries: ArrayLike | None = None,
            metric: str = "inner_product",
            progress: Callable[[int, int], None] | None = None) -> LR2VQ:
        """Learn the mean, projection and codebooks from ``train`` (n, dim).

        Parameters
        ----------
        train : array of shape (n, dim)
        train_queries : array of shape (m, dim), optional
            Held-out queries for the d' sweep; without them 200 training rows
            are held out and used as queries.
        metric : {"inner_product", "sqeuclidean", "euclidean", "cosine"}
            Ranking used by the sweep ("cosine" is ranked as inner product: the
            caller normalises rows); with residual codebooks, whether a byte goes
            to the norm (see ``codebooks``).
        progress : callable(done, total), optional
            Called after each alternation.

        Returns
        -------
        LR2VQ
            ``self``.
        """
        train = as_matrix(train, "train")
        dim = train.shape[1]
        metric = check_metric(metric)
        self._check_fit_shape(dim, metric)
        _check_train_rows(train.shape[0])
        queries = None if train_queries is None else as_matrix(
            train_queries, "train_queries", dim)
        saved, saved_pq = dict(self.__dict__), dict(self.pq.__dict__)
        try:
            self._fit(train, queries, metric, progress)
        except BaseException:
            # a failed fit leaves the quantizer as it was (fitted or not)
            self.__dict__.update(saved)
            self.pq.__dict__.update(saved_pq)
            raise
        return self

    def _fit(self, train, queries, metric, progress) -> None:
        rng = np.random.default_rng(self.seed)
        sample = _sample(train, self.max_train, rng)
        self.mean = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
        centred = sample - self.mean
        if self.codebooks == "residual":
            self._train_residual(centred, metric, rng, progress)
            return
        dims = self.dims
        if dims is None:
            dims = self._sweep(centred, queries, metric, rng)
        self.dims_ = dims
        self._train(centred, dims, rng, progress)

    def encode(self, vectors: ArrayLike) -> NDArray[np.uint8]:
        """Codes of ``vectors`` (n, dim): array of shape (n, n_bytes), uint8."""
        vectors = as_matrix(vectors, "vectors", self._require_dim(), allow_empty=True)
        out = np.empty((vectors.shape[0], self.n_bytes), dtype=np.uint8)
        for s in range(0, vectors.shape[0], _ENCODE_BLOCK):
            block = np.ascontiguousarray(
                (vectors[s:s + _ENCODE_BLOCK] - self.mean) @ self.projection)
            if self.rq is not None:
                _check_residual_range(block, "vectors")
                out[s:s + _ENCODE_BLOCK] = self.rq.encode(block)
            else:
                out[s:s + _ENCODE_BLOCK] = self.pq._encode(block)
        return out

    def decode(self, codes: ArrayLike) -> NDArray[np.float32]:
        """Reconstruct vectors (n, dim) float32 from codes (n, n_bytes) uint8."""
        self._require_dim()
        if self.rq is not None:
            arr = np.asarray(codes)
            if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != self.n_bytes:
                raise ValueError(
                    f"codes must be a uint8 array of shape (n, {self.n_bytes}), got "
                    f"dtype {arr.dtype} and shape {arr.shape}")
            projected = self.rq.decode(arr)
        else:
            projected = self.pq.decode(codes)
        return np.ascontiguousarray(projected @ self.projection.T + self.mean)

    def search_tables(self, queries: NDArray[np.float32], metric: str,
                      lanes: int = 0,
                      ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Tables (n_queries, n_bytes, 256) and offsets (n_queries,), float32.

        "inner_product": ``offset + sum_m tables[m, code_m] = -<q, xhat>``;
        "sqeuclidean": ``||q - xhat||^2`` (the part of ``q - mean`` outside the
        projection enters through the offset). ``lanes`` > 0 gives the tables in
        blocks of queries (see :meth:`PQ.distance_tables`).
        """
        queries = _check_table_args(queries, metric, self._require_dim())
        if metric == "inner_product":
            offsets = -(queries @ self.mean)
            projected = np.ascontiguousarray(queries @ self.projection)
        else:
            centred = queries - self.mean
            projected = np.ascontiguousarray(centred @ self.projection)
            offsets = (np.einsum("ij,ij->i", centred, centred)
                       - np.einsum("ij,ij->i", projected, projected))
        codec = self.rq if self.rq is not None else self.pq
        tables = codec.distance_tables(projected, metric, lanes)
        return tables, np.ascontiguousarray(offsets, dtype=np.float32)

    # -- persistence -------------------------------------------------------------

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return ``(meta, arrays)`` for :func:`leanvec.persistence.nest`."""
        self._require_dim()
        meta = {"n_bytes": self.n_bytes, "dims": self.dims, "per_block": self.per_block,
                "n_iter": self.n_iter, "kmeans_iter": self.kmeans_iter,
                "refine_iter": self.refine_iter, "max_train": self.max_train,
                "seed": self.seed, "dims_": self.dims_,
                "sweep_": {str(d): r for d, r in self.sweep_.items()},
                "codebooks": self.codebooks, "beam": self.beam}
        arrays = {"mean": self.mean, "projection": self.projection}
        if self.rq is not None:
            meta["with_norm"] = self.rq.with_norm
            arrays["residual_books"] = self.rq.books
            if self.rq.with_norm:
                arrays["norm_levels"] = self.rq.norm_levels
        else:
            arrays["codebooks"] = self.pq.codebooks
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LR2VQ:
        """Inverse of :meth:`to_state`."""
        vq = cls(meta["n_bytes"], meta["dims"], meta["per_block"], meta["n_iter"],
                 meta["kmeans_iter"], meta["refine_iter"], meta["max_train"],
                 meta["seed"], meta.get("codebooks", "product"), meta.get("beam", 5))
        vq.dims_ = meta["dims_"]
        vq.sweep_ = {int(d): r for d, r in meta["sweep_"].items()}
        vq.mean = np.ascontiguousarray(arrays["mean"], dtype=np.float32)
        vq.projection = np.ascontiguousarray(arrays["projection"], dtype=np.float32)
        dims = vq.projection.shape[1]
        if vq.codebooks == "residual":
            rq = ResidualCodebooks(vq.n_bytes, bool(meta["with_norm"]), vq.beam)
            books = np.ascontiguousarray(arrays["residual_books"], dtype=np.float32)
            if books.shape != (rq.n_books, N_CENTROIDS, dims):
                raise ValueError(
                    f"residual codebooks have shape {books.shape}, expected "
                    f"{(rq.n_books, N_CENTROIDS, dims)}")
            rq.books = books
            if rq.with_norm:
                rq.norm_levels = np.ascontiguousarray(arrays["norm_levels"],
                                                      dtype=np.float32)
            vq.rq = rq
        else:
            vq.pq.codebooks = np.ascontiguousarray(arrays["codebooks"],
                                                   dtype=np.float32)
        return vq

    # -- training ----------------------------------------------------------------

    def _require_dim(self) -> int:
        if self.mean is None:
            raise ValueError("this LR2VQ is not fitted: call fit(train) first")
        return self.mean.shape[0]

    def _check_fit_shape(self, dim: int, metric: str) -> None:
        if (self.codebooks == "residual" and self.n_bytes < 2
                and metric in ("sqeuclidean", "euclidean")):
            raise ValueError(
                f"n_bytes={self.n_bytes}: residual codebooks for {metric} keep one "
                "byte for the norm and need n_bytes >= 2")
        if self.dims is not None and self.dims > dim:
            raise ValueError(f"dims={self.dims} exceeds the data's dimension {dim}")
        if self.n_bytes > dim and self.codebooks == "product":
            raise ValueError(
                f"n_bytes={self.n_bytes} exceeds the data's dimension {dim}")
        if self.per_block:
            _check_divides(dim, self.n_bytes, "dim")

    def _initial_projection(self, centred, dims) -> NDArray[np.float32]:
        """The starting projection.

        Without reduction the identity (training then starts from plain PQ, which
        beat a PCA start on text embeddings); with reduction PCA to ``dims`` with
        eigenvalue allocation; per block, PCA inside each block.
        """
        if self.per_block:
            return self._block_pca(centred, dims)
        if dims == centred.shape[1]:
            return np.eye(dims, dtype=np.float32)
        values, vectors = _spectrum(centred)
        order = _allocate(values[:dims], self.n_bytes)
        return np.ascontiguousarray(vectors[:, :dims][:, order], dtype=np.float32)

    def _train_residual(self, centred, metric, rng, progress) -> None:
        _check_residual_range(centred, "train")
        dim = centred.shape[1]
        dims = dim if self.dims is None else self.dims
        if dims == dim:
            proj = np.eye(dim, dtype=np.float32)
        else:
            proj = np.ascontiguousarray(_spectrum(centred)[1][:, :dims],
                                        dtype=np.float32)
        rq = ResidualCodebooks(self.n_bytes, metric in ("sqeuclidean", "euclidean"),
                               self.beam)
        rq.train(np.ascontiguousarray(centred @ proj), rng, progress)
        self.projection, self.rq, self.dims_ = proj, rq, dims
        self.sweep_ = {}
        self.loss_history_ = []

    def _block_pca(self, centred, dims) -> NDArray[np.float32]:
        dim = centred.shape[1]
        size, keep = dim // self.n_bytes, dims // self.n_bytes
        proj = np.zeros((dim, dims), dtype=np.float32)
        for m in range(self.n_bytes):
            rows = slice(m * size, (m + 1) * size)
            cols = slice(m * keep, (m + 1) * keep)
            proj[rows, cols] = _spectrum(centred[:, rows])[1][:, :keep]
        return proj

    def _procrustes_step(self, centred, decoded) -> NDArray[np.float32]:
        if not self.per_block:
            return _procrustes(centred.T.astype(np.float64) @ decoded)
        dim, dims = centred.shape[1], decoded.shape[1]
        size, keep = dim // self.n_bytes, dims // self.n_bytes
        proj = np.zeros((dim, dims), dtype=np.float32)
        for m in range(self.n_bytes):
            rows = slice(m * size, (m + 1) * size)
            cols = slice(m * keep, (m + 1) * keep)
            cross = centred[:, rows].T.astype(np.float64) @ decoded[:, cols]
            proj[rows, cols] = _procrustes(cross)
        return proj

    def _train(self, centred, dims, rng, progress) -> None:
        proj = self._initial_projection(centred, dims)
        total_sq = float(np.einsum("ij,ij->", centred, centred, dtype=np.float64))
        n = centred.shape[0]
        books = None
        self.loss_history_ = []
        for it in range(self.n_iter + 1):
            projected = np.ascontiguousarray(centred @ proj)
            iters = self.kmeans_iter if books is None else self.refine_iter
            books = self.pq._train(projected, rng, iters, books)
            self.pq.codebooks = books
            if it == self.n_iter:
                break
            decoded = self.pq.decode(self.pq._encode(projected))
            self.loss_history_.append(
                ("codebook", _loss(total_sq, centred, decoded, proj) / n))
            proj = self._procrustes_step(centred, decoded)
            self.loss_history_.append(
                ("procrustes", _loss(total_sq, centred, decoded, proj) / n))
            if progress is not None:
                progress(it + 1, self.n_iter)
        self.projection = proj
        logger.debug("LR2VQ trained: dims %d, losses %s", dims, self.loss_history_)

    # -- choosing d' ---------------------------------------------------------------

    def _candidates(self, centred) -> list[int]:
        dim = centred.shape[1]
        if self.per_block:
            step, top = self.n_bytes, dim
        else:
            step, top = self.n_bytes, dim - dim % self.n_bytes
        seed = estimate_dims(centred, self.n_bytes).best
        dsub = max(seed // step, 1)
        picks = {max(dsub // 2, 1), dsub, 2 * dsub, 4 * dsub, top // step}
        return sorted(step * s for s in picks if step * s <= top)

    def _sweep(self, centred, queries, metric, rng) -> int:
        if queries is None:
            held = rng.choice(centred.shape[0], min(200, centred.shape[0] // 10),
                              replace=False)
            queries = centred[held] + self.mean
            base = np.delete(centred, held, axis=0)
        else:
            base = centred
        base = _sample(base, 20_000, rng)
        _check_train_rows(base.shape[0])
        kind = "sqeuclidean" if metric in ("sqeuclidean", "euclidean") else (
            "inner_product")
        truth = _exact_top(queries - (0 if kind == "inner_product" else self.mean),
                           base, kind, 10)
        self.sweep_ = {}
        for dims in self._candidates(centred):
            self.sweep_[dims] = self._sweep_recall(base, queries, truth, dims, kind,
                                                   rng)
        # Short trials favour small d' (a PCA start needs few alternations, a wide
        # rotation many): take the largest d' within _SWEEP_SLACK of the best.
        top = max(self.sweep_.values())
        best = max(d for d, r in self.sweep_.items() if r >= top - _SWEEP_SLACK)
        logger.info("LR2VQ d' sweep (recall@10): %s; using %d", self.sweep_, best)
        return best

    def _sweep_recall(self, base, queries, truth, dims, kind, rng) -> float:
        trial = LR2VQ(self.n_bytes, dims, self.per_block, n_iter=2, kmeans_iter=8,
                      refine_iter=2, seed=self.seed)
        trial.mean = self.mean
        trial._train(base, dims, rng, None)
        codes = trial.pq._encode(np.ascontiguousarray(base @ trial.projection))
        tables, offsets = trial.search_tables(queries, kind)
        k = truth.shape[1]
        got = _scan_top(tables, offsets, codes, k)
        hits = sum(np.intersect1d(a, b).size for a, b in zip(got, truth))
        return hits / truth.size


def _loss(total_sq, centred, decoded, proj) -> float:
    """||C - D P^T||^2 = ||C||^2 - 2 tr(P^T C^T D) + ||D||^2 (P orthonormal columns)."""
    cross = float(np.einsum("ij,ij->", centred @ proj, decoded, dtype=np.float64))
    dec_sq = float(np.einsum("ij,ij->", decoded, decoded, dtype=np.float64))
    return max(total_sq - 2.0 * cross + dec_sq, 0.0)


def _exact_top(queries, base, kind, k) -> NDArray[np.int64]:
    scores = queries @ base.T
    if kind == "sqeuclidean":
        scores = scores - 0.5 * np.einsum("ij,ij->i", base, base)[None, :]
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _scan_top(tables, offsets, codes, k) -> NDArray[np.int64]:
    heap_d = np.full((tables.shape[0], k), np.inf, dtype=np.float32)
    heap_i = np.full((tables.shape[0], k), NO_ID, dtype=np.int64)
    pq_scan(tables, offsets, codes, heap_d, heap_i)
    finish_heaps(heap_d, heap_i)
    return heap_i
