"""Build each defined index, time its query sweep, and store one result per point."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .adapters import Adapter, get_adapter, unavailable_reason
from .definitions import Definition
from .results import Result, read_result, result_path, true_distances, write_result

logger = logging.getLogger(__name__)

# Queries of the warm-up pass in one-query-at-a-time mode.
_SINGLE_WARMUP = 20


@dataclasses.dataclass
class Settings:
    """How to measure: ``k`` neighbours, best of ``runs`` passes, ``batch`` (all
    queries in one call) or one query per call, ``threads`` for queries and
    ``build_threads`` for builds (None: every core)."""

    k: int = 10
    runs: int = 3
    batch: bool = True
    threads: int | None = 1
    build_threads: int | None = None
    force: bool = False
    results: Path = Path("results")


@contextlib.contextmanager
def thread_limit(n_threads: int | None) -> Iterator[None]:
    """Bound numba, BLAS (with threadpoolctl) and faiss's OpenMP pool, then restore."""
    from leanvec._threads import limit_threads

    faiss = sys.modules.get("faiss")
    previous = faiss.omp_get_max_threads() if faiss is not None else None
    if faiss is not None:
        faiss.omp_set_num_threads(n_threads or os.cpu_count() or 1)
    try:
        with limit_threads(n_threads):
            yield
    finally:
        if faiss is not None:
            faiss.omp_set_num_threads(previous)


def _rss_bytes() -> int:
    """Resident memory of this process now (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _time_batch(adapter: Adapter, queries: NDArray[np.float32], k: int, runs: int,
                ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Best of ``runs`` timed passes (after a warm-up) with all queries per call."""
    adapter.batch_query(queries, k)
    best, ids = np.inf, None
    for _ in range(runs):
        start = time.perf_counter()
        ids = adapter.batch_query(queries, k)
        best = min(best, time.perf_counter() - start)
    return ids, np.full(len(queries), best / max(len(queries), 1))


