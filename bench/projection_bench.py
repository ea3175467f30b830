"""Benchmark LeanVec projections against svs.compute_leanvec_matrices.

For each dataset and each ``leanvec_dims`` it fits LeanVec-ID (PCA), the OOD
solvers (``whitened_p1``: the exact closed form, spectrum power 1) and the
reference Frank-Wolfe of the ``svs`` package (given the same normalised, centred
database and normalised training queries), then reports on the held-out test
queries: the relative inner-product error, primary recall@10 (exact search on the
reduced vectors, no re-rank), the share of the true top 10 found among the top 50
and 100 reduced candidates, and the fit time. Prints markdown tables.

Usage::

    python -m bench.projection_bench --datasets wordnet-ood wordnet-id synthetic
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

import leanvec

from ._data import load_dataset
from leanvec.projection import LeanVec, _prepare

logger = logging.getLogger(__name__)

METHODS = ("pca", "whitened", "whitened_p1", "eigen", "frank_wolfe", "svs_reference")
_ERROR_ROWS = 10_000
_SCORE_BLOCK = 256


def fit_method(method: str, d: int, data, base_c, learn_n) -> tuple[np.ndarray, ...]:
    """Return (A, B, mean, fit seconds) of ``method`` at ``d``."""
    if method == "svs_reference":
        import svs
        from threadpoolctl import threadpool_limits

        # One BLAS thread: on this shared machine it ran faster than two.
        with threadpool_limits(limits=1, user_api="blas"):
            start = time.perf_counter()
            b, a = svs.compute_leanvec_matrices(base_c, learn_n, d)
            return a, b, None, time.perf_counter() - start
    if method == "pca":
        model = LeanVec(d, metric="cosine").fit(data.database)
    elif method == "whitened_p1":
        model = LeanVec(d, kind="ood", metric="cosine", spectrum_power=1.0)
        model.fit(data.database, data.learn_queries)
    else:
        model = LeanVec(d, kind="ood", solver=method, metric="cosine")
        model.fit(data.database, data.learn_queries)
    return model.query_matrix, model.database_matrix, model.mean, model.fit_seconds_


def top_candidates(q_red: np.ndarray, x_red: np.ndarray, depth: int) -> np.ndarray:
    """Ids of the ``depth`` largest reduced inner products per query."""
    out = np.empty((q_red.shape[0], depth), dtype=np.int64)
    for start in range(0, q_red.shape[0], _SCORE_BLOCK):
        scores = q_red[start:start + _SCORE_BLOCK] @ x_red.T
        part = np.argpartition(-scores, depth, axis=1)[:, :depth]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[start:start + _SCORE_BLOCK] = np.take_along_axis(part, order, axis=1)
    return out


def evaluate(a, b, base_c, tests_n, gt, exact_sub) -> dict[str, float]:
    """Held-out error, primary recall@10 and top-10 recall in 50 / 100 candidates."""
    q_red = tests_n @ a
    x_red = base_c @ b
    sub = x_red[:_ERROR_ROWS]
    approx = q_red.astype(np.float64) @ sub.T.astype(np.float64)
    error = np.linalg.norm(exact_sub - approx) / np.linalg.norm(exact_sub)
    cand = top_candidates(q_red, x_red, 100)
    hits = {depth: np.mean([np.intersect1d(c[:depth], g).size / 10.0
                            for c, g in zip(cand, gt)]) for depth in (10, 50, 100)}
    return {"error": float(error), "recall10": float(hits[10]),
            "top10_in_50": float(hits[50]), "top10_in_100": float(hits[100])}


def run_dataset(name: str, dims: list[int], methods: list[str], ref_dims: set[int],
                synthetic_n: int) -> list[dict]:
    """All methods at all ``dims`` on one dataset; returns one row per pair."""
    data = load_dataset(name, synthetic_n)
    base_n = _prepare(data.database, "cosine")
    mean = base_n.mean(axis=0, dtype=np.float64).astype(np.float32)
    base_c = np.ascontiguousarray(base_n - mean)
    learn_n = _prepare(data.learn_queries, "cosine")
    tests_n = _prepare(data.queries, "cosine")
    exact_sub = tests_n.astype(np.float64) @ base_c[:_ERROR_ROWS].T.astype(np.float64)
    gt = data.gt_ids[:, :10]
    logger.info("%s: database %s, learn %s", name, data.database.shape,
                data.learn_queries.shape)

    rows = []
    for d in dims:
        for method in methods:
            if method == "svs_reference" and d not in ref_dims:
                continue
            a, b, fit_mean, seconds = fit_method(method, d, data, base_c, learn_n)
            base_m = base_c if fit_mean is None else base_n - fit_mean
            row = {"dataset": name, "d": d, "method": method, "fit_s": seconds,
                   **evaluate(a, b, base_m, tests_n, gt, exact_sub)}
            logger.info("%s", row)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """One markdown table of every row."""
    head = ("| dataset | d | method | held-out error | primary recall@10 | "
            "top10 in 50 | top10 in 100 | fit s |\n| --- | ---: | --- | ---: | ---: | "
            "---: | ---: | ---: |")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['d']} | {r['method']} | {r['error']:.4f} | "
            f"{r['recall10']:.3f} | {r['top10_in_50']:.3f} | {r['top10_in_100']:.3f} | "
            f"{r['fit_s']:.2f} |")
    return "\n".join(lines)


def fit_timing(repeats: int, d: int) -> str:
    """Fit time of each solver at dim 768, 100k database rows, 10k queries."""
    data = leanvec.datasets.make_cross_modal(n=100_000, n_queries=10, dim=768,
                                             n_learn_queries=10_000, k=10, seed=1)
    lines = ["| solver | best fit s | median fit s | CPU s (best run) |",
             "| --- | ---: | ---: | ---: |"]
    for solver in ("pca", "whitened", "eigen"):
        times, cpu = [], []
        for _ in range(repeats):
            kind = "id" if solver == "pca" else "ood"
            model = LeanVec(d, kind=kind, solver=None if kind == "id" else solver)
            c0 = time.process_time()
            model.fit(data.database, None if kind == "id" else data.learn_queries)
            times.append(model.fit_seconds_)
            cpu.append(time.process_time() - c0)
        best = int(np.argmin(times))
        lines.append(f"| {solver} | {times[best]:.2f} | {np.median(times):.2f} | "
                     f"{cpu[best]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["wordnet-ood", "wordnet-id"],
                        help="wordnet-ood, wordnet-id, synthetic")
    parser.add_argument("--dims", nargs="+", type=int, default=[32, 64, 96, 128, 192])
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=METHODS)
    parser.add_argument("--reference-dims", nargs="*", type=int, default=None,
                        help="dims at which svs runs (default: all --dims)")
    parser.add_argument("--synthetic-n", type=int, default=100_000)
    parser.add_argument("--fit-timing", type=int, default=0, metavar="REPEATS",
                        help="also time fits at dim 768 / 100k / 10k this many times")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    ref_dims = set(args.dims if args.reference_dims is None else args.reference_dims)
    rows = []
    for name in args.datasets:
        rows += run_dataset(name, args.dims, args.methods, ref_dims, args.synthetic_n)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    if rows:
        print(markdown(rows))
    if args.fit_timing:
        print()
        print(fit_timing(args.fit_timing, 128))


if __name__ == "__main__":
    main()
