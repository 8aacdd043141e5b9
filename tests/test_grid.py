"""Regular grids (``fastsinkhorn.Grid``): the separable passes against the dense
cost, and grid solves against dense solves of the same cost.

The members of the geometry protocol on grids are also run, with every
other geometry, by ``tests/test_geometry_protocol.py``; the shared-cost
products of each axis's pass against plain log-sum-exps by
``tests/test_shared_cost.py``.
"""

import warnings

import numpy as np
import ot
import pytest

import fastsinkhorn as fs
from fastsinkhorn.backends import get_backend
from fastsinkhorn.core.validation import prepare_problem
from fastsinkhorn.geometry.grid import GridGeometry

BACKENDS = ["reference", "cpu"]
#: (shape, spacing): 1-D to 3-D, odd sizes, non-square, axes of one point, spacing per axis.
GRIDS = [((7,), None), ((5, 6), None), ((4, 1, 3), (0.3, 1.0, 0.2)), ((3, 4, 5), 0.25), ((9, 2), (0.1, 0.7))]


def dense_cost(grid):
    """``|x_i - x_j|^2`` from the points, by NumPy."""
    x = grid.points()
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)


def logsumexp(X, axis):
    top = X.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(X - top).sum(axis=axis)) + np.squeeze(top, axis)


def histogram(rng, shape, zeros=0):
    """A random positive histogram of unit mass on ``shape``, with ``zeros`` zero entries."""
    h = rng.random(shape) + 0.05
    if zeros:
        h.ravel()[rng.choice(h.size, size=zeros, replace=False)] = 0.0
    return h / h.sum()


# -- the grid and its cost --------------------------------------------------------------------

def test_default_points_are_linspace_and_the_cost_is_squared_euclidean():
    grid = fs.Grid((4, 3))
    x, y = np.meshgrid(np.linspace(0, 1, 4), np.linspace(0, 1, 3), indexing="ij")
    np.testing.assert_allclose(grid.points(), np.stack([x.ravel(), y.ravel()], axis=1), rtol=1e-15)
    np.testing.assert_allclose(grid.cost_matrix(), dense_cost(grid), rtol=1e-14, atol=1e-15)
    assert grid.cost_range() == pytest.approx(2.0, rel=1e-15)
    spaced = fs.Grid((5, 2), spacing=(0.5, 3.0))
    np.testing.assert_allclose(spaced.axis_points()[1], [0.0, 3.0])
    assert spaced.cost_range() == pytest.approx(2.0 ** 2 + 3.0 ** 2, rel=1e-15)
    assert fs.Grid(6).shape == (6,) and fs.Grid(np.int64(6), 0.5).spacing == (0.5,)
    assert "Grid(shape=(5, 2)" in repr(spaced)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, spacing", GRIDS)