def _time_single(adapter: Adapter, queries: NDArray[np.float32], k: int, runs: int,
                 ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Best of ``runs`` passes with one query per call; per-query times kept."""
    singles = [queries[i : i + 1] for i in range(len(queries))]
    for q in singles[:_SINGLE_WARMUP]:
        adapter.query(q, k)
    best_times, ids = None, np.full((len(queries), k), -1, dtype=np.int64)
    for _ in range(runs):
        times = np.empty(len(queries))
        for i, q in enumerate(singles):
            start = time.perf_counter()
            found = adapter.query(q, k)
            times[i] = time.perf_counter() - start
            ids[i, : len(found)] = found[:k]
        if best_times is None or times.sum() < best_times.sum():
            best_times = times
    return ids, best_times


# Attributes a stored result needs to be reused instead of measured again.
_REQUIRED = ("best_search_time", "recall", "annb_recall", "build_time", "index_size",
             "bytes_per_vector")


def _reusable(paths: Sequence[Path]) -> list[Result] | None:
    """The stored results at ``paths`` when every one is readable and complete."""
    found = []
    for path in paths:
        if not path.is_file():
            return None
        try:
            result = read_result(path)
        except (OSError, ValueError) as exc:
            logger.warning("measuring again: %s is unreadable (%s)", path, exc)
            return None
        if any(key not in result.attrs for key in _REQUIRED):
            logger.warning("measuring again: %s lacks result attributes", path)
            return None
        found.append(result)
    return found


class Runner:
    """Runs definitions on one dataset and writes their result files.

    Parameters
    ----------
    dataset : leanvec.datasets.Dataset
    settings : Settings
    on_skip : callable(str), optional
        Receives one line per skipped index (library missing, metric unsupported,
        or the library failed).
    on_point : callable(), optional
        Called after each query point (measured, reused or skipped): drives a bar.
    """

    def __init__(self, dataset: Any, settings: Settings,
                 on_skip: Callable[[str], None] | None = None,
                 on_point: Callable[[], None] | None = None) -> None:
        self.dataset = dataset
        self.settings = settings
        self.on_skip = on_skip or (lambda line: logger.warning("%s", line))
        self.on_point = on_point or (lambda: None)
        self._skipped: set[str] = set()

    def run(self, definitions: Sequence[Definition]) -> list[Result]:
        """Measure every definition; return the results in order (reused ones too)."""
        found: list[Result] = []
        for definition in definitions:
            found.extend(self.run_one(definition))
        return found

    def _path(self, definition: Definition, query_args: dict[str, Any]) -> Path:
        s = self.settings
        return result_path(s.results, self.dataset.name, s.k, definition.name, s.batch,
                           definition.build_args, query_args)

    def _skip(self, definition: Definition, reason: str) -> list[Result]:
        if definition.name not in self._skipped or "failed" in reason:
            self.on_skip(f"skipped {definition.name}: {reason}")
        self._skipped.add(definition.name)
        for _ in definition.query_args:
            self.on_point()
        return []

    def run_one(self, definition: Definition) -> list[Result]:
        """Build one index and measure each of its query points."""
        cls = get_adapter(definition.algorithm)
        reason = unavailable_reason(cls, self.dataset.metric)
        if reason is not None:
            return self._skip(definition, reason)
        paths = [self._path(definition, q) for q in definition.query_args]
        reused = None if self.settings.force else _reusable(paths)
        if reused is not None:
            for _ in paths:
                self.on_point()
            return reused
        try:
            adapter, build = self._build(cls, definition)
            return [self._measure(adapter, definition, q, p, build)
                    for q, p in zip(definition.query_args, paths)]
        except Exception as exc:  # a peer library's own failure must not stop the run
            logger.debug("run of %s failed", definition.name, exc_info=True)
            return self._skip(definition, f"failed: {type(exc).__name__}: {exc}")

    def _build(self, cls: type[Adapter], definition: Definition,
               ) -> tuple[Adapter, dict[str, Any]]:
        data = self.dataset
        adapter = cls(data.metric, **definition.build_args)
        adapter.set_threads(self.settings.build_threads)
        rss = _rss_bytes()
        with thread_limit(self.settings.build_threads):
            adapter.warm_up(data.database, data.learn_queries)
            start = time.perf_counter()
            adapter.fit(data.database, data.learn_queries)
            build_time = time.perf_counter() - start
        size = adapter.index_bytes()
        if size is None:
            size = max(_rss_bytes() - rss, 0)
        adapter.set_threads(self.settings.threads)
        return adapter, {"build_time": build_time, "index_bytes": int(size)}

    def _measure(self, adapter: Adapter, definition: Definition,
                 query_args: dict[str, Any], path: Path, build: dict[str, Any],
                 ) -> Result:
        from leanvec import annb_recall_at_k, recall_at_k

        s, data = self.settings, self.dataset
        adapter.set_query_arguments(**query_args)
        timer = _time_batch if s.batch else _time_single
        # Libraries differ when k exceeds the database; ask for what exists, pad -1.
        with thread_limit(s.threads):
            ids, times = timer(adapter, data.queries, min(s.k, len(data.database)),
                               s.runs)
        ids = np.pad(ids, ((0, 0), (0, s.k - ids.shape[1])), constant_values=-1)
        distances = true_distances(data.database, data.queries, ids, data.metric)
        attrs = self._attrs(definition, query_args, build, times)
        attrs["recall"] = recall_at_k(ids, data.gt_ids, s.k)
        attrs["annb_recall"] = annb_recall_at_k(distances, data.gt_distances, s.k)
        write_result(path, attrs, ids, distances, times)
        self.on_point()
        return Result(path, attrs)

    def _attrs(self, definition: Definition, query_args: dict[str, Any],
               build: dict[str, Any], times: NDArray[np.float64]) -> dict[str, Any]:
        s, data = self.settings, self.dataset
        label = ", ".join(f"{k}={v}" for k, v in {**definition.build_args,
                                                  **query_args}.items())
        return {
            "algo": definition.name, "name": f"{definition.name}({label})",
            "dataset": data.name, "count": s.k,
            "distance": data.distance or data.metric,
            "batch_mode": s.batch, "run_count": s.runs, "candidates": 0.0,
            "expect_extra": False, "best_search_time": float(times.mean()),
            "build_time": build["build_time"],
            "index_size": build["index_bytes"] / 1024,
            "bytes_per_vector": build["index_bytes"] / max(len(data.database), 1),
            "n_threads": s.threads or 0, "build_threads": s.build_threads or 0,
            "adapter": definition.algorithm,
            "build_args": json.dumps(definition.build_args),
            "query_args": json.dumps(query_args),
            "n_queries": len(data.queries), "leanvec_bench": 1,
        }
