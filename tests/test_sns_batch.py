"""SNS on batches (algorithms/sns/batch.py, backends/_cpu_small_batch.py):
every problem of a batch gets what its single solve returns, on the compiled
path and on the driver's, and the batch's fields are per-problem arrays."""

import warnings

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.algorithms.sns import small
from fastsinkhorn.algorithms.sns.batch import problem
from fastsinkhorn.core.monitor import Monitor
from fastsinkhorn.core.options import SNSOptions
from fastsinkhorn.core.result import ConvergenceWarning
from fastsinkhorn.core.validation import prepare_problem

TOL = 1e-9


def _masses(rng, B, n, zeros=0):
    """Random positive masses (B, n) summing to 1, with ``zeros`` zero entries per problem."""
    w = rng.random((B, n)) + 0.1
    for p in range(B):
        w[p, rng.choice(n, zeros, replace=False)] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def _problem(w, p):
    return w[p] if w is not None and w.ndim == 2 else w


def _assert_matches_single_solves(res, M, a, b, reg, **kwargs):
    """Each problem's plan, iterations and convergence are its single solve's."""
    for p in range(M.shape[0]):
        single = fs.solve(M[p], _problem(a, p), _problem(b, p), reg=reg, **kwargs)
        scale = np.abs(single.plan).max()
        np.testing.assert_allclose(res.plan[p], single.plan, rtol=0, atol=1e-8 * scale)
        assert res.n_iter[p] == single.n_iter
        assert res.converged[p] == single.converged
        assert res.marginal_error[p] == pytest.approx(single.marginal_error, rel=1e-3, abs=1e-14)


@pytest.mark.parametrize("shape", [(5, 12, 17), (4, 20, 9), (3, 1, 6)])
@pytest.mark.parametrize("masses", ["batched", "shared", "omitted"])
def test_batch_equals_single_solves(rng, shape, masses):
    B, n, m = shape
    M = rng.random(shape)
    a, b = {"batched": (_masses(rng, B, n), _masses(rng, B, m)),
            "shared": (_masses(rng, 1, n)[0], _masses(rng, 1, m)[0]),
            "omitted": (None, None)}[masses]
    inputs = [x.copy() for x in (M, a, b) if x is not None]
    res = fs.solve(M, a, b, reg=1e-2, method="sns", tol=TOL)
    assert res.method == "sns" and res.plan.shape == shape and bool(res.converged.all())
    assert res.n_iter.shape == res.converged.shape == res.marginal_error.shape == (B,)
    if n > 1:  # (one row: one Sinkhorn iteration is exact)
        assert (res.n_iter_phases["newton"] > 0).any()  # Newton ran, not only the warm-up
    assert bool((res.marginal_error <= TOL).all())
    _assert_matches_single_solves(res, M, a, b, 1e-2, method="sns", tol=TOL)
    for given, now in zip(inputs, [x for x in (M, a, b) if x is not None]):
        np.testing.assert_array_equal(given, now)  # inputs never modified


def test_marginals_and_plan_against_numpy_float64(rng):
    """The plan is the Gibbs plan of the returned potentials, and its marginals
    are the masses, both computed here in plain NumPy float64."""
    B, n, m, reg = 6, 15, 11, 5e-3
    M = rng.random((B, n, m)) * 3.0
    a, b = _masses(rng, B, n, zeros=2), _masses(rng, B, m, zeros=1)
    res = fs.solve(M, a, b, reg=reg, method="sns", tol=TOL)
    f, g = res.potentials
    with np.errstate(invalid="ignore"):  # -inf + -inf of zero masses
        P = np.exp((f[:, :, None] + g[:, None, :] - M) / reg)
    P = np.nan_to_num(P, nan=0.0)
    np.testing.assert_allclose(res.plan, P, rtol=1e-10, atol=1e-199)  # entries below 1e-200 are cut to 0
    error = np.abs(P.sum(2) - a).sum(1) + np.abs(P.sum(1) - b).sum(1)
    assert bool((error <= TOL).all())
    assert bool((P[a == 0] == 0).all()) and bool((P.transpose(0, 2, 1)[b == 0] == 0).all())


