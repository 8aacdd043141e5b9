"""Shared settings and fixtures of the pytest-benchmark suite.

Sizes are modest by default so that CI can run the whole suite once with
``python -m pytest benchmarks --benchmark-disable -q``. For real figures::

    FASTSINKHORN_BENCH_SIZES=1000,2000 FASTSINKHORN_BENCH_KERNEL_SIZES=1000,4000 \\
        python -m pytest benchmarks --benchmark-json bench.json

``FASTSINKHORN_BENCH_REGS`` (default ``1e-2``) lists the regularizations of
the full solves; ``FASTSINKHORN_BENCH_HARD_SIZES`` (``100``) and
``FASTSINKHORN_BENCH_HARD_REGS`` (``1e-4``) those of the small-``reg`` suite.
"""

import math
import os
import time

import numpy as np
import pytest
from numba import njit, prange


def _env_list(name, default, kind):
    return [kind(x) for x in os.environ.get(name, default).split(",") if x]


#: n of the full solves.
SOLVE_SIZES = _env_list("FASTSINKHORN_BENCH_SIZES", "200", int)
#: Regularizations of the full solves.
SOLVE_REGS = _env_list("FASTSINKHORN_BENCH_REGS", "1e-2", float)
#: n and reg of the small-reg suite (near-permutation plans, rough histograms).
HARD_SIZES = _env_list("FASTSINKHORN_BENCH_HARD_SIZES", "100", int)
HARD_REGS = _env_list("FASTSINKHORN_BENCH_HARD_REGS", "1e-4", float)
#: n of the one-iteration kernel benchmarks, labelled small and medium.
KERNEL_SIZES = dict(zip(("small", "medium"), _env_list("FASTSINKHORN_BENCH_KERNEL_SIZES",
                                                       "256,1024", int)))


def pytest_generate_tests(metafunc):
    """Parametrize the ``solve_size``, ``reg`` and ``kernel_size`` arguments."""
    for name, values, ids in (("solve_size", SOLVE_SIZES, None), ("reg", SOLVE_REGS, None),
                              ("hard_size", HARD_SIZES, None), ("hard_reg", HARD_REGS, None),
                              ("kernel_size", list(KERNEL_SIZES.values()), list(KERNEL_SIZES))):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=ids)


# -- the machine's limits, measured in the same run ---------------------------
@njit(parallel=True, cache=True)
def _stream_sum(x):
    total = 0.0
    for i in prange(x.size):
        total += x[i]
    return total


@njit(parallel=True, cache=True)
def _exp_map(x, out):
    # the same loop shape as the kernels' exp passes, so it vectorizes as they can
    for i in prange(x.size):
        out[i] = math.exp(x[i])
    return out


def _best_rate(fn, args, units, repeats=5):
    fn(*args)  # JIT compile outside the timing
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return units / best


@pytest.fixture(scope="session")
def machine_limits():
    """Streaming read bandwidth (bytes/s) and Numba exp throughput (exp/s) per dtype.

    Measured once per session on all threads: the denominators of the
    ``bandwidth_fraction`` and ``exp_fraction`` recorded by the kernel
    benchmarks. The bandwidth is from memory: a matrix that fits in the
    caches (small sizes) can give fractions above 1.
    """
    limits = {}
    for dtype in (np.float32, np.float64):
        stream = np.ones(1 << 24, dtype)  # 64-128 MB: far beyond the caches
        args = -50.0 * np.random.default_rng(0).random(1 << 19).astype(dtype)  # cache-resident
        limits[np.dtype(dtype).name] = {
            "read_bytes_per_s": _best_rate(_stream_sum, (stream,), stream.nbytes),
            "exp_per_s": _best_rate(_exp_map, (args, np.empty_like(args)), args.size),
        }
    return limits


@pytest.fixture
def record_kernel(benchmark, machine_limits):
    """``record(matrix_bytes, exps, dtype)``: the work of one kernel pass and,
    when timed, its share of the machine's limits."""

    def record(matrix_bytes, exps, dtype):
        limits = machine_limits[np.dtype(dtype).name]
        benchmark.extra_info.update(matrix_bytes=matrix_bytes, exps=exps, machine_limits=limits)
        if benchmark.stats is not None:  # None under --benchmark-disable
            seconds = benchmark.stats.stats.median
            benchmark.extra_info["bandwidth_fraction"] = matrix_bytes / seconds / limits["read_bytes_per_s"]
            benchmark.extra_info["exp_fraction"] = exps / seconds / limits["exp_per_s"]

    return record
