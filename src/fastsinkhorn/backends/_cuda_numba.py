"""Launcher of the Numba-CUDA batched small-problem Sinkhorn (:mod:`._cuda_numba_kernels`).

:func:`sinkhorn_small_batch` solves a whole ``(B, n, m)`` batch in one launch
(one thread block per problem). On a device it takes and returns CuPy arrays
(passed to Numba through ``__cuda_array_interface__``, no copy); under the
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) NumPy arrays, which is how the
tests run it without a device or CuPy. :func:`fits` is the one test of what
the kernels take; :func:`available` says whether they can run here.

Nothing here imports :mod:`numba.cuda` before it is called.
"""

import functools
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The most points on either side (the kernels' ``MAX_SIDE``; checked equal in the tests).
MAX_SIDE = 128
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class SmallBatchResult:
    """End state of each problem of a batch: arrays of the input's library."""

    plan: Any  # (B, n, m), the cost's dtype
    f: Any  # (B, n) float64, -inf at zero masses
    g: Any  # (B, m) float64
    n_iter: Any  # (B,) int64
    converged: Any  # (B,) bool
    error: Any  # (B,) float64: L1 error of the column marginal (rows exact)


def simulated():
    """Whether Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM``)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@functools.cache
def available():
    """Whether the kernels can run here: the simulator is on, or Numba sees a
    CUDA device and has NVVM to compile for it (a driver without the toolkit
    Numba needs would fail at the first launch instead)."""
    if simulated():
        return True
    try:
        from numba import cuda
        from numba.cuda.cudadrv import nvvm

        return bool(cuda.is_available() and nvvm.is_available())
    except Exception:  # pragma: no cover - broken CUDA install: not available
        return False


@functools.cache
def _lock_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` thread-safe (once per process).

    Numba's simulator (``kernelapi.FakeCUDAShared.array``) looks an allocation
    up by source line and creates it if missing, without a lock: threads of
    a launch's first block that race through it can each get a private
    array, and that block then computes with unshared "shared" memory (seen
    here as a wrong iteration count on problem 0). The same lookup, under a
    lock, restores the semantics the kernels rely on (and skips the
    simulator's stack walk). Never called on a device.
    """
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    allocate, lock = kernelapi.FakeCUDAShared.array, threading.Lock()

    def locked(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one buffer, no lookup
            return allocate(self, shape, dtype)
        caller = sys._getframe(1)  # the simulator's key: the allocating source line
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            res = self._allocations.get(key)
            if res is None:
                dtype = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = locked


def fits(M):
    """Whether the kernels take the cost ``M``: a (B, n, m) float32/float64 batch, ``n, m <= MAX_SIDE``."""
    return (getattr(M, "ndim", 0) == 3 and np.dtype(M.dtype) in _DTYPES and 0 < M.shape[1] <= MAX_SIDE
            and 0 < M.shape[2] <= MAX_SIDE and M.shape[0] > 0)


def _threads(n, m):
    """Threads per block: one per row and per column of the longer side, in
    whole warps on a device (the simulator runs every thread in Python, so it
    gets no idle ones)."""
    need = max(n, m)
    return need if simulated() else -(-need // 32) * 32


def _check(M, a, b, g0, reg, tol, max_iter):
    if not fits(M):
        raise ValueError(f"M must be a non-empty (B, n, m) float32/float64 batch with n, m <= {MAX_SIDE}, "
                         f"got shape {getattr(M, 'shape', None)} and dtype {getattr(M, 'dtype', None)}")
    if not M.flags.c_contiguous:
        raise ValueError("M must be C-contiguous (the kernels index it as p * n * m + i * m + j)")
    B, n, m = M.shape
    for name, x, shape in (("a", a, (B, n)), ("b", b, (B, m)), ("g0", g0, (B, m))):
        if x is not None and tuple(x.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    # the solvers validated these (core.checks); a kernel given max_iter = 0
    # would return uninitialised potentials, so the precondition is kept here
    if not (0 < reg < np.inf and 0 <= tol < np.inf and max_iter >= 1 and int(max_iter) == max_iter):
        raise ValueError(f"sinkhorn_small_batch needs 0 < reg < inf, 0 <= tol < inf and an integer "
                         f"max_iter >= 1, got reg={reg!r}, tol={tol!r}, max_iter={max_iter!r}")


def sinkhorn_small_batch(M, a, b, reg, tol, max_iter, g0=None):
    """Log-domain Sinkhorn on every problem of a batch, in one launch.

    Parameters
    ----------
    M : array (B, n, m), float32 or float64, C-contiguous
        Finite costs; ``n, m <= MAX_SIDE``. CuPy on a device, NumPy under the simulator.
    a, b : arrays (B, n), (B, m)
        Masses (each problem's summing to the same total); zeros allowed (padding).
    reg : float
        Entropic regularisation.
    tol : float
        Each problem stops once the L1 error of its column marginal is at most ``tol``.
    max_iter : int
        Iterations at most per problem (>= 1).
    g0 : array (B, m), optional
        Starting column potentials (default 0); the first half-step sets ``f``.

    Returns
    -------
    SmallBatchResult
        Arrays of the library of ``M``. Inputs are not modified.
    """
    _check(M, a, b, g0, reg, tol, max_iter)
    from numba.core.errors import NumbaPerformanceWarning

    from . import _cuda_numba_kernels as kernels

    B, n, m = M.shape
    xp = np if isinstance(M, np.ndarray) else _array_module(M)
    a = xp.ascontiguousarray(a, dtype=xp.float64)
    b = xp.ascontiguousarray(b, dtype=xp.float64)
    g0 = xp.zeros((B, m)) if g0 is None else xp.ascontiguousarray(g0, dtype=xp.float64)
    outs = (xp.empty(M.shape, M.dtype), xp.empty((B, n)), xp.empty((B, m)),
            xp.empty(B, xp.int64), xp.empty(B, xp.bool_), xp.empty(B))
    kernel = kernels.sinkhorn_tiled if n * m <= kernels.TILE_ENTRIES else kernels.sinkhorn_global
    scalars = (np.float64(1.0 / reg), np.float64(tol), np.int64(max_iter))
    with warnings.catch_warnings():
        # a batch of fewer problems than the device has multiprocessors is a
        # valid call, and Numba's low-occupancy warning would reach the user
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        return SmallBatchResult(*_launch(kernel, B, _threads(n, m), (M, a, b, g0), scalars, outs, xp))


def _launch(kernel, blocks, threads, inputs, scalars, outs, xp):
    """One launch; the outputs, as host arrays for NumPy inputs."""
    if xp is np:  # simulator (or NumPy on a device): copy in, copy back
        from numba import cuda

        if simulated():
            _lock_simulator_shared_arrays()
        dev_out = [cuda.to_device(x) for x in outs]
        kernel[blocks, threads](*(cuda.to_device(x) for x in inputs), *scalars, *dev_out)
        return tuple(d.copy_to_host() for d in dev_out)
    # CuPy: device arrays straight through __cuda_array_interface__
    kernel[blocks, threads](*inputs, *scalars, *outs)
    return outs


def _array_module(M):
    """:mod:`cupy` for a CuPy array (imported only then)."""
    import cupy

    if not isinstance(M, cupy.ndarray):
        raise TypeError(f"M must be a NumPy or CuPy array, got {type(M).__name__}")
    return cupy