@pytest.mark.parametrize("reg", [0.3, 0.01])
def test_passes_match_the_dense_cost(rng, backend, shape, spacing, reg):
    """Every pass (plain, weighted by one axis's cost, a batch of two) equals
    the dense log-sum-exp of the same cost, with ``-inf`` entries (zero masses)."""
    grid = fs.Grid(shape, spacing)
    geom = GridGeometry(grid, get_backend(backend))
    C = dense_cost(grid)
    h = rng.standard_normal((2, grid.size))
    h[0, 0] = h[1, -1] = -np.inf
    got = geom.log_convolve(h, reg)
    assert got.shape == h.shape
    want = logsumexp(h[:, None, :] - C[None] / reg, axis=2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(geom.log_convolve(h[1], reg), want[1], rtol=1e-12, atol=1e-12)
    points = grid.points()
    for axis in range(len(shape)):  # the sum weighted by the axis's share of the cost
        share = (points[:, None, axis] - points[None, :, axis]) ** 2
        with np.errstate(divide="ignore"):
            weighted = logsumexp(h[:, None, :] - C[None] / reg + np.log(share)[None], axis=2)
        np.testing.assert_allclose(geom.log_convolve(h, reg, weighted=axis), weighted, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_passes_are_log_stable_where_the_kernel_underflows(rng, backend):
    """At reg = 1e-6 of the cost range every entry of exp(-C / reg) off the
    diagonal is 0 in float64, yet each pass equals the dense log-sum-exp."""
    grid = fs.Grid((6, 5, 3))
    reg = 1e-6 * grid.cost_range()
    C = dense_cost(grid)
    assert np.exp(-C[C > 0] / reg).max() == 0.0  # a plain kernel would lose everything
    g = 0.5 * rng.standard_normal(grid.size)  # potentials of the cost's scale, far above reg
    geom = GridGeometry(grid, get_backend(backend))
    got = geom.lse_rows(g, reg)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, logsumexp((g[None, :] - C) / reg, axis=1), rtol=1e-12)


# -- solves ------------------------------------------------------------------------------------

def _same_potentials(got, want, rtol):
    """``got`` equals ``want`` up to balanced OT's offset ``(f + t, g - t)``."""
    (f1, g1), (f2, g2) = got, want
    for x, y in ((f1, f2), (g1, g2)):
        assert np.array_equal(np.isinf(x), np.isinf(y))
    live_f, live_g = np.isfinite(f2), np.isfinite(g2)
    t = np.mean(f1[live_f] - f2[live_f])
    scale = max(np.abs(f2[live_f]).max(), np.abs(g2[live_g]).max(), 1e-300)
    np.testing.assert_allclose(f1[live_f] - t, f2[live_f], rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(g1[live_g] + t, g2[live_g], rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("shape, spacing", [((6, 5), None), ((3, 4, 2), (0.5, 0.2, 1.0)), ((11,), 0.1)])
@pytest.mark.parametrize("relative_reg", [1e-1, 1e-2, 1e-3])
def test_a_grid_solve_equals_the_dense_solve(rng, shape, spacing, relative_reg):
    grid = fs.Grid(shape, spacing)
    reg = relative_reg * grid.cost_range()
    a, b = histogram(rng, shape, zeros=1), histogram(rng, shape)
    C = dense_cost(grid)
    res = fs.solve(grid, a, b, reg=reg, tol=1e-10, max_iter=100000)
    ref = fs.solve(C, a.ravel(), b.ravel(), reg=reg, method="sinkhorn", tol=1e-10, max_iter=100000)
    assert res.converged and ref.converged and res.method == "sinkhorn"
    assert isinstance(res.plan, fs.LazyPlan) and res.plan.shape == (grid.size, grid.size)
    plan = res.plan.to_dense()
    np.testing.assert_allclose(plan, ref.plan, rtol=0, atol=1e-9 * ref.plan.max())
    np.testing.assert_allclose(res.plan.rows(2, 5), ref.plan[2:5], rtol=0, atol=1e-9 * ref.plan.max())
    assert float(res.value) == pytest.approx(float(ref.value), rel=1e-8, abs=1e-12)
    assert float(res.value_linear) == pytest.approx(float(ref.value_linear), rel=1e-8)
    assert float(res.value_linear) == pytest.approx(float((C * plan).sum()), rel=1e-10)
    _same_potentials(res.potentials, ref.potentials, 1e-7)
    r, c = res.plan.marginals()
    np.testing.assert_allclose(r, a.ravel(), atol=1e-9)
    np.testing.assert_allclose(c, b.ravel(), atol=1e-9)
    v = rng.standard_normal(grid.size)
    np.testing.assert_allclose(res.plan.apply(v), ref.plan @ v, rtol=0, atol=1e-9)


def test_a_grid_solve_is_right_where_a_plain_kernel_underflows(rng):
    """reg = 1e-4 of the cost range: exp(-C / reg) underflows beyond a few
    neighbours, and the solve still matches the dense log-stable solve and,
    within the entropic bias, the exact transport cost."""
    grid = fs.Grid((5, 4))
    reg = 1e-4 * grid.cost_range()
    C = dense_cost(grid)
    assert np.exp(-C.max() / reg) == 0.0
    a, b = histogram(rng, grid.shape), histogram(rng, grid.shape)
    res = fs.solve(grid, a, b, reg=reg, tol=1e-9, max_iter=200000)
    ref = fs.solve(C, a.ravel(), b.ravel(), reg=reg, method="sinkhorn", tol=1e-9, max_iter=200000)
    assert res.converged and ref.converged
    assert np.isfinite(res.potentials[0]).all() and np.isfinite(res.potentials[1]).all()
    assert float(res.value_linear) == pytest.approx(float(ref.value_linear), rel=1e-6)
    exact = ot.emd2(a.ravel(), b.ravel(), C)  # POT's network simplex
    assert abs(float(res.value_linear) - exact) <= 10 * reg * np.log(grid.size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masses_of_the_grids_shape_or_flat_and_float32(rng, dtype):
    grid = fs.Grid((4, 5))
    a, b = histogram(rng, grid.shape).astype(dtype), histogram(rng, grid.shape).astype(dtype)
    a0, b0 = a.copy(), b.copy()
    res = fs.solve(grid, a, b, reg=0.05)
    flat = fs.solve(grid, a.ravel(), b.ravel(), reg=0.05)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)  # inputs never modified
    assert res.converged and res.n_iter == flat.n_iter
    np.testing.assert_array_equal(res.potentials[0], flat.potentials[0])
    dense = fs.solve(dense_cost(grid), a.astype(np.float64).ravel(), b.astype(np.float64).ravel(), reg=0.05,
                     method="sinkhorn")
    assert float(res.value) == pytest.approx(float(dense.value), rel=1e-7)
    r, c = res.marginals
    np.testing.assert_allclose(c, b.ravel(), atol=1e-8)


def test_zero_masses_have_minus_inf_potentials_and_empty_rows(rng):
    grid = fs.Grid((3, 4))
    a, b = histogram(rng, grid.shape, zeros=2), histogram(rng, grid.shape, zeros=3)
    res = fs.solve(grid, a, b, reg=0.1)
    f, g = res.potentials
    assert np.array_equal(f == -np.inf, a.ravel() == 0) and np.array_equal(g == -np.inf, b.ravel() == 0)
    P = res.plan.to_dense()
    assert not P[a.ravel() == 0].any() and not P[:, b.ravel() == 0].any()
    dense = fs.solve(dense_cost(grid), a.ravel(), b.ravel(), reg=0.1, method="sinkhorn")
    np.testing.assert_allclose(P, dense.plan, rtol=0, atol=1e-9)


def test_unbalanced_grid_solve_equals_the_dense_one(rng):
    grid = fs.Grid((4, 3), spacing=0.3)
    a, b = histogram(rng, grid.shape), 2.0 * histogram(rng, grid.shape)
    res = fs.solve(grid, a, b, reg=0.05, unbalanced=0.5, tol=1e-10)
    ref = fs.solve(dense_cost(grid), a.ravel(), b.ravel(), reg=0.05, unbalanced=0.5, method="sinkhorn",
                   tol=1e-10)
    assert res.converged and ref.converged
    np.testing.assert_allclose(res.plan.to_dense(), ref.plan, rtol=0, atol=1e-9)
    assert float(res.value) == pytest.approx(float(ref.value), rel=1e-8)


def test_non_convergence_warns(rng):
    grid = fs.Grid((6, 6))
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve(grid, histogram(rng, grid.shape), histogram(rng, grid.shape), reg=1e-3, max_iter=3)
    assert not res.converged


# -- refused input -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (3, 0), (2.5,), (3, True), (-1,)])
def test_bad_shapes_name_the_argument(shape):
    with pytest.raises(ValueError, match="shape"):
        fs.Grid(shape)


@pytest.mark.parametrize("spacing", [(0.1,), (0.1, -1.0), (0.1, np.nan), 0.0, (0.1, np.inf)])
def test_bad_spacings_name_the_argument(spacing):
    with pytest.raises(ValueError, match="spacing"):
        fs.Grid((3, 4), spacing)


def test_bad_types_name_the_argument():
    with pytest.raises(TypeError, match="shape"):
        fs.Grid(3.5)
    with pytest.raises(TypeError, match="spacing"):
        fs.Grid((3, 4), spacing="wide")


def test_masses_of_another_shape_name_the_argument(rng):
    grid = fs.Grid((3, 4))
    with pytest.raises(ValueError, match=r"a must have shape \(12,\) or \(3, 4\)"):
        fs.solve(grid, np.ones((4, 3)) / 12, None, reg=0.1)
    with pytest.raises(ValueError, match="b must"):
        fs.solve(grid, None, np.ones(11) / 11, reg=0.1)
    with pytest.raises(ValueError, match="b must"):
        fs.solve(grid, None, -np.ones(12), reg=0.1)


def test_unsupported_solves_are_refused():
    grid = fs.Grid((3, 4))
    with pytest.raises(NotImplementedError, match="sns"):
        fs.solve(grid, reg=0.1, method="sns")
    with pytest.raises(NotImplementedError, match="exact"):
        fs.solve(grid)
    with pytest.raises(NotImplementedError, match="c "):
        fs.solve(grid, reg=0.1, c=np.ones((12, 12)))
    with pytest.raises(ValueError, match="check_every"):
        fs.solve(grid, reg=0.1, check_every=5)


def test_auto_is_sinkhorn_even_at_small_reg(rng):
    grid = fs.Grid((4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fs.solve(grid, histogram(rng, grid.shape), histogram(rng, grid.shape), reg=1e-3, max_iter=100000)
    assert res.method == "sinkhorn" and res.converged


def test_prepared_grid_problem_is_lazy():
    prob = prepare_problem(fs.Grid((256, 256)), None, None, 1e-3, "cpu")
    assert prob.geom.shape == (65536, 65536) and not prob.geom.can_store_kernel
    assert prob.geom.new_buffer() is None
