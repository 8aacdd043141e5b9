"""CPU backend: Numba kernels, and NumPy's SIMD ``exp`` for the exp passes.

The streaming kernels (log-sum-exp, fused scaling pass, scale, selection,
sparse products) are Numba. The passes that evaluate ``exp`` on every entry
(``plan`` and the SNS ``dense_pass``) run NumPy's vectorised ``exp`` (about
5x Numba's scalar libm call on this hardware) on cache-sized float64 blocks
of rows, in a few threads (NumPy and the ``nogil`` Numba kernels release the
GIL); no n x m temporary is created.
"""

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from numba import get_num_threads

from . import _cpu_kernels as kern

#: Matrices with fewer entries run the serial kernels (no thread launch).
SERIAL_BELOW = 1 << 17
#: Entries per float64 block of the exp passes (512 KiB: stays in L2).
BLOCK_ENTRIES = 1 << 16


def _vec(x):
    return np.ascontiguousarray(x, dtype=np.float64)


def _cut(dtype):
    """Exponent below which entries are flushed to zero (see ``_cpu_kernels``)."""
    return -87.0 if dtype == np.float32 else -460.0


@lru_cache(maxsize=None)
def _pool(workers):
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastsinkhorn")


def _exp_blocks(M, f, g, reg, cut, work):
    """Evaluate ``exp((f_i + g_j - M_ij) / reg)`` block by block of rows.

    ``work(rows, P, state)`` consumes each float64 block ``P``. Entries below
    ``exp(cut)`` (~1e-200 in float64) are stored as ``exp(cut)``: far below
    any tolerance, and never subnormal; rows and columns of zero mass
    (``-inf`` potentials) are exact zeros. Blocks are dealt round-robin to threads,
    each with its own ``state`` (a zeroed length-m float64 accumulator), and
    the states are returned.
    """
    n, m = M.shape
    step = max(1, BLOCK_ENTRIES // m)
    blocks = [slice(s, min(n, s + step)) for s in range(0, n, step)]
    workers = 1 if M.size < SERIAL_BELOW else min(get_num_threads(), len(blocks))
    inv = 1.0 / reg

    empty_cols = np.flatnonzero(g == -np.inf)  # zero-mass columns (usually none)
    gc = np.where(g == -np.inf, 0.0, g)  # finite, so every argument below is finite

    def run(t):
        buf = np.empty((step, m))
        state = np.zeros(m)
        for rows in blocks[t::workers]:
            P = buf[: rows.stop - rows.start]
            np.subtract(f[rows, None], M[rows], out=P)
            P += gc
            P *= inv
            # Clamp at the cutoff rather than mask to -inf: NumPy's SIMD exp
            # leaves its fast path on -inf/underflow lanes (~6x slower here).
            np.maximum(P, cut, out=P)
            # zero-mass columns (g = -inf, computed with 0) may overflow: zeroed below
            with np.errstate(over="ignore" if empty_cols.size else "warn"):
                np.exp(P, out=P)
            P[f[rows] == -np.inf] = 0.0  # zero masses: exact zeros
            if empty_cols.size:
                P[:, empty_cols] = 0.0
            work(rows, P, state)
        return state

    if workers == 1:
        return [run(0)]
    return list(_pool(workers).map(run, range(workers)))


class CPUBackend:
    """Numba/NumPy implementation of the kernel contract of ``ReferenceBackend``."""

    name = "cpu"
    xp = np
    check_every = 1  # the convergence check is O(n) and needs no sync

    def lse_rows(self, M, g, reg):
        return kern.lse_rows(M, _vec(g), float(reg))

    def lse_cols(self, M, f, reg):
        return kern.lse_cols(M, _vec(f), float(reg), get_num_threads())

    def plan(self, M, f, g, reg, out):
        def store(rows, P, state):
            out[rows] = P

        _exp_blocks(M, _vec(f), _vec(g), float(reg), _cut(out.dtype), store)
        return out

    def scaling_pass(self, K, v, a, u):
        if K.size < SERIAL_BELOW:
            return kern.scaling_pass_serial(K, _vec(v), _vec(a), u, 1)
        return kern.scaling_pass(K, _vec(v), _vec(a), u, get_num_threads())

    def scale(self, K, u, v, out):
        scale = kern.scale_serial if K.size < SERIAL_BELOW else kern.scale
        return scale(K, _vec(u), _vec(v), out)

    def dense_pass(self, M, f, g, reg, k):
        n, m = M.shape
        k = max(1, min(int(k), m))
        r = np.zeros(n)
        idx = np.zeros((n, k), dtype=np.int64)
        val = np.zeros((n, k))

        def select(rows, P, col_sums):
            kern.select_rows(P, k, r[rows], col_sums, idx[rows], val[rows])

        c = sum(_exp_blocks(M, _vec(f), _vec(g), float(reg), _cut(np.float64), select))
        return r, c, float(r.sum()), idx, val

    def ell_matvec(self, idx, val, x):
        if idx.size < SERIAL_BELOW:
            return kern.ell_matvec(idx, val, _vec(x))
        return kern.ell_matvec_parallel(idx, val, _vec(x))

    def ell_rmatvec(self, idx, val, y, m):
        if idx.size < SERIAL_BELOW:
            return kern.ell_rmatvec(idx, val, _vec(y), int(m))
        return kern.ell_rmatvec_parallel(idx, val, _vec(y), int(m), get_num_threads())