def test_ragged_batch_padded_with_zero_masses(rng):
    """``batch.pad``'s batch: each problem's plan is that of the unpadded problem."""
    costs = [rng.random(s) for s in ((6, 9), (13, 4), (1, 1), (10, 10))]
    masses_a = [_masses(rng, 1, c.shape[0])[0] for c in costs]
    masses_b = [_masses(rng, 1, c.shape[1])[0] for c in costs]
    M, a, b = fs.batch.pad(costs, masses_a, masses_b)
    res = fs.solve(M, a, b, reg=1e-2, method="sns", tol=TOL)
    assert bool(res.converged.all())
    for p, cost in enumerate(costs):
        n, m = cost.shape
        single = fs.solve(cost, masses_a[p], masses_b[p], reg=1e-2, method="sns", tol=TOL)
        np.testing.assert_allclose(res.plan[p, :n, :m], single.plan, rtol=0, atol=1e-8 * single.plan.max())
        assert res.plan[p, n:].sum() == 0 and res.plan[p, :, m:].sum() == 0
        assert np.all(np.isneginf(res.potentials[0][p, n:])) and np.all(np.isneginf(res.potentials[1][p, m:]))


def test_float32_batch(rng):
    B, n, m = 4, 16, 24
    M = rng.random((B, n, m)).astype(np.float32)
    a, b = _masses(rng, B, n).astype(np.float32), _masses(rng, B, m).astype(np.float32)
    res = fs.solve(M, a, b, reg=1e-2, method="sns")
    assert res.plan.dtype == np.float32 and res.potentials[0].dtype == np.float32
    assert bool(res.converged.all()) and bool((res.marginal_error <= res.tol).all())
    _assert_matches_single_solves(res, M, a, b, 1e-2, method="sns")


def test_one_problem_that_does_not_converge_warns_once(rng):
    """A batch whose problem 1 needs far more iterations than the budget: only
    it is reported as not converged, in one warning naming the count."""
    B, n, m, max_iter = 4, 12, 12, 60
    M = rng.random((B, n, m))
    M[1] *= 1e3  # reg 1e-5 of its cost range: an annealing schedule, hundreds of iterations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        alone = [fs.solve(M[p], reg=1e-2, method="sns", max_iter=max_iter) for p in range(B)]
    assert [r.converged for r in alone] == [True, False, True, True]  # the premise
    with pytest.warns(ConvergenceWarning, match="on 1 of 4 problems") as record:
        res = fs.solve(M, reg=1e-2, method="sns", max_iter=max_iter)
    assert len([w for w in record if issubclass(w.category, ConvergenceWarning)]) == 1
    assert res.converged.tolist() == [True, False, True, True]
    assert res.n_iter[1] == max_iter and res.marginal_error[1] > res.tol
    for p in range(B):
        np.testing.assert_allclose(res.plan[p], alone[p].plan, rtol=0, atol=1e-8 * alone[p].plan.max())


def test_warm_start_per_problem(rng):
    B, n, m = 3, 10, 14
    M = rng.random((B, n, m))
    first = fs.solve(M, reg=1e-2, method="sns", tol=1e-4)
    res = fs.solve(M, reg=1e-2, method="sns", tol=TOL, warm_start=first.potentials)
    assert bool(res.converged.all())
    for p in range(B):
        single = fs.solve(M[p], reg=1e-2, method="sns", tol=TOL,
                          warm_start=(first.potentials[0][p], first.potentials[1][p]))
        np.testing.assert_allclose(res.plan[p], single.plan, rtol=0, atol=1e-8 * single.plan.max())
        assert res.n_iter[p] == single.n_iter
    with pytest.raises(ValueError, match="warm_start"):
        fs.solve(M, reg=1e-2, method="sns", warm_start=(np.zeros(n), np.zeros(m)))


