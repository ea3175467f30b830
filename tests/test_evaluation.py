"""Recall definitions on hand-made cases, and the QPS timer."""

import numpy as np
import pytest

from leanvec import annb_recall_at_k, recall_at_k, time_queries


def test_recall_counts_overlap_not_order():
    gt = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    got = np.array([[2, 1, 0, 9], [7, -1, -1, -1]])
    assert recall_at_k(got, gt, 3) == pytest.approx((3 / 3 + 0 / 3) / 2)
    assert recall_at_k(got, gt, 4) == pytest.approx((3 / 4 + 1 / 4) / 2)


def test_recall_with_fewer_returned_than_k():
    gt = np.array([[0, 1, 2]])
    assert recall_at_k(np.array([[0]]), gt, 3) == pytest.approx(1 / 3)


def test_recall_ignores_repeated_ids():
    assert recall_at_k(np.array([[0, 0, 0]]), np.array([[0, 1, 2]]), 3) == pytest.approx(1 / 3)


def test_annb_recall_counts_ties_at_the_threshold():
    gt_d = np.array([[0.1, 0.2, 0.3]])
    # a different id at the same distance as the true 2nd counts
    assert annb_recall_at_k(np.array([[0.1, 0.2, 0.2005]]), gt_d, 2) == 1.0
    assert annb_recall_at_k(np.array([[0.1, 0.25, np.inf]]), gt_d, 2) == 0.5
    assert annb_recall_at_k(np.array([[0.1, np.inf, np.inf]]), gt_d, 3) == pytest.approx(1 / 3)


def test_annb_recall_angular_on_unnormalised_data(rng):
    from leanvec import exact_search

    database = rng.standard_normal((200, 8)) * rng.uniform(0.1, 10, (200, 1))
    queries = rng.standard_normal((5, 8)) * 7
    truth = exact_search(database, queries, 10, "angular")
    assert annb_recall_at_k(truth.distances, truth.distances, 10) == 1.0
    worse = exact_search(database, queries, 20, "angular").distances[:, 10:]
    assert annb_recall_at_k(worse, truth.distances, 10) < 0.5


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.array([[0.5]])])
def test_recall_rejects_non_integer_ids(bad):
    with pytest.raises(TypeError, match="integer array"):
        recall_at_k(bad, np.zeros((2, 3), dtype=int), 1)


def test_recall_shape_errors():
    with pytest.raises(ValueError, match="ids has 1 rows but gt_ids has 2"):
        recall_at_k(np.zeros((1, 3), int), np.zeros((2, 3), int), 1)
    with pytest.raises(ValueError, match="fewer than k=5"):
        recall_at_k(np.zeros((1, 3), int), np.zeros((1, 3), int), 5)


def test_time_queries_modes(rng):
    calls = []
    queries = rng.standard_normal((7, 3))
    batch = time_queries(lambda q: calls.append(q.shape), queries, runs=2, warmup=1)
    assert batch.mode == "batch" and calls == [(7, 3)] * 3 and batch.qps > 0
    calls.clear()
    single = time_queries(lambda q: calls.append(q.shape), queries, batch=False, runs=1,
                          n_threads=1)
    assert single.mode == "single" and calls == [(1, 3)] * 14 and single.n_threads == 1
    with pytest.raises(ValueError, match="runs must be >= 1"):
        time_queries(lambda q: None, queries, runs=0)


def test_one_query_vector_is_one_query():
    calls = []
    timing = time_queries(lambda q: calls.append(q.shape), np.zeros(4), batch=False,
                          runs=1, warmup=0)
    assert timing.n_queries == 1 and calls == [(1, 4)]


@pytest.mark.parametrize("queries, kwargs, error, match", [
    (np.zeros((0, 4)), {}, ValueError, "queries is empty"),
    (np.full((2, 4), np.nan), {}, ValueError, "NaN or infinite"),
    (np.zeros((2, 4)), {"n_threads": 0}, ValueError, "n_threads must be >= 1, got 0"),
])
def test_time_queries_rejects_bad_input(queries, kwargs, error, match):
    with pytest.raises(error, match=match):
        time_queries(lambda q: None, queries, **kwargs)


@pytest.mark.parametrize("epsilon, error, match", [
    (float("nan"), ValueError, "epsilon must be finite and >= 0, got nan"),
    (-1e-3, ValueError, "epsilon must be finite and >= 0"),
    ("x", TypeError, "epsilon must be a real number, got 'x'"),
])
def test_annb_recall_rejects_bad_epsilon(epsilon, error, match):
    with pytest.raises(error, match=match):
        annb_recall_at_k(np.ones((2, 3)), np.ones((2, 3)), 3, epsilon=epsilon)
