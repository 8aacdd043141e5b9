"""Numba-CUDA kernels: batched log-domain Sinkhorn, one thread block per problem.

A batch of small dense problems (``(B, n, m)`` costs, ``n, m <=``
:data:`MAX_SIDE`) is solved in ONE launch: block ``p`` runs the whole
Sinkhorn loop of problem ``p`` without leaving the kernel, its potentials
(and, when ``n * m <=`` :data:`TILE_ENTRIES`, its cost divided by ``reg``)
held in shared memory, until the L1 error of its column marginal is at most
``tol`` or ``max_iter`` iterations ran. Thread ``t`` owns rows and columns
``t, t + blockDim.x, ...``.

Iteration (potentials in units of ``reg``: ``F = f / reg``, ``G = g / reg``,
``C = M / reg``), the driver's (:mod:`fastsinkhorn.algorithms.sinkhorn`):

1. rows: ``F_i = log a_i - lse_j (G_j - C_ij)`` (``-inf`` where ``a_i = 0``);
2. columns: ``L_j = lse_i (F_i - C_ij)``; the row-normalised plan's column
   sums are ``exp(G_j + L_j)``, so its L1 error costs O(m) and no extra pass;
3. stop at ``error <= tol`` or at ``max_iter`` (the iterate returned is the
   one whose error was checked: rows exact), else ``G_j = log b_j - L_j``.

Arithmetic is float64 whatever the cost's dtype (float32 or float64); the
plan is written in the cost's dtype, an exact zero where a mass is zero (a
``-inf`` potential), so padded ragged batches (zero masses on padding) give
each problem's own plan. Each block writes its ``n_iter``, ``converged`` and
error.

This module imports :mod:`numba.cuda` at import time: import it lazily (the
launcher :mod:`._cuda_numba` does). Under ``NUMBA_ENABLE_CUDASIM=1`` (set
before :mod:`numba.cuda` is first imported) the kernels run on the CPU on
NumPy arrays, which is how the tests run them without a device.
"""

import math

from numba import cuda, float64

#: The most points on either side: one thread per row / column in a block of
#: at most this many threads (and the length of the shared vectors).
MAX_SIDE = 128
#: The most cost entries held in shared memory (as float64: 32 KiB, 64 x 64);
#: larger problems read their cost from global memory (L1/L2-resident).
TILE_ENTRIES = 4096


@cuda.jit(device=True, inline=True)
def _lse_push(top, s, x):
    """One term ``x`` added to a running max-shifted log-sum-exp ``(top, s)``."""
    if x == -math.inf:
        return top, s
    if x > top:
        return x, s * math.exp(top - x) + 1.0
    return top, s + math.exp(x - top)


@cuda.jit(device=True, inline=True)
def _lse_end(top, s):
    return top + math.log(s) if s > 0.0 else -math.inf


def _make_kernel(tiled):
    """The Sinkhorn kernel, with the cost tile in shared memory (``tiled``)
    or read from global memory: one compiled kernel each, no shared tile
    reserved where it is not used."""
    tile_len = TILE_ENTRIES if tiled else 1

    @cuda.jit
    def kernel(M, a, b, g0, inv_reg, tol, max_iter, plan, f_out, g_out, n_iter, converged, error):
        p = cuda.blockIdx.x
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        n, m = M.shape[1], M.shape[2]
        F = cuda.shared.array(MAX_SIDE, float64)
        G = cuda.shared.array(MAX_SIDE, float64)
        L = cuda.shared.array(MAX_SIDE, float64)
        total = cuda.shared.array(1, float64)  # the L1 error, summed by atomics
        tile = cuda.shared.array(tile_len, float64)
        if tiled:
            for k in range(t, n * m, nt):
                tile[k] = M[p, k // m, k % m] * inv_reg
        for j in range(t, m, nt):
            G[j] = g0[p, j] * inv_reg if b[p, j] > 0.0 else -math.inf
        cuda.syncthreads()
        it = 0
        err = math.inf
        while it < max_iter:
            it += 1
            if t == 0:  # the last reader of total passed a barrier since (the one after G)
                total[0] = 0.0
            # rows: F_i = log a_i - lse_j (G_j - C_ij)
            for i in range(t, n, nt):
                if a[p, i] > 0.0:
                    top, s = -math.inf, 0.0
                    for j in range(m):
                        c = tile[i * m + j] if tiled else M[p, i, j] * inv_reg
                        top, s = _lse_push(top, s, G[j] - c)
                    F[i] = math.log(a[p, i]) - _lse_end(top, s)
                else:
                    F[i] = -math.inf
            cuda.syncthreads()
            # columns: L_j and the L1 error of the row-normalised plan's column sums
            part = 0.0
            for j in range(t, m, nt):
                top, s = -math.inf, 0.0
                for i in range(n):
                    c = tile[i * m + j] if tiled else M[p, i, j] * inv_reg
                    top, s = _lse_push(top, s, F[i] - c)
                L[j] = _lse_end(top, s)
                col = math.exp(G[j] + L[j]) if G[j] > -math.inf else 0.0
                part += abs(col - b[p, j])
            # one atomic per thread and one barrier (a tree sum would take log2(nt) barriers)
            cuda.atomic.add(total, 0, part)
            cuda.syncthreads()
            err = total[0]
            # not err > tol: a nan error (mass lost) stops too, reported unconverged
            if not err > tol or it == max_iter:
                break
            for j in range(t, m, nt):
                G[j] = math.log(b[p, j]) - L[j] if b[p, j] > 0.0 else -math.inf
            cuda.syncthreads()
        # the iterate whose error was checked: its plan and potentials
        for k in range(t, n * m, nt):
            i, j = k // m, k % m
            if F[i] == -math.inf or G[j] == -math.inf:
                plan[p, i, j] = 0.0
            else:
                c = tile[k] if tiled else M[p, i, j] * inv_reg
                plan[p, i, j] = math.exp(F[i] + G[j] - c)
        for i in range(t, n, nt):
            f_out[p, i] = F[i] / inv_reg
        for j in range(t, m, nt):
            g_out[p, j] = G[j] / inv_reg
        if t == 0:
            n_iter[p] = it
            converged[p] = err <= tol
            error[p] = err

    return kernel


#: ``sinkhorn_tiled`` holds the cost in shared memory (``n * m <= TILE_ENTRIES``).
sinkhorn_tiled = _make_kernel(tiled=True)
sinkhorn_global = _make_kernel(tiled=False)
