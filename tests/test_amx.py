"""AMX tile products and the batched LVQ-8 scan built on them (skipped where the
processor or system has no AMX)."""

import ctypes
import mmap
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

import leanvec
from leanvec._kernels import amx, int8
from leanvec._kernels.lvq import (
    KIND_IP,
    code_stats,
    lvq8_scan_rows,
    lvq8_scan_tiles,
    lvq_scan,
    tile_query_constants,
)
from leanvec._kernels.topk import NO_ID, finish_heaps

needs_amx = pytest.mark.skipif(not amx.available(), reason="no AMX here")


@njit
def _tile(fn, codes, r0, qpacked, t0, out):
    amx.rows_tile(fn, codes, r0, qpacked, t0, out)


@needs_amx
@pytest.mark.parametrize("dim", [1, 3, 4, 63, 64, 65, 100, 384])
def test_rows_tile_matches_int64_products(rng, dim):
    n = 80
    codes = rng.integers(0, 256, (n, dim), dtype=np.uint8)
    codes[5] = 255
    queries = rng.integers(-127, 128, (100, dim), dtype=np.int8)
    queries[3] = -127
    packed = amx.pack_queries(queries)
    assert packed.shape == (9, -(-dim // 64) * 16, 64)
    want = codes.astype(np.int64) @ queries.astype(np.int64).T
    over = 0 if dim % 64 == 0 else -(-63 // dim)
    for r0, tiles in [(0, 1), (16, 2), (0, (n - over) // 16)]:
        if tiles < 1 or r0 + 16 * tiles + over > n:
            continue
        for t0 in (0, 3, 6):
            out = np.full((16 * tiles, 48), -1, dtype=np.int32)
            _tile(amx.tile_function(), codes, r0, packed, t0, out)
            q = slice(16 * t0, 16 * t0 + 48)
            expect = np.zeros((16 * tiles, 48), dtype=np.int64)
            cols = want[r0:r0 + 16 * tiles, q]
            expect[:, :cols.shape[1]] = cols
            np.testing.assert_array_equal(out, expect)


def test_pack_queries_layout(rng):
    queries = rng.integers(-127, 128, (20, 70), dtype=np.int8)
    packed = amx.pack_queries(queries)
    assert packed.shape == (3, 32, 64) and packed.dtype == np.int8
    # tile 1, dimensions 4 s .. 4 s + 3 of query 16 + i at bytes 4 i .. 4 i + 3
    assert list(packed[1, 2, 4 * 3:4 * 3 + 4]) == list(queries[19, 8:12])
    assert not packed[1, 2, 16:].any()  # queries past the 20th are zero
    assert not packed[0, 18:].any()  # dimensions past 70 are zero


def _reference(index, queries, k):
    """Heaps of the plain float32 LVQ scan, as the batched kernel must leave them."""
    stored = index._stored
    if index.metric == "cosine":
        scored = (queries / np.linalg.norm(queries, axis=1, keepdims=True))
    elif index.metric == "euclidean":
        raise ValueError("compare squared distances: use sqeuclidean")
    else:
        scored = queries * np.float32(stored.scale)
    args = index._lvq_args(stored, np.ascontiguousarray(scored, dtype=np.float32))
    keep = min(k, index.n)
    heap_d = np.full((len(queries), keep), np.inf, np.float32)
    heap_i = np.full((len(queries), keep), NO_ID, np.int64)
    lvq_scan(*args, heap_d, heap_i)
    finish_heaps(heap_d, heap_i)
    return index._as_result(stored, heap_d, heap_i, k)


@needs_amx
@pytest.mark.parametrize("n,dim,metric", [
    (5000, 384, "cosine"), (2100, 100, "inner_product"), (777, 37, "cosine"),
    (20, 64, "cosine"), (4099, 130, "inner_product"), (300, 3, "inner_product"),
    (5000, 384, "sqeuclidean"), (2100, 100, "sqeuclidean"), (300, 3, "sqeuclidean"),
])
def test_batched_lvq8_equals_the_float32_scan(rng, n, dim, metric):
    base = rng.standard_normal((n, dim)).astype(np.float32)
    base[1] = base[0]  # duplicates
    queries = rng.standard_normal((100, dim)).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric=metric, rerank=0).fit(base)
    assert index._lvq8_tiles(index._stored)
    for k, count in ((1, 100), (10, 100), (10, 7), (3, 1)):  # tiles, then one by one
        got = index.search(queries[:count], k)
        want = _reference(index, queries[:count], k)
        np.testing.assert_allclose(got.distances, want.distances, rtol=1e-5,
                                   atol=1e-5)
        same = got.ids == want.ids
        # ids may differ only between rows at equal distance (the duplicates)
        assert same.mean() > 0.99
        assert np.all(same | np.isin(got.ids, [0, 1]))


@needs_amx
def test_batched_lvq8_with_rerank_is_exact_enough(rng):
    base = rng.standard_normal((3000, 96)).astype(np.float32)
    queries = rng.standard_normal((64, 96)).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric="cosine", rerank=50).fit(base)
    got = index.search(queries, 10)
    exact = leanvec.FlatIndex("cosine").fit(base).search(queries, 10)
    assert leanvec.recall_at_k(got.ids, exact.ids, 10) >= 0.99


@needs_amx
def test_batched_kernel_reads_nothing_past_the_codes(rng):
    """Rows whose 64-byte steps would run past the array go through a padded
    copy: codes that end at a page boundary before a protected page are scanned
    without a fault."""
    page = mmap.PAGESIZE
    dim = 100
    n = page // dim  # 40 rows end 96 bytes before the guard page
    buf = mmap.mmap(-1, 2 * page)
    array = np.frombuffer(buf, dtype=np.uint8)
    start = page - n * dim
    codes = array[start:page].reshape(n, dim)
    codes[:] = rng.integers(0, 256, (n, dim), dtype=np.uint8)
    queries = rng.standard_normal((50, dim)).astype(np.float32)
    steps = rng.random(n).astype(np.float32) * 0.01 + 0.001
    biases = rng.standard_normal(n).astype(np.float32) * 0.1
    offsets = np.zeros(50, np.float32)
    top = np.abs(queries).max(axis=1).astype(np.float64)
    qscale = (top / 127).astype(np.float32).astype(np.float64)
    rounded = np.clip(np.rint(queries / qscale[:, None]), -127, 127)
    diff = queries - qscale[:, None] * rounded
    qerr = np.sqrt((diff * diff).sum(1)) * (1 + 2.0**-20)
    packed = amx.pack_queries(rounded.astype(np.int8))
    qconst = tile_query_constants(KIND_IP, queries, offsets, qscale, qerr, diff.sum(1),
                                  packed.shape[0] * 16)
    means, norms = code_stats(codes)
    heap_d = np.full((50, 5), np.inf, np.float32)
    heap_i = np.full((50, 5), NO_ID, np.int64)
    libc = ctypes.CDLL(None, use_errno=True)
    guard = array.ctypes.data + page
    if libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 0) != 0:
        pytest.skip("mprotect unavailable")
    try:
        empty = np.zeros(0, np.float32)
        lvq8_scan_tiles(amx.tile_function(), KIND_IP, queries, packed, qconst, offsets,
                        codes, steps, biases, means, norms, empty, empty, 0, n, heap_d,
                        heap_i)
    finally:
        libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 3)
    finish_heaps(heap_d, heap_i)
    decoded = steps[:, None] * codes.astype(np.float64) + biases[:, None]
    want = np.argsort(-(queries.astype(np.float64) @ decoded.T), axis=1)[:, :5]
    assert (heap_i == want).mean() > 0.98
    del codes, array


def test_disabled_by_environment():
    """LEANVEC_AMX=0 turns the tile path off; the batch then takes the
    float32 tile products and still finds the same neighbours."""
    code = textwrap.dedent("""
        import numpy as np, leanvec
        from leanvec._kernels import amx
        assert not amx.available()
        rng = np.random.default_rng(0)
        base = rng.standard_normal((500, 32)).astype(np.float32)
        index = leanvec.CompressedIndex("lvq8", rerank=0).fit(base)
        assert not index._lvq8_tiles(index._stored)
        print(index.search(base[:40], 3).ids[:, 0].tolist() == list(range(40)))
    """)
    env = dict(os.environ, LEANVEC_AMX="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_first_use_from_many_threads_at_once():
    """Threads that reach the tile function together share one compiled copy
    (a copy built twice and dropped once left a thread calling freed code)."""
    code = textwrap.dedent("""
        import threading, numpy as np, leanvec
        rng = np.random.default_rng(0)
        base = rng.standard_normal((3000, 32)).astype(np.float32)
        queries = rng.standard_normal((48, 32)).astype(np.float32)
        barrier = threading.Barrier(3)
        found = []
        def work(kind):
            barrier.wait()
            if kind:
                index = leanvec.FlatIndex("sqeuclidean").fit(base)
            else:
                index = leanvec.CompressedIndex("lvq8", "inner_product").fit(base)
            found.append(index.search(queries, 5).ids.shape)
        threads = [threading.Thread(target=work, args=(i % 2,)) for i in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(len(found))
    """)
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "3"


@needs_amx
def test_row_order_screen_without_amx_at_search_time(rng, monkeypatch):
    """An index whose screen was built for AMX (row-order codes) and searched
    where AMX is not available (a pickle moved to another machine) takes the
    one-query-at-a-time 8-bit products: same exact answers."""
    base = rng.standard_normal((3000, 40)).astype(np.float32)
    queries = rng.standard_normal((60, 40)).astype(np.float32)
    index = leanvec.FlatIndex("sqeuclidean").fit(base)
    assert index._stored.screen.codes.ndim == 2
    want = index.search(queries, 7)
    monkeypatch.setattr(amx, "available", lambda: False)
    monkeypatch.setattr(amx, "tile_function", lambda: 0)
    got = index.search(queries, 7)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.distances, want.distances, rtol=1e-6)


@pytest.mark.parametrize("metric", ["inner_product", "sqeuclidean"])
@pytest.mark.parametrize("n_queries", [1, 5, 40])
def test_tiny_queries_take_the_float32_scan(rng, n_queries, metric):
    """Queries far below the data's scale give the float32 scan's answer (their
    integer bounds would rest on subnormal floats), mixed with ordinary ones."""
    base = rng.standard_normal((2000, 8)).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric=metric, rerank=0).fit(base)
    queries = (rng.standard_normal((n_queries, 8)) * 1e-42).astype(np.float32)
    queries[::3] = rng.standard_normal((len(queries[::3]), 8))
    if n_queries > 1:
        queries[1, 0] = 0.0
    got = index.search(queries, 5)
    want = _reference(index, queries, 5)
    np.testing.assert_allclose(got.distances, want.distances, rtol=1e-5, atol=1e-30)


