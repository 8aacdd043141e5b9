"""Sinkhorn-Newton-Sparse: accuracy, convergence order, agreement, CG.

These are the Python driver's tests (its history, linear solvers, hedge,
budget): the compiled small-problem path, which would take their small
problems, is switched off here and tested in test_sns_small.py."""

import numpy as np
import ot
import pytest
import scipy.sparse
import scipy.sparse.linalg
from ot_testing import plan_error, random_problem

import fastsinkhorn as fs
from fastsinkhorn.algorithms.sns import small
from fastsinkhorn.core.cg import pcg
from fastsinkhorn.problems import FAMILIES, make_problem


@pytest.fixture(autouse=True)
def python_driver(monkeypatch):
    monkeypatch.setattr(small, "SMALL_MAX_SIDE", 0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("reg", [1e-2, 1e-3])
def test_reaches_1e_10_on_the_suite(family, reg):
    p = make_problem(family, 400, seed=11)
    res = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-10)
    assert res.converged and res.method == "sns"
    assert plan_error(res.plan, p.a, p.b) <= 1e-10
    assert res.n_iter_phases["newton"] <= 60
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - p.M) / reg), res.plan, rtol=1e-7, atol=1e-150)


@pytest.mark.parametrize("family", ["cloud", "rect", "grid-w1"])
def test_plan_equals_long_log_sinkhorn(family):
    p = make_problem(family, 196, seed=5)
    reg = 1e-2
    sns = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-12).plan
    long = ot.sinkhorn(p.a, p.b, p.M, reg, method="sinkhorn_log", stopThr=1e-15, numItermax=200_000)
    np.testing.assert_allclose(sns, long, rtol=1e-8, atol=1e-14)


def test_newton_phase_converges_superlinearly():
    p = make_problem("cloud", 500, seed=3)
    res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", tol=1e-13)
    h = res.history
    errs = [e for e, ph in zip(h["error"], h["phase"]) if ph == "newton" and e < 1e-3]
    assert len(errs) >= 3
    ratios = [e1 / e0 for e0, e1 in zip(errs, errs[1:])]
    # linear (Sinkhorn-like) convergence would keep ratios near a constant;
    # Newton's ratios shrink: the last steps each gain well over a digit
    assert max(ratios[-2:]) < 0.1, ratios
    assert ratios[-1] < ratios[0]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_zero_masses(rng, backend):
    M, a, b = random_problem(rng, 60, 45, zeros=5)
    res = fs.solve(M, a, b, reg=1e-3, method="sns", backend=backend, tol=1e-10)
    assert res.converged and plan_error(res.plan, a, b) <= 1e-10
    assert (res.plan[a == 0] == 0).all() and (res.plan[:, b == 0] == 0).all()
    rows, cols = np.ix_(a > 0, b > 0)  # the rest solves the problem without the empty rows and columns
    reduced = fs.solve(M[rows, cols], a[a > 0], b[b > 0], reg=1e-3, method="sns", backend="reference", tol=1e-11)
    assert np.abs(res.plan[rows, cols] - reduced.plan).sum() <= 1e-8


def test_float32_reaches_1e_5():
    p = make_problem("cloud", 300, seed=4, dtype=np.float32)
    res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns")
    assert res.plan.dtype == np.float32 and res.converged
    assert plan_error(res.plan, p.a.astype(float), p.b.astype(float)) <= 1e-5


def test_cpu_and_reference_agree():
    p = make_problem("rect", 150, seed=9)
    r1 = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", backend="cpu", tol=1e-11)
    r2 = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", backend="reference", tol=1e-11)
    np.testing.assert_allclose(r1.plan, r2.plan, rtol=1e-7, atol=1e-13)


def test_random_costs_where_sinkhorn_is_hopeless(rng):
    """Tiny random problems at small reg: Sinkhorn needs > 1e5 iterations, SNS a few."""
    M, a, b = random_problem(rng, 3, 5)
    res = fs.solve(M, a, b, reg=1e-3, method="sns", tol=1e-11)
    assert res.converged and res.n_iter < 500 and plan_error(res.plan, a, b) <= 1e-11
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - M) / 1e-3), res.plan, rtol=1e-9, atol=1e-150)


def test_approaches_exact_lp():
    p = make_problem("cloud", 60, seed=1)
    exact = ot.emd2(p.a, p.b, p.M)
    res = fs.solve(p.M, p.a, p.b, reg=1e-4, method="sns", tol=1e-10)
    assert res.converged
    assert 0 <= res.value_linear - exact < 1e-4 * np.log(3600)
    assert np.abs(res.plan - ot.emd(p.a, p.b, p.M)).sum() < 0.2


def test_history_records_newton_details():
    p = make_problem("grid-w2", 225, seed=2)
    res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns")
    h = res.history
    assert set(h) >= {"iteration", "error", "time", "phase", "cg_iterations", "nnz", "step"}
    assert all(len(col) == len(h["iteration"]) for col in h.values())
    newton = [i for i, ph in enumerate(h["phase"]) if ph == "newton"]
    assert newton and all(h["nnz"][i] > 0 for i in newton)
    assert res.n_iter == res.n_iter_phases["sinkhorn"] + res.n_iter_phases["newton"]


