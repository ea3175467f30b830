"""The graph index: recall against exact search, edge cases, persistence, errors."""

import numpy as np
import pytest
from conftest import brute_force, clustered

import leanvec
from leanvec import Index, recall_at_k

METRICS = ["cosine", "sqeuclidean", "inner_product", "euclidean"]




@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = clustered(rng, 1500, 24)
    q = x[rng.integers(0, 1500, 60)] + 0.3 * rng.standard_normal((60, 24))
    return x, q.astype(np.float32)


@pytest.mark.parametrize("metric", METRICS)
def test_recall_full_dimension(data, reference, metric):
    x, q = data
    index = Index(metric=metric, primary="float32", secondary="float32", degree=16,
                  build_window=40, n_threads=2).fit(x)
    result = index.search(q, 10, window=40)
    true_ids, true_d = reference(x, q, 10, metric)
    assert recall_at_k(result.ids, true_ids, 10) >= 0.97
    hit = result.ids[:, 0] == true_ids[:, 0]
    np.testing.assert_allclose(result.distances[hit, 0], true_d[hit, 0], rtol=1e-4,
                               atol=1e-4)
    assert result.ids.dtype == np.int64 and result.distances.dtype == np.float32


@pytest.mark.parametrize("primary", ["lvq8", "lvq4", "float16"])
@pytest.mark.parametrize("secondary", ["float16", "lvq8", None])
def test_recall_reduced_quantized(reference, primary, secondary):
    rng = np.random.default_rng(3)
    x = clustered(rng, 1200, 32, rank=8)
    q = x[:40] + 0.05 * rng.standard_normal((40, 32)).astype(np.float32)
    index = Index(metric="cosine", leanvec_dims=12, primary=primary,
                  secondary=secondary, degree=16, build_window=40).fit(x)
    result = index.search(q, 10, window=40, rerank=60)
    true_ids, _ = reference(x, q, 10, "cosine")
    floor = 0.9 if primary != "lvq4" or secondary is not None else 0.6
    assert recall_at_k(result.ids, true_ids, 10) >= floor
    assert np.all(np.isfinite(result.distances))


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean", "inner_product"])
def test_ood_projection_with_train_queries(reference, metric):
    rng = np.random.default_rng(11)
    x = clustered(rng, 1200, 32, rank=10)
    shift = rng.standard_normal(32).astype(np.float32)
    train = x[rng.integers(0, 1200, 300)] + shift
    q = x[rng.integers(0, 1200, 40)] + shift
    index = Index(metric=metric, leanvec_dims=12, primary="float32",
                  secondary="float32", degree=16, build_window=40)
    index.fit(x, train_queries=train)
    assert not index.projection.orthonormal
    result = index.search(q, 10, window=60, rerank=80)
    true_ids, _ = reference(x, q, 10, metric)
    assert recall_at_k(result.ids, true_ids, 10) >= 0.9


def test_duplicates_and_self_queries(reference):
    rng = np.random.default_rng(5)
    x = clustered(rng, 400, 16)
    x[100:110] = x[0]
    index = Index(metric="cosine", primary="float32", secondary="float32",
                  degree=12, build_window=30).fit(x)
    result = index.search(x[[0, 50, 200]], 12, window=40)
    assert set(result.ids[0, :11]) == set(range(100, 110)) | {0}
    assert np.all(result.distances[0, :11] == 0.0)
    assert result.ids[1, 0] == 50 and result.distances[1, 0] == 0.0
    assert result.ids[2, 0] == 200 and result.distances[2, 0] == 0.0
    assert result.distances.min() >= 0.0


def test_k_equal_and_above_n(reference):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 8)).astype(np.float32)
    index = Index(metric="sqeuclidean", primary="float32", secondary="float32",
                  degree=8).fit(x)
    full = index.search(x[:3], 30, window=30)
    assert sorted(full.ids[0]) == list(range(30))
    assert np.all(np.diff(full.distances, axis=1) >= 0)
    over = index.search(x[:3], 40, window=40)
    assert np.all(over.ids[:, 30:] == -1) and np.all(np.isinf(over.distances[:, 30:]))
    np.testing.assert_array_equal(over.ids[:, :30], full.ids)


