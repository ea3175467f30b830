"""leanvec-bench parts: definitions, result files, recomputed distances, recall."""

import json
import os

import h5py
import numpy as np
import pytest

pytest.importorskip("yaml")

from bench import definitions as defs  # noqa: E402
from bench.adapters import (  # noqa: E402
    Adapter,
    as_ids,
    get_adapter,
    register,
    registry,
    unavailable_reason,
)
from bench.results import (  # noqa: E402
    Result,
    pareto_front,
    qps_at,
    result_path,
    summary_table,
    true_distances,
    write_result,
)
from leanvec import annb_recall_at_k, recall_at_k  # noqa: E402


@register
class _Missing(Adapter):
    name = "test-missing-library"
    requires = ("no_such_module_for_leanvec_tests",)


@register
class _EuclideanOnly(Adapter):
    name = "test-euclidean-only"
    metrics = ("euclidean",)


# ---------------------------------------------------------------- definitions
GOOD = """\
algorithms:
  - algorithm: hnswlib
    build: {M: [8, 16], ef_construction: 50}
    query: {ef: [10, 20, 40]}
  - algorithm: faiss-flat
  - algorithm: faiss-ivf
    name: ivf-small
    build: {nlist: 4}
    query: [{nprobe: 1}, {nprobe: [2, 4]}]
  - algorithm: svs-vamana
    disabled: true
"""


def test_parse_expands_build_and_query_grids():
    found = defs.parse(GOOD, "good.yaml")
    assert [d.name for d in found] == ["hnswlib", "hnswlib", "faiss-flat", "ivf-small"]
    assert [d.build_args for d in found[:2]] == [
        {"M": 8, "ef_construction": 50}, {"M": 16, "ef_construction": 50}]
    assert found[0].query_args == ({"ef": 10}, {"ef": 20}, {"ef": 40})
    assert found[2].build_args == {} and found[2].query_args == ({},)
    assert found[3].query_args == ({"nprobe": 1}, {"nprobe": 2}, {"nprobe": 4})
    assert found[3].where == "good.yaml, line 6"


def test_expand_empty_and_scalar():
    assert defs.expand({}) == [{}]
    assert defs.expand({"a": 1, "b": [2, 3]}) == [{"a": 1, "b": 2}, {"a": 1, "b": 3}]


def test_shipped_definitions_parse_and_cover_every_adapter():
    quick = defs.load()
    full = defs.load(defs.shipped(defs.FULL_FILE))
    shipped_names = {d.algorithm for d in quick} | {d.algorithm for d in full}
    real = {n for n in registry() if not n.startswith("test-")}
    assert real <= shipped_names
    # pynndescent compiles for about 45 s per process: too slow for the quick set
    assert {d.algorithm for d in quick} == real - {"pynndescent"}


@pytest.mark.parametrize("text, match", [
    ("algorithms:\n  - algorithm: hnswlib\n    qurey: {ef: 10}\n",
     r"line 3: algorithms\[0\]: unknown key 'qurey'; valid: algorithm, name"),
    ("algorithms:\n  - algorithm: hnswlib\n    query: {eff: 10}\n",
     r"line 3: algorithms\[0\]: unknown query argument 'eff'; valid: ef"),
    ("algorithms:\n  - algorithm: hnswlib\n    build:\n      M: 8\n      efc: 3\n",
     r"line 5: .*unknown build argument 'efc'; valid: M, ef_construction"),
    ("algorithms:\n  - algorithm: hnswlb\n",
     r"line 2: algorithms\[0\]: unknown algorithm 'hnswlb'; valid: .*hnswlib"),
    ("algorithm:\n  - algorithm: hnswlib\n",
     r"expected a mapping with the key 'algorithms'"),
    ("algorithms: []\nextra: 1\n", r"line 2: unknown top-level key 'extra'"),
    ("algorithms: {hnswlib: 1}\n", r"line 1: 'algorithms' must be a list"),
    ("algorithms:\n  - hnswlib\n", r"line 2: algorithms\[0\] must be a mapping"),
    ("algorithms:\n  - algorithm: hnswlib\n    query: [10, 20]\n",
     r"line 3: algorithms\[0\]: query must be a mapping .* got int"),
    ("algorithms:\n  - algorithm: hnswlib\n    query: {ef: []}\n",
     r"line 3: .*'ef' must be a value or a non-empty list"),
    ("algorithms:\n  - algorithm: [unclosed\n", r"bad.yaml, line \d+: not valid YAML"),
    ("algorithms:\n  - algorithm: hnswlib\n    algorithm: faiss-flat\n",
     r"bad.yaml, line 3: duplicate key 'algorithm' \(first on line 2\)"),
    ("algorithms:\n  - algorithm: hnswlib\n    disabled: 'no'\n",
     r"line 3: algorithms\[0\]: disabled must be true or false, got 'no'"),
])
def test_parse_errors_name_file_line_and_key(text, match):
    with pytest.raises(defs.DefinitionError, match=match):
        defs.parse(text, "bad.yaml")


