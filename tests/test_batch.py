"""Batches of dense problems: a (B, n, m) cost solved in one call."""

import warnings

import numpy as np
import pytest

import fastsinkhorn as fs

BACKENDS = ["cpu", "reference"]


def _batch(rng, B, n, m, shared_b=False, zeros=False):
    M = rng.random((B, n, m))
    a = rng.random((B, n)) + 0.05
    b = rng.random(m) + 0.05 if shared_b else rng.random((B, m)) + 0.05
    if zeros:
        a[0, 0] = 0.0
        b[..., -1] = 0.0
    return M, a / a.sum(-1, keepdims=True), b / b.sum(-1, keepdims=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 12, 9), (5, 9, 12), (40, 16, 16)])
def test_batch_iterates_equal_single_solves(rng, backend, shape):
    """Run for a fixed number of iterations (unreachable tol): problem p of the
    batch is exactly the single solve of problem p (same iterate, whatever
    the other problems do; absorption only moves rounding)."""
    M, a, b = _batch(rng, *shape, zeros=min(shape[1:]) > 1)
    iters = 25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.ConvergenceWarning)
        res = fs.solve(M, a, b, reg=0.03, method="sinkhorn", backend=backend, tol=1e-14, max_iter=iters)
        singles = [fs.solve(M[p], a[p], b[p], reg=0.03, method="sinkhorn", backend=backend, tol=1e-14,
                            max_iter=iters) for p in range(shape[0])]
    assert res.plan.shape == shape
    assert res.n_iter.tolist() == [one.n_iter for one in singles]
    for p, one in enumerate(singles):
        np.testing.assert_allclose(res.plan[p], one.plan, rtol=1e-10, atol=1e-15)
        for fb, f1 in zip(res.potentials, one.potentials):
            finite = np.isfinite(f1)
            assert np.array_equal(finite, np.isfinite(fb[p]))
            np.testing.assert_allclose(fb[p][finite], f1[finite], rtol=1e-9, atol=1e-11)
        assert res.value[p] == pytest.approx(one.value, rel=1e-10, abs=1e-13)
        assert res.value_linear[p] == pytest.approx(one.value_linear, rel=1e-10)
        assert res.marginal_error[p] == pytest.approx(one.marginal_error, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_converges_every_problem_to_tol(rng, backend):
    M, a, b = _batch(rng, 30, 20, 25, shared_b=True)
    M[3] *= 20  # a harder problem: the batch runs until it has converged too
    # (the batch's cost range is then 20: "auto" would pick SNS at reg 0.05)
    res = fs.solve(M, a, b, reg=0.05, backend=backend, method="sinkhorn")
    assert res.method == "sinkhorn" and res.batched
    assert res.converged.dtype == bool and res.converged.all()
    P = res.plan
    errors = np.abs(P.sum(2) - a).sum(1) + np.abs(P.sum(1) - b).sum(1)
    np.testing.assert_allclose(res.marginal_error, errors, rtol=1e-6, atol=1e-14)
    assert (errors <= 1e-9).all()
    np.testing.assert_allclose(res.value_linear, (M * P).sum((1, 2)), rtol=1e-12)
    # each problem stops at its own check: exactly its single solve's iterate
    for p in (0, 3, 17):
        one = fs.solve(M[p], a[p], b, reg=0.05, method="sinkhorn", backend=backend)
        assert res.n_iter[p] == one.n_iter
        np.testing.assert_allclose(res.plan[p], one.plan, rtol=1e-9, atol=1e-15)
        assert res.value[p] == pytest.approx(one.value, rel=1e-12)
    assert res.n_iter[3] > 3 * np.median(res.n_iter)  # the hard problem ran longer than the rest


def test_batch_reports_each_problem_that_did_not_converge(rng):
    M, a, b = _batch(rng, 4, 10, 10)
    M[2] *= 100  # needs far more iterations than the others
    with pytest.warns(fs.ConvergenceWarning, match="on 1 of 4 problems"):
        res = fs.solve(M, a, b, reg=0.1, method="sinkhorn", max_iter=100)
    assert res.converged.tolist() == [True, True, False, True]
    assert res.status is fs.Status.MAX_ITER
    assert "3 of 4 problems converged" in repr(res)


def test_batch_warm_start_shapes_and_float32(rng):
    M, a, b = _batch(rng, 6, 8, 11)
    first = fs.solve(M.astype(np.float32), a, b, reg=0.05)
    assert first.plan.dtype == np.float32 and first.converged.all()
    again = fs.solve(M, a, b, reg=0.05, warm_start=first.potentials, tol=1e-9)
    assert again.converged.all() and (again.n_iter < fs.solve(M, a, b, reg=0.05).n_iter).all()
    with pytest.raises(ValueError, match=r"warm_start\[0\] must have shape \(6, 8\)"):
        fs.solve(M, a, b, reg=0.05, warm_start=(np.zeros(8), np.zeros(11)))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"a": np.ones((5, 8)) / 8}, ValueError, r"a must have shape \(8,\) or \(6, 8\) to match M.shape\[-2\]"),
    ({"b": np.ones((6, 10)) / 10}, ValueError, r"b must have shape \(11,\) or \(6, 11\)"),
    ({"a": np.ones(8) / 4}, ValueError, "equal sums in problem 0"),
    ({"M": np.ones((6, 8, 11, 2))}, ValueError, "M must be a non-empty 2-D array"),
])
def test_bad_batch_input_names_the_argument(rng, kwargs, error, match):
    M, a, b = _batch(rng, 6, 8, 11)
    args = {"M": M, "a": a, "b": b, **kwargs}
    with pytest.raises(error, match=match):
        fs.solve(args.pop("M"), args.pop("a"), args.pop("b"), reg=0.05, **args)


