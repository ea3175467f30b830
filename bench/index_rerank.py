"""Re-rank cost of :class:`leanvec.Index` on the wordnet OOD set, one search thread.

Usage::

    python -m bench.index_rerank [--repeats 25] [--path FILE] [--baseline DIR]

Fits the default index (``train_queries`` = the file's learn queries, 2 build
threads) and prints a markdown table of recall@10 and QPS (best of ``repeats``
passes over all test queries) at a few ``(window, rerank)`` points. With
``--baseline DIR``, where ``DIR`` holds an earlier version of the package renamed
``leanvec_base``, both versions are fitted and timed in the same process, their
passes interleaved, so that load from other jobs hits both alike.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import numpy as np

import leanvec

from ._data import wordnet_path

WORDNET = str(wordnet_path("ood"))
POINTS = ((60, 10), (60, 100), (100, 250))


def _fit(module, data) -> object:
    start = time.perf_counter()
    index = module.Index(n_threads=2).fit(data.database,
                                          train_queries=data.learn_queries)
    index.n_threads = 1
    print(f"{module.__name__}: build {time.perf_counter() - start:.1f} s, "
          f"{index.bytes_per_vector:.0f} bytes per vector")
    return index


def _best_seconds(indexes: dict, queries: np.ndarray, repeats: int) -> dict:
    best = {(name, p): np.inf for name in indexes for p in POINTS}
    for _ in range(repeats):
        for point in POINTS:
            for name, index in indexes.items():
                start = time.perf_counter()
                index.search(queries, 10, window=point[0], rerank=point[1])
                elapsed = time.perf_counter() - start
                best[(name, point)] = min(best[(name, point)], elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--path", default=WORDNET)
    parser.add_argument("--baseline", default=None)
    args = parser.parse_args()
    data = leanvec.datasets.load(args.path)
    modules = {"after": leanvec}
    if args.baseline:
        sys.path.insert(0, args.baseline)
        modules = {"before": importlib.import_module("leanvec_base"), **modules}
    indexes = {name: _fit(module, data) for name, module in modules.items()}
    recall = {}
    for name, index in indexes.items():
        for window, rerank in POINTS:
            ids = index.search(data.queries, 10, window=window, rerank=rerank).ids
            recall[(name, (window, rerank))] = leanvec.recall_at_k(ids, data.gt_ids, 10)
    best = _best_seconds(indexes, data.queries, args.repeats)
    n_q = data.queries.shape[0]
    print("\n| (window, rerank) | " + " | ".join(
        f"recall@10 {n} | QPS {n}" for n in indexes) + " |")
    print("| --- |" + " --- | --- |" * len(indexes))
    for point in POINTS:
        cells = [f"{recall[(n, point)]:.4f} | {n_q / best[(n, point)]:,.0f}"
                 for n in indexes]
        print(f"| {point} | " + " | ".join(cells) + " |")
    print()
    for name in indexes:
        extra = best[(name, (60, 100))] - best[(name, (60, 10))]
        print(f"{name}: rerank 100 instead of 10 costs {extra / n_q * 1e6:.1f} us "
              "a query")


if __name__ == "__main__":
    main()
