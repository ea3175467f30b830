"""Integer dot products for LVQ-8 traversal, on both lowerings, and the graph
index with and without them."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import clustered
from numba import njit

from leanvec import Index, recall_at_k
from leanvec._kernels import graph as kg
from leanvec._kernels.int8 import dot4


@njit
def _dot4(codes, ids, qcodes, chunks):
    return dot4(codes, ids[0], ids[1], ids[2], ids[3], qcodes, chunks)


@pytest.mark.parametrize("dim", [1, 5, 63, 64, 100, 192, 384])
def test_dot4_matches_int64_products(rng, dim):
    codes = rng.integers(0, 256, (50, dim), dtype=np.uint8)
    codes[7] = 255
    qcodes = rng.integers(-127, 128, dim, dtype=np.int8)
    qcodes[:10] = -127
    ids = np.array([7, 0, 49, 7])
    for width in sorted({dim, dim // 2, (dim // 64) * 64, 0}):
        got = _dot4(codes, ids, qcodes, width)
        want = codes[ids, :width].astype(np.int64) @ qcodes[:width].astype(np.int64)
        assert list(got) == list(want), width


def test_dot4_reads_nothing_past_the_row(rng):
    """The last partial step is a masked load: a row that ends at the end of its
    array reads no byte beyond it (a page fault there would end the process)."""
    import ctypes
    import mmap
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 2 * page)
    array = np.frombuffer(buf, dtype=np.uint8)
    codes = array[page - 100:page].reshape(1, 100)  # ends at the page boundary
    codes[:] = rng.integers(0, 256, (1, 100), dtype=np.uint8)
    qcodes = rng.integers(-127, 128, 100, dtype=np.int8)
    libc = ctypes.CDLL(None, use_errno=True)
    guard = array.ctypes.data + page
    if libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 0) != 0:
        pytest.skip("mprotect unavailable")
    try:
        got = _dot4(codes, np.zeros(4, np.int64), qcodes, 100)
    finally:
        libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 3)
    assert got[0] == int(codes[0].astype(np.int64) @ qcodes.astype(np.int64))
    del codes, array


def test_generic_lowering_without_vnni(tmp_path):
    """Where the processor lacks VNNI the intrinsic lowers to plain vector IR:
    same integers."""
    script = tmp_path / "generic.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from numba import njit
        import leanvec._kernels.int8 as m
        m._has_vnni = lambda: False

        @njit
        def f(c, q, n):
            return m.dot4(c, 3, 1, 0, 2, q, n)


        rng = np.random.default_rng(1)
        c = rng.integers(0, 256, (4, 150), dtype=np.uint8)
        q = rng.integers(-127, 128, 150, dtype=np.int8)
        want = c[[3, 1, 0, 2]].astype(np.int64) @ q.astype(np.int64)
        got = f(c, q, 150)
        asm = f.inspect_asm(f.signatures[0])
        assert list(got) == list(want), (got, want)
        assert "vpdpbusd" not in asm
        print("ok")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


@njit
def _traversal_ips(u, codes, steps, biases, ids, kind):
    qcodes = np.empty(u.shape[0], dtype=np.int8)
    qscale, usum = kg.prepare_dots(u, kind, qcodes)
    out = np.empty(ids.shape[0], dtype=np.float32)
    prim = (np.empty((0, 1), np.float32), np.empty((0, 1), np.uint16), codes, steps,
            biases, np.empty(0, np.float32))
    buf = np.empty(u.shape[0], dtype=np.uint32)
    kg.batch_dist(u, np.float32(1.0), np.float32(0.0), False, ids, ids.shape[0], prim,
                  kind, out, buf, buf.view(np.float32), qcodes, qscale, usum)
    return out


@pytest.mark.parametrize("dim", [5, 64, 130])
@pytest.mark.parametrize("count", [1, 3, 4, 9])
def test_int8_traversal_distances_track_the_float_ones(rng, dim, count):
    """offset - <u, y_i> with an 8-bit query differs from the float32 one by at
    most the query's rounding error times |step_i c_i| (the bias term uses the
    float32 sum of the query)."""
    codes = rng.integers(0, 256, (30, dim), dtype=np.uint8)
    steps = rng.uniform(0.001, 0.01, 30).astype(np.float32)
    biases = rng.uniform(-1, 1, 30).astype(np.float32)
    u = rng.standard_normal(dim).astype(np.float32)
    ids = rng.integers(0, 30, count).astype(np.int32)
    exact = _traversal_ips(u, codes, steps, biases, ids, kg.PRIM_LVQ8)
    approx = _traversal_ips(u, codes, steps, biases, ids, kg.PRIM_LVQ8_I8)
    rows = steps[ids, None].astype(np.float64) * codes[ids] + biases[ids, None]
    scale = np.abs(u).max() / 127
    rounding = np.linalg.norm(u - scale * np.clip(np.rint(u / scale), -127, 127))
    scaled_codes = steps[ids, None].astype(np.float64) * codes[ids]
    bound = rounding * np.linalg.norm(scaled_codes, axis=1) + 1e-4 * np.abs(exact) + 1e-5
    assert np.all(np.abs(approx - exact) <= bound)
    np.testing.assert_allclose(exact, -(rows @ u.astype(np.float64)), rtol=1e-4,
                               atol=1e-4)


def test_zero_query_under_int8(rng):
    codes = rng.integers(0, 256, (8, 70), dtype=np.uint8)
    out = _traversal_ips(np.zeros(70, np.float32), codes, np.ones(8, np.float32),
                         np.ones(8, np.float32), np.arange(8, dtype=np.int32),
                         kg.PRIM_LVQ8_I8)
    np.testing.assert_array_equal(out, np.zeros(8, np.float32))


@pytest.mark.parametrize("dim", [5, 64, 130, 131])
def test_nibble_traversal_distances_track_the_float_ones(rng, dim):
    """4-bit rows (two codes a byte, even coordinates low) with an 8-bit query."""
    half = (dim + 1) // 2
    values = rng.integers(0, 16, (30, 2 * half), dtype=np.uint8)
    values[:, dim:] = 0
    codes = (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)
    steps = rng.uniform(0.01, 0.1, 30).astype(np.float32)
    biases = rng.uniform(-1, 1, 30).astype(np.float32)
    u = rng.standard_normal(dim).astype(np.float32)
    ids = rng.integers(0, 30, 9).astype(np.int32)
    exact = _traversal_ips(u, codes, steps, biases, ids, kg.PRIM_LVQ4)
    approx = _traversal_ips(u, codes, steps, biases, ids, kg.PRIM_LVQ4_I8)
    scaled = steps[ids, None].astype(np.float64) * values[ids, :dim]
    rows = scaled + biases[ids, None]
    scale = np.abs(u).max() / 127
    rounding = np.linalg.norm(u - scale * np.clip(np.rint(u / scale), -127, 127))
    bound = rounding * np.linalg.norm(scaled, axis=1) + 1e-4 * np.abs(exact) + 1e-5
    assert np.all(np.abs(approx - exact) <= bound)
    np.testing.assert_allclose(exact, -(rows @ u.astype(np.float64)), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("primary", ["lvq8", "lvq4"])
@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean", "inner_product"])
def test_index_recall_with_and_without_integer_dots(reference, monkeypatch, metric,
                                                    primary):
    rng = np.random.default_rng(11)
    x = clustered(rng, 1500, 96, rank=40)
    q = x[:50] + 0.1 * rng.standard_normal((50, 96)).astype(np.float32)
    true_ids, _ = reference(x, q, 10, metric)
    found = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("LEANVEC_INT8", flag)
        index = Index(metric=metric, leanvec_dims=48, primary=primary, degree=16,
                      build_window=40, n_threads=2).fit(x)
        found[flag] = recall_at_k(index.search(q, 10, window=40, rerank=80).ids,
                                  true_ids, 10)
    assert found["0"] >= 0.9 and found["1"] >= 0.9
    assert abs(found["0"] - found["1"]) <= 0.03


@pytest.mark.parametrize("rows", [1, 3, 4, 7, 256])
def test_split_products_equal_int16_products(rng, rows):
    from leanvec._kernels.lvq import _dot_i16_u8, _dots_split
    dim = 300
    codes = rng.integers(0, 256, (rows + 5, dim), dtype=np.uint8)
    qi = rng.integers(-32639, 32640, dim).astype(np.int16)
    qi[:4] = [32639, -32639, 127, -128]
    low = ((qi.astype(np.int32) + 128) & 255) - 128
    hi8 = ((qi.astype(np.int32) - low) >> 8).astype(np.int8)
    lo8 = low.astype(np.int8)
    np.testing.assert_array_equal(hi8.astype(np.int32) * 256 + lo8, qi)
    small = (qi // 8).astype(np.int16)  # keep int32 sums in range at dim 300
    low = ((small.astype(np.int32) + 128) & 255) - 128
    hi8 = ((small.astype(np.int32) - low) >> 8).astype(np.int8)
    dots = np.empty(rows, np.int32)
    _dots_split(hi8, low.astype(np.int8), codes, 2, rows, dots)
    want = [_dot_i16_u8(small, codes[2 + r]) for r in range(rows)]
    np.testing.assert_array_equal(dots, want)