def test_batch_inputs_are_not_modified(rng):
    M, a, b = _batch(rng, 3, 5, 4)
    copies = [x.copy() for x in (M, a, b)]
    fs.solve(M, a, b, reg=0.05)
    for x, c in zip((M, a, b), copies):
        np.testing.assert_array_equal(x, c)


def test_batch_of_point_clouds_equals_its_dense_costs(rng):
    x, y = rng.random((6, 9, 2)), rng.random((6, 7, 2))
    cloud = fs.PointCloud(x, y, cost="euclidean")
    assert cloud.batched and cloud.shape == (6, 9, 7)
    C = cloud.cost_matrix()
    np.testing.assert_allclose(C[4], np.sqrt(((x[4][:, None] - y[4][None]) ** 2).sum(-1)), rtol=1e-14)
    res = fs.solve(cloud, reg=0.02)
    want = fs.solve(C, reg=0.02)
    assert res.converged.all()
    np.testing.assert_array_equal(res.plan, want.plan)
    with pytest.raises(ValueError, match="batches of the same size B"):
        fs.PointCloud(x, y[:5])
    with pytest.raises(ValueError, match="batches of the same size B"):
        fs.PointCloud(x, y[0])


def test_ragged_problems_padded_with_zero_mass_equal_their_own_solves(rng):
    shapes = [(5, 8), (9, 3), (1, 1), (7, 7)]
    costs = [rng.random(s) for s in shapes]
    masses = [rng.random(s[0]) + 0.1 for s in shapes]
    masses = [w / w.sum() for w in masses]
    M, a, b = fs.batch.pad(costs, a=masses)
    assert M.shape == (4, 9, 8) and (a[0, 5:] == 0).all() and b[1, 3:].sum() == 0
    res = fs.solve(M, a, b, reg=0.05)
    for p, (n, m) in enumerate(shapes):
        one = fs.solve(costs[p], masses[p], None, reg=0.05)
        P = res.plan[p]
        assert (P[n:] == 0).all() and (P[:, m:] == 0).all()
        np.testing.assert_allclose(P[:n, :m], one.plan, rtol=1e-9, atol=1e-15)
        assert res.value[p] == pytest.approx(one.value, rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match=r"a\[1\] must have shape \(9,\)"):
        fs.batch.pad(costs, a=[masses[0], masses[0], masses[2], masses[3]])


@pytest.mark.parametrize("reg_type", ["entropy", "kl"])
def test_solve_batch_matches_pots_solve_batch(rng, reg_type):
    solve_batch = pytest.importorskip("ot.batch", reason="POT >= 0.9.6 has ot.batch").solve_batch
    M, a, b = _batch(rng, 5, 12, 9)
    ours = fs.batch.solve_batch(M, reg=0.1, a=a, b=b, tol=1e-12, max_iter=10_000, reg_type=reg_type)
    theirs = solve_batch(M, reg=0.1, a=a, b=b, tol=1e-12, max_iter=10_000, reg_type=reg_type)
    np.testing.assert_allclose(ours.plan, theirs.plan, atol=1e-11)
    np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-9)
    np.testing.assert_allclose(ours.value_linear, theirs.value_linear, rtol=1e-9)
    (f, g), (f0, g0) = ours.potentials, theirs.potentials  # log-scalings, up to a constant per problem
    np.testing.assert_allclose(f[:, :, None] + g[:, None, :], f0[:, :, None] + g0[:, None, :], atol=1e-8)
    assert ours.log["n_iter"] == ours.n_iter.max() and ours.converged.all()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reg": None}, NotImplementedError, "exact OT"),
    ({"method": "proximal"}, NotImplementedError, "method='proximal'"),
    ({"grad": "autodiff"}, NotImplementedError, "grad='autodiff'"),
    ({"inner_iter": 5}, NotImplementedError, "inner_iter"),
    ({"reg_type": "l2"}, ValueError, "reg_type must be one of"),
])
def test_solve_batch_refuses_what_it_does_not_honour(rng, kwargs, error, match):
    M, a, b = _batch(rng, 2, 3, 3)
    with pytest.raises(error, match=match):
        fs.batch.solve_batch(M, **{"reg": 0.1, **kwargs})
