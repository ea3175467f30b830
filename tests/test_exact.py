"""Exact search against a float64 brute-force reference, and its error paths."""

import numpy as np
import pytest

import leanvec
from leanvec import FlatIndex, exact_knn_graph, exact_search
from leanvec import exact as exact_module
from leanvec._kernels import amx, int8

METRICS = ["sqeuclidean", "euclidean", "inner_product", "cosine"]


@pytest.fixture(autouse=True, params=["float32", "int8", "amx"])
def search_path(request, monkeypatch):
    """Every test here runs three times: through the float32 products alone, and
    through the 8-bit screen from the first row, with AVX-512 VNNI products and
    with AMX tile products (where this processor has them)."""
    if request.param == "float32":
        monkeypatch.setenv("LEANVEC_INT8", "0")
    else:
        if not int8.available():
            pytest.skip("no AVX-512 VNNI here (or numba's LLVM predates 22)")
        if request.param == "amx" and not amx.available():
            pytest.skip("no AMX here")
        if request.param == "int8":
            monkeypatch.setattr(amx, "available", lambda: False)
        monkeypatch.setattr(exact_module, "_SCREEN_MIN_ROWS", 1)
    return request.param


@pytest.mark.parametrize("metric", METRICS)
def test_matches_float64_reference(rng, reference, metric):
    database = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((70, 24)).astype(np.float32)
    result = exact_search(database, queries, 10, metric)
    ids, dist = reference(database, queries, 10, metric)
    assert result.ids.dtype == np.int64 and result.distances.dtype == np.float32
    assert (result.ids == ids).mean() > 0.999
    np.testing.assert_allclose(result.distances, dist, rtol=1e-5, atol=1e-5)


def test_blocks_cover_the_whole_database(rng, reference, monkeypatch):
    monkeypatch.setattr(leanvec.exact, "BASE_BLOCK", 7)
    monkeypatch.setattr(leanvec.exact, "QUERY_BLOCK", 3)
    monkeypatch.setattr(leanvec.exact, "_SMALL_BATCH_VALUES", 1)
    database = rng.standard_normal((50, 5)).astype(np.float32)
    queries = rng.standard_normal((11, 5)).astype(np.float32)
    for metric, name in (("sqeuclidean", "l2"), ("inner_product", "inner_product")):
        result = exact_search(database, queries, 6, metric)
        np.testing.assert_array_equal(result.ids, reference(database, queries, 6, name)[0])


