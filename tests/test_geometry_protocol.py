"""Every member of the geometry protocol, on every geometry and backend,
against plain NumPy float64 on fresh random inputs of several shapes.

The geometries are built as a solve builds them (``prepare_problem``): a
dense C-ordered cost, an F-ordered one (solved as its transpose), a float32
one, one with forbidden (``+inf``) entries, point clouds of each cost, and
regular grids (1-D to 3-D, odd sizes, spacing per axis).
Each member's result is compared with the same quantity computed here from
the cost matrix ``C`` by NumPy, to tolerances far below what a wrong member
(a transposed cost, a missing potential, a wrong axis) would give: about
1e-12 relative in float64, one float32 rounding where a float32 buffer is
stored. Then the protocol itself: ``isinstance`` (names), every signature
against the protocol's (parameters, kinds, defaults), and a scan of the
drivers showing that they use nothing of a geometry outside the protocol,
and no backend, ``isinstance`` or ``lazy`` at all.
"""

import ast
import inspect
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.backends import _blocks, get_backend
from fastsinkhorn.backends._gpu import cuda_available
from fastsinkhorn.core.validation import prepare_problem
from fastsinkhorn.geometry.cloud import CloudGeometry
from fastsinkhorn.geometry.dense import DenseGeometry
from fastsinkhorn.geometry.grid import GridGeometry
from fastsinkhorn.geometry.protocol import BatchGeometry, Geometry

BACKENDS = ["reference", "cpu",
            pytest.param("gpu", marks=pytest.mark.skipif(not cuda_available(), reason="no CUDA device"))]
#: (n, m) of the geometry: single rows and columns, both aspect ratios, and
#: one large enough for the CPU backend's multi-block (threaded) passes.
SHAPES = [(1, 1), (1, 9), (8, 1), (37, 23), (23, 61), (257, 530)]
REG = 0.05
RTOL = 1e-12  # float64 results
#: A float32 store: one rounding of a float64 value, maybe to the neighbour.
RTOL32 = 2.5e-7


# -- the geometries, and their cost matrices computed here -------------------------------------

@dataclass
class Case:
    geom: Any
    C: np.ndarray  # the cost the geometry stands for, float64 (n, m), computed by NumPy
    backend: str

    @property
    def shape(self):
        return self.C.shape

    @property
    def store_rtol(self):
        return RTOL32 if self.geom.dtype == np.float32 else RTOL

    def dev(self, x):
        return self.geom.xp.asarray(x)


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


def _dense(rng, n, m, backend, order="C", dtype=np.float64, forbidden=False):
    if order == "F":  # the caller's (m, n) cost, F-ordered: solved as its (n, m) transpose
        given = np.asfortranarray(rng.random((m, n)))
        prob = prepare_problem(given, np.ones(m) / m, np.ones(n) / n, REG, backend)
        assert prob.transposed == (not given.flags.c_contiguous)
        return Case(prob.geom, given.T if prob.transposed else given, backend)
    M = rng.random((n, m)).astype(dtype)
    if forbidden and n >= 2 and m >= 2:
        M[0, -1] = M[-1, 0] = np.inf
    prob = prepare_problem(M, np.ones(n) / n, np.ones(m) / m, REG, backend)
    assert not prob.transposed
    return Case(prob.geom, M.astype(np.float64), backend)


def cloud_cost(x, y, kind, p, scale):
    """``C_ij = cost(x_i, y_j)`` by NumPy, from the definition."""
    d = np.abs(x[:, None, :] - y[None, :, :])
    if kind == "minkowski":
        return scale * (d ** p).sum(axis=2) ** (1.0 / p)
    sq = (d * d).sum(axis=2)
    return scale * (np.sqrt(sq) if kind == "euclidean" else sq)


def _cloud(rng, n, m, backend, kind, p=2.0, scale=1.0, d=3):
    x, y = rng.random((n, d)), rng.random((m, d))
    prob = prepare_problem(fs.PointCloud(x, y, cost=kind, p=p, scale=scale), np.ones(n) / n, np.ones(m) / m,
                           REG, backend)
    case = Case(prob.geom, cloud_cost(x, y, kind, p, scale), backend)
    case.points = (x, y, kind, p, scale)
    return case