def test_load_missing_file(tmp_path):
    with pytest.raises(defs.DefinitionError, match="cannot read definitions file"):
        defs.load(tmp_path / "none.yaml")


def test_select_filters_and_rejects_unknown_names():
    found = defs.parse(GOOD)
    assert {d.name for d in defs.select(found, ["ivf-small"])} == {"ivf-small"}
    assert len(defs.select(found, ["hnswlib"])) == 2
    assert defs.select(found, []) == found
    with pytest.raises(ValueError, match=r"unknown algorithm 'hnsw' .* faiss-flat"):
        defs.select(found, ["hnsw"])


# ---------------------------------------------------------------- adapters
def test_registry_lookup_and_reasons():
    with pytest.raises(ValueError, match=r"unknown algorithm 'nope'; valid: .*faiss"):
        get_adapter("nope")
    assert "not installed" in unavailable_reason(_Missing)
    reason = unavailable_reason(_EuclideanOnly, "cosine")
    assert "metric 'cosine' not supported" in reason
    assert unavailable_reason(_EuclideanOnly, "euclidean") is None
    with pytest.raises(ValueError, match="already registered"):
        register(_Missing)


def test_adapter_rejects_unknown_arguments():
    cls = get_adapter("hnswlib")
    with pytest.raises(ValueError, match=r"unknown build argument 'm'; valid: M"):
        cls("cosine", m=3)
    with pytest.raises(ValueError, match=r"unknown query argument 'efs'; valid: ef"):
        cls("cosine").set_query_arguments(efs=3)


def test_as_ids_maps_foreign_sentinels_to_minus_one():
    raw = np.array([[3, 2**64 - 1, 7]], dtype=np.uint64)
    assert as_ids(raw, n=5).tolist() == [[3, -1, -1]]


# ---------------------------------------------------------------- distances, recall
def test_true_distances_angular_on_unnormalised_data():
    database = np.array([[10.0, 0.0], [0.0, 0.5], [-2.0, 0.0], [0.0, 0.0]])
    queries = np.array([[3.0, 4.0]])
    got = true_distances(database, queries, np.array([[0, 1, 2, 3, -1]]), "cosine")
    np.testing.assert_allclose(got, [[0.4, 0.2, 1.6, 1.0, np.inf]], rtol=1e-6)


@pytest.mark.parametrize("metric, expected", [
    ("euclidean", [5.0, np.sqrt(5.0)]),
    ("sqeuclidean", [25.0, 5.0]),
    ("inner_product", [0.0, -14.0]),
])
def test_true_distances_other_metrics(metric, expected):
    database = np.array([[0.0, 0.0], [2.0, 2.0]])
    queries = np.array([[3.0, 4.0]])
    got = true_distances(database, queries, np.array([[0, 1]]), metric)
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)


