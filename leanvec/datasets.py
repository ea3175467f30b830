"""Datasets in the ann-benchmarks HDF5 layout: catalog, load, save, download, make.

The layout: ``train`` (the database), ``test`` (the queries), ``neighbors`` and
``distances`` (exact top-k of each query, best first), attributes ``distance``
("angular", "euclidean", ...) and ``point_type``; leanvec also reads the optional
``learn_queries`` (queries for fitting query-aware models, never for evaluation).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray

from .persistence import publish

from ._validation import check_positive_int, max_abs

logger = logging.getLogger(__name__)

CACHE_ENV = "LEANVEC_DATA"
DEFAULT_DATASET = "wordnet-minilm-384-angular-ood-10k"
# ann-benchmarks distance names -> leanvec metric names
_FILE_METRICS = {"angular": "cosine", "euclidean": "euclidean", "ip": "inner_product",
                 "inner_product": "inner_product", "cosine": "cosine",
                 "sqeuclidean": "sqeuclidean"}
_METRIC_FILE_NAMES = {"cosine": "angular", "euclidean": "euclidean",
                      "inner_product": "ip", "sqeuclidean": "euclidean"}


@dataclasses.dataclass
class Dataset:
    """A database, its queries and their exact neighbours."""

    name: str
    metric: str
    database: NDArray[np.float32]
    queries: NDArray[np.float32]
    gt_ids: NDArray[np.int64]
    gt_distances: NDArray[np.float32]
    learn_queries: NDArray[np.float32] | None = None
    distance: str = ""
    path: Path | None = None
    attrs: dict = dataclasses.field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.database.shape[1])

    def __repr__(self) -> str:
        learn = 0 if self.learn_queries is None else len(self.learn_queries)
        return (f"Dataset({self.name!r}, metric={self.metric!r}, "
                f"database={self.database.shape}, queries={self.queries.shape}, "
                f"learn_queries={learn}, gt k={self.gt_ids.shape[1]})")


# ---------------------------------------------------------------- the catalog
def _data_dir() -> Path:
    """Folder holding the catalog and the embedded dataset (installed or source)."""
    try:
        # datasets/ is a namespace package once installed: join before converting
        catalog_file = Path(str(resources.files("leanvec._datasets") / "catalog.json"))
        if catalog_file.is_file():
            return catalog_file.parent
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "datasets"


def catalog() -> dict[str, dict]:
    """Return the dataset catalog: name -> {metric, dim, source, url or file, ...}."""
    with open(_data_dir() / "catalog.json", encoding="utf-8") as fh:
        return json.load(fh)["datasets"]


def cache_dir() -> Path:
    """Folder for downloaded datasets: ``$LEANVEC_DATA`` or ``~/.cache/leanvec``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "leanvec"


def locate(name: str) -> Path | None:
    """Return the local path of a catalog dataset, or None when not present."""
    entry = catalog()[name]
    if entry.get("embedded"):
        return _data_dir() / entry["file"]
    candidate = cache_dir() / entry["file"]
    return candidate if candidate.is_file() else None