def test_options_are_validated_and_unknown_ones_warn():
    p = make_problem("cloud", 50, seed=0)
    with pytest.raises(ValueError, match="density"):
        fs.solve(p.M, reg=1e-2, method="sns", density=2.0)
    with pytest.warns(UserWarning, match="densty"):
        fs.solve(p.M, reg=1e-2, method="sns", densty=0.1)


def test_max_iter_applies_to_both_phases():
    p = make_problem("grid-w1", 256, seed=0)
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", max_iter=25)
    assert res.n_iter <= 25 and not res.converged and res.status is fs.Status.MAX_ITER
    # the reported error is that of the returned plan, which is that of the returned potentials
    assert res.marginal_error == pytest.approx(plan_error(res.plan, p.a, p.b), rel=1e-9)
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - p.M) / 1e-3), res.plan, rtol=1e-8, atol=1e-150)


def test_auto_rule():
    assert fs.choose_method(1e-3, 1.0, 1e-9) == "sns"
    assert fs.choose_method(1e-2, 1.0, 1e-9) == "sinkhorn"
    assert fs.choose_method(1e-3, 1.0, 1e-3) == "sinkhorn"
    p = make_problem("cloud", 80, seed=0)
    assert fs.solve(p.M, reg=1e-3).method == "sns"
    assert fs.solve(p.M, reg=1e-1).method == "sinkhorn"


def test_auto_hands_slow_sinkhorn_over_to_newton():
    """Large ``reg`` against the cost, yet a nearly degenerate plan (a self
    distance of well separated points): Sinkhorn contracts so slowly that it
    would take ~5e4 iterations to 1e-13. ``auto`` (Sinkhorn first) predicts
    more than ``sinkhorn_patience`` iterations and takes Newton steps; the
    answer meets the optimality conditions (a 4 x 4 problem: Sinkhorn alone
    runs ~5e4 iterations, 20 s here)."""
    x = np.arange(4.0)[:, None]  # reg = 0.011 of the cost range: auto starts with Sinkhorn
    M = (x - x.T) ** 2
    a = np.full(4, 1 / 4)
    res = fs.solve(M, a, a, reg=0.1, tol=1e-13, max_iter=100_000)
    assert res.converged and res.method == "sns" and res.n_iter < 5000
    assert res.n_iter_phases["newton"] > 0
    np.testing.assert_allclose(res.plan, res.plan.T, atol=1e-16)  # the optimum is symmetric
    f, g = res.potentials  # the optimality conditions: the Gibbs form and both marginals
    np.testing.assert_allclose(res.plan, np.exp((f[:, None] + g[None, :] - M) / 0.1), rtol=1e-12)
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-13)
    np.testing.assert_allclose(res.plan.sum(0), a, atol=1e-13)


@pytest.mark.parametrize("shape", [(30, 30), (200, 120)])
def test_pcg_matches_scipy_cg(rng, shape):
    n, m = shape
    S = scipy.sparse.random(n, m, density=0.1, random_state=np.random.RandomState(1), format="csr")
    r = np.asarray(S.sum(1)).ravel() + rng.random(n)
    c = np.asarray(S.sum(0)).ravel() + rng.random(m)
    H = scipy.sparse.bmat([[scipy.sparse.diags(r), S], [S.T, scipy.sparse.diags(c)]]).tocsr()
    rhs = rng.normal(size=n + m)
    x, iters, ok = pcg(lambda v: H @ v, rhs, H.diagonal(), 1e-12, 1000, np)
    x_ref, info = scipy.sparse.linalg.cg(H, rhs, rtol=1e-12, maxiter=1000)
    assert ok and info == 0 and iters < 1000
    np.testing.assert_allclose(x, x_ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(H @ x, rhs, atol=1e-10)


# -- small reg: near-permutation plans and rough histograms ----------------------
def exact_newton_steps(M, a, b, reg, f, g, tol):
    """Dense, exact Newton with Armijo backtracking (the float64 reference)."""
    n = len(a)
    for step in range(200):
        P = np.exp((f[:, None] + g[None, :] - M) / reg)
        r, c = P.sum(1), P.sum(0)
        if np.abs(r - a).sum() + np.abs(c - b).sum() <= tol:
            return step
        H = np.block([[np.diag(r), P], [P.T, np.diag(c)]])
        grad = np.r_[a - r, b - c]
        d = reg * np.linalg.lstsq(H, grad, rcond=None)[0]
        dual = lambda t: a @ (f + t * d[:n]) + b @ (g + t * d[n:]) - reg * np.exp(  # noqa: E731
            (f[:, None] + t * d[:n, None] + g[None, :] + t * d[None, n:] - M) / reg).sum()
        t, base = 1.0, dual(0.0)
        while dual(t) < base + 1e-4 * t * (grad @ d) and t > 1e-8:
            t /= 2
        f, g = f + t * d[:n], g + t * d[n:]
    return step


def test_near_permutation_newton_matches_exact_newton():
    """i.i.d. uniform costs, n = 100, reg = 1e-3: the plan is nearly a permutation
    and the Hessian's smallest eigenvalues are tiny (Jacobi-PCG used to stall here
    for 1700 steps). From the same start, sparsified Newton with the direct
    solve needs about as many steps as exact dense Newton. (Exact Newton itself
    contracts the error only by ~1/e per step in this range: entries that
    carry the remaining error sit many ``reg`` away in potential, where each
    Newton step moves by about one ``reg``.)"""
    p = make_problem("assignment", 100, seed=0)
    reg = 1e-3
    start = fs.solve(p.M, p.a, p.b, reg=reg, method="sinkhorn", tol=0.03)
    res = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-9, warm_start=start.potentials)
    assert res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9
    reference = exact_newton_steps(p.M, p.a, p.b, reg, *start.potentials, tol=1e-9)
    assert res.n_iter_phases["newton"] <= reference + 3, (res.n_iter_phases, reference)
    h = res.history
    errs = [e for e, ph in zip(h["error"], h["phase"]) if ph == "newton"]
    ratios = np.array(errs[1:]) / np.array(errs[:-1])
    assert np.median(ratios) < 0.5  # Sinkhorn's ratio here is > 0.999
    assert "direct" in h["solver"]


