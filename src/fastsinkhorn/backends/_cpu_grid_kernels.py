"""Numba kernel of the CPU backend for separable costs on regular grids.

A pass over a grid cost is a sequence of 1-D log-sum-exps, one per axis
(``ReferenceBackend.grid_lse``). The kernel below does one of them: the
values, seen as ``(pre, k, post)`` with the reduced axis in the middle, are
reduced along it against a ``(k, k)`` log-kernel. Every output entry gets
its own max shift, so nothing under- or overflows whatever ``reg``; the
inner loop runs over the contiguous ``post`` axis (or, when ``post == 1``,
over the contiguous reduced axis itself).
"""

import numpy as np
from numba import njit, prange

#: Terms below exp(-60) (about 1e-26) of an output's largest term are skipped:
#: with at most a few thousand terms per 1-D sum their total stays below
#: 1e-22 of the sum, far under float64 rounding, and at small ``reg`` most
#: terms are that small, so their exp is not worth evaluating.
DROP = -60.0


@njit(cache=True)
def _output_line(values, log_kernel, out, p, i):
    """``out[p, i, :]`` of :func:`axis_lse`: a max pass, then a sum of exps."""
    k, post = values.shape[1], values.shape[2]
    top = np.full(post, -np.inf)
    for j in range(k):
        w = log_kernel[i, j]
        for q in range(post):
            x = values[p, j, q] + w
            if x > top[q]:
                top[q] = x
    total = np.zeros(post)
    for j in range(k):
        w = log_kernel[i, j]
        for q in range(post):
            x = values[p, j, q] + w - top[q]
            if x > DROP:  # also false for the NaN of -inf - (-inf)
                total[q] += np.exp(x)
    for q in range(post):
        out[p, i, q] = top[q] + np.log(total[q]) if top[q] > -np.inf else -np.inf


@njit(cache=True, parallel=True)
def axis_lse(values, log_kernel, out):
    """``out[p, i, q] = log sum_j exp(values[p, j, q] + log_kernel[i, j])``.

    ``values`` and ``out`` are float64 ``(pre, k, post)``, ``log_kernel``
    float64 ``(k, k)``; ``-inf`` entries are legal and an output whose terms
    are all ``-inf`` is ``-inf``. Parallel over the ``pre * k`` output lines.
    """
    pre, k = values.shape[0], values.shape[1]
    for line in prange(pre * k):
        _output_line(values, log_kernel, out, line // k, line % k)


@njit(cache=True)
def axis_lse_serial(values, log_kernel, out):
    """:func:`axis_lse` on the calling thread (a small pass: no thread woken)."""
    pre, k = values.shape[0], values.shape[1]
    for line in range(pre * k):
        _output_line(values, log_kernel, out, line // k, line % k)
