"""The leanvec index: a Vamana graph over reduced, quantized vectors, re-ranked.

The database is reduced by :class:`~leanvec.LeanVec` (optional) and stored as
*primary* vectors (float32, float16, LVQ-8 or LVQ-4); the graph is built and
traversed on them. The best candidates are then re-scored on *secondary* vectors
(full dimension: float32, float16 or LVQ-8) against the original query.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import persistence
from ._kernels import METRIC_CODES, int8
from ._kernels import graph as kg
from ._result import SearchResult, empty_result
from ._threads import limit_threads
from ._validation import (
    apply_scale,
    as_matrix,
    check_k,
    check_metric,
    check_n_threads,
    check_positive_int,
    max_abs,
    normalize_rows,
    range_scale,
)
from .lvq import LVQ
from .pq import kmeans
from .projection import LeanVec

logger = logging.getLogger(__name__)

__all__ = ["Index", "load"]

Primary = Literal["float32", "float16", "lvq8", "lvq4"]
Secondary = Literal["float32", "float16", "lvq8"]

STATE_KIND = "leanvec.Index"
_PRIMARY = {"float32": kg.PRIM_F32, "float16": kg.PRIM_F16, "lvq8": kg.PRIM_LVQ8,
            "lvq4": kg.PRIM_LVQ4}


def _kernel_kind(primary: str, width: int) -> int:
    """The kernels' storage kind for ``primary`` rows of ``width`` bytes: LVQ codes
    are traversed with integer dot products (an 8-bit query) where the processor
    has AVX-512 VNNI and the int32 sums cannot overflow."""
    kind = _PRIMARY[primary]
    if int8.available() and width <= int8.MAX_WIDTH:
        if kind == kg.PRIM_LVQ8:
            return kg.PRIM_LVQ8_I8
        if kind == kg.PRIM_LVQ4:
            return kg.PRIM_LVQ4_I8
    return kind
_SECONDARY = {None: kg.SEC_NONE, "float32": kg.SEC_F32, "float16": kg.SEC_F16,
              "lvq8": kg.SEC_LVQ8}
_L2 = ("sqeuclidean", "euclidean")
_F16_MAX = 65504.0
# Extra neighbour slots (a fraction of degree) that lists may use during a build.
_SLACK = 0.3
_PARAMS = ("metric", "leanvec_dims", "primary", "secondary", "degree",
           "build_window", "alpha", "window", "rerank", "n_threads", "seed", "solver")
_ARRAYS = ("p_f32", "p_f16", "p_u8", "p_steps", "p_biases", "aux", "s_f32", "s_f16",
           "s_u8", "s_steps", "s_biases", "s_mean", "s_norms", "graph", "degrees",
           "lvq_mean", "proj_shift", "zero_ids", "entries")
# Arrays that files written before they existed lack: loaded as empty.
_OPTIONAL = {"s_norms": np.float32, "zero_ids": np.int64, "entries": np.int32}
# Entry nodes of a search: the database nodes nearest this many k-means centroids
# of the primary vectors; a search starts from the best of them.
_ENTRIES = 32
_F32_MAX = float(np.finfo(np.float32).max)


def _check_choice(value: object, name: str, choices: dict) -> object:
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")
    return value


def _check_alpha(alpha: object) -> float | None:
    if alpha is None:
        return None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a float or None, got {alpha!r}")
    if not 0.5 <= alpha <= 2.0:
        raise ValueError(f"alpha must lie in [0.5, 2.0], got {alpha}")
    return float(alpha)


def _empty(shape: tuple[int, ...], dtype: type) -> NDArray:
    return np.zeros(shape, dtype=dtype)


def _sq_norms(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)


def _f16_bits(x: NDArray[np.float32], name: str) -> NDArray[np.uint16]:
    """Round to float16 and return the bit patterns, refusing values that overflow."""
    if x.size and float(np.abs(x).max()) > _F16_MAX:
        raise ValueError(
            f"{name} vectors hold values beyond the float16 range ({_F16_MAX}); "
            "use 'float32' or 'lvq8' for them"
        )
    return np.ascontiguousarray(x.astype(np.float16).view(np.uint16))


def _decoded_norms(codes: NDArray[np.uint8], steps: NDArray[np.float32],
                   biases: NDArray[np.float32],
                   mean: NDArray[np.float32]) -> NDArray[np.float32]:
    """L2 norms (float32, shape (n,)) of LVQ-8 rows decoded as the re-rank kernel
    decodes them, ``mean + step * c + bias`` in float32, summed in float64."""
    out = np.empty(codes.shape[0], dtype=np.float32)
    for lo in range(0, codes.shape[0], 4096):
        hi = min(lo + 4096, codes.shape[0])
        rows = steps[lo:hi, None] * codes[lo:hi].astype(np.float32)
        rows = (mean + rows) + biases[lo:hi, None]
        out[lo:hi] = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    return out


class Index:
    """Graph index over LeanVec-reduced, quantized vectors with re-ranking.

    Parameters
    ----------
    metric : {"cosine", "angular", "inner_product", "sqeuclidean", "euclidean"}
        Distance returned by :meth:`search` (smaller is closer).
    leanvec_dims : int, "auto" or None
        Dimension of the primary vectors; None keeps the full dimension (no
        LeanVec). ``"auto"`` takes half of an input of up to 512 features and a
        third of a wider one, rounded down to a multiple of 16, for inputs of at
        least 96 features (None below): 192 of 384 beat 128 at every recall level
        on the wordnet text embeddings, while 128 beat 192 on the 768-d synthetic
        set (docs/benchmarks.md).
    primary : {"float32", "float16", "lvq8", "lvq4"}
        Storage of the primary vectors that the graph is built and searched on.
    secondary : {"float32", "float16", "lvq8"} or None
        Full-dimension storage for re-scoring; None re-ranks nothing and reports
        the primary distances (approximate when ``leanvec_dims`` is set).
    degree : int
        Maximum out-degree of the graph (the paper's R).
    build_window : int
        Search window during construction (the paper's L at build time).
    alpha : float or None
        Robust-prune slack of the second construction pass; None picks 1.2 for L2
        geometry and 0.95 for inner-product geometry.
    window : int
        Default search window (the paper's search list size L).
    rerank : int or None
        Default number of candidates re-scored on the secondary vectors: the
        best ``rerank`` nodes the traversal visited, whatever the window. None
        (the default) re-scores the nodes in the final window (``window`` of
        them, at least k). A depth beyond the window also keeps the nodes the
        traversal pushed out of it; on the WordNet sets that bought under 0.001
        recall@10 for 10-25 % of the QPS (docs/benchmarks.md).
    n_threads : int or None
        Threads for construction and batch search; None uses every core.
    seed : int
        Seed of the insertion order and of LeanVec's row sample.
    solver : str or None
        LeanVec-OOD solver when ``train_queries`` are given (None: its default).

    Attributes
    ----------
    projection : LeanVec or None
        The fitted reduction.

    Notes
    -----
    The graph is built in two passes (alpha 1, then ``alpha``) over a seeded random
    order, in batches whose points search the graph as it stood before the batch,
    so the index is identical for a given seed whatever the thread count.
    Under cosine, zero vectors have distance exactly 1 to everything: zero rows
    of the database stay out of the graph (in L2 geometry on unit rows they
    would sit closer to every vector than its true neighbours) and are merged
    into the results at distance 1, lowest ids first. Cosine ignores the scale
    of the data: rows are normalised in float64 before anything else. Under the
    other metrics, a database beyond the float32-safe magnitudes (above 2**50 or
    below 2**-40) is stored multiplied by a power of two, as
    :class:`~leanvec.FlatIndex` scales it; queries are multiplied by the same
    factor (a ValueError when they then overflow) and distances are returned in
    the data's units, clipped to the float32 range.
    LVQ-8 secondaries are scored in the code domain under cosine and inner
    product (``<q, mean>`` once a query); cosine divides by a float32 norm of
    each decoded secondary kept per vector (4 bytes, counted in
    :attr:`bytes_per_vector`).
    Limitations: vectors cannot be deleted; ids are int32 inside the graph (at
    most 2**31 - 1 vectors); without secondaries, distances come from the
    primary vectors (approximate under a reduction or quantization); float16
    storage refuses values beyond 65504. On 384-d text embeddings it runs at
    0.9x-1.3x hnswlib M=32's QPS at recall@10 0.95 with 0.44x its memory
    (docs/benchmarks.md); it leads more clearly on 768-d sets of low intrinsic
    dimension.
    With a reduction and ``train_queries`` given, the projection is LeanVec-OOD
    (its default solver, the whitened closed form, unless ``solver`` says
    otherwise), otherwise LeanVec-ID (PCA); without a reduction
    ``train_queries`` are not used. Cosine and L2 graphs are built in L2
    geometry on the primary vectors even when the projection is not
    orthonormal (an inner-product build pruned whitened primaries down to about
    10 neighbours a node); inner-product graphs are built by inner product.
    """

    def __init__(
        self,
        metric: str = "cosine",
        leanvec_dims: int | Literal["auto"] | None = "auto",
        primary: Primary = "lvq8",
        secondary: Secondary | None = "lvq8",
        degree: int = 64,
        build_window: int = 100,
        alpha: float | None = None,
        window: int = 40,
        rerank: int | None = None,
        n_threads: int | None = None,
        seed: int = 0,
        solver: str | None = None,
    ) -> None:
        self.metric = check_metric(metric)
        if leanvec_dims is not None and leanvec_dims != "auto":
            leanvec_dims = check_positive_int(leanvec_dims, "leanvec_dims")
        self.leanvec_dims = leanvec_dims
        self.primary = _check_choice(primary, "primary", _PRIMARY)
        self.secondary = _check_choice(secondary, "secondary", _SECONDARY)
        self.degree = check_positive_int(degree, "degree", minimum=2)
        self.build_window = check_positive_int(build_window, "build_window")
        self.alpha = _check_alpha(alpha)
        self.window = check_positive_int(window, "window")
        self.rerank = None if rerank is None else check_positive_int(rerank, "rerank")
        self.n_threads = check_n_threads(n_threads)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.solver = solver
        self.projection: LeanVec | None = None
        self._dim: int | None = None
        self._lvq: LVQ | None = None
        self._sec_lvq: LVQ | None = None
        self._a: dict[str, NDArray] = {}
        self._consts: dict[str, NDArray] = {}
        self._entry = 0
        # what searches read: (arrays, entry), replaced whole when add() is done
        self._view: tuple[dict[str, NDArray], int] = (self._a, 0)
        self._scale = 1.0

    # ------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of database vectors."""
        return 0 if not self._a else int(self._a["degrees"].shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def dim(self) -> int | None:
        """Features per input vector, or None before :meth:`fit`."""
        return self._dim

    @property
    def bytes_per_vector(self) -> float:
        """Bytes kept in memory per database vector: primaries, their constants,
        per-vector norms, secondaries, graph lists and degrees."""
        if not self._a:
            return 0.0
        return sum(arr.nbytes for name, arr in self._a.items()
                   if name not in ("lvq_mean", "proj_shift", "s_mean", "entries")) / self.n

    def set_search_params(self, window: int | None = None,
                          rerank: int | None = None) -> None:
        """Change the default ``window`` and/or ``rerank`` of :meth:`search`."""
        if window is not None:
            self.window = check_positive_int(window, "window")
        if rerank is not None:
            self.rerank = check_positive_int(rerank, "rerank")

    # ------------------------------------------------------------ geometry
    @property
    def _orthonormal(self) -> bool:
        return self.projection is None or self.projection.orthonormal

    @property
    def _build_ip(self) -> bool:
        """Build in inner-product geometry (else L2 on the primary vectors)."""
        return self.metric == "inner_product"

    @property
    def _search_ip(self) -> bool:
        """Traverse by inner product (else by L2 on the primary vectors)."""
        return self.metric not in _L2 or not self._orthonormal

    def _alpha(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return 0.95 if self._build_ip else 1.2

    # ------------------------------------------------------------ fit / add
    def fit(
        self,
        database: ArrayLike,
        train_queries: ArrayLike | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Index:
        """Reduce, encode and index ``database``.

        Parameters
        ----------
        database : array-like of shape (n, dim)
            Any real dtype; cast once to float32. NaN or infinity raise.
        train_queries : array-like of shape (m, dim) or None
            A sample of queries (never the test queries) for LeanVec-OOD.
        progress : callable or None
            Called as ``progress(done, total)`` after each batch of insertions.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When ``leanvec_dims >= dim``, an input is empty or non-finite, or the
            widths differ.
        """
        base = as_matrix(database, "database")
        if train_queries is not None:
            train_queries = as_matrix(train_queries, "train_queries", base.shape[1])
        dims = self._resolve_dims(base.shape[1])
        self._dim = base.shape[1]
        self._scale = 1.0 if self.metric == "cosine" else range_scale(max_abs(base))
        base = self._prepare(base)
        if train_queries is not None:
            train_queries = self._prepare(train_queries, "train_queries")
        self._fit_projection(base, train_queries, dims)
        reduced = self._reduce(base)
        self._fit_quantizers(base, reduced)
        self._a = {}
        self._append_vectors(base, reduced)
        linked = self._linked(0)
        self._entry = self._medoid(linked)
        if linked.shape[0] > 0:
            with limit_threads(self.n_threads):
                self._insert(linked, (1.0, self._alpha()), progress, grow=True)
        self._a["entries"] = self._entry_set(linked)
        self._drop_build_aux()
        self._view = (self._a, self._entry)
        logger.info("Index built over %d vectors, %.0f bytes per vector", self.n,
                    self.bytes_per_vector)
        return self

    def add(self, vectors: ArrayLike) -> NDArray[np.int64]:
        """Insert ``vectors`` (array of shape (m, dim)) with the fitted projection and
        quantizers; return their ids (array of shape (m,), int64)."""
        self._check_fitted()
        vectors = as_matrix(vectors, "vectors", self._dim, allow_empty=True)
        start = self.n
        if vectors.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        vectors = self._prepare(vectors, "vectors")
        # Work on a new dict: searches in other threads keep reading the published
        # one (add replaces arrays, it never writes into the published ones).
        self._a = dict(self._a)
        empty_graph = self._a["zero_ids"].shape[0] == start
        self._append_vectors(vectors, self._reduce(vectors))
        linked = self._linked(start)
        if empty_graph:
            self._entry = self._medoid(linked)
        if linked.shape[0] > 0:
            with limit_threads(self.n_threads):
                self._insert(linked, (self._alpha(),), None, grow=empty_graph)
        every = self._linked(0)
        # a young index (fitted on few rows, or read from a file without an entry
        # set) gets its full entry set once it has the rows for it
        if empty_graph or self._a["entries"].shape[0] < min(_ENTRIES, every.shape[0]):
            self._a["entries"] = self._entry_set(every)
        self._drop_build_aux()
        self._view = (self._a, self._entry)
        return np.arange(start, self.n, dtype=np.int64)

    def _resolve_dims(self, dim: int) -> int | None:
        """The reduced dimension for inputs of ``dim`` features (None: none)."""
        if self.leanvec_dims == "auto":
            if dim < 96:
                return None
            share = 2 if dim <= 512 else 3
            return (dim // share) // 16 * 16
        if self.leanvec_dims is not None and self.leanvec_dims >= dim:
            raise ValueError(
                f"leanvec_dims must be smaller than the database's {dim} features, "
                f"got {self.leanvec_dims}; use leanvec_dims=None for none"
            )
        return self.leanvec_dims

    def _fit_projection(self, base: NDArray, train_queries: NDArray | None,
                        dims: int | None) -> None:
        self.projection = None
        if dims is None:
            if train_queries is not None:
                logger.info("train_queries unused: no reduction")
            return
        kind = "id" if train_queries is None else "ood"
        solver = self.solver if kind == "ood" else None
        self.projection = LeanVec(dims, kind=kind, solver=solver, metric=self.metric,
                                  seed=self.seed)
        self.projection.fit(base, train_queries)

    def _prepare(self, x: NDArray[np.float32],
                 name: str = "database") -> NDArray[np.float32]:
        """Input vectors as the index sees them: unit rows (zero rows stay zero)
        for cosine, else multiplied by the power of two ``_scale`` that brought
        the database into the float32-safe range (see ``range_scale``)."""
        if self.metric == "cosine":
            return normalize_rows(x)
        with np.errstate(over="ignore"):
            out = apply_scale(x, self._scale)
        if self._scale > 1.0 and not np.isfinite(max_abs(out)):
            raise ValueError(
                f"{name} overflow float32 once scaled like the database (by "
                f"{self._scale:g}); they are too large next to its values")
        return out

    def _reduce(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Primary vectors (before quantization) of prepared rows ``x``."""
        if self.projection is None:
            return x
        return self.projection.transform_database(x)

    def _linked(self, start: int) -> NDArray[np.int64]:
        """Ids from ``start`` on that belong in the graph: all but the zero rows
        under cosine, which are at distance 1 from everything and are merged
        into the results of :meth:`search` instead."""
        ids = np.arange(start, self.n, dtype=np.int64)
        return np.setdiff1d(ids, self._a["zero_ids"], assume_unique=True)

    def _fit_quantizers(self, base: NDArray, reduced: NDArray) -> None:
        d = reduced.shape[1]
        self._lvq = None
        if self.primary in ("lvq8", "lvq4"):
            self._lvq = LVQ(bits=8 if self.primary == "lvq8" else 4).fit(reduced)
        self._sec_lvq = None
        if self.secondary == "lvq8":
            self._sec_lvq = LVQ(bits=8).fit(base)
        if self._lvq is not None:
            lvq_mean = self._lvq.mean
        else:
            # float primaries are stored about their mean too: far from the origin,
            # float32 products with uncentred rows lose the distances' digits
            lvq_mean = reduced.mean(axis=0, dtype=np.float64).astype(np.float32)
        shift = np.zeros(d, dtype=np.float32)
        if self.projection is not None and self.metric not in _L2:
            # Primaries are B^T (x - mean); B^T mean restores <A^T q, B^T x>.
            shift = self.projection.mean @ self.projection.database_matrix
        self._consts = {"lvq_mean": np.ascontiguousarray(lvq_mean, np.float32),
                        "proj_shift": np.ascontiguousarray(shift, np.float32)}

    def _append_vectors(self, full: NDArray, reduced: NDArray) -> None:
        """Encode new rows and append them to every per-vector array."""
        start = self.n
        zero_ids = self._a.get("zero_ids", _empty((0,), np.int64))
        if self.metric == "cosine":
            fresh = np.flatnonzero(~full.any(axis=1)).astype(np.int64) + start
            zero_ids = np.concatenate([zero_ids, fresh])
        new = self._encode_primary(reduced)
        new.update(self._encode_secondary(full))
        self._a["s_mean"] = new.pop("s_mean")
        self._a["zero_ids"] = zero_ids
        if self.metric in _L2 and not self._orthonormal:
            new["aux"] = self.projection.centred_sq_norms(full)
        else:
            # L2 builds recompute squared norms of the primaries in _insert.
            self._a["aux"] = new["aux"] = _empty((0,), np.float32)
        m = reduced.shape[0]
        new["graph"] = np.zeros((m, self.degree), dtype=np.int32)
        new["degrees"] = np.zeros(m, dtype=np.int32)
        for key, arr in new.items():
            old = self._a.get(key)
            if old is not None and old.shape[0] > 0:
                arr = np.concatenate([old, arr])
            self._a[key] = np.ascontiguousarray(arr)
        self._a.update(self._consts)

    def _encode_primary(self, reduced: NDArray) -> dict[str, NDArray]:
        d = reduced.shape[1]
        out = {"p_f32": _empty((0, d), np.float32), "p_f16": _empty((0, d), np.uint16),
               "p_u8": _empty((0, 1), np.uint8), "p_steps": _empty((0,), np.float32),
               "p_biases": _empty((0,), np.float32)}
        if self.primary == "float32":
            out["p_f32"] = np.ascontiguousarray(reduced - self._consts["lvq_mean"])
        elif self.primary == "float16":
            out["p_f16"] = _f16_bits(reduced - self._consts["lvq_mean"], "primary")
        else:
            codes = self._lvq.encode(reduced)
            out["p_u8"] = codes.codes
            out["p_steps"], out["p_biases"] = self._lvq.kernel_constants(codes)
        return out

    def _encode_secondary(self, full: NDArray) -> dict[str, NDArray]:
        dim = full.shape[1]
        out = {"s_f32": _empty((0, dim), np.float32),
               "s_f16": _empty((0, dim), np.uint16), "s_u8": _empty((0, dim), np.uint8),
               "s_steps": _empty((0,), np.float32),
               "s_biases": _empty((0,), np.float32),
               "s_mean": np.zeros(dim, np.float32), "s_norms": _empty((0,), np.float32)}
        if self.secondary == "float32":
            out["s_f32"] = full
        elif self.secondary == "float16":
            out["s_f16"] = _f16_bits(full, "secondary")
        elif self.secondary == "lvq8":
            codes = self._sec_lvq.encode(full)
            out["s_u8"] = codes.codes
            out["s_steps"], out["s_biases"] = self._sec_lvq.kernel_constants(codes)
            out["s_mean"] = np.ascontiguousarray(self._sec_lvq.mean, np.float32)
            if self.metric == "cosine":
                out["s_norms"] = _decoded_norms(out["s_u8"], out["s_steps"],
                                                out["s_biases"], out["s_mean"])
        return out

    # ------------------------------------------------------------ graph build
    def _prim(self, a: dict[str, NDArray] | None = None) -> tuple:
        a = self._a if a is None else a
        return (a["p_f32"], a["p_f16"], a["p_u8"], a["p_steps"], a["p_biases"],
                a["aux"])

    def _sec(self, a: dict[str, NDArray] | None = None) -> tuple:
        a = self._a if a is None else a
        return (a["s_f32"], a["s_f16"], a["s_u8"], a["s_steps"], a["s_biases"],
                a["s_mean"], a["s_norms"])

    def _decoded(self) -> NDArray[np.float32]:
        """Primary vectors decoded to float32 (``y_i``, without the LVQ mean)."""
        d = self._a["lvq_mean"].shape[0]
        out = np.empty((self.n, d), dtype=np.float32)
        kg.decode_all(self._prim(), _PRIMARY[self.primary], out)
        return out

    def _build_aux_values(self) -> NDArray[np.float32]:
        return _sq_norms(self._decoded())

    def _medoid(self, ids: NDArray[np.int64]) -> int:
        """The vector of ``ids`` nearest their mean in the primary space (0 when
        ``ids`` is empty)."""
        if ids.shape[0] == 0:
            return 0
        y = self._decoded()[ids]
        return int(ids[np.argmin(_sq_norms(y - y.mean(axis=0, dtype=np.float64)))])

    def _entry_set(self, linked: NDArray[np.int64]) -> NDArray[np.int32]:
        """Entry nodes for search: the medoid, then the nodes of ``linked``
        nearest _ENTRIES k-means centroids of their primary vectors (a sample of
        at most 64 rows per centroid, five Lloyd iterations), without repeats."""
        first = np.array([self._entry], dtype=np.int32)
        count = min(_ENTRIES, linked.shape[0])
        if count <= 1:
            return first
        rng = np.random.default_rng(self.seed)
        y = self._decoded()[linked]
        sample = y[rng.choice(y.shape[0], min(y.shape[0], 64 * count), replace=False)]
        centroids = kmeans(sample, count, 5, rng)
        best_d = np.full(count, np.inf)
        best_i = np.zeros(count, dtype=np.int64)
        c_sq = _sq_norms(centroids)
        for s in range(0, y.shape[0], 8192):
            part = y[s:s + 8192]
            d = _sq_norms(part)[:, None] - 2.0 * (part @ centroids.T) + c_sq[None, :]
            rows = np.argmin(d, axis=0)
            better = d[rows, np.arange(count)] < best_d
            best_d[better] = d[rows, np.arange(count)][better]
            best_i[better] = s + rows[better]
        chosen = linked[best_i].astype(np.int32)
        _, keep = np.unique(chosen, return_index=True)
        chosen = chosen[np.sort(keep)]
        return np.concatenate([first, chosen[chosen != self._entry]])

    def _drop_build_aux(self) -> None:
        """Search needs per-vector norms only for L2 traversal; free them otherwise."""
        if self._search_ip and not (self.metric in _L2 and not self._orthonormal):
            self._a["aux"] = _empty((0,), np.float32)

    def _batches(self, count: int, grow: bool) -> list[tuple[int, int]]:
        """Batch bounds: doubling from 1 while the graph is young, then fixed."""
        size_max = max(16, min(1024, self.n // 50))
        bounds, start, size = [], 0, 1 if grow else size_max
        while start < count:
            bounds.append((start, min(count, start + size)))
            start += size
            size = min(size * 2, size_max)
        return bounds

    def _insert(self, ids: NDArray[np.int64], alphas: tuple[float, ...],
                progress: Callable[[int, int], None] | None, grow: bool) -> None:
        """Insert ``ids`` into the graph, one pass per alpha; ``grow`` starts the
        first pass with small batches (a graph with no edges yet)."""
        if not self._build_ip and self._a["aux"].shape[0] != self.n:
            self._a["aux"] = self._build_aux_values()
        rng = np.random.default_rng(self.seed)
        kind = _kernel_kind(self.primary, self._a["p_u8"].shape[1])
        shift = self._a["lvq_mean"] + self._a["proj_shift"]
        total, done = len(alphas) * ids.shape[0], 0
        # Lists may grow to the slack width before a prune brings them to degree.
        width = self.degree + max(1, int(_SLACK * self.degree))
        graph = np.zeros((self.n, width), dtype=np.int32)
        graph[:, : self.degree] = self._a["graph"]
        self._a["graph"] = graph
        for p, alpha in enumerate(alphas):
            order = rng.permutation(ids).astype(np.int32)
            for lo, hi in self._batches(order.shape[0], grow=p == 0 and grow):
                self._insert_batch(order[lo:hi], kind, shift, alpha)
                done += hi - lo
                if progress is not None:
                    progress(done, total)

        overfull = np.flatnonzero(self._a["degrees"] > self.degree).astype(np.int32)
        kg.add_reverse_edges(overfull, np.zeros(overfull.shape[0] + 1, np.int64),
                             np.zeros(0, np.int32), self._prim(), kind, shift,
                             self._build_ip, graph, self._a["degrees"], self.degree,
                             alphas[-1])
        self._a["graph"] = np.ascontiguousarray(graph[:, : self.degree])

    def _insert_batch(self, points: NDArray[np.int32], kind: int,
                      shift: NDArray[np.float32], alpha: float) -> None:
        graph, degrees = self._a["graph"], self._a["degrees"]
        lists = np.zeros((points.shape[0], self.degree), dtype=np.int32)
        counts = np.zeros(points.shape[0], dtype=np.int32)
        kg.insert_batch(points, self._prim(), kind, shift, self._build_ip, graph,
                        degrees, self.degree, np.array([self._entry], np.int32),
                        self.build_window, alpha,
                        lists, counts, numba.get_num_threads())
        graph[points, : self.degree] = lists
        degrees[points] = counts

        # Reverse edges, grouped by target so each list is updated by one task.
        mask = np.arange(self.degree)[None, :] < counts[:, None]
        targets = lists[mask]
        sources = np.repeat(points, counts)
        order = np.lexsort((sources, targets))
        targets, sources = targets[order], sources[order]
        uniq, starts = np.unique(targets, return_index=True)
        starts = np.append(starts, targets.shape[0]).astype(np.int64)
        kg.add_reverse_edges(uniq.astype(np.int32), starts, sources.astype(np.int32),
                             self._prim(), kind, shift, self._build_ip, graph,
                             degrees, self.degree, alpha)

    # ------------------------------------------------------------ search
    def search(self, queries: ArrayLike, k: int, window: int | None = None,
               rerank: int | None = None) -> SearchResult:
        """Return the ``k`` nearest database vectors of each query.

        Parameters
        ----------
        queries : array-like of shape (n_queries, dim)
            A 1-d array is one query.
        k : int
            Neighbours per query; slots beyond what the search found (``k > n``)
            hold id -1 and distance +inf.
        window, rerank : int or None
            Search window and re-rank depth for this call (defaults: the index's;
            a re-rank depth of None means the window). The best
            ``max(rerank, k)`` nodes visited are re-scored on the secondary
            vectors.

        Returns
        -------
        SearchResult
            ``ids`` (n_queries, k) int64 and ``distances`` (n_queries, k) float32,
            best first.
        """
        self._check_fitted()
        k = check_k(k)
        window = self.window if window is None else check_positive_int(window, "window")
        rerank = self.rerank if rerank is None else check_positive_int(rerank, "rerank")
        if rerank is None:
            rerank = window
        queries = as_matrix(queries, "queries", self._dim, allow_empty=True)
        if queries.shape[0] == 0:
            return empty_result(0, k)
        queries = self._prepare(queries, "queries")
        a, entry = self._view
        if a["zero_ids"].shape[0] == a["degrees"].shape[0]:
            ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
            dists = np.full((queries.shape[0], k), np.inf)
        else:
            ids, dists = self._search_graph(queries, k, window, rerank, a, entry)
        ids, dists = self._merge_zero_rows(ids, dists, a)
        return SearchResult(ids, self._unscale(dists, ids))

    def _search_graph(self, queries: NDArray[np.float32], k: int, window: int,
                      rerank: int, a: dict[str, NDArray], entry: int,
                      ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Traverse and re-rank for prepared ``queries`` over the arrays ``a`` from
        ``entry``: ids (n_queries, k) int64 and distances (n_queries, k) float64 in
        the index's scaled units."""
        args = self._query_args(queries, a)
        cap = max(rerank, k)
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        dists = np.empty((queries.shape[0], k), dtype=np.float64)
        entries = a["entries"]
        if entries.shape[0] == 0:  # a file written before entry sets
            entries = np.array([entry], dtype=np.int32)
        common = (self._prim(a), _kernel_kind(self.primary, a["p_u8"].shape[1]),
                  a["graph"], a["degrees"],
                  entries, window, cap, rerank)
        us, c, offsets, use_aux, full, final = args
        tail = (full, self._sec(a), _SECONDARY[self.secondary],
                METRIC_CODES[self.metric], final, ids, dists)
        if queries.shape[0] == 1 or self.n_threads == 1:
            kg.search_serial(us, c, offsets, use_aux, *common, *tail)
        else:
            with limit_threads(self.n_threads):
                kg.search_batch(us, c, offsets, use_aux, *common, *tail,
                                numba.get_num_threads())
        return ids, dists

    def _merge_zero_rows(self, ids: NDArray[np.int64], dists: NDArray[np.float64],
                         a: dict[str, NDArray],
                         ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Merge the zero rows (cosine distance exactly 1, lowest ids first) into
        the results found on the graph, which never holds them."""
        zero_ids = a["zero_ids"]
        k = ids.shape[1]
        if zero_ids.shape[0] == 0:
            return ids, dists
        extra = np.broadcast_to(zero_ids[:k], (ids.shape[0], min(k, zero_ids.shape[0])))
        all_ids = np.concatenate([ids, extra], axis=1)
        all_d = np.concatenate([dists, np.ones(extra.shape)], axis=1)
        order = np.argsort(all_d, axis=1, kind="stable")[:, :k]
        return (np.take_along_axis(all_ids, order, axis=1),
                np.take_along_axis(all_d, order, axis=1))

    def _unscale(self, dists: NDArray[np.float64],
                 ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Distances in the units of the input data, clipped to the float32 range
        (the index holds the data multiplied by ``_scale``)."""
        if self._scale != 1.0:
            power = 1 if self.metric == "euclidean" else 2
            dists = dists * np.ldexp(1.0, -power * (int(np.frexp(self._scale)[1]) - 1))
        np.clip(dists, -_F32_MAX, _F32_MAX, out=dists, where=ids >= 0)
        return dists.astype(np.float32)

    def _query_args(self, full: NDArray[np.float32], a: dict[str, NDArray]) -> tuple:
        """Traversal queries and the per-query distance terms (kernel docstring)
        for prepared queries ``full``."""
        t = full if self.projection is None else self.projection.transform_queries(
            full)
        if self._search_ip:
            c = np.float32(2.0 if self.metric in _L2 else 1.0)
            offsets = -c * (t @ (a["lvq_mean"] + a["proj_shift"]))
            if self.metric in _L2:
                offsets += self.projection.centred_sq_norms(full)
            u, use_aux = t, self.metric in _L2
        else:
            u = np.ascontiguousarray(t - a["lvq_mean"])
            c, offsets, use_aux = np.float32(2.0), _sq_norms(u), True
        final = np.full(full.shape[0], 1.0 if self.metric == "cosine" else 0.0)
        return (np.ascontiguousarray(u, np.float32), c,
                np.ascontiguousarray(offsets, np.float32), use_aux, full, final)

    # ------------------------------------------------------------ persistence
    def _check_fitted(self) -> None:
        if not self._a:
            raise ValueError(
                "this Index is empty: call fit(database) first or load one")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to ``path``: one file with a format version and a
        checksum, written atomically."""
        self._check_fitted()
        meta = {name: getattr(self, name) for name in _PARAMS}
        meta.update(dim=self._dim, entry=self._entry, scale=self._scale)
        arrays = {name: self._a[name] for name in _ARRAYS}
        for prefix, part in (("projection", self.projection), ("lvq", self._lvq),
                             ("secondary_lvq", self._sec_lvq)):
            if part is not None:
                persistence.nest(prefix, meta, arrays, *part.to_state())
        return persistence.save_state(path, STATE_KIND, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Index:
        """Read an index written by :meth:`save`.

        Raises
        ------
        ValueError
            When the file is not a leanvec file, is truncated or corrupt, or holds
            another kind of object.
        """
        _, meta, arrays = persistence.load_state(path, STATE_KIND)
        try:
            index = cls(**{name: meta[name] for name in _PARAMS})
            index._dim, index._entry = int(meta["dim"]), int(meta["entry"])
            index._scale = float(meta.get("scale", 1.0))
            for name, dtype in _OPTIONAL.items():
                arrays.setdefault(name, np.zeros(0, dtype=dtype))
            index._a = {name: np.ascontiguousarray(arrays[name]) for name in _ARRAYS}
        except KeyError as err:
            raise ValueError(f"{path} lacks the index entry {err}") from None
        index._consts = {n: index._a[n] for n in ("lvq_mean", "proj_shift")}
        index._view = (index._a, index._entry)
        a = index._a
        if (index.metric == "cosine" and index.secondary == "lvq8"
                and a["s_norms"].shape[0] != index.n):
            # Written before the norms were stored: compute them once.
            a["s_norms"] = _decoded_norms(a["s_u8"], a["s_steps"], a["s_biases"],
                                          a["s_mean"])
        if "projection" in meta:
            index.projection = LeanVec.from_state(
                *persistence.unnest("projection", meta, arrays))
        for prefix, attr in (("lvq", "_lvq"), ("secondary_lvq", "_sec_lvq")):
            if prefix in meta:
                setattr(index, attr, LVQ.from_state(
                    *persistence.unnest(prefix, meta, arrays)))
        return index


def load(path: str | os.PathLike) -> Index:
    """Read an :class:`Index` written by :meth:`Index.save`."""
    return Index.load(path)
