"""Each installed adapter builds, queries in both modes and reports its size."""

import numpy as np
import pytest

pytest.importorskip("yaml")

from bench.adapters import get_adapter, unavailable_reason  # noqa: E402
from leanvec import recall_at_k  # noqa: E402

# Small builds; pynndescent and leanvec-index are left to the benchmark runs (their
# kernels take tens of seconds to compile on two cores).
CASES = [
    ("leanvec-flat", {}, {}, 1.0),
    ("leanvec-compressed", {"quantizer": "lvq8", "rerank": 20}, {}, 0.95),
    ("faiss-flat", {}, {}, 1.0),
    ("faiss-hnsw", {"M": 8, "ef_construction": 40}, {"efSearch": 100}, 0.9),
    ("faiss-ivf", {"nlist": 4}, {"nprobe": 4}, 1.0),
    ("faiss-ivfpq", {"nlist": 2, "m": 8, "nbits": 4, "opq": False},
     {"nprobe": 2, "k_factor_rf": 20}, 0.9),
    ("faiss-factory", {"factory": "SQ8"}, {}, 0.9),
    ("hnswlib", {"M": 8, "ef_construction": 40}, {"ef": 100}, 0.9),
    ("svs-vamana", {"graph_max_degree": 16, "window_size": 40},
     {"search_window_size": 100}, 0.9),
    ("usearch", {"connectivity": 8, "expansion_add": 40}, {"expansion_search": 100},
     0.9),
]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    database = (rng.standard_normal((400, 16)) * rng.uniform(0.5, 2, (400, 1)))
    queries = rng.standard_normal((15, 16))
    return database.astype(np.float32), queries.astype(np.float32)


def _truth(database, queries, metric, k):
    x = database.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        dist = -(q @ x.T)
    else:
        dist = ((q[:, None, :] - x[None]) ** 2).sum(-1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("name, build, query, min_recall", CASES,
                         ids=[c[0] for c in CASES])
def test_adapter_build_query_size(data, name, build, query, min_recall, metric):
    cls = get_adapter(name)
    reason = unavailable_reason(cls, metric)
    if reason is not None:
        pytest.skip(reason)
    database, queries = data
    adapter = cls(metric, **build)
    adapter.set_threads(1)
    adapter.fit(database, None)
    adapter.set_query_arguments(**query)

    ids = adapter.batch_query(queries, 10)
    assert ids.shape == (15, 10) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < 400
    assert recall_at_k(ids, _truth(database, queries, metric, 10), 10) >= min_recall
    single = np.stack([adapter.query(q[None], 10) for q in queries])
    assert recall_at_k(single, ids, 10) >= 0.9
    size = adapter.index_bytes()
    assert size is None or size >= 400 * 8
