"""Re-rank cost of :class:`leanvec.Index` on the wordnet OOD set, one search thread.

Usage::

    python -m bench.index_rerank [--repeats 5] [--path FILE]

Prints a markdown table of recall@10 and QPS at ``(window, rerank)`` points.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import leanvec

WORDNET = "/work/shared/datasets/wordnet-minilm-384-angular-ood.hdf5"
POINTS = ((60, 10), (60, 100), (100, 250))


def _qps(index: leanvec.Index, queries: np.ndarray, window: int, rerank: int,
         repeats: int) -> tuple[float, np.ndarray]:
    ids = index.search(queries, 10, window=window, rerank=rerank).ids
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        index.search(queries, 10, window=window, rerank=rerank)
        best = min(best, time.perf_counter() - start)
    return queries.shape[0] / best, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--path", default=WORDNET)
    args = parser.parse_args()
    data = leanvec.datasets.load(args.path)
    start = time.perf_counter()
    index = leanvec.Index(n_threads=2).fit(data.database,
                                           train_queries=data.learn_queries)
    build = time.perf_counter() - start
    index.n_threads = 1
    print(f"build {build:.1f} s, {index.bytes_per_vector:.0f} bytes per vector\n")
    print("| (window, rerank) | recall@10 | QPS |")
    print("| --- | --- | --- |")
    for window, rerank in POINTS:
        qps, ids = _qps(index, data.queries, window, rerank, args.repeats)
        recall = leanvec.recall_at_k(ids, data.gt_ids, 10)
        print(f"| ({window}, {rerank}) | {recall:.4f} | {qps:,.0f} |")


if __name__ == "__main__":
    main()
