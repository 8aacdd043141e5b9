"""Lazy point clouds and batches (pytest-benchmark): ours against a loop and POT.

Sizes are small by default (CI runs this once with timing disabled);
``FASTSINKHORN_BENCH_CLOUD_SIZES`` (default ``1000``) and
``FASTSINKHORN_BENCH_BATCHES`` (default ``64x32``, ``BxN`` items; POT runs to the same tolerance with the
same cap, so a large batch takes it minutes) set them.
The full-size figures of benchmarks/RESULTS.md come from
``benchmarks/lazy_clouds.py`` and ``benchmarks/batches.py``.
"""

import os
import warnings

import numpy as np
import pytest

import fastsinkhorn as fs

TOL = 1e-6
MAX_ITER = 10_000  # solve's default, given to POT too
CLOUD_SIZES = [int(v) for v in os.environ.get("FASTSINKHORN_BENCH_CLOUD_SIZES", "1000").split(",")]
BATCHES = [tuple(int(x) for x in v.split("x"))
           for v in os.environ.get("FASTSINKHORN_BENCH_BATCHES", "64x32").split(",")]


def _clouds(n, d=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.random((n, d))


def _l1(r, c, a, b):
    return float(np.abs(r - a).sum() + np.abs(c - b).sum())


@pytest.mark.parametrize("reg_frac", [1e-2, 1e-3])
@pytest.mark.parametrize("n", CLOUD_SIZES)
def test_lazy_point_cloud(benchmark, n, reg_frac):
    x, y = _clouds(n)
    cloud = fs.PointCloud(x, y)
    reg = reg_frac * cloud.cost_range_bound()
    fs.solve(fs.PointCloud(x[:64], y[:64]), reg=reg, method="sns")  # JIT is never timed
    benchmark.group = f"lazy point cloud n={n} reg={reg_frac:g} x range"
    res = benchmark.pedantic(fs.solve, args=(cloud,), kwargs={"reg": reg, "tol": TOL}, rounds=1, iterations=1)
    r, c = res.plan.marginals()
    error = _l1(r, c, np.full(n, 1 / n), np.full(n, 1 / n))
    benchmark.extra_info.update(method=res.method, n_iter=res.n_iter_phases, error=error)
    assert error <= TOL


@pytest.mark.parametrize("how", ["batch", "loop", "pot-solve_batch"])
@pytest.mark.parametrize("B, n", BATCHES)
def test_batch(benchmark, B, n, how):
    rng = np.random.default_rng(0)
    M = fs.PointCloud(rng.random((B, n, 2)), rng.random((B, n, 2))).cost_matrix()
    M /= M.max(axis=(1, 2), keepdims=True)
    reg = 1e-2
    if how == "batch":
        run = (lambda: fs.solve(M, reg=reg, tol=TOL).plan)
    elif how == "loop":
        run = (lambda: np.stack([fs.solve(M[p], reg=reg, tol=TOL).plan for p in range(B)]))
    else:
        solve_batch = pytest.importorskip("ot.batch").solve_batch
        # POT's own stopping rule (largest ||P 1 - a||_2 of the batch), at the loosest
        # threshold that guarantees our L1 tolerance, with our iteration cap
        run = (lambda: np.asarray(solve_batch(M, reg=reg, tol=TOL / np.sqrt(n), max_iter=MAX_ITER).plan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs.solve(M[:2], reg=reg, tol=TOL), fs.solve(M[0], reg=reg, tol=TOL)  # JIT is never timed
        benchmark.group = f"batch {B} x {n} x {n} reg={reg:g}"
        P = benchmark.pedantic(run, rounds=1, iterations=1)
    errors = np.abs(P.sum(2) - 1 / n).sum(1) + np.abs(P.sum(1) - 1 / n).sum(1)
    benchmark.extra_info["max_error"] = float(errors.max())
    assert errors.max() <= TOL
