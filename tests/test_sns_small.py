"""The compiled small-problem SNS (algorithms/sns/small.py and
backends/_cpu_small_kernels.py): each kernel against plain NumPy float64,
the whole solve against the driver and the optimality conditions, and the
rule that picks it."""

import warnings

import numpy as np
import pytest
from ot_testing import plan_error

import fastsinkhorn as fs
from fastsinkhorn.algorithms.sns import small
from fastsinkhorn.backends import _cpu_small_kernels as kernels
from fastsinkhorn.problems import FAMILIES, make_problem

SHAPES = [(5, 5), (17, 40), (64, 64), (3, 90)]


def _plan(rng, n, m, reg=0.05, spread=1.0):
    M = rng.random((n, m)) * spread
    P = np.exp(-M / reg)
    return M, P / P.sum()


@pytest.mark.parametrize("shape", SHAPES)
def test_gibbs_matches_numpy_with_the_underflow_cut(rng, shape):
    n, m = shape
    M = rng.random(shape)
    f, g = -0.3 * rng.random(n), -0.3 * rng.random(m)  # exponents <= 0, down to below CUT
    for reg in (1.0, 1e-2, 1e-3):
        out = np.empty(shape)
        total = kernels._gibbs(M, f, g, reg, out)
        x = (f[:, None] + g[None, :] - M) / reg
        expected = np.where(x > kernels.CUT, np.exp(x), 0.0)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)  # exp amplifies |x| eps
        assert total == pytest.approx(expected.sum(), rel=1e-13)


@pytest.mark.parametrize("shape", SHAPES)
def test_rescaled_plan_matches_numpy_and_the_gibbs_plan_of_the_moved_potentials(rng, shape):
    """A trial plan rescaled by exp(t df / reg), exp(t dg / reg) is the Gibbs
    plan of the moved potentials (to rounding), with the same underflow cut."""
    n, m = shape
    M, reg = rng.random(shape), 1e-2
    f, g = -0.3 * rng.random(n), -0.3 * rng.random(m)
    P = np.empty(shape)
    kernels._gibbs(M, f, g, reg, P)
    df, dg = 0.05 * rng.standard_normal(n), 0.05 * rng.standard_normal(m)  # up to ~20 reg
    eu, ev = np.exp(df / reg), np.exp(dg / reg)
    out = np.empty(shape)
    total = kernels._rescaled(P, eu, ev, out)
    expected = eu[:, None] * P * ev[None, :]
    expected[expected <= kernels.TINY] = 0.0
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=0)
    assert total == pytest.approx(expected.sum(), rel=1e-13)
    moved = np.empty(shape)
    kernels._gibbs(M, f + df, g + dg, reg, moved)
    live = (P > 0) & (moved > 1e-150)  # entries the cut left out of P stay out
    np.testing.assert_allclose(out[live], moved[live], rtol=1e-11)
    assert np.all(out[moved == 0] <= np.exp(kernels.CUT + (np.abs(df).max() + np.abs(dg).max()) / reg))