#: Grids (shape, spacing) in place of SHAPES: a grid's cost is square. One
#: point, 1-D to 3-D, axes of one point, and one with CPU multi-block passes.
GRIDS = [((1,), None), ((9,), 0.3), ((3, 4), None), ((5, 1, 3), (0.2, 1.0, 0.7)), ((30, 41), (0.05, 0.03))]


def _grid(rng, shape, spacing, backend):
    grid = fs.Grid(shape, spacing)
    prob = prepare_problem(grid, None, None, REG, backend)
    x = grid.points()  # the cost by NumPy, from the definition (squared distances of the points)
    return Case(prob.geom, ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2), backend)


GEOMETRIES = {
    "dense-C": lambda rng, n, m, be: _dense(rng, n, m, be),
    "dense-F": lambda rng, n, m, be: _dense(rng, n, m, be, order="F"),
    "dense-float32": lambda rng, n, m, be: _dense(rng, n, m, be, dtype=np.float32),
    "dense-forbidden": lambda rng, n, m, be: _dense(rng, n, m, be, forbidden=True),
    "cloud-sqeuclidean": lambda rng, n, m, be: _cloud(rng, n, m, be, "sqeuclidean", scale=0.7),
    "cloud-euclidean": lambda rng, n, m, be: _cloud(rng, n, m, be, "euclidean", scale=1.3, d=2),
    "cloud-minkowski": lambda rng, n, m, be: _cloud(rng, n, m, be, "minkowski", p=1.5, scale=0.9),
    "grid": None,  # its own shapes (GRIDS)
}


def cases(rng, geometry, backend):
    """The geometry at every shape, each with fresh random inputs."""
    if geometry == "grid":
        for shape, spacing in GRIDS:
            yield _grid(rng, shape, spacing, backend)
        return
    for n, m in SHAPES:
        yield GEOMETRIES[geometry](rng, n, m, backend)


def potentials(rng, n, m, zero_mass=True):
    """``(f, g)`` of a few tenths, with a ``-inf`` (a zero mass) each when longer than 2."""
    f, g = 0.1 * rng.standard_normal(n), 0.1 * rng.standard_normal(m)
    if zero_mass and n > 2:
        f[1] = -np.inf
    if zero_mass and m > 2:
        g[-1] = -np.inf
    return f, g


def plan_of(C, f, g, reg=REG):
    """``exp((f_i + g_j - C_ij) / reg)``, float64."""
    with np.errstate(invalid="ignore"):
        z = (f[:, None] + g[None, :] - C) / reg
    return np.exp(np.where(np.isnan(z), -np.inf, z))


def weighted(C, P):
    """``C * P`` with entries without mass counting 0 (also at an infinite cost)."""
    return np.where(P > 0, C, 0.0) * P


def logsumexp(X, axis):
    top = X.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(X - top).sum(axis=axis)) + np.squeeze(top, axis)


def block_sizes(monkeypatch):
    """Run the caller's loop body at the default block size and at one that
    cuts every shape into many blocks (with a last, shorter one)."""
    for entries in (_blocks.ARRAY_BLOCK_ENTRIES, 50):
        monkeypatch.setattr(_blocks, "ARRAY_BLOCK_ENTRIES", entries)
        yield entries


geometries = pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
backends = pytest.mark.parametrize("backend", BACKENDS)


# -- attributes and capabilities --------------------------------------------------------------

@backends
@geometries
def test_attributes_and_capabilities(rng, geometry, backend):
    be = get_backend(backend)
    for case in cases(rng, geometry, backend):
        geom, C = case.geom, case.C
        n, m = C.shape
        assert geom.xp is be.xp
        assert geom.shape == (n, m) and all(type(s) is int for s in geom.shape)
        want_dtype = np.float32 if geometry == "dense-float32" else np.float64
        assert isinstance(geom.dtype, np.dtype) and geom.dtype == want_dtype
        finite = C[np.isfinite(C)]
        assert isinstance(geom.cost_range, float) and isinstance(geom.cost_scale, float)
        if geometry.startswith("cloud"):
            x, y, kind, p, scale = case.points
            width = np.maximum(x.max(0), y.max(0)) - np.minimum(x.min(0), y.min(0))
            diameter = (width ** p).sum() ** (1 / p) if kind == "minkowski" else np.sqrt((width ** 2).sum())
            bound = scale * (diameter ** 2 if kind == "sqeuclidean" else diameter)
            assert geom.cost_range == pytest.approx(bound, rel=RTOL)
            assert finite.max() - finite.min() <= geom.cost_range * (1 + 1e-12)
            assert geom.cost_scale == geom.cost_range
        else:
            assert geom.cost_range == finite.max() - finite.min()
            assert geom.cost_scale == pytest.approx(largest_reduced_cost(C), rel=RTOL, abs=1e-15)
        stores = not geometry.startswith(("cloud", "grid"))
        assert geom.can_store_kernel is stores
        for requested in (0, None, 3):
            want = (requested or be.check_every) if stores else 1
            assert geom.check_interval(requested) == want
        buf = geom.new_buffer()
        if stores:
            assert isinstance(buf, type(be.xp.empty(0))) and buf.shape == (n, m) and buf.dtype == geom.dtype
        else:
            assert buf is None


