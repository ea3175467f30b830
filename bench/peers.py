"""Adapters for the peer libraries: faiss, hnswlib, SVS, usearch and pynndescent.

Cosine is run as inner product over unit-normalized vectors wherever a library has
no cosine of its own; normalizing the queries is part of the timed search.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .adapters import Adapter, as_ids, normalized, register


def _cores(n_threads: int | None) -> int:
    return n_threads or os.cpu_count() or 1


def _folder_bytes(folder: str) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# ---------------------------------------------------------------------- faiss
class _Faiss(Adapter):
    """Any faiss index made by ``faiss.index_factory``; query arguments go through
    ``faiss.ParameterSpace`` (``nprobe``, ``efSearch``, ``k_factor_rf``, ...)."""

    requires = ("faiss",)

    def _factory(self, dim: int, n: int) -> str:
        raise TypeError(f"{type(self).__name__} does not implement _factory")

    def _prepare(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return normalized(x) if self.metric == "cosine" else x

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        import faiss

        is_l2 = "euclidean" in self.metric
        metric = faiss.METRIC_L2 if is_l2 else faiss.METRIC_INNER_PRODUCT
        data = self._prepare(database)
        factory = self._factory(*data.shape[::-1])
        self.index = faiss.index_factory(data.shape[1], factory, metric)
        self._before_add()
        self.index.train(data)
        self.index.add(data)
        self._apply_query_arguments()

    def _before_add(self) -> None:
        """Hook for arguments that must be set before vectors are added."""

    def _apply_query_arguments(self) -> None:
        import faiss

        if not hasattr(self, "index"):
            return
        space = faiss.ParameterSpace()
        for key, value in self.query_args.items():
            if value is not None:
                space.set_index_parameter(self.index, key, value)

    def set_threads(self, n_threads: int | None) -> None:
        import faiss

        super().set_threads(n_threads)
        faiss.omp_set_num_threads(_cores(n_threads))

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        _, ids = self.index.search(self._prepare(queries), k)
        return as_ids(ids, self.n)

    def index_bytes(self) -> int | None:
        import faiss

        return int(faiss.serialize_index(self.index).size)


@register
class FaissFlat(_Faiss):
    """faiss ``IndexFlatIP`` (cosine, inner product) or ``IndexFlatL2``: exact."""

    name = "faiss-flat"

    def _factory(self, dim: int, n: int) -> str:
        return "Flat"


@register
class FaissHNSW(_Faiss):
    """faiss ``IndexHNSWFlat``: HNSW graph over float32 vectors."""

    name = "faiss-hnsw"
    build_params = {"M": 32, "ef_construction": 200}
    query_params = {"efSearch": 64}

    def _factory(self, dim: int, n: int) -> str:
        return f"HNSW{int(self.build_args['M'])},Flat"

    def _before_add(self) -> None:
        self.index.hnsw.efConstruction = int(self.build_args["ef_construction"])


def _auto_nlist(nlist: int, n: int) -> int:
    """``nlist`` or, when 0, about 5 sqrt(n) lists, capped so each list trains on
    at least 39 points (faiss's own minimum)."""
    if nlist:
        return int(nlist)
    return max(1, min(int(5 * math.sqrt(n)), n // 39))


@register
class FaissIVF(_Faiss):
    """faiss ``IndexIVFFlat``: inverted lists of float32 vectors (nlist 0 = auto)."""

    name = "faiss-ivf"
    build_params = {"nlist": 0}
    query_params = {"nprobe": 8}

    def _factory(self, dim: int, n: int) -> str:
        return f"IVF{_auto_nlist(self.build_args['nlist'], n)},Flat"


@register
class FaissIVFPQ(_Faiss):
    """faiss IVF with product-quantized codes, optional OPQ rotation and an exact
    float32 re-rank of ``k_factor_rf * k`` candidates (``refine``).

    ``m`` sub-quantizers of ``nbits`` bits each; 4 bits use the fast-scan layout.
    """

    name = "faiss-ivfpq"
    build_params = {"nlist": 0, "m": 32, "nbits": 4, "opq": True, "refine": True}
    query_params = {"nprobe": 8, "k_factor_rf": None}

    def _factory(self, dim: int, n: int) -> str:
        args = self.build_args
        m, nbits = int(args["m"]), int(args["nbits"])
        parts = [f"OPQ{m}"] if args["opq"] else []
        parts.append(f"IVF{_auto_nlist(args['nlist'], n)}")
        parts.append(f"PQ{m}x{nbits}" + ("fs" if nbits == 4 else ""))
        if args["refine"]:
            parts.append("RFlat")
        return ",".join(parts)


@register
class FaissCodec(_Faiss):
    """Any ``faiss.index_factory`` string, such as ``SQ8``, ``SQ4``, ``PQ16`` or
    ``OPQ16,PQ16`` (exhaustive scans over codes)."""

    name = "faiss-factory"
    build_params = {"factory": "SQ8"}
    query_params = {"nprobe": None, "efSearch": None, "k_factor_rf": None}

    def _factory(self, dim: int, n: int) -> str:
        return str(self.build_args["factory"])


# -------------------------------------------------------------------- hnswlib
@register
class Hnswlib(Adapter):
    """hnswlib HNSW over float32 vectors."""

    name = "hnswlib"
    requires = ("hnswlib",)
    build_params = {"M": 16, "ef_construction": 200}
    query_params = {"ef": 64}
    _spaces = {"cosine": "cosine", "euclidean": "l2", "sqeuclidean": "l2",
               "inner_product": "ip"}

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        import hnswlib

        args = self.build_args
        self.index = hnswlib.Index(space=self._spaces[self.metric],
                                   dim=database.shape[1])
        self.index.init_index(max_elements=database.shape[0], M=int(args["M"]),
                              ef_construction=int(args["ef_construction"]),
                              random_seed=100)
        self.index.add_items(database, np.arange(database.shape[0]),
                             num_threads=_cores(self.n_threads))
        self._apply_query_arguments()

    def _apply_query_arguments(self) -> None:
        if hasattr(self, "index"):
            self.index.set_ef(int(self.query_args["ef"]))

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        ids, _ = self.index.knn_query(queries, k=k, num_threads=_cores(self.n_threads))
        return as_ids(ids, self.n)

    def index_bytes(self) -> int | None:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "index.bin")
            self.index.save_index(path)
            return os.path.getsize(path)


# ------------------------------------------------------------------------ SVS
@register
class SvsVamana(Adapter):
    """Intel SVS ``Vamana`` over float32 vectors (``alpha`` None: 0.95 for inner
    product and cosine, 1.2 for L2)."""

    name = "svs-vamana"
    requires = ("svs",)
    build_params = {"graph_max_degree": 32, "window_size": 200, "alpha": None}
    query_params = {"search_window_size": 40}

    def _prepare(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return normalized(x) if self.metric == "cosine" else x

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        import svs

        is_l2 = "euclidean" in self.metric
        alpha = self.build_args["alpha"] or (1.2 if is_l2 else 0.95)
        params = svs.VamanaBuildParameters(
            graph_max_degree=int(self.build_args["graph_max_degree"]),
            window_size=int(self.build_args["window_size"]), alpha=float(alpha))
        distance = svs.DistanceType.L2 if is_l2 else svs.DistanceType.MIP
        self.index = svs.Vamana.build(params, self._prepare(database), distance,
                                      num_threads=_cores(self.n_threads))
        self._apply_query_arguments()

    def _apply_query_arguments(self) -> None:
        # SVS leaves the search window at 0 after a build: always set it.
        if hasattr(self, "index"):
            self.index.search_window_size = int(self.query_args["search_window_size"])

    def set_threads(self, n_threads: int | None) -> None:
        super().set_threads(n_threads)
        if hasattr(self, "index"):
            self.index.num_threads = _cores(n_threads)

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        ids, _ = self.index.search(self._prepare(queries), k)
        return as_ids(ids, self.n)

    def index_bytes(self) -> int | None:
        with tempfile.TemporaryDirectory() as folder:
            parts = [os.path.join(folder, name) for name in ("config", "graph", "data")]
            self.index.save(*parts)
            return _folder_bytes(folder)


# -------------------------------------------------------------------- usearch
@register
class Usearch(Adapter):
    """usearch HNSW with float32 storage."""

    name = "usearch"
    requires = ("usearch",)
    build_params = {"connectivity": 16, "expansion_add": 128}
    query_params = {"expansion_search": 64}
    _metrics = {"cosine": "cos", "euclidean": "l2sq", "sqeuclidean": "l2sq",
                "inner_product": "ip"}

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        from usearch.index import Index

        self.index = Index(ndim=database.shape[1], metric=self._metrics[self.metric],
                           dtype="f32",
                           connectivity=int(self.build_args["connectivity"]),
                           expansion_add=int(self.build_args["expansion_add"]))
        self.index.add(np.arange(database.shape[0]), database,
                       threads=_cores(self.n_threads))
        self._apply_query_arguments()

    def _apply_query_arguments(self) -> None:
        if hasattr(self, "index"):
            self.index.expansion_search = int(self.query_args["expansion_search"])

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        matches = self.index.search(queries, k, threads=_cores(self.n_threads))
        if not hasattr(matches, "counts"):  # one query gives one ``Matches``
            keys = as_ids(np.asarray(matches.keys).reshape(-1), self.n)[:k]
            ids = np.full((1, k), -1, dtype=np.int64)
            ids[0, : len(keys)] = keys
            return ids
        ids = as_ids(np.asarray(matches.keys).reshape(len(queries), -1), self.n)
        counts = np.asarray(matches.counts).reshape(-1)
        ids[np.arange(ids.shape[1])[None, :] >= counts[:, None]] = -1
        return ids

    def index_bytes(self) -> int | None:
        return int(self.index.serialized_length)


# ---------------------------------------------------------------- pynndescent
@register
class Pynndescent(Adapter):
    """pynndescent: a k-NN graph built by nearest-neighbour descent, then searched."""

    name = "pynndescent"
    requires = ("pynndescent",)
    build_params = {"n_neighbors": 30, "diversify_prob": 1.0,
                    "pruning_degree_multiplier": 1.5}
    query_params = {"epsilon": 0.1}
    _metrics = {"cosine": "cosine", "euclidean": "euclidean",
                "sqeuclidean": "euclidean", "inner_product": "dot"}

    def _build(self, database: NDArray[np.float32], learn_queries: Any) -> None:
        from pynndescent import NNDescent

        self.index = NNDescent(database, metric=self._metrics[self.metric],
                               random_state=0, n_jobs=_cores(self.n_threads),
                               **self.build_args)
        self.index.prepare()

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        epsilon = float(self.query_args["epsilon"])
        ids, _ = self.index.query(queries, k=k, epsilon=epsilon)
        return as_ids(ids, self.n)

    def index_bytes(self) -> int | None:
        graph = getattr(self.index, "_search_graph", None)
        data = getattr(self.index, "_raw_data", None)
        if graph is None or data is None:
            return None
        return int(data.nbytes + graph.data.nbytes + graph.indices.nbytes
                   + graph.indptr.nbytes)
