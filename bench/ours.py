"""Adapters for leanvec's own indexes (each skipped when its class is absent)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .adapters import Adapter, register


class _LeanvecAdapter(Adapter):
    """Shared plumbing. The runner bounds numba's and BLAS's threads around the
    build and the timed queries, so no call here sets them again (that would add
    its cost to every query in one-query-at-a-time mode)."""

    requires = ("numba",)

    def warm_up(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        """Compile the numba kernels on a small copy of the same configuration."""
        rows = database[: min(len(database), 2_000)]
        learn = None if learn_queries is None else learn_queries[:200]
        twin = type(self)(self.metric, **self.build_args)
        twin.set_threads(self.n_threads)
        try:
            twin.fit(rows, learn)
            twin.batch_query(rows[:5], 10)
        except ValueError:
            pass  # a configuration too large for the small copy: compile on the real one

    def _result_ids(self, result: Any) -> NDArray[np.int64]:
        return np.asarray(result.ids, dtype=np.int64)

    def index_bytes(self) -> int | None:
        per_vector = getattr(self.index, "bytes_per_vector", None)
        return None if per_vector is None else round(per_vector * self.n)


@register
class LeanvecFlat(_LeanvecAdapter):
    """``leanvec.FlatIndex``: exact search, the reference every recall is checked on."""

    name = "leanvec-flat"
    requires_leanvec = ("FlatIndex",)

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        import leanvec

        self.index = leanvec.FlatIndex(metric=self.metric).fit(database)

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        return self._result_ids(self.index.search(queries, k))


@register
class LeanvecIndex(_LeanvecAdapter):
    """``leanvec.Index``: LeanVec projection, quantized primary, graph, re-ranking.

    ``train_queries`` are the dataset's learn queries when ``ood`` is true (the
    LeanVec-OOD fit) and absent otherwise (LeanVec-ID).
    """

    name = "leanvec-index"
    requires_leanvec = ("Index",)
    build_params = {"leanvec_dims": "auto", "primary": "lvq8", "secondary": "lvq8",
                    "degree": 64, "build_window": 100, "alpha": None, "ood": True}
    query_params = {"window": 40, "rerank": None}

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        import leanvec

        args = dict(self.build_args)
        train = learn_queries if args.pop("ood") else None
        dims = args["leanvec_dims"]
        if isinstance(dims, int) and dims >= database.shape[1]:
            args["leanvec_dims"] = None  # no reduction: the index refuses dims >= dim
        self.index = leanvec.Index(metric=self.metric, n_threads=self.n_threads, **args)
        self.index.fit(database, train_queries=train)

    def set_threads(self, n_threads: int | None) -> None:
        super().set_threads(n_threads)
        if hasattr(self, "index") and hasattr(self.index, "n_threads"):
            self.index.n_threads = n_threads

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        args = {key: val for key, val in self.query_args.items() if val is not None}
        return self._result_ids(self.index.search(queries, k, **args))


@register
class LeanvecCompressed(_LeanvecAdapter):
    """``leanvec.CompressedIndex``: an exhaustive scan over LVQ, PQ or LR2VQ codes
    (``quantizer`` such as "lvq8", "lvq4x8", "pq48", "lr2vq48"), with the best
    ``rerank`` candidates re-scored on float32 vectors when ``rerank`` > 0.

    The dataset's learn queries are passed as ``train_queries`` (LR2VQ uses them).
    """

    name = "leanvec-compressed"
    requires_leanvec = ("CompressedIndex",)
    build_params = {"quantizer": "lvq8", "rerank": 0}

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        import leanvec

        # n_threads None: the runner's bound applies, with no per-call cost.
        self.index = leanvec.CompressedIndex(metric=self.metric, **self.build_args)
        self.index.fit(database, train_queries=learn_queries)

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        return self._result_ids(self.index.search(queries, k))
