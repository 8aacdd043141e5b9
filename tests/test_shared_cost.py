"""Many problems on one cost: the matrix-product passes against plain log-sum-exps,
and the batch's solves against each problem's own."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import fastsinkhorn as fs
from fastsinkhorn.backends import get_backend
from fastsinkhorn.geometry import shared_kernel
from fastsinkhorn.geometry.dense import DenseGeometry
from fastsinkhorn.geometry.shared import SharedCostGeometry
from fastsinkhorn.geometry.shared_kernel import SharedKernel


def reference_lse(C, p, reg, rows=True):
    """``log sum_j exp((p_bj - C_ij) / reg)`` (rows) or over ``i`` (columns), float64 NumPy."""
    C = np.asarray(C, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        z = (p[:, None, :] - C[None, :, :]) / reg if rows else (p[:, :, None] - C[None, :, :]) / reg
    z = np.where(np.isnan(z), -np.inf, z)
    return logsumexp(z, axis=2 if rows else 1)


def kernel_of(C):
    return SharedKernel(DenseGeometry(np.ascontiguousarray(C), get_backend("cpu"), float(np.ptp(C))))


def masses(rng, B, n, zeros=False):
    w = rng.random((B, n)) + 0.01
    if zeros:
        w[:, rng.random(n) < 0.3] = 0.0
        w[:, 0] += 0.1  # every problem keeps some mass
    return w / w.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("B,n,m", [(1, 1, 1), (3, 7, 5), (16, 40, 33), (5, 64, 100)])
@pytest.mark.parametrize("spread", [0.0, 1.0, 30.0])
def test_passes_equal_plain_log_sum_exps(rng, B, n, m, spread):
    """Potentials from alike (``spread`` 0) to far apart (30 cost ranges: most
    sums are recomputed exactly, after re-centring): the answer is the same."""
    C, reg = rng.random((n, m)), 0.05
    k = kernel_of(C)
    for _ in range(3):  # passes after the first reuse (or re-centre) the stabilisers
        g, f = rng.normal(size=(B, m)) * spread, rng.normal(size=(B, n)) * spread
        np.testing.assert_allclose(k.lse_rows(g, reg), reference_lse(C, g, reg), rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(k.lse_cols(f, reg), reference_lse(C, f, reg, rows=False), rtol=1e-12,
                                   atol=1e-10)
    if spread == 30.0 and n * m > 1:
        assert k.exact_entries > 0  # the fallback ran (a wrong one would have failed above)


def test_zero_masses_and_forbidden_costs(rng):
    C = rng.random((12, 9))
    C[2, :] = np.inf  # a row no column reaches: -inf, exactly
    C[:, 4] = np.inf
    C[5, 3] = np.inf
    g = rng.normal(size=(4, 9))
    g[1, :] = -np.inf  # a problem with no mass on that side
    g[:, 7] = -np.inf
    k = kernel_of(C)
    out = k.lse_rows(g, 0.1)
    ref = reference_lse(C, g, 0.1)
    assert np.array_equal(np.isneginf(out), np.isneginf(ref))
    np.testing.assert_allclose(out[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-12)
    f = rng.normal(size=(4, 12))
    ref = reference_lse(C, f, 0.1, rows=False)
    out = k.lse_cols(f, 0.1)
    assert np.array_equal(np.isneginf(out), np.isneginf(ref))
    np.testing.assert_allclose(out[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-12)


def test_float32_cost_passes(rng):
    C = rng.random((50, 30)).astype(np.float32)
    k = kernel_of(C)
    g = rng.normal(size=(6, 30)) * 0.1
    ref = reference_lse(C, g, 0.05)
    np.testing.assert_allclose(k.lse_rows(g, 0.05), ref, rtol=0, atol=2e-5)  # float32 products
    assert k.K.dtype == np.float32


@pytest.mark.parametrize("spread,reg", [(0.1, 0.02), (1.0, 1e-3)])
def test_row_costs_are_the_plans_costs(rng, spread, reg):
    """``sum_j C_ij P_ij`` per row, for potentials alike, and far apart at a
    reg of 1e-3 of the cost range (kernel entries below FLUSH, some problem's
    sums recomputed exactly); ``f`` is the c-transform of ``g``, so every
    plan row has mass 1."""
    C = rng.random((20, 15))
    C[3, 4] = np.inf
    g = rng.normal(size=(3, 15)) * 0.1
    g[0] += spread * rng.random(15)
    f = -reg * reference_lse(C, g, reg)
    with np.errstate(invalid="ignore"):
        P = np.exp((f[:, :, None] + g[:, None, :] - C[None]) / reg)
    want = (np.where(P > 0, C[None], 0.0) * P).sum(axis=2)
    k = kernel_of(C)
    np.testing.assert_allclose(k.row_costs(f, g, reg), want, rtol=1e-11)
    assert (k.exact_entries > 0) == (spread > 1)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 12), B=st.integers(1, 5),
       log_scale=st.floats(-12, 300), log_reg=st.floats(-3, 1), seed=st.integers(0, 2**31))
def test_passes_over_cost_ranges(n, m, B, log_scale, log_reg, seed):
    """Costs from 1e-12 to 1e300 and reg relative to them from 1e-3 to 10: no
    overflow, no NaN, the plain log-sum-exp's answer."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** log_scale
    C, reg = rng.random((n, m)) * scale, scale * 10.0 ** log_reg
    g = rng.normal(size=(B, m)) * scale
    out, ref = kernel_of(C).lse_rows(g, reg), reference_lse(C, g, reg)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-11, atol=1e-9)