def test_concurrent_searches_from_threads_agree(rng):
    """Searches share one scratch buffer when they can; threads must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    database = rng.standard_normal((5000, 16)).astype(np.float32)
    index = FlatIndex("inner_product", n_threads=1).fit(database)
    batches = [rng.standard_normal((40, 16)).astype(np.float32) for _ in range(8)]
    expected = [index.search(batch, 5).ids for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda batch: index.search(batch, 5).ids, batches * 3))
    for got, want in zip(found, expected * 3):
        np.testing.assert_array_equal(got, want)


def test_angular_alias_and_single_query_vector(rng):
    database = rng.standard_normal((100, 8))
    one = FlatIndex("angular").fit(database).search(database[3], 1)
    assert one.ids.shape == (1, 1) and one.ids[0, 0] == 3


@pytest.mark.parametrize("k", [4, 1])
def test_k_larger_than_n_pads_with_sentinels(k):
    # one item, dim 8, k = 4: one hit and three sentinels
    result = exact_search(np.ones((1, 8)), np.ones((2, 8)), k, "sqeuclidean")
    assert result.ids.shape == (2, k)
    assert (result.ids[:, 0] == 0).all()
    assert (result.ids[:, 1:] == -1).all() and np.isinf(result.distances[:, 1:]).all()


@pytest.mark.parametrize("k", [63, 65, 100])
def test_batch_equals_single_and_only_inserted_ids(rng, k):
    database = rng.standard_normal((65, 768)).astype(np.float32)
    queries = rng.standard_normal((5, 768)).astype(np.float32)
    index = FlatIndex("cosine").fit(database)
    batch = index.search(queries, k)
    for row, query in enumerate(queries):
        single = index.search(query, k)
        np.testing.assert_array_equal(single.ids[0], batch.ids[row])
        np.testing.assert_array_equal(single.distances[0], batch.distances[row])
    valid = batch.ids >= 0
    assert set(batch.ids[valid].tolist()) <= set(range(65))
    assert valid.sum(axis=1).tolist() == [min(k, 65)] * 5
    assert not np.isnan(batch.distances).any()


@pytest.mark.parametrize("n_queries", [0, 1, 19, 20])
def test_query_counts_including_zero(rng, n_queries):
    index = FlatIndex("euclidean").fit(rng.standard_normal((30, 4)))
    result = index.search(np.zeros((n_queries, 4)), 5)
    assert result.ids.shape == (n_queries, 5) and result.distances.shape == (n_queries, 5)


def test_knn_graph_excludes_self_but_keeps_duplicates():
    x = np.array([[0, 1], [0, 1], [-1, 2], [5, 7], [-3, 2], [9, 9]], dtype=np.float32)
    graph = exact_knn_graph(x, 3, "sqeuclidean")
    for row in range(6):
        assert row not in graph.ids[row]
    assert graph.ids[0, 0] == 1 and graph.distances[0, 0] == 0.0
    assert graph.ids[1, 0] == 0 and graph.distances[1, 0] == 0.0


def test_zero_vectors_under_cosine(rng):
    database = np.vstack([rng.standard_normal((2000, 32)), np.zeros((100, 32))])
    index = FlatIndex("cosine").fit(database)
    result = index.search(database, 1)
    assert not np.isnan(result.distances).any()
    np.testing.assert_array_equal(result.ids[:2000, 0], np.arange(2000))
    # a zero vector is at distance exactly 1 from everything
    zero = index.search(np.zeros(32), 3)
    np.testing.assert_array_equal(zero.distances, 1.0)


def test_query_scaling_does_not_change_cosine_results(rng, reference):
    database = rng.standard_normal((100, 8)).astype(np.float32)
    q = rng.standard_normal((1, 8)).astype(np.float32)
    index = FlatIndex("cosine").fit(database)
    base = index.search(q, 10)
    ids, dist = reference(database, q, 10, "cosine")
    for scale in (10.0, 0.1):
        scaled = index.search(q * scale, 10)
        np.testing.assert_array_equal(scaled.ids, base.ids)
        np.testing.assert_allclose(scaled.distances, base.distances, atol=1e-7)
    np.testing.assert_array_equal(base.ids, ids)
    np.testing.assert_allclose(base.distances, dist, atol=1e-6)


def test_duplicates_are_at_exactly_zero_and_within_range(rng):
    database = np.vstack([np.tile(rng.standard_normal(16), (50, 1)),
                          rng.standard_normal((950, 16))]).astype(np.float32)
    result = exact_search(database, database[:60], 5, "cosine")
    assert result.distances.min() >= 0.0 and result.distances.max() <= 2.0
    np.testing.assert_array_equal(result.distances[:50], 0.0)
    assert (result.ids[:50] < 50).all()


def test_uint8_input_is_cast_exactly():
    x = np.array([[0, 0, 1], [0, 1, 2], [1, 2, 3]], dtype=np.uint8)
    result = exact_search(x, x, 3, "sqeuclidean")
    expected = np.array([[0, 2, 9], [2, 0, 3], [9, 3, 0]], dtype=np.float32)
    np.testing.assert_array_equal(np.take_along_axis(expected, result.ids, 1),
                                  result.distances)
    np.testing.assert_array_equal(result.distances, np.sort(expected, axis=1))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64])
def test_other_dtypes_match_float32(rng, dtype):
    x = (rng.standard_normal((100, 8)) * 10).astype(dtype)
    as32 = exact_search(x.astype(np.float32), x[:10].astype(np.float32), 5, "cosine")
    other = exact_search(x, x[:10], 5, "cosine")
    np.testing.assert_array_equal(other.ids, as32.ids)
    listed = exact_search(x.tolist(), x[:10].tolist(), 5, "cosine")
    np.testing.assert_array_equal(listed.ids, as32.ids)


def test_non_contiguous_input(rng, reference):
    big = rng.standard_normal((200, 16)).astype(np.float32)
    database, queries = big[::2, ::2], big[1::20, ::2]
    result = exact_search(database, queries, 4, "euclidean")
    np.testing.assert_array_equal(result.ids, reference(database, queries, 4, "euclidean")[0])


def test_add_appends(rng, reference, search_path):
    a, b = rng.standard_normal((40, 6)), rng.standard_normal((30, 6))
    index = FlatIndex("sqeuclidean").fit(a)
    np.testing.assert_array_equal(index.add(b), np.arange(40, 70))
    result = index.search(b[:5], 1)
    np.testing.assert_array_equal(result.ids[:, 0], np.arange(40, 45))
    screen = 8 + 7 * 4 if search_path != "float32" else 0  # codes padded to 8 bytes
    assert len(index) == 70 and index.bytes_per_vector == 6 * 4 + 4 + screen


def test_n_threads_is_restored(rng):
    import numba

    before = numba.get_num_threads()
    exact_search(rng.standard_normal((20, 3)), rng.standard_normal((2, 3)), 2, n_threads=1)
    assert numba.get_num_threads() == before


# ------------------------------------------------------------------ errors
def test_nan_row_is_named(rng):
    x = rng.standard_normal((1000, 16))
    x[500, 3] = np.nan
    with pytest.raises(ValueError, match="row 500"):
        FlatIndex("sqeuclidean").fit(x)
    index = FlatIndex("sqeuclidean").fit(rng.standard_normal((10, 16)))
    q = np.zeros((2, 16))
    q[1, 0] = np.inf
    with pytest.raises(ValueError, match="queries .*row 1"):
        index.search(q, 1)


def test_dimension_mismatch_names_both_widths(rng):
    index = FlatIndex("sqeuclidean").fit(rng.standard_normal((1000, 50)))
    with pytest.raises(ValueError, match="1 features per row, but 50"):
        index.search(np.array([[0.0], [1.0]]), 1)


@pytest.mark.parametrize("k, error", [(0, ValueError), (-3, ValueError),
                                      (2.5, TypeError), (True, TypeError)])
def test_bad_k(rng, k, error):
    index = FlatIndex().fit(rng.standard_normal((5, 3)))
    with pytest.raises(error, match="k must be"):
        index.search(np.ones(3), k)


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((0, 4)), ValueError, "empty"),
    (np.zeros((3, 0)), ValueError, "0 features"),
    (np.zeros((2, 3, 4)), ValueError, "2-d"),
    (np.array([["a", "b"]]), TypeError, "real numbers"),
    (np.ones((2, 2), dtype=complex), TypeError, "real numbers"),
    (np.ones((2, 2), dtype=bool), TypeError, "real numbers"),
    (np.full((2, 2), 1e300), ValueError, "float32 range"),
])
def test_bad_database(bad, error, match):
    with pytest.raises(error, match=match):
        FlatIndex().fit(bad)


def test_unknown_metric_lists_valid_ones():
    with pytest.raises(ValueError, match="'cosine'.*got 'hamming'"):
        FlatIndex("hamming")


def test_search_before_fit():
    with pytest.raises(ValueError, match="call fit"):
        FlatIndex().search(np.ones((1, 3)), 1)


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-30])
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "inner_product"])
def test_huge_and_tiny_magnitudes_keep_the_exact_ranking(rng, reference, scale, metric):
    # float32 products overflow (or underflow) at these magnitudes; the ranking must
    # still match float64 and valid hits must never read +inf or NaN
    database = rng.standard_normal((200, 8))
    queries = rng.standard_normal((3, 8))
    result = exact_search(database * scale, queries * scale, 5, metric)
    ids, dist = reference(database * scale, queries * scale, 5, metric)
    np.testing.assert_array_equal(result.ids, ids)
    assert np.isfinite(result.distances).all()
    if metric == "euclidean":
        np.testing.assert_allclose(result.distances, dist, rtol=1e-5)


def test_read_only_install_without_a_cache_folder_still_works(tmp_path):
    # numba cannot cache beside the package nor in the user cache: a regular file
    # named __pycache__ blocks the first (even for root), a home below a file the
    # second; import and compiling must still work (C28)
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import vsa

    install = tmp_path / "install"
    for package in (Path(leanvec.__file__).parent, Path(vsa.__file__).parent):
        shutil.copytree(package, install / package.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [p for p in install.rglob("*") if p.is_dir()] + [install]:
        (folder / "__pycache__").write_text("")
    (tmp_path / "blocked").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    site_packages = str(Path(np.__file__).parent.parent)
    # -S: no site hooks, so the editable install cannot shadow the copy
    env.update(PYTHONPATH=os.pathsep.join([str(install), site_packages]),
               HOME=str(tmp_path / "blocked" / "home"),
               XDG_CACHE_HOME=str(tmp_path / "blocked" / "cache"))
    # one small cached kernel stands for all (compiling the search kernels takes
    # seconds): it must compile and be cached in the private folder
    code = ("import os, numba, numpy as np, leanvec, vsa; "
            "from leanvec._kernels.topk import heap_sort_inplace; "
            f"assert leanvec.__file__.startswith({str(install)!r}); "
            "d = np.array([3, 1, 2], np.float32); i = np.arange(3); "
            "heap_sort_inplace(d, i); "
            "assert os.listdir(numba.config.CACHE_DIR); "
            "print(i)")
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
                          capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[1", "2", "0]"]


def test_ragged_rows_are_named():
    with pytest.raises(ValueError, match=r"database must be a rectangular array of "
                       r"shape \(n, dim\)"):
        exact_search([[1.0, 2.0], [3.0]], [1.0, 1.0], 1)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_one_huge_row_does_not_spoil_the_others(rng, reference, metric):
    database = rng.standard_normal((300, 16))
    database[7] *= 1e30
    queries = np.concatenate([rng.standard_normal((4, 16)), database[7:8]])
    result = exact_search(database, queries, 5, metric)
    expected = reference(database, queries, 5, metric)[0]
    np.testing.assert_array_equal(result.ids, expected)


def test_rows_of_subnormal_norm_normalise_under_cosine(rng):
    database = rng.standard_normal((50, 8)).astype(np.float32)
    database[7] = 0.0
    database[7, 2] = 1e-41  # a subnormal float32: 1 / norm overflows float32
    result = exact_search(database, database[7], 3, "cosine")
    assert result.ids[0, 0] == 7 and result.distances[0, 0] == 0.0
    assert np.isfinite(result.distances).all()



@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("change", ["fit_smaller", "fit_other_dim", "add"])
def test_search_keeps_its_database_while_another_thread_refits(rng, monkeypatch,
                                                               metric, change,
                                                               search_path):
    """fit/add from another thread during a search: the search finishes on the
    database it started with. It once re-read the index between blocks and read
    rows and squared norms past their end (garbage or a crash)."""
    database = rng.standard_normal((300, 6)).astype(np.float32)
    queries = rng.standard_normal((4, 6)).astype(np.float32)
    index = FlatIndex(metric).fit(database)
    expected = index.search(queries, 5)
    owner, name = ((leanvec.exact, "select_block") if search_path == "float32"
                   else (int8, "screen" if search_path == "int8" else "screen_tiles"))
    select = getattr(owner, name)

    def select_then_change(*args):
        select(*args)
        if change == "fit_smaller":
            index.fit(database[:3].copy())
        elif change == "fit_other_dim":
            index.fit(np.ones((2, 9), dtype=np.float32))
        else:
            index.add(rng.standard_normal((50, 6)))

    monkeypatch.setattr(owner, name, select_then_change)
    found = index.search(queries, 5)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_array_equal(found.distances, expected.distances)
    assert index.n == {"fit_smaller": 3, "fit_other_dim": 2, "add": 350}[change]


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("offset", [1e3, 1e5])
def test_l2_data_far_from_the_origin(rng, reference, metric, offset):
    """Rows and queries offset by 1e3..1e5 (norms far above the distances): float32
    products about the origin cancelled every digit (recall@10 0.70 at 1e3, 0 at
    1e4); candidates are now scored about the database's mean."""
    database = (rng.standard_normal((2000, 16)) + offset).astype(np.float32)
    queries = (rng.standard_normal((30, 16)) + offset).astype(np.float32)
    index = FlatIndex(metric).fit(database[:1500])
    index.add(database[1500:])
    result = index.search(queries, 10)
    ids, dist = reference(database, queries, 10, metric)
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_allclose(result.distances, dist, rtol=1e-5)
    twin = index.search(database[[7, 1600]], 1)
    assert (twin.ids[:, 0] == [7, 1600]).all() and (twin.distances == 0.0).all()


def test_concurrent_searches_on_the_workqueue_threading_layer(tmp_path):
    """numba's fallback layer aborts the process when two threads launch parallel
    kernels at once; leanvec then runs them one at a time."""
    import subprocess
    import sys

    script = tmp_path / "many_threads.py"
    script.write_text(
        "import numpy as np, leanvec, numba\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "rng = np.random.default_rng(0)\n"
        "index = leanvec.FlatIndex('inner_product').fit(\n"
        "    rng.standard_normal((3000, 8)).astype(np.float32))\n"
        "batches = [rng.standard_normal((20, 8)).astype(np.float32) for _ in range(6)]\n"
        "want = [index.search(b, 5).ids for b in batches]\n"
        "with ThreadPoolExecutor(6) as pool:\n"
        "    got = list(pool.map(lambda b: index.search(b, 5).ids, batches * 3))\n"
        "assert all((g == w).all() for g, w in zip(got, want * 3))\n"
        "print(numba.threading_layer())\n")
    env = {**__import__("os").environ, "NUMBA_THREADING_LAYER": "workqueue"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "workqueue"
