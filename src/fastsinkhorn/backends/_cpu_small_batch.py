"""A batch of small dense SNS solves, compiled.

:func:`small_sns_batch` runs :func:`~fastsinkhorn.backends._cpu_small_kernels.small_sns`
on every problem of a ``(B, n, m)`` batch: contiguous groups of problems,
each group one call of the serial ``nogil`` kernel :func:`small_sns_problems`,
on a few threads (:func:`fastsinkhorn.backends._threads.threads`: no more
than the cores other work leaves free). Each solve owns its buffers, so the
problems are independent and the answer does not depend on the thread
count (compiling a ``prange`` over the problems took 19.5 s here, these 8 s).
Each problem is first reduced as :func:`fastsinkhorn.algorithms.sns.small.run_small`
reduces one: its rows and columns of zero mass removed (they carry no
potential: ``-inf`` on return), and transposed when it has more rows than
columns (the Schur complement is that of the smaller side). Every problem runs its own
annealing schedule and stops on its own tolerance.
"""

import numpy as np
from numba import njit

from . import _threads
from ._cpu import _pool
from ._cpu_small_kernels import small_sns


@njit(cache=True)
def _reduced(M, a, b, f, g):
    """Problem ``(M, a, b)`` without its zero masses, with ``n <= m``:
    ``(sub, a_s, b_s, f_s, g_s, rows, cols, flip)`` (``f_s``, ``g_s`` the
    starting potentials of the kept rows and columns, swapped with the sides
    when ``flip``)."""
    rows, cols = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    flip = rows.size > cols.size
    n, m = (cols.size, rows.size) if flip else (rows.size, cols.size)
    sub = np.empty((n, m))
    for i in range(rows.size):
        for j in range(cols.size):
            if flip:
                sub[j, i] = M[rows[i], cols[j]]
            else:
                sub[i, j] = M[rows[i], cols[j]]
    a_r, b_c, f_r, g_c = a[rows].copy(), b[cols].copy(), f[rows].copy(), g[cols].copy()
    if flip:
        return sub, b_c, a_r, g_c, f_r, rows, cols, flip
    return sub, a_r, b_c, f_r, g_c, rows, cols, flip


def small_sns_batch(M, a, b, regs, n_regs, tol, stage_tol, switch_tol, warmup_iter, max_iter, f, g, armijo,
                    max_backtracks, shift, max_step, fallback_iter):
    """SNS on every problem of a batch of small dense problems (see the module).

    Parameters
    ----------
    M : float64 (B, n, m), C-contiguous, finite
    a, b : float64 (B, n), (B, m), non-negative, equal sums per problem
        (each problem with at least one positive mass on each side).
    regs : float64 (B, S)
        Problem ``p``'s annealing schedule in ``regs[p, :n_regs[p]]``,
        ending at the target ``reg``.
    n_regs : int64 (B,)
    tol, stage_tol, switch_tol, warmup_iter, max_iter
        As :func:`~fastsinkhorn.backends._cpu_small_kernels.small_sns`'s,
        the same for every problem.
    f, g : float64 (B, n), (B, m), C-contiguous
        Starting potentials, overwritten by the solutions (``-inf`` where
        the mass is zero).
    armijo, max_backtracks, shift, max_step, fallback_iter
        SNS's Newton options, as ``small_sns``'s.

    Returns
    -------
    tuple of int64 (B,) arrays
        ``(n_sinkhorn, n_newton, status)`` of each problem.
    """
    B = M.shape[0]
    options = (tol, stage_tol, switch_tol, warmup_iter, max_iter, armijo, max_backtracks, shift, max_step,
               fallback_iter)
    groups = _threads.threads(B)
    bounds = [(k * B // groups, (k + 1) * B // groups) for k in range(groups)]

    def run(bound):
        lo, hi = bound
        return small_sns_problems(M[lo:hi], a[lo:hi], b[lo:hi], regs[lo:hi], n_regs[lo:hi], f[lo:hi], g[lo:hi],
                                  *options)

    parts = [run(bound) for bound in bounds] if groups == 1 else list(_pool(groups).map(run, bounds))
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(3))


@njit(cache=True, nogil=True)
def small_sns_problems(M, a, b, regs, n_regs, f, g, tol, stage_tol, switch_tol, warmup_iter, max_iter, armijo,
                       max_backtracks, shift, max_step, fallback_iter):
    """:func:`small_sns_batch` on the problems of ``M``, one after the other
    (the arguments as its; ``nogil``: groups of problems run in parallel threads)."""
    B = M.shape[0]
    n_sinkhorn = np.zeros(B, dtype=np.int64)
    n_newton = np.zeros(B, dtype=np.int64)
    status = np.zeros(B, dtype=np.int64)
    for p in range(B):
        sub, a_s, b_s, f_s, g_s, rows, cols, flip = _reduced(M[p], a[p], b[p], f[p], g[p])
        # a C-contiguous schedule: the signature of small_sns that single solves compile
        schedule = np.ascontiguousarray(regs[p, :n_regs[p]])
        n_sinkhorn[p], n_newton[p], status[p] = small_sns(
            sub, a_s, b_s, schedule, tol, stage_tol, switch_tol, warmup_iter, max_iter, f_s, g_s,
            armijo, max_backtracks, shift, max_step, fallback_iter)
        if flip:
            f_s, g_s = g_s, f_s
        f[p, :] = -np.inf
        g[p, :] = -np.inf
        for i in range(rows.size):
            f[p, rows[i]] = f_s[i]
        for j in range(cols.size):
            g[p, cols[j]] = g_s[j]
    return n_sinkhorn, n_newton, status
