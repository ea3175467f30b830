"""The graph index: recall against exact search, edge cases, persistence, errors."""

import numpy as np
import pytest

import leanvec
from leanvec import Index, recall_at_k

METRICS = ["cosine", "sqeuclidean", "inner_product", "euclidean"]


def clustered(rng, n, dim, n_clusters=20, rank=None):
    """Seeded clustered data; with ``rank`` it lies in a rank-``rank`` subspace."""
    width = dim if rank is None else rank
    centres = rng.standard_normal((n_clusters, width)) * 3.0
    x = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, width))
    if rank is not None:
        basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0]
        x = x @ basis.T
    return x.astype(np.float32)


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
    assert np.all(result.distances[:, 0] == 0.0)
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
    assert index.projection.leanvec_dims == 32
    small = Index(degree=8).fit(x[:, :90])
    assert small.projection is None


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