def test_recall_with_ties_counts_equal_distances_under_the_threshold():
    # Points 1 and 2 are both at distance 1 from the query: the truth lists 1,
    # the index returns 2. Id overlap calls it a miss, the threshold a hit.
    database = np.array([[0.0], [1.0], [-1.0], [5.0]])
    queries = np.array([[0.0]])
    gt_ids = np.array([[0, 1, 2, 3]])
    gt_d = true_distances(database, queries, gt_ids, "euclidean")
    ids = np.array([[0, 2]])
    got_d = true_distances(database, queries, ids, "euclidean")
    assert recall_at_k(ids, gt_ids, 2) == 0.5
    assert annb_recall_at_k(got_d, gt_d, 2) == 1.0


def test_recall_when_fewer_than_k_are_returned():
    database = np.arange(6, dtype=np.float64)[:, None]
    queries = np.array([[0.0], [5.0]])
    gt_ids = np.array([[0, 1, 2, 3], [5, 4, 3, 2]])
    gt_d = true_distances(database, queries, gt_ids, "euclidean")
    ids = np.array([[0, 1, -1, -1], [5, -1, -1, -1]])
    got_d = true_distances(database, queries, ids, "euclidean")
    assert recall_at_k(ids, gt_ids, 4) == pytest.approx(3 / 8)
    assert annb_recall_at_k(got_d, gt_d, 4) == pytest.approx(3 / 8)


# ---------------------------------------------------------------- result files
def test_result_path_follows_the_ann_benchmarks_layout(tmp_path):
    path = result_path(tmp_path, "glove-25-angular", 10, "hnswlib", True,
                       {"M": 16}, {"ef": 40})
    assert path.relative_to(tmp_path).parts[:3] == ("glove-25-angular", "10",
                                                    "hnswlib-batch")
    assert path.name == "M_16_ef_40.hdf5"
    single = result_path(tmp_path, "d", 1, "faiss-flat", False, {}, {})
    assert single.parent.name == "faiss-flat" and single.suffix == ".hdf5"


def test_distinct_arguments_never_share_a_result_file(tmp_path):
    spellings = [{"M": 8}, {"M": -8}, {"M": "8"}, {"M": 0.5}, {"M": "0_5"},
                 {"M": True}, {"M": "true"}, {"M": 1}, {"M": None}, {"M": "null"}]
    paths = {result_path(tmp_path, "d", 10, "x", True, args, {}) for args in spellings}
    assert len(paths) == len(spellings)
    assert result_path(tmp_path, "d", 10, "x", True, {"quantizer": "lvq8"},
                       {"ef": 0}).name == "quantizer_lvq8_ef_0.hdf5"


def test_aliases_are_not_expanded_when_indexing_lines():
    # nine levels of nine-fold aliases: 9**8 leaves if expanded
    rows = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        rows.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    text = "\n".join(rows) + "\nalgorithms: *a8\n"
    with pytest.raises(defs.DefinitionError, match=r"unknown top-level key 'a0'"):
        defs.parse(text, "bomb.yaml")


def _attrs(**extra):
    attrs = {"algo": "x", "name": "x()", "best_search_time": 0.001, "build_time": 2.0,
             "index_size": 10.0, "bytes_per_vector": 100.0, "recall": 0.5,
             "annb_recall": 0.6, "build_args": json.dumps({"M": 4}),
             "query_args": json.dumps({"ef": 8}), "batch_mode": True, "count": 2}
    attrs.update(extra)
    return attrs


