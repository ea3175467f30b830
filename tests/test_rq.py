"""Residual codebooks (LR2VQ codebooks="residual"): beam search, k-means, tables."""

import warnings

import numpy as np
import pytest

from leanvec import LR2VQ, CompressedIndex
from leanvec._kernels.pq import LANES, pq_scan, pq_scan_blocked
from leanvec._kernels.topk import NO_ID, finish_heaps
from leanvec.pq import kmeans
from leanvec.rq import ResidualCodebooks, beam_encode, progressive_kmeans


def _data(rng, n=600, dim=16):
    scales = np.linspace(2.0, 0.2, dim)
    return (rng.standard_normal((n, dim)) * scales).astype(np.float32)


def _books(rng, n_books, dim, spread=1.0):
    return (rng.standard_normal((n_books, 256, dim)) * spread).astype(np.float32)


def _errors(x, books, codes):
    decoded = sum(books[m][codes[:, m]].astype(np.float64) for m in range(len(books)))
    return ((x.astype(np.float64) - decoded) ** 2).sum(1)


def test_greedy_beam_takes_the_nearest_codeword_each_step(rng):
    x = _data(rng, 50, 6)
    books = _books(rng, 3, 6, 0.7)
    codes = beam_encode(x, books, 1)
    res = x.astype(np.float64)
    for m in range(3):
        d = ((res[:, None, :] - books[m][None].astype(np.float64)) ** 2).sum(-1)
        want = d.argmin(1)
        np.testing.assert_array_equal(codes[:, m], want)
        res = res - books[m][want]


def test_full_beam_finds_the_best_pair_of_codewords(rng):
    # beam 256 over two codebooks keeps every first choice: the search is exhaustive
    x = _data(rng, 20, 4)
    books = _books(rng, 2, 4, 0.8)
    codes = beam_encode(x, books, 256)
    pairs = (books[0][:, None, :] + books[1][None, :, :]).reshape(-1, 4)
    brute = ((x[:, None, :].astype(np.float64) - pairs[None]) ** 2).sum(-1)
    best = brute.min(1)
    got = _errors(x, books, codes)
    np.testing.assert_allclose(got, best, rtol=1e-5, atol=1e-6)
    greedy = _errors(x, books, beam_encode(x, books, 1))
    assert np.all(got <= greedy + 1e-6)


def test_wider_beams_lower_the_error(rng):
    x = _data(rng, 3000, 16)
    vq = ResidualCodebooks(3, False, beam=1)
    vq.train(x, np.random.default_rng(0))
    errs = [_errors(x, vq.books, beam_encode(x, vq.books, b)).mean() for b in (1, 4, 16)]
    assert errs[0] > errs[1] > errs[2]


def test_progressive_kmeans_fits_as_well_as_plain_lloyd(rng):
    # same number of Lloyd iterations in all; the coarse-to-fine start is no worse
    x = (rng.standard_normal((20000, 64)) * np.linspace(1.0, 0.3, 64)).astype(np.float32)

    def error(c):
        d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None]
        return d.min(1).mean()

    found = progressive_kmeans(x, 5, 5, np.random.default_rng(0))
    assert found.shape == (256, 64) and np.isfinite(found).all()
    plain = kmeans(x, 256, 25, np.random.default_rng(0))
    assert error(found) <= 1.005 * error(plain)
    assert error(found) < 0.8 * (x ** 2).sum(1).mean()


def test_constant_and_duplicate_rows_give_finite_codebooks():
    x = np.repeat(np.eye(3, 8, dtype=np.float32), 100, axis=0)
    vq = LR2VQ(3, codebooks="residual").fit(x)
    assert np.isfinite(vq.rq.books).all()
    np.testing.assert_allclose(vq.decode(vq.encode(x)), x, atol=1e-5)
    flat = np.ones((300, 5), dtype=np.float32)
    vq = LR2VQ(2, codebooks="residual").fit(flat, metric="sqeuclidean")
    np.testing.assert_allclose(vq.decode(vq.encode(flat)), flat, atol=1e-5)


def test_more_recall_per_byte_than_product_codes(rng):
    x = _data(rng, 3000, 32)
    errs = {}
    for kind in ("product", "residual"):
        vq = LR2VQ(4, dims=32, codebooks=kind, n_iter=4).fit(x)
        errs[kind] = ((vq.decode(vq.encode(x)) - x) ** 2).sum(1).mean()
    assert errs["residual"] < 0.9 * errs["product"]


