"""Unbalanced fixed-support barycenters (``reg_m``): the log-domain driver
against POT's ``ot.unbalanced.barycenter_unbalanced`` (its iterates and its
converged answer), the balanced limit, the small ``reg`` where POT's scaling
fails (checked on the optimality conditions), and the argument checks."""

import inspect
import warnings

import numpy as np
import ot
import pytest

import fastsinkhorn as fs


def line_cost(n):
    x = np.linspace(0, 1, n)
    return (x[:, None] - x[None, :]) ** 2


def histograms(rng, k, n, masses=None, zeros=0):
    """``k`` random histograms (k, n) of the given masses (default 1), ``zeros``
    zero entries in the first."""
    A = rng.random((k, n)) + 0.05
    if zeros:
        A[0, rng.choice(n, size=zeros, replace=False)] = 0.0
    A /= A.sum(axis=1, keepdims=True)
    return A * (np.ones(k) if masses is None else np.asarray(masses, dtype=float))[:, None]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def pot_converged(A, M, reg, reg_m, w, iters=50000):
    """POT's scaling barycenter run to its fixed point (its ``stopThr`` is the
    relative change of ``q``)."""
    return quiet(ot.unbalanced.barycenter_unbalanced, A.T, M, reg, reg_m, weights=w, numItermax=iters,
                 stopThr=1e-15)


def optimality_gaps(M, res, A, w, reg, reg_m):
    """The unbalanced barycenter's conditions, by NumPy from the potentials:
    each plan ``P_p = exp((f_p + g_p - M) / reg)`` has the marginals
    ``a_p exp(-f_p / reg_m)`` and ``b exp(-g_p / reg_m)``, and ``b`` is the
    weighted mean of the plans' column marginals. Max relative L1 gaps."""
    f, g = res.potentials
    b = res.barycenter
    with np.errstate(invalid="ignore"):
        z = (f[:, :, None] + g[:, None, :] - M[None]) / reg
    P = np.exp(np.where(np.isnan(z), -np.inf, z))
    rows, cols = P.sum(axis=2), P.sum(axis=1)
    with np.errstate(invalid="ignore"):
        row_target = np.where(A > 0, A * np.exp(-f / reg_m), 0.0)
        col_target = np.where(b > 0, b * np.exp(-g / reg_m), 0.0)
    scale = b.sum()
    return (np.abs(rows - row_target).sum(axis=1).max() / scale,
            np.abs(cols - col_target).sum(axis=1).max() / scale,
            np.abs(w @ cols - b).sum() / scale)


# -- against POT --------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k, reg, reg_m, masses, weights", [
    (8, 1, 0.1, 1.0, [2.0], None),
    (20, 2, 0.05, 0.1, [1.0, 3.0], [0.7, 0.3]),
    (25, 3, 0.05, 1.0, [0.5, 1.0, 2.0], [0.2, 0.3, 0.5]),
    (30, 4, 0.1, 10.0, [1.0, 1.0, 4.0, 0.25], None),
    (16, 3, 0.5, 100.0, [1.0, 2.0, 0.5], [0.1, 0.1, 0.8]),
])
def test_matches_pot_barycenter_unbalanced(rng, n, k, reg, reg_m, masses, weights):
    M, A = line_cost(n), histograms(rng, k, n, masses)
    w = None if weights is None else np.array(weights)
    expected = pot_converged(A, M, reg, reg_m, w)
    ours, log = fs.unbalanced.barycenter_unbalanced(A.T, M, reg, reg_m, weights=w, numItermax=100000,
                                                    stopThr=1e-11, log=True)
    assert log["converged"]
    np.testing.assert_allclose(ours, expected, rtol=1e-7, atol=1e-12 * ours.max())
    # not the balanced answer: the masses differ, the barycenter's is its own
    assert k == 1 or abs(ours.sum() - np.mean(masses)) > 1e-3


@pytest.mark.parametrize("reg, reg_m", [(0.05, 0.5), (0.2, 20.0)])
def test_iterates_are_pots(rng, reg, reg_m):
    """The same iteration as POT's scaling one, in potentials: a few
    iterations give POT's ``q``, ``logu`` and ``logv`` to rounding."""
    n, k = 15, 3
    M, A, w = line_cost(n), histograms(rng, k, n, [1.0, 2.0, 0.5], zeros=3), np.array([0.5, 0.2, 0.3])
    q, plog = quiet(ot.unbalanced.barycenter_unbalanced, A.T, M, reg, reg_m, weights=w, numItermax=7,
                    stopThr=0.0, log=True)
    ours, log = fs.unbalanced.barycenter_unbalanced(A.T, M, reg, reg_m, weights=w, numItermax=7, stopThr=0.0,
                                                    log=True, warn=False)
    np.testing.assert_allclose(ours, q, rtol=1e-12)
    assert log["niter"] == plog["niter"] == 6
    finite = A.T > 0
    np.testing.assert_allclose(log["logu"][finite], plog["logu"][finite], rtol=1e-10, atol=1e-10)
    assert np.isneginf(log["logu"][~finite]).all()
    np.testing.assert_allclose(log["logv"], plog["logv"], rtol=1e-10, atol=1e-10)