@pytest.mark.parametrize("family", ["assignment", "image-w2", "image-w1"])
@pytest.mark.parametrize("reg", [1e-3, 1e-4, 1e-5])
def test_hard_suite_in_tens_of_newton_steps(family, reg):
    p = make_problem(family, 100, seed=1)
    res = fs.solve(p.M, p.a, p.b, reg=reg, method="sns", tol=1e-9)
    assert res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9
    assert res.n_iter_phases["newton"] <= 80, res.n_iter_phases  # all annealing stages together
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - p.M) / reg), res.plan, rtol=1e-6, atol=1e-150)


def test_image_histograms_at_1e_5_where_newton_used_to_crawl():
    p = make_problem("image-w1", 289, seed=0)
    res = fs.solve(p.M, p.a, p.b, reg=1e-5)
    assert res.method == "sns" and res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9
    assert res.n_iter_phases["newton"] <= 100
    stages = sorted({r for r in res.history["reg"] if r is not None}, reverse=True)
    assert len(stages) >= 3 and stages[-1] == 1e-5  # annealed from 1e-3


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_linear_solvers_give_the_same_plan(solver):
    p = make_problem("rect", 150, seed=9)
    auto = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", tol=1e-11)
    forced = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", tol=1e-11, linear_solver=solver)
    assert forced.converged
    assert {s for s in forced.history["solver"] if s is not None} == {solver}
    np.testing.assert_allclose(forced.plan, auto.plan, rtol=1e-7, atol=1e-13)


def test_annealing_changes_the_path_not_the_answer():
    p = make_problem("cloud", 150, seed=2)
    annealed = fs.solve(p.M, p.a, p.b, reg=1e-4, method="sns", tol=1e-11)
    direct = fs.solve(p.M, p.a, p.b, reg=1e-4, method="sns", tol=1e-11, anneal_factor=1.0)
    assert annealed.converged and direct.converged
    assert len({r for r in annealed.history["reg"] if r is not None}) > 1
    assert {r for r in direct.history["reg"] if r is not None} == {1e-4}
    # entries below the tolerance are not pinned down by a 1e-11 solve: atol ~ tol
    np.testing.assert_allclose(annealed.plan, direct.plan, rtol=1e-6, atol=1e-11)
    assert np.abs(annealed.plan - direct.plan).sum() < 1e-9


def test_sinkhorn_hedge_extrapolates_the_warm_up():
    """The hedge's cost model on a recorded warm-up: 100 checks, error x0.95
    per check, 1 ms per check. From 0.03 to 1e-9 Sinkhorn needs ~337 more
    checks (0.34 s): less than half of 12 Newton steps of 3 passes of 20 ms
    (0.72 s), more than half with 10 ms passes."""
    from fastsinkhorn.algorithms.sns.driver import _SNSRun
    from fastsinkhorn.core.monitor import Monitor
    from fastsinkhorn.core.options import SNSOptions
    from fastsinkhorn.core.validation import prepare_problem

    p = make_problem("cloud", 20, seed=0)
    monitor = Monitor(1e-9)
    errors = 0.03 / 0.95 ** np.arange(99, -1, -1)
    monitor.history["error"] += list(errors)
    monitor.history["time"] += list(1e-3 * np.arange(100))
    run = _SNSRun(prepare_problem(p.M, p.a, p.b, 1e-3, "cpu"), SNSOptions(), monitor, 10_000)
    expected = np.log(1e-9 / 0.03) / np.log(0.95)
    assert run._sinkhorn_iterations_if_cheaper(0, 20e-3, 1e-9) == int(np.ceil(expected))
    assert run._sinkhorn_iterations_if_cheaper(0, 10e-3, 1e-9) == 0
    assert run._sinkhorn_iterations_if_cheaper(70, 20e-3, 1e-9) == 0  # too few checks to judge
    monitor.history["error"][-5:] = [errors[-6]] * 5  # stalling at the end: not cheaper
    assert run._sinkhorn_iterations_if_cheaper(0, 20e-3, 1e-9) == 0


