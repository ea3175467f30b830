"""The prefetch intrinsic: a hint only, so results must not change, for any dtype
and any row, including the last line of the last row."""

import numpy as np
import pytest
from numba import njit

from leanvec._kernels.memory import prefetch_items, prefetch_rows


@njit(cache=False)
def _row_sums(arr, ids):
    prefetch_rows(arr, ids, ids.shape[0])
    out = np.zeros(ids.shape[0])
    for t in range(ids.shape[0]):
        for j in range(arr.shape[1]):
            out[t] += arr[ids[t], j]
    return out


@njit(cache=False)
def _picked(values, ids):
    prefetch_items(values, ids, ids.shape[0])
    return values[ids]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_prefetch_leaves_results_unchanged(rng, dtype):
    arr = rng.integers(0, 100, size=(37, 129)).astype(dtype)
    ids = np.array([0, 36, 5, 5, 36], dtype=np.int32)
    np.testing.assert_allclose(_row_sums(arr, ids), arr[ids].sum(axis=1, dtype=np.float64))
    values = arr[:, 0].copy()
    np.testing.assert_array_equal(_picked(values, ids.astype(np.int64)), values[ids])


def test_prefetch_of_no_rows_and_one_column(rng):
    arr = rng.random((3, 1)).astype(np.float32)
    assert _row_sums(arr, np.zeros(0, dtype=np.int64)).shape == (0,)
    np.testing.assert_allclose(_row_sums(arr, np.array([2])), arr[2])