# -- solves -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
@pytest.mark.parametrize("reg", [0.1, 0.01, 1e-3])
def test_batch_on_one_cost_solves_each_problem(rng, dtype, tol, reg):
    n, m, B = 30, 24, 5
    C = rng.random((n, m)).astype(dtype)
    A, Bm = masses(rng, B, n, zeros=True), masses(rng, B, m)
    res = fs.solve(C, A, Bm, reg=reg, method="sinkhorn", tol=tol, max_iter=200000)
    assert res.batched and res.converged.all() and res.plan.shape == (B, n, m)
    assert np.all(res.marginal_error <= tol)
    for p in range(B):
        alone = fs.solve(C, A[p], Bm[p], reg=reg, method="sinkhorn", tol=tol, max_iter=200000)
        assert res.value_linear[p] == pytest.approx(alone.value_linear, rel=0, abs=20 * tol)
        r, c = res.plan[p].marginals()  # the lazy plan of problem p: its own marginals
        assert np.abs(r - A[p]).sum() + np.abs(c - Bm[p]).sum() <= 1.5 * tol
        assert np.all(r[A[p] == 0] == 0)


def test_one_side_shared_and_the_auto_method(rng):
    """A 1-D ``a`` is every problem's; ``auto`` at small reg runs SNS problem by
    problem on the shared cost."""
    C = rng.random((20, 20))
    a, Bm = masses(rng, 1, 20)[0], masses(rng, 4, 20)
    for method, reg in (("sinkhorn", 0.05), ("auto", 1e-3)):
        res = fs.solve(C, a, Bm, reg=reg, method=method)
        assert res.converged.all()
        for p in range(4):
            alone = fs.solve(C, a, Bm[p], reg=reg, method=method)
            assert res.value[p] == pytest.approx(alone.value, abs=1e-8)


def test_inputs_are_not_modified_and_result_is_per_problem(rng):
    C, A, Bm = rng.random((10, 8)), masses(rng, 3, 10), masses(rng, 3, 8)
    copies = [x.copy() for x in (C, A, Bm)]
    res = fs.solve(C, A, Bm, reg=0.05)
    for x, y in zip((C, A, Bm), copies):
        assert np.array_equal(x, y)
    assert res.value.shape == (3,) and res.potentials[0].shape == (3, 10)


def test_shape_errors_name_the_argument(rng):
    C = rng.random((10, 8))
    with pytest.raises(ValueError, match="same number of problems"):
        fs.solve(C, masses(rng, 3, 10), masses(rng, 4, 8), reg=0.1)
    with pytest.raises(ValueError, match="^a must"):
        fs.solve(C, np.ones((2, 3, 10)) / 10, None, reg=0.1)
    with pytest.raises(ValueError, match="b must have shape"):
        fs.solve(C, masses(rng, 3, 10), masses(rng, 3, 9), reg=0.1)


def test_geometry_subset_shares_the_kernel(rng):
    C = rng.random((6, 5))
    geom = SharedCostGeometry(C, 4, get_backend("cpu"), float(np.ptp(C)))
    sub = geom.subset(np.array([0, 2]))
    assert sub.shape == (2, 6, 5) and sub.kernel is geom.kernel and sub.M is geom.M


def test_recentring_is_rate_limited(rng, monkeypatch):
    """Problems too far apart for any one centre (reg 1e-3 of the cost range):
    between re-centrings, each pass recomputes what fails exactly."""
    monkeypatch.setattr(shared_kernel, "RECENTRE_EVERY", 5)
    C = rng.random((30, 30))
    k = kernel_of(C)
    g = np.zeros((4, 30))
    g[0] = 3 * rng.random(30)  # problem 0 some 3000 reg from the others
    for _ in range(12):
        np.testing.assert_allclose(k.lse_rows(g, 1e-3), reference_lse(C, g, 1e-3), rtol=1e-12, atol=1e-9)
    assert 2 <= k.recentred <= 3 and k.exact_entries > 0


def test_unbalanced_batch_on_one_cost(rng):
    """KL-relaxed marginals: each problem's own translation step (one shift per problem)."""
    C = rng.random((15, 12))
    A, Bm = masses(rng, 3, 15) * 2.0, masses(rng, 3, 12)
    res = fs.solve(C, A, Bm, reg=0.05, unbalanced=0.5, method="sinkhorn", tol=1e-9)
    assert res.converged.all()
    for p in range(3):
        alone = fs.solve(C, A[p], Bm[p], reg=0.05, unbalanced=0.5, method="sinkhorn", tol=1e-9)
        assert res.value[p] == pytest.approx(alone.value, abs=1e-8)
        np.testing.assert_allclose(res.marginals[0][p], alone.marginals[0], atol=1e-8)


def test_grid_passes_by_products_equal_the_backends_at_small_reg(rng):
    """A grid's axis passes run on the shared-cost products: against the
    backend's plain 1-D log-sum-exps at reg 1e-3 of the cost range."""
    from fastsinkhorn.geometry.grid import GridGeometry

    geom = GridGeometry(fs.Grid((40, 33)), get_backend("cpu"))
    reg = 1e-3 * geom.cost_range
    h = rng.normal(size=(2, 40 * 33)) * 50
    h[0, :7] = -np.inf
    want = get_backend("cpu").grid_lse(h.reshape(2, 40, 33), geom.log_kernels(reg)).reshape(2, -1)
    np.testing.assert_allclose(geom.log_convolve(h, reg), want, rtol=1e-12, atol=1e-9)