def _hedge_run(errors, times, junk=0, cost=None, **opts):
    """An ``_SNSRun`` whose monitor recorded ``junk`` checks of an earlier
    stage (first_check = junk), then the warm-up's ``errors`` and ``times``
    (on a small dense cost, or on ``cost``)."""
    from fastsinkhorn.algorithms.sns.driver import _SNSRun
    from fastsinkhorn.core.monitor import Monitor
    from fastsinkhorn.core.options import SNSOptions
    from fastsinkhorn.core.validation import prepare_problem

    p = make_problem("cloud", 8, seed=0)
    monitor = Monitor(1e-9)
    monitor.history["error"] += [1e-300] * junk + list(errors)
    monitor.history["time"] += [1e9] * junk + list(times)
    prob = prepare_problem(p.M if cost is None else cost, p.a, p.b, 1e-2, "cpu")
    return _SNSRun(prob, SNSOptions(**opts), monitor, 10_000)


def _history(ratios, start=1.0):
    """Errors of a warm-up whose error is multiplied by ``ratios[i]`` at check ``i + 1``."""
    return list(start * np.cumprod([1.0] + list(ratios)))


# 120 checks: x0.95 per check up to check 69, x0.98 over checks 70-109, x0.9
# over the last 10. The window is the last 50 checks (70-119); one check more
# or fewer, or a window of a third, would see other ratios.
_RATIOS = [0.95] * 69 + [0.98] * 40 + [0.9] * 10
# 1 s before the window, then 2 ms per check inside it, except 100 ms for the
# check that enters the window (70)
_TIMES = list(np.cumsum([5.0] + [1.0] * 69 + [0.1] + [2e-3] * 49))


def test_hedge_rate_is_the_window_rate_when_the_last_checks_are_faster():
    errors = _history(_RATIOS, 0.7)
    rate = (0.98**40 * 0.9**10) ** (1 / 50)  # the window's geometric mean; its last 10 (x0.9) are faster
    per_check = (0.1 + 49 * 2e-3) / 50
    checks = np.log(1e-12 / errors[-1]) / np.log(rate)
    assert 10 < checks < 1000 and checks != np.ceil(checks)
    sinkhorn_time = per_check * checks
    pass_time = sinkhorn_time / 18 * 1.001  # Newton: 0.5 * 12 steps * 3 passes
    run = _hedge_run(errors, _TIMES, junk=7)
    assert run._sinkhorn_iterations_if_cheaper(7, pass_time, 1e-12) == int(np.ceil(checks))
    assert run._sinkhorn_iterations_if_cheaper(7, sinkhorn_time / 18 * 0.999, 1e-12) == 0
    # check_every multiplies the prediction (the GPU checks every 10th iteration)
    run = _hedge_run(errors, _TIMES, junk=7, check_every=10)
    assert run._sinkhorn_iterations_if_cheaper(7, pass_time, 1e-12) == 10 * int(np.ceil(checks))
    # ... as the geometry's loop checks: a point cloud's, every iteration whatever check_every
    cloud = fs.PointCloud(np.random.default_rng(0).random((8, 2)), np.random.default_rng(1).random((8, 2)))
    run = _hedge_run(errors, _TIMES, junk=7, cost=cloud, check_every=10)
    assert run._sinkhorn_iterations_if_cheaper(7, pass_time, 1e-12) == int(np.ceil(checks))


def test_hedge_rate_is_the_last_checks_rate_when_they_are_slower():
    ratios = [0.95] * 69 + [0.8] * 40 + [0.97] * 9 + [0.99]
    errors = _history(ratios, 0.7)
    rate = (0.97**9 * 0.99) ** 0.1  # the last 10 checks, slower than the window's
    per_check = (0.1 + 49 * 2e-3) / 50
    checks = np.log(1e-12 / errors[-1]) / np.log(rate)
    assert checks != np.ceil(checks)
    pass_time = per_check * checks / 18 * 1.001
    run = _hedge_run(errors, _TIMES)
    assert run._sinkhorn_iterations_if_cheaper(0, pass_time, 1e-12) == int(np.ceil(checks))
    assert run._sinkhorn_iterations_if_cheaper(0, pass_time * 0.998, 1e-12) == 0


def test_hedge_needs_a_window_of_20_checks():
    """40 checks give a window of 20: judged; 39 give 19: not judged."""
    errors, times = _history([0.8] * 39), list(1e-4 * np.arange(40))
    rate = 0.8
    checks = np.log(1e-9 / errors[-1]) / np.log(rate)
    run = _hedge_run(errors, times)
    assert run._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-9) == int(np.ceil(checks))
    run = _hedge_run(errors[1:], times[1:])
    assert run._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-9) == 0


