"""The 8-bit screen of exact search: its bounds hold, and what it leaves is exact."""

import logging

import numpy as np
import pytest

from leanvec import FlatIndex
from leanvec import exact as exact_module
from leanvec._kernels import amx, int8

pytestmark = pytest.mark.skipif(not int8.available(),
                                reason="no AVX-512 VNNI here (or numba's LLVM predates 22)")

METRICS = ["sqeuclidean", "euclidean", "inner_product", "cosine"]


@pytest.fixture(autouse=True, params=["vnni", "amx"])
def products(request, monkeypatch):
    """Every test runs with the VNNI kernel's products and with AMX's."""
    if request.param == "amx" and not amx.available():
        pytest.skip("no AMX here")
    if request.param == "vnni":
        monkeypatch.setattr(amx, "available", lambda: False)
    return request.param


@pytest.fixture
def from_first_row(monkeypatch):
    monkeypatch.setattr(exact_module, "_SCREEN_MIN_ROWS", 1)


def _unpacked_dots(screen, qcodes):
    codes = exact_module._unpack_screen(screen)[0].astype(np.int64)
    return qcodes.astype(np.int64) @ codes.T


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [1, 3, 8, 37])
def test_bounds_enclose_every_true_score(rng, metric, dim, from_first_row):
    """Upper and lower bounds from the codes contain the float64 score of every
    (query, row) pair, for rows of very different norms and offsets."""
    database = (rng.standard_normal((500, dim)) * rng.uniform(0.01, 100, (500, 1))
                + rng.uniform(-5, 5, (500, 1))).astype(np.float32)
    queries = (rng.standard_normal((20, dim)) * 3).astype(np.float32)
    index = FlatIndex(metric).fit(database)
    stored = index._stored
    screen = stored.screen
    assert screen is not None and screen.n == 500
    scored = queries if metric != "cosine" else exact_module.normalize_rows(queries)
    ranked = scored if stored.centre is None else scored - stored.centre
    width = exact_module._screen_width(screen)
    qcodes, qsum, qscale, qerr, qnorm = exact_module._quantize_queries(ranked, width, 24)
    dots = _unpacked_dots(screen, qcodes[:20])
    n = screen.n
    approx = (qsum[:20, None] * screen.offset[None, :n]
              + qscale[:20, None] * screen.step[None, :n] * dots + screen.bias[None, :n])
    err = (qerr[:20, None] * screen.norm[None, :n] + qnorm[:20, None] * screen.resid[None, :n]
           + screen.slack[None, :n])
    rows = stored.base.astype(np.float64)
    if stored.centre is not None:
        rows = rows - stored.centre.astype(np.float64)
    q = ranked.astype(np.float64)
    true = q @ rows.T
    if stored.base_sq is not None:
        true -= 0.5 * np.einsum("ij,ij->i", rows, rows)[None, :]
    assert np.all(true <= approx + err)
    assert np.all(true >= approx - err)
    # and the bounds are tight enough to prune: a fraction of the score spread
    assert np.median(err) < 0.05 * (true.max() - true.min())


