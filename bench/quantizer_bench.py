"""Benchmark leanvec's quantizers (LVQ, PQ, LR²VQ) against faiss codecs.

For each dataset (angular: rows normalised, inner product on them) and each byte
budget it fits the quantizer, encodes the database and runs the exhaustive
compressed search without re-ranking, then reports recall@10 against the file's
ground truth, train and encode seconds and scan QPS (all queries in one call,
one search thread). faiss peers are trained on a sample of ``--train-sample``
rows (their OPQ/RQ training takes minutes on the full set); ours on the full
database. Prints markdown tables.

Usage::

    python -m bench.quantizer_bench --datasets wordnet-id --bytes 16 32
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import numpy as np

import leanvec

from ._data import load_dataset
from leanvec._validation import normalize_rows

logger = logging.getLogger(__name__)

BUDGET_PEERS = ("PQ{M}np", "OPQ{M}_{D},PQ{M}np", "PCA{d},PQ{M}np", "RQ{M}x8")
FIXED_PEERS = ("SQ8", "SQ4", "RaBitQ")


def _best_qps(search: Callable[[], object], n_queries: int, runs: int) -> float:
    search()
    best = min(_seconds(search) for _ in range(runs))
    return n_queries / best


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_ours(spec, base, queries, learn, gt, runs) -> dict:
    """Fit, encode and scan one leanvec quantizer; return its table row."""
    index = leanvec.CompressedIndex(spec, "inner_product", n_threads=1)
    quantizer = index.quantizer
    start = time.perf_counter()
    if isinstance(quantizer, leanvec.LR2VQ):
        quantizer.fit(base, train_queries=learn, metric="inner_product")
    else:
        quantizer.fit(base)
    train_s = time.perf_counter() - start
    encode_s = _seconds(lambda: index.fit(base))
    ids = index.search(queries, 10).ids
    qps = _best_qps(lambda: index.search(queries, 10), len(queries), runs)
    extra = f"d'={quantizer.dims_}" if isinstance(quantizer, leanvec.LR2VQ) else ""
    return {"method": f"leanvec {spec} {extra}".strip(),
            "bytes": quantizer.bytes_per_vector,
            "recall": leanvec.recall_at_k(ids, gt, 10), "train_s": train_s,
            "encode_s": encode_s, "qps": qps}


def _faiss_index(key: str, dim: int):
    import faiss

    if key == "RaBitQ":
        return faiss.IndexRaBitQ(dim, faiss.METRIC_INNER_PRODUCT)
    return faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)


def run_faiss(key, base, queries, gt, sample, runs) -> dict:
    """Train on ``sample``, add the database, scan; return the table row."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = _faiss_index(key, base.shape[1])
    train_s = _seconds(lambda: index.train(sample))
    encode_s = _seconds(lambda: index.add(base))
    ids = index.search(queries, 10)[1]
    qps = _best_qps(lambda: index.search(queries, 10), len(queries), runs)
    return {"method": f"faiss {key}", "bytes": faiss_bytes(index, key, base.shape[1]),
            "recall": leanvec.recall_at_k(ids, gt, 10), "train_s": train_s,
            "encode_s": encode_s, "qps": qps}


def faiss_bytes(index, key: str, dim: int) -> int:
    """Code bytes per vector of a faiss codec index."""
    if key == "RaBitQ":
        return dim // 8 + 8
    return int(getattr(index, "code_size", 0) or index.sa_code_size())


def flat_rows(base, queries, gt, runs) -> list[dict]:
    """The float32 exhaustive scan, batched and one query per call."""
    index = leanvec.FlatIndex("inner_product", n_threads=1).fit(base)
    batch = _best_qps(lambda: index.search(queries, 10), len(queries), runs)
    few = queries[:200]
    single = _best_qps(lambda: [index.search(q, 10) for q in few], len(few), runs)
    recall = leanvec.recall_at_k(index.search(queries, 10).ids, gt, 10)
    return [{"method": "leanvec float32 flat (batch)", "bytes": 4 * base.shape[1],
             "recall": recall, "train_s": 0.0, "encode_s": 0.0, "qps": batch},
            {"method": "leanvec float32 flat (1 query/call)",
             "bytes": 4 * base.shape[1], "recall": recall, "train_s": 0.0,
             "encode_s": 0.0, "qps": single}]