def test_methods_and_functions_give_one_answer(rng):
    n = 12
    M, A = line_cost(n), histograms(rng, 2, n, [1.0, 2.0]).T
    ref = fs.unbalanced.barycenter_unbalanced(A, M, 0.05, 1.0, stopThr=1e-10)
    for method in ("sinkhorn", "SINKHORN_stabilized", "sinkhorn_reg_scaling", "sinkhorn_translation_invariant"):
        np.testing.assert_array_equal(fs.unbalanced.barycenter_unbalanced(A, M, 0.05, 1.0, method=method,
                                                                          stopThr=1e-10), ref)
    np.testing.assert_array_equal(fs.unbalanced.barycenter_unbalanced_sinkhorn(A, M, 0.05, 1.0, stopThr=1e-10), ref)
    np.testing.assert_array_equal(fs.unbalanced.barycenter_unbalanced_stabilized(A, M, 0.05, 1.0, tau=1e5,
                                                                                 stopThr=1e-10), ref)
    np.testing.assert_array_equal(fs.unbalanced.barycenter_unbalanced(A, M, 0.05, 1.0, method="sinkhorn_stabilized",
                                                                      tau=10.0, stopThr=1e-10), ref)
    assert fs.barycenter_unbalanced is fs.unbalanced.barycenter_unbalanced
    bar, log = fs.unbalanced.barycenter_unbalanced(A, M, 0.05, 1.0, stopThr=1e-10, log=True)
    assert {"err", "niter", "logu", "logv"} <= set(log) and log["logu"].shape == log["logv"].shape == (n, 2)
    assert log["niter"] == len(log["err"]) - 1 and log["err"][-1] <= 1e-10
    assert fs.unbalanced.barycenter_unbalanced(A.astype(np.float32), M, 0.05, 1.0).dtype == np.float32


# -- limits and conditions ------------------------------------------------------------------------

def test_large_reg_m_approaches_the_balanced_barycenter(rng):
    n, reg = 20, 0.5
    M, A, w = line_cost(n), histograms(rng, 3, n), np.array([0.2, 0.5, 0.3])
    balanced = fs.solve_barycenter(M, A, reg, w, tol=1e-12, max_iter=20000).barycenter
    gaps = []
    for reg_m in (1.0, 10.0, 100.0, 1000.0):
        res = fs.solve_barycenter(M, A, reg, w, reg_m=reg_m, tol=1e-11, max_iter=100000)
        assert res.converged
        gaps.append(np.abs(res.barycenter - balanced).sum())
    assert all(later < 0.2 * earlier for earlier, later in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 5e-3
    # reg_m = inf (or None) is the balanced driver itself
    np.testing.assert_array_equal(fs.solve_barycenter(M, A, reg, w, reg_m=np.inf, tol=1e-12,
                                                      max_iter=20000).barycenter, balanced)


@pytest.mark.parametrize("reg, reg_m", [(0.05, 0.3), (0.002, 0.5)])
def test_optimality_conditions(rng, reg, reg_m):
    n = 25
    M, A, w = line_cost(n), histograms(rng, 3, n, [1.0, 0.5, 2.0], zeros=4), np.array([0.3, 0.3, 0.4])
    res = fs.solve_barycenter(M, A, reg, w, reg_m=reg_m, tol=1e-11, max_iter=50000)
    assert res.converged and np.isfinite(res.barycenter).all()
    assert max(optimality_gaps(M, res, A, w, reg, reg_m)) < 1e-9


@pytest.mark.parametrize("reg_m", [0.01, 0.1])
def test_small_reg_where_pots_scaling_fails(reg_m):
    """At ``reg = 1e-4`` ``exp(-M / reg)`` underflows between the two
    supports: POT's scaling method stops on numerical errors at once (and
    returns its initial ``q``), its stabilised one too; ours converges to the
    point that meets the optimality conditions."""
    n, reg = 30, 1e-4
    x = np.linspace(0, 1, n)
    A = np.zeros((2, n))
    A[0, :6], A[1, -6:] = np.exp(-(x[:6] - 0.1) ** 2 / 0.01), 2 * np.exp(-(x[-6:] - 0.9) ** 2 / 0.01)
    A /= A[0].sum()
    M, w = line_cost(n), np.array([0.5, 0.5])
    with pytest.warns(UserWarning, match="Numerical errors"):
        pot = quiet_numpy(ot.unbalanced.barycenter_unbalanced, A.T, M, reg, reg_m, weights=w)
    res = fs.solve_barycenter(M, A, reg, w, reg_m=reg_m, tol=1e-11, max_iter=20000)
    assert res.converged and np.isfinite(res.barycenter).all() and 0.5 < res.barycenter.sum() < 1.5
    assert max(optimality_gaps(M, res, A, w, reg, reg_m)) < 1e-9
    assert np.abs(pot - res.barycenter).max() > 0.5  # POT's answer is not the barycenter
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stab = quiet_numpy(ot.unbalanced.barycenter_unbalanced_stabilized, A.T, M, reg, reg_m, weights=w,
                           numItermax=20000, stopThr=1e-12)
    failed = [c for c in caught if "did not converge" in str(c.message) or "Numerical" in str(c.message)]
    if not failed:  # POT's stabilised method, where it converges
        np.testing.assert_allclose(stab, res.barycenter, atol=1e-6)
    # the drop-in, at POT's defaults, gives the same barycenter
    np.testing.assert_allclose(fs.unbalanced.barycenter_unbalanced(A.T, M, reg, reg_m, weights=w),
                               res.barycenter, atol=1e-6)


def quiet_numpy(fn, *args, **kwargs):
    with np.errstate(all="ignore"):
        return fn(*args, **kwargs)


def test_zero_weight_and_grid(rng):
    n = 12
    M, A = line_cost(n), histograms(rng, 3, n, [1.0, 5.0, 2.0])
    with_zero = fs.solve_barycenter(M, A, 0.05, [0.5, 0.0, 0.5], reg_m=1.0, tol=1e-12, max_iter=20000)
    without = fs.solve_barycenter(M, A[[0, 2]], 0.05, reg_m=1.0, tol=1e-12, max_iter=20000)
    np.testing.assert_allclose(with_zero.barycenter, without.barycenter, atol=1e-11)
    grid = fs.Grid((4, 5))
    B = histograms(rng, 2, grid.size, [1.0, 3.0])
    on_grid = fs.solve_barycenter(grid, B.reshape(2, 4, 5), 0.02, reg_m=0.5, tol=1e-11, max_iter=20000)
    dense = fs.solve_barycenter(grid.cost_matrix(), B, 0.02, reg_m=0.5, tol=1e-11, max_iter=20000)
    assert on_grid.converged and on_grid.barycenter.shape == (4, 5)
    np.testing.assert_allclose(on_grid.barycenter.ravel(), dense.barycenter, atol=1e-10)


def test_not_converged_warns(rng):
    M, A = line_cost(10), histograms(rng, 2, 10, [1.0, 2.0])
    with pytest.warns(UserWarning, match="did not converge"):
        fs.unbalanced.barycenter_unbalanced(A.T, M, 0.1, 100.0, numItermax=5)
    res = fs.solve_barycenter(M, A, 0.1, reg_m=100.0, max_iter=5, warn=False)
    assert not res.converged and res.n_iter == 5 and len(res.history) == 5


# -- arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reg_m, error", [(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError),
                                          ("big", TypeError), (True, TypeError), ([1.0, 2.0], TypeError)])