@pytest.mark.parametrize("metric", METRICS)
def test_default_threshold_builds_the_screen_and_matches_float32_path(
        rng, reference, metric, monkeypatch):
    database = rng.standard_normal((3000, 48)).astype(np.float32)
    queries = rng.standard_normal((37, 48)).astype(np.float32)
    index = FlatIndex(metric).fit(database)
    assert index._stored.screen is not None
    found = index.search(queries, 10)
    ids, dists = reference(database, queries, 10, metric)
    np.testing.assert_array_equal(found.ids, ids)
    np.testing.assert_allclose(found.distances, dists, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("LEANVEC_INT8", "0")
    plain = FlatIndex(metric).fit(database)
    assert plain._stored.screen is None
    other = plain.search(queries, 10)
    np.testing.assert_array_equal(found.ids, other.ids)
    np.testing.assert_array_equal(found.distances, other.distances)


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine", "inner_product"])
@pytest.mark.parametrize("wide_room", [None, 300])
def test_wide_ties_are_screened_again_or_fall_back(rng, reference, metric, wide_room,
                                                   caplog, monkeypatch, from_first_row):
    """Hundreds of equal rows tie with the k-th: too many candidates for the
    first pass, so those queries are screened again with more room, or, beyond
    that room, take the float32 path; the result is exact, ties by smaller id."""
    if wide_room is not None:
        monkeypatch.setattr(exact_module, "_SCREEN_WIDE_ROOM", wide_room)
    database = rng.standard_normal((2000, 16)).astype(np.float32)
    database[100:900] = database[50]
    queries = np.vstack([database[50], rng.standard_normal((5, 16))]).astype(np.float32)
    index = FlatIndex(metric).fit(database)
    with caplog.at_level(logging.DEBUG, logger="leanvec.exact"):
        found = index.search(queries, 10)
    fell_back = any("tie too widely" in r.getMessage() for r in caplog.records)
    if metric != "inner_product":  # there the duplicates need not be the nearest
        assert fell_back == (wide_room is not None)
    ids, dists = reference(database, queries, 10, metric)
    if metric != "inner_product":  # under inner product the duplicates are not nearest
        np.testing.assert_array_equal(found.ids[0], [50] + list(range(100, 109)))
    np.testing.assert_array_equal(found.ids, ids)
    np.testing.assert_allclose(found.distances, dists, rtol=1e-5, atol=1e-5)


def test_near_ties_below_the_rounding_step_stay_exact(rng, reference, from_first_row):
    """Rows that differ by far less than the 8-bit step: the screen cannot tell
    them apart, the exact re-score must."""
    base = rng.standard_normal(32).astype(np.float32)
    database = base + rng.standard_normal((600, 32)).astype(np.float32) * 1e-4
    database = np.vstack([database, rng.standard_normal((1400, 32))]).astype(np.float32)
    queries = (base + rng.standard_normal((8, 32)) * 1e-3).astype(np.float32)
    for metric in METRICS:
        found = FlatIndex(metric).fit(database).search(queries, 10)
        ids, dists = reference(database, queries, 10, metric)
        np.testing.assert_allclose(found.distances, dists, rtol=1e-6, atol=1e-10)
        assert (found.ids == ids).mean() > 0.9  # float64 sums in another order


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_add_extends_the_screen(rng, reference, metric):
    first = rng.standard_normal((1500, 20)).astype(np.float32)
    second = rng.standard_normal((1000, 20)).astype(np.float32)
    third = rng.standard_normal((700, 20)).astype(np.float32)
    queries = rng.standard_normal((9, 20)).astype(np.float32)
    index = FlatIndex(metric).fit(first)
    assert index._stored.screen is None  # below the threshold
    index.add(second)
    assert index._stored.screen is not None and index._stored.screen.n == 2500
    index.add(third)
    assert index._stored.screen.n == 3200
    database = np.vstack([first, second, third])
    rebuilt = FlatIndex(metric).fit(database)
    np.testing.assert_array_equal(
        exact_module._unpack_screen(index._stored.screen)[0],
        exact_module._unpack_screen(rebuilt._stored.screen)[0])
    found = index.search(queries, 7)
    ids, dists = reference(database, queries, 7, metric)
    np.testing.assert_array_equal(found.ids, ids)
    np.testing.assert_allclose(found.distances, dists, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 255, 256, 257, 2999])
def test_k_at_and_beyond_the_screen_limit(rng, reference, k, from_first_row):
    database = rng.standard_normal((3000, 12)).astype(np.float32)
    queries = rng.standard_normal((3, 12)).astype(np.float32)
    found = FlatIndex("sqeuclidean").fit(database).search(queries, k)
    ids, dists = reference(database, queries, k, "sqeuclidean")
    np.testing.assert_array_equal(found.ids, ids)
    np.testing.assert_allclose(found.distances, dists, rtol=1e-5, atol=1e-6)


