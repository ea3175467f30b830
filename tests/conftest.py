"""Shared fixtures: seeded data, never files outside tmp_path."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def brute_force(database, queries, k, metric):
    """Exact distances in float64 and ids sorted by (distance, id)."""
    x = np.asarray(database, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric in ("cosine", "angular"):
        xn = np.linalg.norm(x, axis=1, keepdims=True)
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        xs = np.divide(x, xn, out=np.zeros_like(x), where=xn > 0)
        qs = np.divide(q, qn, out=np.zeros_like(q), where=qn > 0)
        dist = np.maximum(1.0 - qs @ xs.T, 0.0)
    elif metric == "inner_product":
        dist = -(q @ x.T)
    else:
        dist = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        if metric == "euclidean":
            dist = np.sqrt(dist)
    ids = np.lexsort((np.broadcast_to(np.arange(x.shape[0]), dist.shape), dist), axis=1)
    ids = ids[:, :k]
    return ids, np.take_along_axis(dist, ids, axis=1)


def clustered(rng, n, dim, n_clusters=20, rank=None):
    """Seeded clustered data; with ``rank`` it lies in a rank-``rank`` subspace."""
    width = dim if rank is None else rank
    centres = rng.standard_normal((n_clusters, width)) * 3.0
    x = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, width))
    if rank is not None:
        basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0]
        x = x @ basis.T
    return x.astype(np.float32)


@pytest.fixture
def reference():
    """The float64 brute-force reference: reference(database, queries, k, metric)."""
    return brute_force
