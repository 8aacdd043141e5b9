"""fastsinkhorn.sinkhorn / sinkhorn2 / dist against POT itself."""

import warnings

import numpy as np
import ot
import pytest
from ot_testing import plan_error, random_problem

import fastsinkhorn as fs
from fastsinkhorn.problems import make_problem

POT_NAMES = ["sinkhorn", "sinkhorn_log", "sinkhorn_stabilized", "sinkhorn_epsilon_scaling", "greenkhorn"]


@pytest.mark.parametrize("method", POT_NAMES + ["sns"])
def test_same_plan_as_pot_when_converged(rng, method):
    M, a, b = random_problem(rng, 90, 70)
    reg = 5e-2
    ours = fs.sinkhorn(a, b, M, reg, method=method, stopThr=1e-13, numItermax=100_000)
    theirs = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-16)


def test_sinkhorn2_is_the_linear_loss(rng):
    M, a, b = random_problem(rng, 60, 50)
    ours = fs.sinkhorn2(a, b, M, 0.1, stopThr=1e-12)
    theirs = ot.sinkhorn2(a, b, M, 0.1, stopThr=1e-12)
    assert np.ndim(ours) == 0 and type(ours) is type(theirs)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-8)
    loss, log = fs.sinkhorn2(a, b, M, 0.1, log=True)
    assert float(loss) == pytest.approx(float(ours), rel=1e-8) and "err" in log


def test_empty_marginals_mean_uniform(rng):
    M, _, _ = random_problem(rng, 20, 30)
    ours = fs.sinkhorn([], [], M, 0.1, stopThr=1e-12)
    theirs = ot.sinkhorn([], [], M, 0.1, stopThr=1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-16)


@pytest.mark.parametrize("fn", ["sinkhorn", "sinkhorn2"])
def test_two_dimensional_b_returns_k_losses(rng, fn):
    M, a, _ = random_problem(rng, 40, 30)
    B = rng.random((30, 3))
    B /= B.sum(0)
    ours = getattr(fs, fn)(a, B, M, 0.1, stopThr=1e-12)
    theirs = getattr(ot, fn)(a, B, M, 0.1, stopThr=1e-12, numItermax=10_000)
    assert ours.shape == (3,)
    np.testing.assert_allclose(ours, theirs, rtol=1e-7)
    losses, log = getattr(fs, fn)(a, B, M, 0.1, log=True)
    assert log["u"].shape == (40, 3) and log["v"].shape == (30, 3)


def test_log_has_pots_keys(rng):
    M, a, b = random_problem(rng, 30, 20)
    for method, keys in [("sinkhorn", {"err", "niter", "u", "v"}),
                         ("sinkhorn_log", {"err", "niter", "u", "v", "log_u", "log_v"}),
                         ("sinkhorn_stabilized", {"err", "n_iter", "logu", "logv", "alpha", "beta", "warmstart"})]:
        P, log = fs.sinkhorn(a, b, M, 0.1, method=method, log=True)
        _, pot_log = ot.sinkhorn(a, b, M, 0.1, method=method, log=True)
        assert keys <= set(log) and keys <= set(pot_log)
        # the scalings reproduce the plan as in POT: P = diag(u) exp(-M/reg) diag(v)
        np.testing.assert_allclose(log["u"][:, None] * np.exp(-M / 0.1) * log["v"][None, :], P, rtol=1e-9)


def test_pot_warmstart_conventions(rng):
    M, a, b = random_problem(rng, 50, 40)
    _, log = fs.sinkhorn(a, b, M, 5e-2, method="sinkhorn_log", log=True, stopThr=1e-12)
    _, again = fs.sinkhorn(a, b, M, 5e-2, method="sinkhorn_log", log=True, stopThr=1e-12,
                           warmstart=(log["log_u"], log["log_v"]))
    assert again["niter"] <= 2 < log["niter"]
    _, log_s = fs.sinkhorn(a, b, M, 5e-2, method="sinkhorn_stabilized", log=True, stopThr=1e-12)
    _, again_s = fs.sinkhorn(a, b, M, 5e-2, method="sinkhorn_stabilized", log=True, stopThr=1e-12,
                             warmstart=log_s["warmstart"])
    assert again_s["niter"] <= 2


