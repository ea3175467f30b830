"""LeanVec projections: the mathematics on small seeded problems, and error paths."""

from __future__ import annotations

import numpy as np
import pytest

from leanvec import LeanVec, datasets, recall_at_k
from leanvec.persistence import load_state, nest, save_state, unnest
from leanvec.projection import ood_loss

OOD_SOLVERS = ("whitened", "eigen", "frank_wolfe")


# ---------------------------------------------------------------- data
@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Reference decompositions on small matrices run faster on one BLAS thread
    (two threads on a busy 2-core machine made a 300 x 600 SVD take seconds)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _low_rank(n: int, dim: int, rank: int, seed: int, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(np.arange(1, rank + 1))
    x = (rng.standard_normal((n, rank)) * scales) @ rng.standard_normal((rank, dim))
    return (x + noise * rng.standard_normal((n, dim)) + 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """A database and training queries from shifted, re-weighted distributions."""
    rng = np.random.default_rng(7)
    x = _low_rank(600, 24, 24, seed=1)
    q = x[:300] * rng.uniform(0.2, 3.0, 24).astype(np.float32) + 0.5
    return x, q.astype(np.float32)


def _prepared(x: np.ndarray, metric: str) -> np.ndarray:
    x = x.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return x


def _moments(model: LeanVec, x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, ...]:
    """float64 reference: the centred database and queries the model fits to."""
    xc = _prepared(x, model.metric) - model.mean.astype(np.float64)
    qc = _prepared(q, model.metric)
    if model.metric in ("sqeuclidean", "euclidean"):
        qc = qc - model.mean.astype(np.float64)
    return xc, qc


def _relative_error(model: LeanVec, x: np.ndarray, q: np.ndarray) -> float:
    xc, qc = _moments(model, x, q)
    a = model.query_matrix.astype(np.float64)
    b = model.database_matrix.astype(np.float64)
    full = qc @ xc.T
    return float(np.linalg.norm(full - (qc @ a) @ (xc @ b).T) ** 2
                 / np.linalg.norm(full) ** 2)


# ---------------------------------------------------------------- LeanVec-ID
@pytest.mark.parametrize("metric", ["cosine", "inner_product", "sqeuclidean"])
def test_pca_matches_float64_svd(data, metric):
    x, _ = data
    model = LeanVec(8, metric=metric).fit(x)
    xp = _prepared(x, metric)
    np.testing.assert_allclose(model.mean, xp.mean(axis=0), atol=1e-6)

    _, s, vt = np.linalg.svd(xp - xp.mean(axis=0), full_matrices=False)
    p = model.database_matrix.astype(np.float64)
    assert model.query_matrix is model.database_matrix and model.orthonormal
    np.testing.assert_allclose(p.T @ p, np.eye(8), atol=1e-5)
    np.testing.assert_allclose(p @ p.T, vt[:8].T @ vt[:8], atol=1e-4)
    expected = 1.0 - np.sum(s[:8] ** 2) / np.sum(s**2)
    assert model.loss_ == pytest.approx(expected, rel=1e-5)


def test_pca_transforms_match_reference(data):
    x, q = data
    model = LeanVec(8, metric="cosine").fit(x)
    p = model.database_matrix.astype(np.float64)
    expected_x = (_prepared(x, "cosine") - model.mean) @ p
    np.testing.assert_allclose(model.transform_database(x), expected_x, atol=1e-5)
    np.testing.assert_allclose(model.transform_queries(q), _prepared(q, "cosine") @ p,
                               atol=1e-5)

    l2 = LeanVec(8, metric="euclidean").fit(x)
    expected_q = (q - l2.mean.astype(np.float64)) @ l2.query_matrix.astype(np.float64)
    np.testing.assert_allclose(l2.transform_queries(q), expected_q, rtol=1e-5,
                               atol=1e-4)


def test_transform_database_blocks_and_progress(data):
    x, _ = data
    model = LeanVec(6).fit(x)
    big = np.tile(x, (60, 1))  # 36 000 rows: several blocks
    calls = []
    out = model.transform_database(big, progress=lambda done, total: calls.append(
        (done, total)))
    assert out.dtype == np.float32 and out.shape == (big.shape[0], 6)
    assert calls[-1] == (big.shape[0], big.shape[0])
    assert len(calls) == -(-big.shape[0] // 8192)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    np.testing.assert_array_equal(out[-600:], model.transform_database(x))
    assert model.transform_database(np.zeros((0, 24))).shape == (0, 6)


# ---------------------------------------------------------------- LeanVec-OOD
def test_whitened_reaches_the_best_rank_d_loss(data):
    x, q = data
    model = LeanVec(6, kind="ood", solver="whitened", spectrum_power=1).fit(x, q)
    xc, qc = _moments(model, x, q)
    s = np.linalg.svd(qc @ xc.T, compute_uv=False)
    best = 1.0 - np.sum(s[:6] ** 2) / np.sum(s**2)
    assert _relative_error(model, x, q) == pytest.approx(best, rel=1e-4)
    assert model.loss_ == pytest.approx(best, rel=1e-4)
    assert not model.orthonormal


def test_frank_wolfe_loss_never_increases_and_starts_from_pca(data):
    x, q = data
    model = LeanVec(6, kind="ood", solver="frank_wolfe", tol=1e-6).fit(x, q)
    history = np.array(model.loss_history_)
    assert history.size > 2
    assert np.all(np.diff(history) <= 1e-9 * history[0])
    assert history[-1] < history[0]

    pca = LeanVec(6, metric="cosine").fit(x)
    xc, qc = _moments(model, x, q)
    k_x, k_q = xc.T @ xc / len(xc), qc.T @ qc / len(qc)
    p = pca.database_matrix.astype(np.float64)
    assert history[0] == pytest.approx(ood_loss(k_x, k_q, p, p), rel=1e-4)


def test_frank_wolfe_stays_in_the_spectral_norm_ball(data):
    x, q = data
    model = LeanVec(6, kind="ood", solver="frank_wolfe").fit(x, q)
    for m in (model.query_matrix, model.database_matrix):
        assert np.linalg.norm(m.astype(np.float64), 2) <= 1.0 + 1e-5


@pytest.mark.parametrize("metric", ["cosine", "inner_product", "sqeuclidean"])
def test_closed_form_never_worse_than_other_solvers(data, metric):
    x, q = data
    losses = {s: LeanVec(6, kind="ood", solver=s, metric=metric).fit(x, q).loss_
              for s in OOD_SOLVERS[1:]}
    exact = LeanVec(6, kind="ood", metric=metric, spectrum_power=1.0)
    losses["whitened"] = exact.fit(x, q).loss_
    assert losses["whitened"] <= losses["frank_wolfe"] + 1e-9
    assert losses["whitened"] <= losses["eigen"] + 1e-9


def test_loss_attribute_matches_float64_reference(data):
    x, q = data
    for solver in OOD_SOLVERS:
        model = LeanVec(6, kind="ood", solver=solver).fit(x, q)
        assert model.loss_ == pytest.approx(_relative_error(model, x, q), rel=1e-3)


def test_eigen_search_is_orthonormal_and_beats_its_endpoints(data):
    x, q = data
    model = LeanVec(6, kind="ood", solver="eigen").fit(x, q)
    p = model.database_matrix.astype(np.float64)
    assert model.query_matrix is model.database_matrix and model.orthonormal
    np.testing.assert_allclose(p.T @ p, np.eye(6), atol=1e-5)
    assert 0.0 <= model.beta_ <= 1.0

    xc, qc = _moments(model, x, q)
    k_x, k_q = xc.T @ xc, qc.T @ qc
    for k in (k_x, k_q):
        top = np.linalg.eigh(k)[1][:, ::-1][:, :6]
        assert ood_loss(k_x, k_q, p, p) <= ood_loss(k_x, k_q, top, top) * (1 + 1e-6)


@pytest.mark.parametrize("solver", [None, *OOD_SOLVERS])
def test_exact_recovery_when_rank_at_most_d(solver):
    x = _low_rank(300, 20, 4, seed=3)
    q = _low_rank(200, 20, 4, seed=3)[:, :] * 2.0
    kind = "id" if solver is None else "ood"
    model = LeanVec(5, kind=kind, solver=solver, metric="inner_product")
    model.fit(x, None if solver is None else q)
    xc, qc = _moments(model, x, q)
    approx = model.transform_queries(q).astype(np.float64) @ model.transform_database(
        x).astype(np.float64).T
    np.testing.assert_allclose(approx, qc @ xc.T, atol=2e-3 * np.abs(qc @ xc.T).max())


def test_l2_distances_from_centred_norms():
    x = _low_rank(300, 16, 3, seed=4)
    q = _low_rank(50, 16, 3, seed=4) + 1.0
    model = LeanVec(4, kind="ood", metric="sqeuclidean").fit(x, q)
    inner = model.transform_queries(q) @ model.transform_database(x).T
    dist = (model.centred_sq_norms(q)[:, None] + model.centred_sq_norms(x)[None, :]
            - 2.0 * inner)
    true = ((q.astype(np.float64)[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(dist, true, rtol=1e-3, atol=1e-3 * true.max())


def test_spectrum_power_reweights_the_closed_form(data):
    x, q = data
    exact = LeanVec(6, kind="ood", spectrum_power=1.0).fit(x, q)
    flat = LeanVec(6, kind="ood", spectrum_power=0.6).fit(x, q)
    assert flat.spectrum_power_ == 0.6 and exact.spectrum_power_ == 1.0
    assert flat.loss_ > exact.loss_
    assert flat.loss_ == pytest.approx(_relative_error(flat, x, q), rel=1e-3)

    # In whitened coordinates the fitted map has singular values c s^0.6, with c
    # the least-squares scale.
    xc, qc = _moments(exact, x, q)
    s = np.linalg.svd(qc @ xc.T / np.sqrt(len(qc) * len(xc)), compute_uv=False)[:6]
    c = np.sum(s * s**0.6) / np.sum(s**1.2)
    approx = (qc @ flat.query_matrix) @ (xc @ flat.database_matrix).T
    got = np.linalg.svd(approx / np.sqrt(len(qc) * len(xc)), compute_uv=False)[:6]
    np.testing.assert_allclose(got, c * s**0.6, rtol=1e-3)


def test_automatic_spectrum_power(data):
    x, q = data
    model = LeanVec(4, kind="ood").fit(x, q)
    assert model.spectrum_power_ in model.power_scores_
    assert set(model.power_scores_) == {1.0, 0.9, 0.8, 0.7, 0.6, 0.5}
    best = max(model.power_scores_.values())
    assert model.power_scores_[model.spectrum_power_] == best
    assert all(0.0 <= v <= 1.0 for v in model.power_scores_.values())
    again = LeanVec(4, kind="ood").fit(x, q)
    np.testing.assert_array_equal(again.database_matrix, model.database_matrix)

    # Too few training queries to hold some out: the exact closed form.
    few = LeanVec(4, kind="ood").fit(x, q[:40])
    assert few.spectrum_power_ == 1.0 and few.power_scores_ == {}


def test_ood_ranks_held_out_queries_better_than_pca():
    data = datasets.make_cross_modal(n=3000, n_queries=200, n_learn_queries=1000,
                                     dim=64, intrinsic_dim=24, k=10, seed=0)
    recall = {}
    for kind in ("id", "ood"):
        model = LeanVec(12, kind=kind)
        model.fit(data.database, data.learn_queries if kind == "ood" else None)
        scores = model.transform_queries(data.queries) @ model.transform_database(
            data.database).T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        recall[kind] = recall_at_k(top, data.gt_ids, 10)
    assert recall["ood"] >= recall["id"] + 0.02  # measured 0.54 vs 0.50


# ---------------------------------------------------------------- nesting
@pytest.mark.parametrize("kind,power", [("id", None), ("ood", 1.0), ("ood", 0.7)])
def test_truncate_equals_a_smaller_fit(data, kind, power):
    x, q = data
    queries = q if kind == "ood" else None
    big = LeanVec(12, kind=kind, spectrum_power=power).fit(x, queries)
    small = LeanVec(5, kind=kind, spectrum_power=power).fit(x, queries)
    cut = big.truncate(5)
    assert cut.leanvec_dims == 5 and cut.database_matrix.shape == (24, 5)
    prod = cut.query_matrix.astype(np.float64) @ cut.database_matrix.T
    ref = small.query_matrix.astype(np.float64) @ small.database_matrix.T
    np.testing.assert_allclose(prod, ref, atol=1e-4 * np.abs(ref).max())
    assert cut.loss_ == pytest.approx(small.loss_, rel=1e-4, abs=1e-9)
    assert cut.orthonormal == small.orthonormal


# ---------------------------------------------------------------- hard inputs
@pytest.mark.parametrize("solver", [None, *OOD_SOLVERS])
@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_rank_deficient_inputs_give_finite_results(solver, metric):
    rng = np.random.default_rng(5)
    x = np.repeat(rng.standard_normal((5, 12)), 20, axis=0).astype(np.float32)
    x[:, 3] = 2.0  # a constant column
    x[:10] = 0.0  # zero rows (cosine keeps them at zero)
    q = x[::3] + 0.0
    kind = "id" if solver is None else "ood"
    model = LeanVec(8, kind=kind, solver=solver, metric=metric)
    model.fit(x, None if solver is None else q)
    for arr in (model.database_matrix, model.query_matrix, model.transform_database(x),
                model.transform_queries(q)):
        assert np.isfinite(arr).all()
    assert 0.0 <= model.loss_ <= 1.0


def test_constant_database_gives_zero_loss_and_finite_matrices():
    x = np.ones((40, 6), dtype=np.float32)
    for solver in OOD_SOLVERS:
        model = LeanVec(2, kind="ood", solver=solver).fit(x, x[:10])
        assert model.loss_ == 0.0
        assert np.isfinite(model.transform_database(x)).all()


def test_cosine_ignores_vector_scale(data):
    x, q = data
    model = LeanVec(6, kind="ood").fit(x, q)
    ref_q, ref_x = model.transform_queries(q[:20]), model.transform_database(x[:20])
    for factor in (10.0, 0.1):
        np.testing.assert_allclose(model.transform_queries(q[:20] * factor), ref_q,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.transform_database(x[:20] * factor), ref_x,
                                   rtol=1e-5, atol=1e-6)


def test_any_real_dtype_gives_the_float32_result(data):
    x, q = data
    ref = LeanVec(4, kind="ood").fit(x, q)
    other = LeanVec(4, kind="ood").fit(x.astype(np.float64), q.astype(np.float64))
    np.testing.assert_array_equal(ref.database_matrix, other.database_matrix)
    ints = LeanVec(2, metric="inner_product").fit(np.arange(60).reshape(10, 6) % 7)
    assert ints.database_matrix.dtype == np.float32


def test_sampling_is_seeded(data):
    x, _ = data
    one = LeanVec(4, sample_size=100, seed=3).fit(x)
    two = LeanVec(4, sample_size=100, seed=3).fit(x)
    other = LeanVec(4, sample_size=100, seed=4).fit(x)
    np.testing.assert_array_equal(one.database_matrix, two.database_matrix)
    assert not np.array_equal(one.mean, other.mean)


def test_thread_count_does_not_change_the_result(data):
    x, q = data
    big, queries = np.tile(x, (30, 1)), np.tile(q, (40, 1))
    one = LeanVec(4, kind="ood", n_threads=1).fit(big, queries)
    two = LeanVec(4, kind="ood", n_threads=2).fit(big, queries)
    np.testing.assert_array_equal(one.database_matrix, two.database_matrix)
    np.testing.assert_array_equal(one.transform_database(big),
                                  two.transform_database(big))


def test_uncentred_model_has_zero_mean(data):
    x, q = data
    model = LeanVec(4, kind="ood", center=False).fit(x, q)
    assert not model.mean.any()
    assert model.loss_ == pytest.approx(_relative_error(model, x, q), rel=1e-3)


# ---------------------------------------------------------------- persistence
@pytest.mark.parametrize("kind,solver", [("id", None), ("ood", "whitened"),
                                         ("ood", "eigen"), ("ood", "frank_wolfe")])
def test_save_load_round_trip(tmp_path, data, kind, solver):
    x, q = data
    model = LeanVec(5, kind=kind, solver=solver).fit(x, q if kind == "ood" else None)
    model.save(tmp_path / "model.lvec")
    back = LeanVec.load(tmp_path / "model.lvec")
    np.testing.assert_array_equal(back.transform_database(x),
                                  model.transform_database(x))
    np.testing.assert_array_equal(back.transform_queries(q), model.transform_queries(q))
    assert (back.loss_, back.solver_, back.orthonormal) == (
        model.loss_, model.solver_, model.orthonormal)
    assert back.loss_history_ == model.loss_history_ and back.beta_ == model.beta_
    if model.nested:
        assert back.truncate(3).loss_ == model.truncate(3).loss_


def test_state_nests_inside_a_parent(tmp_path, data):
    x, _ = data
    model = LeanVec(5).fit(x)
    meta, arrays = {"owner": "index"}, {"ids": np.arange(3)}
    nest("projection", meta, arrays, *model.to_state())
    save_state(tmp_path / "parent.lvec", "index", meta, arrays)
    _, meta, arrays = load_state(tmp_path / "parent.lvec")
    back = LeanVec.from_state(*unnest("projection", meta, arrays))
    np.testing.assert_array_equal(back.transform_database(x),
                                  model.transform_database(x))


def test_load_rejects_other_and_corrupt_files(tmp_path, data):
    x, _ = data
    save_state(tmp_path / "other.lvec", "lvq", {}, {})
    with pytest.raises(ValueError, match="expected 'leanvec.LeanVec'"):
        LeanVec.load(tmp_path / "other.lvec")
    path = tmp_path / "model.lvec"
    LeanVec(4).fit(x).save(path)
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        LeanVec.load(path)


def test_from_state_checks_shapes(data):
    x, _ = data
    meta, arrays = LeanVec(4).fit(x).to_state()
    arrays["database_matrix"] = arrays["database_matrix"][:, :3]
    with pytest.raises(ValueError, match="expected"):
        LeanVec.from_state(meta, arrays)
    del arrays["mean"]
    with pytest.raises(ValueError, match="lacks the entry 'mean'"):
        LeanVec.from_state(meta, arrays)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,error,match", [
    ({"leanvec_dims": 0}, ValueError, "leanvec_dims must be >= 1"),
    ({"leanvec_dims": True}, TypeError, "leanvec_dims must be an integer"),
    ({"leanvec_dims": 4, "kind": "odd"}, ValueError, "kind must be one of"),
    ({"leanvec_dims": 4, "kind": "ood", "solver": "pca"}, ValueError,
     "solver must be one of"),
    ({"leanvec_dims": 4, "solver": "eigen"}, ValueError, "applies to kind='ood'"),
    ({"leanvec_dims": 4, "metric": "hamming"}, ValueError, "metric must be one of"),
    ({"leanvec_dims": 4, "sample_size": 0}, ValueError, "sample_size must be >= 1"),
    ({"leanvec_dims": 4, "seed": -1}, ValueError, "seed must be >= 0"),
    ({"leanvec_dims": 4, "center": 1}, TypeError, "center must be a bool"),
    ({"leanvec_dims": 4, "tol": 1.5}, ValueError, r"tol must be in \[0, 1\)"),
    ({"leanvec_dims": 4, "tol": "x"}, TypeError, "tol must be a real number"),
    ({"leanvec_dims": 4, "max_steps": 0}, ValueError, "max_steps must be >= 1"),
    ({"leanvec_dims": 4, "n_threads": 0}, ValueError, "n_threads must be >= 1"),
    ({"leanvec_dims": 4, "kind": "ood", "spectrum_power": 0}, ValueError,
     r"spectrum_power must be in \(0, 2\]"),
    ({"leanvec_dims": 4, "kind": "ood", "spectrum_power": "1"}, TypeError,
     "spectrum_power must be a real number"),
    ({"leanvec_dims": 4, "spectrum_power": 0.8}, ValueError,
     "applies to kind='ood' with the 'whitened' solver"),
    ({"leanvec_dims": 4, "kind": "ood", "solver": "eigen", "spectrum_power": 0.8},
     ValueError, "applies to kind='ood' with the 'whitened' solver"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        LeanVec(**kwargs)


def test_fit_errors(data):
    x, q = data
    with pytest.raises(ValueError, match="smaller than the database dimension 24"):
        LeanVec(24).fit(x)
    with pytest.raises(ValueError, match="database has 6 rows"):
        LeanVec(7).fit(np.random.default_rng(0).standard_normal((6, 8)))
    with pytest.raises(ValueError, match="database has 50 rows"):
        LeanVec(60, sample_size=50).fit(np.ones((100, 80)))
    with pytest.raises(ValueError, match="train_queries has 3 rows"):
        LeanVec(4, kind="ood").fit(x, q[:3])
    with pytest.raises(ValueError, match="kind='ood' needs train_queries"):
        LeanVec(4, kind="ood").fit(x)
    with pytest.raises(ValueError, match="used only by kind='ood'"):
        LeanVec(4).fit(x, q)
    with pytest.raises(ValueError, match="train_queries has 23 features"):
        LeanVec(4, kind="ood").fit(x, q[:, :23])
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(ValueError, match="first at row 17"):
        LeanVec(4).fit(bad)
    with pytest.raises(TypeError, match="real numbers"):
        LeanVec(4).fit(x.astype(bool))


def test_transform_errors(data):
    x, q = data
    with pytest.raises(ValueError, match="not fitted"):
        LeanVec(4).transform_database(x)
    with pytest.raises(ValueError, match="not fitted"):
        LeanVec(4).transform_queries(q)
    model = LeanVec(4).fit(x)
    with pytest.raises(ValueError, match="queries has 23 features per row, but 24"):
        model.transform_queries(q[:, :23])
    with pytest.raises(ValueError, match="database has 23 features per row, but 24"):
        model.transform_database(x[:, :23])
    with pytest.raises(ValueError, match="at most the fitted 4"):
        model.truncate(5)
    fw = LeanVec(4, kind="ood", solver="frank_wolfe").fit(x, q)
    with pytest.raises(ValueError, match="not nested"):
        fw.truncate(2)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
@pytest.mark.parametrize("kind, solver", [("id", None), ("ood", "whitened")])
def test_huge_and_tiny_magnitudes_fit_the_same_projection(scale, kind, solver):
    # float32 second moments of such data overflow (1e60) or underflow (1e-60)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 12)) * np.linspace(3, 0.5, 12)
    q = rng.standard_normal((200, 12)) + 0.5
    ref = LeanVec(4, kind=kind, solver=solver, metric="inner_product", center=True)
    ref.fit(x, None if kind == "id" else q)
    model = LeanVec(4, kind=kind, solver=solver, metric="inner_product", center=True)
    model.fit(x * scale, None if kind == "id" else q * scale)
    np.testing.assert_allclose(model.database_matrix, ref.database_matrix, atol=1e-4)
    np.testing.assert_allclose(model.query_matrix, ref.query_matrix, atol=1e-4)
    np.testing.assert_allclose(model.mean / scale, ref.mean, rtol=1e-5, atol=1e-6)
    reduced = model.transform_database(x * scale)
    assert np.isfinite(reduced).all()
    np.testing.assert_allclose(reduced / scale, ref.transform_database(x),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_largest_ids_match_a_full_sort(k):
    from leanvec._kernels.topk import largest_ids
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((40, 300)).astype(np.float32)
    scores[3, :] = 1.0  # all tied: the first k columns
    found = largest_ids(scores, k)
    for r in range(40):
        want = np.argsort(-scores[r], kind="stable")[:k]
        assert set(found[r]) == set(want)