def largest_reduced_cost(C):
    """``max R`` over the finite reduced costs ``R = C - u_i - v_j`` (``u``
    row minima, ``v`` column minima of ``C - u``): the cost scale of a cost
    without huge entries (:mod:`fastsinkhorn.geometry.cost_scale`)."""
    u = C.min(axis=1)
    v = (C - u[:, None]).min(axis=0)
    with np.errstate(invalid="ignore"):
        R = C - u[:, None] - v[None, :]
    return float(R[np.isfinite(R)].max())


# -- the cost, row by row -------------------------------------------------------------------

@backends
@geometries
def test_cost_rows_and_row_blocks(rng, monkeypatch, geometry, backend):
    for case in cases(rng, geometry, backend):
        geom, C = case.geom, case.C
        n, m = C.shape
        for entries in block_sizes(monkeypatch):
            blocks = geom.row_blocks()
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(stop0 == start1 for (_, stop0), (start1, _) in zip(blocks, blocks[1:]))
            assert all(0 < (stop - start) * m <= max(entries, m) for start, stop in blocks)
            assert all((stop - start) * m > entries - m for start, stop in blocks[:-1])  # "about" entries
        for start, stop in [(0, n), (n // 2, n), (0, 0), (n - 1, n)]:
            rows = geom.cost_rows(start, stop)
            assert rows.dtype == np.float64 and rows.shape == (stop - start, m)
            np.testing.assert_allclose(_host(rows), C[start:stop], rtol=RTOL, atol=1e-300)


@backends
@geometries
def test_plan_rows(rng, geometry, backend):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        f, g = potentials(rng, n, m)
        P = plan_of(case.C, f, g)
        for start, stop in [(0, n), (n // 3, n), (n - 1, n)]:
            rows = case.geom.plan_rows(case.dev(f), case.dev(g), REG, start, stop)
            assert rows.dtype == np.float64
            np.testing.assert_allclose(_host(rows), P[start:stop], rtol=RTOL, atol=1e-300)


# -- log-domain half-steps ------------------------------------------------------------------

@backends
@geometries
def test_lse_rows_and_cols(rng, geometry, backend):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        f, g = potentials(rng, n, m)
        with np.errstate(invalid="ignore"):
            want_rows = logsumexp((g[None, :] - case.C) / REG, axis=1)
            want_cols = logsumexp((f[:, None] - case.C) / REG, axis=0)
        got_rows, got_cols = case.geom.lse_rows(case.dev(g), REG), case.geom.lse_cols(case.dev(f), REG)
        assert got_rows.shape == (n,) and got_cols.shape == (m,)
        assert got_rows.dtype == got_cols.dtype == np.float64
        np.testing.assert_allclose(_host(got_rows), want_rows, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(_host(got_cols), want_cols, rtol=RTOL, atol=1e-12)
        # a row (column) whose terms are all -inf gives -inf
        assert _host(case.geom.lse_rows(case.dev(np.full(m, -np.inf)), REG)).tolist() == [-np.inf] * n


# -- the stored kernel ----------------------------------------------------------------------

@backends
@geometries
def test_plan(rng, monkeypatch, geometry, backend):
    for case in cases(rng, geometry, backend):
        geom = case.geom
        n, m = case.shape
        f, g = potentials(rng, n, m)
        P = plan_of(case.C, f, g)
        stored = P.astype(geom.dtype).astype(np.float64)
        for _ in block_sizes(monkeypatch):
            out = geom.xp.full((n, m), np.nan, dtype=geom.dtype)  # no earlier plan in it
            assert geom.plan(case.dev(f), case.dev(g), REG, out) is out
            np.testing.assert_allclose(_host(out), stored, rtol=case.store_rtol, atol=1e-300)
            own = geom.plan(case.dev(f), case.dev(g), REG)
            if geom.can_store_kernel:
                assert own.shape == (n, m) and own.dtype == geom.dtype
                np.testing.assert_allclose(_host(own), stored, rtol=case.store_rtol, atol=1e-300)
            else:
                assert isinstance(own, fs.LazyPlan) and own.shape == (n, m) and own.reg == REG
                np.testing.assert_allclose(_host(own.to_dense()), P, rtol=RTOL, atol=1e-300)


def kernel(case, rng):
    """A kernel of the geometry (finite potentials: every row holds mass), as stored."""
    n, m = case.shape
    return plan_of(case.C, *potentials(rng, n, m, zero_mass=False)).astype(case.geom.dtype)


@backends
@geometries
@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_scaling_pass(rng, geometry, backend, tau):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        K = kernel(case, rng)
        v = rng.random(m) + 0.5
        if tau == 1.0:  # masses, one of them zero
            a = rng.random(n) + 0.1
            a[0] = 0.0 if n > 1 else a[0]
        else:  # log-targets, one of them -inf
            a = rng.standard_normal(n)
            a[0] = -np.inf if n > 1 else a[0]
        s = K.astype(np.float64) @ v
        with np.errstate(divide="ignore"):
            if tau == 1.0:
                want_u = np.where(a > 0, a / s, 1.0)
            else:
                want_u = np.where(a > -np.inf, np.exp(a - tau * np.log(s)), 1.0)
        want_c = K.astype(np.float64).T @ want_u
        u = case.dev(np.full(n, np.nan))
        got_c = case.geom.scaling_pass(case.dev(K), case.dev(v), case.dev(a), u, tau)
        assert got_c.shape == (m,) and got_c.dtype == np.float64
        np.testing.assert_allclose(_host(u), want_u, rtol=RTOL)
        np.testing.assert_allclose(_host(got_c), want_c, rtol=RTOL)


@backends
@geometries
def test_scale(rng, geometry, backend):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        K = kernel(case, rng)
        u, v = rng.random(n) + 0.5, rng.random(m) + 0.5
        want = u[:, None] * K.astype(np.float64) * v[None, :]
        out = case.geom.xp.full((n, m), np.nan, dtype=case.geom.dtype)
        assert case.geom.scale(case.dev(K), case.dev(u), case.dev(v), out) is out
        np.testing.assert_allclose(_host(out), want, rtol=case.store_rtol)
        dK = case.dev(K)  # in place, the way a plan is written over its kernel
        assert case.geom.scale(dK, case.dev(u), case.dev(v), dK) is dK
        np.testing.assert_allclose(_host(dK), want, rtol=case.store_rtol)


# -- Sinkhorn-Newton-Sparse -----------------------------------------------------------------

@backends
@geometries
def test_dense_pass(rng, geometry, backend):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        f, g = potentials(rng, n, m)
        P = plan_of(case.C, f, g)
        if geometry == "grid":  # SNS on a grid is refused: its Hessian needs the plan's rows
            with pytest.raises(NotImplementedError, match="sns"):
                case.geom.dense_pass(case.dev(f), case.dev(g), REG, 3)
            continue
        for k in (1, 3, m + 2):
            r, c, total, idx, val = case.geom.dense_pass(case.dev(f), case.dev(g), REG, k)
            kk = min(k, m)
            assert r.shape == (n,) and c.shape == (m,) and isinstance(total, float)
            assert idx.shape == val.shape == (n, kk) and idx.dtype == np.int64 and val.dtype == np.float64
            np.testing.assert_allclose(_host(r), P.sum(axis=1), rtol=RTOL, atol=1e-300)
            np.testing.assert_allclose(_host(c), P.sum(axis=0), rtol=RTOL, atol=1e-300)
            assert total == pytest.approx(P.sum(), rel=RTOL)
            idx, val = _host(idx), _host(val)
            kept = val > 0
            for i in range(n):  # no column twice among the kept entries of a row
                assert len(set(idx[i][kept[i]])) == kept[i].sum()
            got = np.zeros((n, m))
            got[np.nonzero(kept)[0], idx[kept]] = val[kept]
            top = np.argsort(-P, axis=1, kind="stable")[:, :kk]  # the k largest of each row
            want = np.zeros((n, m))
            np.put_along_axis(want, top, np.take_along_axis(P, top, axis=1), axis=1)
            floor = 1e-12 * P.max(axis=1, keepdims=True)  # entries below it may be dropped
            assert np.all(np.abs(got - want) <= RTOL * want + floor * (1 + 1e-9)), "not the top-k entries"


@backends
@geometries
def test_ell_products(rng, geometry, backend):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        k = min(m, 4)
        idx = np.stack([rng.choice(m, size=k, replace=False) for _ in range(n)]).astype(np.int64)
        val = rng.random((n, k))
        val[:, -1] *= rng.random(n) < 0.5  # zero padding in some rows
        S = np.zeros((n, m))
        np.add.at(S, (np.repeat(np.arange(n), k), idx.ravel()), val.ravel())
        x, y = rng.standard_normal(m), rng.standard_normal(n)
        Sx = case.geom.ell_matvec(case.dev(idx), case.dev(val), case.dev(x))
        Sty = case.geom.ell_rmatvec(case.dev(idx), case.dev(val), case.dev(y))
        assert Sx.shape == (n,) and Sty.shape == (m,)
        np.testing.assert_allclose(_host(Sx), S @ x, rtol=RTOL, atol=1e-14)
        np.testing.assert_allclose(_host(Sty), S.T @ y, rtol=RTOL, atol=1e-14)


# -- measures of a plan ---------------------------------------------------------------------

@backends
@geometries
def test_summary(rng, monkeypatch, geometry, backend):
    for case in cases(rng, geometry, backend):
        n, m = case.shape
        f, g = potentials(rng, n, m)
        P = plan_of(case.C, f, g)
        for _ in block_sizes(monkeypatch):
            r, c, linear = case.geom.summary(case.dev(f), case.dev(g), REG)
            assert r.shape == (n,) and c.shape == (m,) and isinstance(linear, float)
            np.testing.assert_allclose(_host(r), P.sum(axis=1), rtol=RTOL, atol=1e-300)
            np.testing.assert_allclose(_host(c), P.sum(axis=0), rtol=RTOL, atol=1e-300)
            assert linear == pytest.approx(weighted(case.C, P).sum(), rel=RTOL)


@backends
@geometries
def test_linear_cost(rng, monkeypatch, geometry, backend):
    for case in cases(rng, geometry, backend):
        P = rng.random(case.shape) * (rng.random(case.shape) < 0.8)
        P[~np.isfinite(case.C)] = 0.0  # no mass on forbidden entries
        for _ in block_sizes(monkeypatch):
            got = case.geom.linear_cost(case.dev(P))
            assert isinstance(got, float)
            assert got == pytest.approx(weighted(case.C, P).sum(), rel=RTOL)


@backends
@geometries
def test_measure(rng, monkeypatch, geometry, backend):
    """The measures of the plan a driver returns: as stored for a stored
    plan, by a pass over the cost for a lazy one."""
    for case in cases(rng, geometry, backend):
        geom = case.geom
        n, m = case.shape
        f, g = potentials(rng, n, m)
        P = plan_of(case.C, f, g)
        for _ in block_sizes(monkeypatch):
            plan = geom.plan(case.dev(f), case.dev(g), REG, geom.new_buffer())
            r, c, linear = geom.measure(plan, case.dev(f), case.dev(g), REG)
            assert r.shape == (n,) and c.shape == (m,) and r.dtype == c.dtype == np.float64
            stored = P if isinstance(plan, fs.LazyPlan) else _host(plan).astype(np.float64)
            np.testing.assert_allclose(stored, P, rtol=case.store_rtol, atol=1e-300)
            np.testing.assert_allclose(_host(r), stored.sum(axis=1), rtol=RTOL, atol=1e-300)
            np.testing.assert_allclose(_host(c), stored.sum(axis=0), rtol=RTOL, atol=1e-300)
            assert float(linear) == pytest.approx(weighted(case.C, stored).sum(), rel=RTOL)


# -- a batch of dense problems --------------------------------------------------------------

@backends
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_members(rng, backend, dtype):
    """The members that take a batch axis do, problem by problem, what they do
    on one problem; ``subset`` is the geometry of some of the problems."""
    B, n, m = 5, 13, 9
    M = rng.random((B, n, m)).astype(dtype)
    C = M.astype(np.float64)
    geom = prepare_problem(M, np.ones((B, n)) / n, np.ones((B, m)) / m, REG, backend).geom
    xp, dev = geom.xp, geom.xp.asarray
    rtol = RTOL32 if dtype == np.float32 else RTOL
    assert isinstance(geom, BatchGeometry) and geom.shape == (B, n, m) and geom.dtype == dtype
    assert geom.can_store_kernel and geom.new_buffer().shape == (B, n, m)
    f, g = 0.1 * rng.standard_normal((B, n)), 0.1 * rng.standard_normal((B, m))
    P = np.stack([plan_of(C[p], f[p], g[p]) for p in range(B)])
    np.testing.assert_allclose(_host(geom.lse_rows(dev(g), REG)),
                               [logsumexp((g[p][None] - C[p]) / REG, 1) for p in range(B)], rtol=RTOL)
    np.testing.assert_allclose(_host(geom.lse_cols(dev(f), REG)),
                               [logsumexp((f[p][:, None] - C[p]) / REG, 0) for p in range(B)], rtol=RTOL)
    plan = geom.plan(dev(f), dev(g), REG, geom.new_buffer())
    np.testing.assert_allclose(_host(plan), P, rtol=rtol)
    K = P.astype(dtype)
    v, a, u = rng.random((B, m)) + 0.5, rng.random((B, n)) + 0.1, xp.full((B, n), np.nan)
    want_u = a / np.einsum("pij,pj->pi", K.astype(np.float64), v)
    np.testing.assert_allclose(_host(geom.scaling_pass(dev(K), dev(v), dev(a), u)),
                               np.einsum("pij,pi->pj", K.astype(np.float64), want_u), rtol=RTOL)
    np.testing.assert_allclose(_host(u), want_u, rtol=RTOL)
    out = xp.full((B, n, m), np.nan, dtype=dtype)
    np.testing.assert_allclose(_host(geom.scale(dev(K), dev(a), dev(v), out)),
                               a[:, :, None] * K.astype(np.float64) * v[:, None, :], rtol=rtol)
    stored = _host(plan).astype(np.float64)
    np.testing.assert_allclose(_host(geom.linear_cost(plan)), (C * stored).sum(axis=(1, 2)), rtol=RTOL)
    r, c, linear = geom.measure(plan, dev(f), dev(g), REG)
    np.testing.assert_allclose(_host(r), stored.sum(axis=2), rtol=RTOL)
    np.testing.assert_allclose(_host(c), stored.sum(axis=1), rtol=RTOL)
    np.testing.assert_allclose(_host(linear), (C * stored).sum(axis=(1, 2)), rtol=RTOL)
    keep = np.array([3, 0])
    sub = geom.subset(dev(keep))
    assert isinstance(sub, BatchGeometry) and sub.shape == (2, n, m) and sub.dtype == dtype
    np.testing.assert_allclose(_host(sub.lse_rows(dev(g[keep]), REG)),
                               [logsumexp((g[p][None] - C[p]) / REG, 1) for p in keep], rtol=RTOL)


# -- the protocol itself --------------------------------------------------------------------

def protocol_methods(protocol):
    return sorted(name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if not name.startswith("_"))


def protocol_members(protocol):
    data = {name for cls in protocol.__mro__ for name in getattr(cls, "__annotations__", {})}
    return sorted(set(protocol_methods(protocol)) | data)


def parameters(function):
    """``(name, kind, default)`` of every parameter, ``self`` included."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


#: Each member of the protocols and the test above that checks it.
TESTED_BY = {
    "xp": test_attributes_and_capabilities, "shape": test_attributes_and_capabilities,
    "dtype": test_attributes_and_capabilities, "cost_range": test_attributes_and_capabilities,
    "cost_scale": test_attributes_and_capabilities, "can_store_kernel": test_attributes_and_capabilities,
    "check_interval": test_attributes_and_capabilities, "new_buffer": test_attributes_and_capabilities,
    "cost_rows": test_cost_rows_and_row_blocks, "row_blocks": test_cost_rows_and_row_blocks,
    "plan_rows": test_plan_rows, "lse_rows": test_lse_rows_and_cols, "lse_cols": test_lse_rows_and_cols,
    "plan": test_plan, "scaling_pass": test_scaling_pass, "scale": test_scale, "dense_pass": test_dense_pass,
    "ell_matvec": test_ell_products, "ell_rmatvec": test_ell_products, "summary": test_summary,
    "linear_cost": test_linear_cost, "measure": test_measure, "subset": test_batch_members,
}


def test_every_protocol_member_is_tested():
    assert sorted(TESTED_BY) == protocol_members(BatchGeometry)
    assert set(protocol_members(Geometry)) == set(TESTED_BY) - {"subset"}


@pytest.mark.parametrize("cls, protocol", [(DenseGeometry, BatchGeometry), (CloudGeometry, Geometry),
                                                (GridGeometry, Geometry)])
def test_geometry_methods_have_the_protocols_signatures(cls, protocol):
    """Not just the names (all ``isinstance`` checks): each method takes the
    protocol's parameters, in its order, of its kinds, with its defaults."""
    for name in protocol_methods(protocol):
        member = inspect.getattr_static(cls, name)
        assert inspect.isfunction(member), f"{cls.__name__}.{name} is not a method"
        assert parameters(member) == parameters(getattr(protocol, name)), f"{cls.__name__}.{name}"
    for name in set(protocol_members(protocol)) - set(protocol_methods(protocol)):  # data members
        assert not inspect.isfunction(inspect.getattr_static(cls, name, None)), f"{cls.__name__}.{name}"


@backends
@geometries
def test_every_geometry_is_a_geometry(rng, geometry, backend):
    for case in cases(rng, geometry, backend):
        assert isinstance(case.geom, Geometry)
        for name in protocol_members(Geometry):  # present on the instance, methods bound with the signature
            member = getattr(case.geom, name)
            if name in protocol_methods(Geometry):
                assert parameters(member) == parameters(getattr(Geometry, name))[1:], name


def test_a_geometry_missing_a_member_is_not_a_geometry():
    class Partial(CloudGeometry):
        measure = None  # shadows the method: runtime_checkable sees None as absent

    geom = prepare_problem(fs.PointCloud(np.zeros((2, 1)), np.ones((3, 1))), None, None, 0.1, "cpu").geom
    partial = object.__new__(Partial)
    partial.__dict__.update(geom.__dict__)
    assert isinstance(geom, Geometry) and not isinstance(partial, Geometry)


SRC = pathlib.Path(fs.__file__).parent
#: Modules that see the cost only through a geometry.
DRIVERS = ["algorithms/sinkhorn.py", "algorithms/sns/driver.py", "core/cg.py",
           "algorithms/sns/newton_system.py"]
#: What of a geometry ``solvers.py`` may use outside the protocol, and why.
SOLVER_EXTRAS = {"M": "the feasibility check of a balanced solve with forbidden entries (dense costs only)"}


def geometry_uses(path):
    """Attributes read off ``geom``, ``X.geom`` or ``X._geom`` in a module."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "geom") or \
                    (isinstance(owner, ast.Attribute) and owner.attr in ("geom", "_geom")):
                used.add(node.attr)
    return used


@pytest.mark.parametrize("module", DRIVERS + ["solvers.py", "geometry/lazy_plan.py"])
def test_the_protocol_names_every_member_of_a_geometry_in_use(module):
    extras = SOLVER_EXTRAS if module == "solvers.py" else {}
    assert geometry_uses(SRC / module) <= set(protocol_members(BatchGeometry)) | set(extras)


def test_the_drivers_are_written_against_the_geometry_only():
    """No backend, no ``lazy`` and no ``isinstance`` in the drivers: what
    differs between geometries is their capabilities and methods."""
    assert geometry_uses(SRC / "algorithms/sinkhorn.py") and geometry_uses(SRC / "algorithms/sns/driver.py")
    for module in DRIVERS:
        tree = ast.parse((SRC / module).read_text())
        attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert not {"backend", "lazy"} & attributes, module
        assert not {"backend", "be", "isinstance"} & names, module
