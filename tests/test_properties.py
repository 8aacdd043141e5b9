"""Generated problems: every answer is right, or its non-convergence is reported.

Hypothesis draws problems that a suite of nice ones leaves out: sizes from
1 x 1 to thousands, rectangular, zero masses, costs from 1e-12 to 1e300 (one
scale, or log-uniform across that whole span in one matrix), forbidden
entries (``inf`` or a huge finite cost), near-ties, float32, and ``reg`` from
1e-6 to 1e3 of the cost scale. Each entry point's answer is checked against
references that share no code with the library: exact OT values bracketed
by a feasible plan and feasible duals (from POT's ``ot.emd`` or HiGHS,
certified here, since POT loses precision with costs near 1e300), the
bound ``W <= <M, P*> <= W + reg min(H(a), H(b))`` of the entropic plan,
the plan's own marginals and Gibbs form, and a plain long-run
log-domain Sinkhorn where that converges. A result that says
``converged=False`` must have warned.

The ``ci`` profile (default) is derandomised and small, so CI is stable;
``HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties.py``
draws many more, at random.
"""

import math
import os
import warnings

import numpy as np
import ot
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ot_testing import log_sinkhorn_reference, northwest_corner_plan, plan_error

import fastsinkhorn as fs

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

COST_KINDS = ("uniform", "sqeuclidean", "euclidean", "ties", "loguniform")


class Problem:
    """A drawn balanced problem: cost (float64 reference copy and the caller's
    dtype), masses, ``reg`` and what the checks need."""

    def __init__(self, M, a, b, reg, dtype, kind):
        self.M64, self.a, self.b, self.reg, self.dtype, self.kind = M, a, b, reg, dtype, kind
        self.M = M.astype(dtype)
        self.finite = np.isfinite(self.M)

    def __repr__(self):
        n, m = self.M.shape
        fin = self.M64[np.isfinite(self.M64)]
        return (f"Problem({n}x{m} {self.kind} {np.dtype(self.dtype).name}, reg={self.reg:.3g}, "
                f"costs {fin.min():.3g}..{fin.max():.3g}, forbidden={int((~self.finite).sum())}, "
                f"zero masses={int((self.a == 0).sum())}+{int((self.b == 0).sum())})")


def _masses(rng, size, zeros):
    w = rng.random(size) + 0.05
    if zeros and size > 1:
        w[rng.choice(size, size=rng.integers(1, size), replace=False)] = 0.0
    return w / w.sum()


def _base_cost(rng, kind, n, m):
    if kind == "uniform":
        return rng.random((n, m))
    if kind == "ties":  # few distinct values: many optimal plans, near-degenerate duals
        return rng.integers(0, 3, (n, m)).astype(np.float64)
    if kind == "loguniform":  # entries spread over 1e-12 .. 1e300 within one matrix
        return 10.0 ** rng.uniform(-12, 300, (n, m))
    d = int(rng.integers(1, 4))
    x, y = rng.random((n, d)), rng.random((m, d))
    sq = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return sq if kind == "sqeuclidean" else np.sqrt(sq)


