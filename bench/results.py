"""Result files in the ann-benchmarks layout, the metrics read from them, and tables.

One HDF5 file per measured (index, query arguments) pair, at
``<results>/<dataset>/<k>/<name>[-batch]/<arguments>.hdf5``, holding the datasets
``times`` (n_queries,), ``neighbors`` (n_queries, k) and ``distances``
(n_queries, k) and the attributes ann-benchmarks writes (``algo``, ``name``,
``dataset``, ``count``, ``distance``, ``batch_mode``, ``best_search_time``,
``build_time``, ``index_size`` in kB, ``run_count``, ``candidates``,
``expect_extra``) plus leanvec's own (``recall``, ``annb_recall``,
``bytes_per_vector``, ``n_threads``, ``build_args``, ``query_args``, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from leanvec.persistence import publish

RECALL_LEVELS = (0.9, 0.95, 0.99)


# ---------------------------------------------------------------- distances
def true_distances(database: NDArray, queries: NDArray, ids: NDArray,
                   metric: str) -> NDArray[np.float32]:
    """Distances of the returned ``ids`` recomputed in float64 from the vectors.

    Parameters
    ----------
    database : array of shape (n, dim)
    queries : array of shape (n_queries, dim)
    ids : array of shape (n_queries, k), integer; -1 marks a missing result
    metric : {"cosine", "euclidean", "sqeuclidean", "inner_product"}
        Units as in the dataset files: 1 - cos (a zero vector has cos 0), L2,
        squared L2, or the negated inner product.

    Returns
    -------
    array of shape (n_queries, k), float32, +inf where ``ids`` is -1
    """
    ids = np.asarray(ids, dtype=np.int64)
    valid = ids >= 0
    base = np.asarray(database, dtype=np.float64)[np.where(valid, ids, 0)]
    q = np.asarray(queries, dtype=np.float64)[:, None, :]
    if metric == "cosine":
        norms = np.linalg.norm(base, axis=2) * np.linalg.norm(q, axis=2)
        dots = np.einsum("qkd,qkd->qk", base, np.broadcast_to(q, base.shape))
        out = 1.0 - np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    elif metric == "inner_product":
        out = -np.einsum("qkd,qkd->qk", base, np.broadcast_to(q, base.shape))
    else:
        out = ((base - q) ** 2).sum(axis=2)
        if metric == "euclidean":
            out = np.sqrt(out)
    return np.where(valid, out, np.inf).astype(np.float32)


# ---------------------------------------------------------------- writing
def result_path(results: str | os.PathLike, dataset: str, k: int, name: str,
                batch: bool, build_args: Mapping[str, Any],
                query_args: Mapping[str, Any]) -> Path:
    """Where the result of one measurement lives (the ann-benchmarks layout).

    The file name spells the arguments (``M_16_ef_40``). When that spelling could
    stand for other arguments too (negative or fractional numbers, booleans,
    strings with punctuation or that read as numbers), a digest of the exact
    arguments is appended, so distinct arguments never share a result file.
    """
    arguments = json.dumps([dict(build_args), dict(query_args)], sort_keys=True)
    stem = re.sub(r"\W+", "_", arguments).strip("_") or "default"
    values = [*dict(build_args).values(), *dict(query_args).values()]
    if not all(_spelled_exactly(v) for v in values):
        stem += "_" + hashlib.sha256(arguments.encode("utf-8")).hexdigest()[:10]
    folder = Path(results) / dataset / str(k) / (name + ("-batch" if batch else ""))
    return folder / f"{stem}.hdf5"


def _spelled_exactly(value: Any) -> bool:
    """True when ``value`` survives the file-name spelling without ambiguity."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return (isinstance(value, str) and value not in ("true", "false", "null")
            and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", value) is not None)


def write_result(path: str | os.PathLike, attrs: Mapping[str, Any], ids: NDArray,
                 distances: NDArray, times: NDArray) -> Path:
    """Write one result file atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as fh:
            for key, value in attrs.items():
                fh.attrs[key] = "" if value is None else value
            fh.create_dataset("times", data=np.asarray(times, dtype=np.float32))
            fh.create_dataset("neighbors", data=np.asarray(ids, dtype=np.int32))
            fh.create_dataset("distances", data=np.asarray(distances, dtype=np.float32))
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------- reading
@dataclasses.dataclass
class Result:
    """One result file: its attributes and the derived figures."""

    path: Path
    attrs: dict[str, Any]

    @property
    def algo(self) -> str:
        return str(self.attrs.get("algo", ""))

    @property
    def build_label(self) -> str:
        """The index the point belongs to: name plus build arguments."""
        args = json.loads(self.attrs.get("build_args", "{}") or "{}")
        inner = ", ".join(f"{k}={v}" for k, v in args.items())
        return f"{self.algo}({inner})" if inner else self.algo

    @property
    def query_label(self) -> str:
        args = json.loads(self.attrs.get("query_args", "{}") or "{}")
        return ", ".join(f"{k}={v}" for k, v in args.items())

    @property
    def qps(self) -> float:
        best = float(self.attrs["best_search_time"])
        return 1.0 / best if best > 0 else float("inf")

    def metric(self, name: str) -> float:
        """A figure by axis name (see :data:`AXES`)."""
        return float(AXES[name][1](self))


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def read_result(path: str | os.PathLike, arrays: bool = False) -> Result | tuple:
    """Read a result file's attributes; with ``arrays`` also (ids, distances, times)."""
    with h5py.File(path, "r") as fh:
        attrs = {key: _attr_value(value) for key, value in fh.attrs.items()}
        result = Result(Path(path), attrs)
        if not arrays:
            return result
        return (result, fh["neighbors"][()], fh["distances"][()], fh["times"][()])


