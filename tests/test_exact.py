"""Exact OT (``solve_exact``) and its POT drop-ins ``emd``/``emd2``, against ``ot.emd``."""

import inspect
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import ot
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

import fastsinkhorn
from fastsinkhorn import ConvergenceWarning, Status, emd, emd2, solve_exact
from fastsinkhorn.algorithms.exact.solver import optimality_certificate, pivot_safety_net
from fastsinkhorn.problems import FAMILIES, make_problem


def lp_value(M, a, b):
    """The exact optimum by HiGHS on the LP over the finite entries of ``M``
    (POT's ``emd`` is no reference with ``+inf`` or huge entries: it returns
    0 for the former and a suboptimal plan for the latter)."""
    n, m = M.shape
    rows, cols = np.nonzero(np.isfinite(M))
    E = rows.shape[0]
    A = sp.vstack([sp.csr_matrix((np.ones(E), (rows, np.arange(E))), shape=(n, E)),
                   sp.csr_matrix((np.ones(E), (cols, np.arange(E))), shape=(m, E))])
    res = linprog(M[rows, cols], A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def check_exact(res, M, a, b, rtol=1e-9, expected=None):
    """``res`` is optimal: POT's value (or ``expected``), a feasible sparse
    plan off the forbidden entries, dual feasible potentials, a zero duality
    gap, each to rounding (relative to the largest finite cost)."""
    M = np.asarray(M, dtype=np.float64)
    if expected is None:
        expected = ot.emd2(a, b, M, numItermax=10**8)
    finite = np.isfinite(M)
    scale = max(np.abs(M[finite]).max(), 1e-300)
    assert res.converged and res.status is Status.CONVERGED
    assert res.method == "exact" and res.reg == 0
    assert isinstance(res.plan, sp.csr_array) and res.plan.shape == M.shape
    assert res.plan.data.min(initial=0.0) >= 0
    P = res.plan.tocoo()
    assert finite[P.row, P.col].all()  # no mass on a forbidden entry
    assert abs(res.value - expected) <= rtol * max(abs(expected), 1e-300) + 1e-15 * scale
    assert res.value == res.value_linear
    gap, min_rc, error = optimality_certificate(M, a, b, res.plan, res.potentials)
    assert error <= 1e-12 and res.marginal_error <= 1e-12
    assert min_rc >= -1e-12 * scale and res.min_reduced_cost >= -1e-12 * scale
    assert abs(gap) <= 1e-12 * scale and abs(res.duality_gap) <= 1e-12 * scale
    assert res.value == pytest.approx(float(P.data @ M[P.row, P.col]), rel=1e-12, abs=1e-15 * scale)
    np.testing.assert_allclose(res.marginal_a, a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.marginal_b, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_families_match_pot(family):
    p = make_problem(family, 150, seed=1)
    check_exact(solve_exact(p.M, p.a, p.b), p.M, p.a, p.b)


@pytest.mark.parametrize("family", ["image-w2", "cloud"])
def test_sns_ranking(family):
    p = make_problem(family, 150, seed=5)
    res = solve_exact(p.M, p.a, p.b, ranking="sns")
    check_exact(res, p.M, p.a, p.b)
    assert res.n_iter_phases["sinkhorn"] + res.n_iter_phases["newton"] > 0


@pytest.mark.parametrize("family, ranking", [("grid-w1", "sns"), ("assignment", "cost"),
                                             ("image-w1", "cost")])
def test_larger_problem_needs_pricing_rounds(family, ranking):
    p = make_problem(family, 400, seed=2)
    res = solve_exact(p.M, p.a, p.b, ranking=ranking)
    check_exact(res, p.M, p.a, p.b)
    assert res.history["iteration"][-1] == res.n_rounds and res.support_size < 40 * 400


def test_permutation_problem_gives_the_permutation(rng):
    n = 120
    perm = rng.permutation(n)
    M = rng.random((n, n)) + 1.0
    M[np.arange(n), perm] = 0.0
    res = solve_exact(M)
    check_exact(res, M, np.full(n, 1 / n), np.full(n, 1 / n))
    assert res.value == 0.0
    np.testing.assert_array_equal(res.plan.toarray(), np.eye(n)[perm] / n)


@pytest.mark.parametrize("kind", ["ties", "integer", "constant"])
def test_degenerate_costs(rng, kind):
    n, m = 90, 70
    if kind == "ties":  # few distinct values: many optimal plans and duals
        M = rng.integers(0, 3, (n, m)) / 2.0
    elif kind == "integer":
        M = rng.integers(0, 1000, (n, m))
    else:
        M = np.full((n, m), 3.0)
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    a, b = a / a.sum(), b / b.sum()
    check_exact(solve_exact(M, a, b), M, a, b)


def test_zero_masses_and_rectangular(rng):
    n, m = 80, 130
    M = rng.random((n, m))
    a, b = rng.random(n), rng.random(m)
    a[rng.choice(n, 20, replace=False)] = 0.0
    b[rng.choice(m, 40, replace=False)] = 0.0
    a, b = a / a.sum(), b / b.sum()
    res = solve_exact(M, a, b)
    check_exact(res, M, a, b)
    assert res.plan[a == 0].nnz == 0 and res.plan[:, b == 0].nnz == 0


def test_highs_first_lp(rng):
    p = make_problem("image-w2", 150, seed=6)
    check_exact(solve_exact(p.M, p.a, p.b, first_lp="highs"), p.M, p.a, p.b)


def test_f_ordered_and_float32_costs(rng):
    M = np.asfortranarray(rng.random((60, 40)))
    a, b = rng.dirichlet(np.ones(60)), rng.dirichlet(np.ones(40))
    res = solve_exact(M, a, b)
    check_exact(res, M, a, b)
    res32 = solve_exact(M.astype(np.float32), a, b)
    check_exact(res32, M.astype(np.float32), a, b)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2)])
