"""Benchmark leanvec's quantizers (LVQ, PQ, LR²VQ) against faiss codecs.

For each dataset (angular: rows normalised, inner product on them) and each byte
budget it fits the quantizer, encodes the database and runs the exhaustive
compressed search without re-ranking, then reports recall@10 against the file's
ground truth, train and encode seconds and scan QPS (all queries in one call,
one search thread). faiss peers are trained on a sample of ``--train-sample``
rows (their OPQ/RQ training takes minutes on the full set); ours on the full
database. Prints markdown tables.

``--paired`` instead times the scans against their peers in one process,
alternating the libraries and keeping the best of ``--runs`` (machine noise then
hits both sides alike): leanvec's PQ scan against faiss ``PQ{M}np`` on the same
codes (leanvec's PQ takes faiss's trained codebooks), and LVQ-8 against
``leanvec.FlatIndex`` and faiss ``IndexFlatIP``, one query per call and batched.

Usage::

    python -m bench.quantizer_bench --datasets wordnet-id --bytes 16 32
    python -m bench.quantizer_bench --datasets wordnet-ood --ours lr2vq-residual --peers RQ --no-fixed
    python -m bench.quantizer_bench --paired --datasets wordnet-id wordnet-ood --runs 5
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import numpy as np

import leanvec
from leanvec._validation import normalize_rows

from ._data import load_dataset

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
    for kind in args.ours:
        spec = f"lr2vq{m}r" if kind == "lr2vq-residual" else f"{kind}{m}"
        print_row(run_ours(spec, base, queries, learn, gt, args.runs))
    for key in BUDGET_PEERS:
        if key.split("{")[0] in args.peers:
            spec = key.format(M=m, D=dim, d=min(2 * m, dim))
            print_row(run_faiss(spec, base, queries, gt, sample, args.runs))


def _paired_seconds(fns: dict[str, Callable[[], object]], runs: int,
                    ) -> dict[str, float]:
    """Best of ``runs`` seconds per function, the functions alternating each round."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            times[key].append(_seconds(fn))
    return {key: min(value) for key, value in times.items()}


def paired_pq(name, base, queries, sample, byte_budgets, runs) -> None:
    """leanvec's PQ scan against faiss ``PQ{M}np`` on identical codes."""
    import faiss

    faiss.omp_set_num_threads(1)
    print(f"\n### {name}: PQ scan, {len(queries)} queries in one call, one thread, "
          f"best of {runs} alternating\n")
    print("| bytes | leanvec ms | faiss ms | leanvec time / faiss time | "
          "faiss's top 10 found |")
    print("| ---: | ---: | ---: | ---: | ---: |", flush=True)
    for m in byte_budgets:
        peer = faiss.index_factory(base.shape[1], f"PQ{m}np",
                                   faiss.METRIC_INNER_PRODUCT)
        peer.train(sample)
        peer.add(base)
        pq = leanvec.PQ(m)
        pq.codebooks = faiss.vector_to_array(peer.pq.centroids).reshape(
            m, 256, -1).astype(np.float32)
        ours = leanvec.CompressedIndex(pq, "inner_product", n_threads=1).fit(base)
        same = leanvec.recall_at_k(ours.search(queries, 10).ids,
                                   peer.search(queries, 10)[1], 10)
        best = _paired_seconds({"ours": lambda o=ours: o.search(queries, 10),
                                "faiss": lambda p=peer: p.search(queries, 10)}, runs)
        print(f"| {m} | {best['ours'] * 1e3:.1f} | {best['faiss'] * 1e3:.1f} | "
              f"{best['ours'] / best['faiss']:.2f} | {same:.3f} |", flush=True)


def paired_lvq(name, base, queries, runs, metric="inner_product", n_single=200) -> None:
    """LVQ-8 scan QPS against the float32 exhaustive scans, single and batched,
    under ``metric`` ("inner_product" against faiss ``IndexFlatIP``,
    "sqeuclidean" against ``IndexFlatL2``)."""
    import faiss

    faiss.omp_set_num_threads(1)
    lvq = leanvec.CompressedIndex("lvq8", metric, n_threads=1).fit(base)
    flat = leanvec.FlatIndex(metric, n_threads=1).fit(base)
    peer_name = "IndexFlatIP" if metric == "inner_product" else "IndexFlatL2"
    peer = getattr(faiss, peer_name)(base.shape[1])
    peer.add(base)
    few = queries[:n_single]
    fns = {"lvq8 1": lambda: [lvq.search(q, 10) for q in few],
           "flat 1": lambda: [flat.search(q, 10) for q in few],
           "faiss 1": lambda: [peer.search(q[None], 10) for q in few],
           "lvq8 b": lambda: lvq.search(queries, 10),
           "flat b": lambda: flat.search(queries, 10),
           "faiss b": lambda: peer.search(queries, 10)}
    best = _paired_seconds(fns, runs)
    qps = {key: (len(few) if key.endswith("1") else len(queries)) / value
           for key, value in best.items()}
    print(f"\n### {name}: LVQ-8 scan against float32, {metric}, one thread, best of "
          f"{runs} alternating\n")
    print(f"| mode | LVQ-8 QPS | FlatIndex QPS | faiss {peer_name} QPS | "
          "LVQ-8 / FlatIndex | LVQ-8 / faiss |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, label in (("1", f"1 query/call ({len(few)})"),
                        ("b", f"batch ({len(queries)} in one call)")):
        a, f, p = qps[f"lvq8 {mode}"], qps[f"flat {mode}"], qps[f"faiss {mode}"]
        print(f"| {label} | {a:.0f} | {f:.0f} | {p:.0f} | {a / f:.2f} | "
              f"{a / p:.2f} |", flush=True)


def bench_paired(name: str, args: argparse.Namespace) -> None:
    data = load_dataset(name, args.synthetic_n)
    base = normalize_rows(data.database)
    queries = normalize_rows(data.queries[: args.n_queries])
    rng = np.random.default_rng(0)
    sample = base[rng.choice(len(base), min(args.train_sample, len(base)), False)]
    paired_lvq(name, base, queries, args.runs)
    paired_lvq(name, base, queries, args.runs, "sqeuclidean")
    paired_pq(name, base, queries, sample, args.bytes, args.runs)


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
    parser.add_argument("--ours", nargs="*", default=["pq", "lr2vq", "lr2vq-residual"],
                        choices=["pq", "lr2vq", "lr2vq-residual"],
                        help="leanvec's codes at each byte budget (lr2vq-residual: "
                        "LR2VQ with residual codebooks, spec 'lr2vq{M}r')")
    parser.add_argument("--no-fixed", dest="fixed", action="store_false",
                        help="skip the LVQ / SQ / RaBitQ table")
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument("--train-sample", type=int, default=20_000)
    parser.add_argument("--synthetic-n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paired", action="store_true",
                        help="paired scan timings against the peers (see above)")
    args = parser.parse_args(argv)
    for name in args.datasets:
        (bench_paired if args.paired else bench_dataset)(name, args)


if __name__ == "__main__":
    main()
