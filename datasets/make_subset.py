"""Cut the embedded default dataset from the full WordNet MiniLM OOD file.

    python datasets/make_subset.py PATH/wordnet-minilm-384-angular-ood.hdf5

Takes a seeded random 10,000 of the 35,000 database rows, the first 500 test queries
and the first 1,000 learn queries, rounds every vector to float16 (to stay under
10 MB), recomputes the exact top-100 neighbours of the rounded vectors in float64,
and writes ``wordnet-minilm-384-angular-ood-10k.hdf5`` beside this script in the
ann-benchmarks layout, gzip-compressed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from leanvec.datasets import Dataset, write_hdf5

N_DATABASE, N_TEST, N_LEARN, K, SEED = 10_000, 500, 1_000, 100, 20241204


def exact_top_k(database: np.ndarray, queries: np.ndarray, k: int):
    """Top-k by 1 - cos, computed in float64 (the vectors are unit length)."""
    base = database.astype(np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    qs = queries.astype(np.float64)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    dist = 1.0 - qs @ base.T
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).with_name(
                            "wordnet-minilm-384-angular-ood-10k.hdf5"))
    args = parser.parse_args()

    with h5py.File(args.source, "r") as fh:
        rows = np.sort(np.random.default_rng(SEED).choice(
            fh["train"].shape[0], N_DATABASE, replace=False))
        round16 = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
        database = round16(fh["train"][()][rows])
        queries = round16(fh["test"][:N_TEST])
        learn = round16(fh["learn_queries"][:N_LEARN])
        attrs = dict(fh.attrs)

    gt_ids, gt_distances = exact_top_k(database, queries, K)
    attrs.update(subset_of="wordnet-minilm-384-angular-ood.hdf5", subset_seed=SEED,
                 stored_dtype="float16")
    dataset = Dataset(name="wordnet-minilm-384-angular-ood-10k", metric="cosine",
                      database=database, queries=queries, gt_ids=gt_ids,
                      gt_distances=gt_distances.astype(np.float32), learn_queries=learn,
                      distance="angular", attrs=attrs)
    write_hdf5(args.output, dataset, compress=True, store_dtype="float16")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
