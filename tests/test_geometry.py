"""Point-cloud geometries: lazy solves equal dense solves; the lazy plan; bad input."""

import tracemalloc

import numpy as np
import pytest
from ot_testing import plan_error

import fastsinkhorn as fs
from fastsinkhorn.backends._reference import cost_matrix

BACKENDS = ["cpu", "reference"]


def _cloud_problem(rng, n, m, d, zeros=0):
    x, y = rng.random((n, d)), rng.random((m, d))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a[:zeros] = 0.0
    b[m - zeros:] = 0.0
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean", "minkowski"])
@pytest.mark.parametrize("shape", [(1, 1), (40, 70), (90, 35)])
def test_lazy_sinkhorn_equals_dense_sinkhorn(rng, backend, cost, shape):
    """Same iterations, same potentials, same plan, same values: the lazy
    solve differs from the dense one only in where the cost comes from."""
    x, y, a, b = _cloud_problem(rng, *shape, d=3, zeros=1 if min(shape) > 1 else 0)
    cloud = fs.PointCloud(x, y, cost=cost, p=1.5 if cost == "minkowski" else 2.0, scale=0.8)
    M = cloud.cost_matrix()
    dense = fs.solve(M, a, b, reg=0.05, method="sinkhorn", backend=backend, tol=1e-11)
    lazy = fs.solve(cloud, a, b, reg=0.05, method="sinkhorn", backend=backend, tol=1e-11)
    assert lazy.converged and isinstance(lazy.plan, fs.LazyPlan)
    P = lazy.plan.to_dense()
    assert plan_error(P, a, b) <= 1e-11
    np.testing.assert_allclose(P, dense.plan, rtol=1e-8, atol=1e-13)
    for fl, fd in zip(lazy.potentials, dense.potentials):
        finite = np.isfinite(fd)
        assert np.array_equal(finite, np.isfinite(fl))
        np.testing.assert_allclose(fl[finite], fd[finite], rtol=1e-8, atol=1e-9)
    assert lazy.value == pytest.approx(dense.value, rel=1e-9, abs=1e-12)
    assert lazy.value_linear == pytest.approx(dense.value_linear, rel=1e-9, abs=1e-12)
    assert lazy.value_linear == pytest.approx(float((M * P).sum()), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lazy_sns_equals_dense_sns_at_small_reg(rng, backend):
    x, y, a, b = _cloud_problem(rng, 120, 90, d=2, zeros=2)
    cloud = fs.PointCloud(x, y)
    dense = fs.solve(cloud.cost_matrix(), a, b, reg=2e-3, method="sns", backend=backend)
    lazy = fs.solve(cloud, a, b, reg=2e-3, method="sns", backend=backend)
    assert lazy.converged and lazy.n_iter_phases["newton"] > 0
    P = lazy.plan.to_dense()
    assert plan_error(P, a, b) <= 1e-9
    # both converged to 1e-9: plans agree to about that, values much better
    np.testing.assert_allclose(P, dense.plan, atol=1e-9)
    assert lazy.value == pytest.approx(dense.value, rel=1e-8)
    assert (P[a == 0] == 0).all() and (P[:, b == 0] == 0).all()


def test_auto_picks_sns_for_a_small_reg_point_cloud(rng):
    x, y, a, b = _cloud_problem(rng, 200, 150, d=2)
    res = fs.solve(fs.PointCloud(x, y), a, b, reg=1e-3)
    assert res.method == "sns" and res.converged


def test_lazy_plan_operations_match_the_dense_plan(rng):
    x, y, a, b = _cloud_problem(rng, 70, 50, d=2)
    res = fs.solve(fs.PointCloud(x, y), a, b, reg=0.02, method="sinkhorn")
    lp = res.plan
    P = lp.to_dense()
    f, g = res.potentials
    C = cost_matrix(x, y, fs.PointCloud(x, y).spec)
    np.testing.assert_allclose(P, np.exp((f[:, None] + g[None, :] - C) / 0.02), rtol=1e-12)
    np.testing.assert_allclose(lp.rows(10, 25), P[10:25], rtol=1e-14)
    np.testing.assert_allclose(lp.rows(-5, None), P[-5:], rtol=1e-14)
    v, V, u = rng.random(50), rng.random((50, 3)), rng.random(70)
    np.testing.assert_allclose(lp.apply(v), P @ v, rtol=1e-12)
    np.testing.assert_allclose(lp.apply(V), P @ V, rtol=1e-12)
    np.testing.assert_allclose(lp.apply_transpose(u), P.T @ u, rtol=1e-12)
    r, c = lp.marginals()
    np.testing.assert_allclose(r, P.sum(1), rtol=1e-12)
    np.testing.assert_allclose(c, P.sum(0), rtol=1e-12)
    S = lp.to_sparse(rtol=1e-3)
    keep = P >= 1e-3 * P.max(axis=1, keepdims=True)
    assert S.shape == P.shape and S.nnz == keep.sum()
    np.testing.assert_array_equal(S.toarray(), np.where(keep, P, 0.0))
    with pytest.raises(TypeError, match="to_dense"):
        np.asarray(lp)
    with pytest.raises(ValueError, match="v must have 50 rows"):
        lp.apply(np.ones(70))


def test_lazy_solve_memory_stays_far_below_n_times_m(rng):
    """Peak traced allocations of a lazy Sinkhorn solve on 4000 x 4000
    points: a few blocks, against 128 MB for one n x m float64 array."""
    n = 4000
    x, y, a, b = _cloud_problem(rng, n, n, d=2)
    cloud = fs.PointCloud(x, y)
    fs.solve(fs.PointCloud(x[:50], y[:50]), reg=0.1, method="sinkhorn")  # compile outside the trace
    tracemalloc.start()
    try:
        res = fs.solve(cloud, a, b, reg=0.1, method="sinkhorn", tol=1e-6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.converged
    assert peak < 0.1 * n * n * 8, f"peak {peak / 2**20:.1f} MiB"


def test_lazy_sns_memory_is_bounded_by_its_hessian_cap(rng):
    """SNS keeps at most m // 16 Hessian entries a row on a point cloud, for
    two or three iterates at a time (16 bytes an entry): below 3/8 of one
    n x m float64 array whatever reg (Sinkhorn's memory is O((n + m) d))."""
    n = 2500
    x, y, a, b = _cloud_problem(rng, n, n, d=2)
    cloud = fs.PointCloud(x, y)
    reg = 1e-3 * cloud.cost_range_bound()
    # the same solve once outside the trace: every kernel it needs is loaded (or
    # compiled) first, whatever ran before, so the trace sees the solve's own arrays
    fs.solve(cloud, a, b, reg=reg, method="sns", tol=1e-6)
    tracemalloc.start()
    try:
        res = fs.solve(cloud, a, b, reg=reg, method="sns", tol=1e-6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.converged and max(k for k in res.history["nnz"] if k) <= n * (n // 16)
    assert peak < 0.375 * n * n * 8, f"peak {peak / 2**20:.1f} MiB"


def test_solve_sample_lazy_and_dense_agree(rng):
    x, y, a, b = _cloud_problem(rng, 60, 45, d=3)
    lazy = fs.solve_sample(x, y, a, b, reg=0.01, metric="euclidean", lazy=True, method="sinkhorn")
    dense = fs.solve_sample(x, y, a, b, reg=0.01, metric="euclidean", method="sinkhorn")
    assert isinstance(lazy.plan, fs.LazyPlan) and isinstance(dense.plan, np.ndarray)
    np.testing.assert_allclose(lazy.plan.to_dense(), dense.plan, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(dense.plan.sum(), 1.0, rtol=1e-9)
    M = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    assert dense.value_linear == pytest.approx(float((M * dense.plan).sum()), rel=1e-12)


def test_point_cloud_cost_range_bounds_the_true_range(rng):
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(20, 2)) + 1
    for cost in ("sqeuclidean", "euclidean", "minkowski"):
        pc = fs.PointCloud(x, y, cost=cost, p=3.0 if cost == "minkowski" else 2.0, scale=2.0)
        C = pc.cost_matrix()
        true_range = C.max() - C.min()
        assert true_range <= pc.cost_range_bound() <= 4 * true_range


@pytest.mark.parametrize("kwargs, error, match", [
    ({"x": np.ones((3, 2)), "y": np.ones((4, 3))}, ValueError, "same number of coordinates"),
    ({"x": np.array([[0.0, np.nan]]), "y": np.ones((4, 2))}, ValueError, "x must not contain NaN"),
    ({"x": np.ones((3, 2)), "y": np.full((4, 2), np.inf)}, ValueError, "y must not contain NaN or inf"),
    ({"x": np.ones((3, 2, 1, 1)), "y": np.ones((4, 2))}, ValueError, r"x must be a non-empty \(n, d\)"),
    ({"x": np.ones((3, 2, 1)), "y": np.ones((4, 1))}, ValueError, "batches of the same size"),
    ({"x": np.ones((0, 2)), "y": np.ones((4, 2))}, ValueError, r"x must be a non-empty \(n, d\)"),
    ({"x": np.array([["a"]]), "y": np.ones((4, 1))}, TypeError, "x must hold real numbers"),
    ({"x": np.ones((3, 2)), "y": np.ones((4, 2)), "cost": "cosine"}, ValueError, "cost must be one of"),
    ({"x": np.ones((3, 2)), "y": np.ones((4, 2)), "cost": "minkowski", "p": 0.5}, ValueError, "p must be"),
    ({"x": np.ones((3, 2)), "y": np.ones((4, 2)), "scale": 0.0}, ValueError, "scale must be"),
])
def test_bad_point_cloud_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        fs.PointCloud(**kwargs)


def test_point_cloud_masses_are_checked_against_the_clouds(rng):
    x, y, a, b = _cloud_problem(rng, 5, 4, d=2)
    with pytest.raises(ValueError, match=r"b must have shape \(4,\) to match y.shape\[0\]"):
        fs.solve(fs.PointCloud(x, y), a, np.ones(5) / 5, reg=0.1)


def test_inputs_are_not_modified(rng):
    x, y, a, b = _cloud_problem(rng, 20, 30, d=2)
    copies = [v.copy() for v in (x, y, a, b)]
    fs.solve(fs.PointCloud(x, y), a, b, reg=0.01, method="sns")
    for v, c in zip((x, y, a, b), copies):
        np.testing.assert_array_equal(v, c)


def test_dense_geometry_summary_and_rows_are_those_of_the_plan(rng, monkeypatch):
    """The blocked helpers of a stored float32 cost: rows of the plan in
    float64, its marginals and <M, P>, whatever the block size."""
    from fastsinkhorn.backends import _blocks, get_backend
    from fastsinkhorn.geometry.dense import DenseGeometry

    M = rng.random((7, 5)).astype(np.float32)
    geom = DenseGeometry(M, get_backend("reference"), float(M.max() - M.min()))
    f, g, reg = rng.standard_normal(7) * 0.1, rng.standard_normal(5) * 0.1, 0.3
    P = np.exp((f[:, None] + g[None, :] - M.astype(np.float64)) / reg)
    rows = geom.cost_rows(2, 5)
    assert rows.dtype == np.float64 and np.array_equal(rows, M[2:5].astype(np.float64))
    np.testing.assert_allclose(geom.plan_rows(f, g, reg, 2, 5), P[2:5], rtol=1e-14)
    for block_entries, blocks in [(1 << 18, [(0, 7)]), (10, [(0, 2), (2, 4), (4, 6), (6, 7)]),
                                  (3, [(i, i + 1) for i in range(7)])]:
        monkeypatch.setattr(_blocks, "ARRAY_BLOCK_ENTRIES", block_entries)
        assert geom.row_blocks() == blocks
        r, c, linear = geom.summary(f, g, reg)
        np.testing.assert_allclose(r, P.sum(axis=1), rtol=1e-13)
        np.testing.assert_allclose(c, P.sum(axis=0), rtol=1e-13)
        np.testing.assert_allclose(linear, (M.astype(np.float64) * P).sum(), rtol=1e-13)


def test_point_clouds_need_the_backends_declared_capability():
    """A backend without the ``point_clouds`` capability is refused, even with
    methods of the right names: the declaration decides, not their presence."""
    from types import SimpleNamespace

    from fastsinkhorn.geometry.cloud import CloudGeometry

    cloud = fs.PointCloud(np.zeros((2, 1)), np.ones((3, 1)))
    toy = SimpleNamespace(name="toy", xp=np, point_clouds=False, pc_lse_rows=None, pc_cost_rows=None,
                          pc_dense_pass=None)
    with pytest.raises(NotImplementedError, match="^point-cloud costs are not implemented on backend='toy'$"):
        CloudGeometry(cloud, toy)
    assert CloudGeometry(cloud, SimpleNamespace(name="toy", xp=np, point_clouds=True)).shape == (2, 3)


def test_dense_linear_cost_covers_every_block(rng):
    """<M, P> by blocks: more rows than columns, and a batch of more problems
    than rows, each spanning several blocks, sum every entry once."""
    from fastsinkhorn.backends import get_backend
    from fastsinkhorn.geometry.dense import DenseGeometry

    ref = get_backend("reference")
    M, P = rng.random((3000, 100)).astype(np.float32), rng.random((3000, 100))
    want = (M.astype(np.float64) * P).sum()
    np.testing.assert_allclose(DenseGeometry(M, ref, 1.0).linear_cost(P), want, rtol=1e-12)
    M, P = rng.random((300, 30, 30)), rng.random((300, 30, 30))
    got = DenseGeometry(M, ref, 1.0).linear_cost(P)
    assert got.shape == (300,)
    np.testing.assert_allclose(got, (M * P).sum(axis=(1, 2)), rtol=1e-12)