def test_newton_steps_on_rescaled_plans_end_on_the_exact_plan(rng):
    """The Newton loop rescales its trial plans, but the error it reports (and
    stops on) is that of the Gibbs plan of the returned potentials."""
    n, reg = 40, 1e-3
    M, a, b = rng.random((n, n)), np.full(n, 1 / n), np.full(n, 1 / n)
    f, g, K = np.zeros(n), np.zeros(n), np.empty((n, n))
    kernels._sinkhorn(M, a, b, reg, f, g, K, 0.03, 500)
    steps, _, error, stalled = kernels._newton(M, a, b, reg, f, g, K, 1e-10, 200, 1e-4, 12, 1.0, 20.0, 20)
    assert steps > 3 and not stalled and error <= 1e-10
    P = np.exp((f[:, None] + g[None, :] - M) / reg)
    exact = np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum()
    assert exact <= 1e-10 and exact == pytest.approx(error, rel=1e-3, abs=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_schur_complement_matches_numpy(rng, shape):
    _, P = _plan(rng, *shape)
    c = P.sum(0)
    S = kernels._schur(P, c)
    expected = (P / c) @ P.T
    np.testing.assert_allclose(np.tril(S), np.tril(expected), rtol=1e-12, atol=1e-13 * expected.max())
    assert np.all(np.triu(S, 1) == 0)  # the lower triangle only


def test_schur_complement_leaves_out_only_negligible_entries(rng):
    _, P = _plan(rng, 30, 40, reg=2e-3)  # most entries far below DROP of their column
    c = P.sum(0)
    kept = P > kernels.DROP * c
    assert kept.mean() < 0.5
    S = kernels._schur(P, c)
    np.testing.assert_allclose(np.tril(S), np.tril(((P * kept) / c) @ (P * kept).T), rtol=1e-12, atol=0)
    full = (P / c) @ P.T
    assert np.abs(np.tril(S) - np.tril(full)).max() <= 1e-12 * P.sum(1).max()


@pytest.mark.parametrize("n", [1, 4, 33])
def test_cholesky_solve_matches_numpy(rng, n):
    A = rng.standard_normal((n, n))
    S = A @ A.T + n * np.eye(n)
    rhs = rng.standard_normal(n)
    x, ok = kernels._cholesky_solve(np.tril(S), rhs, 0.0)
    assert ok
    np.testing.assert_allclose(x, np.linalg.solve(S, rhs), rtol=1e-10, atol=1e-12)
    shifted, ok = kernels._cholesky_solve(np.tril(S), rhs, 2.5)
    np.testing.assert_allclose(shifted, np.linalg.solve(S + 2.5 * np.eye(n), rhs), rtol=1e-10, atol=1e-12)
    _, ok = kernels._cholesky_solve(np.tril(-S), rhs, 0.0)
    assert not ok  # not positive definite: reported, not a garbage solution


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reg", [1e-1, 1e-3])
@pytest.mark.parametrize("mu", [0.0, 1e-3])
def test_newton_direction_solves_the_shifted_dual_hessian_system(rng, shape, reg, mu):
    """``[[diag r + mu, P], [P^T, diag c + mu]] (x_f, x_g) = (a - r, b - c)``
    with ``(df, dg) = reg (x_f, x_g)`` less its part along ``(1, -1)``: checked
    densely in NumPy (with ``mu = 0`` the system is singular along ``(1, -1)``
    and consistent: the minimum-norm solution is the reference)."""
    n, m = shape
    _, P = _plan(rng, n, m, reg=0.2)
    r, c = P.sum(1), P.sum(0)
    a, b = rng.random(n) + 0.5, rng.random(m) + 0.5
    a, b = a / a.sum(), b / b.sum()
    df, dg = kernels._newton_direction(P, r, c, a, b, reg, mu)
    H = np.block([[np.diag(r + mu), P], [P.T, np.diag(c + mu)]])
    x = np.linalg.lstsq(H, np.concatenate([a - r, b - c]), rcond=None)[0] * reg
    null = np.concatenate([np.ones(n), -np.ones(m)]) / np.sqrt(n + m)
    x -= (x @ null) * null
    got = np.concatenate([df, dg])
    assert abs(got @ null) <= 1e-12 * np.abs(got).max()
    np.testing.assert_allclose(got, x, rtol=1e-6, atol=1e-9 * np.abs(x).max())


def _driver(monkeypatch):
    monkeypatch.setattr(small, "SMALL_MAX_SIDE", 0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("reg", [1e-2, 1e-3, 1e-4])
def test_meets_the_tolerance_on_the_suite_as_the_driver_does(family, reg, monkeypatch):
    p = make_problem(family, 64, seed=3)
    res = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-10)
    assert res.converged and plan_error(res.plan, p.a, p.b) <= 1e-10
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - p.M) / reg), res.plan, rtol=1e-9, atol=1e-150)
    _driver(monkeypatch)
    ref = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-10)
    assert ref.converged
    # both within 1e-10 of the marginals: the plans agree to what that allows
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-9 * p.a.max())
    assert res.value == pytest.approx(ref.value, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("family", ["assignment", "image-w2", "image-w1"])
@pytest.mark.parametrize("reg", [1e-3, 1e-4, 1e-5])
def test_hard_suite_in_tens_of_newton_steps(family, reg):
    """Nearly degenerate plans (assignments, W1 between images): the shifted
    system, trust region and fallback steps of the driver are needed here."""
    p = make_problem(family, 100, seed=1)
    res = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-9)
    assert res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9
    assert res.n_iter_phases["newton"] <= 80, res.n_iter_phases
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - p.M) / reg), res.plan, rtol=1e-6, atol=1e-150)


