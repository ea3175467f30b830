"""Bound numba's (and, when threadpoolctl is installed, BLAS's) thread count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba


@contextlib.contextmanager
def limit_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with at most ``n_threads`` threads, then restore the old count.

    ``None`` leaves every pool as it is. BLAS pools are limited only when the
    optional ``threadpoolctl`` package is importable.
    """
    if n_threads is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(limits=n_threads, user_api="blas"):
                yield
    finally:
        numba.set_num_threads(previous)
