"""leanvec: fast nearest-neighbour search over embeddings made small."""

from . import datasets
from ._result import SearchResult
from .evaluation import annb_recall_at_k, recall_at_k, time_queries
from .compressed import CompressedIndex
from .exact import FlatIndex, exact_knn_graph, exact_search
from .index import Index, load
from .lvq import LVQ
from .pq import LR2VQ, PQ, estimate_dims
from .projection import LeanVec

__version__ = "0.1.0"

__all__ = [
    "CompressedIndex",
    "LR2VQ",
    "LVQ",
    "PQ",
    "estimate_dims",
    "FlatIndex",
    "Index",
    "LeanVec",
    "SearchResult",
    "annb_recall_at_k",
    "datasets",
    "exact_knn_graph",
    "exact_search",
    "load",
    "recall_at_k",
    "time_queries",
]