def _reference(vq, codes, queries, metric):
    """float64 table distances: decoded codewords, the stored norm level for L2."""
    decoded = vq.decode(codes).astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "inner_product":
        return -(q @ decoded.T)
    centred = q - vq.mean
    proj = vq.projection.astype(np.float64)
    xhat = (decoded - vq.mean) @ proj
    norm = vq.rq.norm_levels[codes[:, -1]].astype(np.float64)
    return ((centred ** 2).sum(1)[:, None] - 2.0 * (centred @ proj) @ xhat.T
            + norm[None, :])


@pytest.mark.parametrize("dims", [16, 10])
@pytest.mark.parametrize("metric", ["inner_product", "sqeuclidean"])
@pytest.mark.parametrize("lanes", [0, LANES])
def test_table_distances_match_the_reference(rng, dims, metric, lanes):
    x = _data(rng) + np.float32(3.0)
    vq = LR2VQ(3, dims=dims, codebooks="residual").fit(x, metric=metric)
    assert vq.projection.shape == (16, dims) and vq.dims_ == dims
    queries = (rng.standard_normal((LANES + 3, 16)) + 3.0).astype(np.float32)
    codes = vq.encode(x)
    ref = _reference(vq, codes, queries, metric)
    tables, offsets = vq.search_tables(queries, metric, lanes)
    heap_d = np.full((len(queries), 7), np.inf, np.float32)
    heap_i = np.full((len(queries), 7), NO_ID, np.int64)
    (pq_scan_blocked if lanes else pq_scan)(tables, offsets, codes, heap_d, heap_i)
    finish_heaps(heap_d, heap_i)
    np.testing.assert_allclose(heap_d, np.sort(ref, axis=1)[:, :7], rtol=1e-5,
                               atol=1e-4)


def test_norm_byte_holds_the_nearest_level(rng):
    x = _data(rng)
    vq = LR2VQ(4, codebooks="residual").fit(x, metric="euclidean")
    assert vq.rq.n_books == 3
    codes = vq.encode(x)
    xhat = vq.rq.decode(codes)
    norms = np.einsum("ij,ij->i", xhat, xhat)
    levels = vq.rq.norm_levels
    assert np.all(np.diff(levels) >= 0)
    chosen = np.abs(levels[codes[:, -1]] - norms)
    assert np.all(chosen <= np.abs(levels[None, :] - norms[:, None]).min(1) + 1e-4)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "inner_product", "cosine"])
def test_compressed_index_ranks_by_the_codes(rng, metric):
    database = _data(rng, 800)
    queries = _data(rng, 40)
    index = CompressedIndex("lr2vq4r", metric, rerank=0).fit(database)
    assert index.quantizer.codebooks == "residual"
    batch = index.search(queries, 5)
    single = index.search(queries[7], 5)
    np.testing.assert_array_equal(single.ids[0], batch.ids[7])
    exact = CompressedIndex("lr2vq4r", metric, rerank=800)
    exact.quantizer = index.quantizer
    exact.fit(database)
    ref = exact.search(queries, 5)
    hits = np.mean([np.intersect1d(a, b).size / 5 for a, b in zip(batch.ids, ref.ids)])
    assert hits > 0.5


def test_save_load_round_trip(rng, tmp_path):
    x = _data(rng)
    for metric in ("inner_product", "sqeuclidean"):
        vq = LR2VQ(4, dims=12, codebooks="residual", beam=3).fit(x, metric=metric)
        vq.save(tmp_path / f"{metric}.lvec")
        loaded = LR2VQ.load(tmp_path / f"{metric}.lvec")
        assert (loaded.codebooks, loaded.beam, loaded.rq.with_norm) == (
            "residual", 3, metric == "sqeuclidean")
        codes = vq.encode(x)
        np.testing.assert_array_equal(loaded.encode(x), codes)
        np.testing.assert_array_equal(loaded.decode(codes), vq.decode(codes))
        for kind in ("inner_product", "sqeuclidean")[: 1 + (metric != "inner_product")]:
            a, b = vq.search_tables(x[:3], kind), loaded.search_tables(x[:3], kind)
            np.testing.assert_array_equal(a[0], b[0])


