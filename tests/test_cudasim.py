"""The Numba-CUDA batched small-problem Sinkhorn (backends/_cuda_numba*.py).

The kernel tests run under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
CI's ``cudasim`` step) or on a CUDA device (also marked ``gpu``: the device
check runs them); otherwise they skip. The simulator runs every thread in
Python, so the problems are tiny. Each kernel result is checked against a
NumPy float64 reference of the same iteration, and against the library's
CPU batched Sinkhorn and POT where the iterates converged.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastsinkhorn
from fastsinkhorn.backends import _cuda_numba
from fastsinkhorn.backends._cpu import CPUBackend
from fastsinkhorn.backends._cuda_numba import fits, sinkhorn_small_batch
from fastsinkhorn.backends._gpu import GPUBackend, cuda_available
from fastsinkhorn.core import validation

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(scope="module")
def kernels():
    """The kernel module, or a skip: it needs the simulator or a device.

    Under the simulator each block's threads are Python threads meeting at
    barriers; a short GIL switch interval keeps every hand-off from waiting
    the default 5 ms (about 4x faster here)."""
    if not SIMULATED and not cuda_available():
        pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (Numba's CUDA simulator) or a CUDA device")
    from fastsinkhorn.backends import _cuda_numba_kernels

    interval = sys.getswitchinterval()
    if SIMULATED:
        sys.setswitchinterval(1e-5)
    yield _cuda_numba_kernels
    sys.setswitchinterval(interval)


def _lse(x, axis):
    """Max-shifted log-sum-exp along ``axis``; ``-inf`` where every term is."""
    top = x.max(axis=axis, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(safe, axis) + np.log(np.exp(x - safe).sum(axis=axis))


def reference(M, a, b, reg, tol, max_iter, g0=None):
    """The kernel's iteration in NumPy float64, one problem after another:
    ``(plan, f, g, n_iter, converged, error)``."""
    B, n, m = M.shape
    out = {k: [] for k in ("plan", "f", "g", "n_iter", "converged", "error")}
    with np.errstate(divide="ignore"):
        log_a, log_b = np.log(a), np.log(b)
    for p in range(B):
        C = M[p].astype(np.float64) / reg
        G = np.where(b[p] > 0, 0.0 if g0 is None else g0[p] / reg, -np.inf)
        for it in range(1, max_iter + 1):
            F = np.where(a[p] > 0, log_a[p] - _lse(G[None, :] - C, 1), -np.inf)
            L = _lse(F[:, None] - C, 0)
            col = np.where(G > -np.inf, np.exp(np.where(G > -np.inf, G, 0.0) + L), 0.0)
            err = np.abs(col - b[p]).sum()
            if err <= tol or it == max_iter:
                break
            G = np.where(b[p] > 0, log_b[p] - L, -np.inf)
        live = (F[:, None] > -np.inf) & (G[None, :] > -np.inf)
        plan = np.where(live, np.exp(np.where(live, F[:, None] + G[None, :] - C, 0.0)), 0.0)
        for key, val in zip(out, (plan, F * reg, G * reg, it, err <= tol, err)):
            out[key].append(val)
    return {k: np.array(v) for k, v in out.items()}


def _problem(rng, B, n, m, dtype=np.float64, scale=1.0):
    M = (scale * rng.random((B, n, m))).astype(dtype)
    a = rng.random((B, n)) + 0.1
    b = rng.random((B, m)) + 0.1
    return M, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)


def _assert_matches(res, ref, plan_rtol):
    np.testing.assert_array_equal(res.n_iter, ref["n_iter"])
    np.testing.assert_array_equal(res.converged, ref["converged"])
    np.testing.assert_allclose(res.error, ref["error"], rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(res.f, ref["f"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.g, ref["g"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.plan, ref["plan"], rtol=plan_rtol, atol=1e-300)


@pytest.mark.cudasim
@pytest.mark.gpu
@pytest.mark.parametrize("tiled", [True, False], ids=["shared-tile", "global-cost"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 3, 7)])
def test_matches_float64_reference(rng, monkeypatch, kernels, shape, dtype, tiled):
    if not tiled:  # every problem above the tile size: the global-memory kernel
        monkeypatch.setattr(kernels, "TILE_ENTRIES", 0)
    M, a, b = _problem(rng, *shape, dtype=dtype)
    res = sinkhorn_small_batch(M, a, b, reg=0.2, tol=1e-7, max_iter=200)
    ref = reference(M, a, b, 0.2, 1e-7, 200)
    assert res.plan.dtype == dtype and res.f.dtype == np.float64
    assert res.converged.all() and (res.error <= 1e-7).all()
    # float32: only the plan is rounded (potentials and sums are float64 in the kernel)
    _assert_matches(res, ref, plan_rtol=1e-10 if dtype == np.float64 else 2e-7)
    np.testing.assert_allclose(res.plan.sum(2), a, atol=1e-6 if dtype == np.float32 else 1e-12)
    # the reported error is the plan's (up to the float32 rounding of its entries)
    np.testing.assert_allclose(np.abs(res.plan.sum(1, dtype=np.float64) - b).sum(1), res.error,
                               rtol=1e-6, atol=res.plan[0].size * np.finfo(dtype).eps)


@pytest.mark.cudasim
@pytest.mark.gpu
def test_agrees_with_cpu_batch_and_pot(rng, kernels):
    import ot

    M, a, b = _problem(rng, 3, 6, 5, scale=2.0)
    res = sinkhorn_small_batch(M, a, b, reg=0.3, tol=1e-10, max_iter=500)
    cpu = fastsinkhorn.solve(M, a, b, reg=0.3, method="sinkhorn", tol=1e-10, max_iter=500, backend="cpu")
    assert res.converged.all()
    np.testing.assert_allclose(res.plan, cpu.plan, atol=1e-9)
    for p in range(3):
        pot = ot.sinkhorn(a[p], b[p], M[p], 0.3, method="sinkhorn_log", stopThr=1e-13, numItermax=5000)
        np.testing.assert_allclose(res.plan[p], pot, atol=1e-9)


@pytest.mark.cudasim
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zero_masses(rng, kernels, dtype):
    M, a, b = _problem(rng, 2, 5, 4, dtype=dtype)
    a[0, [1, 3]] = 0.0
    b[1, 2] = 0.0
    a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    res = sinkhorn_small_batch(M, a, b, reg=0.2, tol=1e-8, max_iter=300)
    assert res.converged.all()
    assert (res.plan[0, [1, 3]] == 0).all() and (res.plan[1, :, 2] == 0).all()  # exact zeros
    assert np.isneginf(res.f[0, [1, 3]]).all() and np.isneginf(res.g[1, 2])
    _assert_matches(res, reference(M, a, b, 0.2, 1e-8, 300), plan_rtol=1e-10 if dtype == np.float64 else 2e-7)
    # the plan of the problem without its zero-mass rows is that problem's own
    rows = [0, 2, 4]
    alone = sinkhorn_small_batch(np.ascontiguousarray(M[:1, rows]), a[:1, rows], b[:1], 0.2, 1e-8, 300)
    np.testing.assert_allclose(res.plan[0, rows], alone.plan[0], rtol=1e-10 if dtype == np.float64 else 2e-7)


@pytest.mark.cudasim
@pytest.mark.gpu
def test_ragged_padded_batch(rng, kernels):
    import ot

    sizes = [(4, 3), (2, 5), (5, 5)]
    costs = [rng.random(s) for s in sizes]
    masses_a = [rng.random(n) + 0.1 for n, _ in sizes]
    masses_b = [rng.random(m) + 0.1 for _, m in sizes]
    masses_a, masses_b = [x / x.sum() for x in masses_a], [x / x.sum() for x in masses_b]
    M, a, b = fastsinkhorn.batch.pad(costs, masses_a, masses_b)
    res = sinkhorn_small_batch(M, a, b, reg=0.25, tol=1e-10, max_iter=1000)
    assert res.converged.all()
    for p, (n, m) in enumerate(sizes):
        plan = res.plan[p]
        assert (plan[n:] == 0).all() and (plan[:, m:] == 0).all()
        pot = ot.sinkhorn(masses_a[p], masses_b[p], costs[p], 0.25, method="sinkhorn_log", stopThr=1e-13,
                          numItermax=5000)
        np.testing.assert_allclose(plan[:n, :m], pot, atol=1e-9)


@pytest.mark.cudasim
@pytest.mark.gpu
def test_not_converging_reports_it(rng, kernels):
    M, a, b = _problem(rng, 3, 4, 4, scale=5.0)
    res = sinkhorn_small_batch(M, a, b, reg=0.05, tol=1e-12, max_iter=4)
    assert not res.converged.any() and (res.n_iter == 4).all() and (res.error > 1e-12).all()
    _assert_matches(res, reference(M, a, b, 0.05, 1e-12, 4), plan_rtol=1e-10)


@pytest.mark.cudasim
@pytest.mark.gpu
def test_small_reg_warm_start_and_inputs_unchanged(rng, kernels):
    # reg 1e-4 of the cost range: max-shifted log-sum-exps, no under/overflow
    M, a, b = _problem(rng, 2, 4, 3, scale=10.0)
    g0 = rng.standard_normal((2, 3))
    copies = [x.copy() for x in (M, a, b, g0)]
    res = sinkhorn_small_batch(M, a, b, reg=1e-3, tol=1e-9, max_iter=300, g0=g0)
    for x, c in zip((M, a, b, g0), copies):
        np.testing.assert_array_equal(x, c)
    assert np.isfinite(res.plan).all() and np.isfinite(res.f).all()
    _assert_matches(res, reference(M, a, b, 1e-3, 1e-9, 300, g0=g0), plan_rtol=1e-8)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_batch_takes_the_kernels(rng, cp, dtype):
    """On a device: solve() on a CuPy batch runs the kernels (one history row)
    on CuPy arrays, and agrees with the CPU batch and the driver's loop."""
    M, a, b = _problem(rng, 5, 9, 7, dtype=dtype)
    M_d, a_d, b_d = (cp.asarray(x) for x in (M, a, b))
    tol = 1e-9 if dtype == np.float64 else 1e-5  # float32: above what its plans can reach
    res = fastsinkhorn.solve(M_d, a_d, b_d, reg=0.1, method="sinkhorn", tol=tol)
    loop = fastsinkhorn.solve(M_d, a_d, b_d, reg=0.1, method="sinkhorn", tol=tol, check_every=1)
    cpu = fastsinkhorn.solve(M, a, b, reg=0.1, method="sinkhorn", tol=tol, backend="cpu")
    assert isinstance(res.plan, cp.ndarray) and res.plan.dtype == dtype
    assert len(res.history["error"]) == 1 and len(loop.history["error"]) > 1
    assert bool(res.converged.all())
    for other in (cpu.plan, cp.asnumpy(loop.plan)):
        np.testing.assert_allclose(cp.asnumpy(res.plan), other, atol=10 * tol)
    # float64: the same iterates as the CPU loop (which checks every iteration too)
    if dtype == np.float64:
        np.testing.assert_array_equal(cp.asnumpy(cp.asarray(res.n_iter_phases["sinkhorn"])),
                                      cpu.n_iter_phases["sinkhorn"])
        np.testing.assert_allclose(cp.asnumpy(res.plan), cpu.plan, rtol=1e-9, atol=1e-15)