@st.composite
def problems(draw, max_n=30, float32=True, forbidden=True, sizes=None):
    """A feasible balanced problem (forbidden entries avoid a northwest-corner plan)."""
    if sizes is None:
        n, m = draw(st.integers(1, max_n)), draw(st.integers(1, max_n))
    else:
        n = m = draw(st.sampled_from(sizes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(COST_KINDS))
    M = _base_cost(rng, kind, n, m)
    if kind != "loguniform":
        M = M * 10.0 ** draw(st.integers(-12, 300))
    a, b = _masses(rng, n, draw(st.booleans())), _masses(rng, m, draw(st.booleans()))
    if forbidden and draw(st.booleans()):
        value = draw(st.sampled_from([np.inf, 1e300, 1e30]))
        mask = (rng.random((n, m)) < draw(st.sampled_from([0.05, 0.3, 0.7]))) & ~(northwest_corner_plan(a, b) > 0)
        M = np.where(mask, np.maximum(M, value), M)
    finite = M[np.isfinite(M)]
    dtype = np.float32 if float32 and finite.max() < 1e30 and draw(st.booleans()) else np.float64
    spread = float(finite.max() - finite.min()) or float(abs(finite.max())) or 1.0
    reg = spread * 10.0 ** draw(st.floats(-6, 3))
    return Problem(M, a, b, reg, dtype, kind)


def _exact_bounds(p):
    """``(lo, hi)`` bracketing the exact OT value ``W``, certified here.

    A candidate plan and duals come from POT's ``ot.emd`` (or, when POT
    calls a problem with ``inf`` entries infeasible, from HiGHS on the LP).
    Neither is trusted: with costs up to 1e300 their precision fails. ``hi``
    is the cost of the candidate plan, checked feasible (it bounds ``W``
    above); ``lo`` is the dual value of the candidate duals made feasible
    (``g_j = min_i M_ij - f_i``: it bounds ``W`` below). When the candidate
    is optimal, ``lo = hi = W``.
    """
    M = p.M.astype(np.float64)
    b = p.b * (p.a.sum() / p.b.sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.emd(p.a, b, M, numItermax=10_000_000, log=True)
        f = log["u"]
    if caught or plan_error(plan, p.a, b) > 1e-9:
        if M.size <= 4096:
            plan, f = _highs(M, p.a, b)
        else:  # too large for a dense LP: weak bounds (the checks' Gibbs test is the strong one)
            plan, f = northwest_corner_plan(p.a, b), np.min(M, axis=1)
    assert plan_error(plan, p.a, b) <= 1e-8 and np.all(plan[~np.isfinite(M)] == 0), p
    hi = _linear(M, plan)
    with np.errstate(invalid="ignore"):
        f = np.where(p.a > 0, f, 0.0)
        g = np.min(np.where(p.a[:, None] > 0, M - f[:, None], np.inf), axis=0)
    lo = float(p.a @ f + np.where(b > 0, b * np.where(np.isfinite(g), g, 0.0), 0.0).sum())
    return lo, hi


def _highs(M, a, b):
    """HiGHS on the transport LP, ``inf`` entries bounded at 0: ``(plan, f)``."""
    from scipy.optimize import linprog

    n, m = M.shape
    allowed = np.isfinite(M).ravel()
    scale = float(np.abs(M.ravel()[allowed]).max()) or 1.0  # HiGHS wants costs of order 1
    lp = linprog(np.where(allowed, M.ravel() / scale, 0.0),
                 A_eq=np.vstack([np.kron(np.eye(n), np.ones(m)), np.kron(np.ones(n), np.eye(m))]),
                 b_eq=np.concatenate([a, b]), bounds=[(0, None) if ok else (0, 0) for ok in allowed],
                 method="highs")
    assert lp.status == 0, lp.message
    return lp.x.reshape(n, m), scale * lp.eqlin.marginals[:n]


def _linear(M, P):
    """``<M, P>`` in float64, massless forbidden entries counting 0."""
    M = np.asarray(M, np.float64)
    return float(np.where(P > 0, M, 0.0).ravel() @ P.ravel())


def _entropy(w):
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def _solve(call):
    """``(result, warned)``: run ``call``, recording ConvergenceWarnings (and
    letting any other warning through as a failure)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    unexpected = [w for w in caught if not issubclass(w.category, fs.ConvergenceWarning)]
    assert not unexpected, [str(w.message) for w in unexpected]
    return result, bool(caught)


def check_entropic(p, plan, value_linear, converged, warned, tol, potentials=None):
    """Right (marginals within tol, value within the entropic bound of the
    exact value, no mass on forbidden entries, Gibbs form), or reported."""
    P = np.asarray(plan, dtype=np.float64)
    assert P.shape == p.M.shape and np.all(np.isfinite(P)) and np.all(P >= 0), p
    if not converged:
        assert warned, f"not converged, and no ConvergenceWarning: {p}"
        return
    error = plan_error(P, p.a, p.b)
    assert error <= tol * 1.01 + 1e-12, (error, tol, p)
    assert np.all(P[~p.finite] == 0.0), p
    lo, hi = _exact_bounds(p)
    top = float(np.abs(p.M64[p.finite & (P > 0)]).max(initial=0.0))
    slack = 2 * error * top + 1e-7 * max(abs(lo), abs(hi)) + 1e-300
    upper = hi + p.reg * min(_entropy(p.a), _entropy(p.b))
    assert lo - slack <= value_linear <= upper + slack + 1e-7 * abs(upper), (value_linear, lo, hi, upper, p)
    if potentials is not None and p.dtype == np.float64:
        f, g = potentials
        with np.errstate(invalid="ignore", over="ignore"):
            gibbs = np.exp(np.nan_to_num((f[:, None] + g[None, :] - p.M64) / p.reg, nan=-np.inf))
        np.testing.assert_allclose(P, gibbs, rtol=1e-6, atol=1e-12 * max(P.max(), 1e-300), err_msg=repr(p))


@pytest.mark.parametrize("method", ["auto", "sinkhorn", "sns"])
@given(p=problems())
def test_solve_is_right_or_reports(method, p):
    res, warned = _solve(lambda: fs.solve(p.M, p.a, p.b, reg=p.reg, method=method))
    assert bool(res.converged) == (res.marginal_error <= res.tol)
    check_entropic(p, res.plan, res.value_linear, res.converged, warned, res.tol, res.potentials)
    assert res.value_linear == pytest.approx(_linear(p.M, np.asarray(res.plan, np.float64)), rel=1e-6, abs=1e-300)


@given(p=problems(float32=False))
def test_solve_agrees_with_a_long_run_log_domain_reference(p):
    """Where a plain log-domain Sinkhorn converges in 20,000 iterations, the
    plans agree to what both tolerances allow."""
    P_ref, f_ref, g_ref, ref_error = log_sinkhorn_reference(p.M64, p.a, p.b, p.reg, max_iter=20_000)
    if not ref_error <= 1e-11:
        pytest.skip("the reference did not converge on this draw")
    res, warned = _solve(lambda: fs.solve(p.M, p.a, p.b, reg=p.reg))
    assert res.converged, p
    # both plans are Gibbs plans of marginals within their errors of (a, b)
    v, v_ref = _linear(p.M64, res.plan), _linear(p.M64, P_ref)
    osc = sum(float(np.ptp(x[np.isfinite(x)])) for x in (f_ref, g_ref) if np.isfinite(x).any())
    assert abs(v - v_ref) <= (osc + 1.0) * (res.marginal_error + ref_error) * 10 + 1e-9 * abs(v_ref) + 1e-300, p


@given(p=problems())
def test_sinkhorn2_is_right_or_would_not_converge_with_auto_either(p):
    """POT's defaults (numItermax=1000, warn=False): the loss is right, or
    not even our best method converges within that budget."""
    (loss, log), _ = _solve(lambda: fs.sinkhorn2(p.a, p.b, p.M, p.reg, log=True))
    assert np.isfinite(float(loss)), p
    if log["converged"]:
        # POT's criterion: the L2 norm of the column error <= tol (1e-9, or
        # float32's floor), so the L1 error of the columns <= sqrt(m) tol and
        # the rows (Sinkhorn's last update) are exact to the same rounding
        tol = log["result"].tol * (np.sqrt(len(p.b)) + 1)
        check_entropic(p, log["result"].plan, float(loss), True, False, max(1e-7, tol))
    else:
        best, _ = _solve(lambda: fs.solve(p.M, p.a, p.b, reg=p.reg, max_iter=1000))
        assert not best.converged, f"auto converges within numItermax, sinkhorn2 did not: {p}"


@given(p=problems(max_n=12), count=st.integers(1, 4))
def test_batches_are_right_or_report_problem_by_problem(p, count):
    rng = np.random.default_rng(len(p.a) * 7919 + count)
    Ms = np.stack([p.M] + [np.where(p.finite, p.M * (1 + 0.5 * rng.random(p.M.shape)), p.M).astype(p.dtype)
                           for _ in range(count - 1)])
    res, warned = _solve(lambda: fs.solve(Ms, p.a, p.b, reg=p.reg))
    for q in range(count):
        pq = Problem(Ms[q].astype(np.float64), p.a, p.b, p.reg, p.dtype, p.kind)
        check_entropic(pq, res.plan[q], res.value_linear[q], res.converged[q], warned, res.tol)


@given(p=problems(forbidden=False, float32=False))
def test_unbalanced_is_stationary_or_reports(p):
    """KL-relaxed marginals (reg_type="entropy" frame): at the optimum the plan's
    marginals are ``a exp(-f / rho)`` and ``b exp(-g / rho)``."""
    rho = p.reg * 10.0 ** ((len(p.a) % 5) - 2)
    res, warned = _solve(lambda: fs.solve(p.M, p.a, p.b, reg=p.reg, unbalanced=rho, reg_type="entropy"))
    P = np.asarray(res.plan, np.float64)
    assert np.all(np.isfinite(P)), p
    if not res.converged:
        assert warned, p
        return
    f, g = (np.asarray(x, np.float64) for x in res.potentials)
    with np.errstate(invalid="ignore", over="ignore"):
        want_r = np.where(p.a > 0, p.a * np.exp(-np.where(p.a > 0, f, 0.0) / rho), 0.0)
        want_c = np.where(p.b > 0, p.b * np.exp(-np.where(p.b > 0, g, 0.0) / rho), 0.0)
    gap = np.abs(P.sum(1) - want_r).sum() + np.abs(P.sum(0) - want_c).sum()
    assert gap <= res.tol * 1.01 + 1e-12, (gap, p)


@given(p=problems(float32=False))
def test_exact_ot_matches_pot(p):
    """``emd2`` (POT's defaults) and ``solve(reg=None)``: the exact value, within
    the certified bounds of POT's (or HiGHS's) answer, from a feasible plan."""
    lo, hi = _exact_bounds(p)
    slack = 1e-9 * max(abs(lo), abs(hi), float(np.abs(p.M64[p.finite]).max()) * 1e-3) + 1e-300
    (value, log), warned = _solve(lambda: fs.emd2(p.a, p.b, p.M, log=True, return_matrix=True))
    assert lo - slack <= float(value) <= hi + slack, (float(value), lo, hi, p)
    plan = np.asarray(log["G"], np.float64)
    assert plan_error(plan, p.a, p.b) <= 1e-9 and np.all(plan[~p.finite] == 0), p
    assert _linear(p.M64, plan) == pytest.approx(float(value), rel=1e-12, abs=1e-300)
    res, _ = _solve(lambda: fs.solve(p.M, p.a, p.b))
    assert lo - slack <= res.value <= hi + slack, (res.value, lo, hi, p)


@pytest.mark.parametrize("method", ["auto"])
@settings(max_examples=4)
@given(p=problems(sizes=(300, 1000, 3000), forbidden=True))
def test_large_problems_are_right_or_report(method, p):
    res, warned = _solve(lambda: fs.solve(p.M, p.a, p.b, reg=p.reg, method=method))
    check_entropic(p, res.plan, res.value_linear, res.converged, warned, res.tol, res.potentials)


def test_reference_oracle_is_right_on_a_known_plan():
    """The oracle itself: zero costs on the diagonal, huge elsewhere, tiny reg:
    the identity plan."""
    M = np.full((4, 4), 1.0)
    np.fill_diagonal(M, 0.0)
    P, f, g, error = log_sinkhorn_reference(M, np.full(4, 0.25), np.full(4, 0.25), 1e-3)
    assert error <= 1e-12 and math.isclose(np.trace(P), 1.0, rel_tol=1e-12)
