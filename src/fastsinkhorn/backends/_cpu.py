"""CPU backend: Numba ``njit(parallel=True)`` kernels on NumPy arrays."""

import numpy as np
from numba import get_num_threads

from . import _cpu_kernels as kern


#: Matrices with fewer entries run the serial kernels (no thread launch).
SERIAL_BELOW = 1 << 17


def _vec(x):
    return np.ascontiguousarray(x, dtype=np.float64)


def _cut(dtype):
    """Exponent below which entries are flushed to zero (see ``_cpu_kernels``)."""
    return -87.0 if dtype == np.float32 else -460.0


class CPUBackend:
    """Numba implementation of the kernel contract of ``ReferenceBackend``."""

    name = "cpu"
    xp = np
    check_every = 1  # the convergence check is O(n) and needs no sync

    def lse_rows(self, M, g, reg):
        return kern.lse_rows(M, _vec(g), float(reg))

    def lse_cols(self, M, f, reg):
        return kern.lse_cols(M, _vec(f), float(reg), get_num_threads())

    def plan(self, M, f, g, reg, out):
        plan = kern.plan_serial if M.size < SERIAL_BELOW else kern.plan
        return plan(M, _vec(f), _vec(g), float(reg), out, _cut(out.dtype))

    def scaling_pass(self, K, v, a, u):
        if K.size < SERIAL_BELOW:
            return kern.scaling_pass_serial(K, _vec(v), _vec(a), u, 1)
        return kern.scaling_pass(K, _vec(v), _vec(a), u, get_num_threads())

    def scale(self, K, u, v, out):
        scale = kern.scale_serial if K.size < SERIAL_BELOW else kern.scale
        return scale(K, _vec(u), _vec(v), out)

    def dense_pass(self, M, f, g, reg, k):
        k = max(1, min(int(k), M.shape[1]))
        r, c, total, idx, val = kern.dense_pass(M, _vec(f), _vec(g), float(reg), k, get_num_threads(), _cut(np.float64))
        return r, c, float(total), idx, val

    def ell_matvec(self, idx, val, x):
        return kern.ell_matvec(idx, val, _vec(x))

    def ell_rmatvec(self, idx, val, y, m):
        return kern.ell_rmatvec(idx, val, _vec(y), int(m))
