"""PQ and LR²VQ: k-means, table distances, Procrustes, the d' estimate, errors."""

import numpy as np
import pytest

from leanvec import LR2VQ, PQ, estimate_dims
from leanvec._kernels.pq import (
    LANES,
    pq_candidate_distances,
    pq_scan,
    pq_scan_blocked,
)
from leanvec._kernels.topk import NO_ID, finish_heaps
from leanvec.pq import kmeans


def _data(rng, n=600, dim=16):
    scales = np.linspace(2.0, 0.2, dim)
    return (rng.standard_normal((n, dim)) * scales).astype(np.float32)


def test_kmeans_finds_separable_clusters(rng):
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    x = (np.repeat(centres, 50, axis=0) + 0.1 * rng.standard_normal((200, 2))).astype(
        np.float32)
    found = kmeans(x, 4, 10, np.random.default_rng(0))
    nearest = np.abs(found[:, None, :] - centres[None]).sum(-1).min(0)
    assert np.all(nearest < 0.1)


def test_few_distinct_points_give_no_nan():
    # C25: three distinct points, 256 centroids: empty clusters are re-seeded
    x = np.repeat(np.eye(3, 8, dtype=np.float32), 100, axis=0)
    pq = PQ(4, n_iter=3).fit(x)
    assert np.isfinite(pq.codebooks).all()
    np.testing.assert_allclose(pq.decode(pq.encode(x)), x, atol=1e-6)


def test_fewer_rows_than_centroids_is_a_clear_error(rng):
    x = rng.standard_normal((111, 128)).astype(np.float32)
    with pytest.raises(ValueError, match="111 rows, fewer than the 256 centroids"):
        PQ(8).fit(x)
    with pytest.raises(ValueError, match="111 rows, fewer than the 256 centroids"):
        LR2VQ(8, dims=64).fit(x)


def test_n_bytes_checks_happen_before_training(rng):
    with pytest.raises(ValueError, match="n_bytes must be >= 1"):
        PQ(0)
    with pytest.raises(ValueError, match="n_bytes=5 must divide dims=128"):
        LR2VQ(5, dims=128)
    with pytest.raises(TypeError, match="n_bytes must be an integer"):
        PQ(2.5)
    with pytest.raises(ValueError, match="n_bytes=5 must divide dim=128"):
        PQ(5).fit(np.zeros((10, 128)))
    with pytest.raises(ValueError, match="n_bytes=3 must divide dim=16"):
        LR2VQ(3, per_block=True).fit(np.zeros((10, 16)))
    with pytest.raises(ValueError, match="dims=32 exceeds the data's dimension 16"):
        LR2VQ(4, dims=32).fit(np.zeros((300, 16)))


def test_dimension_one(rng):
    x = rng.standard_normal((400, 1)).astype(np.float32)
    pq = PQ(1, n_iter=5).fit(x)
    err = np.abs(pq.decode(pq.encode(x)) - x)
    assert err.mean() < 0.01 and err.max() < 0.5


def test_non_finite_rows_are_rejected(rng):
    x = _data(rng)
    x[17, 3] = np.inf
    with pytest.raises(ValueError, match="row 17"):
        PQ(4).fit(x)
    with pytest.raises(ValueError, match="row 17"):
        LR2VQ(4, dims=8).fit(x)


def _fitted(kind, rng):
    x = _data(rng)
    if kind == "pq":
        return PQ(4, n_iter=4).fit(x), x
    if kind == "lr2vq":
        return LR2VQ(4, dims=8, n_iter=2, kmeans_iter=4).fit(x), x
    return LR2VQ(4, dims=8, per_block=True, n_iter=2, kmeans_iter=4).fit(x), x


def _decoded_distances(quantizer, codes, queries, metric):
    """float64 distances of ``queries`` to the decoded ``codes``: the reference."""
    decoded = quantizer.decode(codes).astype(np.float64)
    if metric == "inner_product":
        return -(queries.astype(np.float64) @ decoded.T)
    return ((queries[:, None, :].astype(np.float64) - decoded[None]) ** 2).sum(-1)