def iter_results(results: str | os.PathLike, dataset: str | None = None,
                 k: int | None = None) -> Iterator[Result]:
    """Every result file under ``results`` (optionally one dataset and one k)."""
    root = Path(results)
    pattern = f"{dataset or '*'}/{k or '*'}/*/*.hdf5"
    for path in sorted(root.glob(pattern)):
        try:
            result = read_result(path)
        except OSError:
            continue
        if "best_search_time" in result.attrs:
            yield result


def datasets_in(results: str | os.PathLike) -> list[str]:
    """Names of the dataset folders holding results."""
    root = Path(results)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


# ---------------------------------------------------------------- figures
AXES: dict[str, tuple[str, Any, bool]] = {
    # name: (label, getter, higher is better)
    "recall": ("recall@k (id overlap)", lambda r: r.attrs["recall"], True),
    "annb-recall": ("recall@k (ann-benchmarks, distance threshold)",
                    lambda r: r.attrs["annb_recall"], True),
    "qps": ("queries per second", lambda r: r.qps, True),
    "build": ("build seconds", lambda r: r.attrs["build_time"], False),
    "index-size": ("index size (kB)", lambda r: r.attrs["index_size"], False),
    "bytes-per-vector": ("bytes per vector", lambda r: r.attrs["bytes_per_vector"],
                         False),
}


def pareto_front(points: Sequence[tuple[float, float]], x_higher: bool = True,
                 y_higher: bool = True) -> list[tuple[float, float]]:
    """Points not beaten on both axes, ordered along x from worst to best.

    A point is dropped when another is at least as good on x and strictly better
    on y. Bigger is better on an axis whose flag is true.
    """
    sx = 1.0 if x_higher else -1.0
    sy = 1.0 if y_higher else -1.0
    ordered = sorted(points, key=lambda p: (-sx * p[0], -sy * p[1]))
    front: list[tuple[float, float]] = []
    for x, y in ordered:
        if not front or sy * y > sy * front[-1][1]:
            front.append((x, y))
    return front[::-1]


def qps_at(results: Sequence[Result], level: float, recall: str = "recall") -> float:
    """Best QPS among ``results`` with recall at least ``level`` (NaN if none)."""
    qps = [r.qps for r in results if r.metric(recall) >= level]
    return max(qps) if qps else float("nan")


def _fmt(value: float, digits: int = 0) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def run_table(results: Sequence[Result], k: int | str = "k") -> str:
    """Markdown table with one row per measured point, in the given order."""
    rows = [f"| algorithm | query arguments | recall@{k} | annb recall@{k} | QPS "
            "| build s | bytes/vector |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        rows.append(
            f"| {r.build_label} | {r.query_label or '-'} | {r.attrs['recall']:.3f} "
            f"| {r.attrs['annb_recall']:.3f} | {_fmt(r.qps)} "
            f"| {_fmt(r.attrs['build_time'], 2)} "
            f"| {_fmt(r.attrs['bytes_per_vector'])} |")
    return "\n".join(rows)


def summary_table(results: Sequence[Result], recall: str = "recall",
                  levels: Sequence[float] = RECALL_LEVELS) -> str:
    """Markdown table per built index: best recall, QPS at each recall level,
    build seconds and bytes per vector (the figures docs/benchmarks.md quotes)."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.build_label, []).append(r)
    head = " | ".join(f"QPS@{level:g}" for level in levels)
    rows = [f"| index | best recall | {head} | build s | bytes/vector |",
            "| --- | ---: | " + "---: | " * len(levels) + "---: | ---: |"]
    for label, members in sorted(groups.items(), key=lambda kv: kv[0].lower()):
        first = members[0]
        best = max(r.metric(recall) for r in members)
        cells = " | ".join(_fmt(qps_at(members, level, recall)) for level in levels)
        rows.append(f"| {label} | {best:.3f} | {cells} | "
                    f"{_fmt(first.attrs['build_time'], 2)} | "
                    f"{_fmt(first.attrs['bytes_per_vector'])} |")
    return "\n".join(rows)
