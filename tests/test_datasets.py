"""Dataset I/O: the ann-benchmarks layout, the catalog, downloads, bad files."""

import h5py
import numpy as np
import pytest

from leanvec import datasets
from leanvec.datasets import Dataset, load, read_hdf5, write_hdf5


def _write_raw(path, **fields):
    attrs = fields.pop("attrs", {"distance": "euclidean", "point_type": "float"})
    with h5py.File(path, "w") as fh:
        for name, value in fields.items():
            fh.create_dataset(name, data=value)
        for key, value in attrs.items():
            fh.attrs[key] = value
    return path


@pytest.fixture
def small(rng):
    database = rng.standard_normal((50, 6)).astype(np.float32)
    queries = rng.standard_normal((4, 6)).astype(np.float32)
    ids, dist = datasets.ground_truth(database, queries, "euclidean", 10)
    return dict(train=database, test=queries, neighbors=ids.astype(np.int32),
                distances=dist)


def test_embedded_default_loads_with_exact_ground_truth():
    data = load(datasets.DEFAULT_DATASET)
    assert data.database.shape == (10_000, 384) and data.queries.shape == (500, 384)
    assert data.learn_queries.shape == (1_000, 384) and data.metric == "cosine"
    assert data.gt_ids.dtype == np.int64 and data.gt_ids.shape == (500, 100)
    check = datasets.ground_truth(data.database, data.queries[:50], "cosine", 10)
    assert (check[0] == data.gt_ids[:50, :10]).mean() > 0.99
    np.testing.assert_allclose(check[1], data.gt_distances[:50, :10], atol=2e-6)


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dist_dtype", [np.float32, np.float64])
def test_both_generations_of_dtypes(tmp_path, small, id_dtype, dist_dtype):
    small["neighbors"] = small["neighbors"].astype(id_dtype)
    small["distances"] = small["distances"].astype(dist_dtype)
    data = load(_write_raw(tmp_path / "x.hdf5", **small))
    assert data.gt_ids.dtype == np.int64 and data.gt_distances.dtype == np.float32
    assert data.learn_queries is None and data.metric == "euclidean"
    np.testing.assert_array_equal(data.gt_ids, small["neighbors"])


def test_write_then_read_round_trip(tmp_path, small):
    original = Dataset(name="x", metric="euclidean", database=small["train"],
                       queries=small["test"], gt_ids=small["neighbors"].astype(np.int64),
                       gt_distances=small["distances"], learn_queries=small["test"][:2])
    path = write_hdf5(tmp_path / "sub" / "x.hdf5", original)
    back = read_hdf5(path)
    np.testing.assert_array_equal(back.database, original.database)
    np.testing.assert_array_equal(back.learn_queries, original.learn_queries)
    np.testing.assert_array_equal(back.gt_ids, original.gt_ids)
    with h5py.File(path) as fh:
        assert fh.attrs["distance"] == "euclidean" and fh.attrs["point_type"] == "float"
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary left


@pytest.mark.parametrize("field", ["train", "test", "neighbors", "distances"])
def test_missing_field_is_named(tmp_path, small, field):
    del small[field]
    path = _write_raw(tmp_path / "x.hdf5", **small)
    with pytest.raises(ValueError, match=f"x.hdf5: missing field '{field}'"):
        load(path)


def test_wrong_shapes_are_named(tmp_path, small):
    bad = dict(small, test=small["test"][:, :5])
    with pytest.raises(ValueError, match="'test' has 5 columns, but train has 6"):
        load(_write_raw(tmp_path / "a.hdf5", **bad))
    bad = dict(small, distances=small["distances"][:, :3])
    with pytest.raises(ValueError, match="'distances' has shape"):
        load(_write_raw(tmp_path / "b.hdf5", **bad))
    bad = dict(small, neighbors=small["neighbors"] + 1000)
    with pytest.raises(ValueError, match="ids outside"):
        load(_write_raw(tmp_path / "c.hdf5", **bad))


def test_non_finite_values_are_named(tmp_path, small):
    small["train"][7, 2] = np.nan
    with pytest.raises(ValueError, match=r"'train' holds NaN or infinity \(row 7\)"):
        load(_write_raw(tmp_path / "x.hdf5", **small))


def test_unknown_distance_and_sparse_sets(tmp_path, small):
    small["attrs"] = {"distance": "jaccard", "point_type": "bit"}
    with pytest.raises(ValueError, match="sparse set datasets are not supported"):
        load(_write_raw(tmp_path / "x.hdf5", **small))


def test_truncated_and_foreign_files(tmp_path, small):
    path = _write_raw(tmp_path / "x.hdf5", **small)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        load(path)
    foreign = tmp_path / "y.hdf5"
    foreign.write_text("name,value\n1,2\n")
    with pytest.raises(ValueError, match="y.hdf5: not a readable HDF5"):
        load(foreign)


def test_unknown_name_lists_the_catalog():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*glove-25-angular"):
        load("nope")
    with pytest.raises(FileNotFoundError):
        load("missing.hdf5")


def test_catalog_entries_are_complete():
    for name, entry in datasets.catalog().items():
        assert entry["metric"] in ("angular", "euclidean") and entry["dim"] > 0, name
        assert entry["file"].endswith(".hdf5") and entry["source"], name


