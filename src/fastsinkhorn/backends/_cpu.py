"""CPU backend: Numba kernels, and NumPy's SIMD ``exp`` for the exp passes.

The streaming kernels (log-sum-exp, fused scaling pass, scale, selection,
sparse products) are Numba. The passes that evaluate ``exp`` on every entry
(``plan`` and the SNS ``dense_pass``) run NumPy's vectorised ``exp`` (much
faster than Numba's scalar libm call: benchmarks/RESULTS.md, section 1,
times iterations with each) on cache-sized float64 blocks of rows
(``_blocks.CPU_EXP_BLOCK_ENTRIES``), in a few threads (NumPy and the
``nogil`` Numba kernels release the GIL); no n x m temporary is created.
Point-cloud members (``pc_``) run the same block machinery, with each
block's cost computed from the coordinates (``_cpu_cloud_kernels``), so
their memory is O((n + m) d) plus the blocks.

Threads: every pass is cut into ``_threads.blocks(work, rows)`` blocks and
runs on at most one thread per block (see ``_threads``): small passes run on
the calling thread, and the answer does not depend on the thread count.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

from . import (
    _blocks,
    _threads,  # its import starts Numba's threads (short spin)
)
from . import _cpu_batch_kernels as batch
from . import _cpu_cloud_kernels as cloud
from . import _cpu_kernels as kern
from ._threads import blocks

#: Log-sum-exp terms below exp(-460) (1e-200) of the largest are clamped there.
_LSE_CUT = -460.0


def _vec(x):
    return np.ascontiguousarray(x, dtype=np.float64)


def _cut(dtype):
    """Exponent below which entries are flushed to zero (see ``_cpu_kernels``)."""
    return -87.0 if dtype == np.float32 else -460.0


@cache
def _pool(workers):
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastsinkhorn")


# A forked child inherits the pools but none of their threads (a map on them
# would wait forever): it makes its own.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.cache_clear)


def _row_blocks(n, m, work):
    """Run ``work(rows, buf, state)`` over blocks of rows, in a few threads.

    ``buf`` is a float64 scratch block of at least ``rows`` rows (about
    ``_blocks.CPU_EXP_BLOCK_ENTRIES`` entries: L2-sized), ``state`` a zeroed
    length-m float64 accumulator. The blocks are dealt,
    in order, to ``_threads.blocks(n * m, ...)`` groups with one state each
    (run by at most one thread per group); returns the groups' states, in
    order: their sum does not depend on the thread count.
    """
    step = max(1, _blocks.CPU_EXP_BLOCK_ENTRIES // m)
    starts = range(0, n, step)
    groups = blocks(n * m, len(starts))
    workers = _threads.threads(groups)

    def run(group):
        buf = np.empty((step, m))
        state = np.zeros(m)
        for s in starts[group * len(starts) // groups:(group + 1) * len(starts) // groups]:
            rows = slice(s, min(n, s + step))
            work(rows, buf[: rows.stop - rows.start], state)
        return state

    if workers == 1:
        return [run(group) for group in range(groups)]
    return list(_pool(workers).map(run, range(groups)))


def _exp_blocks(n, m, exponent, f, g, cut, work):
    """Evaluate the plan ``exp(exponent)`` block by block of rows.

    ``exponent(rows, fr, gc, P)`` writes ``(fr_i + gc_j - C_ij) / reg`` for
    the block into ``P``, with ``fr = f[rows]`` and ``gc`` = ``g`` with its
    ``-inf`` replaced by 0 (so every argument is finite). ``work(rows, P,
    state)`` then consumes each float64 block of the plan. Entries below
    ``exp(cut)`` (~1e-200 in float64) come as ``exp(cut)``: far below any
    tolerance, and never subnormal (``plan`` stores them as exact zeros);
    rows and columns of zero mass (``-inf`` potentials) are exact zeros.
    Returns the groups' states.
    """
    empty_cols = np.flatnonzero(g == -np.inf)  # zero-mass columns (usually none)
    gc = np.where(g == -np.inf, 0.0, g)

    def block(rows, P, state):
        exponent(rows, f[rows], gc, P)
        # Clamp at the cutoff rather than mask to -inf: NumPy's SIMD exp
        # leaves its fast path on -inf/underflow lanes, several times slower.
        np.maximum(P, cut, out=P)
        # zero-mass columns (g = -inf, computed with 0) may overflow: zeroed below
        with np.errstate(over="ignore" if empty_cols.size else "warn"):
            np.exp(P, out=P)
        P[f[rows] == -np.inf] = 0.0  # zero masses: exact zeros
        if empty_cols.size:
            P[:, empty_cols] = 0.0
        work(rows, P, state)

    return _row_blocks(n, m, block)


def _dense_exponent(M, reg):
    inv = 1.0 / reg

    def exponent(rows, fr, gc, P):
        np.subtract(fr[:, None], M[rows], out=P)
        P += gc
        P *= inv

    return exponent


def _cloud_exponent(x, y, cost, reg):
    yT = np.ascontiguousarray(y.T)
    inv = 1.0 / reg

    def exponent(rows, fr, gc, P):
        cloud.exponent_rows(x[rows], yT, cost.code, float(cost.p), float(cost.scale), fr, gc, inv, P)

    return exponent


def _select_top_k(n, m, exponent, f, g, k):
    """The SNS dense pass over the plan given by ``exponent`` (see ``dense_pass``)."""
    k = max(1, min(int(k), m))
    r = np.zeros(n)
    idx = np.zeros((n, k), dtype=np.int64)
    val = np.zeros((n, k))

    def select(rows, P, col_sums):
        kern.select_rows(P, k, r[rows], col_sums, idx[rows], val[rows])

    c = sum(_exp_blocks(n, m, exponent, _vec(f), _vec(g), _cut(np.float64), select))
    return r, c, float(r.sum()), idx, val


class CPUBackend:
    """Numba/NumPy implementation of the kernel contract of ``ReferenceBackend``."""

    name = "cpu"
    xp = np
    check_every = 1  # the convergence check is O(n) and needs no sync
    point_clouds = True  # capability: the pc_ members (see _contract)
    small_batches = False  # no fused batched Sinkhorn: the driver's loop runs

    # Dense members take a leading batch axis ((B, n, m) matrices, (B, n)
    # vectors): one parallel pass over all problems (_cpu_batch_kernels).
    # Threads (see ``_threads``): the loops over rows or problems need no
    # blocks of their own, each row's result being the same on any thread;
    # one block runs the serial twin, which wakes no thread.
    def lse_rows(self, M, g, reg):
        if M.ndim == 3:
            return _batch(M, _row_blocks_of(M), "lse_rows", M, _vec(g), float(reg))
        return _threads.run(kern.lse_rows, _row_blocks_of(M), M, _vec(g), float(reg))

    def lse_cols(self, M, f, reg):
        if M.ndim == 3:
            return _batch(M, blocks(M.size, M.shape[0]), "lse_cols", M, _vec(f), float(reg))
        nb = blocks(M.size, M.shape[0])
        return _threads.run(kern.lse_cols, nb, M, _vec(f), float(reg), nb)

    def plan(self, M, f, g, reg, out):
        if M.ndim == 3:
            return _batch(M, _row_blocks_of(M), "plan", M, _vec(f), _vec(g), float(reg), _cut(out.dtype), out)

        floor = np.exp(_cut(out.dtype))

        def store(rows, P, state):
            # entries clamped at exp(cut) are exact zeros in a kernel or plan:
            # a forbidden (+inf) or huge cost must carry no mass (its 1e-200,
            # times scalings or the cost itself, would not be negligible)
            P[P <= floor] = 0.0
            out[rows] = P

        _exp_blocks(*M.shape, _dense_exponent(M, float(reg)), _vec(f), _vec(g), _cut(out.dtype), store)
        return out

    def scaling_pass(self, K, v, a, u, tau=1.0):
        tau = float(tau)
        if K.ndim == 3:
            return _batch(K, blocks(K.size, K.shape[0]), "scaling_pass", K, _vec(v), _vec(a), u, tau)
        nb = blocks(K.size, K.shape[0])
        if nb == 1:
            return kern.scaling_pass_serial(K, _vec(v), _vec(a), u, 1, tau)
        return _threads.run(kern.scaling_pass, nb, K, _vec(v), _vec(a), u, nb, tau)

    def scale(self, K, u, v, out):
        nb = _row_blocks_of(K)
        if K.ndim == 3:
            return _batch(K, nb, "scale", K, _vec(u), _vec(v), out)
        if nb == 1:
            return kern.scale_serial(K, _vec(u), _vec(v), out)
        return _threads.run(kern.scale, nb, K, _vec(u), _vec(v), out)

    def dense_pass(self, M, f, g, reg, k):
        return _select_top_k(*M.shape, _dense_exponent(M, float(reg)), f, g, k)

    def reduction_offsets(self, M):
        u = M.min(axis=1).astype(np.float64)  # NumPy's SIMD min
        nb = blocks(M.size, M.shape[0])
        return u, _threads.run(kern.column_minima_reduced, nb, M, u, nb)

    def largest_reduced_cost(self, M, u, v, cutoff):
        v = np.where(v < np.inf, v, 0.0)
        nb = blocks(M.size, M.shape[0])
        return float(_threads.run(kern.largest_reduced_cost, nb, M, _vec(u), v, float(cutoff), nb))

    def row_spreads(self, M, u, v, rows, quantile):
        return kern.row_spreads(M, _vec(u), _vec(v), np.ascontiguousarray(rows, dtype=np.int64), float(quantile))

    # -- point clouds: the cost of each block of rows computed on the fly
    def pc_cost_rows(self, x, y, cost, start, stop):
        out = np.empty((stop - start, y.shape[0]))
        cloud.cost_rows(x[start:stop], np.ascontiguousarray(y.T), cost.code, float(cost.p),
                        float(cost.scale), out)
        return out

    def pc_lse_rows(self, x, y, cost, g, reg):
        n, m = x.shape[0], y.shape[0]
        yT, h, out = np.ascontiguousarray(y.T), _vec(g), np.empty(n)
        args = (cost.code, float(cost.p), float(cost.scale), h, 1.0 / float(reg), _LSE_CUT)

        def lse(rows, P, state):
            top = out[rows]
            cloud.shifted_exponent_rows(x[rows], yT, *args, P, top)
            np.exp(P, out=P)
            with np.errstate(divide="ignore"):
                top += np.log(P.sum(axis=1))  # rows of -inf stay -inf

        _row_blocks(n, m, lse)
        return out

    def pc_dense_pass(self, x, y, cost, f, g, reg, k):
        return _select_top_k(x.shape[0], y.shape[0], _cloud_exponent(x, y, cost, float(reg)), f, g, k)

    def ell_matvec(self, idx, val, x):
        nb = blocks(idx.size, idx.shape[0])
        if nb == 1:
            return kern.ell_matvec(idx, val, _vec(x))
        return _threads.run(kern.ell_matvec_parallel, nb, idx, val, _vec(x))

    def ell_rmatvec(self, idx, val, y, m):
        nb = blocks(idx.size, idx.shape[0])
        if nb == 1:
            return kern.ell_rmatvec(idx, val, _vec(y), int(m))
        return _threads.run(kern.ell_rmatvec_parallel, nb, idx, val, _vec(y), int(m), nb)


def _row_blocks_of(M):
    """Blocks of a pass over every entry of ``M`` (2-D, or a batch) that splits its rows."""
    return blocks(M.size, M.size // M.shape[-1])


def _batch(M, nb, name, *args):
    """The batch kernel ``name`` on ``nb`` blocks' threads; its serial twin for one block."""
    if nb == 1:
        return getattr(batch, name + "_serial")(*args)
    return _threads.run(getattr(batch, name), nb, *args)