def test_tiny_problems(rng, shape):
    M = rng.random(shape)
    a, b = rng.dirichlet(np.ones(shape[0])), rng.dirichlet(np.ones(shape[1]))
    check_exact(solve_exact(M, a, b), M, a, b)


def test_inputs_not_modified(rng):
    M, a, b = rng.random((50, 40)), rng.dirichlet(np.ones(50)), rng.dirichlet(np.ones(40))
    copies = [x.copy() for x in (M, a, b)]
    solve_exact(M, a, b)
    for x, c in zip((M, a, b), copies):
        np.testing.assert_array_equal(x, c)


def test_certificate_detects_a_wrong_plan_and_wrong_duals(rng):
    p = make_problem("cloud", 100, seed=3)
    res = solve_exact(p.M, p.a, p.b)
    P, (u, v) = res.plan.toarray(), res.potentials
    gap, min_rc, error = optimality_certificate(p.M, p.a, p.b, P, (u, v))
    assert abs(gap) < 1e-15 and min_rc >= -1e-15 and error < 1e-15
    # a feasible but suboptimal plan: mass moved around a 2-cycle
    i, k = np.argsort(P.max(axis=1))[-2:]
    j, jk = P[i].argmax(), P[k].argmax()
    t = min(P[i, j], P[k, jk])
    Q = P.copy()
    Q[i, j] -= t
    Q[k, jk] -= t
    Q[i, jk] += t
    Q[k, j] += t
    gap_q, _, error_q = optimality_certificate(p.M, p.a, p.b, Q, (u, v))
    assert error_q < 1e-15 and gap_q > 1e-6
    # duals raised: the dual objective exceeds the primal, some reduced cost < 0
    gap_u, min_rc_u, _ = optimality_certificate(p.M, p.a, p.b, P, (u + 1e-3, v))
    assert gap_u < 0 and min_rc_u < -1e-4