def test_hedge_declines_without_a_measurable_contraction():
    decreasing = _history([0.8] * 59)
    times = list(1e-4 * np.arange(60))
    # the last 11 errors equal: rate exactly 1, Sinkhorn never gets there
    flat = decreasing[:49] + [decreasing[48]] * 11
    assert _hedge_run(flat, times)._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-9) == 0
    # an exact zero error: nothing to extrapolate
    zero = decreasing[:-1] + [0.0]
    assert _hedge_run(zero, times)._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-9) == 0
    # a clock that did not move and a pass that took no time: not *clearly* cheaper
    still = [0.0] * 60
    assert _hedge_run(decreasing, still)._sinkhorn_iterations_if_cheaper(0, 0.0, 1e-9) == 0
    # the same warm-up with a moving clock is judged
    assert _hedge_run(decreasing, times)._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-9) > 0


def test_hedge_judges_the_window_by_its_ends_only():
    """Dips of the error inside or just outside the window (the L1 error is
    not monotone) change nothing: the window is judged by its first and last
    checks and the last 10."""
    errors = _history(_RATIOS, 0.7)
    run = _hedge_run(errors, _TIMES)
    smooth = run._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-12)
    assert smooth > 0
    for i in (49, 120 - 49, 120 - 52):  # before the window, inside it, just before it
        dipped = list(errors)
        dipped[i] = errors[-1] / 2
        run = _hedge_run(dipped, _TIMES)
        assert run._sinkhorn_iterations_if_cheaper(0, 1.0, 1e-12) == smooth, i


def _fake_point(n, m, nnz, kept_per_row, width):
    from types import SimpleNamespace

    val = np.zeros((n, width))
    val[:, :kept_per_row] = 1.0
    return SimpleNamespace(r=np.ones(n), c=np.ones(m), nnz=nnz, val=val)


def test_cg_cap_is_the_iterations_worth_one_direct_solve():
    """The PCG cap of ``linear_solver="auto"``: the direct solve's estimated
    time (1 ms + assembly 20 ns per product of a row's kept entries + the
    factorisation, dense O(order^3) or at most 50 assemblies) over the
    estimated time of one PCG iteration (15 us + 1.2 ns per nonzero + 4 ns
    per unknown), at least 10, at most ``cg_max_iter``."""
    from fastsinkhorn.algorithms.sns.driver import LinearSolver
    from fastsinkhorn.core.options import SNSOptions

    auto = LinearSolver(SNSOptions())
    # small: the dense factorisation is cheap
    direct = 1e-3 + 2e-8 * 100 * 10**2 + 100**3 / 1.2e11
    per_iteration = 15e-6 + 1.2e-9 * 1000 + 4e-9 * (100 + 120)
    assert auto._cg_cap(_fake_point(100, 120, 1000, 10, 12)) == int(direct / per_iteration) == 70
    # large and sparse (2 kept a row): 50 assemblies bound the factorisation
    assembly = 2e-8 * 2000 * 2**2
    direct = 1e-3 + assembly + 50 * assembly
    per_iteration = 15e-6 + 1.2e-9 * 4000 + 4e-9 * (2000 + 2500)
    pt = _fake_point(2000, 2500, 4000, 2, 3)
    assert auto._cg_cap(pt) == int(direct / per_iteration) == 242
    assert LinearSolver(SNSOptions(cg_max_iter=100))._cg_cap(pt) == 100
    # a costly iteration (many nonzeros): the floor of 10
    assert auto._cg_cap(_fake_point(100, 120, 10**6, 10, 12)) == 10
    # linear_solver="cg": no estimate, the cap is cg_max_iter (even below 10)
    assert LinearSolver(SNSOptions(linear_solver="cg", cg_max_iter=7))._cg_cap(pt) == 7
    assert LinearSolver(SNSOptions(linear_solver="cg", cg_max_iter=1000))._cg_cap(pt) == 1000


