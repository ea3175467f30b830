"""One small interface in front of every benchmarked library, and their registry.

An adapter wraps one index type of one library. The runner drives it the same way
for every library: construct with the build arguments, :meth:`Adapter.fit`,
then for each point of the query sweep :meth:`Adapter.set_query_arguments` followed
by :meth:`Adapter.batch_query` (all queries at once) or :meth:`Adapter.query` (one
at a time). Adapters return ids only; the runner recomputes distances from the
vectors, as ann-benchmarks does, so no library's own distance units matter.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean", "sqeuclidean", "inner_product")

REGISTRY: dict[str, type[Adapter]] = {}


class Adapter:
    """Base class: a library's index behind fit / set_query_arguments / query.

    Subclasses set the class attributes and override :meth:`_build`,
    :meth:`batch_query` and, when the library has them, :meth:`query`,
    :meth:`_apply_query_arguments`, :meth:`set_threads` and :meth:`index_bytes`.

    Parameters
    ----------
    metric : str
        A leanvec metric name (see ``METRICS``).
    **build_args
        Constructor arguments; names must be keys of ``build_params``.
    """

    #: Registry key used in definition files.
    name: ClassVar[str] = ""
    #: Importable modules the adapter needs (a missing one skips the adapter).
    requires: ClassVar[tuple[str, ...]] = ()
    #: Attributes of the ``leanvec`` package the adapter needs.
    requires_leanvec: ClassVar[tuple[str, ...]] = ()
    #: Metrics the library supports.
    metrics: ClassVar[tuple[str, ...]] = METRICS
    #: Build arguments and their defaults.
    build_params: ClassVar[Mapping[str, Any]] = {}
    #: Query arguments and their defaults.
    query_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, metric: str, **build_args: Any) -> None:
        unknown = sorted(set(build_args) - set(self.build_params))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown build argument {unknown[0]!r}; valid: "
                + (", ".join(self.build_params) or "none")
            )
        self.metric = metric
        self.build_args = {**self.build_params, **build_args}
        self.query_args: dict[str, Any] = dict(self.query_params)
        self.n_threads: int | None = None
        self.n = 0

    # ------------------------------------------------------------ building
    def warm_up(
        self, database: NDArray[np.float32], learn_queries: NDArray[np.float32] | None
    ) -> None:
        """Run once before the timed build; JIT-compiled libraries compile here, so
        the build time measures building, as it does for precompiled peers."""

    def fit(
        self, database: NDArray[np.float32], learn_queries: NDArray[np.float32] | None
    ) -> None:
        """Build the index over ``database`` (n, dim) float32.

        ``learn_queries`` (m, dim) float32 or None are sample queries for methods
        that fit to the query distribution; other adapters ignore them.
        """
        self.n = int(database.shape[0])
        self._build(np.ascontiguousarray(database, dtype=np.float32), learn_queries)

    def _build(
        self, database: NDArray[np.float32], learn_queries: NDArray[np.float32] | None
    ) -> None:
        raise TypeError(f"{type(self).__name__} does not implement _build")

    # ------------------------------------------------------------ querying
    def set_query_arguments(self, **query_args: Any) -> None:
        """Set the search-time parameters for the following queries."""
        unknown = sorted(set(query_args) - set(self.query_params))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown query argument {unknown[0]!r}; valid: "
                + (", ".join(self.query_params) or "none")
            )
        self.query_args = {**self.query_params, **query_args}
        self._apply_query_arguments()

    def _apply_query_arguments(self) -> None:
        """Push ``self.query_args`` into the library (default: nothing to push)."""

    def batch_query(self, queries: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        """Return the ids (n_queries, k) of the ``k`` nearest neighbours, -1 padded."""
        raise TypeError(f"{type(self).__name__} does not implement batch_query")

    def query(self, query: NDArray[np.float32], k: int) -> NDArray[np.int64]:
        """Return the ids (k,) for one query of shape (1, dim)."""
        return self.batch_query(query, k)[0]

    # ------------------------------------------------------------ resources
    def set_threads(self, n_threads: int | None) -> None:
        """Bound the threads the library uses from now on (None: all cores)."""
        self.n_threads = n_threads

    def index_bytes(self) -> int | None:
        """Size of the index (vectors, codes and graph) in bytes, or None if unknown."""
        return None

    def describe(self) -> str:
        """Label of the built index, such as ``hnswlib(M=16, ef_construction=200)``."""
        return f"{self.name}({_format_args(self.build_args)})"


def _format_args(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in args.items())


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: add ``cls`` to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"adapter name {cls.name!r} is empty or already registered")
    REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Adapter]]:
    """Return every known adapter by name (importing the built-in ones)."""
    importlib.import_module("bench.ours")
    importlib.import_module("bench.peers")
    return REGISTRY


def get_adapter(name: str) -> type[Adapter]:
    """Return the adapter class called ``name``; ValueError lists the valid names."""
    known = registry()
    if name not in known:
        raise ValueError(
            f"unknown algorithm {name!r}; valid: " + ", ".join(sorted(known))
        )
    return known[name]


def unavailable_reason(cls: type[Adapter], metric: str | None = None) -> str | None:
    """Why ``cls`` cannot run here (a missing module or metric), or None if it can."""
    for module in cls.requires:
        if importlib.util.find_spec(module) is None:
            return (f"not installed (module {module!r} not found; "
                    "pip install leanvec[bench])")
    if cls.requires_leanvec:
        leanvec = importlib.import_module("leanvec")
        missing = [attr for attr in cls.requires_leanvec if not hasattr(leanvec, attr)]
        if missing:
            return f"not available in this leanvec (no leanvec.{missing[0]})"
    if metric is not None and metric not in cls.metrics:
        return f"metric {metric!r} not supported (supports {', '.join(cls.metrics)})"
    return None


def normalized(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows scaled to unit L2 norm (zero rows stay zero), C-contiguous float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def as_ids(ids: NDArray, n: int) -> NDArray[np.int64]:
    """Library ids as int64 with anything outside [0, n) replaced by -1."""
    out = np.asarray(ids).astype(np.int64, copy=True)
    out[(out < 0) | (out >= n)] = -1
    return out
