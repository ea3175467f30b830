"""Exhaustive search over LVQ, PQ or LR²VQ codes, with optional re-ranking."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import METRIC_CODES, amx, int8
from ._kernels.lvq import (
    KIND_IP,
    KIND_L2,
    code_l2_stats,
    code_stats,
    lvq8_ip_scan,
    lvq8_scan_rows,
    lvq8_scan_tiles,
    lvq_candidate_distances,
    lvq_decode_rows,
    lvq_scan,
    outside_band,
    sort_candidates,
    tile_query_constants,
)
from ._kernels.pq import LANES, pq_scan, pq_scan_blocked
from ._kernels.topk import NO_ID, finish_heaps, rescore, select_block
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
from .lvq import LVQ, LVQCodes
from .persistence import load_state, nest, save_state, unnest
from .pq import LR2VQ, PQ

logger = logging.getLogger(__name__)

__all__ = ["CompressedIndex", "make_quantizer"]

_KIND = "leanvec.CompressedIndex"
_QUERY_BLOCK = 256  # queries scanned per call (bounds PQ table memory)
_PQ_BATCH = 8  # from this many queries a call, PQ codes are scanned for many at once
_LVQ_BATCH = 16  # from this many queries a call, LVQ codes are decoded in tiles
_LVQ_TILE = 4096  # database rows decoded at a time
_LVQ_MARGIN = 16  # extra candidates the tile products pass on to exact re-scoring
_AMX_ROWS = 2048  # rows of 8-bit codes every query of a batch passes over at a time
_AMX_GROUPS = 64  # groups of 48 queries scanned per call on AMX
# Queries whose largest magnitude is below this, or whose squared norm is not
# below _LVQ_MAX_SQUARE, skip the integer-filtered scans.
_LVQ_MIN_MAGNITUDE = 2.0**-40
_LVQ_MAX_SQUARE = 2.0**120
_NO_ROWS = (np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32))
_QUANTIZERS = {"LVQ": LVQ, "PQ": PQ, "LR2VQ": LR2VQ}
_SPEC = re.compile(r"^(lvq)(8|4)(?:x(8|4))?$|^(pq|lr2vq)(\d+)(r?)$")
_F32_MAX = float(np.finfo(np.float32).max)

Quantizer = LVQ | PQ | LR2VQ


class _Stored(NamedTuple):
    """What :meth:`CompressedIndex.fit` stores, replaced whole (one attribute
    store), so that a search running in another thread meanwhile reads one
    consistent set: codes, float32 vectors for re-ranking (or None), LVQ kernel
    constants (or None) and the power of two the data was multiplied by;
    ``derived`` caches what searches compute from these once (code norms)."""

    codes: LVQCodes | NDArray[np.uint8]
    full: NDArray[np.float32] | None
    constants: tuple[NDArray, NDArray] | None
    scale: float
    derived: dict


def make_quantizer(spec: str | Quantizer) -> Quantizer:
    """Return a quantizer for ``spec``.

    Parameters
    ----------
    spec : str or quantizer
        "lvq8", "lvq4", "lvq4x8", "lvq8x8", "lvq4x4" (two levels: first x residual
        bits), "pq{n_bytes}", "lr2vq{n_bytes}", "lr2vq{n_bytes}r" (residual
        codebooks), or an :class:`LVQ`, :class:`PQ` or :class:`LR2VQ` instance
        (returned as is).
    """
    if isinstance(spec, (LVQ, PQ, LR2VQ)):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"quantizer must be a string or a quantizer, got "
                        f"{type(spec).__name__}")
    match = _SPEC.fullmatch(spec.lower())
    if match is None:
        raise ValueError(f"quantizer must look like 'lvq8', 'lvq4x8', 'pq16', "
                         f"'lr2vq16' or 'lr2vq16r', got {spec!r}")
    if match.group(1):
        return LVQ(int(match.group(2)), int(match.group(3) or 0))
    n_bytes = int(match.group(5))
    if match.group(4) == "pq":
        if match.group(6):
            raise ValueError(f"quantizer {spec!r}: residual codebooks ('r') are an "
                             f"LR2VQ option, e.g. 'lr2vq16r'")
        return PQ(n_bytes)
    return LR2VQ(n_bytes, codebooks="residual" if match.group(6) else "product")


class CompressedIndex:
    """Exhaustive search on compressed vectors, optionally re-scored exactly.

    Every query is compared with every stored code (asymmetric distances: the
    query stays float32); the best ``max(k, rerank)`` candidates are re-scored on
    the full vectors when ``rerank > 0``.

    Parameters
    ----------
    quantizer : str or quantizer
        See :func:`make_quantizer`. An unfitted quantizer is fitted on the
        database by :meth:`fit`; a fitted one is used as is.
    metric : {"sqeuclidean", "euclidean", "inner_product", "cosine", "angular"}
    rerank : int
        Candidates re-scored on float32 vectors kept alongside the codes (adds
        ``4 * dim`` bytes per vector); 0 keeps only the codes and returns the
        code distances.
    n_threads : int or None
        Threads for batch search; None uses every core.

    Notes
    -----
    Two-level LVQ scans with both levels. Under cosine the database and queries
    are normalised before coding, and code distances are ``1 - <q, xhat>``
    (``xhat`` need not be exactly unit length). Under the other metrics, data
    beyond the float32-safe range is stored multiplied by a power of two (the
    quantizer is fitted on the scaled data) and distances are returned in the
    data's units, clipped to the float32 range; a quantizer fitted beforehand is
    used unscaled. Code distances are float32 sums: queries so far from the
    stored vectors that a distance overflows it (beyond 3.4e38, e.g. coordinates
    of 1e20 next to unit vectors under L2) raise a ValueError rather than rank
    infinities.

    How codes are scanned depends on the call. PQ and LR²VQ: from 8 queries a call,
    one pass over the codes serves 32 queries at a time; fewer walk the codes per
    query, with the same float32 sums. LVQ: from 16 queries a call, tiles of rows
    are decoded to float32 once and scored by a matrix product; the best ``k + 16``
    rows per query (``rerank + 16`` with re-ranking) are then re-scored with the
    per-query kernels' arithmetic, so a batch returns what one query per call
    returns unless more than 16 rows lie within float32 rounding of the cut. One
    query at a time, one-level 8-bit LVQ under inner product and cosine rounds
    the query to int16 and computes exact integer products; only rows whose
    error-bounded distance can still enter the top ``k`` are scored in float32.
    """

    def __init__(self, quantizer: str | Quantizer = "lvq8", metric: str = "cosine",
                 rerank: int = 0, n_threads: int | None = None) -> None:
        self.quantizer = make_quantizer(quantizer)
        self.metric = check_metric(metric)
        self.rerank = check_positive_int(rerank, "rerank", minimum=0)
        self.n_threads = check_n_threads(n_threads)
        self._stored: _Stored | None = None
        self._scale = 1.0

    @property
    def codes(self) -> LVQCodes | NDArray[np.uint8] | None:
        """The stored codes (None before :meth:`fit`)."""
        stored = self._stored
        return None if stored is None else stored.codes

    @property
    def n(self) -> int:
        """Number of database vectors."""
        codes = self.codes
        return 0 if codes is None else len(codes)

    def __len__(self) -> int:
        return self.n

    @property
    def dim(self) -> int | None:
        """Features per vector, or None before :meth:`fit`."""
        return self.quantizer.dim if self.codes is not None else None

    @property
    def bytes_per_vector(self) -> int:
        """Bytes stored per vector: codes, constants and any re-ranking vectors."""
        stored = self._stored
        full = 0
        if stored is not None and stored.full is not None:
            full = 4 * (self.dim or 0)
        return self.quantizer.bytes_per_vector + full

    def fit(self, database: ArrayLike, train_queries: ArrayLike | None = None,
            ) -> CompressedIndex:
        """Fit the quantizer (unless already fitted) and encode ``database``.

        Parameters
        ----------
        database : array of shape (n, dim)
        train_queries : array of shape (m, dim), optional
            Held-out queries for LR²VQ's choice of projected dimension.

        Returns
        -------
        CompressedIndex
            ``self``.

        Notes
        -----
        A later call re-encodes with the quantizer fitted by the first (and its
        scale). A search running in another thread meanwhile uses the codes it
        started with.
        """
        base = as_matrix(database, "database")
        fresh = self.quantizer.dim is None
        scale = self._scale
        if fresh:
            scale = 1.0
            if self.metric != "cosine":
                scale = range_scale(max_abs(base))
        elif self.quantizer.dim != base.shape[1]:
            raise ValueError(f"database has {base.shape[1]} features per row, but the "
                             f"quantizer was fitted on {self.quantizer.dim}")
        coded = normalize_rows(base) if self.metric == "cosine" else apply_scale(
            base, scale)
        if fresh:
            self._fit_quantizer(coded, train_queries, scale)
        with limit_threads(self.n_threads):
            codes = self.quantizer.encode(coded)
        full = base if self.metric == "cosine" else coded
        self._publish(codes, full if self.rerank else None, scale)
        logger.debug("CompressedIndex holds %d vectors", self.n)
        return self

    def _publish(self, codes: LVQCodes | NDArray[np.uint8],
                 full: NDArray[np.float32] | None, scale: float) -> None:
        """Store ``codes`` (and re-ranking vectors) at once for later searches."""
        constants = None
        if isinstance(self.quantizer, LVQ):
            constants = self.quantizer.kernel_constants(codes)
        self._scale = scale
        self._stored = _Stored(codes, full, constants, scale, {})

    def search(self, queries: ArrayLike, k: int) -> SearchResult:
        """Return the ``k`` nearest database vectors of each query.

        Parameters
        ----------
        queries : array of shape (n_queries, dim)
        k : int
            Slots beyond the database size hold id -1 and distance +inf.

        Returns
        -------
        SearchResult
            ``ids`` (n_queries, k) int64, ``distances`` (n_queries, k) float32 in
            the metric's units (exact when re-ranked, code distances otherwise).
        """
        stored = self._stored  # one snapshot: fit may run meanwhile
        if stored is None:
            raise ValueError("this CompressedIndex is empty: call fit(database) first")
        k = check_k(k)
        queries = as_matrix(queries, "queries", self.dim, allow_empty=True)
        if queries.shape[0] == 0:
            return empty_result(0, k)
        with limit_threads(self.n_threads, blas=queries.shape[0] > 1):
            block = _QUERY_BLOCK
            if self._lvq8_tiles(stored):
                # many groups of tile queries: each pass over the codes serves
                # them all, and only the last group is partly padding
                block = amx.GROUP * max(_AMX_GROUPS, 2 * numba.get_num_threads())
            parts = [self._search_block(stored, queries[s:s + block], k)
                     for s in range(0, queries.shape[0], block)]
        return SearchResult(np.concatenate([p.ids for p in parts]),
                            np.concatenate([p.distances for p in parts]))

    # -- persistence -------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index (quantizer, codes and any full vectors) to ``path``."""
        stored = self._stored
        if stored is None:
            raise ValueError("this CompressedIndex is empty: call fit(database) first")
        meta = {"metric": self.metric, "rerank": self.rerank, "scale": stored.scale,
                "quantizer_type": type(self.quantizer).__name__}
        arrays: dict[str, np.ndarray] = {}
        nest("quantizer", meta, arrays, *self.quantizer.to_state())
        if isinstance(stored.codes, LVQCodes):
            nest("codes", meta, arrays, *stored.codes.to_state())
        else:
            arrays["codes"] = stored.codes
        if stored.full is not None:
            arrays["full"] = stored.full
        return save_state(path, _KIND, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, n_threads: int | None = None,
             ) -> CompressedIndex:
        """Read an index written by :meth:`save`."""
        _, meta, arrays = load_state(path, _KIND)
        quantizer = _QUANTIZERS[meta["quantizer_type"]].from_state(
            *unnest("quantizer", meta, arrays))
        index = cls(quantizer, meta["metric"], meta["rerank"], n_threads)
        if isinstance(quantizer, LVQ):
            codes = LVQCodes.from_state(*unnest("codes", meta, arrays))
        else:
            codes = arrays["codes"]
            if (codes.dtype != np.uint8 or codes.ndim != 2
                    or codes.shape[1] != quantizer.n_bytes):
                raise ValueError(
                    f"{path}: codes must be uint8 of shape (n, {quantizer.n_bytes}), "
                    f"the file holds {codes.dtype} {codes.shape}")
        index._publish(codes, arrays.get("full"), float(meta.get("scale", 1.0)))
        return index

    # -- helpers -----------------------------------------------------------------

    def _fit_quantizer(self, coded, train_queries, scale: float) -> None:
        if isinstance(self.quantizer, LR2VQ):
            queries = None
            if train_queries is not None:
                queries = as_matrix(train_queries, "train_queries", coded.shape[1])
                if self.metric == "cosine":
                    queries = normalize_rows(queries)
                else:
                    queries = apply_scale(queries, scale)
            self.quantizer.fit(coded, queries, metric=self.metric)
        else:
            self.quantizer.fit(coded)

    def _kind(self) -> str:
        return "sqeuclidean" if self.metric in ("sqeuclidean", "euclidean") else (
            "inner_product")

    def _search_block(self, stored: _Stored, queries: NDArray[np.float32],
                      k: int) -> SearchResult:
        keep = min(max(k, self.rerank), len(stored.codes))
        heap_d = np.full((queries.shape[0], keep), np.inf, dtype=np.float32)
        heap_i = np.full((queries.shape[0], keep), NO_ID, dtype=np.int64)
        if self.metric == "cosine":
            scored = normalize_rows(queries)
        else:
            queries = scored = apply_scale(queries, stored.scale)
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(self.quantizer, LVQ):
                self._scan_lvq(stored, scored, heap_d, heap_i)
            else:
                self._scan_pq(stored, scored, heap_d, heap_i)
        finish_heaps(heap_d, heap_i)
        _check_code_distances(heap_d, scored)
        if self.rerank:
            return self._rerank(stored, queries, heap_i, k)
        return self._as_result(stored, heap_d, heap_i, k)

    def _scan_pq(self, stored: _Stored, queries, heap_d, heap_i) -> None:
        batch = queries.shape[0] >= _PQ_BATCH
        tables, offsets = self.quantizer.search_tables(queries, self._kind(),
                                                       LANES if batch else 0)
        kernel = pq_scan_blocked if batch else pq_scan
        kernel(tables, offsets, stored.codes, heap_d, heap_i)

    def _lvq_args(self, stored: _Stored, queries) -> tuple:
        """Kernel arguments: (queries, offsets, codes, residual, steps, biases, bits,
        residual_bits, kind), queries centred for squared L2."""
        lvq, codes = self.quantizer, stored.codes
        if self._kind() == "inner_product":
            kind, offsets = KIND_IP, (queries @ lvq.mean).astype(np.float32)
        else:
            kind, offsets = KIND_L2, np.zeros(queries.shape[0], dtype=np.float32)
            queries = np.ascontiguousarray(queries - lvq.mean)
        residual = codes.residual
        if residual is None:
            residual = np.empty((len(codes), 0), dtype=np.uint8)
        steps, biases = stored.constants
        return (queries, offsets, codes.codes, residual, steps, biases, lvq.bits,
                lvq.residual_bits, kind)

    def _scan_lvq(self, stored: _Stored, queries, heap_d, heap_i) -> None:
        args = self._lvq_args(stored, queries)
        # queries (as scored: centred under L2) far below the data's scale (their
        # integer bounds would lean on float32 subnormals) or so large that the
        # bounds' sums of squares could overflow take the plain float32 scan
        tiny = outside_band(args[0], _LVQ_MIN_MAGNITUDE, _LVQ_MAX_SQUARE)
        if tiny.any():
            for rows, plain in ((np.flatnonzero(tiny), True),
                                (np.flatnonzero(~tiny), False)):
                if rows.size == 0:
                    continue
                part_d, part_i = heap_d[rows], heap_i[rows]
                if plain:
                    lvq_scan(np.ascontiguousarray(args[0][rows]), args[1][rows],
                             *args[2:], part_d, part_i)
                else:
                    self._scan_lvq(stored, np.ascontiguousarray(queries[rows]),
                                   part_d, part_i)
                heap_d[rows], heap_i[rows] = part_d, part_i
            return
        if queries.shape[0] < _LVQ_BATCH:
            queries, offsets, codes, _, steps, biases, bits, residual_bits, kind = args
            # inner product: int16 queries (as fast here, and tighter bounds);
            # the int32 products of lvq8_ip_scan hold 255 * dim * |qi| < 2**31
            if (bits == 8 and residual_bits == 0 and kind == KIND_IP
                    and 255 * codes.shape[1] < 2**31):
                lvq8_ip_scan(queries, offsets, codes, steps, biases, heap_d, heap_i,
                             int8.available() and codes.shape[1] <= int8.MAX_WIDTH)
            elif (bits == 8 and residual_bits == 0 and int8.available()
                    and codes.shape[1] <= int8.MAX_WIDTH):
                stats, l2, rounded, qconst = self._int8_queries(stored, args, 1)
                lvq8_scan_rows(kind, queries, rounded, qconst, offsets, codes, steps,
                               biases, *stats, *l2, heap_d, heap_i)
            else:
                lvq_scan(*args, heap_d, heap_i)
            return
        if self._lvq8_tiles(stored):
            self._scan_lvq8_tiles(stored, args, heap_d, heap_i)
            return
        cand_ids = self._lvq_tile_candidates(args, heap_d.shape[1] + _LVQ_MARGIN)
        cand_d = np.empty(cand_ids.shape, dtype=np.float32)
        lvq_candidate_distances(*args, cand_ids, cand_d)
        sort_candidates(cand_d, cand_ids, heap_d.shape[1], heap_d, heap_i)

    def _lvq8_tiles(self, stored: _Stored) -> bool:
        """Whether batches go through :meth:`_scan_lvq8_tiles`: one-level 8-bit
        codes on a processor with AMX."""
        lvq = self.quantizer
        return (isinstance(lvq, LVQ) and lvq.bits == 8 and lvq.residual_bits == 0
                and stored.codes.codes.shape[1] <= amx.MAX_WIDTH and amx.available())

    def _scan_lvq8_tiles(self, stored: _Stored, args, heap_d, heap_i) -> None:
        """A batch over 8-bit codes through AMX tile products of int8 queries
        (exactly filtered: the heaps end as ``lvq_scan`` leaves them, up to float32
        rounding)."""
        queries, offsets, codes, _, steps, biases, _, _, kind = args
        padded = -(-len(queries) // amx.GROUP) * amx.GROUP
        stats, l2, rounded, qconst = self._int8_queries(stored, args, padded)
        qpacked = amx.pack_queries(rounded)
        fn = amx.tile_function()
        n = codes.shape[0]
        for r0 in range(0, n, _AMX_ROWS):
            lvq8_scan_tiles(fn, kind, queries, qpacked, qconst, offsets, codes, steps,
                            biases, *stats, *l2, r0, min(n, r0 + _AMX_ROWS), heap_d,
                            heap_i)

    def _int8_queries(self, stored: _Stored, args, padded: int) -> tuple:
        """Per-row statistics of 8-bit codes (cached with the codes) and the
        queries rounded to int8, with the per-query constants of the integer
        bounds padded to ``padded`` queries (at least the queries' count)."""
        queries, offsets, codes, _, steps, biases, _, _, kind = args
        stats = stored.derived.get("code_stats")
        if stats is None:
            stats = stored.derived.setdefault("code_stats", code_stats(codes))
        l2 = _NO_ROWS
        if kind == KIND_L2:
            l2 = stored.derived.get("code_l2_stats")
            if l2 is None:
                l2 = stored.derived.setdefault("code_l2_stats",
                                               code_l2_stats(codes, steps, biases))
        top = np.abs(queries).max(axis=1).astype(np.float64)
        qscale = np.where(top > 0, top / 127.0, 1.0).astype(np.float32).astype(
            np.float64)
        rounded = np.clip(np.rint(queries / qscale[:, None]), -127, 127)
        diff = queries - qscale[:, None] * rounded
        qerr = np.sqrt(np.einsum("ij,ij->i", diff, diff)) * (1 + 2.0**-20)
        qconst = tile_query_constants(kind, queries, offsets, qscale, qerr,
                                      diff.sum(axis=1), max(padded, len(queries)))
        return stats, l2, rounded.astype(np.int8), qconst

    def _lvq_tile_candidates(self, args, width) -> NDArray[np.int64]:
        """The best ``width`` ids per query by tile products (-1 fills).

        Tiles of rows are decoded to float32 once for the whole batch and scored
        by one matrix product; the scores differ from :func:`lvq_scan`'s sums only
        by rounding, so the caller re-scores these candidates with the scan's own
        arithmetic.
        """
        queries, offsets, _, _, steps, _, _, _, kind = args
        n = steps.shape[0]
        width = min(width, n)
        heap_d = np.full((queries.shape[0], width), np.inf, dtype=np.float32)
        heap_i = np.full((queries.shape[0], width), NO_ID, dtype=np.int64)
        l2 = kind == KIND_L2
        bias = (np.einsum("ij,ij->i", queries, queries) if l2 else -offsets)
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        sq_norms = np.empty(n if l2 else 0, dtype=np.float32)
        tile = np.empty((min(_LVQ_TILE, n), queries.shape[1]), dtype=np.float32)
        for r0 in range(0, n, tile.shape[0]):
            block = tile[:min(tile.shape[0], n - r0)]
            lvq_decode_rows(*args[2:8], r0, block)
            if l2:
                sq_norms[r0:r0 + block.shape[0]] = np.einsum("ij,ij->i", block, block)
            select_block(queries @ block.T, r0, bias, sq_norms, l2, heap_d, heap_i)
        finish_heaps(heap_d, heap_i)
        return heap_i

    def _rerank(self, stored: _Stored, queries, cand_ids, k) -> SearchResult:
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        dists = np.empty((queries.shape[0], k), dtype=np.float64)
        rescore(queries, stored.full, cand_ids, METRIC_CODES[self.metric], k, ids,
                dists)
        return SearchResult(ids, self._unscale(stored.scale, dists, ids))

    def _unscale(self, scale: float, dists: NDArray, ids: NDArray,
                 squared: bool = False) -> NDArray[np.float32]:
        """Distances in the data's units (undoing ``scale``), clipped to float32.
        ``squared``: euclidean distances still squared (code distances)."""
        dists = dists.astype(np.float64)
        if scale != 1.0:
            power = 1 if self.metric == "euclidean" and not squared else 2
            exponent = int(np.frexp(scale)[1]) - 1
            dists *= np.ldexp(1.0, -power * exponent)
        np.clip(dists, -_F32_MAX, _F32_MAX, out=dists, where=ids >= 0)
        return dists.astype(np.float32)

    def _as_result(self, stored: _Stored, heap_d, heap_i, k) -> SearchResult:
        """Code distances in the metric's units, padded to ``k`` columns."""
        # the scan ranks euclidean by squared distances: unscaled as squares
        dist = self._unscale(stored.scale, heap_d, heap_i, squared=True)
        if self.metric == "cosine":
            dist = np.maximum(dist + np.float32(1.0), np.float32(0.0))
        elif self.metric == "euclidean":
            dist = np.sqrt(np.maximum(dist, np.float32(0.0)))
        elif self.metric == "sqeuclidean":
            dist = np.maximum(dist, np.float32(0.0))
        dist[heap_i < 0] = np.inf
        out = empty_result(heap_i.shape[0], k)
        width = min(k, heap_i.shape[1])
        out.ids[:, :width] = heap_i[:, :width]
        out.distances[:, :width] = dist[:, :width]
        return out


def _check_code_distances(heap_d: NDArray[np.float32],
                          queries: NDArray[np.float32]) -> None:
    """Raise when a query's code distances left the float32 range.

    Every slot of the sorted heaps (``keep <= n`` of them) holds a finite
    distance unless the query's float32 sums overflowed: such rows are never
    kept (one query at a time) or kept at +inf in no meaningful order (batches).
    """
    bad = ~np.isfinite(heap_d).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"queries give code distances beyond the float32 range (3.4e38) for "
            f"{rows.size} row(s), first row {int(rows[0])} (largest magnitude "
            f"{max_abs(queries[rows[0]]):.3g} as the index scores it); queries must "
            f"lie much closer to the database's scale")