def lvq_single_row(spec, base, queries, runs) -> dict:
    """Scan QPS of an LVQ index with one query per call."""
    index = leanvec.CompressedIndex(spec, "inner_product", n_threads=1).fit(base)
    few = queries[:200]
    qps = _best_qps(lambda: [index.search(q, 10) for q in few], len(few), runs)
    return {"method": f"leanvec {spec} (1 query/call)",
            "bytes": index.bytes_per_vector, "recall": float("nan"), "train_s": 0.0,
            "encode_s": 0.0, "qps": qps}


def print_header(title: str) -> None:
    print(f"\n### {title}\n")
    print("| method | bytes/vector | recall@10 | train s | encode s | scan QPS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |", flush=True)


def print_row(r: dict) -> None:
    print(f"| {r['method']} | {r['bytes']} | {r['recall']:.3f} | "
          f"{r['train_s']:.1f} | {r['encode_s']:.1f} | {r['qps']:.0f} |", flush=True)


def bench_fixed(name, base, queries, learn, gt, sample, args) -> None:
    """LVQ against the float32 scan and faiss's scalar and RaBitQ codes."""
    print_header(f"{name}: scalar codes (n={len(base)}, dim={base.shape[1]})")
    for row in flat_rows(base, queries, gt, args.runs):
        print_row(row)
    for spec in ("lvq8", "lvq4", "lvq4x8"):
        print_row(run_ours(spec, base, queries, learn, gt, args.runs))
    print_row(lvq_single_row("lvq8", base, queries, args.runs))
    for key in FIXED_PEERS:
        if key in args.peers:
            print_row(run_faiss(key, base, queries, gt, sample, args.runs))


def bench_budget(name, m, base, queries, learn, gt, sample, args) -> None:
    """PQ and LR2VQ against faiss's PQ family at ``m`` bytes per vector."""
    dim = base.shape[1]
    print_header(f"{name}: {m} bytes per vector (n={len(base)}, dim={dim})")
    for kind in ("pq", "lr2vq"):
        print_row(run_ours(f"{kind}{m}", base, queries, learn, gt, args.runs))
    for key in BUDGET_PEERS:
        if key.split("{")[0] in args.peers:
            spec = key.format(M=m, D=dim, d=min(2 * m, dim))
            print_row(run_faiss(spec, base, queries, gt, sample, args.runs))


def bench_dataset(name: str, args: argparse.Namespace) -> None:
    data = load_dataset(name, args.synthetic_n)
    base = normalize_rows(data.database)
    queries = normalize_rows(data.queries[: args.n_queries])
    learn = normalize_rows(data.learn_queries[:1000])
    gt = data.gt_ids[: args.n_queries]
    rng = np.random.default_rng(0)
    sample = base[rng.choice(len(base), min(args.train_sample, len(base)), False)]
    if args.fixed:
        bench_fixed(name, base, queries, learn, gt, sample, args)
    for m in args.bytes:
        bench_budget(name, m, base, queries, learn, gt, sample, args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["wordnet-id"])
    parser.add_argument("--bytes", nargs="+", type=int, default=[8, 16, 32, 64])
    parser.add_argument("--peers", nargs="*",
                        default=["PQ", "OPQ", "PCA", "RQ", "SQ8", "SQ4", "RaBitQ"])
    parser.add_argument("--no-fixed", dest="fixed", action="store_false",
                        help="skip the LVQ / SQ / RaBitQ table")
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument("--train-sample", type=int, default=20_000)
    parser.add_argument("--synthetic-n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    for name in args.datasets:
        bench_dataset(name, args)


if __name__ == "__main__":
    main()