# ---------------------------------------------------------------- reading
def load(name_or_path: str | os.PathLike, download: bool = True) -> Dataset:
    """Load a dataset by catalog name or by path to an ann-benchmarks HDF5 file.

    Catalog datasets with a URL are downloaded into :func:`cache_dir` on first use
    (``download=False`` raises instead). Raises ``ValueError`` for an unknown name
    (listing the valid ones) or a file not in the layout (naming the field).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError("name_or_path must be a catalog name or a path, got "
                        f"{type(name_or_path).__name__}")
    path = Path(os.fspath(name_or_path))
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass the path of an .hdf5 file in it")
    if path.suffix in (".hdf5", ".h5") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no dataset file at {path}")
        return read_hdf5(path)
    name = os.fspath(name_or_path)
    entries = catalog()
    if name not in entries:
        raise ValueError(f"unknown dataset {name!r}; the catalog has: "
                         + ", ".join(sorted(entries)) + " (or pass a path to an .hdf5 file)")
    found = locate(name)
    if found is None:
        entry = entries[name]
        if "url" not in entry:
            raise FileNotFoundError(
                f"dataset {name!r} is not downloadable; put {entry['file']} in "
                f"{cache_dir()} (set {CACHE_ENV} to change the folder). {entry.get('source', '')}")
        if not download:
            raise FileNotFoundError(f"dataset {name!r} is not cached in {cache_dir()}")
        found = fetch(name)
    return read_hdf5(found, name=name)


def _read_field(fh: h5py.File, field: str, path: Path, kinds: str) -> np.ndarray:
    if field not in fh:
        raise ValueError(f"{path}: missing field {field!r} (ann-benchmarks layout needs "
                         "train, test, neighbors, distances)")
    node = fh[field]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{path}: field {field!r} is a group, expected an array")
    arr = node[()]
    if arr.ndim != 2:
        raise ValueError(f"{path}: field {field!r} must be 2-d, has shape {arr.shape}")
    if arr.dtype.kind not in kinds:
        raise ValueError(f"{path}: field {field!r} has dtype {arr.dtype}, "
                         f"expected {'integers' if kinds == 'iu' else 'floats'}")
    if arr.shape[1] == 0 or (field == "train" and arr.shape[0] == 0):
        raise ValueError(f"{path}: field {field!r} is empty, has shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{path}: field {field!r} holds NaN or infinity (row {row})")
    if kinds != "iu" and arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        big = np.abs(arr) > np.finfo(np.float32).max
        if big.any():
            row = int(np.flatnonzero(big.any(axis=1))[0])
            raise ValueError(f"{path}: field {field!r} holds values beyond the float32 "
                             f"range (3.4e38), first at row {row}")
    return arr


def _attr(fh: h5py.File, key: str, default: str = "") -> str:
    try:
        value = fh.attrs.get(key, default)
    except (TypeError, OSError) as exc:  # an attribute h5py cannot convert
        return f"<unreadable: {exc}>"
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_hdf5(path: str | os.PathLike, name: str | None = None) -> Dataset:
    """Read and check an ann-benchmarks HDF5 file (see the module docstring)."""
    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file (truncated or foreign?): "
                         f"{exc}") from None
    with fh:
        distance = _attr(fh, "distance")
        if distance not in _FILE_METRICS:
            hint = (" (sparse set datasets are not supported)"
                    if distance in ("jaccard", "hamming") else "")
            raise ValueError(f"{path}: attribute 'distance' is {distance!r}, expected one "
                             f"of {sorted(_FILE_METRICS)}{hint}")
        database = _read_field(fh, "train", path, "fiu")
        queries = _read_field(fh, "test", path, "fiu")
        gt_ids = _read_field(fh, "neighbors", path, "iu")
        gt_distances = _read_field(fh, "distances", path, "f")
        learn = _read_field(fh, "learn_queries", path, "fiu") if "learn_queries" in fh else None
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in fh.attrs.items()}

    dim = database.shape[1]
    for field, arr in (("test", queries), ("learn_queries", learn)):
        if arr is not None and arr.shape[1] != dim:
            raise ValueError(f"{path}: field {field!r} has {arr.shape[1]} columns, "
                             f"but train has {dim}")
    if gt_ids.shape[0] != queries.shape[0]:
        raise ValueError(f"{path}: field 'neighbors' has {gt_ids.shape[0]} rows, but "
                         f"test has {queries.shape[0]}")
    if gt_distances.shape != gt_ids.shape:
        raise ValueError(f"{path}: field 'distances' has shape {gt_distances.shape}, "
                         f"but neighbors has {gt_ids.shape}")
    if gt_ids.size and (gt_ids.min() < -1 or gt_ids.max() >= database.shape[0]):
        raise ValueError(f"{path}: field 'neighbors' holds ids outside [0, "
                         f"{database.shape[0]})")
    return Dataset(
        name=name or path.stem, metric=_FILE_METRICS[distance],
        database=np.ascontiguousarray(database, dtype=np.float32),
        queries=np.ascontiguousarray(queries, dtype=np.float32),
        gt_ids=gt_ids.astype(np.int64), gt_distances=gt_distances.astype(np.float32),
        learn_queries=None if learn is None else np.ascontiguousarray(learn, np.float32),
        distance=distance, path=path, attrs=attrs,
    )


# ---------------------------------------------------------------- writing
def write_hdf5(path: str | os.PathLike, dataset: Dataset, compress: bool = False,
               store_dtype: str = "float32") -> Path:
    """Write ``dataset`` in the ann-benchmarks layout, atomically (temp file, rename).

    ``store_dtype`` is the float type of the vectors on disk ("float16", "float32"
    or "float64"); ``ValueError`` is raised, before anything is written, when a
    vector value does not fit it.
    """
    path = Path(path)
    store = _check_store_dtype(store_dtype, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"compression": "gzip", "compression_opts": 9, "shuffle": True} if compress else {}
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("train", data=dataset.database.astype(store), **opts)
            fh.create_dataset("test", data=dataset.queries.astype(store), **opts)
            if dataset.learn_queries is not None:
                fh.create_dataset("learn_queries",
                                  data=dataset.learn_queries.astype(store), **opts)
            fh.create_dataset("neighbors", data=dataset.gt_ids.astype(np.int32), **opts)
            fh.create_dataset("distances", data=dataset.gt_distances.astype(np.float32),
                              **opts)
            for key, value in dataset.attrs.items():
                fh.attrs[key] = value
            fh.attrs["distance"] = dataset.distance or _METRIC_FILE_NAMES[dataset.metric]
            fh.attrs["point_type"] = "float"
            fh.attrs["dimension"] = dataset.dim
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _check_store_dtype(store_dtype: object, dataset: Dataset) -> np.dtype:
    """The on-disk float dtype, checked to hold every vector value of ``dataset``."""
    try:
        store = np.dtype(store_dtype)
    except TypeError:
        store = None
    if store is None or store.kind != "f" or store.itemsize > 8:
        raise ValueError("store_dtype must be 'float16', 'float32' or 'float64', got "
                         f"{store_dtype!r}")
    limit = float(np.finfo(store).max)
    for field, arr in (("database", dataset.database), ("queries", dataset.queries),
                       ("learn_queries", dataset.learn_queries)):
        if arr is not None and arr.size and max_abs(arr) > limit:
            raise ValueError(f"dataset.{field} holds values beyond the {store} range "
                             f"({limit:.4g}); choose a wider store_dtype")
    return store


def ground_truth(database: NDArray, queries: NDArray, metric: str, k: int = 100,
                 ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-``k`` ids and distances in the file's units (1 - cos for cosine)."""
    from .exact import exact_search

    result = exact_search(database, queries, min(k, len(database)), metric)
    return result.ids, result.distances