class _SmallBatchCPU(CPUBackend):
    """The CPU backend with the GPU backend's ``small_batches`` member: solve()'s
    route to the kernels, run on NumPy arrays (the simulator's)."""

    small_batches = True
    calls = 0

    def sinkhorn_small_batch(self, *args):
        self.calls += 1
        return GPUBackend.sinkhorn_small_batch(self, *args)


@pytest.mark.cudasim
@pytest.mark.gpu
def test_solve_routes_small_batches_to_the_kernels(rng, kernels, monkeypatch):
    """solve() on a backend declaring ``small_batches``: one call to it, the
    loop's answer (per-problem n_iter, plans, potentials), one history row;
    a callback (which the kernels cannot call) sends the batch to the loop."""
    M, a, b = _problem(rng, 3, 5, 4)
    expected = fastsinkhorn.solve(M, a, b, reg=0.2, method="sinkhorn", tol=1e-9, backend="cpu")
    backend = _SmallBatchCPU()
    monkeypatch.setattr(validation, "get_backend", lambda name: backend)
    res = fastsinkhorn.solve(M, a, b, reg=0.2, method="sinkhorn", tol=1e-9, backend="cpu")
    assert backend.calls == 1 and len(res.history["error"]) == 1
    assert res.converged.all() and res.status.name == "CONVERGED"
    np.testing.assert_array_equal(res.n_iter_phases["sinkhorn"], expected.n_iter_phases["sinkhorn"])
    np.testing.assert_allclose(res.plan, expected.plan, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(res.potentials[0] - res.potentials[0].mean(1, keepdims=True),
                               expected.potentials[0] - expected.potentials[0].mean(1, keepdims=True), atol=1e-9)
    with pytest.warns(fastsinkhorn.ConvergenceWarning, match="3 of 3 problems"):
        short = fastsinkhorn.solve(M, a, b, reg=0.2, method="sinkhorn", tol=1e-12, max_iter=3, backend="cpu")
    assert backend.calls == 2 and not short.converged.any() and short.status.name == "MAX_ITER"
    fastsinkhorn.solve(M, a, b, reg=0.2, method="sinkhorn", tol=1e-9, backend="cpu", callback=lambda state: None)
    fastsinkhorn.solve(M[0], a[0], b[0], reg=0.2, method="sinkhorn", tol=1e-9, backend="cpu")
    fastsinkhorn.solve(M, a, b, reg=0.2, method="sinkhorn", tol=1e-9, backend="cpu", check_every=5)
    fastsinkhorn.solve(M, a, b, reg=0.2, method="sinkhorn", unbalanced=1.0, tol=1e-9, backend="cpu")
    forbidden = M.copy()
    forbidden[:, 0, 0] = np.inf
    fastsinkhorn.solve(forbidden, a, b, reg=0.2, method="sinkhorn", tol=1e-9, backend="cpu")
    assert backend.calls == 2  # none of those: the loop honours what the kernels cannot


def test_importing_and_solving_on_the_cpu_never_imports_numba_cuda():
    code = ("import sys, numpy as np, fastsinkhorn; fastsinkhorn.solve(np.random.rand(2, 3, 4), reg=0.5); "
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pathlib.Path(fastsinkhorn.__file__).parents[1]),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.cudasim
@pytest.mark.gpu
def test_benchmark_smoke(kernels, capsys):
    """benchmarks/cuda_small_batch.py at B = 4: ours against the reference."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
    try:
        from benchmarks import cuda_small_batch
    finally:
        sys.path.pop(0)
    assert cuda_small_batch.main(["--batch", "4", "--n", "6", "--reg", "0.1", "--smoke"]) == 0
    assert "numba-cuda" in capsys.readouterr().out


def test_constants_agree():
    """The launcher's limit is the kernels' (the launcher does not import them)."""
    if not SIMULATED and not cuda_available():
        pytest.skip("importing the kernels needs NUMBA_ENABLE_CUDASIM=1 or a CUDA device")
    from fastsinkhorn.backends._cuda_numba_kernels import MAX_SIDE

    assert _cuda_numba.MAX_SIDE == MAX_SIDE


@pytest.mark.parametrize("kwargs, match", [
    ({"M": np.zeros((2, 3))}, "M must be"),
    ({"M": np.zeros((1, 3, 129))}, "M must be"),
    ({"M": np.zeros((1, 3, 4), dtype=np.int64)}, "M must be"),
    ({"M": np.zeros((1, 4, 3)).transpose(0, 2, 1)}, "C-contiguous"),
    ({"a": np.ones((1, 4))}, "a must have shape"),
    ({"b": np.ones((2, 4))}, "b must have shape"),
    ({"reg": 0.0}, "0 < reg < inf"),
    ({"reg": np.inf}, "0 < reg < inf"),
    ({"tol": -1.0}, "0 <= tol"),
    ({"max_iter": 0}, "max_iter >= 1"),
    ({"max_iter": 2.5}, "integer"),
])
def test_bad_arguments_raise(kwargs, match):
    args = {"M": np.zeros((1, 3, 4)), "a": np.ones((1, 3)) / 3, "b": np.ones((1, 4)) / 4,
            "reg": 0.1, "tol": 1e-6, "max_iter": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        sinkhorn_small_batch(**args)


def test_fits():
    assert fits(np.zeros((2, 128, 1))) and fits(np.zeros((1, 3, 4), np.float32))
    assert not fits(np.zeros((2, 129, 4))) and not fits(np.zeros((3, 4))) and not fits(np.zeros((0, 3, 4)))
