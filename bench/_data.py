"""Where the benchmark scripts find their datasets."""

from __future__ import annotations

import os
from pathlib import Path

import leanvec

# The full WordNet files: $LEANVEC_SHARED, or a "shared/datasets" folder beside the
# repository.
SHARED = Path(os.environ.get(
    "LEANVEC_SHARED", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def wordnet_path(kind: str) -> Path:
    """Path of the full WordNet MiniLM file of ``kind`` "ood" or "id"."""
    return SHARED / f"wordnet-minilm-384-angular-{kind}.hdf5"


def load_dataset(name: str, synthetic_n: int) -> leanvec.datasets.Dataset:
    """"wordnet-ood" / "wordnet-id" (or "ood" / "id"), or "synthetic": the seeded
    768-d cross-modal set with ``synthetic_n`` database vectors."""
    if name == "synthetic":
        return leanvec.datasets.make_cross_modal(
            n=synthetic_n, n_queries=1_000, n_learn_queries=10_000, dim=768, seed=0)
    kind = name.removeprefix("wordnet-")
    if kind not in ("ood", "id"):
        raise ValueError(f"unknown dataset {name!r}")
    return leanvec.datasets.load(wordnet_path(kind))