@needs_amx
def test_batched_lvq8_l2_far_from_the_origin(rng):
    """Squared L2 on data whose mean lies far from the origin (queries centred on
    the quantizer's mean) and on a mix of row scales: the filter stays exact."""
    base = (rng.standard_normal((3000, 48)) * rng.uniform(0.01, 10, (3000, 1))
            + 50.0).astype(np.float32)
    queries = (rng.standard_normal((64, 48)) * 3 + 50.0).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric="sqeuclidean", rerank=0).fit(base)
    got = index.search(queries, 10)
    want = _reference(index, queries, 10)
    np.testing.assert_allclose(got.distances, want.distances, rtol=1e-5, atol=1e-4)
    assert (got.ids == want.ids).mean() > 0.99


@pytest.mark.skipif(not int8.available(), reason="no AVX-512 VNNI here")
@pytest.mark.parametrize("metric", ["inner_product", "sqeuclidean"])
def test_rows_kernel_equals_the_float32_scan(rng, metric):
    """The one-query-at-a-time int8 kernel under both kinds (the index sends
    squared L2 there; inner product goes through the int16 kernel)."""
    base = rng.standard_normal((1500, 70)).astype(np.float32)
    queries = rng.standard_normal((9, 70)).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric=metric, rerank=0).fit(base)
    stored = index._stored
    args = index._lvq_args(stored, queries * np.float32(stored.scale))
    queries_k, offsets, codes, _, steps, biases, _, _, kind = args
    stats, l2, rounded, qconst = index._int8_queries(stored, args, 1)
    heap_d = np.full((9, 6), np.inf, np.float32)
    heap_i = np.full((9, 6), NO_ID, np.int64)
    lvq8_scan_rows(kind, queries_k, rounded, qconst, offsets, codes, steps, biases,
                   *stats, *l2, heap_d, heap_i)
    finish_heaps(heap_d, heap_i)
    want = _reference(index, queries, 6)
    got = index._as_result(stored, heap_d, heap_i, 6)
    np.testing.assert_allclose(got.distances, want.distances, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.ids, want.ids)


