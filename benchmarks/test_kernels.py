"""One pass of each O(nm) kernel: backend x dtype x size.

``extra_info`` records the bytes of the (n, m) matrix moved and the exps
per pass, and (when timed) the share of the machine's streaming bandwidth
and exp throughput measured in the same session (see ``conftest.py``).
"""

import numpy as np
import pytest

from fastsinkhorn.backends import get_backend
from fastsinkhorn.problems import make_problem

REG = 1e-2
#: Columns kept per row by the SNS sparsification in ``dense_pass``.
TOP_K = 16


def _calls(backend, M, reg):
    """Each kernel as ``name -> (call, matrix_bytes, exps)`` on fixed inputs."""
    n, m = M.shape
    f, g = np.zeros(n), np.zeros(m)
    a, v, u = np.full(n, 1.0 / n), np.ones(m), np.empty(n)
    K = np.exp(-M / reg).astype(M.dtype)
    out = np.empty_like(M)
    size = M.nbytes
    return {
        "scaling_pass": (lambda: backend.scaling_pass(K, v, a, u), size, 0),
        "plan": (lambda: backend.plan(M, f, g, reg, out), 2 * size, n * m),  # read M, write out
        "dense_pass": (lambda: backend.dense_pass(M, f, g, reg, TOP_K), size, n * m),
        "lse_rows": (lambda: backend.lse_rows(M, g, reg), size, n * m),
        "lse_cols": (lambda: backend.lse_cols(M, f, reg), size, n * m),
    }


KERNELS = ("scaling_pass", "plan", "dense_pass", "lse_rows", "lse_cols")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
def test_kernel(benchmark, record_kernel, backend_name, dtype, kernel, kernel_size):
    M = make_problem("cloud", kernel_size, seed=0, dtype=np.dtype(dtype)).M
    call, matrix_bytes, exps = _calls(get_backend(backend_name), M, REG)[kernel]
    call()  # warm-up: Numba compiles each dtype specialization on first call
    benchmark.group = f"{kernel} n={kernel_size} {dtype}"
    result = benchmark(call)
    parts = result if isinstance(result, tuple) else (result,)
    assert all(np.isfinite(np.asarray(x, dtype=np.float64)).all() for x in parts)  # no NaN/inf out
    record_kernel(matrix_bytes, exps, dtype)


def test_machine_limits(benchmark, machine_limits):
    """Record the limits themselves (the timed call is a no-op)."""
    benchmark.group = "machine limits"
    benchmark.extra_info.update(machine_limits)
    benchmark(lambda: None)
    for limits in machine_limits.values():
        assert limits["read_bytes_per_s"] > 0 and limits["exp_per_s"] > 0