def test_max_iter_warns_and_reports(rng):
    p = make_problem("grid-w1", 400, seed=2)
    with pytest.warns(ConvergenceWarning, match="pricing rounds"):
        res = solve_exact(p.M, p.a, p.b, max_iter=1)
    assert not res.converged and res.min_reduced_cost < 0 and res.n_rounds == 1
    assert res.marginal_error <= 1e-12  # still a feasible plan


@pytest.mark.parametrize("kwargs, match", [
    ({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol"), ({"reg": 0.0}, "reg"),
    ({"candidates_per_row": 0}, "candidates_per_row"), ({"backend": "tpu"}, "backend"),
    ({"ranking": "random"}, "ranking"), ({"first_lp": "glpk"}, "first_lp"),
])
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_exact(np.ones((3, 3)), **kwargs)


def test_bad_inputs_reuse_validation():
    with pytest.raises(ValueError, match="equal sums"):
        solve_exact(np.ones((2, 2)), [0.5, 0.5], [0.2, 0.2])
    with pytest.raises(ValueError, match="M must not contain NaN"):
        solve_exact(np.array([[0.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(UserWarning, match="unknown option"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            solve_exact(np.ones((2, 2)), bogus=1)


# --- POT drop-ins -------------------------------------------------------------

@pytest.mark.parametrize("ours, theirs", [(emd, ot.emd), (emd2, ot.emd2)])
def test_signatures_match_pot(ours, theirs):
    assert inspect.signature(ours) == inspect.signature(theirs)
    assert fastsinkhorn.emd is emd and "emd2" in fastsinkhorn.__all__


def test_emd_matches_pot_plan_value_and_log(rng):
    p = make_problem("rect", 120, seed=4)
    G, log = emd(p.a, p.b, p.M, log=True)
    G_pot, log_pot = ot.emd(p.a, p.b, p.M, log=True, numItermax=10**7)
    assert isinstance(G, np.ndarray) and G.shape == p.M.shape and G.dtype == np.float64
    assert set(log) == set(log_pot) == {"cost", "u", "v", "warning", "result_code"}
    assert log["result_code"] == 1 and log["warning"] is None
    assert log["cost"] == pytest.approx(log_pot["cost"], rel=1e-12)
    np.testing.assert_allclose(G, G_pot, atol=1e-12)  # a generic problem: unique optimum
    # POT's centring: <a, u> = <b, v>, and (u, v) are optimal duals
    assert float(p.a @ log["u"]) == pytest.approx(float(p.b @ log["v"]), abs=1e-14)
    assert float(p.a @ log["u"] + p.b @ log["v"]) == pytest.approx(log["cost"], rel=1e-12)


def test_emd2_calling_conventions(rng):
    M = rng.random((30, 20))
    a, b = rng.dirichlet(np.ones(30)), rng.dirichlet(np.ones(20))
    expected = ot.emd2(a, b, M)
    # positional with lists, keywords, empty weights (uniform)
    assert emd2(a.tolist(), b.tolist(), M.tolist()) == pytest.approx(expected, rel=1e-12)
    assert isinstance(emd2(a=a, b=b, M=M), float)
    assert emd2([], [], M) == pytest.approx(ot.emd2([], [], M), rel=1e-12)
    cost, log = emd2(a, b, M, return_matrix=True)
    assert set(log) == {"cost", "u", "v", "warning", "result_code", "G"}
    assert float((log["G"] * M).sum()) == pytest.approx(cost, rel=1e-12)
    # several target histograms: one result each, as POT
    B = np.stack([b, rng.dirichlet(np.ones(20))], axis=1)
    np.testing.assert_allclose(emd2(a, B, M), ot.emd2(a, B, M), rtol=1e-12)


def test_emd_uncentered_duals_and_zero_weights(rng):
    M = rng.random((25, 35))
    a, b = rng.dirichlet(np.ones(25)), rng.dirichlet(np.ones(35))
    _, log = emd(a, b, M, log=True, center_dual=False)
    assert float(a @ log["u"] + b @ log["v"]) == pytest.approx(ot.emd2(a, b, M), rel=1e-12)
    a[:5] = 0.0
    a /= a.sum()
    G, log = emd(a, b, M, log=True)
    assert np.all(G[:5] == 0) and (M - log["u"][:, None] - log["v"][None, :]).min() >= -1e-12


def test_emd_warnings_as_pot(rng):
    M = rng.random((100, 100))
    with pytest.warns(UserWarning, match="numItermax reached before optimality. Try to increase numItermax."):
        G, log = emd([], [], M, numItermax=10, log=True)
    assert log["result_code"] == 3 and log["warning"].startswith("numItermax reached")
    assert np.abs(G.sum(1) - 0.01).sum() < 1e-12  # still a feasible plan, as POT's
    with pytest.warns(DeprecationWarning, match="numThreads"):
        emd([], [], M[:5, :5], numThreads=2)
    with pytest.warns(UserWarning, match="Input histogram consists of integer"):
        G = emd(np.array([1, 1]), np.array([1, 1]), np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert G.dtype.kind == "i" and G.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(AssertionError, match="same sum"):
        emd([0.5, 0.5], [0.5, 0.6], np.eye(2))
    assert emd([0.5, 0.5], [0.5, 0.6], np.eye(2), check_marginals=False).sum() == pytest.approx(1.0)


def test_emd_unsupported_arguments_raise():
    M = np.eye(3)
    with pytest.raises(NotImplementedError, match="sparse M"):
        emd2([], [], sp.csr_matrix(M))
    with pytest.raises(ValueError, match="numItermax"):
        emd([], [], M, numItermax=0)


def test_emd_shape_mismatch_raises_valueerror_and_pots_assertionerror():
    M = np.ones((4, 4))
    for fn in (emd, emd2):
        with pytest.raises(ValueError, match="a must have length 4"):
            fn(np.full(5, 0.2), [], M)
        with pytest.raises(AssertionError, match="b must have length 4"):  # POT's assert
            fn([], np.full(3, 1 / 3), M)


# --- the pivot cap: a safety net, never the normal end (issue 19) ------------

@pytest.mark.parametrize("seed", [1, 2])
def test_emd2_default_arguments_right_at_a_thousand_points(seed):
    """A shifted 2-D Gaussian cloud of 1000 points needs ~10^5 pivots in all:
    the default numItermax used to end the solve early with a value 1e-4 too
    high and only a warning."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + 1.0
    M = ot.dist(x, y)
    expected = ot.emd2([], [], M, numItermax=10**7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the cap is not reached
        value, log = emd2([], [], M, log=True)
    assert log["result_code"] == 1 and log["warning"] is None
    assert value == pytest.approx(expected, rel=1e-12)


def test_max_pivots_caps_each_lp_not_the_whole_solve():
    """``max_pivots`` (POT's numItermax) bounds the pivots of one restricted
    LP: the longest LP's count suffices, however many rounds follow."""
    p = make_problem("cloud", 300, seed=7)
    free = solve_exact(p.M, p.a, p.b)
    assert free.n_rounds > 1 and free.n_pivots > free.max_lp_pivots
    res = solve_exact(p.M, p.a, p.b, max_pivots=free.max_lp_pivots)
    check_exact(res, p.M, p.a, p.b)
    assert res.value == free.value and res.n_pivots == free.n_pivots
    with pytest.warns(ConvergenceWarning, match="max_pivots"):
        capped = solve_exact(p.M, p.a, p.b, max_pivots=max(free.max_lp_pivots // 4, 1))
    assert capped.status is Status.MAX_ITER and not capped.converged
    assert capped.marginal_error <= 1e-12 and capped.min_reduced_cost < 0  # feasible, not optimal


def test_numitermax_values_of_pots_default_or_more_are_a_safety_net(monkeypatch):
    import fastsinkhorn.pot.exact as pe

    seen = []
    real = pe.solve_exact
    monkeypatch.setattr(pe, "solve_exact", lambda *a, **k: seen.append(k["max_pivots"]) or real(*a, **k))
    M = np.random.default_rng(0).random((150, 200))
    for numitermax in (100000, 10**6, 10**9, 99999, 10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            emd([], [], M, numItermax=numitermax)
    net = pivot_safety_net(150, 200)
    assert 10**6 > net > 100000 and seen == [net, 10**6, 10**9, 99999, 10]


def test_cap_warns_only_when_it_cut_an_optimal_solve_short():
    """A 1-D problem with a convex cost: the north-west corner's basis is
    optimal, so even numItermax=1 finds the optimum (no pivot needed) and must
    not warn; POT warns there because its own first basis is artificial."""
    x = np.arange(100, dtype=np.float64)
    a, b = ot.datasets.make_1D_gauss(100, m=30, s=5), ot.datasets.make_1D_gauss(100, m=50, s=10)
    M = np.abs(x[:, None] - x[None, :])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, log = emd(a, b, M, numItermax=1, log=True)
    assert log["result_code"] == 1 and log["cost"] == pytest.approx(ot.emd2(a, b, M), rel=1e-12)


# --- forbidden (+inf) and huge entries (issue 19) ------------------------------

def _forbidden_cases(rng, n=120):
    """``(name, M, a, b)``: costs with +inf entries whose problems stay feasible."""
    M = rng.random((n, n))
    a, u = rng.dirichlet(np.ones(n)) * 0.5 + 0.5 / n, np.full(n, 1.0 / n)
    yield "scattered", np.where(rng.random((n, n)) < 0.3, np.inf, M), a, u
    corner = M.copy()
    corner[:6, :6] = np.inf  # the north-west corner's first entries
    yield "north-west corner", corner, a, u
    yield "mostly forbidden", np.where((rng.random((n, n)) < 0.9) & ~np.eye(n, dtype=bool), np.inf, M), u, u
    blocks = np.full((n, n), np.inf)
    h = n // 2
    blocks[:h, :h], blocks[h:, h:] = M[:h, :h], M[h:, h:]
    yield "two blocks", blocks, u, u
    band = np.full((n, n), np.inf)
    perm = rng.permutation(n)
    for k in range(3):
        band[np.arange(n), perm[(np.arange(n) + k) % n]] = M[np.arange(n), k]
    yield "permuted band", band, u, u


def test_forbidden_entries_solve_exact_emd_and_solve(rng):
    for name, M, a, b in _forbidden_cases(rng):
        expected = lp_value(M, a, b)
        check_exact(solve_exact(M, a, b), M, a, b, expected=expected)
        res = fastsinkhorn.solve(M, a, b, reg=None)
        assert res.value == pytest.approx(expected, rel=1e-9), name
        G, log = emd(a, b, M, log=True)
        assert log["result_code"] == 1 and np.all(G[np.isinf(M)] == 0), name
        assert log["cost"] == pytest.approx(expected, rel=1e-9) == emd2(a, b, M)
        u, v = log["u"], log["v"]
        finite = np.isfinite(M)
        assert (M - u[:, None] - v[None, :])[finite].min() >= -1e-12


def test_forbidden_entries_zero_masses_and_transposed(rng):
    n, m = 70, 90
    M = np.where(rng.random((n, m)) < 0.5, np.inf, rng.random((n, m)))
    M[3, :] = np.inf  # a row that cannot send anything, of zero mass
    a, b = rng.random(n), rng.random(m)
    a[[3, 5, 8]] = 0.0
    b[:10] = 0.0
    a, b = a / a.sum(), b / b.sum()
    expected = lp_value(M, a, b)
    check_exact(solve_exact(M, a, b), M, a, b, expected=expected)
    MF = np.asfortranarray(M)  # solved transposed
    res = solve_exact(MF, a, b)
    check_exact(res, MF, a, b, expected=expected)
    assert np.all(res.plan.toarray()[np.isinf(M)] == 0)


@pytest.mark.parametrize("kind", ["row with no finite entry", "row reaching only empty columns", "Hall"])
def test_infeasible_support_raises_naming_m(rng, kind):
    n = 40
    M = rng.random((n, n))
    a, b = np.full(n, 1 / n), np.full(n, 1 / n)
    if kind == "row with no finite entry":
        M[7] = np.inf
    elif kind == "row reaching only empty columns":
        b[:5] = 0
        b /= b.sum()
        M[7, 5:] = np.inf
    else:  # three rows whose mass exceeds the two columns they reach
        M[:3, 2:] = np.inf
    for call in (lambda: solve_exact(M, a, b), lambda: emd2(a, b, M), lambda: emd(a, b, M),
                 lambda: fastsinkhorn.solve(M, a, b, reg=None)):
        with pytest.raises(ValueError, match="^M: .*the masses cannot be transported"):
            call()


@pytest.mark.parametrize("big", [1e12, 1e30, 1e250])
def test_huge_finite_costs(rng, big):
    """A few huge entries (or huge off-diagonal blocks, a user's stand-in for
    +inf) change nothing: the optimum avoids them. POT's emd returns a
    suboptimal plan here (its value up to 40x the optimum)."""
    n = 100
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    M = rng.random((n, n))
    few = M.copy()
    few[rng.integers(0, n, 15), rng.integers(0, n, 15)] = big
    few[0, 0] = big  # on the north-west corner's path
    blocks = M.copy()
    h = n // 2
    blocks[:h, h:] = blocks[h:, :h] = big
    a_blocks = np.concatenate([a[:h] / a[:h].sum(), a[h:] / a[h:].sum()]) / 2
    b_blocks = np.concatenate([b[:h] / b[:h].sum(), b[h:] / b[h:].sum()]) / 2
    for C, x, y in ((few, a, b), (blocks, a_blocks, b_blocks)):
        expected = lp_value(np.where(C == big, np.inf, C), x, y)
        for options in ({}, {"first_lp": "highs"}, {"ranking": "sns"}):
            res = solve_exact(C, x, y, **options)
            assert res.converged and res.value == pytest.approx(expected, rel=1e-9), options
            assert res.plan.toarray()[C == big].sum() == 0
            assert res.min_reduced_cost >= -1e-12 and abs(res.duality_gap) <= 1e-12
        assert emd2(x, y, C) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("big", [1e12, 1e250])
def test_huge_costs_that_must_carry_mass(rng, big):
    """Four rows reach one column cheaply: most of their mass must take huge
    entries. The plan puts the least mass possible there (the deficit of the
    problem with those entries forbidden); its cheap part is optimal only to
    the rounding of duals of the huge scale (all float64 can resolve)."""
    from fastsinkhorn.algorithms.exact.feasibility import transport_deficit

    n = 60
    M = rng.random((n, n))
    M[:4, 1:] = big
    res = solve_exact(M)
    need = transport_deficit(np.where(M == big, np.inf, M))
    assert need > 0.03 and res.converged and res.marginal_error <= 1e-12
    assert res.plan.toarray()[M == big].sum() == pytest.approx(need, rel=1e-12)
    assert res.value == pytest.approx(need * big, rel=1e-12)


def test_large_offset_costs_keep_their_digits(rng):
    """``1e12 + r``: the digits of r that float64 keeps decide the plan (the
    shifted cost is exact); the tolerance follows the basis' spread, not the
    offset (it used to accept reduced costs down to -1)."""
    n = 150
    a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    M = 1e12 + rng.random((n, n))
    shifted = M - 1e12  # exact (Sterbenz)
    res = solve_exact(M, a, b)
    P = res.plan.tocoo()
    assert float(P.data @ shifted[P.row, P.col]) == pytest.approx(lp_value(shifted, a, b), rel=1e-9)
    assert res.min_reduced_cost >= -1e-12


def test_zero_diagonal_gives_exactly_zero(rng):
    for n in (2, 37, 300):
        x = rng.normal(size=(n, 2))
        x[: n // 3] = x[0]  # repeated points: ties
        M = ot.dist(x, x)  # zero diagonal
        w = rng.dirichlet(np.ones(n))
        assert emd2(w, w, M) == 0.0 and emd2([], [], M) == 0.0
        assert solve_exact(M, w, w).value == 0.0


# --- POT's result API ----------------------------------------------------------

def test_marginals_and_a_plan_that_multiplies_entrywise(rng):
    M = rng.random((40, 40))
    a, b = rng.dirichlet(np.ones(40)), rng.dirichlet(np.ones(40))
    res = fastsinkhorn.solve(M, a, b, reg=None)
    np.testing.assert_allclose(res.marginal_a, a, atol=1e-15)
    np.testing.assert_allclose(res.marginal_b, b, atol=1e-15)
    # POT's idiom for the cost of a plan; a square csr_matrix would multiply matrices
    assert float((res.plan * M).sum()) == pytest.approx(res.value, rel=1e-12)


def test_point_clouds_exact(rng):
    x, y = rng.random((60, 2)), rng.random((45, 2))
    a, b = rng.dirichlet(np.ones(60)), rng.dirichlet(np.ones(45))
    for metric in ("sqeuclidean", "euclidean"):
        expected = ot.emd2(a, b, ot.dist(x, y, metric=metric))
        res = fastsinkhorn.solve(fastsinkhorn.PointCloud(x, y, cost=metric), a, b, reg=None)
        assert res.value == pytest.approx(expected, rel=1e-12)
        lazy = fastsinkhorn.solve_sample(x, y, a, b, metric=metric, reg=None, lazy=True)
        assert lazy.value == pytest.approx(expected, rel=1e-12) and lazy.marginal_a.shape == (60,)
    with pytest.raises(ValueError, match="2-D cost for exact OT"):
        solve_exact(rng.random((2, 5, 5)))


def test_potentials_init_warm_start_gives_the_same_answer(rng):
    x, y = rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + 1
    M = ot.dist(x, y)
    with pytest.warns(UserWarning, match="numItermax"):
        _, partial = emd([], [], M, numItermax=100, log=True)
    _, log = emd([], [], M, log=True, potentials_init=(partial["u"], partial["v"]))
    _, log_cold = emd([], [], M, log=True)
    assert log["cost"] == pytest.approx(log_cold["cost"], rel=1e-12)
    assert log["cost"] == pytest.approx(ot.emd2([], [], M), rel=1e-12)
    res = fastsinkhorn.solve(M, reg=None, potentials_init=(log["u"], log["v"]))
    assert res.value == pytest.approx(log["cost"], rel=1e-12) and res.n_rounds == 1  # optimal duals: one LP
    with pytest.raises(ValueError, match="warm_start must be arrays of shapes"):
        solve_exact(M, warm_start=(np.zeros(3), np.zeros(150)))


def test_benchmark_script_runs(tmp_path):
    """``benchmarks/exact.py`` on a tiny case: a row per solver, values that agree."""
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "exact.py"
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, str(script), "--sizes", "40", "--families", "cloud", "--warmup-n", "20",
                    "--json", str(out)], check=True, capture_output=True, timeout=300)
    (case,) = json.loads(out.read_text())
    ours, pot = case["fastsinkhorn"], case["pot"]
    assert ours["value"] == pytest.approx(pot["value"], rel=1e-12) and ours["converged"]
    assert ours["time"] > 0 and ours["gap"] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", ["fastsinkhorn.algorithms.exact.solver", "fastsinkhorn.pot.exact",
                                  "fastsinkhorn.algorithms.exact.feasibility"])
def test_docstring_examples_of_exact_ot(name):
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failed == 0, f"{failed} of {attempted} examples in {name} failed"