def test_direct_solve_retries_with_a_growing_shift(monkeypatch):
    """A factorisation that fails (definiteness lost to rounding) is retried
    with the shift ``mu -> 10 mu + 1e-14``, 8 tries in all; the kind of the
    first successful factorisation is passed on to the next ones."""
    from types import SimpleNamespace

    import fastsinkhorn.algorithms.sns.driver as sns
    from fastsinkhorn.core.options import SNSOptions
    from fastsinkhorn.core.validation import prepare_problem

    p = make_problem("cloud", 12, seed=1)
    prob = prepare_problem(p.M, p.a, p.b, 0.1, "reference")
    pt = sns._Point(prob, np.zeros(12), np.zeros(12), 4)
    calls, fail = [], [2]

    def factorize(idx, val, r, c, mu, kind=None):
        calls.append((mu, kind))
        if fail[0] > 0:
            fail[0] -= 1
            raise (RuntimeError if fail[0] else np.linalg.LinAlgError)("not definite")
        return SimpleNamespace(kind="sparse", solve=lambda gf, gg: (np.ones_like(gf), 2 * np.ones_like(gg)))

    monkeypatch.setattr(sns, "factorize_newton_system", factorize)
    solver = sns.LinearSolver(SNSOptions())
    df, dg = solver._direct(prob, pt, prob.a - pt.r, prob.b - pt.c, 1e-3)
    assert np.array_equal(df, np.ones(12)) and np.array_equal(dg, 2 * np.ones(12))
    assert calls == [(1e-3, None), (10 * 1e-3 + 1e-14, None), (10 * (10 * 1e-3 + 1e-14) + 1e-14, None)]
    assert solver.factor_kind == "sparse"
    calls.clear()
    solver._direct(prob, pt, prob.a - pt.r, prob.b - pt.c, 1e-3)
    assert calls == [(1e-3, "sparse")]
    calls.clear()
    fail[0] = 100
    with pytest.raises(np.linalg.LinAlgError, match="^the Newton system could not be factorised$"):
        solver._direct(prob, pt, prob.a - pt.r, prob.b - pt.c, 1e-3)
    assert len(calls) == 8


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_cg_solves_the_shifted_sparsified_system(backend):
    """PCG's system is ``[[diag r, S], [S^T, diag c]] + mu I`` with ``S`` the
    kept entries of the plan's rows: checked against that matrix, built densely,
    for a shift large enough to matter, and ``cg_rtol`` as the tolerance."""
    import fastsinkhorn.algorithms.sns.driver as sns
    from fastsinkhorn.core.options import SNSOptions
    from fastsinkhorn.core.validation import prepare_problem

    p = make_problem("rect", 30, seed=2)
    prob = prepare_problem(p.M, p.a, p.b, 0.05, backend)
    n, m = prob.shape
    rng = np.random.default_rng(0)
    pt = sns._Point(prob, 0.01 * rng.standard_normal(n), 0.01 * rng.standard_normal(m), 5)
    S = np.zeros((n, m))
    np.put_along_axis(S, pt.idx, pt.val, axis=1)
    mu = 0.3 * float(pt.r.mean())
    H = np.block([[np.diag(pt.r), S], [S.T, np.diag(pt.c)]]) + mu * np.eye(n + m)
    rhs = rng.standard_normal(n + m)
    solver = sns.LinearSolver(SNSOptions(cg_rtol=1e-10))
    d, iters, converged = solver._cg(prob, pt, rhs[:n], rhs[n:], mu, 500)
    assert converged and 0 < iters < 500
    assert np.linalg.norm(H @ d - rhs) <= 1e-10 * np.linalg.norm(rhs)
    np.testing.assert_allclose(d, np.linalg.solve(H, rhs), rtol=1e-7, atol=1e-12)
    # by default (inexact Newton) the relative residual is sqrt(error), at most 0.1
    assert pt.error > 0.04
    d, iters, converged = sns.LinearSolver(SNSOptions())._cg(prob, pt, rhs[:n], rhs[n:], mu, 500)
    assert converged and np.linalg.norm(H @ d - rhs) <= 0.1 * np.linalg.norm(rhs)


def test_newton_direction_solves_the_shifted_system_and_reports_its_solver():
    """``direction``: ``(df, dg) = reg * (H + mu I)^-1 (a - r, b - c)`` with the
    shift ``mu = shift * err^2 * mean(diag H) + 1e-14``; ``info`` names the
    solver that produced it, its CG iterations and the slope ``<grad, d>``."""
    import fastsinkhorn.algorithms.sns.driver as sns
    from fastsinkhorn.core.options import SNSOptions
    from fastsinkhorn.core.validation import prepare_problem

    p = make_problem("rect", 30, seed=2)
    prob = prepare_problem(p.M, p.a, p.b, 0.05, "reference")
    n, m = prob.shape
    rng = np.random.default_rng(0)
    pt = sns._Point(prob, 0.05 + 0.01 * rng.standard_normal(n), 0.05 + 0.01 * rng.standard_normal(m), m)
    grad = np.concatenate([prob.a - pt.r, prob.b - pt.c])
    S = np.zeros((n, m))
    np.put_along_axis(S, pt.idx, pt.val, axis=1)
    mean_diag = (pt.r.sum() + pt.c.sum()) / (n + m)
    mu = 0.5 * pt.error**2 * mean_diag + 1e-14
    H = np.block([[np.diag(pt.r), S], [S.T, np.diag(pt.c)]]) + mu * np.eye(n + m)
    want = 0.05 * np.linalg.solve(H, grad)

    cg = sns.LinearSolver(SNSOptions(shift=0.5, linear_solver="cg", cg_rtol=1e-12))
    df, dg, info = cg.direction(prob, pt)
    np.testing.assert_allclose(np.concatenate([df, dg]), want, rtol=1e-8, atol=1e-12 * np.abs(want).max())
    assert info["solver"] == "cg" and 1 < info["cg_iterations"] < 500
    np.testing.assert_allclose(info["slope"], grad @ want, rtol=1e-8)
    # forced CG keeps its (unconverged) direction; auto falls back to the direct solver
    capped = sns.LinearSolver(SNSOptions(shift=0.5, linear_solver="cg", cg_rtol=1e-12, cg_max_iter=1))
    assert capped.direction(prob, pt)[2]["solver"] == "cg" and capped.mode == "cg"
    auto = sns.LinearSolver(SNSOptions(shift=0.5, cg_rtol=1e-12))
    assert auto.direction(prob, pt)[2]["solver"] == "cg" and auto.mode == "cg"  # converged within the cap
    auto = sns.LinearSolver(SNSOptions(shift=0.5, cg_rtol=1e-12, cg_max_iter=1))
    df, dg, info = auto.direction(prob, pt)
    assert info["solver"] == "direct" and auto.mode == "direct" and info["cg_iterations"] == 1
    direct = sns.LinearSolver(SNSOptions(shift=0.5, linear_solver="direct", mass_budget=0.0))
    df, dg, info = direct.direction(prob, pt)
    assert info["solver"] == "direct" and info["cg_iterations"] == 0
    np.testing.assert_allclose(np.concatenate([df, dg]), want, rtol=1e-8, atol=1e-12 * np.abs(want).max())