def test_driver_path_for_what_the_compiled_path_does_not_take(rng):
    """Forbidden entries (problem 0), an option the compiled path does not
    honour, unbalanced OT: the driver solves those problems, with the single
    solve's result, in the same batched result as the compiled ones."""
    B, n, m = 3, 8, 9
    M = rng.random((B, n, m))
    M[0, 0, :4] = np.inf
    prob0 = fs.solve(M[0], reg=1e-2, method="sns", tol=TOL)
    assert prob0.converged and prob0.plan[0, :4].sum() == 0
    for kwargs in ({}, {"density": 0.5}, {"unbalanced": 1.0}):
        res = fs.solve(M, reg=1e-2, method="sns", tol=TOL, **kwargs)
        assert bool(res.converged.all())
        _assert_matches_single_solves(res, M, None, None, 1e-2, method="sns", tol=TOL, **kwargs)


def test_compiled_rule_per_problem(rng):
    """The compiled path is chosen per problem by the single solve's rule."""
    M = rng.random((2, 6, 7))
    M[0, 1, 1] = np.inf
    prob = prepare_problem(M, None, None, 1e-2)
    taken = [small.applies(problem(prob, p), SNSOptions(), Monitor(TOL), "l1") for p in range(2)]
    assert taken == [False, True]


def test_auto_picks_sns_for_a_batch_at_small_reg(rng):
    M = rng.random((3, 10, 12))
    res = fs.solve(M, reg=1e-3, tol=TOL)
    assert res.method == "sns" and bool(res.converged.all())
    assert fs.solve(M, reg=0.1, tol=TOL).method == "sinkhorn"
    assert fs.solve(M, reg=1e-3, tol=1e-3).method == "sinkhorn"  # loose tol: Sinkhorn, as a single solve


def test_solve_batch_runs_the_batched_sns(rng):
    B, n, m, reg = 4, 9, 11, 1e-3
    M = rng.random((B, n, m))
    a, b = _masses(rng, B, n), _masses(rng, B, m)
    res = fs.batch.solve_batch(M, reg=reg, a=a, b=b, tol=TOL, max_iter=1000)
    assert res.method == "sns" and bool(res.converged.all())
    for p in range(B):
        single = fs.solve(M[p], a[p], b[p], reg=reg, tol=TOL, max_iter=1000)
        np.testing.assert_allclose(res.plan[p], single.plan, rtol=0, atol=1e-8 * single.plan.max())
        np.testing.assert_allclose(res.potentials[0][p] * reg, single.potentials[0], rtol=1e-10, atol=1e-12)


def test_same_answer_on_one_thread(rng, monkeypatch):
    """Groups of problems on threads: the answer is the one-thread answer, bitwise."""
    from fastsinkhorn.backends import _cpu_small_batch

    M = rng.random((7, 10, 13))
    monkeypatch.setattr(_cpu_small_batch._threads, "threads", lambda nblocks: min(nblocks, 3))
    threaded = fs.solve(M, reg=1e-2, method="sns", tol=TOL)
    monkeypatch.setattr(_cpu_small_batch._threads, "threads", lambda nblocks: 1)
    serial = fs.solve(M, reg=1e-2, method="sns", tol=TOL)
    np.testing.assert_array_equal(threaded.plan, serial.plan)
    np.testing.assert_array_equal(threaded.n_iter, serial.n_iter)


def test_l2_stopping_norm_of_the_drop_ins(rng):
    """POT's stopping norm (``norm="l2"``): each problem as its single solve."""
    from fastsinkhorn.solvers import _solve

    M = rng.random((3, 9, 12))
    kwargs = dict(reg=1e-2, method="sns", tol=1e-8, max_iter=1000, warm_start=None, callback=None, verbose=False,
                  backend="auto", options={}, norm="l2", warn=False)
    res = _solve(M, None, None, **kwargs)
    assert bool(res.converged.all())
    for p in range(3):
        single = _solve(M[p], None, None, **kwargs)
        np.testing.assert_allclose(res.plan[p], single.plan, rtol=0, atol=1e-8 * single.plan.max())
        assert res.n_iter[p] == single.n_iter
    errors = np.sqrt(((res.plan.sum(2) - 1 / 9) ** 2).sum() + ((res.plan.sum(1) - 1 / 12) ** 2).sum())
    assert res.history["error"][-1] == pytest.approx(errors, rel=1e-6, abs=1e-15)
