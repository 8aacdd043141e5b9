"""Numba kernels for batches of dense problems: ``(B, n, m)`` costs and kernels,
``(B, n)`` / ``(B, m)`` vectors (the dense members of the contract with a
leading batch axis).

One parallel loop over all problems per pass: ``prange`` over (problem, row)
pairs for row-wise work, over problems for the passes that accumulate column
sums (each problem's column accumulator is then private to one thread, and
the problems of a batch are many and small).
"""

import numpy as np
from numba import njit, prange

from ._cpu_kernels import _FAST, _LSE_CUT, _row_scaling, serial_twin


@njit(cache=True, parallel=True)
def lse_rows(M, g, reg):
    """``out[p, i] = log sum_j exp((g[p, j] - M[p, i, j]) / reg)``, max-shifted."""
    B, n, m = M.shape
    out = np.empty((B, n))
    inv = 1.0 / reg
    for t in prange(B * n):
        p, i = t // n, t % n
        top = -np.inf
        for j in range(m):
            top = max(top, (g[p, j] - M[p, i, j]) * inv)
        if top == -np.inf:
            out[p, i] = -np.inf
            continue
        s = 0.0
        for j in range(m):
            x = (g[p, j] - M[p, i, j]) * inv - top
            if x > _LSE_CUT:
                s += np.exp(x)
        out[p, i] = top + np.log(s)
    return out


@njit(cache=True, parallel=True)
def lse_cols(M, f, reg):
    """``out[p, j] = log sum_i exp((f[p, i] - M[p, i, j]) / reg)``: per problem,
    two row-major passes (column maxima, then shifted sums)."""
    B, n, m = M.shape
    out = np.empty((B, m))
    inv = 1.0 / reg
    for p in prange(B):
        top = np.full(m, -np.inf)
        for i in range(n):
            if f[p, i] == -np.inf:
                continue
            for j in range(m):
                top[j] = max(top[j], (f[p, i] - M[p, i, j]) * inv)
        s = np.zeros(m)
        for i in range(n):
            if f[p, i] == -np.inf:
                continue
            for j in range(m):
                x = (f[p, i] - M[p, i, j]) * inv - top[j]
                if x > _LSE_CUT:  # also false for empty columns (top = -inf: x = nan)
                    s[j] += np.exp(x)
        for j in range(m):
            out[p, j] = top[j] + np.log(s[j]) if s[j] > 0 else -np.inf
    return out


@njit(cache=True, parallel=True)
def plan(M, f, g, reg, cut, out):
    """``out[p, i, j] = exp((f + g - M) / reg)``, flushed to an exact zero
    below ``exp(cut)`` (see ``_cpu_kernels``) and where a potential is
    ``-inf`` (zero mass) or the cost ``+inf`` (a forbidden entry)."""
    B, n, m = M.shape
    inv = 1.0 / reg
    for t in prange(B * n):
        p, i = t // n, t % n
        fi = f[p, i]
        for j in range(m):
            x = (fi + g[p, j] - M[p, i, j]) * inv
            if fi == -np.inf or g[p, j] == -np.inf or not x > cut:
                out[p, i, j] = 0.0
            else:
                out[p, i, j] = np.exp(x)
    return out


@njit(cache=True, parallel=True, fastmath=_FAST)
def scaling_pass(K, v, a, u, tau):
    """Per problem: ``u_i = a_i / (K v)_i`` (``tau``: see ``_row_scaling``) and
    return ``K^T u`` (B, m); one read of K."""
    B, n, m = K.shape
    colsum = np.zeros((B, m))
    for p in prange(B):
        acc = colsum[p]
        for i in range(n):
            s = 0.0
            for j in range(m):
                s += K[p, i, j] * v[p, j]
            ui = _row_scaling(s, a[p, i], tau)
            u[p, i] = ui
            for j in range(m):
                acc[j] += K[p, i, j] * ui
    return colsum


@njit(cache=True, parallel=True, fastmath=_FAST)
def scale(K, u, v, out):
    """``out[p, i, j] = u[p, i] K[p, i, j] v[p, j]`` (``out`` may be ``K``)."""
    B, n, m = K.shape
    for t in prange(B * n):
        p, i = t // n, t % n
        for j in range(m):
            out[p, i, j] = u[p, i] * K[p, i, j] * v[p, j]
    return out


# Serial twins, for batches too small to share among threads (one block: see
# ``_threads``): they wake no thread.
lse_rows_serial = serial_twin(lse_rows, "lse_rows_serial")
lse_cols_serial = serial_twin(lse_cols, "lse_cols_serial")
plan_serial = serial_twin(plan, "plan_serial")
scaling_pass_serial = serial_twin(scaling_pass, "scaling_pass_serial", fastmath=_FAST)
scale_serial = serial_twin(scale, "scale_serial", fastmath=_FAST)
