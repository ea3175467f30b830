"""Exact k-nearest-neighbour search: blocked BLAS products and a numba top-k."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import METRIC_CODES
from ._kernels import amx as _amx
from ._kernels import int8 as _int8
from ._kernels.topk import NO_ID, finish_heaps, rescore, select_block
from ._result import SearchResult, empty_result
from ._threads import limit_threads
from ._validation import (
    apply_scale,
    as_matrix,
    check_k,
    check_metric,
    check_n_threads,
    max_abs,
    normalize_rows,
    range_scale,
)

logger = logging.getLogger(__name__)

# Scores are computed for at most QUERY_BLOCK x BASE_BLOCK pairs at a time (16 MiB).
QUERY_BLOCK = 2048
BASE_BLOCK = 2048
_SMALL_BATCH_VALUES = 1 << 21
# Extra candidates kept from the float32 pass before the float64 re-score.
_REFINE_MARGIN = 4
_F32_MAX = float(np.finfo(np.float32).max)
_NO_NORMS = np.zeros(0, dtype=np.float32)
# Under L2, candidates are scored about the database's mean when its norm exceeds
# this many times the rows' RMS distance to it (float32 products about the origin
# then cancel most digits of the distances).
_CENTRE_RATIO = 4.0
_CHUNK_ROWS = 8192


_scratch_lock = threading.Lock()
_scratch_buffer = np.empty(0, dtype=np.float32)


class _Screen(NamedTuple):
    """8-bit codes of the rows as scored (normalized under cosine, minus the
    centre under L2) in the packed layout of the 8-bit kernels, with each row's
    offset and step, score bias (-|x|^2 / 2 under L2, else 0), norm, rounding
    error norm |x - x~| (plus a float32 allowance) and score slack."""

    codes: NDArray[np.uint8]
    offset: NDArray[np.float32]
    step: NDArray[np.float32]
    bias: NDArray[np.float32]
    norm: NDArray[np.float32]
    resid: NDArray[np.float32]
    slack: NDArray[np.float32]
    bias_up: NDArray[np.float32]  # bias + slack
    n: int


_SCREEN_ROW_FLOATS = 7  # offset, step, bias, norm, resid, slack, bias_up


# Exact search screens with 8-bit products from this many rows on (below it the
# float32 products are cheap) and for k up to _SCREEN_MAX_K.
_SCREEN_MIN_ROWS = 2048
_SCREEN_MAX_K = 256
# The screen's float32 bounds multiply row and query magnitudes: rows (and
# queries) whose largest magnitude lies below this go through the float32
# products instead, so that no bound term underflows.
_SCREEN_MIN_MAGNITUDE = 2.0**-40
# Database blocks of 16 rows screened per call: 1,920 rows, whose codes stay in
# the second-level cache while every query is screened against them.
_SCREEN_CHUNK_BLOCKS = 120
# Rows of row-order codes screened per call on AMX (every query passes over them
# while they stay in the second-level cache).
_SCREEN_TILE_ROWS = 2048
# Fewer queries than this go one by one through 8-bit dot products instead (a
# tile call costs as much for one query as for 48).
_SCREEN_TILE_QUERIES = 4
# Candidates a query may keep when screened again after outgrowing the first
# pass's room (a few megabytes per group of queries).
_SCREEN_WIDE_ROOM = 1 << 16


def _quantize_rows(rows: NDArray[np.float32]) -> tuple[NDArray[np.uint8], ...]:
    """Per-row 8-bit codes of ``rows`` (n, dim) with offset, step, norm and bounded
    rounding error, for :class:`_Screen`."""
    n, dim = rows.shape
    width = -(-dim // 4) * 4
    codes = np.zeros((n, width), dtype=np.uint8)
    offset = np.empty(n, dtype=np.float32)
    step = np.empty(n, dtype=np.float32)
    norm = np.empty(n, dtype=np.float32)
    resid = np.empty(n, dtype=np.float32)
    for s in range(0, n, _CHUNK_ROWS):
        part = rows[s:s + _CHUNK_ROWS]
        low = part.min(axis=1)
        high = part.max(axis=1)
        width_f = (high.astype(np.float64) - low) / 255.0
        st = width_f.astype(np.float32)
        safe = np.where(st > 0, st, np.float32(1.0))
        c = np.rint((part - low[:, None]) / safe[:, None])
        np.clip(c, 0, 255, out=c)
        c[st == 0] = 0
        codes[s:s + part.shape[0], :dim] = c
        approx = low[:, None].astype(np.float64) + st[:, None].astype(np.float64) * c
        err = np.sqrt(np.einsum("ij,ij->i", part - approx, part - approx))
        nrm = np.sqrt(np.einsum("ij,ij->i", part, part, dtype=np.float64))
        code_norm = np.sqrt(np.einsum("ij,ij->i", c, c, dtype=np.float64))
        # float32 evaluation of qsum * offset + qscale * step * dot: a relative
        # allowance on the magnitudes of both terms, per unit of |q~|
        allowance = _int8.ROUNDING * (np.sqrt(dim) * np.abs(low) + st * code_norm + nrm)
        offset[s:s + part.shape[0]] = low
        step[s:s + part.shape[0]] = st
        norm[s:s + part.shape[0]] = nrm * (1 + 2.0**-20)
        resid[s:s + part.shape[0]] = (err + allowance) * (1 + 2.0**-20)
    return codes, offset, step, norm, resid


def _magnitudes_screenable(rows: NDArray[np.float32]) -> bool:
    """False when a nonzero row's largest magnitude is below
    _SCREEN_MIN_MAGNITUDE (its bound terms could underflow in float32)."""
    for s in range(0, rows.shape[0], _CHUNK_ROWS):
        top = np.abs(rows[s:s + _CHUNK_ROWS]).max(axis=1)
        if np.any((top > 0) & (top < _SCREEN_MIN_MAGNITUDE)):
            return False
    return True


def _screen_parts(rows: NDArray[np.float32], bias: NDArray[np.float32]
                  ) -> tuple[NDArray, ...] | None:
    """Unpacked 8-bit codes (n, dim rounded up to 4) and per-row arrays of
    :class:`_Screen` for ``rows`` scored with ``bias``; None when a bound is not
    finite in float32 (the rows then go through the float32 products)."""
    codes, offset, step, norm, resid = _quantize_rows(rows)
    if not (np.isfinite(norm).all() and np.isfinite(resid).all()):
        return None
    slack = np.abs(bias) * np.float32(_int8.ROUNDING)
    return codes, offset, step, bias.astype(np.float32), norm, resid, slack


def _pack_screen(parts: tuple[NDArray, ...]) -> _Screen:
    """The screen of ``parts`` (from :func:`_screen_parts`): codes in row order
    where the AMX tile kernel runs (with zero rows after the last tile for its
    whole 64-byte steps), else in the 16-row blocks of the VNNI kernel."""
    codes = parts[0]
    n, width = codes.shape
    tile = _int8.TILE_ROWS
    padded = -(-n // tile) * tile

    def pad(values: NDArray[np.float32]) -> NDArray[np.float32]:
        out = np.zeros(padded, dtype=np.float32)
        out[:n] = values
        return out

    arrays = [pad(values) for values in parts[1:]]
    if _amx.available() and width <= _amx.MAX_WIDTH:
        over = 0 if width % _amx.STEP == 0 else -(-(_amx.STEP - 1) // width)
        rows = np.zeros((padded + over, width), dtype=np.uint8)
        rows[:n] = codes
        return _Screen(rows, *arrays, arrays[2] + arrays[5], n)
    return _Screen(_int8.pack_codes(codes, padded // _int8.BLOCK_ROWS), *arrays,
                   arrays[2] + arrays[5], n)


def _screen_width(screen: _Screen) -> int:
    """Bytes of codes a row of ``screen`` holds (dim rounded up to 4)."""
    codes = screen.codes
    return codes.shape[1] if codes.ndim == 2 else codes.shape[1] * 4


def _unpack_screen(screen: _Screen) -> tuple[NDArray, ...]:
    n = screen.n
    if screen.codes.ndim == 2:
        codes = screen.codes[:n]
    else:
        n_blocks, d4, _ = screen.codes.shape
        codes = (screen.codes.reshape(n_blocks, d4, _int8.BLOCK_ROWS, 4)
                 .transpose(0, 2, 1, 3).reshape(n_blocks * _int8.BLOCK_ROWS, d4 * 4)[:n])
    return (codes, screen.offset[:n], screen.step[:n], screen.bias[:n],
            screen.norm[:n], screen.resid[:n], screen.slack[:n])


class _Stored(NamedTuple):
    """A FlatIndex's database, replaced whole (one attribute store) by fit and add,
    so that a search running meanwhile in another thread sees one consistent
    snapshot: rows, squared norms (L2 only, of the rows minus ``centre``), largest
    magnitude (of the rows minus ``centre``) and the centre (L2 data far from the
    origin, else None)."""

    base: NDArray[np.float32]
    base_sq: NDArray[np.float32] | None
    amax: float
    centre: NDArray[np.float32] | None = None
    screen: _Screen | None = None


def _l2_centre(rows: NDArray[np.float32]) -> NDArray[np.float32] | None:
    """The rows' mean when it lies far from the origin compared with the rows'
    spread about it (see ``_CENTRE_RATIO``), else None."""
    if rows.shape[0] < 2:
        return None
    mean = rows.mean(axis=0, dtype=np.float64)
    # mean |x - mean|^2 = mean |x|^2 - |mean|^2, in float64
    spread = 0.0
    for s in range(0, rows.shape[0], _CHUNK_ROWS):
        part = rows[s:s + _CHUNK_ROWS]
        spread += float(np.einsum("ij,ij->", part, part, dtype=np.float64))
    spread = spread / rows.shape[0] - float(mean @ mean)
    if float(mean @ mean) <= _CENTRE_RATIO**2 * spread:
        return None
    centre = mean.astype(np.float32)
    return centre if np.isfinite(centre).all() else None


def _centred_norms(rows: NDArray[np.float32], centre: NDArray[np.float32] | None,
                   ) -> tuple[NDArray[np.float32], float]:
    """|x - centre|^2 (float32) of every row, and the largest |x_j - centre_j|."""
    if centre is None:
        with np.errstate(over="ignore"):
            return np.einsum("ij,ij->i", rows, rows).astype(np.float32), max_abs(rows)
    sq = np.empty(rows.shape[0], dtype=np.float32)
    amax = 0.0
    for s in range(0, rows.shape[0], _CHUNK_ROWS):
        with np.errstate(over="ignore"):
            part = rows[s:s + _CHUNK_ROWS] - centre
            sq[s:s + part.shape[0]] = np.einsum("ij,ij->i", part, part)
        amax = max(amax, max_abs(part))
    return sq, amax


@contextmanager
def _scratch(size: int) -> Iterator[NDArray[np.float32]]:
    """A float32 work array of ``size`` values, reused across searches.

    A fresh array's pages each cost a fault and a zeroing on first write, a visible
    share of a search that writes tens of megabytes of scores. The process keeps
    one buffer; a search that finds it in use (another thread) takes a fresh array.
    """
    global _scratch_buffer
    if not _scratch_lock.acquire(blocking=False):
        yield np.empty(size, dtype=np.float32)
        return
    try:
        if _scratch_buffer.size < size:
            _scratch_buffer = np.empty(0, dtype=np.float32)
            _scratch_buffer = np.empty(size, dtype=np.float32)
        yield _scratch_buffer[:size]
    finally:
        _scratch_lock.release()


class FlatIndex:
    """Exact search over a database held as float32 rows.

    Parameters
    ----------
    metric : {"sqeuclidean", "euclidean", "inner_product", "cosine", "angular"}
        Distance returned by :meth:`search` (smaller is closer): squared or true L2,
        the negated inner product, or 1 - cosine similarity. Under cosine a zero
        vector has similarity 0 to every vector (distance 1).
    n_threads : int or None
        Threads for batch search; None uses every core.
    screen : bool
        Keep an 8-bit copy of the database (one byte per feature and 24 bytes per
        row more) to screen rows before exact scoring, where the processor has
        8-bit dot-product instructions (AVX-512 VNNI); about twice as fast on
        databases of tens of thousands of rows. False keeps float32 rows only.

    Notes
    -----
    With the screen (databases of 2,048 rows or more, k up to 256), each row's
    score is bounded from its 8-bit codes and the query's, and only rows whose
    upper bound reaches the k-th best lower bound are scored, in float64: the
    result is the exact top k. Otherwise candidates are selected with float32
    matrix products, then the best ``k + 4`` are re-scored in float64, so
    reported distances are exact to float32 rounding (rows closer than that to
    the k-th may be swapped). Either way duplicates are at distance exactly 0.

    Data whose largest magnitude lies outside [2^-40, 2^50] (1e-12 .. 1e15) is
    scored after scaling by a power of two, which keeps the ranking exact. Under
    L2, a database whose mean lies far from the origin (beyond 4 times the rows'
    RMS distance to it) is scored about that mean, block by block, so that the
    float32 products keep the digits of the distances. Reported
    distances are float32: ones beyond its range are clipped to +-3.4e38 (valid hits
    never read +inf), and ones below its smallest subnormal read 0.
    """

    def __init__(self, metric: str = "cosine", n_threads: int | None = None,
                 screen: bool = True) -> None:
        self.metric = check_metric(metric)
        self.n_threads = check_n_threads(n_threads)
        if not isinstance(screen, (bool, np.bool_)):
            raise TypeError(f"screen must be True or False, got {screen!r}")
        self.screen = bool(screen)
        self._stored: _Stored | None = None

    @property
    def dim(self) -> int | None:
        """Number of features per vector, or None before :meth:`fit`."""
        stored = self._stored
        return None if stored is None else stored.base.shape[1]

    @property
    def n(self) -> int:
        """Number of database vectors."""
        stored = self._stored
        return 0 if stored is None else stored.base.shape[0]

    def __len__(self) -> int:
        return self.n

    @property
    def bytes_per_vector(self) -> int:
        """Memory the index keeps per database vector."""
        stored = self._stored
        if stored is None:
            return 0
        extra = 4 if stored.base_sq is not None else 0
        if stored.screen is not None:
            extra += _screen_width(stored.screen) + 4 * _SCREEN_ROW_FLOATS
        return 4 * stored.base.shape[1] + extra

    def fit(self, database: ArrayLike) -> FlatIndex:
        """Store ``database`` (array of shape (n, dim)) and return ``self``.

        A search running in another thread meanwhile uses the database it started
        with.
        """
        stored = self._with_screen(self._store(as_matrix(database, "database")))
        self._stored = stored
        logger.debug("FlatIndex holds %d vectors of dim %d", *stored.base.shape)
        return self

    def _store(self, rows: NDArray[np.float32], old: _Stored | None = None,
               ) -> _Stored:
        """The stored form of validated ``rows`` (n, dim) float32; ``old`` (adding
        to it) gives the centre."""
        if self.metric not in ("sqeuclidean", "euclidean"):
            base = rows if self.metric != "cosine" else normalize_rows(rows)
            return _Stored(base, None, max_abs(base))
        centre = _l2_centre(rows) if old is None else old.centre
        base_sq, amax = _centred_norms(rows, centre)
        if not np.isfinite(amax):
            raise ValueError(f"vectors minus the database's mean overflow float32 "
                             f"(largest magnitude {max_abs(rows):.3g})")
        return _Stored(rows, base_sq, amax, centre)

    def _with_screen(self, stored: _Stored, start: int = 0,
                     old: _Screen | None = None) -> _Stored:
        """``stored`` with its 8-bit screen: ``old``'s (covering rows [0, start))
        extended by rows [start, n), or built anew when ``old`` is None. None when
        it cannot serve: kernels unavailable here, magnitudes outside the
        float32-safe band, too few rows, a non-finite bound."""
        n, dim = stored.base.shape
        if (not self.screen or n < _SCREEN_MIN_ROWS or not _int8.available()
                or range_scale(stored.amax) != 1.0 or dim > _int8.MAX_WIDTH):
            return stored
        if old is None:
            start = 0
        rows = stored.base[start:]
        if stored.centre is not None:
            rows = rows - stored.centre
        if not _magnitudes_screenable(rows):
            return stored
        if stored.base_sq is None:
            bias = np.zeros(n - start, dtype=np.float32)
        else:  # float64 sums: float32 ones can drop the small squares entirely
            sq = np.empty(n - start, dtype=np.float64)
            for s in range(0, n - start, _CHUNK_ROWS):
                part = rows[s:s + _CHUNK_ROWS]
                sq[s:s + part.shape[0]] = np.einsum("ij,ij->i", part, part,
                                                    dtype=np.float64)
            bias = (-0.5 * sq).astype(np.float32)
        parts = _screen_parts(rows, bias)
        if parts is None:
            return stored
        if old is not None:
            parts = tuple(np.concatenate([a, b]) for a, b in
                          zip(_unpack_screen(old), parts))
        return stored._replace(screen=_pack_screen(parts))

    def add(self, vectors: ArrayLike) -> NDArray[np.int64]:
        """Append ``vectors`` to the database and return their ids.

        Not to be called from two threads at once on one index (one of the two
        additions may be lost); searches may run meanwhile.
        """
        old = self._stored
        if old is None:
            self.fit(vectors)
            return np.arange(self.n, dtype=np.int64)
        extra = self._store(as_matrix(vectors, "vectors", old.base.shape[1]), old)
        base_sq = None
        if old.base_sq is not None:
            base_sq = np.concatenate([old.base_sq, extra.base_sq])
        merged = _Stored(np.concatenate([old.base, extra.base]), base_sq,
                         max(old.amax, extra.amax), old.centre)
        self._stored = self._with_screen(merged, old.base.shape[0], old.screen)
        return np.arange(old.base.shape[0], self._stored.base.shape[0],
                         dtype=np.int64)

    def search(self, queries: ArrayLike, k: int) -> SearchResult:
        """Return the ``k`` nearest database vectors of each query.

        Parameters
        ----------
        queries : array of shape (n_queries, dim)
            A 1-d array is one query.
        k : int
            Neighbours per query. When ``k`` exceeds the database size the extra
            slots hold id -1 and distance +inf.

        Returns
        -------
        SearchResult
            ``ids`` (n_queries, k) int64 and ``distances`` (n_queries, k) float32.
        """
        stored = self._stored  # one snapshot: fit or add may run meanwhile
        if stored is None:
            raise ValueError("this FlatIndex is empty: call fit(database) first")
        k = check_k(k)
        queries = as_matrix(queries, "queries", stored.base.shape[1],
                            allow_empty=True)
        if queries.shape[0] == 0:
            return empty_result(0, k)
        # one query: no BLAS pool to bound (a matrix-vector product at most)
        with limit_threads(self.n_threads, blas=queries.shape[0] > 1):
            return self._search(stored, queries, k)

    def _scale(self, stored: _Stored, queries: NDArray[np.float32]) -> float:
        """Power of two bringing the largest magnitude into the float32-safe band
        (beyond it products and squared norms overflow or underflow), else 1."""
        if self.metric == "cosine":
            return 1.0
        return range_scale(max(stored.amax, max_abs(queries)))

    def _search(self, stored: _Stored, queries: NDArray[np.float32],
                k: int) -> SearchResult:
        scored = queries if self.metric != "cosine" else normalize_rows(queries)
        ranked = scored
        if stored.centre is not None:
            with np.errstate(over="ignore"):
                ranked = scored - stored.centre
            if not np.isfinite(max_abs(ranked)):
                raise ValueError(f"queries minus the database's mean overflow "
                                 f"float32 (largest magnitude {max_abs(scored):.3g})")
        scale = self._scale(stored, ranked)
        ids = np.empty((queries.shape[0], k), dtype=np.int64)
        dists = np.empty((queries.shape[0], k), dtype=np.float64)
        rest = np.arange(queries.shape[0])
        if (stored.screen is not None and scale == 1.0 and k <= _SCREEN_MAX_K
                and k < stored.screen.n and _int8.available()):
            rest = self._screened(stored, scored, ranked, k, ids, dists)
        if rest.size:
            if rest.size < queries.shape[0]:
                logger.debug("%d queries tie too widely for the 8-bit screen",
                             rest.size)
            part_ids = np.empty((rest.size, k), dtype=np.int64)
            part_dists = np.empty((rest.size, k), dtype=np.float64)
            self._products(stored, np.ascontiguousarray(scored[rest]),
                           np.ascontiguousarray(ranked[rest]), scale, k,
                           part_ids, part_dists)
            ids[rest] = part_ids
            dists[rest] = part_dists
        np.clip(dists, -_F32_MAX, _F32_MAX, out=dists, where=ids >= 0)
        return SearchResult(ids, dists.astype(np.float32))

    def _screened(self, stored: _Stored, scored: NDArray[np.float32],
                  ranked: NDArray[np.float32], k: int, ids: NDArray[np.int64],
                  dists: NDArray[np.float64]) -> NDArray[np.int64]:
        """Exact search through the 8-bit screen (see ``_kernels/int8``); fills
        ``ids``/``dists`` and returns the queries left to the float32 products.

        Queries whose candidates outgrow the first pass's room (rows tied or
        nearly tied with the k-th, such as many duplicates) are screened again
        with room for every row, up to _SCREEN_WIDE_ROOM; only beyond that are
        they left to the float32 products."""
        room = max(16 * k, 256)
        wide = min(stored.screen.n, max(_SCREEN_WIDE_ROOM, room))
        left = []
        for q0 in range(0, ranked.shape[0], QUERY_BLOCK):
            q1 = min(q0 + QUERY_BLOCK, ranked.shape[0])
            over = q0 + self._screen_block(stored, scored[q0:q1], ranked[q0:q1], k,
                                           room, ids[q0:q1], dists[q0:q1])
            step = 4 * _int8.TILE_QUERIES
            for s in range(0, over.size if wide > room else 0, step):
                part = over[s:s + step]
                part_ids = np.empty((part.size, k), dtype=np.int64)
                part_dists = np.empty((part.size, k), dtype=np.float64)
                again = self._screen_block(stored, scored[part], ranked[part], k,
                                           wide, part_ids, part_dists)
                done = np.setdiff1d(np.arange(part.size), again)
                ids[part[done]] = part_ids[done]
                dists[part[done]] = part_dists[done]
                left.append(part[again])
            if wide <= room:
                left.append(over)
        return np.concatenate(left) if left else np.zeros(0, dtype=np.int64)

    def _screen_block(self, stored: _Stored, scored: NDArray[np.float32],
                      ranked: NDArray[np.float32], k: int, room: int,
                      ids: NDArray[np.int64], dists: NDArray[np.float64],
                      ) -> NDArray[np.int64]:
        """Screen then re-score up to QUERY_BLOCK queries, keeping at most ``room``
        candidates each; returns the (local) queries that needed more room."""
        found, over = screen_candidates(stored.screen, ranked, k, room)
        rescore(scored, stored.base, found, METRIC_CODES[self.metric], k, ids, dists)
        return over

    def _products(self, stored: _Stored, scored: NDArray[np.float32],
                  ranked: NDArray[np.float32], scale: float, k: int,
                  ids: NDArray[np.int64], dists: NDArray[np.float64]) -> None:
        """Exact search through blocked float32 products and a float64 re-score."""
        n = stored.base.shape[0]
        keep = min(k + _REFINE_MARGIN, n)
        ranked = apply_scale(ranked, scale)
        if stored.base_sq is not None:
            bias = np.einsum("ij,ij->i", ranked, ranked).astype(np.float32)
        else:
            bias = np.full(ranked.shape[0], self.metric == "cosine", dtype=np.float32)
        rows = min(QUERY_BLOCK, ranked.shape[0])
        # few queries: wider blocks, fewer calls (one matrix-vector product for one)
        columns = min(n, max(BASE_BLOCK, _SMALL_BATCH_VALUES // rows))
        base_sq = _scaled_norms(stored, scale)
        with _scratch(rows * columns) as buffer:
            for q0 in range(0, ranked.shape[0], QUERY_BLOCK):
                q1 = min(q0 + QUERY_BLOCK, ranked.shape[0])
                heap_d = np.full((q1 - q0, keep), np.inf, dtype=np.float32)
                heap_i = np.full((q1 - q0, keep), NO_ID, dtype=np.int64)
                for b0 in range(0, n, columns):
                    width = min(columns, n - b0)
                    scores = buffer[:(q1 - q0) * width].reshape(q1 - q0, width)
                    _block_products(stored, ranked[q0:q1], b0, scale, scores)
                    select_block(scores, b0, bias[q0:q1],
                                 _NO_NORMS if base_sq is None else base_sq,
                                 base_sq is not None, heap_d, heap_i)
                finish_heaps(heap_d, heap_i)
                rescore(scored[q0:q1], stored.base, heap_i, METRIC_CODES[self.metric],
                        k, ids[q0:q1], dists[q0:q1])


def screen_candidates(screen: _Screen, ranked: NDArray[np.float32], k: int,
                      room: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The rows of ``screen`` that may be among the ``k`` best of each query of
    ``ranked`` (as scored: normalised, centred), at most ``room`` a query.

    Returns ``found`` (n_queries, width) int64, -1 padded, and the queries whose
    candidates outgrew ``room`` (or whose magnitudes are too small for float32
    bounds); their rows of ``found`` are not to be used.
    """
    rows = ranked.shape[0]
    tiles = screen.codes.ndim == 2
    group = _amx.GROUP if tiles else _int8.TILE_QUERIES
    padded = -(-rows // group) * group
    qcodes, qsum, qscale, qerr, qnorm = _quantize_queries(
        ranked, _screen_width(screen), padded)
    heap_d = np.full((padded, k), np.inf, dtype=np.float32)
    heap_i = np.full((padded, k), NO_ID, dtype=np.int64)
    cand_ids = np.empty((padded, room), dtype=np.int64)
    cand_up = np.empty((padded, room), dtype=np.float32)
    counts = np.zeros(padded, dtype=np.int64)
    overflow = np.zeros(padded, dtype=np.bool_)
    overflow[rows:] = True  # padding
    # queries too small for float32 bounds: to the float32 products
    top = np.abs(ranked).max(axis=1)
    overflow[:rows] = (top > 0) & (top < _SCREEN_MIN_MAGNITUDE)
    # row-order codes without AMX now (an index built elsewhere): one by one
    if tiles and (rows < _SCREEN_TILE_QUERIES or not _amx.available()):
        _int8.screen_rows(screen.codes, screen.offset, screen.step, screen.bias,
                          screen.bias_up, screen.norm, screen.resid, screen.slack,
                          screen.n, qcodes, qsum, qscale, qerr, qnorm, heap_d, heap_i,
                          cand_ids, cand_up, counts, overflow)
    elif tiles:
        qpacked = _amx.pack_queries(qcodes)
        fn = _amx.tile_function()
        total = screen.offset.shape[0]  # rows with codes, a multiple of 16
        for r0 in range(0, total, _SCREEN_TILE_ROWS):
            _int8.screen_tiles(fn, screen.codes, screen.offset, screen.step,
                               screen.bias, screen.bias_up, screen.norm, screen.resid,
                               screen.slack, screen.n, qpacked, qsum, qscale, qerr,
                               qnorm, r0, min(total, r0 + _SCREEN_TILE_ROWS), heap_d,
                               heap_i, cand_ids, cand_up, counts, overflow)
    else:
        n_blocks = screen.codes.shape[0]
        for b0 in range(0, n_blocks, _SCREEN_CHUNK_BLOCKS):
            b1 = min(b0 + _SCREEN_CHUNK_BLOCKS, n_blocks)
            _int8.screen(screen.codes, screen.offset, screen.step, screen.bias,
                         screen.bias_up, screen.norm, screen.resid, screen.slack,
                         screen.n, qcodes, qsum, qscale, qerr, qnorm, b0, b1, heap_d,
                         heap_i, cand_ids, cand_up, counts, overflow)
    found = np.full((rows, room), -1, dtype=np.int64)
    widest = _int8.survivors(heap_d[:rows], cand_ids[:rows], cand_up[:rows],
                             counts[:rows], overflow[:rows], found)
    return found[:, :max(int(widest), 1)], np.flatnonzero(overflow[:rows])


def _quantize_queries(queries: NDArray[np.float32], width: int, padded: int
                      ) -> tuple[NDArray, ...]:
    """Signed 8-bit codes of ``queries`` (one scale per query), zero-padded to
    ``padded`` rows and ``width`` columns, with each query's code sum times
    scale, scale, rounding error norm |q - q~| and norm |q~|."""
    rows, dim = queries.shape
    top = np.abs(queries).max(axis=1).astype(np.float64)
    scale = np.where(top > 0, top / 127.0, 1.0).astype(np.float32)
    c = np.rint(queries / scale[:, None])
    np.clip(c, -127, 127, out=c)
    qcodes = np.zeros((padded, width), dtype=np.int8)
    qcodes[:rows, :dim] = c
    approx = scale[:, None].astype(np.float64) * c
    err = np.sqrt(np.einsum("ij,ij->i", queries - approx, queries - approx))
    norm = np.sqrt(np.einsum("ij,ij->i", approx, approx))

    def pad(values: NDArray) -> NDArray[np.float32]:
        out = np.zeros(padded, dtype=np.float32)
        out[:rows] = values
        return out

    qsum = scale.astype(np.float64) * c.sum(axis=1)
    return (qcodes, pad(qsum), pad(scale), pad(err * (1 + 2.0**-20)),
            pad(norm * (1 + 2.0**-20)))


def _block_products(stored: _Stored, queries: NDArray[np.float32], b0: int,
                    scale: float, out: NDArray[np.float32]) -> None:
    """Write <q, x> for database rows [b0, b0 + out.shape[1]) into ``out``.

    ``queries`` are already multiplied by ``scale``; the block is scaled here.
    """
    block = stored.base[b0:b0 + out.shape[1]]
    if stored.centre is not None:
        block = block - stored.centre
    np.dot(queries, apply_scale(block, scale).T, out=out)


def _scaled_norms(stored: _Stored, scale: float) -> NDArray[np.float32] | None:
    """|scale (x - centre)|^2 of every row under L2 (None otherwise): the stored
    norms, or when ``scale`` is not 1 the norms of the scaled rows, computed once
    per search, a block of rows at a time."""
    if stored.base_sq is None or scale == 1.0:
        return stored.base_sq
    out = np.empty(stored.base.shape[0], dtype=np.float32)
    for s in range(0, stored.base.shape[0], _CHUNK_ROWS):
        block = stored.base[s:s + _CHUNK_ROWS]
        if stored.centre is not None:
            block = block - stored.centre
        block = apply_scale(block, scale)
        out[s:s + block.shape[0]] = np.einsum("ij,ij->i", block, block)
    return out


def exact_search(
    database: ArrayLike,
    queries: ArrayLike,
    k: int,
    metric: str = "cosine",
    n_threads: int | None = None,
) -> SearchResult:
    """Exact k-NN of ``queries`` in ``database``; see :class:`FlatIndex`."""
    return FlatIndex(metric, n_threads).fit(database).search(queries, k)


def exact_knn_graph(
    database: ArrayLike, k: int, metric: str = "cosine", n_threads: int | None = None
) -> SearchResult:
    """The ``k`` nearest *other* rows of every database row.

    A row never lists itself (excluded by index, not by distance), so an exact
    duplicate of it still appears, at distance 0. Rows with fewer than ``k`` others
    are padded with -1 / +inf.
    """
    k = check_k(k)
    index = FlatIndex(metric, n_threads).fit(database)
    base = as_matrix(database, "database")
    found = index.search(base, min(k + 1, index.n))
    ids = np.full((index.n, k), -1, dtype=np.int64)
    dists = np.full((index.n, k), np.inf, dtype=np.float32)
    for row in range(index.n):
        keep = found.ids[row] != row
        kept_ids = found.ids[row][keep][:k]
        ids[row, : kept_ids.size] = kept_ids
        dists[row, : kept_ids.size] = found.distances[row][keep][:k]
    return SearchResult(ids, dists)
