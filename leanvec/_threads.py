"""Bound numba's (and, when threadpoolctl is installed, BLAS's) thread count."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import numba

# Serialises parallel kernels when numba's threading layer cannot run two at once.
_layer_lock = threading.RLock()


@functools.lru_cache(maxsize=1)
def _serial_layer() -> bool:
    """True when numba runs parallel kernels on its "workqueue" layer (no OpenMP or
    TBB found), which aborts the process if two threads launch kernels at once."""
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        return numba.threading_layer() == "workqueue"
    except Exception:  # an unknown numba: assume the worst, stay correct
        return True


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """A threadpoolctl controller, built once on first use (None without the package).

    Building one scans the loaded libraries (about a millisecond), so it is reused.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def limit_threads(n_threads: int | None, blas: bool = True) -> Iterator[None]:
    """Run the block with at most ``n_threads`` threads, then restore the old count.

    ``None`` leaves every pool as it is. BLAS pools are limited only when the
    optional ``threadpoolctl`` package is importable and ``blas`` is true (a
    limit costs tens of microseconds: calls whose BLAS work is negligible, such
    as one query, skip it). On numba's "workqueue" threading layer, blocks from
    different threads run one at a time.
    """
    guard = _layer_lock if _serial_layer() else contextlib.nullcontext()
    with guard:
        if n_threads is None:
            yield
            return
        previous = numba.get_num_threads()
        wanted = min(n_threads, numba.config.NUMBA_NUM_THREADS)
        if wanted != previous:
            numba.set_num_threads(wanted)
        try:
            controller = _blas_controller() if blas else None
            if controller is None:
                yield
            else:
                with controller.limit(limits=n_threads, user_api="blas"):
                    yield
        finally:
            if wanted != previous:
                numba.set_num_threads(previous)
