"""Benchmark the leanvec graph index against hnswlib, faiss HNSW and SVS Vamana.

Prints one markdown table per dataset: every sweep point (recall@10, single-thread
QPS), build seconds with the same thread count for every library, bytes per vector,
and a summary of the best QPS at recall@10 >= 0.95 and >= 0.99.

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


def best_qps(search: Callable[[], object], n_queries: int, repeats: int) -> tuple:
    """Best wall-clock QPS of ``repeats`` passes after one warm-up, and the result."""
    result = search()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        search()
        best = min(best, time.perf_counter() - start)
    return n_queries / best, result


def sweep(run: Run, search, values, ds, repeats: int) -> Run:
    """Time ``search(value)`` for every value and record recall@10 and QPS."""
    for value in values:
        qps, ids = best_qps(lambda v=value: search(v), len(ds.queries), repeats)
        recall = leanvec.recall_at_k(np.asarray(ids, dtype=np.int64), ds.gt_ids, 10)
        run.points.append((str(value), recall, qps))
    return run


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


# ------------------------------------------------------------------ systems
def run_leanvec(ds, args, label: str, **params) -> Run:
    start = time.perf_counter()
    index = leanvec.Index(metric=ds.metric, n_threads=args.build_threads, **params)
    index.fit(ds.database, train_queries=ds.learn_queries)
    run = Run(label, time.perf_counter() - start, index.bytes_per_vector)
    index.n_threads = 1

    def search(point):
        window, rerank = point
        return index.search(ds.queries, 10, window=window, rerank=rerank).ids

    points = [(w, max(rr, w)) for w, rr in args.leanvec_sweep]
    return sweep(run, search, points, ds, args.repeats)


def run_hnswlib(ds, args, m: int) -> Run:
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

    return sweep(run, search, [10, 20, 40, 80, 160], ds, args.repeats)


def run_faiss(ds, args, m: int) -> Run:
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

    return sweep(run, search, [10, 20, 40, 80, 160], ds, args.repeats)


def run_svs(ds, args, degree: int) -> Run:
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

    return sweep(run, search, [10, 20, 40, 80, 160], ds, args.repeats)


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
    args.leanvec_sweep = [(10, 30), (15, 40), (20, 50), (30, 60), (40, 80), (60, 100),
                          (100, 150), (100, 250), (160, 400)]
    return args


CONFIGS = {
    "default": {},
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
                label = f"leanvec {config} d={params['leanvec_dims']}"
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
        print(table(f"{ds.name} ({len(ds.database)} x {ds.dim}, {ds.metric})", runs))
        print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
