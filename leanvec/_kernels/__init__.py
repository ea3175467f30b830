"""Numba kernels: arrays in, arrays out, no validation (the Python layer checks)."""

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