@pytest.mark.parametrize("kind", ["pq", "lr2vq", "block"])
@pytest.mark.parametrize("metric", ["inner_product", "sqeuclidean"])
def test_table_distances_match_decoded_vectors(rng, kind, metric):
    quantizer, x = _fitted(kind, rng)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    codes = quantizer.encode(x)
    ref = _decoded_distances(quantizer, codes, queries, metric)

    tables, offsets = quantizer.search_tables(queries, metric)
    cand = np.tile(np.arange(len(x), dtype=np.int64), (5, 1))
    out = np.empty(cand.shape, np.float32)
    pq_candidate_distances(tables, offsets, codes, cand, out)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)

    heap_d = np.full((5, 7), np.inf, np.float32)
    heap_i = np.full((5, 7), NO_ID, np.int64)
    pq_scan(tables, offsets, codes, heap_d, heap_i)
    finish_heaps(heap_d, heap_i)
    best = np.sort(ref, axis=1)[:, :7]
    np.testing.assert_allclose(heap_d, best, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n_queries", [1, LANES + 3])
@pytest.mark.parametrize("metric", ["inner_product", "sqeuclidean"])
def test_blocked_scan_matches_reference_and_per_query_scan(rng, metric, n_queries):
    quantizer, x = _fitted("lr2vq", rng)
    queries = rng.standard_normal((n_queries, 16)).astype(np.float32)
    codes = quantizer.encode(x)
    ref = _decoded_distances(quantizer, codes, queries, metric)
    flat, offsets = quantizer.search_tables(queries, metric)
    blocked, offsets_b = quantizer.search_tables(queries, metric, lanes=LANES)
    assert blocked.shape == (-(-n_queries // LANES), 4, 256, LANES)
    np.testing.assert_array_equal(offsets, offsets_b)
    for q in range(n_queries):
        np.testing.assert_allclose(blocked[q // LANES, :, :, q % LANES], flat[q],
                                   rtol=1e-5, atol=1e-5)

    results = []
    for kernel, tables in ((pq_scan, flat), (pq_scan_blocked, blocked)):
        heap_d = np.full((n_queries, 7), np.inf, np.float32)
        heap_i = np.full((n_queries, 7), NO_ID, np.int64)
        kernel(tables, offsets, codes, heap_d, heap_i)
        finish_heaps(heap_d, heap_i)
        results.append((heap_d, heap_i))
    best = np.sort(ref, axis=1)[:, :7]
    np.testing.assert_allclose(results[1][0], best, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(results[1][1], results[0][1])


def test_block_variant_projection_is_block_diagonal(rng):
    quantizer, _ = _fitted("block", rng)
    proj = quantizer.projection
    assert proj.shape == (16, 8)
    mask = np.kron(np.eye(4), np.ones((4, 2))) > 0
    assert np.all(proj[~mask] == 0)
    np.testing.assert_allclose(proj.T @ proj, np.eye(8), atol=1e-5)


@pytest.mark.parametrize("per_block", [False, True])
def test_alternation_never_increases_the_loss(rng, per_block):
    x = _data(rng, 800)
    vq = LR2VQ(4, dims=8, per_block=per_block, n_iter=5, kmeans_iter=3).fit(x)
    losses = np.array([loss for _, loss in vq.loss_history_])
    assert [step for step, _ in vq.loss_history_[:2]] == ["codebook", "procrustes"]
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])
    proj = vq.projection.astype(np.float64)
    np.testing.assert_allclose(proj.T @ proj, np.eye(8), atol=1e-5)


def test_estimate_finds_the_rank_of_low_rank_data(rng):
    basis = np.linalg.qr(rng.standard_normal((64, 8)))[0]
    x = (rng.standard_normal((2000, 8)) @ basis.T).astype(np.float32)
    est = estimate_dims(x, 4)
    assert est.best == 8
    np.testing.assert_array_equal(est.dims, np.arange(4, 65, 4))
    assert est.valid[1] and not est.valid[2]
    assert est.lowrank_error[1] < 1e-6 < est.lowrank_error[0]
    with pytest.raises(ValueError, match="n_bytes=80 exceeds the dimension 64"):
        estimate_dims(x, 80)


def test_sweep_chooses_dims_on_held_out_queries(rng):
    x = _data(rng, 1200)
    queries = _data(rng, 30)
    vq = LR2VQ(4, n_iter=1, kmeans_iter=3).fit(x, train_queries=queries)
    assert vq.dims_ in vq.sweep_ and vq.dims_ % 4 == 0
    assert all(0.0 <= r <= 1.0 for r in vq.sweep_.values())
    assert vq.projection.shape == (16, vq.dims_)


def test_decode_rejects_foreign_codes(rng):
    quantizer, _ = _fitted("pq", rng)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        quantizer.decode(np.zeros((3, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        quantizer.decode(np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="not fitted"):
        PQ(4).encode(np.zeros((2, 16)))


@pytest.mark.parametrize("kind", ["pq", "lr2vq"])
def test_save_load_round_trip(rng, tmp_path, kind):
    quantizer, x = _fitted(kind, rng)
    quantizer.save(tmp_path / "q.lvec")
    loaded = type(quantizer).load(tmp_path / "q.lvec")
    codes = quantizer.encode(x)
    np.testing.assert_array_equal(loaded.encode(x), codes)
    np.testing.assert_array_equal(loaded.decode(codes), quantizer.decode(codes))


def test_same_seed_same_codes(rng):
    x = _data(rng)
    a = PQ(4, n_iter=3, seed=7).fit(x).codebooks
    b = PQ(4, n_iter=3, seed=7).fit(x).codebooks
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lanes", [0, LANES])
def test_l2_tables_and_codes_of_data_far_from_the_origin(rng, lanes):
    """Data offset by 1e4 (norms far above the distances): L2 tables and k-means
    assignment expanded about the origin lost every float32 digit (table
    distances off by about twice their size, reconstruction error 1.2 instead
    of 0.07); both are translation invariant now."""
    x = _data(rng)
    queries = rng.standard_normal((LANES + 3, 16)).astype(np.float32)
    offset = np.float32(1e4)
    near = PQ(4, n_iter=4, seed=1).fit(x)
    far = PQ(4, n_iter=4, seed=1).fit(x + offset)
    codes = far.encode(x + offset)
    decoded = far.decode(codes).astype(np.float64)
    err_far = ((decoded - offset - x) ** 2).sum()
    err_near = ((near.decode(near.encode(x)) - x) ** 2).sum()
    assert err_far < 1.05 * err_near

    q = (queries + offset).astype(np.float64)
    ref = ((q[:, None, :] - decoded[None]) ** 2).sum(-1)
    tables, offsets = far.search_tables(queries + offset, "sqeuclidean", lanes)
    heap_d = np.full((queries.shape[0], 5), np.inf, np.float32)
    heap_i = np.full((queries.shape[0], 5), NO_ID, np.int64)
    (pq_scan_blocked if lanes else pq_scan)(tables, offsets, codes, heap_d, heap_i)
    finish_heaps(heap_d, heap_i)
    np.testing.assert_allclose(heap_d, np.sort(ref, axis=1)[:, :5], rtol=1e-4,
                               atol=1e-3)
