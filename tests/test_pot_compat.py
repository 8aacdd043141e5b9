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
