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

import fastsinkhorn
from fastsinkhorn import ConvergenceWarning, Status, emd, emd2, solve_exact
from fastsinkhorn._exact import optimality_certificate
from fastsinkhorn.problems import FAMILIES, make_problem


def check_exact(res, M, a, b, rtol=1e-9):
    """``res`` is optimal: POT's value, a feasible sparse plan, dual feasible
    potentials, a zero duality gap, each to rounding."""
    M = np.asarray(M, dtype=np.float64)
    expected = ot.emd2(a, b, M, numItermax=10**8)
    scale = max(np.abs(M).max(), 1e-300)
    assert res.converged and res.status is Status.CONVERGED
    assert res.method == "exact" and res.reg == 0
    assert isinstance(res.plan, sp.csr_matrix) and res.plan.shape == M.shape
    assert res.plan.data.min(initial=0.0) >= 0
    assert abs(res.value - expected) <= rtol * max(abs(expected), 1e-300) + 1e-15 * scale
    assert res.value == res.value_linear
    gap, min_rc, error = optimality_certificate(M, a, b, res.plan, res.potentials)
    assert error <= 1e-12 and res.marginal_error <= 1e-12
    assert min_rc >= -1e-12 * scale and res.min_reduced_cost >= -1e-12 * scale
    assert abs(gap) <= 1e-12 * scale and abs(res.duality_gap) <= 1e-12 * scale
    assert res.value == pytest.approx(float((res.plan.multiply(M)).sum()), rel=1e-12, abs=1e-15 * scale)


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
    j, l = P[i].argmax(), P[k].argmax()
    t = min(P[i, j], P[k, l])
    Q = P.copy()
    Q[i, j] -= t; Q[k, l] -= t; Q[i, l] += t; Q[k, j] += t
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
    with pytest.raises(NotImplementedError, match="potentials_init"):
        emd([], [], M, potentials_init=(np.zeros(3), np.zeros(3)))
    with pytest.raises(NotImplementedError, match="sparse M"):
        emd2([], [], sp.csr_matrix(M))
    with pytest.raises(ValueError, match="numItermax"):
        emd([], [], M, numItermax=0)


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
