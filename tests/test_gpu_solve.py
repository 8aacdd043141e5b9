"""Full solves on the GPU equal the CPU results (needs CuPy + a GPU; skipped otherwise)."""

import numpy as np
import pytest
from ot_testing import plan_error

import fastsinkhorn as fs
from fastsinkhorn.problems import make_problem

pytestmark = pytest.mark.gpu
TOL = {np.float64: 1e-10, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method, reg", [("sinkhorn", 1e-2), ("sns", 1e-3), ("sns", 1e-2)])
@pytest.mark.parametrize("family", ["cloud", "rect", "grid-w2"])
def test_gpu_solve_equals_cpu(cp, dtype, method, reg, family):
    p = make_problem(family, 400, seed=1, dtype=dtype)
    tol = TOL[dtype]
    cpu = fs.solve(p.M, p.a, p.b, reg=reg, method=method, tol=tol)
    gpu = fs.solve(cp.asarray(p.M), cp.asarray(p.a), cp.asarray(p.b), reg=reg, method=method, tol=tol)
    assert isinstance(gpu.plan, cp.ndarray) and gpu.plan.dtype == dtype and gpu.backend == "gpu"
    assert all(isinstance(x, cp.ndarray) for x in gpu.potentials)
    assert gpu.converged and plan_error(cp.asnumpy(gpu.plan), p.a, p.b) <= tol * 1.01
    # both are tol-accurate solutions of the same strictly convex problem
    assert np.abs(cp.asnumpy(gpu.plan).astype(float) - cpu.plan).sum() <= 10 * tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_batch_solve_equals_cpu(cp, dtype):
    """A (B, n, m) batch on the GPU (one launch per pass over all problems)
    gives the CPU's batch result, problem by problem."""
    rng = np.random.default_rng(6)
    B, n, m = 12, 150, 100
    M = rng.random((B, n, m)).astype(dtype)
    M[5] *= 10  # a harder problem
    a, b = rng.random((B, n)) + 0.1, rng.random((B, m)) + 0.1
    a[2, :3], b[7, -2:] = 0.0, 0.0  # zero masses in single problems
    a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    tol = TOL[dtype]
    cpu = fs.solve(M, a, b, reg=2e-2, tol=tol)
    gpu = fs.solve(cp.asarray(M), cp.asarray(a), cp.asarray(b), reg=2e-2, tol=tol)
    assert gpu.backend == "gpu" and gpu.batched and bool(gpu.converged.all())
    P = cp.asnumpy(gpu.plan)
    assert P.shape == (B, n, m) and P.dtype == dtype
    assert np.all(P[2, :3] == 0.0) and np.all(P[7, :, -2:] == 0.0)
    for p in range(B):
        assert plan_error(P[p], a[p], b[p]) <= tol * 1.01
        assert np.abs(P[p].astype(float) - cpu.plan[p]).sum() <= 10 * tol


def test_gpu_pot_drop_in_returns_cupy(cp):
    p = make_problem("cloud", 300, seed=2)
    M, a, b = (cp.asarray(x) for x in (p.M, p.a, p.b))
    P = fs.sinkhorn(a, b, M, 1e-3, numItermax=10_000)
    assert isinstance(P, cp.ndarray)
    assert plan_error(cp.asnumpy(P), p.a, p.b) <= 1e-7  # stopThr 1e-9 on the L2 column error, rows exact
    loss = fs.sinkhorn2(a, b, M, 1e-2)
    assert isinstance(loss, cp.ndarray) and loss.shape == ()
    assert float(loss) == pytest.approx(float(fs.sinkhorn2(p.a, p.b, p.M, 1e-2)), rel=1e-6)
    x = np.random.default_rng(0).random((10, 2))
    D = fs.dist(cp.asarray(x))
    assert isinstance(D, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(D), fs.dist(x), rtol=1e-10, atol=1e-12)


def test_numpy_inputs_on_the_gpu_backend_return_numpy(cp):
    p = make_problem("cloud", 200, seed=3)
    res = fs.solve(p.M, p.a, p.b, reg=1e-2, backend="gpu")
    assert isinstance(res.plan, np.ndarray) and res.backend == "gpu" and res.converged
    assert plan_error(res.plan, p.a, p.b) <= 1e-9
    assert np.abs(res.plan - fs.solve(p.M, p.a, p.b, reg=1e-2).plan).sum() <= 1e-8


def test_mixed_numpy_and_cupy_is_a_type_error(cp):
    p = make_problem("cloud", 20, seed=4)
    with pytest.raises(TypeError, match="cannot mix"):
        fs.solve(cp.asarray(p.M), p.a, p.b, reg=1e-2)


@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
def test_gpu_f_ordered_cost_is_solved_transposed(cp, method):
    """The backend only takes C-contiguous matrices: an F-ordered cost reaches
    it transposed (no copy) and gives the same plan, F-ordered."""
    p = make_problem("rect", 300, seed=3)
    cpu = fs.solve(p.M, p.a, p.b, reg=1e-2, method=method, tol=1e-10)
    gpu = fs.solve(cp.asfortranarray(cp.asarray(p.M)), cp.asarray(p.a), cp.asarray(p.b), reg=1e-2,
                   method=method, tol=1e-10)
    assert gpu.converged and gpu.plan.flags.f_contiguous
    assert np.abs(cp.asnumpy(gpu.plan) - cpu.plan).sum() <= 1e-9


@pytest.mark.parametrize("method, reg", [("sinkhorn", 1e-2), ("sns", 2e-3)])
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean", "minkowski"])
def test_gpu_point_cloud_solve_equals_cpu(cp, method, reg, cost):
    """Point clouds on the GPU (costs computed on the fly by the kernels) give
    the CPU's potentials and a plan with the right marginals."""
    rng = np.random.default_rng(5)
    x, y = rng.random((300, 2)), rng.random((200, 2))
    a, b = rng.random(300) + 0.1, rng.random(200) + 0.1
    a[:2], b[-2:] = 0.0, 0.0  # zero masses: -inf potentials
    a, b = a / a.sum(), b / b.sum()
    tol, p = 1e-9, 1.5 if cost == "minkowski" else 2.0  # p: minkowski's exponent only
    cpu = fs.solve(fs.PointCloud(x, y, cost=cost, p=p), a, b, reg=reg, method=method, tol=tol)
    cloud = fs.PointCloud(cp.asarray(x), cp.asarray(y), cost=cost, p=p)
    gpu = fs.solve(cloud, cp.asarray(a), cp.asarray(b), reg=reg, method=method, tol=tol)
    assert gpu.backend == "gpu" and gpu.converged and isinstance(gpu.plan, fs.LazyPlan)
    P = cp.asnumpy(gpu.plan.to_dense())
    assert plan_error(P, a, b) <= tol * 1.01
    for pg, pc in zip(gpu.potentials, cpu.potentials):
        pg = cp.asnumpy(pg)
        finite = np.isfinite(pc)
        assert np.array_equal(finite, np.isfinite(pg))
        shift = np.mean(pg[finite] - pc[finite])  # potentials are defined up to f + t, g - t
        np.testing.assert_allclose(pg[finite] - shift, pc[finite], atol=1e-6)


@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
@pytest.mark.parametrize("unbalanced", [0.1, (np.inf, 1.0)])
def test_gpu_unbalanced_equals_cpu(cp, method, unbalanced):
    """Unbalanced OT on the GPU: the scaling kernel's relaxed half-step
    (``tau < 1``) and the same driver as on the CPU."""
    p = make_problem("cloud", 300, seed=4)
    a = 1.3 * p.a if np.isinf(np.atleast_1d(unbalanced)[0]) else p.a  # an exact side fixes the mass
    cpu = fs.solve(p.M, a, 1.3 * p.b, 1e-2, unbalanced=unbalanced, method=method, tol=1e-10)
    gpu = fs.solve(cp.asarray(p.M), cp.asarray(a), cp.asarray(1.3 * p.b), 1e-2, unbalanced=unbalanced,
                   method=method, tol=1e-10)
    assert gpu.converged and gpu.backend == "gpu"
    assert np.abs(cp.asnumpy(gpu.plan) - cpu.plan).sum() <= 1e-8


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gpu_shared_cost_batch_equals_cpu(cp, dtype):
    """Many problems on one cost (2-D M, 2-D masses): CuPy matrix products on
    the device, each problem's value and marginals those of the CPU's."""
    rng = np.random.default_rng(8)
    M = rng.random((120, 90)).astype(dtype)
    a, b = rng.random((7, 120)) + 0.1, rng.random((7, 90)) + 0.1
    a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    tol = TOL[dtype]
    cpu = fs.solve(M, a, b, reg=1e-2, tol=tol, method="sinkhorn")
    gpu = fs.solve(cp.asarray(M), cp.asarray(a), cp.asarray(b), reg=1e-2, tol=tol, method="sinkhorn")
    assert gpu.backend == "gpu" and bool(gpu.converged.all())
    np.testing.assert_allclose(cp.asnumpy(gpu.value_linear), cpu.value_linear, atol=20 * tol)
    np.testing.assert_allclose(cp.asnumpy(gpu.marginals[0]), a, atol=tol)


def test_gpu_grid_solve_equals_cpu(cp):
    """A Grid on the GPU: the axis passes as CuPy matrix products."""
    rng = np.random.default_rng(9)
    grid = fs.Grid((24, 17))
    a, b = rng.random(grid.size) + 0.1, rng.random(grid.size) + 0.1
    a, b = a / a.sum(), b / b.sum()
    reg = 1e-3 * grid.cost_range()
    cpu = fs.solve(grid, a, b, reg=reg, tol=1e-8)
    gpu = fs.solve(grid, cp.asarray(a), cp.asarray(b), reg=reg, tol=1e-8)
    assert gpu.backend == "gpu" and gpu.converged
    assert float(gpu.value_linear) == pytest.approx(float(cpu.value_linear), abs=1e-7)
