"""Exact search throughput: leanvec FlatIndex against faiss IndexFlat, one thread.

    python -m bench.exact_bench [DATASET ...] [--runs 5]

Prints a markdown table of recall@10 and QPS (all queries in one batch, and one query
per call) for each dataset. Thread pools are limited to one thread for both libraries;
their timed passes alternate (each pass after one warm-up pass), best of ``--runs``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import leanvec
from leanvec._threads import limit_threads


def _faiss_search(database, metric):
    import faiss

    faiss.omp_set_num_threads(1)
    if metric == "cosine":
        database = leanvec._validation.normalize_rows(database)
    index = faiss.IndexFlatL2(database.shape[1]) if "euclid" in metric else \
        faiss.IndexFlatIP(database.shape[1])
    index.add(database)

    def search(queries, k):
        if metric == "cosine":
            queries = leanvec._validation.normalize_rows(queries)
        return index.search(queries, k)[1]

    return search


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=[leanvec.datasets.DEFAULT_DATASET])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    blas = os.environ.get("OPENBLAS_CORETYPE", "unset")
    print(f"OPENBLAS_CORETYPE={blas}; 1 thread; k=10; best of {args.runs} after a warm-up")
    print("| dataset | library | recall@10 | batch QPS | single-query QPS |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name in args.datasets:
        data = leanvec.datasets.load(name)
        ours = leanvec.FlatIndex(data.metric, n_threads=1).fit(data.database)
        candidates = {"leanvec FlatIndex": lambda q, k, ours=ours: ours.search(q, k).ids}
        try:
            candidates["faiss IndexFlat"] = _faiss_search(data.database, data.metric)
        except ImportError:
            print(f"faiss not installed: skipped on {name}")
        with limit_threads(1):
            recalls = {label: leanvec.recall_at_k(search(data.queries, 10), data.gt_ids,
                                                  10)
                       for label, search in candidates.items()}
            # One pass of each library in turn, best of --runs: load from other jobs
            # on the machine then falls on both alike.
            best = {(label, b): np.inf for label in candidates for b in (True, False)}
            for _ in range(args.runs):
                for label, search in candidates.items():
                    for b in (True, False):
                        timing = leanvec.time_queries(lambda q, s=search: s(q, 10),
                                                      data.queries, batch=b, runs=1,
                                                      n_threads=1)
                        best[label, b] = min(best[label, b], timing.seconds)
        n = len(data.queries)
        for label in candidates:
            print(f"| {data.name} | {label} | {recalls[label]:.3f} | "
                  f"{n / best[label, True]:,.0f} | {n / best[label, False]:,.0f} |")

if __name__ == "__main__":
    main()
