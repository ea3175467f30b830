"""The exhaustive compressed index: code distances, re-ranking, sentinels, errors."""

import numpy as np
import pytest

from leanvec import LR2VQ, LVQ, PQ, CompressedIndex, recall_at_k
from leanvec.compressed import make_quantizer

METRICS = ["sqeuclidean", "euclidean", "inner_product", "cosine"]
SPECS = ["lvq8", "lvq4", "lvq4x8", "pq4"]


def _data(rng, n=400, dim=12):
    return rng.standard_normal((n, dim)).astype(np.float32)


def _quantizer(spec):
    if spec == "lr2vq4":
        return LR2VQ(4, dims=8, n_iter=1, kmeans_iter=3)
    if spec == "lr2vq4r":
        return LR2VQ(4, dims=8, codebooks="residual", beam=2)
    if spec == "pq4":
        return PQ(4, n_iter=4)
    return spec


def _code_distances(index, queries, metric):
    """Distances to decoded vectors in float64, in the metric's units."""
    q = queries.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    # the codes hold the data times the index's power-of-two scale
    decoded = index.quantizer.decode(index.codes).astype(np.float64)
    decoded /= index._stored.scale
    if metric in ("inner_product", "cosine"):
        dist = -(q @ decoded.T) + (1.0 if metric == "cosine" else 0.0)
    else:
        dist = ((q[:, None, :] - decoded[None]) ** 2).sum(-1)
    return np.sqrt(dist) if metric == "euclidean" else dist


@pytest.mark.parametrize("spec", SPECS + ["lr2vq4"])
@pytest.mark.parametrize("metric", METRICS)
def test_code_distances_match_decoded_vectors(rng, spec, metric):
    database, queries = _data(rng), _data(rng, 6)
    index = CompressedIndex(_quantizer(spec), metric).fit(database)
    result = index.search(queries, 5)
    assert result.ids.dtype == np.int64 and result.distances.dtype == np.float32
    ref = _code_distances(index, queries, metric)
    got = np.take_along_axis(ref, result.ids, axis=1)
    np.testing.assert_allclose(result.distances, got, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(result.distances, np.sort(ref, axis=1)[:, :5],
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("spec", ["lvq8", "pq4"])
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "inner_product"])
@pytest.mark.parametrize("magnitude", [1e15, 1e-15])
def test_code_distances_of_data_far_from_unit_scale(rng, spec, metric, magnitude):
    """Data the index rescales by a power of two: code distances come back in
    the data's units (euclidean ones were once unscaled as if not squared)."""
    database = _data(rng) * np.float32(magnitude)
    queries = _data(rng, 6) * np.float32(magnitude)
    index = CompressedIndex(_quantizer(spec), metric, rerank=0).fit(database)
    result = index.search(queries, 5)
    ref = _code_distances(index, queries, metric)
    np.testing.assert_allclose(result.distances, np.sort(ref, axis=1)[:, :5], rtol=1e-4)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("metric", METRICS)
def test_full_rerank_is_exact(rng, reference, spec, metric):
    database, queries = _data(rng), _data(rng, 6)
    index = CompressedIndex(_quantizer(spec), metric, rerank=400).fit(database)
    result = index.search(queries, 5)
    ids, dist = reference(database, queries, 5, metric)
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_allclose(result.distances, dist, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS + ["lr2vq4"])
@pytest.mark.parametrize("metric", METRICS)
def test_batch_search_equals_one_query_per_call(rng, spec, metric):
    # batches take the blocked kernels; single queries the per-query ones
    database, queries = _data(rng, 700), _data(rng, 45)
    index = CompressedIndex(_quantizer(spec), metric).fit(database)
    batch = index.search(queries, 6)
    for q in (0, 31, 32, 44):
        single = index.search(queries[q], 6)
        np.testing.assert_array_equal(single.ids[0], batch.ids[q])
        np.testing.assert_allclose(single.distances[0], batch.distances[q],
                                   rtol=1e-6, atol=1e-6)
    ref = _code_distances(index, queries, metric)
    np.testing.assert_allclose(batch.distances, np.sort(ref, axis=1)[:, :6],
                               rtol=1e-5, atol=1e-4)


def test_lvq8_recall_is_high(rng, reference):
    database, queries = _data(rng, 2000, 32), _data(rng, 50, 32)
    result = CompressedIndex("lvq8", "cosine").fit(database).search(queries, 10)
    assert recall_at_k(result.ids, reference(database, queries, 10, "cosine")[0],
                       10) >= 0.95


@pytest.mark.parametrize("spec", ["lvq8", "pq4"])
def test_k_beyond_n_pads_with_sentinels(rng, spec):
    database = _data(rng, 300, 8)
    index = CompressedIndex(_quantizer(spec), "sqeuclidean").fit(database)
    result = index.search(database[:2], 305)
    assert result.ids.shape == (2, 305)
    assert np.all(result.ids[:, 300:] == -1)
    assert np.all(np.isinf(result.distances[:, 300:]))
    assert sorted(result.ids[0, :300]) == list(range(300))
    single = index.search(database[1], 305)
    np.testing.assert_array_equal(single.ids[0], result.ids[1])