def test_newton_history_and_budget_bookkeeping():
    """Each Newton check records the step that led to it (none for the first:
    0 CG iterations, no step, no solver); ``n_iter_phases["newton"]`` counts
    the steps; a budget that runs out during Newton is used exactly."""
    from fastsinkhorn.core.result import Status

    p = make_problem("cloud", 200, seed=3)
    res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", tol=1e-11)
    h = res.history
    rows = [i for i, ph in enumerate(h["phase"]) if ph == "newton"]
    assert res.status is Status.CONVERGED and res.converged and h["phase"][-1] == "newton"
    assert len(rows) >= 3 and res.n_iter_phases["newton"] == len(rows) - 1
    assert rows == list(range(rows[0], len(h["phase"])))
    first = rows[0]
    assert (h["cg_iterations"][first], h["step"][first], h["solver"][first]) == (0, None, None)
    assert h["iteration"][:first] == list(range(1, first + 1))  # warm-up: one check an iteration
    assert h["iteration"][first:] == list(range(first, res.n_iter + 1))  # Newton: steps taken so far
    for i in rows[1:]:
        assert 0 < h["step"][i] <= 1.0 and h["solver"][i] in ("cg", "direct")
        assert isinstance(h["cg_iterations"][i], int) and (h["cg_iterations"][i] > 0) == (h["solver"][i] == "cg")
    budget = first + 3  # the warm-up's iterations, then 3 Newton steps
    with pytest.warns(fs.ConvergenceWarning):
        short = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", tol=1e-11, max_iter=budget)
    assert short.status is Status.MAX_ITER and not short.converged
    assert short.n_iter == budget and short.n_iter_phases == {"sinkhorn": first, "newton": 3}