def test_write_result_round_trip(tmp_path):
    path = tmp_path / "d" / "2" / "x" / "a.hdf5"
    ids = np.array([[1, 2], [3, -1]])
    dists = np.array([[0.1, 0.2], [0.3, np.inf]])
    write_result(path, _attrs(), ids, dists, np.array([0.001, 0.001]))
    with h5py.File(path, "r") as fh:
        assert fh["neighbors"].dtype == np.int32 and fh["neighbors"].shape == (2, 2)
        assert fh["distances"][1, 1] == np.inf
        assert fh.attrs["best_search_time"] == 0.001
    assert [p.name for p in path.parent.iterdir()] == ["a.hdf5"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as for any new file


def test_write_result_is_atomic_on_failure(tmp_path):
    path = tmp_path / "r.hdf5"
    with pytest.raises(TypeError):
        write_result(path, _attrs(bad=object()), np.zeros((1, 1)), np.zeros((1, 1)),
                     np.zeros(1))
    assert list(tmp_path.iterdir()) == []


def test_pareto_front_and_qps_at():
    points = [(0.5, 100.0), (0.9, 50.0), (0.8, 40.0), (0.95, 10.0), (0.9, 20.0)]
    assert pareto_front(points) == [(0.5, 100.0), (0.9, 50.0), (0.95, 10.0)]
    lower_x = [(1.0, 1.0), (2.0, 5.0), (3.0, 4.0)]
    assert pareto_front(lower_x, x_higher=False) == [(2.0, 5.0), (1.0, 1.0)]
    results = [Result(None, _attrs(recall=r, best_search_time=1 / q))
               for r, q in points]
    assert qps_at(results, 0.9) == pytest.approx(50.0)
    assert qps_at(results, 0.95) == pytest.approx(10.0)
    assert np.isnan(qps_at(results, 0.99))
    table = summary_table(results)
    assert "| x(M=4) | 0.950 | 50 | 10 | - | 2.00 | 100 |" in table


# ---------------------------------------------------------------- runner
@register
class _Broken(Adapter):
    name = "test-broken-library"

    def _build(self, database, learn_queries):
        raise RuntimeError("boom")


def _tiny_dataset():
    from leanvec.datasets import Dataset, ground_truth

    rng = np.random.default_rng(0)
    database = rng.standard_normal((50, 4)).astype(np.float32)
    queries = rng.standard_normal((3, 4)).astype(np.float32)
    gt_ids, gt_d = ground_truth(database, queries, "cosine", k=10)
    return Dataset("t", "cosine", database, queries, gt_ids, gt_d, distance="angular")


def test_runner_reports_failures_and_unsupported_metrics_once(tmp_path):
    from bench.runner import Runner, Settings

    lines = []
    runner = Runner(_tiny_dataset(), Settings(results=tmp_path, runs=1),
                    on_skip=lines.append)
    found = runner.run([
        defs.Definition("test-broken-library", "broken", {}, ({},)),
        defs.Definition("test-euclidean-only", "l2", {}, ({}, {})),
        defs.Definition("test-euclidean-only", "l2", {}, ({},)),
        defs.Definition("leanvec-flat", "leanvec-flat", {}, ({},)),
    ])
    assert lines == [
        "skipped broken: failed: RuntimeError: boom",
        "skipped l2: metric 'cosine' not supported (supports euclidean)",
    ]
    assert [r.attrs["algo"] for r in found] == ["leanvec-flat"]
    assert found[0].attrs["recall"] == 1.0
    assert list(tmp_path.glob("t/10/*/*.hdf5"))[0].parent.name == "leanvec-flat-batch"


def test_thread_limit_restores_faiss_threads():
    faiss = pytest.importorskip("faiss")
    from bench.runner import thread_limit

    faiss.omp_set_num_threads(2)
    with thread_limit(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == 2


@pytest.mark.parametrize("content", ["junk", "attrs-only"])
def test_unreadable_or_incomplete_stored_results_are_measured_again(tmp_path, content):
    from bench.runner import Runner, Settings

    runner = Runner(_tiny_dataset(), Settings(results=tmp_path, runs=1))
    definition = defs.Definition("leanvec-flat", "leanvec-flat", {}, ({},))
    path = runner._path(definition, {})
    path.parent.mkdir(parents=True)
    if content == "junk":
        path.write_text("not hdf5")
    else:
        with h5py.File(path, "w") as fh:
            fh.attrs["algo"] = "leanvec-flat"
    found = runner.run([definition])
    assert len(found) == 1 and found[0].attrs["recall"] == 1.0
    assert runner.run([definition])[0].attrs["best_search_time"] == \
        found[0].attrs["best_search_time"]
