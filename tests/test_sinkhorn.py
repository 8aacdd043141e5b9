"""Properties of the Sinkhorn solver (method="sinkhorn"), on both CPU backends."""

import warnings

import numpy as np
import ot
import pytest
from ot_testing import plan_error, random_problem

import fastsinkhorn as fs
from fastsinkhorn.core.options import SNSOptions
from fastsinkhorn.problems import FAMILIES, make_problem

BACKENDS = ["cpu", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (40, 40), (257, 130), (130, 257)])
@pytest.mark.parametrize("reg", [1.0, 1e-1, 1e-2])
def test_marginals_and_potentials(rng, backend, shape, reg):
    M, a, b = random_problem(rng, *shape)
    res = fs.solve(M, a, b, reg=reg, method="sinkhorn", backend=backend, tol=1e-10, max_iter=50_000)
    assert res.converged and res.status is fs.Status.CONVERGED
    assert res.marginal_error <= 1e-10
    assert plan_error(res.plan, a, b) <= 1e-10
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - M) / reg), res.plan, rtol=1e-8, atol=1e-150)
    assert res.value_linear == pytest.approx((M * res.plan).sum(), rel=1e-12)
    # POT's value: reg_type="KL" (the default) and "entropy"
    ab = np.outer(a, b)
    P, Q = res.plan[res.plan > 0], ab[res.plan > 0]
    assert res.value == pytest.approx((M * res.plan).sum() + reg * (P * np.log(P / Q)).sum(), rel=1e-9, abs=1e-12)
    entropy = fs.solve(M, a, b, reg=reg, reg_type="entropy", method="sinkhorn", backend=backend, tol=1e-10,
                       max_iter=50_000)
    np.testing.assert_array_equal(entropy.plan, res.plan)
    assert entropy.value == pytest.approx((M * res.plan).sum() + reg * (P * np.log(P)).sum(), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(res.marginal_a, res.plan.sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(res.marginal_b, res.plan.sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("reg", [1e-1, 1e-2])
def test_duality_gap_closes(rng, reg):
    """Primal objective equals the dual L(f, g) = <a,f> + <b,g> - reg sum P at convergence."""
    M, a, b = random_problem(rng, 120, 90)
    res = fs.solve(M, a, b, reg=reg, method="sinkhorn", tol=1e-12)
    f, g = res.potentials
    dual = a @ f + b @ g - reg * res.plan.sum()
    P = res.plan[res.plan > 0]
    primal = (M * res.plan).sum() + reg * (P * (np.log(P) - 1)).sum()
    assert dual == pytest.approx(primal, abs=1e-10)
    # and POT's value (KL to a b^T) is the same objective up to constants of a and b
    constant = reg * (a @ np.log(a) + b @ np.log(b) - 1.0)
    assert res.value == pytest.approx(primal - constant, abs=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
def test_agrees_with_pot_log_sinkhorn(family):
    p = make_problem(family, 144, seed=3)
    reg = 5e-2
    ours = fs.solve(p.M, p.a, p.b, reg=reg, method="sinkhorn", tol=1e-13)
    theirs = ot.sinkhorn(p.a, p.b, p.M, reg, method="sinkhorn_log", stopThr=1e-15, numItermax=100_000)
    np.testing.assert_allclose(ours.plan, theirs, rtol=1e-8, atol=1e-15)
    assert ours.value_linear == pytest.approx((p.M * theirs).sum(), rel=1e-8)


def test_backends_agree(rng):
    M, a, b = random_problem(rng, 200, 150, zeros=3)
    r1 = fs.solve(M, a, b, reg=1e-3, method="sinkhorn", backend="cpu", tol=1e-11)
    r2 = fs.solve(M, a, b, reg=1e-3, method="sinkhorn", backend="reference", tol=1e-11)
    np.testing.assert_allclose(r1.plan, r2.plan, rtol=1e-8, atol=1e-14)


def test_symmetry(rng):
    M, a, b = random_problem(rng, 70, 50)
    ab = fs.solve(M, a, b, reg=1e-2, tol=1e-12, method="sinkhorn")
    ba = fs.solve(M.T, b, a, reg=1e-2, tol=1e-12, method="sinkhorn")
    np.testing.assert_allclose(ab.plan, ba.plan.T, rtol=1e-8, atol=1e-15)
    assert ab.value == pytest.approx(ba.value, rel=1e-10)


def test_plan_invariant_to_row_and_column_constants(rng):
    M, a, b = random_problem(rng, 60, 80)
    base = fs.solve(M, a, b, reg=1e-2, tol=1e-12, method="sinkhorn").plan
    shifted = M + rng.random(60)[:, None] * 3 + rng.random(80)[None, :] * 2
    np.testing.assert_allclose(fs.solve(shifted, a, b, reg=1e-2, tol=1e-12, method="sinkhorn").plan,
                               base, rtol=1e-7, atol=1e-15)


def test_approaches_exact_lp_as_reg_shrinks(rng):
    """Each entropic plan is POT's converged log-domain plan (the reference
    for its reg, to the L1 tolerance), so its cost <M, P_reg> is POT's; the
    costs sit above the LP's optimum (ot.emd2) and fall towards it as reg shrinks."""
    p = make_problem("cloud", 60, seed=1)
    exact = ot.emd2(p.a, p.b, p.M)
    regs = (1e-1, 1e-2, 3e-3)
    gaps = []
    for reg in regs:
        res = fs.solve(p.M, p.a, p.b, reg=reg, method="sinkhorn", tol=1e-9, max_iter=100_000)
        P_ref = ot.sinkhorn(p.a, p.b, p.M, reg, method="sinkhorn_log", stopThr=1e-13, numItermax=10 ** 6)
        assert np.abs(res.plan - P_ref).sum() <= 1e-7
        # |<M, P - P_ref>| <= max|M| ||P - P_ref||_1, max M = 1
        assert res.value_linear == pytest.approx(float((p.M * P_ref).sum()), abs=1e-8)
        gaps.append(res.value_linear - exact)
    assert all(g >= -1e-8 for g in gaps)  # entropic plans are feasible: never below the LP
    assert all(later <= earlier + 1e-12 for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] < 0.1 * gaps[0]  # and approach it (the gap is about proportional to reg here)


def test_known_permutation_is_recovered():
    """A cost whose unique optimum is a permutation: small reg gives that permutation."""
    rng = np.random.default_rng(7)
    n = 50
    perm = rng.permutation(n)
    M = 0.5 + 0.5 * rng.random((n, n))
    M[np.arange(n), perm] = 0.0
    P = fs.solve(M, reg=1e-3, method="sinkhorn").plan
    assert (P.argmax(axis=1) == perm).all()
    assert P[np.arange(n), perm].sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_masses_give_zero_rows_and_columns(rng, backend):
    M, a, b = random_problem(rng, 30, 20, zeros=4)
    res = fs.solve(M, a, b, reg=1e-2, method="sinkhorn", backend=backend)
    assert res.converged and plan_error(res.plan, a, b) <= 1e-9
    assert (res.plan[a == 0] == 0).all() and (res.plan[:, b == 0] == 0).all()
    assert np.isneginf(res.potentials[0][a == 0]).all() and np.isneginf(res.potentials[1][b == 0]).all()
    # the rest is the solution of the problem without the empty rows and columns
    rows, cols = np.ix_(a > 0, b > 0)
    reduced = fs.solve(M[rows, cols], a[a > 0], b[b > 0], reg=1e-2, method="sinkhorn", backend="reference",
                       tol=1e-12)
    np.testing.assert_allclose(res.plan[rows, cols], reduced.plan, rtol=1e-6, atol=1e-9)
    assert res.value == pytest.approx(reduced.value, rel=1e-7)
    assert res.value_linear == pytest.approx(reduced.value_linear, rel=1e-7)


@pytest.mark.parametrize("reg", [1e-2, 1e-3])
def test_float32_reaches_its_tolerance(rng, reg):
    M, a, b = random_problem(rng, 300, 200, dtype=np.float32)
    res = fs.solve(M, a, b, reg=reg, method="sinkhorn")
    assert res.plan.dtype == np.float32 and res.potentials[0].dtype == np.float32
    assert res.converged and res.tol == 1e-5
    assert plan_error(res.plan, a, b) <= 1e-5
    ref = fs.solve(M.astype(np.float64), a, b, reg=reg, method="sinkhorn", tol=1e-10).plan
    assert np.abs(res.plan - ref).sum() < 1e-4


def test_fortran_ordered_cost(rng):
    M, a, b = random_problem(rng, 90, 60)
    c_order = fs.solve(M, a, b, reg=1e-2, method="sinkhorn", tol=1e-12)
    f_order = fs.solve(np.asfortranarray(M), a, b, reg=1e-2, method="sinkhorn", tol=1e-12)
    np.testing.assert_allclose(f_order.plan, c_order.plan, rtol=1e-8, atol=1e-15)
    assert f_order.potentials[0].shape == (90,)
    assert f_order.potentials[1].shape == (60,)


def test_non_contiguous_and_integer_costs(rng):
    M = rng.integers(0, 5, size=(40, 60))
    res = fs.solve(M[:, ::2], reg=0.5, method="sinkhorn", tol=1e-12)
    assert res.converged and res.plan.shape == (40, 30) and res.plan.dtype == np.float64
    dense = np.ascontiguousarray(M[:, ::2], dtype=np.float64)
    want = fs.solve(dense, reg=0.5, method="sinkhorn", backend="reference", tol=1e-12).plan
    np.testing.assert_allclose(res.plan, want, rtol=1e-9, atol=1e-15)
    assert plan_error(res.plan, np.full(40, 1 / 40), np.full(30, 1 / 30)) <= 1e-12


def test_tiny_reg_where_scaling_underflows(rng):
    """POT's scaling domain returns NaN/zero plans here; ours must converge."""
    p = make_problem("cloud", 200, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pot = ot.sinkhorn(p.a, p.b, p.M, 1e-3, method="sinkhorn")
    assert not plan_error(np.nan_to_num(pot), p.a, p.b) < 1e-6  # POT fails here
    res = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sinkhorn")
    assert res.converged and plan_error(res.plan, p.a, p.b) <= 1e-9


def test_max_iter_warns_and_returns_last_iterate(rng):
    M, a, b = random_problem(rng, 80, 80)
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve(M, a, b, reg=1e-3, method="sinkhorn", max_iter=3)
    assert not res.converged and res.status is fs.Status.MAX_ITER
    assert res.n_iter == 3 and np.isfinite(res.plan).all()
    assert res.marginal_error == pytest.approx(plan_error(res.plan, a, b), rel=1e-9)


def test_warm_start_from_converged_potentials(rng):
    M, a, b = random_problem(rng, 100, 70)
    first = fs.solve(M, a, b, reg=1e-3, method="sinkhorn", tol=1e-9)
    again = fs.solve(M, a, b, reg=1e-3, method="sinkhorn", tol=1e-9, warm_start=first.potentials)
    assert again.converged and again.n_iter <= 2 < first.n_iter


def test_callback_sees_errors_and_can_stop(rng):
    M, a, b = random_problem(rng, 60, 60)
    seen = []

    def callback(state):
        seen.append(state.error)
        if len(seen) == 5:
            raise StopIteration

    res = fs.solve(M, a, b, reg=1e-3, method="sinkhorn", callback=callback)
    assert len(seen) == 5 and res.n_iter == 5 and res.status is fs.Status.CALLBACK
    assert res.history["error"] == seen and not res.converged


@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
def test_callback_sees_every_check_but_the_converging_one(rng, method):
    """As ``solve``'s docstring says: every check whose error is above tol,
    with the Newton details in ``state.extra``; not the check that meets tol."""
    M, a, b = random_problem(rng, 40, 30)
    states = []
    res = fs.solve(M, a, b, reg=1e-2, method=method, tol=1e-9, callback=states.append)
    h = res.history
    assert res.converged and h["error"][-1] <= 1e-9
    skipped, j = [], 0  # the states are the history's checks, in order, less some
    for k, check in enumerate(zip(h["iteration"], h["error"], h["phase"])):
        if j < len(states) and (states[j].iteration, states[j].error, states[j].phase) == check:
            j += 1
        else:
            skipped.append(k)
    assert j == len(states)
    # skipped: the converging check, and for SNS the one ending the warm-up at switch_tol
    switch = [k for k in skipped[:-1] if h["phase"][k] == "sinkhorn" and h["phase"][k + 1] == "newton"
              and h["error"][k] <= SNSOptions().switch_tol]
    assert skipped == switch + [len(h["iteration"]) - 1] and len(switch) == (method == "sns")
    for s in states:
        assert s.phase in ("sinkhorn", "newton") and s.elapsed >= 0
        assert set(s.extra) == ({"cg_iterations", "nnz", "step", "solver", "reg"} if s.phase == "newton" else set())
    assert any(s.phase == "newton" for s in states) == (method == "sns")


def test_history_and_verbose(rng, capsys):
    M, a, b = random_problem(rng, 30, 30)
    res = fs.solve(M, a, b, reg=1e-2, method="sinkhorn", verbose=True)
    out = capsys.readouterr().out
    assert "error" in out and len(out.splitlines()) == len(res.history["error"]) + 1
    h = res.history
    assert len(h["iteration"]) == len(h["error"]) == len(h["time"]) == len(h["phase"])
    assert h["time"] == sorted(h["time"]) and h["error"][-1] <= 1e-9


def test_tol_below_dtype_floor_is_raised_with_warning(rng):
    M, a, b = random_problem(rng, 20, 20, dtype=np.float32)
    with pytest.warns(UserWarning, match="below what float32"):
        res = fs.solve(M, a, b, reg=0.1, method="sinkhorn", tol=1e-12)
    assert res.tol == pytest.approx(10 * np.finfo(np.float32).eps, rel=1e-12) and res.converged
    assert plan_error(res.plan, a, b) <= res.tol
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tolerance above the floor is kept as given, silently
        assert fs.solve(M, a, b, reg=0.1, method="sinkhorn", tol=1e-5).tol == 1e-5


def test_inputs_are_not_modified(rng):
    M, a, b = random_problem(rng, 40, 30, zeros=2)
    copies = [x.copy() for x in (M, a, b)]
    f0, g0 = rng.random(40), rng.random(30)
    warm = (f0.copy(), g0.copy())
    for method in ("sinkhorn", "sns"):
        fs.solve(M, a, b, reg=1e-2, method=method, warm_start=warm)
        fs.sinkhorn(a, b, M, 1e-2, method=method)
    for x, y in zip((M, a, b, *warm), (*copies, f0, g0)):
        assert np.array_equal(x, y)


def test_result_repr_leads_with_message(rng):
    M, a, b = random_problem(rng, 10, 10)
    assert repr(fs.solve(M, a, b, reg=0.1, method="sinkhorn")).startswith("OTResult(converged")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("check_every", [1, 3])
def test_columns_that_lost_their_mass_are_recovered(rng, backend, check_every):
    """A warm start that leaves columns without mass (their kernel underflows
    to zero) makes a scaling infinite: the driver falls back to an exact
    log-domain iteration from the last finite state (at a check, or when the
    error turns non-finite between checks) and still finds the solution."""
    M, a, b = random_problem(rng, 30, 20)
    g = np.zeros(20)
    g[[3, 7]] = -1e4  # exp(-1e6): columns 3 and 7 start empty
    res = fs.solve(M, a, b, reg=1e-2, method="sinkhorn", tol=1e-12, backend=backend,
                   warm_start=(np.zeros(30), g), check_every=check_every)
    cold = fs.solve(M, a, b, reg=1e-2, method="sinkhorn", tol=1e-12, backend="reference")
    assert res.converged and plan_error(res.plan, a, b) <= 1e-12
    np.testing.assert_allclose(res.plan, cold.plan, rtol=1e-8, atol=1e-14)
    assert np.isfinite(res.potentials[1]).all()
    assert res.history["error"][0] > 0.1  # the start really was that far off


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_iteration_is_one_exact_sinkhorn_iteration(rng, backend):
    """The fallback step: rows then columns in the log domain, so the plan's
    column sums are exactly b afterwards, from any start (here, empty columns)."""
    from fastsinkhorn.algorithms.sinkhorn import log_iteration
    from fastsinkhorn.core.validation import prepare_problem

    M, a, b = random_problem(rng, 30, 20)
    prob = prepare_problem(M, a, b, 1e-2, backend)
    g0 = rng.normal(size=20)
    g0[[3, 7]] = -1e4
    f, g = log_iteration(prob, np.zeros(30), g0)
    f_want = 1e-2 * (np.log(a) - np.log(np.exp((g0[None, :] - M) / 1e-2).sum(1)))
    np.testing.assert_allclose(f, f_want, rtol=1e-12, atol=1e-14)
    P = np.exp((f[:, None] + g[None, :] - M) / 1e-2)
    np.testing.assert_allclose(P.sum(0), b, rtol=1e-12)


def test_log_iterate_has_no_restart_and_its_plan_is_the_geometrys():
    """The log-domain iterate (a geometry that stores no kernel) cannot lose
    mass the way absorbed scalings do: a non-finite error is an error; its
    plan is the geometry's at its potentials, lazy unless a buffer is given."""
    from fastsinkhorn.algorithms.sinkhorn import _LogIterate
    from fastsinkhorn.core.validation import prepare_problem

    rng = np.random.default_rng(3)
    x, y = rng.random((2, 2)), rng.random((3, 2))
    prob = prepare_problem(fs.PointCloud(x, y), np.ones(2) / 2, np.ones(3) / 3, 0.5, "cpu")
    f, g = np.array([0.1, -0.2]), np.array([0.0, 0.3, -0.1])
    it = _LogIterate(prob, f, g)
    with pytest.raises(FloatingPointError, match="^log-domain Sinkhorn produced a non-finite marginal error$"):
        it.restart()
    plan = it.plan_into()
    assert isinstance(plan, fs.LazyPlan) and plan.potentials == (f, g) and plan.reg == 0.5
    want = np.exp((f[:, None] + g[None, :] - ((x[:, None] - y[None]) ** 2).sum(-1)) / 0.5)
    np.testing.assert_allclose(plan.to_dense(), want, rtol=1e-13)
    out = np.empty((2, 3))
    assert it.plan_into(out) is out
    np.testing.assert_allclose(out, want, rtol=1e-13)


def test_sinkhorn_reports_its_one_phase():
    p = make_problem("cloud", 30, seed=2)
    res = fs.solve(p.M, p.a, p.b, reg=0.1, method="sinkhorn")
    assert res.n_iter_phases == {"sinkhorn": res.n_iter} and res.n_iter > 1


def test_marginal_error_of_a_batch_is_per_problem():
    from fastsinkhorn.core.marginals import marginal_error

    r, a = np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([[0.4, 0.6], [0.2, 0.8]])
    c, b = np.array([[1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]), np.array([[0.5, 0.5, 0.0], [0.3, 0.3, 0.4]])
    np.testing.assert_allclose(marginal_error(np, r, c, a, b), [0.2 + 1.0, 0.0], atol=1e-15)
    assert marginal_error(np, r[0], c[0], a[0], b[0]) == pytest.approx(1.2, abs=1e-15)
    assert type(marginal_error(np, r[0], c[0], a[0], b[0])) is float