def test_failed_newton_steps_fall_back_to_sinkhorn_then_stall(monkeypatch):
    """A step that finds no ascent (here: every direction is a descent one)
    records step 0, doubles the density and takes ``fallback_iter`` Sinkhorn
    iterations (to tolerance 0: all of them); after the 4th failure whose
    iterate is no better than the best, Newton stops STALLED and returns the best."""
    from types import SimpleNamespace

    import fastsinkhorn.algorithms.sns.driver as sns
    from fastsinkhorn.core.monitor import Monitor
    from fastsinkhorn.core.options import SNSOptions
    from fastsinkhorn.core.result import Status
    from fastsinkhorn.core.validation import prepare_problem

    p = make_problem("cloud", 40, seed=1)
    prob = prepare_problem(p.M, p.a, p.b, 0.05, "reference")
    monitor = Monitor(1e-12)
    run = sns._SNSRun(prob, SNSOptions(fallback_iter=7, min_per_row=2, density=0.01), monitor, 1000)
    start = sns._Point(prob, *fs.solve(p.M, p.a, p.b, reg=0.05, tol=1e-6).potentials, run.k)
    worse = (start.f + 0.01 * np.arange(40) / 40, start.g)
    monkeypatch.setattr(run.linear, "direction", lambda prob, pt: (
        0 * pt.f, 0 * pt.g, {"slope": -1.0, "cg_iterations": 0, "solver": "cg"}))
    calls = []

    def sinkhorn_steps(prob, f, g, iters, tol, stall_window=0, norm="l1"):
        calls.append((iters, tol))
        run.phases["sinkhorn"] += iters
        return SimpleNamespace(potentials=lambda: worse)

    monkeypatch.setattr(run, "sinkhorn_steps", sinkhorn_steps)
    k0 = run.k
    best, status = run.newton(prob, [start], 1e-12)
    assert status is Status.STALLED and best.f is start.f and best.g is start.g and best.error == start.error
    assert calls == [(7, 0.0)] * 4 and run.phases == {"sinkhorn": 28, "newton": 4}
    assert run.k == min(40, k0 * 2**4) and k0 * 2**3 < 40
    assert monitor.history["step"] == [None, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("family", ["cloud", "assignment"])
def test_auto_converges_whichever_way_the_hedge_goes(family):
    p = make_problem(family, 300, seed=3)
    res = fs.solve(p.M, p.a, p.b, reg=4e-3 if family == "cloud" else 1e-3)
    assert res.method == "sns" and res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9


def test_stalled_newton_hands_over_to_sinkhorn():
    """A Newton phase that cannot progress (no backtracking allowed, so every
    step 'fails') ends in Sinkhorn iterations, which still converge."""
    p = make_problem("cloud", 120, seed=4)
    res = fs.solve(p.M, p.a, p.b, reg=5e-3, method="sns", max_backtracks=0, fallback_iter=1,
                   max_iter=20_000)
    assert res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9
    phases = [ph for ph in res.history["phase"]]
    last_newton = max(i for i, ph in enumerate(phases) if ph == "newton")
    assert phases[-1] == "sinkhorn" and last_newton < len(phases) - 1
    # iterations are numbered across the phases, and every one is counted
    its = res.history["iteration"]
    assert its[0] == 1 and all(x <= y for x, y in zip(its, its[1:])) and its[-1] == res.n_iter
    assert res.n_iter == sum(res.n_iter_phases.values()) and res.n_iter_phases["newton"] > 0
    # a budget that runs out in the Sinkhorn hand-over is used exactly
    budget = res.n_iter - 5
    with pytest.warns(fs.ConvergenceWarning):
        short = fs.solve(p.M, p.a, p.b, reg=5e-3, method="sns", max_backtracks=0, fallback_iter=1,
                         max_iter=budget)
    assert short.n_iter == budget and short.history["phase"][-1] == "sinkhorn"


@pytest.mark.parametrize("shape", [(60, 150), (150, 60)])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_direct_solver_on_rectangular_problems_with_zero_masses(rng, shape, backend):
    """Both elimination orders (rows when n >= m, columns otherwise), empty
    rows and columns, small reg: the direct solve keeps zero masses at zero."""
    M, a, b = random_problem(rng, *shape, zeros=4)
    res = fs.solve(M, a, b, reg=1e-4, method="sns", linear_solver="direct", backend=backend, tol=1e-10)
    assert res.converged and plan_error(res.plan, a, b) <= 1e-10
    assert (res.plan[a == 0] == 0).all() and (res.plan[:, b == 0] == 0).all()
    assert "direct" in res.history["solver"]


def test_max_iter_can_run_out_during_annealing():
    p = make_problem("image-w1", 100, seed=0)
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve(p.M, p.a, p.b, reg=1e-5, method="sns", max_iter=30)
    assert res.n_iter <= 30 and not res.converged and np.isfinite(res.plan).all()
    f, g = res.potentials  # the plan is that of the returned potentials at the target reg
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - p.M) / 1e-5), res.plan, rtol=1e-6, atol=1e-150)


def test_a_wrong_hedge_leaves_newton_half_the_budget(monkeypatch):
    """The hedge bets on Sinkhorn by extrapolation; when the bet is wrong (here
    forced: Sinkhorn 'predicted' to finish in 10^6 iterations), it spends at
    most half of what is left, and Newton still converges within max_iter."""
    import fastsinkhorn.algorithms.sns.driver as sns

    monkeypatch.setattr(sns._SNSRun, "_sinkhorn_iterations_if_cheaper", lambda self, *args: 10**6)
    p = make_problem("assignment", 120, seed=3)
    res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", sinkhorn_hedge=True, max_iter=1000)
    assert res.converged and res.n_iter <= 1000
    assert res.n_iter_phases["newton"] > 0 and res.n_iter_phases["sinkhorn"] <= 1000 // 2 + 500


def test_the_hedge_times_a_warm_dense_pass(monkeypatch):
    """The first dense pass of a process loads its kernels: the hedge times a
    repeat of it, not the load."""
    import fastsinkhorn.algorithms.sns.driver as sns

    seen = []
    original = sns._SNSRun._sinkhorn_iterations_if_cheaper
    monkeypatch.setattr(sns._SNSRun, "_sinkhorn_iterations_if_cheaper",
                        lambda self, first_check, pass_time, tol: seen.append(pass_time)
                        or original(self, first_check, pass_time, tol))
    calls = []
    point = sns._Point
    monkeypatch.setattr(sns, "_Point", lambda *args: calls.append(1) or point(*args))
    monkeypatch.setattr(sns, "_DENSE_PASS_LOADED", False)
    p = make_problem("cloud", 200, seed=0)
    fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", sinkhorn_hedge=True)
    assert seen and sns._DENSE_PASS_LOADED and len(calls) >= 2