def _fake_entry(monkeypatch, url):
    entries = dict(datasets.catalog())
    entries["fake"] = {"metric": "euclidean", "dim": 6, "file": "fake.hdf5",
                       "url": url, "source": "test"}
    monkeypatch.setattr(datasets, "catalog", lambda: entries)


def test_download_into_cache_folder(tmp_path, small, monkeypatch):
    source = _write_raw(tmp_path / "src.hdf5", **small)
    monkeypatch.setenv("LEANVEC_DATA", str(tmp_path / "cache"))
    _fake_entry(monkeypatch, source.as_uri())
    seen = []
    path = datasets.fetch("fake", progress=lambda done, total: seen.append(done))
    assert path == tmp_path / "cache" / "fake.hdf5" and seen[-1] == source.stat().st_size
    assert load("fake").database.shape == (50, 6)


def test_truncated_download_is_not_kept(tmp_path, small, monkeypatch):
    source = _write_raw(tmp_path / "src.hdf5", **small)
    source.write_bytes(source.read_bytes()[:3000])
    monkeypatch.setenv("LEANVEC_DATA", str(tmp_path / "cache"))
    _fake_entry(monkeypatch, source.as_uri())
    with pytest.raises(ConnectionError, match="could not download dataset 'fake'"):
        load("fake")
    assert not any((tmp_path / "cache").iterdir())


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANVEC_DATA", str(tmp_path))
    _fake_entry(monkeypatch, "http://127.0.0.1:9/fake.hdf5")
    with pytest.raises(ConnectionError, match="Are you offline"):
        load("fake")
    with pytest.raises(FileNotFoundError, match="not cached"):
        load("fake", download=False)


def test_local_only_catalog_entry_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANVEC_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not downloadable"):
        load("wordnet-minilm-384-angular-id")


def test_synthetic_cross_modal_is_seeded():
    a = datasets.make_cross_modal(n=500, n_queries=5, n_learn_queries=20, dim=32,
                                  intrinsic_dim=8, k=10, seed=3)
    b = datasets.make_cross_modal(n=500, n_queries=5, n_learn_queries=20, dim=32,
                                  intrinsic_dim=8, k=10, seed=3)
    np.testing.assert_array_equal(a.database, b.database)
    assert a.gt_ids.shape == (5, 10) and a.learn_queries.shape == (20, 32)
    # the queries' distribution differs from the database's
    shift = np.linalg.norm(a.learn_queries.mean(0) - a.database.mean(0))
    assert shift > 0.1 * np.linalg.norm(a.database, axis=1).mean()


def test_values_beyond_float32_are_refused_not_turned_into_inf(tmp_path, small):
    small["train"] = small["train"].astype(np.float64)
    small["train"][7, 2] = 1e39
    path = _write_raw(tmp_path / "big.hdf5", **small)
    with pytest.raises(ValueError, match="'train' holds values beyond the float32 range"
                       r" \(3.4e38\), first at row 7"):
        read_hdf5(path)


@pytest.mark.parametrize("field, shape", [("train", (0, 6)), ("train", (50, 0))])
def test_empty_database_is_named(tmp_path, small, field, shape):
    small[field] = np.zeros(shape, np.float32)
    if shape[1] == 0:
        small["test"] = np.zeros((4, 0), np.float32)
    path = _write_raw(tmp_path / "empty.hdf5", **small)
    with pytest.raises(ValueError, match=f"field 'train' is empty, has shape "
                       rf"\({shape[0]}, {shape[1]}\)"):
        read_hdf5(path)


def test_load_of_a_folder_or_a_non_path(tmp_path):
    with pytest.raises(ValueError, match="is a folder; pass the path of an .hdf5 file"):
        load(tmp_path)
    with pytest.raises(TypeError, match="must be a catalog name or a path, got int"):
        load(5)


def test_write_refuses_lossy_store_dtypes(tmp_path, small):
    data = read_hdf5(_write_raw(tmp_path / "ok.hdf5", **small))
    with pytest.raises(ValueError, match="store_dtype must be 'float16', 'float32' or "
                       "'float64', got 'int8'"):
        write_hdf5(tmp_path / "int.hdf5", data, store_dtype="int8")
    data.database[3, 1] = 1e5
    with pytest.raises(ValueError, match="database holds values beyond the float16"):
        write_hdf5(tmp_path / "half.hdf5", data, store_dtype="float16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.hdf5"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"intrinsic_dim": 8}, ValueError, "intrinsic_dim must be at most dim / 2 = 4"),
    ({"n_queries": -1}, ValueError, "n_queries must be >= 1, got -1"),
    ({"n_learn_queries": -1}, ValueError, "n_learn_queries must be >= 0, got -1"),
    ({"n": 10.5}, TypeError, "n must be an integer, got 10.5"),
])
def test_synthetic_sizes_are_checked(kwargs, error, match):
    args = {"n": 10, "n_queries": 2, "n_learn_queries": 2, "dim": 8,
            "intrinsic_dim": 4, "k": 3}
    with pytest.raises(error, match=match):
        datasets.make_cross_modal(**{**args, **kwargs})
