"""leanvec-bench end to end on a tiny dataset: run, files, table, plot, errors."""

import h5py
import numpy as np
import pytest

pytest.importorskip("yaml")

from bench.cli import main  # noqa: E402
from leanvec import datasets  # noqa: E402
from leanvec.datasets import Dataset, ground_truth, write_hdf5  # noqa: E402

ANNB_ATTRS = ("algo", "name", "dataset", "count", "distance", "batch_mode",
              "best_search_time", "build_time", "index_size", "run_count",
              "candidates", "expect_extra")

DEFINITIONS = """\
algorithms:
  - algorithm: leanvec-flat
  - algorithm: hnswlib
    build: {M: 8, ef_construction: 40}
    query: {ef: [10, 40]}
  - algorithm: test-not-here
"""


@pytest.fixture
def tiny(tmp_path):
    """A 300 x 16 cosine dataset (unnormalised rows) as an ann-benchmarks file."""
    rng = np.random.default_rng(7)
    database = (rng.standard_normal((300, 16)) * rng.uniform(0.5, 3, (300, 1)))
    queries = rng.standard_normal((12, 16))
    gt_ids, gt_d = ground_truth(database.astype(np.float32),
                                queries.astype(np.float32), "cosine", k=20)
    data = Dataset("tiny-16-angular", "cosine", database.astype(np.float32),
                   queries.astype(np.float32), gt_ids, gt_d, distance="angular")
    return write_hdf5(tmp_path / "tiny-16-angular.hdf5", data)


@pytest.fixture
def definitions(tmp_path):
    from bench.adapters import REGISTRY, Adapter, register

    if "test-not-here" not in REGISTRY:
        register(type("NotHere", (Adapter,), {"name": "test-not-here",
                                              "requires": ("no_such_module_xyz",)}))
    path = tmp_path / "defs.yaml"
    path.write_text(DEFINITIONS)
    return path


def _run(tiny, definitions, results, *extra):
    return main(["run", "--dataset", str(tiny), "--definitions", str(definitions),
                 "--results", str(results), "--runs", "1", *extra])


def test_run_writes_ann_benchmarks_files_and_reports(tiny, definitions, tmp_path,
                                                     capsys):
    results = tmp_path / "results"
    assert _run(tiny, definitions, results) == 0
    out, err = capsys.readouterr()
    assert "skipped test-not-here: not installed" in err
    assert "| leanvec-flat | - | 1.000 | 1.000 |" in out

    files = sorted(results.glob("tiny-16-angular/10/*/*.hdf5"))
    folders = {f.parent.name for f in files}
    assert "leanvec-flat-batch" in folders
    data = datasets.load(tiny)
    for path in files:
        with h5py.File(path, "r") as fh:
            assert set(ANNB_ATTRS) <= set(fh.attrs)
            assert fh.attrs["distance"] == "angular" and fh.attrs["count"] == 10
            ids = fh["neighbors"][()]
            assert ids.shape == (12, 10) and fh["times"].shape == (12,)
            # distances are recomputed from the vectors, as ann-benchmarks does
            q = data.queries.astype(np.float64)
            x = data.database[ids].astype(np.float64)
            cos = np.einsum("qkd,qd->qk", x, q) / (
                np.linalg.norm(x, axis=2) * np.linalg.norm(q, axis=1)[:, None])
            np.testing.assert_allclose(fh["distances"][()], 1 - cos, atol=1e-6)


def test_run_single_mode_table_and_plot(tiny, definitions, tmp_path, capsys):
    results = tmp_path / "results"
    assert _run(tiny, definitions, results, "--single", "--algorithm",
                "leanvec-flat") == 0
    assert (results / "tiny-16-angular/10/leanvec-flat").is_dir()
    capsys.readouterr()

    assert main(["table", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "### tiny-16-angular (k=10)" in out
    assert "| leanvec-flat | 1.000 |" in out

    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"
    assert main(["plot", "--results", str(results), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_results_are_reused_unless_forced(tiny, definitions, tmp_path):
    results = tmp_path / "results"
    args = ("--algorithm", "leanvec-flat")
    assert _run(tiny, definitions, results, *args) == 0
    path = next(results.glob("tiny-16-angular/10/leanvec-flat-batch/*.hdf5"))
    first = path.stat().st_mtime_ns
    assert _run(tiny, definitions, results, *args) == 0
    assert path.stat().st_mtime_ns == first
    assert _run(tiny, definitions, results, *args, "--force") == 0
    assert path.stat().st_mtime_ns != first


def _error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err.strip()
    return status, err


def test_unknown_dataset_lists_the_catalog(capsys, tmp_path):
    status, err = _error(capsys, ["run", "--dataset", "glove-26-angular",
                                  "--results", str(tmp_path)])
    assert status == 2 and "unknown dataset 'glove-26-angular'" in err
    assert "glove-25-angular" in err and len(err.splitlines()) == 1


def test_unknown_algorithm_lists_the_valid_ones(capsys, tiny, definitions, tmp_path):
    status, err = _error(capsys, ["run", "--dataset", str(tiny), "--definitions",
                                  str(definitions), "--algorithm", "hnsw",
                                  "--results", str(tmp_path)])
    assert status == 2 and "unknown algorithm 'hnsw'" in err and "hnswlib" in err


def test_definitions_typo_names_key_and_line(capsys, tiny, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithms:\n  - algorithm: hnswlib\n    bulid: {M: 8}\n")
    status, err = _error(capsys, ["run", "--dataset", str(tiny), "--definitions",
                                  str(bad), "--results", str(tmp_path)])
    assert status == 2
    assert f"{bad}, line 3: algorithms[0]: unknown key 'bulid'" in err


def test_hdf5_not_in_the_layout(capsys, tmp_path):
    path = tmp_path / "foreign.hdf5"
    with h5py.File(path, "w") as fh:
        fh.attrs["distance"] = "angular"
        fh.create_dataset("train", data=np.zeros((4, 2), np.float32))
    status, err = _error(capsys, ["run", "--dataset", str(path),
                                  "--results", str(tmp_path)])
    assert status == 2 and "missing field 'test'" in err


def test_results_folder_not_writable(capsys, tiny, definitions, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, err = _error(capsys, ["run", "--dataset", str(tiny), "--definitions",
                                  str(definitions), "--results", str(blocker / "r")])
    assert status == 2 and "is not writable" in err
    assert not (tmp_path / "tiny-16-angular").exists()


def test_k_larger_than_the_ground_truth(capsys, tiny, definitions, tmp_path):
    status, err = _error(capsys, ["run", "--dataset", str(tiny), "-k", "50",
                                  "--definitions", str(definitions),
                                  "--results", str(tmp_path)])
    assert status == 2 and "-k 50 exceeds the 20 true neighbours" in err


def test_reports_without_results(capsys, tmp_path):
    for command in ("table", "plot"):
        status, err = _error(capsys, [command, "--results", str(tmp_path)])
        assert status == 2 and "no result files under" in err


def test_bad_flag_value_exits_2(capsys):
    status, err = _error(capsys, ["run", "--threads", "0"])
    assert status == 2 and "expected a positive integer, got 0" in err


def test_datasets_and_algorithms_listings(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "| glove-25-angular | angular | 25 |" in out and "cache folder" in out
    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    assert "leanvec-flat" in out and "faiss-flat" in out