def test_one_vector_database():
    index = Index(metric="cosine").fit(np.ones((1, 8)))
    result = index.search(np.ones((3, 8)), 4)
    np.testing.assert_array_equal(result.ids, [[0, -1, -1, -1]] * 3)
    # LVQ-8 secondaries are scored in the code domain: 0 up to float32 rounding.
    np.testing.assert_allclose(result.distances[:, 0], 0.0, atol=1e-6)
    assert index.n == 1 and index.dim == 8


def test_zero_queries_and_zero_vectors():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    x[:5] = 0.0
    index = Index(metric="cosine", primary="float32", secondary="float32",
                  degree=12).fit(x)
    empty = index.search(np.zeros((0, 16)), 5)
    assert empty.ids.shape == (0, 5) and empty.distances.shape == (0, 5)
    result = index.search(np.vstack([x[:2], x[10:12]]), 5, window=30)
    assert not np.isnan(result.distances).any()
    assert np.all(result.distances[:2] == 1.0)
    np.testing.assert_array_equal(result.ids[2:, 0], [10, 11])


def test_batch_equals_single_and_threads(data):
    x, q = data
    one = Index(metric="cosine", degree=12, build_window=30, n_threads=1).fit(x)
    two = Index(metric="cosine", degree=12, build_window=30, n_threads=2).fit(x)
    np.testing.assert_array_equal(one._a["graph"], two._a["graph"])
    batch = two.search(q, 10)
    singles = [two.search(row, 10) for row in q]
    np.testing.assert_array_equal(batch.ids, np.vstack([s.ids for s in singles]))
    np.testing.assert_array_equal(batch.distances,
                                  np.vstack([s.distances for s in singles]))


def test_add_after_fit(reference):
    rng = np.random.default_rng(9)
    x = clustered(rng, 900, 16)
    index = Index(metric="sqeuclidean", leanvec_dims=8, primary="lvq8",
                  secondary="float32", degree=16, build_window=40).fit(x[:600])
    ids = index.add(x[600:])
    np.testing.assert_array_equal(ids, np.arange(600, 900))
    assert index.n == 900 and index.add(np.zeros((0, 16))).shape == (0,)
    result = index.search(x[600:700], 1, window=40, rerank=60)
    assert np.mean(result.ids[:, 0] == np.arange(600, 700)) >= 0.95


def test_save_load_round_trip(tmp_path, data):
    x, q = data
    index = Index(metric="cosine", leanvec_dims=12, primary="lvq8", secondary="lvq8",
                  degree=12, build_window=30).fit(x, train_queries=q)
    path = index.save(tmp_path / "index.lvec")
    loaded = leanvec.load(path)
    before, after = index.search(q, 10), loaded.search(q, 10)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.distances, after.distances)
    assert loaded.bytes_per_vector == index.bytes_per_vector
    assert [p.name for p in tmp_path.iterdir()] == ["index.lvec"]


def test_bad_files(tmp_path, data):
    x, _ = data
    path = Index(metric="cosine", degree=8).fit(x[:200]).save(tmp_path / "a.lvec")
    blob = path.read_bytes()
    (tmp_path / "cut.lvec").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        leanvec.load(tmp_path / "cut.lvec")
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    (tmp_path / "flip.lvec").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        leanvec.load(tmp_path / "flip.lvec")
    (tmp_path / "foreign.bin").write_bytes(b"not an index at all, just bytes" * 4)
    with pytest.raises(ValueError, match="not a leanvec file"):
        leanvec.load(tmp_path / "foreign.bin")
    lvq = leanvec.LVQ(8).fit(x)
    lvq.save(tmp_path / "lvq.lvec")
    with pytest.raises(ValueError, match="expected"):
        leanvec.load(tmp_path / "lvq.lvec")


def test_auto_dims():
    rng = np.random.default_rng(4)
    x = clustered(rng, 300, 120, rank=20)
    index = Index(degree=8, build_window=20).fit(x)
    assert index.projection.leanvec_dims == 48  # half of 120, a multiple of 16
    small = Index(degree=8).fit(x[:, :90])
    assert small.projection is None
    # half up to 512 features, a third beyond
    assert [Index()._resolve_dims(d) for d in (96, 384, 512, 768, 1024)] == [
        48, 192, 256, 256, 336]


def test_bytes_per_vector(data):
    x, _ = data
    index = Index(metric="cosine", leanvec_dims=12, primary="lvq8",
                  secondary="float16", degree=16).fit(x)
    # lvq8 codes + float32 step/bias, float16 secondaries, int32 graph + degree
    assert index.bytes_per_vector == 12 + 8 + 2 * 24 + 4 * 16 + 4


