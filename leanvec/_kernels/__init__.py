"""Numba kernels: arrays in, arrays out, no validation (the Python layer checks)."""

import atexit
import logging
import shutil
import tempfile

import numba
from numba.core.caching import FunctionCache


def _probe() -> None:
    """A plain function beside the kernels: numba's cache locators are tried on it."""


def _ensure_numba_cache() -> None:
    """Give numba a private cache folder when it cannot cache next to the kernels.

    ``@njit(cache=True)`` raises at import when neither the package folder (a
    read-only install) nor the user cache folder (no writable home) is usable and
    ``NUMBA_CACHE_DIR`` is unset. Then compiled kernels go to a temporary folder
    removed at exit: the library works, each process compiles once.
    """
    try:
        FunctionCache(_probe)
    except RuntimeError:
        folder = tempfile.mkdtemp(prefix="leanvec-numba-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        numba.config.CACHE_DIR = folder
        logging.getLogger(__name__).info(
            "numba cannot cache beside %s or in the user cache; compiled kernels "
            "go to %s for this process", __file__, folder)


_ensure_numba_cache()

# fastmath without "nnan"/"ninf": with them LLVM may drop NaN and infinity checks.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Metric codes passed to kernels.
SQEUCLIDEAN = 0
EUCLIDEAN = 1
INNER_PRODUCT = 2
COSINE = 3

METRIC_CODES = {
    "sqeuclidean": SQEUCLIDEAN,
    "euclidean": EUCLIDEAN,
    "inner_product": INNER_PRODUCT,
    "cosine": COSINE,
}
