"""Benchmark the leanvec graph index against hnswlib, faiss HNSW and SVS Vamana.

Prints one markdown table per dataset: every sweep point (recall@10, single-thread
QPS), build seconds with the same thread count for every library, bytes per vector,
and a summary of the best QPS at recall@10 >= 0.95 and >= 0.99. All systems are
built first; their timed passes then alternate (best of ``--repeats`` rounds).

    python -m bench.index_bench --dataset ood --dataset id --build-threads 2
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import leanvec
from leanvec._threads import limit_threads

from ._data import load_dataset

LEVELS = (0.95, 0.99)
PEER_SWEEP = [10, 12, 15, 18, 20, 24, 28, 32, 36, 40, 45, 50, 60, 70, 80, 100, 120, 140,
              160, 200, 240, 300]


@dataclass
class Run:
    """One configured system: its build and its sweep points."""

    name: str
    build_s: float
    bytes_per_vector: float
    points: list[tuple[str, float, float]] = field(default_factory=list)

    def best_qps(self, level: float) -> float:
        good = [qps for _, rec, qps in self.points if rec >= level]
        return max(good, default=0.0)


@dataclass
class Sweep:
    """A built system waiting to be timed: ``search(value)`` at every value."""

    run: Run
    search: Callable[[object], object]
    values: list


def timed_sweeps(sweeps: list[Sweep], ds, repeats: int) -> list[Run]:
    """Record recall@10 and the best QPS of every sweep point.

    One warm-up pass per point, then ``repeats`` rounds; each round times every
    point of every system once, so that load from other jobs on the machine falls
    on all systems alike instead of on whichever ran during it.
    """
    best: dict[tuple[int, int], float] = {}
    for s, sweep in enumerate(sweeps):
        for v, value in enumerate(sweep.values):
            ids = sweep.search(value)
            recall = leanvec.recall_at_k(np.asarray(ids, dtype=np.int64), ds.gt_ids, 10)
            sweep.run.points.append((str(value), recall, 0.0))
            best[s, v] = np.inf
    for _ in range(repeats):
        for s, sweep in enumerate(sweeps):
            for v, value in enumerate(sweep.values):
                start = time.perf_counter()
                sweep.search(value)
                best[s, v] = min(best[s, v], time.perf_counter() - start)
    for s, sweep in enumerate(sweeps):
        sweep.run.points = [(point, recall, len(ds.queries) / best[s, v])
                            for v, (point, recall, _) in enumerate(sweep.run.points)]
    return [sweep.run for sweep in sweeps]


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


# ------------------------------------------------------------------ systems
def run_leanvec(ds, args, label: str, **params) -> Sweep:
    start = time.perf_counter()
    index = leanvec.Index(metric=ds.metric, n_threads=args.build_threads, **params)
    index.fit(ds.database, train_queries=ds.learn_queries)
    run = Run(label, time.perf_counter() - start, index.bytes_per_vector)
    index.n_threads = 1

    def search(point):
        window, rerank = point
        return index.search(ds.queries, 10, window=window, rerank=rerank).ids

    points = [(w, max(rr, w)) for w, rr in args.leanvec_sweep]
    return Sweep(run, search, points)


def run_hnswlib(ds, args, m: int) -> Sweep:
    import hnswlib

    space = "cosine" if ds.metric == "cosine" else "l2"
    start = time.perf_counter()
    index = hnswlib.Index(space=space, dim=ds.dim)
    index.init_index(len(ds.database), M=m, ef_construction=200, random_seed=0)
    index.set_num_threads(args.build_threads)
    index.add_items(ds.database)
    build = time.perf_counter() - start
    # Level 0 holds 2M links of 4 bytes plus a count; upper levels are rare.
    run = Run(f"hnswlib M={m}", build, ds.dim * 4 + 2 * m * 4 + 4)
    index.set_num_threads(1)

    def search(ef):
        index.set_ef(ef)
        return index.knn_query(ds.queries, 10)[0]

    return Sweep(run, search, PEER_SWEEP)


def run_faiss(ds, args, m: int) -> Sweep:
    import faiss

    data = normalized(ds.database) if ds.metric == "cosine" else ds.database
    metric = faiss.METRIC_INNER_PRODUCT if ds.metric == "cosine" else faiss.METRIC_L2
    faiss.omp_set_num_threads(args.build_threads)
    start = time.perf_counter()
    index = faiss.IndexHNSWFlat(ds.dim, m, metric)
    index.hnsw.efConstruction = 200
    index.add(np.ascontiguousarray(data, dtype=np.float32))
    run = Run(f"faiss HNSWFlat M={m}", time.perf_counter() - start,
              ds.dim * 4 + 2 * m * 4 + 4)
    faiss.omp_set_num_threads(1)
    queries = np.ascontiguousarray(
        normalized(ds.queries) if ds.metric == "cosine" else ds.queries, np.float32)

    def search(ef):
        index.hnsw.efSearch = ef
        return index.search(queries, 10)[1]

    return Sweep(run, search, PEER_SWEEP)


def run_svs(ds, args, degree: int) -> Sweep:
    import svs

    cosine = ds.metric == "cosine"
    data = normalized(ds.database) if cosine else ds.database
    params = svs.VamanaBuildParameters(graph_max_degree=degree, window_size=200,
                                       alpha=0.95 if cosine else 1.2)
    distance = svs.DistanceType.MIP if cosine else svs.DistanceType.L2
    start = time.perf_counter()
    index = svs.Vamana.build(params, np.ascontiguousarray(data, np.float32), distance,
                             num_threads=args.build_threads)
    run = Run(f"SVS Vamana float32 R={degree}", time.perf_counter() - start,
              ds.dim * 4 + degree * 4 + 4)
    index.num_threads = 1
    queries = np.ascontiguousarray(normalized(ds.queries) if cosine else ds.queries,
                                   np.float32)

    def search(window):
        index.search_window_size = window
        return index.search(queries, 10)[0]

    return Sweep(run, search, PEER_SWEEP)


# ------------------------------------------------------------------ report
def table(name: str, runs: list[Run]) -> str:
    hnsw = next((r for r in runs if r.name == "hnswlib M=32"), None)
    header = ("| system | build s | bytes/vector | QPS @0.95 | vs hnswlib M=32 "
              "| QPS @0.99 | vs hnswlib M=32 |")
    lines = [f"### {name}", "", header, "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        cells = [run.name, f"{run.build_s:.1f}", f"{run.bytes_per_vector:.0f}"]
        for level in LEVELS:
            qps = run.best_qps(level)
            ref = hnsw.best_qps(level) if hnsw else 0.0
            cells.append(f"{qps:,.0f}" if qps else "-")
            cells.append(f"{qps / ref:.2f}x" if qps and ref else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| system | point | recall@10 | QPS |", "| --- | --- | --- | --- |"]
    for run in runs:
        for point, recall, qps in run.points:
            lines.append(f"| {run.name} | {point} | {recall:.4f} | {qps:,.0f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append",
                        choices=("ood", "id", "synthetic"),
                        help="dataset(s) to run (default: ood and id)")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-synthetic", type=int, default=100_000)
    parser.add_argument("--leanvec-dims", type=int, default=128)
    parser.add_argument("--peers", default="hnswlib,faiss,svs",
                        help="comma-separated peers to run")
    parser.add_argument("--configs", default="default",
                        help="comma-separated leanvec configurations: default, "
                             "fast (see CONFIGS)")
    args = parser.parse_args(argv)
    args.dataset = args.dataset or ["ood", "id"]
    # (window, rerank): the window's nodes re-scored, the index's default
    args.leanvec_sweep = [(w, w) for w in (10, 12, 15, 18, 20, 24, 28, 32, 36, 40, 45,
                                           50, 60, 70, 80, 100, 120, 140, 160, 200,
                                           250, 300)]
    return args


CONFIGS = {
    "default": {},
    "auto": {"leanvec_dims": "auto"},
    "float16-secondary": {"secondary": "float16"},
    "degree32": {"degree": 32},
    "d160": {"leanvec_dims": 160},
    "d192": {"leanvec_dims": 192},
    "float32-secondary": {"secondary": "float32"},
}


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, "
          f"build threads {args.build_threads}, queries single-threaded\n")
    peers = [p for p in args.peers.split(",") if p]
    for name in args.dataset:
        ds = load_dataset(name, args.n_synthetic)
        dims = min(args.leanvec_dims, ds.dim // 3 if name == "synthetic" else ds.dim)
        runs = []
        for config in args.configs.split(","):
            params = {"leanvec_dims": dims, **CONFIGS[config]}
            with limit_threads(args.build_threads):
                shown = params["leanvec_dims"]
                if shown == "auto":
                    shown = leanvec.Index(leanvec_dims="auto")._resolve_dims(ds.dim)
                label = f"leanvec {config} d={shown}"
            runs.append(run_leanvec(ds, args, label, **params))
            gc.collect()
        for peer in peers:
            if peer == "hnswlib":
                runs += [run_hnswlib(ds, args, 16), run_hnswlib(ds, args, 32)]
            elif peer == "faiss":
                runs.append(run_faiss(ds, args, 32))
            elif peer == "svs":
                runs += [run_svs(ds, args, 32), run_svs(ds, args, 64)]
            gc.collect()
        runs = timed_sweeps(runs, ds, args.repeats)
        print(table(f"{ds.name} ({len(ds.database)} x {ds.dim}, {ds.metric})", runs))
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
