"""POT's entropic surface beyond sinkhorn/sinkhorn2: ot.solve, ot.solve_sample,
ot.unbalanced.sinkhorn_unbalanced(2), and POT's tolerance edge cases."""

import inspect
import warnings

import numpy as np
import ot
import pytest
from ot_testing import random_problem

import fastsinkhorn as fs
from fastsinkhorn.core.result import ConvergenceWarning

UNBALANCED_METHODS = ["sinkhorn", "sinkhorn_stabilized", "sinkhorn_translation_invariant", "sinkhorn_reg_scaling"]


def pot_unbalanced(a, b, M, reg, reg_m, **kwargs):
    """POT's converged answer (its stabilized solver, run to rounding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m, method="sinkhorn_stabilized",
                                                 numItermax=100_000, stopThr=1e-15, log=True, **kwargs)


# -- signatures -------------------------------------------------------------

@pytest.mark.parametrize("ours, theirs", [
    (fs.solve, ot.solve), (fs.solve_sample, ot.solve_sample),
    (fs.sinkhorn_unbalanced, ot.unbalanced.sinkhorn_unbalanced),
    (fs.sinkhorn_unbalanced2, ot.unbalanced.sinkhorn_unbalanced2),
    (fs.unbalanced.sinkhorn_knopp_unbalanced, ot.unbalanced.sinkhorn_knopp_unbalanced),
    (fs.unbalanced.sinkhorn_stabilized_unbalanced, ot.unbalanced.sinkhorn_stabilized_unbalanced),
    (fs.batch.solve_batch, ot.batch.solve_batch),
])
def test_pot_positional_arguments_come_first_in_pots_order(ours, theirs):
    pot = [p.name for p in inspect.signature(theirs).parameters.values()
           if p.kind is p.POSITIONAL_OR_KEYWORD]
    mine = [p.name for p in inspect.signature(ours).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert mine[:len(pot)] == pot


def test_module_paths_mirror_pot():
    assert fs.unbalanced.sinkhorn_unbalanced is fs.sinkhorn_unbalanced
    assert fs.unbalanced.sinkhorn_unbalanced2 is fs.sinkhorn_unbalanced2
    assert callable(fs.batch.solve_batch)


# -- sinkhorn_unbalanced ----------------------------------------------------

@pytest.mark.parametrize("method", UNBALANCED_METHODS + ["sns"])
@pytest.mark.parametrize("reg_type", ["kl", "entropy"])
def test_sinkhorn_unbalanced_equals_pots_converged_plan_and_log(rng, method, reg_type):
    M, a, b = random_problem(rng, 40, 30)
    b = 1.7 * b
    P, log = pot_unbalanced(a, b, M, 0.1, 0.5, reg_type=reg_type)
    ours, our_log = fs.sinkhorn_unbalanced(a, b, M, 0.1, 0.5, method=method, reg_type=reg_type,
                                           stopThr=1e-12, log=True)
    np.testing.assert_allclose(ours, P, rtol=1e-8, atol=1e-13)
    assert set(log) <= set(our_log)
    np.testing.assert_allclose(our_log["logu"], log["logu"], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(our_log["logv"], log["logv"], rtol=1e-8, atol=1e-8)
    assert our_log["cost"] == pytest.approx(float(log["cost"]), rel=1e-9)
    assert our_log["total_cost"] == pytest.approx(float(log["total_cost"]), rel=1e-8, abs=1e-9)
    assert our_log["converged"] and our_log["err"][-1] <= 1e-12


@pytest.mark.parametrize("n, m, reg, reg_m, reg_type", [
    (40, 30, 0.1, 0.5, "kl"), (25, 35, 0.05, (1.0, np.inf), "entropy"), (30, 30, 0.2, 2.0, "kl")])
def test_sinkhorn_unbalanced_translation_invariant_is_pots_function(rng, n, m, reg, reg_m, reg_type):
    """fastsinkhorn.unbalanced.sinkhorn_unbalanced_translation_invariant against
    POT's function of the same name run to convergence: the plan, POT's
    log-scalings and both costs (relaxed, semi-relaxed; both regularisers)."""
    M, a, b = random_problem(rng, n, m)
    b = 1.7 * b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P, log = ot.unbalanced.sinkhorn_unbalanced_translation_invariant(
            a, b, M, reg, reg_m, reg_type=reg_type, numItermax=100_000, stopThr=1e-15, log=True)
    ours, our_log = fs.unbalanced.sinkhorn_unbalanced_translation_invariant(a, b, M, reg, reg_m, reg_type=reg_type,
                                                                            stopThr=1e-12, log=True)
    np.testing.assert_allclose(ours, P, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(our_log["logu"], log["logu"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(our_log["logv"], log["logv"], rtol=1e-9, atol=1e-9)
    assert our_log["cost"] == pytest.approx(float(log["cost"]), rel=1e-10)
    assert our_log["total_cost"] == pytest.approx(float(log["total_cost"]), rel=1e-10, abs=1e-12)
    assert our_log["converged"]
    np.testing.assert_array_equal(ours, fs.sinkhorn_unbalanced(a, b, M, reg, reg_m, reg_type=reg_type,
                                                               method="sinkhorn_translation_invariant",
                                                               stopThr=1e-12))


def test_pots_example_and_sinkhorn_unbalanced2_costs():
    a, b, M = [.5, .5], [.5, .5], [[0., 1.], [1., 0.]]
    np.testing.assert_allclose(fs.sinkhorn_unbalanced(a, b, M, 1, 1), [[0.3220536, 0.1184769], [0.1184769, 0.3220536]],
                               atol=5e-8)
    P, log = pot_unbalanced(np.array(a), np.array(b), np.array(M), 1.0, 1.0)
    linear = fs.sinkhorn_unbalanced2(a, b, M, 1, 1, stopThr=1e-12)
    total = fs.sinkhorn_unbalanced2(a, b, M, 1, 1, returnCost="total", stopThr=1e-12)
    assert np.ndim(linear) == 0 and float(linear) == pytest.approx(float(log["cost"]), rel=1e-9)
    assert float(total) == pytest.approx(float(log["total_cost"]), rel=1e-9)
    with pytest.raises(ValueError, match="Unknown returnCost"):
        fs.sinkhorn_unbalanced2(a, b, M, 1, 1, returnCost="quadratic")


def test_two_dimensional_b_gives_one_cost_per_histogram_as_pot(rng):
    M, a, _ = random_problem(rng, 30, 20)
    B = rng.random((20, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = fs.sinkhorn_unbalanced2(a, B, M, 0.1, 1.0, stopThr=1e-12, numItermax=10_000)
    assert any("Use entropy" in str(w.message) for w in caught)  # POT's warning, POT's computation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ot.unbalanced.sinkhorn_unbalanced2(a, B, M, 0.1, 1.0, stopThr=1e-14, numItermax=100_000)
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    # each is the entropy-regularised problem solved alone
    for k in range(3):
        one = fs.sinkhorn_unbalanced2(a, B[:, k], M, 0.1, 1.0, reg_type="entropy", stopThr=1e-12)
        assert float(ours[k]) == pytest.approx(float(one), rel=1e-9)


def test_pots_warmstart_is_honoured(rng):
    M, a, b = random_problem(rng, 30, 25)
    b = 0.6 * b
    _, log = pot_unbalanced(a, b, M, 0.05, 2.0)
    ours, our_log = fs.sinkhorn_unbalanced(a, b, M, 0.05, 2.0, warmstart=(log["logu"], log["logv"]), log=True,
                                           stopThr=1e-10)
    cold = fs.sinkhorn_unbalanced(a, b, M, 0.05, 2.0, log=True, stopThr=1e-10)[1]
    assert our_log["niter"] <= 1 < cold["niter"]


def test_reference_measure_and_its_entropy_override(rng):
    M, a, b = random_problem(rng, 20, 15)
    c = rng.random((20, 15)) + 0.1
    P, _ = pot_unbalanced(a, b, M, 0.1, 1.0, c=c)
    np.testing.assert_allclose(fs.sinkhorn_unbalanced(a, b, M, 0.1, 1.0, c=c, stopThr=1e-12), P, rtol=1e-8,
                               atol=1e-14)
    with pytest.warns(UserWarning, match="overwritten by the one matrix"):
        with_c = fs.sinkhorn_unbalanced(a, b, M, 0.1, 1.0, reg_type="entropy", c=c)
    np.testing.assert_array_equal(with_c, fs.sinkhorn_unbalanced(a, b, M, 0.1, 1.0, reg_type="entropy"))


@pytest.mark.parametrize("reg_m", [1.0, [1.0], (1.0, 1.0), [1.0, 1.0], np.ones(1)])
def test_reg_m_forms_are_equivalent(rng, reg_m):
    M, a, b = random_problem(rng, 10, 8)
    np.testing.assert_array_equal(fs.sinkhorn_unbalanced(a, b, M, 0.1, reg_m),
                                  fs.sinkhorn_unbalanced(a, b, M, 0.1, 1.0))


def test_sinkhorn_unbalanced_bad_arguments():
    a, b, M = [.5, .5], [.5, .5], [[0., 1.], [1., 0.]]
    with pytest.raises(ValueError, match="Unknown method 'greenkhorn'"):
        fs.sinkhorn_unbalanced(a, b, M, 1, 1, method="greenkhorn")
    with pytest.raises(NotImplementedError, match="reg_type='l2'"):
        fs.sinkhorn_unbalanced(a, b, M, 1, 1, reg_type="l2")
    with pytest.raises(ValueError, match="must be positive"):
        fs.sinkhorn_unbalanced(a, b, M, 1, -1)


def test_non_convergence_warns_and_stopthr_zero_runs_numitermax(rng):
    M, a, b = random_problem(rng, 20, 15)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        _, log = fs.sinkhorn_unbalanced(a, 2 * b, M, 0.01, 1.0, stopThr=0, numItermax=37, log=True)
    assert log["niter"] == 36 and not log["converged"]


# -- POT's tolerance edge cases (test_bregman) --------------------------------

@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log", "sinkhorn_stabilized", "greenkhorn", "sns"])
def test_stopthr_zero_runs_every_iteration_and_warns_as_pot(rng, method):
    M, a, b = random_problem(rng, 20, 15)
    with pytest.warns(UserWarning, match="Sinkhorn did not converge"):
        P, log = fs.sinkhorn(a, b, M, 0.1, method=method, stopThr=0, numItermax=25, log=True)
    assert log["niter"] == 24 and len(log["err"]) >= 1 and np.isfinite(P).all()
    with pytest.warns(UserWarning, match="Sinkhorn did not converge"):
        fs.sinkhorn(a, b, M, 0.1, method=method, stopThr=-1.0, numItermax=5)
    # a negative or zero threshold is never met; +inf stops at the first check
    P_inf, log_inf = fs.sinkhorn(a, b, M, 0.1, method=method, stopThr=np.inf, log=True)
    assert log_inf["niter"] == 0 and np.isfinite(P_inf).all()


def test_native_tol_zero_runs_max_iter(rng):
    M, a, b = random_problem(rng, 20, 15)
    with pytest.warns(ConvergenceWarning):
        res = fs.solve(M, a, b, 0.1, method="sinkhorn", tol=0, max_iter=40)
    assert res.n_iter == 40 and not res.converged and res.status is fs.Status.MAX_ITER


# -- ot.solve -------------------------------------------------------------------

@pytest.mark.parametrize("reg_type", ["KL", "entropy"])
def test_solve_balanced_matches_pots_fields(rng, reg_type):
    M, a, b = random_problem(rng, 40, 30)
    theirs = ot.solve(M, a, b, 0.05, reg_type=reg_type, tol=1e-13, max_iter=100_000)
    ours = fs.solve(M, a, b, 0.05, reg_type=reg_type, tol=1e-12)
    np.testing.assert_allclose(ours.plan, theirs.plan, rtol=1e-8, atol=1e-14)
    assert ours.value == pytest.approx(float(theirs.value), rel=1e-8)
    assert ours.value_linear == pytest.approx(float(theirs.value_linear), rel=1e-9)
    for name in ("marginal_a", "marginal_b"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-9, atol=1e-14)
    # potentials: ours in cost units (reg x POT's log-scalings), each pair defined up to (t, -t)
    f, g = ours.potential_a / 0.05, ours.potential_b / 0.05
    lu, lv = theirs.potential_a, theirs.potential_b
    shift = np.mean(f - lu)
    np.testing.assert_allclose(f - shift, lu, atol=1e-7)
    np.testing.assert_allclose(g + shift, lv, atol=1e-7)
    assert ours.sparse_plan.nnz == np.count_nonzero(ours.plan) and ours.lazy_plan is None


@pytest.mark.parametrize("unbalanced", [0.3, (0.5, 3.0)])
def test_solve_unbalanced_matches_pot(rng, unbalanced):
    M, a, b = random_problem(rng, 30, 20)
    b = 1.5 * b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ot.solve(M, a, b, 0.1, unbalanced=unbalanced, tol=1e-15, max_iter=100_000)
    ours = fs.solve(M, a, b, 0.1, unbalanced=unbalanced, tol=1e-12)
    np.testing.assert_allclose(ours.plan, theirs.plan, rtol=1e-7, atol=1e-12)
    assert ours.value == pytest.approx(float(theirs.value), rel=1e-7)
    assert ours.value_linear == pytest.approx(float(theirs.value_linear), rel=1e-7)


def test_solve_n_threads_and_potentials_init(rng):
    M, a, b = random_problem(rng, 200, 150)
    many = fs.solve(M, a, b, 0.05, method="sinkhorn")
    one = fs.solve(M, a, b, 0.05, method="sinkhorn", n_threads=1)
    np.testing.assert_allclose(one.plan, many.plan, rtol=1e-10, atol=1e-15)
    warm = fs.solve(M, a, b, 0.05, method="sinkhorn", potentials_init=many.potentials)
    assert warm.n_iter <= 2 < many.n_iter


def test_solve_without_reg_is_exact_ot_as_in_pot(rng):
    M, a, b = random_problem(rng, 30, 20)
    theirs = ot.solve(M, a, b)
    for res in (fs.solve(M, a, b), fs.solve(M, a, b, 0), fs.solve(M, a, b, method="exact")):
        assert isinstance(res, fs.ExactResult) and res.method == "exact"
        assert res.value == pytest.approx(float(theirs.value), rel=1e-12)
        np.testing.assert_allclose(res.plan.toarray(), theirs.plan, atol=1e-15)
    for kwargs, error in (({"reg": 0.1, "method": "exact"}, ValueError), ({"unbalanced": 1.0}, NotImplementedError),
                          ({"method": "sns"}, ValueError)):
        with pytest.raises(error):
            fs.solve(M, a, b, **kwargs)
    # POT's warm start: duals rank the first candidates, the answer is the same
    warm = fs.solve(M, a, b, potentials_init=(rng.random(30), rng.random(20)))
    assert warm.value == pytest.approx(float(theirs.value), rel=1e-12)


def test_solve_pot_methods():
    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(fs.solve(M, None, None, 0.1, method="sinkhorn_log").plan,
                               fs.solve(M, None, None, 0.1, method="sinkhorn").plan)
    with pytest.raises(ValueError, match="method must be one of"):
        fs.solve(M, None, None, 0.1, method="nope")
    for method in ("mm", "lbfgsb"):  # POT's, not implemented here: NotImplementedError, not ValueError
        with pytest.raises(NotImplementedError, match=method):
            fs.solve(M, None, None, 0.1, method=method)


# -- ot.solve_sample --------------------------------------------------------------

@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_solve_sample_matches_pot(rng, lazy, metric):
    x, y = rng.random((40, 2)), rng.random((30, 2))
    theirs = ot.solve_sample(x, y, None, None, metric, 0.05, lazy=lazy, tol=1e-13, max_iter=100_000)
    ours = fs.solve_sample(x, y, None, None, metric, 0.05, lazy=lazy, tol=1e-11)
    plan = ours.plan.to_dense() if lazy else ours.plan
    theirs_plan = theirs.lazy_plan[:] if lazy else theirs.plan
    np.testing.assert_allclose(plan, theirs_plan, rtol=1e-7, atol=1e-13)
    assert ours.value_linear == pytest.approx(float(theirs.value_linear), rel=1e-8)


def test_solve_sample_unbalanced_lazy_equals_dense(rng):
    x, y = rng.random((30, 2)), rng.random((20, 2))
    b = np.full(20, 0.08)
    lazy = fs.solve_sample(x, y, None, b, reg=0.05, unbalanced=1.0, lazy=True, batch_size=7, tol=1e-11)
    dense = fs.solve_sample(x, y, None, b, reg=0.05, unbalanced=1.0, tol=1e-11)
    np.testing.assert_allclose(lazy.plan.to_dense(), dense.plan, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("name, value", [("rank", 10), ("scaling", 0.5), ("debias", "split"), ("n_projections", 10),
                                         ("X_init", np.zeros((2, 1))), ("random_state", 0)])
def test_solve_sample_methods_we_do_not_have_raise(name, value):
    x = np.array([[0.0], [1.0]])
    with pytest.raises(NotImplementedError, match=name):
        fs.solve_sample(x, x, reg=0.1, **{name: value})


def test_sinkhorn_unbalanced_verbose_prints_pots_table_every_print_period(rng, capsys):
    M, a, b = random_problem(rng, 20, 15)
    with pytest.warns(ConvergenceWarning):  # stopThr=0: never met
        fs.sinkhorn_unbalanced(a, 2 * b, M, 0.05, 1.0, verbose=True, stopThr=0, numItermax=30)
    every = [line for line in capsys.readouterr().out.splitlines() if line.endswith("|")]
    with pytest.warns(ConvergenceWarning):
        fs.sinkhorn_unbalanced(a, 2 * b, M, 0.05, 1.0, verbose=True, stopThr=0, numItermax=30, print_period=10)
    tenth = [line for line in capsys.readouterr().out.splitlines() if line.endswith("|")]
    assert len(every) == 30 and [int(x.split("|")[0]) for x in tenth] == [0, 10, 20, 29]


# -- POT's method names run our best method (issue 19) --------------------------------------------

def _unbalanced_small_reg(rng, n=60):
    """reg = 1e-3 of the cost range, 1.5x the mass on the target: 1000
    iterations of Sinkhorn (POT's numItermax) stop with the gradient at ~1e-4."""
    x, y = rng.random((n, 2)), rng.random((n, 2))
    M = ot.dist(x, y)
    M /= M.max()
    return M, np.full(n, 1 / n), 1.5 * rng.dirichlet(np.ones(n)), 1e-3


def _long_sinkhorn(M, a, b, reg, **kwargs):
    """The reference: our Sinkhorn (not SNS) run to 1e-10."""
    return fs.solve(M, a, b, reg, method="sinkhorn", max_iter=200_000, tol=1e-10, **kwargs)


def test_sinkhorn_unbalanced_at_small_reg_converges_within_pots_budget(rng):
    M, a, b, reg = _unbalanced_small_reg(rng)
    ref = _long_sinkhorn(M, a, b, reg, unbalanced=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no ConvergenceWarning
        P, log = fs.sinkhorn_unbalanced(a, b, M, reg, 1.0, log=True)
        cost = fs.sinkhorn_unbalanced2(a, b, M, reg, 1.0)
    assert log["converged"] and log["niter"] < 1000
    np.testing.assert_allclose(P, ref.plan, atol=1e-6)
    assert float(cost) == pytest.approx(float(ref.value_linear), rel=1e-4)


def test_sinkhorn_unbalanced_two_dimensional_b_at_small_reg_converges(rng):
    M, a, b, reg = _unbalanced_small_reg(rng, n=40)
    B = np.stack([b, b[::-1]], axis=1)
    with pytest.warns(UserWarning, match="Use entropy"):  # POT's warning for a 2-D b with reg_type="kl"
        costs, log = fs.sinkhorn_unbalanced2(a, B, M, reg, 1.0, log=True)
    assert log["converged"] and costs.shape == (2,) and log["logu"].shape == (40, 2)
    for k in range(2):
        ref = _long_sinkhorn(M, a, B[:, k], reg, unbalanced=1.0, reg_type="entropy")
        assert float(costs[k]) == pytest.approx(float(ref.value_linear), rel=1e-4)


def test_drop_ins_do_not_depend_on_measured_times(rng, monkeypatch):
    """SNS's ``sinkhorn_hedge`` decides from timings (a cold first call looks
    slow to Newton) and its wrong guesses spend the budget: the drop-ins run
    SNS without it, so a hedge that always bets on Sinkhorn changes nothing."""
    from fastsinkhorn.algorithms.sns import driver as _sns

    M, a, b, reg = _unbalanced_small_reg(rng, n=50)
    before = fs.sinkhorn_unbalanced(a, b, M, reg, 1.0)
    monkeypatch.setattr(_sns._SNSRun, "_sinkhorn_iterations_if_cheaper", lambda self, *args: 10 ** 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after, log = fs.sinkhorn_unbalanced(a, b, M, reg, 1.0, log=True)
        Mb, ab, bb, regb = M, a, b / b.sum(), 1e-5
        _, log2 = fs.sinkhorn2(ab, bb, Mb, regb, log=True)
    np.testing.assert_array_equal(after, before)
    assert log["converged"] and log2["converged"]


def test_solve_batch_at_small_reg_converges_and_warns_when_it_cannot(rng):
    M = rng.random((3, 30, 30))
    res = fs.batch.solve_batch(M, 1e-4)  # POT's tol=1e-5, max_iter=1000
    assert res.converged.all() and res.plan.shape == (3, 30, 30)
    u = np.full(30, 1 / 30)
    for p in range(3):
        P = res.plan[p]
        assert np.abs(P.sum(1) - u).sum() + np.abs(P.sum(0) - u).sum() <= 1e-5
        # the plan has the Gibbs form below and the marginals: the entropic optimum (KKT), whose
        # cost value_linear is, above exact OT (up to what the marginal error can save)
        assert float(res.value_linear[p]) == pytest.approx(float((M[p] * P).sum()), rel=1e-12)
        assert float(res.value_linear[p]) >= ot.emd2(u, u, M[p]) - 1e-5
        # POT's potentials: log-scalings, plan = exp(f_i + g_j - M_ij / reg)
        f, g = res.potentials[0][p], res.potentials[1][p]
        np.testing.assert_allclose(P, np.exp(f[:, None] + g[None, :] - M[p] / 1e-4), rtol=1e-6, atol=1e-190)
    with pytest.warns(ConvergenceWarning, match="3 of 3 problems"):
        assert not fs.batch.solve_batch(M, 1e-4, max_iter=5).converged.any()


# -- solve / solve_sample: what POT's own tests ask of them (issue 19) ---------------------------------

def test_results_have_pots_backend_attribute(rng):
    M, a, b = random_problem(rng, 6, 5)
    assert fs.solve(M, a, b, 0.1)._backend is None and fs.solve(M, a, b)._backend is None


@pytest.mark.parametrize("metric", ["cityblock", "cosine", "chebyshev"])
def test_solve_sample_takes_any_dist_metric_on_its_dense_path(rng, metric):
    x, y = rng.random((30, 3)), rng.random((20, 3))
    theirs = ot.solve_sample(x, y, metric=metric, reg=0.05, tol=1e-13, max_iter=100_000)
    ours = fs.solve_sample(x, y, metric=metric, reg=0.05, tol=1e-11)
    np.testing.assert_allclose(ours.plan, theirs.plan, rtol=1e-7, atol=1e-13)
    exact = fs.solve_sample(x, y, metric=metric)
    assert float(exact.value) == pytest.approx(float(ot.solve_sample(x, y, metric=metric).value), rel=1e-10)
    with pytest.raises(NotImplementedError, match="lazy=True"):
        fs.solve_sample(x, y, metric=metric, reg=0.05, lazy=True)


def test_solve_sample_cost_has_the_points_dtype_and_exact_zeros(rng):
    x = rng.random((25, 2)).astype(np.float32)
    res = fs.solve_sample(x, x, reg=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT's float32 Sinkhorn does not converge here: only its dtype matters
        theirs = ot.solve_sample(x, x, reg=0.05).plan
    assert res.plan.dtype == np.float32 == theirs.dtype
    assert fs.solve_sample(x, x.copy()).value == 0  # exact OT between equal samples: exactly 0


@pytest.mark.parametrize("method", ["1d", "gaussian", "lowrank", "factored", "sliced", "bsp", "nystroem"])
def test_pots_methods_we_do_not_implement_raise_not_implemented(rng, method):
    x = rng.random((8, 2))
    with pytest.raises(NotImplementedError, match=method):
        fs.solve_sample(x, x, method=method, metric="any other one")
    with pytest.raises(NotImplementedError, match=method):
        fs.solve_sample(x, x, reg=0.1, method=method)


def test_lazy_plan_indexes_like_pots_lazy_tensor(rng):
    x, y = rng.random((40, 2)), rng.random((30, 2))
    ours = fs.solve_sample(x, y, reg=0.05, lazy=True, tol=1e-11).plan
    theirs = ot.solve_sample(x, y, reg=0.05, lazy=True, tol=1e-13, max_iter=100_000).lazy_plan
    dense = ours.to_dense()
    np.testing.assert_allclose(ours[:], theirs[:], rtol=1e-7, atol=1e-13)
    for key in (slice(None), 3, -1, slice(5, 17, 3), (slice(2, 9), 4), (7, slice(None, None, -2)),
                np.array([9, 2, 2, 30]), (np.array([0, 39]), np.array([1, 29])), np.arange(40) % 3 == 0,
                ([[1, 2], [3, 4]], [0, 5]), slice(9, 2)):
        assert np.shape(ours[key]) == np.shape(dense[key]) and np.array_equal(ours[key], dense[key]), key
    with pytest.raises(IndexError):
        ours[40]
    with pytest.raises(IndexError):
        ours[0, 0, 0]


# -- float32: POT's output dtypes (issue 19) -----------------------------------------------------------

def test_float32_results_have_pots_dtypes(rng):
    x, y = rng.random((30, 2)).astype(np.float32), rng.random((20, 2)).astype(np.float32)
    a, b = np.full(30, 1 / 30, np.float32), np.full(20, 1 / 20, np.float32)
    M = ot.dist(x, y)
    fields = ("plan", "value", "value_linear", "potential_a", "potential_b", "marginal_a", "marginal_b")
    calls = {
        "solve": (lambda L: L.solve(M, a, b, 0.1), fields),
        "solve unbalanced": (lambda L: L.solve(M, a, b, 0.1, unbalanced=1.0), fields),
        "solve_sample": (lambda L: L.solve_sample(x, y, a, b, reg=0.1), fields),
        "solve_batch": (lambda L: L.batch.solve_batch(np.stack([M, M]), 0.1), fields[:5]),
    }
    for name, (call, names) in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = call(ot)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # float32: no warning about a tolerance nobody set
            ours = call(fs)
        for field in names:
            assert np.asarray(getattr(ours, field)).dtype == np.asarray(getattr(theirs, field)).dtype, (name, field)
    for fn in ("sinkhorn_unbalanced", "sinkhorn_unbalanced2"):
        for b_ in (b, np.stack([b, b], axis=1)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # POT's "Use entropy" of a 2-D b
                theirs, pot_log = getattr(ot.unbalanced, fn)(a, b_, M, 0.1, 1.0, log=True)
                ours, log = getattr(fs.unbalanced, fn)(a, b_, M, 0.1, 1.0, log=True)
            assert ours.dtype == theirs.dtype and log["logu"].dtype == pot_log["logu"].dtype, fn


def test_unbalanced_type_is_ignored_for_balanced_ot_as_in_pot(rng):
    M, a, b = random_problem(rng, 8, 6)
    for unbalanced_type in ("L2", "TV"):
        np.testing.assert_array_equal(fs.solve(M, a, b, 0.1, unbalanced_type=unbalanced_type).plan,
                                      fs.solve(M, a, b, 0.1).plan)
        assert ot.solve(M, a, b, 0.1, unbalanced_type=unbalanced_type).plan.shape == (8, 6)
        with pytest.raises(NotImplementedError, match="unbalanced_type"):
            fs.solve(M, a, b, 0.1, unbalanced=1.0, unbalanced_type=unbalanced_type)