def test_errors_are_clear(rng):
    x = _data(rng)
    with pytest.raises(ValueError, match="codebooks must be one of"):
        LR2VQ(4, codebooks="additive")
    with pytest.raises(ValueError, match="per_block=True needs codebooks='product'"):
        LR2VQ(4, per_block=True, codebooks="residual")
    with pytest.raises(ValueError, match="beam must be at most 256"):
        LR2VQ(4, codebooks="residual", beam=300)
    with pytest.raises(ValueError, match="beam must be >= 1"):
        LR2VQ(4, codebooks="residual", beam=0)
    with pytest.raises(ValueError, match="need n_bytes >= 2"):
        LR2VQ(1, codebooks="residual").fit(x, metric="sqeuclidean")
    with pytest.raises(ValueError, match="fewer than the 256 centroids"):
        LR2VQ(4, codebooks="residual").fit(x[:100])
    vq = LR2VQ(4, codebooks="residual").fit(x)
    with pytest.raises(ValueError, match="keep no norm"):
        vq.search_tables(x[:2], "sqeuclidean")
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        vq.decode(np.zeros((3, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        vq.decode(np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="residual codebooks \\('r'\\)"):
        CompressedIndex("pq8r")


def test_one_dimension_and_more_bytes_than_dimensions(rng):
    x = rng.standard_normal((400, 1)).astype(np.float32)
    vq = LR2VQ(3, codebooks="residual").fit(x)
    err = np.abs(vq.decode(vq.encode(x)) - x)
    assert err.max() < 1e-3


def test_same_seed_same_codes(rng):
    x = _data(rng)
    a = LR2VQ(3, codebooks="residual", seed=5).fit(x)
    b = LR2VQ(3, codebooks="residual", seed=5).fit(x)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))
    assert a.rq.books.shape == (3, 256, 16)


def test_failed_fit_leaves_the_quantizer_as_it_was(rng):
    x = _data(rng)
    vq = LR2VQ(1, codebooks="residual").fit(x)
    codes = vq.encode(x[:20])
    with pytest.raises(ValueError, match="need n_bytes >= 2"):
        vq.fit(x + 100.0, metric="sqeuclidean")
    np.testing.assert_array_equal(vq.encode(x[:20]), codes)
    fresh = LR2VQ(1, codebooks="residual")
    with pytest.raises(ValueError, match="need n_bytes >= 2"):
        fresh.fit(x, metric="euclidean")
    assert fresh.dim is None
    index = CompressedIndex("lr2vq1r", "sqeuclidean")
    with pytest.raises(ValueError, match="need n_bytes >= 2"):
        index.fit(x)
    assert index.quantizer.dim is None


def test_l2_norm_byte_warns_when_its_rounding_swamps_neighbour_distances(rng):
    # two clusters 2,000 apart with unit spread: ||xhat||^2 spans ~1e6 on 256
    # levels, rounding by tens while neighbours lie ~8 apart
    u = rng.standard_normal(16)
    u /= np.linalg.norm(u)
    side = np.where(rng.random(2000) < 0.5, -1.0, 1.0)
    x = (side[:, None] * 1000.0 * u + rng.standard_normal((2000, 16))).astype(
        np.float32)
    with pytest.warns(UserWarning, match="norm byte rounds"):
        LR2VQ(8, codebooks="residual").fit(x, metric="sqeuclidean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LR2VQ(8, codebooks="residual").fit(_data(rng, 2000), metric="sqeuclidean")


def test_table_arguments_are_checked(rng):
    x = _data(rng)
    vq = LR2VQ(4, codebooks="residual").fit(x, metric="sqeuclidean")
    with pytest.raises(ValueError, match="table metric must be"):
        vq.search_tables(x[:2], "cosine")
    with pytest.raises(ValueError, match="16"):
        vq.search_tables(x[:2, :8], "inner_product")
    tables, offsets = vq.search_tables(x[:2].astype(np.float64), "inner_product")
    assert tables.dtype == np.float32 and tables.shape == (2, 4, 256)
    assert offsets.shape == (2,)


def test_values_whose_squares_overflow_are_refused(rng):
    x = _data(rng)
    with pytest.raises(ValueError, match="scale the data first"):
        LR2VQ(4, codebooks="residual").fit(x * np.float32(1e20))
    vq = LR2VQ(4, codebooks="residual").fit(x)
    with pytest.raises(ValueError, match="scale the data first"):
        vq.encode(x[:3] * np.float32(1e20))
    # CompressedIndex rescales such data itself
    index = CompressedIndex("lr2vq4r", "inner_product").fit(x * np.float32(1e20))
    assert index.search(x[:3] * np.float32(1e20), 2).ids.shape == (3, 2)


def test_loading_codes_of_the_wrong_width_is_refused(rng, tmp_path):
    from leanvec.persistence import load_state, save_state

    index = CompressedIndex("lr2vq4r", "inner_product").fit(_data(rng))
    index.save(tmp_path / "a.lvec")
    kind, meta, arrays = load_state(tmp_path / "a.lvec")
    arrays["codes"] = np.ascontiguousarray(arrays["codes"][:, :2])
    save_state(tmp_path / "b.lvec", kind, meta, arrays)
    with pytest.raises(ValueError, match=r"codes must be uint8 of shape \(n, 4\)"):
        CompressedIndex.load(tmp_path / "b.lvec")