def test_reg_m_errors(rng, reg_m, error):
    with pytest.raises(error, match="reg_m"):
        fs.solve_barycenter(line_cost(6), histograms(rng, 2, 6), 0.1, reg_m=reg_m)


def test_argument_errors(rng):
    M, A = line_cost(6), histograms(rng, 2, 6, [1.0, 2.0])
    fs.solve_barycenter(M, A, 0.1, reg_m=1.0)  # different masses: fine when unbalanced
    with pytest.raises(ValueError, match="equal sums"):
        fs.solve_barycenter(M, A, 0.1)
    with pytest.raises(NotImplementedError, match="debiased"):
        fs.solve_barycenter(M, A, 0.1, debiased=True, reg_m=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        fs.solve_barycenter(M, A - 0.5, 0.1, reg_m=1.0)
    with pytest.raises(ValueError, match="Unknown method"):
        fs.unbalanced.barycenter_unbalanced(A.T, M, 0.1, 1.0, method="new_method")
    with pytest.raises(NotImplementedError, match="tau"):
        fs.unbalanced.barycenter_unbalanced(A.T, M, 0.1, 1.0, tau=10.0)  # POT's sinkhorn takes no tau
    with pytest.raises(NotImplementedError, match="unknown_option"):
        fs.unbalanced.barycenter_unbalanced(A.T, M, 0.1, 1.0, method="sinkhorn_stabilized", unknown_option=1)
    with pytest.raises(ValueError, match="weights"):
        fs.unbalanced.barycenter_unbalanced(A.T, M, 0.1, 1.0, weights=[1.0])
    with pytest.raises(ValueError, match="reg"):
        fs.unbalanced.barycenter_unbalanced(A.T, M, 0.0, 1.0)


@pytest.mark.parametrize("name", ["barycenter_unbalanced", "barycenter_unbalanced_sinkhorn",
                                  "barycenter_unbalanced_stabilized"])
def test_drop_ins_have_pots_signatures(name):
    ours, theirs = inspect.signature(getattr(fs.unbalanced, name)), inspect.signature(getattr(ot.unbalanced, name))
    assert [(p.name, p.default) for p in ours.parameters.values() if p.name != "warn"] == \
        [(p.name, p.default) for p in theirs.parameters.values()]