def test_same_iterations_as_the_driver_on_a_uniform_cost(rng, monkeypatch):
    M = rng.random((100, 100))
    a = np.full(100, 0.01)
    res = fs.solve(M, a, a, reg=1e-3, method="sns", tol=1e-9)
    _driver(monkeypatch)
    ref = fs.solve(M, a, a, reg=1e-3, method="sns", tol=1e-9)
    # the same algorithm: the same Newton steps; the warm-up's switch test is
    # made after the column update here, after the row update there
    assert res.n_iter_phases["newton"] == ref.n_iter_phases["newton"]
    assert abs(res.n_iter_phases["sinkhorn"] - ref.n_iter_phases["sinkhorn"]) <= 1
    np.testing.assert_allclose(res.plan, ref.plan, atol=1e-11)  # both to 1e-9 of the marginals


@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_rectangular_and_zero_masses(rng, shape):
    n, m = shape
    M = rng.random(shape)
    a, b = rng.random(n), rng.random(m)
    a[[0, 5]] = 0.0
    b[[3]] = 0.0
    a, b = a / a.sum(), b / b.sum()
    a0, b0, M0 = a.copy(), b.copy(), M.copy()
    res = fs.solve(M, a, b, reg=1e-3, tol=1e-11)
    assert res.converged and plan_error(res.plan, a, b) <= 1e-11
    assert np.all(res.plan[[0, 5]] == 0) and np.all(res.plan[:, 3] == 0)
    assert np.all(np.isneginf(res.potentials[0][[0, 5]])) and np.isneginf(res.potentials[1][3])
    np.testing.assert_array_equal(a, a0)  # inputs never modified
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(M, M0)


def test_float32_meets_its_tolerance(rng):
    M = rng.random((40, 50)).astype(np.float32)
    a, b = np.full(40, 1 / 40, np.float32), np.full(50, 1 / 50, np.float32)
    res = fs.solve(M, a, b, reg=1e-3, tol=1e-5)
    assert res.converged and res.plan.dtype == np.float32
    assert plan_error(res.plan.astype(np.float64), a.astype(np.float64), b.astype(np.float64)) <= 1e-5


def test_any_reg_is_log_stable(rng):
    M = rng.random((20, 20)) * 1e3  # reg 1e-6 of the range: exp(-M / reg) is 0 everywhere
    a = np.full(20, 0.05)
    res = fs.solve(M, a, a, reg=1e-3, tol=1e-9)
    assert res.converged and plan_error(res.plan, a, a) <= 1e-9 and np.all(np.isfinite(res.potentials[0]))


def test_budget_and_non_convergence_are_reported(rng):
    M = rng.random((50, 50))
    a = np.full(50, 0.02)
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve(M, a, a, reg=1e-4, method="sns", tol=1e-12, max_iter=20)
    assert not res.converged and res.n_iter <= 20
    assert sum(res.n_iter_phases.values()) == res.n_iter