def test_zero_queries_and_query_blocks(rng, monkeypatch):
    import leanvec.compressed

    database = _data(rng, 300, 8)
    index = CompressedIndex("lvq8", "cosine").fit(database)
    assert index.search(np.zeros((0, 8)), 3).ids.shape == (0, 3)
    whole = index.search(database[:10], 3)
    monkeypatch.setattr(leanvec.compressed, "_QUERY_BLOCK", 3)
    np.testing.assert_array_equal(index.search(database[:10], 3).ids, whole.ids)


def test_zero_vectors_under_cosine_give_no_nan(rng):
    database = _data(rng, 300, 8)
    database[:5] = 0.0
    result = CompressedIndex("lvq8", "cosine", rerank=20).fit(database).search(
        np.vstack([database[:2], database[10:12]]), 4)
    assert np.isfinite(result.distances).all()
    assert result.ids[2, 0] == 10 and result.ids[3, 0] == 11


def test_errors_name_the_problem(rng):
    database = _data(rng, 300, 8)
    index = CompressedIndex("lvq8")
    with pytest.raises(ValueError, match="call fit"):
        index.search(database[:1], 1)
    index.fit(database)
    with pytest.raises(ValueError, match="2 features per row, but 8 are expected"):
        index.search(np.zeros((1, 2)), 1)
    bad = database[:3].copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        index.search(bad, 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(database[:1], 0)
    with pytest.raises(ValueError, match="quantizer must look like"):
        make_quantizer("lvq3")
    with pytest.raises(TypeError, match="quantizer must be a string"):
        make_quantizer(8)
    with pytest.raises(ValueError, match="rerank must be >= 0"):
        CompressedIndex("lvq8", rerank=-1)
    fitted = LVQ(8).fit(_data(rng, 10, 5))
    with pytest.raises(ValueError, match="quantizer was fitted on 5"):
        CompressedIndex(fitted).fit(database)


def test_make_quantizer_parses_specs():
    lvq = make_quantizer("lvq4x8")
    assert isinstance(lvq, LVQ) and (lvq.bits, lvq.residual_bits) == (4, 8)
    assert isinstance(make_quantizer("PQ16"), PQ)
    assert make_quantizer("pq16").n_bytes == 16
    assert isinstance(make_quantizer("lr2vq8"), LR2VQ)
    assert make_quantizer("lr2vq8").codebooks == "product"
    assert make_quantizer("LR2VQ8r").codebooks == "residual"


@pytest.mark.parametrize("spec", ["lvq4x8", "pq4", "lr2vq4", "lr2vq4r"])
def test_save_load_round_trip(rng, tmp_path, spec):
    database, queries = _data(rng), _data(rng, 5)
    index = CompressedIndex(_quantizer(spec), "inner_product", rerank=10).fit(database)
    index.save(tmp_path / "index.lvec")
    loaded = CompressedIndex.load(tmp_path / "index.lvec")
    assert loaded.bytes_per_vector == index.bytes_per_vector and len(loaded) == 400
    a, b = index.search(queries, 4), loaded.search(queries, 4)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


@pytest.mark.parametrize("spec", ["lvq8", "pq4"])
@pytest.mark.parametrize("n_queries", [1, 16, 33])
def test_queries_whose_code_distances_overflow_raise(rng, spec, n_queries):
    """Under L2, 1e20-scaled queries next to unit vectors overflow float32 code
    distances: one query a call once came back with no neighbours, a batch with
    arbitrary ones at +inf. Both raise now; moderate magnitudes still work."""
    index = CompressedIndex(_quantizer(spec), "sqeuclidean").fit(_data(rng))
    queries = _data(rng, n_queries)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        index.search(queries * np.float32(1e20), 3)
    far = index.search(queries * np.float32(1e15), 3)
    assert (far.ids >= 0).all() and np.isfinite(far.distances).all()


@pytest.mark.parametrize("spec", ["lvq8", "pq4"])
def test_refit_keeps_the_scale_of_the_first_fit(rng, spec):
    """A second fit re-encodes with the quantizer the first fitted on scaled data;
    it once dropped that scale (LVQ refused the data, PQ coded it unscaled)."""
    database = _data(rng) * np.float32(1e20)
    queries = database[:5] + np.float32(1e18)
    index = CompressedIndex(_quantizer(spec), "sqeuclidean").fit(database)
    first = index.search(queries, 3)
    second = index.fit(database).search(queries, 3)
    np.testing.assert_array_equal(second.ids, first.ids)
    np.testing.assert_array_equal(second.distances, first.distances)
    assert (first.ids[:, 0] == np.arange(5)).all()


@pytest.mark.parametrize("spec", ["lvq8", "pq4"])
@pytest.mark.parametrize("rerank", [0, 8])
def test_search_keeps_its_codes_while_another_thread_refits(rng, monkeypatch, spec,
                                                            rerank):
    """fit from another thread during a search: the search finishes on the codes
    it started with. It once read new codes with missing or old constants."""
    from leanvec import compressed

    database, queries = _data(rng), _data(rng, 20)
    index = CompressedIndex(_quantizer(spec), "inner_product", rerank).fit(database)
    expected = index.search(queries, 4)
    finish = compressed.finish_heaps

    def finish_then_refit(*args):
        finish(*args)
        index.fit(database[:6].copy())

    monkeypatch.setattr(compressed, "finish_heaps", finish_then_refit)
    found = index.search(queries, 4)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_array_equal(found.distances, expected.distances)
    assert index.n == 6