# ---------------------------------------------------------------- downloading
def fetch(name: str, progress: Callable[[int, int], None] | None = None) -> Path:
    """Download catalog dataset ``name`` into :func:`cache_dir` and return its path.

    ``progress(done_bytes, total_bytes)`` is called as data arrives; by default a
    tqdm bar is drawn when tqdm is installed. The file is written under a temporary
    name and renamed once complete and readable.
    """
    entry = catalog()[name]
    target = cache_dir() / entry["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    bar = _progress_bar(name) if progress is None else None
    try:
        with urllib.request.urlopen(entry["url"], timeout=60) as response, \
                open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                (progress or bar)(done, total)
        if total and done != total:
            raise OSError(f"download of {name} truncated: {done} of {total} bytes")
        read_hdf5(tmp, name=name)
        publish(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        raise ConnectionError(f"could not download dataset {name!r} from {entry['url']}: "
                              f"{exc}. Are you offline? Put the file at {target} by hand "
                              "or set LEANVEC_DATA.") from None
    finally:
        if tmp.exists():
            tmp.unlink()
        if bar is not None:
            bar(-1, -1)
    return target


def _progress_bar(name: str) -> Callable[[int, int], None]:
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda done, total: None
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if done < 0:
            if bar is not None:
                bar.close()
            return
        if bar is None:
            bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=name)
        bar.update(done - bar.n)

    return update


# ---------------------------------------------------------------- synthetic
def _check_sizes(**sizes: object) -> None:
    for name, value in sizes.items():
        check_positive_int(value, name)


def make_cross_modal(n: int = 100_000, n_queries: int = 1_000,
                     n_learn_queries: int = 10_000, dim: int = 768,
                     intrinsic_dim: int = 96, k: int = 100, seed: int = 0) -> Dataset:
    """A seeded synthetic cross-modal set (angular): queries differ in distribution.

    Database vectors are ``z U + noise`` with latent ``z`` of ``intrinsic_dim``
    coordinates whose variances decay as 1/i, mapped by a random orthonormal basis
    ``U``. Queries share the latent space but re-weight it (variances rising where the
    database's fall, as short text queries stress other directions than images do),
    are shifted by a common offset, and pass through a partly different basis, so a
    projection fitted on the database alone misses directions the queries use.
    """
    _check_sizes(n=n, n_queries=n_queries, dim=dim, intrinsic_dim=intrinsic_dim, k=k)
    check_positive_int(n_learn_queries, "n_learn_queries", minimum=0)
    if 2 * intrinsic_dim > dim:
        raise ValueError(f"intrinsic_dim must be at most dim / 2 = {dim // 2} (the "
                         f"queries use a second basis), got {intrinsic_dim}")
    rng = np.random.default_rng(seed)
    r = intrinsic_dim
    basis = np.linalg.qr(rng.standard_normal((dim, 2 * r)))[0].T  # (2r, dim) orthonormal
    shared, query_only = basis[:r], basis[r:]
    idx = np.arange(1, r + 1)
    base_scale = 1.0 / np.sqrt(idx)
    query_scale = 1.0 / np.sqrt(idx[::-1] * 0.5 + 0.5 * idx)
    shift = rng.standard_normal(r) * 0.5 * base_scale

    def database_rows(m: int) -> NDArray[np.float32]:
        z = rng.standard_normal((m, r)) * base_scale
        noise = rng.standard_normal((m, dim)) * 0.05
        return (z @ shared + noise).astype(np.float32)

    def query_rows(m: int) -> NDArray[np.float32]:
        z = rng.standard_normal((m, r)) * query_scale + shift
        own = rng.standard_normal((m, r)) * 0.3 * query_scale
        noise = rng.standard_normal((m, dim)) * 0.05
        return (z @ shared + own @ query_only + noise).astype(np.float32)

    database = database_rows(n)
    queries = query_rows(n_queries)
    learn = query_rows(n_learn_queries)
    gt_ids, gt_d = ground_truth(database, queries, "cosine", k)
    return Dataset(name=f"synthetic-cross-modal-{dim}-angular", metric="cosine",
                   database=database, queries=queries, gt_ids=gt_ids,
                   gt_distances=gt_d, learn_queries=learn, distance="angular",
                   attrs={"generator": "leanvec.datasets.make_cross_modal",
                          "seed": seed, "intrinsic_dim": r})