def test_warm_start_skips_the_schedule(rng):
    M = rng.random((40, 40))
    a = np.full(40, 1 / 40)
    first = fs.solve(M, a, a, reg=1e-4, method="sns", tol=1e-10)
    again = fs.solve(M, a, a, reg=1e-4, method="sns", tol=1e-10, warm_start=first.potentials)
    assert again.converged and again.n_iter <= 2
    np.testing.assert_allclose(again.plan, first.plan, atol=1e-12)


def test_history_records_the_final_check(rng):
    M = rng.random((30, 30))
    a = np.full(30, 1 / 30)
    res = fs.solve(M, a, a, reg=1e-3, method="sns", tol=1e-10)
    assert res.history["error"] == [pytest.approx(res.marginal_error, rel=1e-6, abs=1e-15)]
    assert res.history["iteration"] == [res.n_iter]


@pytest.mark.parametrize("case", ["callback", "verbose", "density", "linear_solver", "unbalanced", "inf",
                                  "large", "batch"])
def test_the_driver_runs_what_the_compiled_path_does_not_honour(rng, case, monkeypatch):
    calls = []
    monkeypatch.setattr(small, "run_small", lambda *args: calls.append(1) or pytest.fail("compiled path ran"))
    M = rng.random((30, 30))
    a = np.full(30, 1 / 30)
    kw = dict(reg=1e-3, method="sns", tol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "callback":
            fs.solve(M, a, a, callback=lambda state: None, **kw)
        elif case == "verbose":
            fs.solve(M, a, a, verbose=True, **kw)
        elif case in ("density", "linear_solver"):
            fs.solve(M, a, a, **{case: 0.5 if case == "density" else "cg"}, **kw)
        elif case == "unbalanced":
            fs.solve(M, a, a, unbalanced=1.0, **kw)
        elif case == "inf":
            M[0, 1] = np.inf
            fs.solve(M, a, a, **kw)
        elif case == "large":
            big = rng.random((small.SMALL_MAX_SIDE + 1, small.SMALL_MAX_SIDE + 1))
            w = np.full(len(big), 1 / len(big))
            fs.solve(big, w, w, max_iter=3, **kw)
        else:
            fs.solve(np.stack([M, M]), a, a, reg=1e-2, method="sinkhorn")
    assert not calls


def test_the_compiled_path_runs_where_it_applies(rng, monkeypatch):
    ran = []
    original = small.run_small
    monkeypatch.setattr(small, "run_small", lambda *args: ran.append(1) or original(*args))
    M = rng.random((30, 30))
    a = np.full(30, 1 / 30)
    fs.solve(M, a, a, reg=1e-3, tol=1e-9)  # auto: SNS at this reg
    fs.solve(M, a, a, reg=1e-3, method="sns", warmup_iter=50, switch_tol=0.01)  # honoured options
    assert ran == [1, 1]


def test_pots_stopping_rule_is_met_by_the_compiled_path(rng, monkeypatch):
    """POT's drop-ins (``norm="l2"``) run compiled, stop where the L2 error
    of both marginals meets stopThr (the L1 error bounds it), log that error
    and agree with the driver's answer to the tolerance."""
    ran = []
    original = small.run_small
    monkeypatch.setattr(small, "run_small", lambda *args: ran.append(1) or original(*args))
    M = rng.random((30, 40))
    a, b = rng.random(30) + 0.1, rng.random(40) + 0.1
    a, b = a / a.sum(), b / b.sum()
    P, log = fs.sinkhorn(a, b, M, 1e-3, method="sns", stopThr=1e-9, log=True)
    assert ran == [1]
    l2 = np.sqrt(((P.sum(1) - a) ** 2).sum() + ((P.sum(0) - b) ** 2).sum())
    assert l2 <= 1e-9 and log["err"][-1] == pytest.approx(l2, rel=1e-6, abs=1e-15)
    monkeypatch.setattr(small, "applies", lambda *args: False)  # the driver, for comparison
    P_driver = fs.sinkhorn(a, b, M, 1e-3, method="sns", stopThr=1e-9)
    assert np.abs(P - P_driver).sum() <= 1e-8