def test_small_reg_where_pot_scaling_underflows():
    p = make_problem("cloud", 300, seed=0)
    reg = 2e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ot.sinkhorn(p.a, p.b, p.M, reg)
    assert not plan_error(np.nan_to_num(theirs), p.a, p.b) < 1e-3
    for method in ("sinkhorn", "sns"):
        ours = fs.sinkhorn(p.a, p.b, p.M, reg, method=method, numItermax=20_000, stopThr=1e-10)
        assert plan_error(ours, p.a, p.b) < 1e-8 and np.isfinite(ours).all()


def test_stopthr_uses_pots_criterion(rng):
    """POT stops on ||P^T 1 - b||_2 after a row update; so do we."""
    M, a, b = random_problem(rng, 80, 60)
    P, log = fs.sinkhorn(a, b, M, 1e-2, stopThr=1e-6, log=True)
    np.testing.assert_allclose(P.sum(1), a, rtol=1e-12)  # rows exact
    assert np.linalg.norm(P.sum(0) - b) < 1e-6
    assert log["err"][-1] < 1e-6 <= log["err"][-2]


def test_non_convergence_warns_like_pot(rng):
    M, a, b = random_problem(rng, 40, 40)
    with pytest.warns(UserWarning, match="Sinkhorn did not converge"):
        fs.sinkhorn(a, b, M, 1e-3, numItermax=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs.sinkhorn(a, b, M, 1e-3, numItermax=5, warn=False)
        fs.sinkhorn2(a, b, M, 1e-3, numItermax=5)  # warn=False by default, as in POT


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        fs.sinkhorn([1.0], [1.0], [[0.0]], 1.0, method="nope")


def test_sns_options_pass_through(rng):
    M, a, b = random_problem(rng, 50, 50)
    P = fs.sinkhorn(a, b, M, 1e-3, method="sns", density=0.5, stopThr=1e-10)
    assert plan_error(P, a, b) < 1e-9


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cityblock", "minkowski"])
def test_dist_matches_pot(rng, metric):
    x, y = rng.random((20, 3)), rng.random((15, 3))
    np.testing.assert_allclose(fs.dist(x, y, metric=metric, p=3), ot.dist(x, y, metric=metric, p=3),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fs.dist(x), ot.dist(x), atol=1e-12)
    assert (np.diag(fs.dist(x)) == 0).all()


def test_sns_stops_on_pots_norm():
    """``stopThr`` is compared with POT's L2 quantity on every method, SNS
    included (it used to stop SNS on the L1 error, a different criterion)."""
    p = make_problem("cloud", 300, seed=1)
    P, log = fs.sinkhorn(p.a, p.b, p.M, 1e-3, method="sns", stopThr=1e-7, log=True)
    r, c = P.sum(1), P.sum(0)
    assert np.linalg.norm(c - p.b) <= 1e-7 and log["converged"]
    joint = np.sqrt(((r - p.a) ** 2).sum() + ((c - p.b) ** 2).sum())
    assert log["err"][-1] == pytest.approx(joint, rel=1e-6)  # the L2 error, not the L1
    assert log["err"][-1] <= 1e-7 < log["err"][-2]
    l1 = fs.solve(p.M, p.a, p.b, reg=1e-3, method="sns", tol=1e-7)
    assert log["niter"] <= l1.n_iter


# -- POT's knobs (warn, verbose, print_period, log, tau, ...) on every method --------------------

ALL_METHODS = POT_NAMES + ["sinkhorn_knopp", "sns"]
#: The keys each of POT's variants puts in its log (POT 0.9).
POT_LOG_KEYS = {
    "sinkhorn": {"err", "niter", "u", "v"},
    "sinkhorn_log": {"err", "niter", "u", "v", "log_u", "log_v"},
    "sinkhorn_stabilized": {"err", "n_iter", "logu", "logv", "alpha", "beta", "warmstart"},
    "sinkhorn_epsilon_scaling": {"err", "niter", "alpha", "beta", "warmstart"},
    "greenkhorn": {"n_iter", "u", "v"},
}


def _pot_message(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("two_d", [False, True], ids=["b1d", "b2d"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_warn_on_every_method(rng, method, two_d):
    M, a, b = random_problem(rng, 30, 20)
    if two_d:
        b = np.stack([b, b[::-1]], axis=1)
    pot_text = _pot_message(ot.sinkhorn, a, b, M, 1e-3, numItermax=3)
    assert len(pot_text) == 1
    # epsilon scaling's numItermax counts epsilon steps (3500 iterations at least, as POT's):
    # stopThr=0 makes it run them all
    short = {"stopThr": 0} if method == "sinkhorn_epsilon_scaling" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fs.sinkhorn(a, b, M, 1e-3, method=method, numItermax=3, **short)
    assert [str(w.message) for w in caught] == pot_text  # POT's text, once even for 2-D b
    assert issubclass(caught[0].category, fs.ConvergenceWarning)
    calls = [lambda: fs.sinkhorn(a, b, M, 1e-3, method=method, numItermax=3, warn=False),
             lambda: fs.sinkhorn(a, b, M, 0.5, method=method, warn=True)]          # converges
    if method in fs.pot.entropic.SINKHORN2_METHODS:
        calls.append(lambda: fs.sinkhorn2(a, b, M, 1e-3, method=method, numItermax=3))  # warn=False default
    for call in calls:
        assert _pot_message(call) == []


def _table(text):
    """(header lines, [(iteration, error)]) of POT's verbose output."""
    lines = text.splitlines()
    rows = [(int(line.split("|")[0]), float(line.split("|")[1])) for line in lines if line.endswith("|")]
    return [line for line in lines if not line.endswith("|")], rows


@pytest.mark.parametrize("method", ALL_METHODS)
def test_verbose_prints_pots_table(rng, capsys, method):
    M, a, b = random_problem(rng, 30, 20)
    ot.sinkhorn(a, b, M, 0.05, verbose=True, stopThr=1e-3)
    pot_header, _ = _table(capsys.readouterr().out)
    for period in (None, 7):
        extra = {} if period is None else {"print_period": period}
        _, log = fs.sinkhorn(a, b, M, 0.05, method=method, verbose=True, log=True, stopThr=1e-8, **extra)
        header, rows = _table(capsys.readouterr().out)
        assert header == pot_header[:2]
        step = period or (20 if method == "sinkhorn_stabilized" else 10)
        # every print_period-th iteration (0-based, as POT's niter), then the last check
        assert [i for i, _ in rows[:-1]] == list(range(0, step * (len(rows) - 1), step))
        assert rows[-1] == (log["niter"], pytest.approx(log["err"][-1], rel=1e-6)) and rows[-1][1] < 1e-8
        history = log["result"].history
        checked = dict(zip(history["iteration"], history["error"]))
        for i, err in rows:
            assert err == pytest.approx(checked[i + 1], rel=1e-6)
    fs.sinkhorn(a, b, M, 0.05, method=method, stopThr=1e-8)
    assert capsys.readouterr().out == ""


def test_verbose_with_two_d_b_prints_one_joint_table_like_pot(rng, capsys):
    """A 2-D ``b`` is iterated jointly (one batch), as POT does: one table of
    the joint error, whose last row is the final ``err``."""
    M, a, b = random_problem(rng, 30, 20)
    _, log = fs.sinkhorn(a, np.stack([b, b[::-1], b], axis=1), M, 0.05, verbose=True, log=True)
    _, rows = _table(capsys.readouterr().out)
    assert [i for i, _ in rows].count(0) == 1
    assert rows[-1] == (log["niter"], pytest.approx(log["err"][-1], rel=1e-6))


@pytest.mark.parametrize("method", POT_NAMES)
def test_log_values_match_pot(rng, method):
    M, a, b = random_problem(rng, 30, 20)
    reg = 0.1
    P, log = fs.sinkhorn(a, b, M, reg, method=method, log=True, stopThr=1e-12)
    P_pot, pot = ot.sinkhorn(a, b, M, reg, method=method, log=True, stopThr=1e-12,
                             numItermax=100 if method == "sinkhorn_epsilon_scaling" else 100_000)
    assert POT_LOG_KEYS[method] <= set(pot) and set(pot) <= set(log)
    np.testing.assert_allclose(P, P_pot, rtol=1e-6, atol=1e-12)
    # scalings and potentials are defined up to a constant: compare what fixes the plan
    if "u" in pot:
        np.testing.assert_allclose(np.outer(log["u"], log["v"]), np.outer(pot["u"], pot["v"]), rtol=1e-6)
    if "log_u" in pot:
        np.testing.assert_allclose(np.add.outer(log["log_u"], log["log_v"]),
                                   np.add.outer(pot["log_u"], pot["log_v"]), rtol=1e-8, atol=1e-8)
    if "logu" in pot:
        np.testing.assert_allclose(np.add.outer(log["logu"], log["logv"]),
                                   np.add.outer(pot["logu"], pot["logv"]), rtol=1e-8, atol=1e-8)
    if "alpha" in pot:
        np.testing.assert_allclose(np.add.outer(log["alpha"], log["beta"]),
                                   np.add.outer(pot["alpha"], pot["beta"]), rtol=1e-8, atol=1e-10)
        assert log["warmstart"][0] is log["alpha"] and log["warmstart"][1] is log["beta"]
    # niter / n_iter: POT's 0-based index of the last iteration
    assert log["niter"] == log["n_iter"] == log["result"].n_iter - 1
    # err: POT's stopping quantity (L2 column violation, rows exact) at each check
    assert all(type(e) is float for e in log["err"])
    assert log["err"][-1] == pytest.approx(np.linalg.norm(P.sum(0) - b), rel=1e-6)
    assert log["err"][-1] < 1e-12 <= log["err"][-2]


def test_log_of_two_d_b(rng):
    M, a, _ = random_problem(rng, 30, 20)
    B = rng.random((20, 3))
    B /= B.sum(0)
    losses, log = fs.sinkhorn(a, B, M, 0.1, log=True, stopThr=1e-10)
    _, pot = ot.sinkhorn(a, B, M, 0.1, log=True, stopThr=1e-10)
    assert set(pot) <= set(log)
    for k in range(3):
        np.testing.assert_allclose(np.outer(log["u"][:, k], log["v"][:, k]),
                                   np.outer(pot["u"][:, k], pot["v"][:, k]), rtol=1e-6)
        plan = log["u"][:, k, None] * np.exp(-M / 0.1) * log["v"][None, :, k]
        assert losses[k] == pytest.approx((M * plan).sum(), rel=1e-9)
    result = log["result"]  # the k problems were solved as one batch, like POT's joint iteration
    assert result.batched and log["niter"] == result.n_iter - 1
    # err: one list of floats, the norm of all k column violations (POT's joint criterion)
    final = [np.linalg.norm(result.marginals[1][k] - B[:, k]) for k in range(3)]  # (lazy plans)
    assert all(type(e) is float for e in log["err"])
    assert log["err"][-1] == pytest.approx(np.sqrt(np.sum(np.square(final))), rel=1e-6)
    assert log["err"][-1] < 1e-10 <= log["err"][-2]
    assert len(log["err"]) == result.n_iter  # one check an iteration on the CPU


@pytest.mark.parametrize("method", POT_NAMES + ["sinkhorn_knopp"])
def test_stopthr_is_pots_criterion_on_every_method(rng, method):
    M, a, b = random_problem(rng, 60, 40)
    P, log = fs.sinkhorn(a, b, M, 1e-2, method=method, stopThr=1e-6, log=True)
    np.testing.assert_allclose(P.sum(1), a, rtol=1e-12)  # rows exact, as after POT's row update
    assert np.linalg.norm(P.sum(0) - b) == pytest.approx(log["err"][-1], rel=1e-6)
    assert log["err"][-1] < 1e-6 <= log["err"][-2] and log["converged"]


def _count_kernel_evaluations(monkeypatch):
    from fastsinkhorn.backends import get_backend

    be, calls = get_backend("cpu"), []
    original = be.plan
    monkeypatch.setattr(be, "plan", lambda *args: calls.append(1) or original(*args))
    return calls


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_stabilized", "sns"])
def test_tau_is_the_absorption_threshold(rng, monkeypatch, method):
    """tau bounds the scalings: each absorption recomputes the kernel (one ``plan`` call)."""
    M, a, b = random_problem(rng, 40, 30)
    calls = _count_kernel_evaluations(monkeypatch)
    P_default = fs.sinkhorn(a, b, M, 1e-2, method=method, stopThr=1e-10, numItermax=20_000)
    default = len(calls)
    P_tau = fs.sinkhorn(a, b, M, 1e-2, method=method, stopThr=1e-10, numItermax=20_000, tau=1.5)
    assert len(calls) - default > default + 5  # many more absorptions with tau = 1.5
    np.testing.assert_allclose(P_tau, P_default, rtol=1e-6, atol=1e-14)
    with pytest.raises(TypeError, match="tau"):
        fs.sinkhorn(a, b, M, 1e-2, method=method, tau=10.0, absorb_threshold=10.0)


@pytest.mark.parametrize("name,default", [("epsilon0", 1e4), ("numInnerItermax", 100)])
def test_epsilon_scaling_keywords_raise_unless_default(rng, name, default):
    M, a, b = random_problem(rng, 20, 10)
    with pytest.raises(NotImplementedError, match=name):
        fs.sinkhorn(a, b, M, 0.1, method="sinkhorn_epsilon_scaling", **{name: 2 * default})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = fs.sinkhorn(a, b, M, 0.1, method="sinkhorn_epsilon_scaling", **{name: default})
    np.testing.assert_array_equal(P, fs.sinkhorn(a, b, M, 0.1, method="sinkhorn_epsilon_scaling"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_print_period_must_be_a_positive_int(rng, bad):
    M, a, b = random_problem(rng, 5, 4)
    with pytest.raises(ValueError, match="print_period"):
        fs.sinkhorn(a, b, M, 0.1, verbose=True, print_period=bad)


def test_dist_knobs(rng):
    from scipy.spatial.distance import cdist

    x, y = rng.random((20, 3)), rng.random((15, 3))
    for metric in ("sqeuclidean", "euclidean", "cityblock"):
        ours = fs.dist(x, y, metric=metric, backend="scipy")
        np.testing.assert_array_equal(ours, cdist(x, y, metric=metric))
        np.testing.assert_array_equal(ours, ot.dist(x, y, metric=metric, backend="scipy"))
    # the default path is the expansion |x|^2 + |y|^2 - 2 x.y, not cdist
    assert not np.array_equal(fs.dist(x, y), cdist(x, y, "sqeuclidean"))
    np.testing.assert_array_equal(fs.dist(x, y, nx=ot.backend.NumpyBackend()), fs.dist(x, y))
    np.testing.assert_array_equal(fs.dist(x, y, metric="cityblock", use_tensor=True),
                                  fs.dist(x, y, metric="cityblock"))

    class Torchish:
        __name__ = "torch"

    with pytest.raises(NotImplementedError, match="nx"):
        fs.dist(x, y, nx=Torchish())
    with pytest.raises(NotImplementedError, match="backend"):
        fs.dist(x, y, backend="jax")


# -- POT's method names run our best method (issue 19: no silently unconverged value) ----------

def _small_reg_problem(rng, n=150):
    """Point clouds at reg = 1e-5 of the cost range: 1000 Sinkhorn iterations
    (POT's numItermax) return about half of the true loss, SNS converges."""
    x, y = rng.random((n, 2)), rng.random((n, 2))
    M = ot.dist(x, y)
    M /= M.max()
    a = np.full(n, 1 / n)
    return M, a, a.copy(), 1e-5


def _assert_entropic_loss(loss, M, a, b, reg, log_u, log_v):
    """``loss`` is ``<M, P>`` of the entropic optimum. The plan of the returned
    log-scalings, ``exp(log_u + log_v - M / reg)``, has the Gibbs form of the
    optimum and, to POT's ``stopThr`` (1e-9 on its L2 column norm: at most
    ``sqrt(m) 1e-9`` in L1; rows exact), the marginals asked for, which makes
    it the optimum (KKT); ``loss`` is its cost, above exact OT (``ot.emd2``)."""
    P = np.exp(log_u[:, None] + log_v[None, :] - M / reg)
    assert np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum() <= np.sqrt(len(b)) * 1e-9
    assert float(loss) == pytest.approx(float((M * P).sum()), rel=1e-12)
    assert float(loss) >= ot.emd2(a, b, M) - 1e-12


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log", "sinkhorn_stabilized"])
def test_sinkhorn2_at_small_reg_is_right_within_pots_default_budget(rng, method):
    M, a, b, reg = _small_reg_problem(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: nothing to warn about
        loss, log = fs.sinkhorn2(a, b, M, reg, method=method, log=True)
        P = fs.sinkhorn(a, b, M, reg, method=method)
    assert log["converged"] and log["niter"] < 1000
    _assert_entropic_loss(loss, M, a, b, reg, log["log_u"], log["log_v"])
    assert np.linalg.norm(P.sum(0) - b) <= 1e-9 and np.linalg.norm(P.sum(1) - a) <= 1e-9


def test_two_dimensional_b_at_small_reg_is_right(rng):
    M, a, b, reg = _small_reg_problem(rng, n=100)
    B = np.stack([b, rng.dirichlet(np.ones(len(b)))], axis=1)
    losses, log = fs.sinkhorn2(a, B, M, reg, log=True)
    assert log["converged"] and losses.shape == (2,)
    for k in range(2):
        _assert_entropic_loss(losses[k], M, a, B[:, k], reg, log["log_u"][:, k], log["log_v"][:, k])


def test_sinkhorn_keeps_pots_path_where_sinkhorn_is_the_best_method(rng):
    """Above auto's threshold (reg > 5e-3 of the cost range) POT's names still
    run Sinkhorn: rows exact after the last row update, as POT's."""
    M, a, b = random_problem(rng, 40, 30)
    P, log = fs.sinkhorn(a, b, M, 0.05, log=True)
    assert log["result"].method == "sinkhorn"
    np.testing.assert_allclose(P.sum(1), a, rtol=1e-12)


def test_sinkhorn2_refuses_the_methods_pots_sinkhorn2_refuses(rng):
    M, a, b = random_problem(rng, 10, 8)
    for method in ("greenkhorn", "sinkhorn_epsilon_scaling"):
        with pytest.raises(ValueError):
            ot.sinkhorn2(a, b, M, 0.1, method=method)
        with pytest.raises(ValueError, match=method):
            fs.sinkhorn2(a, b, M, 0.1, method=method)
        assert fs.sinkhorn(a, b, M, 0.1, method=method).shape == (10, 8)  # plans: both take them


# -- float32 (issue 19): POT's output dtypes, no warning about a tolerance nobody set -----------

def _float32_problem(rng):
    x, y = rng.random((40, 2)).astype(np.float32), rng.random((30, 2)).astype(np.float32)
    return x, y, np.full(40, 1 / 40, np.float32), np.full(30, 1 / 30, np.float32)


def _dtypes(value):
    if isinstance(value, tuple):
        return tuple(_dtypes(v) for v in value)
    return np.asarray(value).dtype


def test_float32_outputs_have_pots_dtypes_and_default_stopthr_is_silent(rng):
    x, y, a, b = _float32_problem(rng)
    B = np.stack([b, b[::-1]], axis=1)
    calls = {
        "dist": lambda L: L.dist(x, y),
        "dist cityblock": lambda L: L.dist(x, y, metric="cityblock"),
        "dist minkowski": lambda L: L.dist(x, y, metric="minkowski", p=3),
        "sinkhorn": lambda L: L.sinkhorn(a, b, L.dist(x, y), 0.1),
        "sinkhorn2": lambda L: L.sinkhorn2(a, b, L.dist(x, y), 0.1),
        "sinkhorn2 2-D b": lambda L: L.sinkhorn2(a, B, L.dist(x, y), 0.1),
        "sinkhorn log": lambda L: tuple(L.sinkhorn(a, b, L.dist(x, y), 0.1, method="sinkhorn_log",
                                                   log=True)[1][k] for k in ("log_u", "log_v")),
    }
    for name, call in calls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = call(ot)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # POT's stopThr=1e-9 is below float32: raised silently
            ours = call(fs)
        assert _dtypes(ours) == _dtypes(theirs), name
        if not isinstance(theirs, tuple) and np.ndim(theirs) == 0:
            assert type(ours) is type(theirs), name  # a NumPy scalar of the input's dtype
    P, log = fs.sinkhorn(a, b, fs.dist(x, y), 0.1, log=True)
    assert log["converged"] and P.dtype == np.float32


def test_float32_stopthr_set_by_the_user_below_reach_warns_naming_it(rng):
    x, y, a, b = _float32_problem(rng)
    with pytest.warns(UserWarning, match="stopThr=1.0e-09 is below what float32 can reach"):
        fs.sinkhorn(a, b, fs.dist(x, y), 0.1, stopThr=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs.sinkhorn(a, b, fs.dist(x, y), 0.1, stopThr=1e-5)  # reachable: no warning


# -- dist(x, x) as POT's -------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_dist_of_an_array_with_itself_has_a_zero_diagonal_as_pot(rng, metric):
    x = 10 * rng.random((60, 3)) + 100  # far from 0: |x|^2 + |x|^2 - 2 x.x leaves rounding
    D = fs.dist(x, x, metric=metric)
    assert (np.diag(D) == 0).all() and (np.diag(ot.dist(x, x, metric=metric)) == 0).all()
    a = np.full(60, 1 / 60)
    assert fs.emd2(a, a, D) == 0.0
    y = x.copy()  # a different array with the same values: no zeroing, in POT neither
    np.testing.assert_allclose(fs.dist(x, y, metric=metric), ot.dist(x, y, metric=metric), rtol=1e-9,
                               atol=1e-5)  # sqrt of a rounding error: up to 1e-5 either way