def test_query_at_the_mean_under_l2(rng):
    """Under squared L2 queries are centred on the codes' mean: a query a hair
    from the mean is tiny as scored, and takes the float32 scan too."""
    base = (rng.standard_normal((2000, 16)) + 3.0).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric="sqeuclidean", rerank=0).fit(base)
    mean = index.quantizer.mean / np.float32(index._stored.scale)
    queries = np.repeat(mean[None], 20, axis=0).astype(np.float32)
    queries[::2] = base[:10] + 0.5
    for count in (20, 3):
        got = index.search(queries[:count], 5)
        want = _reference(index, queries[:count], 5)
        np.testing.assert_allclose(got.distances, want.distances, rtol=1e-5, atol=1e-6)


def test_l2_query_whose_square_nearly_overflows(rng):
    """A centred query with |q|^2 just past the float32 maximum while its
    distances stay finite: the plain float32 scan's answer, not an error."""
    dim = 1000
    base = rng.uniform(0, 2.0**50, (200, dim)).astype(np.float32)
    base[:5] = (2.0**50 * np.linspace(0.995, 0.999, 5))[:, None]
    index = leanvec.CompressedIndex("lvq8", metric="sqeuclidean", rerank=0).fit(base)
    offset = np.sqrt(float(np.finfo(np.float32).max) * 1.0015 / dim)
    queries = (index.quantizer.mean + np.float32(offset)).astype(np.float32)
    queries = np.repeat(queries[None], 20, axis=0)
    want = _reference(index, queries, 3)
    assert np.isfinite(want.distances).all()
    for count in (20, 1):
        got = index.search(queries[:count], 3)
        np.testing.assert_array_equal(got.ids, want.ids[:count])


@pytest.mark.skipif(not int8.available(), reason="no AVX-512 VNNI here")
def test_l2_rows_whose_bias_cancels_their_codes(rng):
    """Rows far below the others' scale are stored with a bias that cancels
    their codes (x = 0 from bias -g, step g): the L2 bound allows for rounding
    at the bias's scale, so such rows are still found for queries near 0."""
    base = rng.standard_normal((3000, 24)).astype(np.float32)
    base *= np.float32(10.0) ** rng.uniform(-6, 6, (3000, 1)).astype(np.float32)
    index = leanvec.CompressedIndex("lvq8", metric="sqeuclidean", rerank=0).fit(base)
    queries = (rng.standard_normal((40, 24)) * 1e-3).astype(np.float32)
    queries += index.quantizer.mean / np.float32(index._stored.scale)
    for count in (40, 2):
        got = index.search(queries[:count], 5)
        want = _reference(index, queries[:count], 5)
        np.testing.assert_allclose(got.distances, want.distances, rtol=1e-5,
                                   atol=1e-6 * float(np.abs(want.distances).max()))