def test_zero_query_under_cosine(rng, from_first_row):
    """A zero query ties with every row (distance 1): ids 0..k-1."""
    database = rng.standard_normal((3000, 10)).astype(np.float32)
    found = FlatIndex("cosine").fit(database).search(np.zeros((2, 10), np.float32), 5)
    np.testing.assert_array_equal(found.ids, [[0, 1, 2, 3, 4]] * 2)
    np.testing.assert_array_equal(found.distances, np.ones((2, 5), np.float32))


def test_many_query_blocks_and_threads(rng, reference, monkeypatch, from_first_row):
    monkeypatch.setattr(exact_module, "QUERY_BLOCK", 16)
    monkeypatch.setattr(exact_module, "_SCREEN_CHUNK_BLOCKS", 6)
    database = rng.standard_normal((1000, 24)).astype(np.float32)
    queries = rng.standard_normal((53, 24)).astype(np.float32)
    ids, dists = reference(database, queries, 5, "inner_product")
    for threads in (1, 2):
        found = FlatIndex("inner_product", n_threads=threads).fit(database).search(queries, 5)
        np.testing.assert_array_equal(found.ids, ids)
        np.testing.assert_allclose(found.distances, dists, rtol=1e-5)


def test_screen_option_and_memory(rng):
    database = rng.standard_normal((3000, 30)).astype(np.float32)
    with_screen = FlatIndex("sqeuclidean").fit(database)
    without = FlatIndex("sqeuclidean", screen=False).fit(database)
    assert without._stored.screen is None
    assert without.bytes_per_vector == 4 * 30 + 4
    # codes padded to 32 bytes, seven float32 per row
    assert with_screen.bytes_per_vector == 4 * 30 + 4 + 32 + 28
    queries = rng.standard_normal((5, 30)).astype(np.float32)
    np.testing.assert_array_equal(with_screen.search(queries, 4).ids,
                                  without.search(queries, 4).ids)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_screen_option_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="screen must be True or False"):
        FlatIndex("cosine", screen=bad)


def test_squared_norms_summed_in_float64(reference):
    """A row whose small squares vanish beside its large ones in a float32 sum:
    the screen's L2 bias must still rank it exactly."""
    dim = 8016
    rng = np.random.default_rng(2)
    database = (rng.standard_normal((2048, dim)) * 1e4).astype(np.float32)
    database[0] = 0.0
    database[0, :16] = 4096.0
    database[0, 16:] = 1.0          # |x|^2 = 2^28 + 8000
    database[1] = 0.0
    database[1, :16] = 4096.0
    database[1, 16:32] = 16.0       # |x|^2 = 2^28 + 4096: the nearest to 0
    found = FlatIndex("sqeuclidean").fit(database).search(np.zeros((1, dim)), 2)
    assert found.ids[0, 0] == 1


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product", "cosine"])
def test_tiny_rows_and_queries_beside_normal_ones(reference, metric):
    """Rows and queries near 1e-21 with one row of magnitude 1 (no rescaling):
    float32 bound terms would underflow, so those go through the float32 path."""
    rng = np.random.default_rng(1)
    database = (rng.standard_normal((3000, 16)) * 1e-21).astype(np.float32)
    database[0] = -1.0
    queries = (rng.standard_normal((20, 16)) * 1e-21).astype(np.float32)
    queries[0] = rng.standard_normal(16)  # a normal query as well
    found = FlatIndex(metric).fit(database).search(queries, 5)
    ids, _ = reference(database, queries, 5, metric)
    np.testing.assert_array_equal(found.ids, ids)


def test_dimension_beyond_the_int32_sums_skips_the_screen():
    dim = int8.MAX_WIDTH + 4
    database = np.zeros((2048, dim), np.float32)
    database[:, 0] = np.arange(2048, dtype=np.float32)
    index = FlatIndex("inner_product").fit(database)
    assert index._stored.screen is None
    found = index.search(np.ones((1, dim), np.float32), 1)
    assert found.ids[0, 0] == 2047