def test_float16_overflow_is_refused():
    x = np.array([[1e6, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    with pytest.raises(ValueError, match="beyond the float16 range"):
        Index(metric="sqeuclidean", primary="float32", secondary="float16").fit(x)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metric": "hamming"}, ValueError, "metric must be one of"),
        ({"primary": "int8"}, ValueError, "primary must be one of"),
        ({"secondary": "lvq4"}, ValueError, "secondary must be one of"),
        ({"degree": 1}, ValueError, "degree must be >= 2"),
        ({"degree": 8.5}, TypeError, "degree must be an integer"),
        ({"window": 0}, ValueError, "window must be >= 1"),
        ({"rerank": 0}, ValueError, "rerank must be >= 1"),
        ({"build_window": 0}, ValueError, "build_window must be >= 1"),
        ({"alpha": 3.0}, ValueError, "alpha must lie in"),
        ({"alpha": "big"}, TypeError, "alpha must be a float"),
        ({"leanvec_dims": 0}, ValueError, "leanvec_dims must be >= 1"),
        ({"n_threads": 0}, ValueError, "n_threads must be >= 1"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Index(**kwargs)


def test_fit_and_search_errors(data):
    x, q = data
    with pytest.raises(ValueError, match="leanvec_dims must be smaller"):
        Index(leanvec_dims=24).fit(x)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        Index().fit(bad)
    with pytest.raises(ValueError, match="train_queries has 5 features"):
        Index(leanvec_dims=8).fit(x, train_queries=np.ones((10, 5)))
    with pytest.raises(ValueError, match="empty"):
        Index().search(q, 5)
    with pytest.raises(ValueError, match="empty"):
        Index().add(q)
    index = Index(degree=8).fit(x[:100])
    with pytest.raises(ValueError, match="queries has 5 features per row, but 24"):
        index.search(np.ones((2, 5)), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        index.search(q, 3, window=0)
    with pytest.raises(ValueError, match="rerank must be >= 1"):
        index.set_search_params(rerank=0)
    with pytest.raises(TypeError, match="real numbers"):
        index.search(np.array([["a"] * 24]), 3)


def with_zero_rows():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((400, 32)).astype(np.float32)
    return np.vstack([x, np.zeros((20, 32), np.float32)])


@pytest.mark.parametrize("dims", [8, None])
@pytest.mark.parametrize("secondary", ["float32", "float16", "lvq8", None])
def test_zero_rows_under_cosine(reference, dims, secondary):
    z = with_zero_rows()
    index = Index(metric="cosine", leanvec_dims=dims, secondary=secondary,
                  degree=16).fit(z)
    result = index.search(z, 3)
    # A zero vector is at cosine distance exactly 1 from everything.
    assert np.all(result.distances[400:] == 1.0)
    # Zero rows never crowd out the true neighbours of the other rows.
    assert np.all(result.ids[:400] < 400)
    if secondary is None and dims is not None:
        return  # approximate distances: self need not come first
    assert np.mean(result.ids[:400, 0] == np.arange(400)) >= 0.99
    true_ids, true_d = reference(z[:400], z[:400], 3, "cosine")
    # As good as the same index without the zero rows (8 of 32 isotropic
    # dimensions limit the recall at this window).
    plain = Index(metric="cosine", leanvec_dims=dims, secondary=secondary,
                  degree=16).fit(z[:400]).search(z[:400], 3)
    floor = recall_at_k(plain.ids, true_ids, 3) - 0.02
    assert recall_at_k(result.ids[:400], true_ids, 3) >= min(floor, 0.95)
    if secondary == "float32":
        hit = result.ids[:400, 0] == true_ids[:, 0]
        np.testing.assert_allclose(result.distances[:400][hit, 0], true_d[hit, 0],
                                   atol=1e-5)


def test_zero_rows_rank_at_distance_one():
    x = np.array([[1, 0], [-1, 0], [0, 0], [0, 0], [1, 1]], dtype=np.float32)
    index = Index(metric="cosine", leanvec_dims=None, primary="float32",
                  secondary="float32", degree=4).fit(x)
    result = index.search(np.array([1.0, 0.0]), 5, window=10)
    np.testing.assert_array_equal(result.ids, [[0, 4, 2, 3, 1]])
    np.testing.assert_allclose(result.distances, [[0, 1 - 0.5**0.5, 1, 1, 2]],
                               atol=1e-6)
    # Zero rows added later stay out of the graph too; a database of zero rows
    # alone answers every query at distance 1.
    assert np.array_equal(index.add(np.zeros((2, 2))), [5, 6])
    assert index.search(np.array([0.0, 1.0]), 7).distances[0, 1:5].tolist() == [
        1.0] * 4
    zeros = Index(metric="cosine", leanvec_dims=None, degree=4).fit(np.zeros((3, 2)))
    result = zeros.search(np.ones((2, 2)), 4)
    np.testing.assert_array_equal(result.ids, [[0, 1, 2, -1]] * 2)
    np.testing.assert_array_equal(result.distances[:, :3], 1.0)
    zeros.add(np.array([[2.0, 0.0], [0.0, 3.0]]))
    np.testing.assert_array_equal(zeros.search(np.array([1.0, 0.1]), 2).ids,
                                  [[3, 4]])


def test_zero_rows_survive_save_load(tmp_path):
    z = with_zero_rows()
    index = Index(metric="cosine", leanvec_dims=8, degree=16).fit(z)
    loaded = leanvec.load(index.save(tmp_path / "z.lvec"))
    before, after = index.search(z, 3), loaded.search(z, 3)
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_array_equal(before.distances, after.distances)


def test_cosine_ignores_scale(reference):
    rng = np.random.default_rng(13)
    x = clustered(rng, 800, 32, rank=8)
    for factor in (1e20, 1e-20):
        big = x * np.float32(factor)
        index = Index(metric="cosine", leanvec_dims=8, degree=16).fit(big)
        result = index.search(big[:100], 5)
        true_ids, _ = reference(x, x[:100], 5, "cosine")
        assert np.mean(result.ids[:, 0] == np.arange(100)) >= 0.99
        assert recall_at_k(result.ids, true_ids, 5) >= 0.9
        np.testing.assert_allclose(result.distances[:, 0], 0.0, atol=1e-3)


def float32_reference(reference, x, q, k, metric):
    """Float64 reference, with distances rounded to float32 like the results."""
    ids, dist = reference(x, q, k, metric)
    limit = np.finfo(np.float32).max
    return ids, np.clip(dist, -limit, limit).astype(np.float32)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "inner_product"])
@pytest.mark.parametrize("factor", [1e20, 1e-25])
def test_huge_and_tiny_values(reference, metric, factor):
    rng = np.random.default_rng(17)
    x = clustered(rng, 800, 32, rank=8) * np.float32(factor)
    q = x[:60] + np.float32(0.05 * factor) * rng.standard_normal((60, 32)).astype(
        np.float32)
    true_ids, true_d = float32_reference(reference, x, q, 10, metric)
    index = Index(metric=metric, leanvec_dims=8, secondary="float32",
                  degree=16).fit(x)
    result = index.search(q, 10, window=60, rerank=80)
    assert recall_at_k(result.ids, true_ids, 10) >= 0.9
    assert np.all(np.isfinite(result.distances))
    hit = result.ids[:, 0] == true_ids[:, 0]
    np.testing.assert_allclose(result.distances[hit, 0], true_d[hit, 0], rtol=1e-4)
    for spec, rerank in (("lvq8", 20), ("lvq8", 0), ("pq8", 0)):
        exhaustive = leanvec.CompressedIndex(spec, metric=metric, rerank=rerank)
        found = exhaustive.fit(x).search(q, 10)
        assert np.all(np.isfinite(found.distances))
        assert recall_at_k(found.ids, true_ids, 10) >= (0.9 if spec == "lvq8" else 0.5)
        if rerank:
            hit = found.ids[:, 0] == true_ids[:, 0]
            np.testing.assert_allclose(found.distances[hit, 0], true_d[hit, 0],
                                       rtol=1e-4)


def test_queries_beyond_the_scaled_range_are_refused():
    x = np.full((50, 4), 1e-30, dtype=np.float32) * np.arange(1, 51)[:, None]
    index = Index(metric="sqeuclidean", leanvec_dims=None, degree=4).fit(x)
    with pytest.raises(ValueError, match="queries overflow float32 once scaled"):
        index.search(np.full((1, 4), 1e30), 3)


@pytest.mark.parametrize("metric", ["cosine", "inner_product"])
def test_lvq8_rerank_matches_decoded_vectors(tmp_path, data, metric):
    x, q = data
    index = Index(metric=metric, leanvec_dims=12, secondary="lvq8", degree=16).fit(x)
    result = index.search(q, 10, window=40, rerank=60)
    a = index._a
    decoded = (a["s_mean"].astype(np.float64)
               + a["s_steps"][:, None].astype(np.float64) * a["s_u8"]
               + a["s_biases"][:, None])
    qs = np.asarray(q, dtype=np.float64)
    if metric == "cosine":
        qs = qs / np.linalg.norm(qs, axis=1, keepdims=True)
        dec = decoded / np.linalg.norm(decoded, axis=1, keepdims=True)
        expected = 1.0 - np.einsum("qd,qkd->qk", qs, dec[result.ids])
        np.testing.assert_allclose(result.distances, expected, atol=2e-6)
    else:
        expected = -np.einsum("qd,qkd->qk", qs, decoded[result.ids])
        np.testing.assert_allclose(result.distances, expected, rtol=1e-5, atol=1e-4)
    # Cosine keeps one float32 norm per vector for it, saved with the index.
    other = Index(metric="inner_product" if metric == "cosine" else "cosine",
                  leanvec_dims=12, secondary="lvq8", degree=16).fit(x)
    extra = 4.0 if metric == "cosine" else -4.0
    assert index.bytes_per_vector - other.bytes_per_vector == extra
    loaded = leanvec.load(index.save(tmp_path / "r.lvec"))
    np.testing.assert_array_equal(loaded.search(q, 10, window=40, rerank=60).distances,
                                  result.distances)


def test_files_without_norms_still_load(tmp_path, data, monkeypatch):
    x, q = data
    index = Index(metric="cosine", leanvec_dims=12, degree=12).fit(x)
    expected = index.search(q, 5)
    # Files written before the norms and zero-row ids were stored lack them.
    older = tuple(n for n in leanvec.index._ARRAYS if n not in ("s_norms", "zero_ids"))
    monkeypatch.setattr(leanvec.index, "_ARRAYS", older)
    path = index.save(tmp_path / "old.lvec")
    monkeypatch.undo()
    loaded = leanvec.load(path)
    assert loaded.bytes_per_vector == index.bytes_per_vector
    result = loaded.search(q, 5)
    np.testing.assert_array_equal(result.ids, expected.ids)
    np.testing.assert_array_equal(result.distances, expected.distances)


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine", "inner_product"])
@pytest.mark.parametrize("primary", ["float32", "lvq8"])
def test_groups_of_equal_rows_larger_than_the_degree_stay_reachable(metric,
                                                                    primary):
    """A row equal to the node being linked occluded every other candidate, so a
    group of more than ``degree`` equal rows linked only to itself: queries
    equal to another group's row found nothing of it."""
    rng = np.random.default_rng(11)
    rows = rng.standard_normal((3, 6)).astype(np.float32)
    x = np.concatenate([np.repeat(rows, 30, axis=0),
                        rng.standard_normal((4, 6)).astype(np.float32)])
    index = Index(metric, leanvec_dims=None, primary=primary, secondary="float32",
                  degree=8, build_window=32, seed=3).fit(x)
    found = index.search(rows, 5, window=60, rerank=60)
    exact = leanvec.exact_search(x, rows, 5, metric)
    np.testing.assert_allclose(found.distances, exact.distances, rtol=1e-5,
                               atol=1e-5)
    if metric != "inner_product":
        assert (found.ids // 30 == np.arange(3)[:, None]).all()


def test_window_and_rerank_beyond_n_cost_no_memory():
    """A window or re-rank depth of 10**12 once allocated buffers of that size (a
    SystemError from the kernel); beyond n they act as n."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((90, 7)).astype(np.float32)
    index = Index("sqeuclidean", leanvec_dims=None, primary="lvq4",
                  secondary="float32", degree=8, build_window=10**12).fit(x)
    huge = index.search(x[:4], 5, window=10**12, rerank=10**12)
    full = index.search(x[:4], 5, window=90, rerank=90)
    np.testing.assert_array_equal(huge.ids, full.ids)
    np.testing.assert_array_equal(huge.ids[:, 0], np.arange(4))
    one = index.search(x[0], 5, window=10**12, rerank=10**12)
    np.testing.assert_array_equal(one.ids, huge.ids[:1])


@pytest.mark.parametrize("primary, secondary", [("float32", None), ("float16", "float32")])
def test_float_primaries_far_from_the_origin_keep_their_recall(rng, primary, secondary):
    """Float primaries are stored about their mean, as LVQ codes are: uncentred, an
    offset of 1e4 left float32 products without the distances' digits."""
    base = rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    offset = np.float32(1e4)
    truth = leanvec.exact_search(base, queries, 10, "sqeuclidean").ids
    index = leanvec.Index("sqeuclidean", leanvec_dims=None, primary=primary,
                          secondary=secondary, seed=0).fit(base + offset)
    found = index.search(queries + offset, 10, window=64, rerank=64).ids
    assert leanvec.recall_at_k(found, truth, 10) > 0.9


def test_searches_while_another_thread_adds(rng):
    """add() publishes its arrays when done; searches meanwhile use the old ones."""
    import threading

    base = rng.standard_normal((1500, 16)).astype(np.float32)
    extra = rng.standard_normal((4, 300, 16)).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    index = leanvec.Index("sqeuclidean", leanvec_dims=None, degree=16, build_window=32,
                          n_threads=1, seed=0).fit(base)
    errors, done = [], threading.Event()

    def search_loop():
        try:
            while not done.is_set():
                n_before = len(index)
                found = index.search(queries, 5, window=32, rerank=32).ids
                assert found.min() >= 0 and found.max() < max(n_before, len(index))
        except Exception as err:  # reported below
            errors.append(err)

    readers = [threading.Thread(target=search_loop) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for batch in extra:
            index.add(batch)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert not errors, errors
    everything = np.concatenate([base, *extra])
    truth = leanvec.exact_search(everything, queries, 5, "sqeuclidean").ids
    found = index.search(queries, 5, window=64, rerank=64).ids
    assert leanvec.recall_at_k(found, truth, 5) > 0.9


def test_default_rerank_is_the_window_and_survives_save(data, tmp_path):
    x, q = data
    index = Index(metric="cosine", leanvec_dims=12, degree=16, build_window=40).fit(x)
    assert index.rerank is None
    for window in (10, 40):
        np.testing.assert_array_equal(index.search(q, 5, window=window).ids,
                                      index.search(q, 5, window=window,
                                                   rerank=window).ids)
    # k beyond the window: the best k visited are still re-scored
    wide = index.search(q, 30, window=10)
    assert np.all(wide.ids >= 0)
    index.save(tmp_path / "i.lvec")
    loaded = leanvec.load(tmp_path / "i.lvec")
    assert loaded.rerank is None
    np.testing.assert_array_equal(loaded.search(q, 5).ids, index.search(q, 5).ids)


def test_entry_set_and_files_without_one(data, tmp_path):
    """Searches start from the best of a few entry nodes; an index whose file
    predates entry sets (no such array) starts from its single entry node."""
    x, q = data
    index = Index(metric="cosine", leanvec_dims=12, degree=16, build_window=40).fit(x)
    entries = index._a["entries"]
    assert 1 < entries.shape[0] <= 33 and entries[0] == index._entry
    assert np.unique(entries).shape[0] == entries.shape[0]
    assert entries.min() >= 0 and entries.max() < index.n
    found = index.search(q, 10, window=40)
    index._a["entries"] = np.zeros(0, np.int32)
    single = index.search(q, 10, window=40)
    true_ids, _ = brute_force(x, q, 10, "cosine")
    # 12 of 24 dimensions: the primary search alone tops out near 0.9 here
    single_recall = recall_at_k(single.ids, true_ids, 10)
    found_recall = recall_at_k(found.ids, true_ids, 10)
    assert single_recall >= 0.85 and found_recall >= 0.85
    assert abs(single_recall - found_recall) <= 0.05


def test_entry_set_grows_with_add(data):
    x, _ = data
    index = Index(metric="cosine", leanvec_dims=None, degree=16, build_window=40)
    index.fit(x[:1])
    assert index._a["entries"].shape[0] == 1
    index.add(x[1:10])
    assert index._a["entries"].shape[0] == 10
    index.add(x[10:])
    entries = index._a["entries"]
    assert entries.shape[0] > 10 and np.unique(entries).shape[0] == entries.shape[0]
    assert entries.max() < index.n
