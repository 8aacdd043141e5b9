"""Fixed-support barycenters: the log-domain driver against POT's own barycenter
functions, its optimality conditions, grids against their dense cost, the
small ``reg`` where POT's scaling underflows, and the argument checks."""

import warnings

import numpy as np
import ot
import pytest
from scipy.special import logsumexp

import fastsinkhorn as fs
from fastsinkhorn.algorithms.barycenter import barycenter_potentials


class DenseStandIn:
    """The two passes of a dense cost by SciPy (independent of the package's
    geometries): what the driver needs, nothing more."""

    xp = np

    def __init__(self, M):
        self.M, self.shape = M, M.shape

    def lse_rows(self, g, reg):
        return logsumexp((g[:, None, :] - self.M[None]) / reg, axis=2)

    def lse_cols(self, f, reg):
        return logsumexp((f[:, :, None] - self.M[None]) / reg, axis=1)


def histograms(rng, k, n, zeros=0):
    """``k`` random histograms (k, n) of unit mass, ``zeros`` zero entries in the first."""
    A = rng.random((k, n)) + 0.05
    if zeros:
        A[0, rng.choice(n, size=zeros, replace=False)] = 0.0
    return A / A.sum(axis=1, keepdims=True)


def gaussians(n, params):
    """Histograms (k, n) of Gaussians ``(mean, std)`` on ``linspace(0, 1, n)``."""
    x = np.linspace(0, 1, n)
    A = np.stack([np.exp(-(x - mu) ** 2 / (2 * s * s)) for mu, s in params])
    return A / A.sum(axis=1, keepdims=True)


def line_cost(n, m=None):
    x, y = np.linspace(0, 1, n), np.linspace(0, 1, m or n)
    return (x[:, None] - y[None, :]) ** 2


def plans(M, res):
    """The k plans ``exp((f_p + g_p - M) / reg)``, by NumPy."""
    f, g = res.potentials
    with np.errstate(invalid="ignore"):
        z = (f[:, :, None] + g[:, None, :] - M[None]) / res.reg
    return np.exp(np.where(np.isnan(z), -np.inf, z))


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# -- against POT --------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k, zeros, reg", [(7, 1, 0, 0.05), (23, 3, 4, 0.01), (31, 5, 0, 0.004)])
@pytest.mark.parametrize("weighted", [False, True])
def test_dense_matches_pot_log_barycenter(rng, n, k, zeros, reg, weighted):
    M = line_cost(n) * (1 + 0.3 * rng.random((n, n)))  # not symmetric: rows and columns told apart
    A = histograms(rng, k, n, zeros)
    w = rng.random(k) + 0.1 if weighted else None
    w = None if w is None else w / w.sum()  # POT takes them on the simplex (ours normalises)
    ours, log = fs.bregman.barycenter(A.T, M, reg, w, stopThr=1e-11, numItermax=20000, log=True)
    theirs = ot.bregman.barycenter(A.T, M, reg, w, method="sinkhorn_log", stopThr=1e-13, numItermax=20000)
    assert log["converged"] and log["err"][-1] <= 1e-11
    np.testing.assert_allclose(ours, theirs, atol=1e-10)
    assert ours.sum() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("shape, k, reg", [((6, 5), 2, 0.02), ((9, 4), 3, 0.01), ((1, 11), 2, 0.005)])
def test_grid_matches_pot_convolutional_barycenter(rng, shape, k, reg):
    A = histograms(rng, k, int(np.prod(shape))).reshape((k,) + shape)
    w = rng.random(k) + 0.1
    w /= w.sum()
    ours, log = fs.bregman.convolutional_barycenter2d(A, reg, w, stopThr=1e-11, log=True)
    theirs = ot.bregman.convolutional_barycenter2d(A, reg, w, stopThr=1e-13, numItermax=50000)
    assert ours.shape == shape and log["converged"]
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert set(log) >= {"err", "niter", "U", "V", "potentials"} and log["U"].shape == A.shape


def test_debiased_matches_pot(rng):
    """Where POT's debiased scaling converges: small reg (its self-transport
    is a deconvolution, slow at large reg), Gaussian histograms."""
    M, A = line_cost(15), gaussians(15, [(0.3, 0.1), (0.6, 0.1), (0.5, 0.2)])
    w = np.array([0.3, 0.5, 0.2])
    ours, log = fs.bregman.barycenter_debiased(A.T, M, 0.005, w, stopThr=1e-10, log=True)
    theirs = quiet(ot.bregman.barycenter_debiased, A.T, M, 0.005, w, stopThr=1e-13, numItermax=20000)
    assert log["converged"]
    np.testing.assert_allclose(ours, theirs, atol=1e-8)
    assert np.abs(ours - fs.barycenter(A.T, M, 0.005, w, stopThr=1e-10)).max() > 1e-3  # not the plain one


def test_small_reg_where_pot_convolution_underflows():
    """reg = 1e-3 on a 4 x 9 grid, masses at the two ends: POT's kernel
    exp(-1 / reg) is 0, its convolutional barycenter NaN; ours equals POT's
    log-domain barycenter on the dense cost."""
    rng = np.random.default_rng(5)
    A = np.zeros((2, 4, 9))
    A[0][:, :2], A[1][:, -2:] = rng.random((4, 2)) + 0.1, rng.random((4, 2)) + 0.1
    A /= A.sum(axis=(1, 2), keepdims=True)
    reg = 1e-3
    pot_scaling = quiet(ot.bregman.convolutional_barycenter2d, A, reg)
    assert np.isnan(pot_scaling).any() or pot_scaling.sum() == 0
    ours, log = fs.bregman.convolutional_barycenter2d(A, reg, stopThr=1e-9, log=True)
    M = fs.Grid((4, 9)).cost_matrix()
    theirs = ot.bregman.barycenter(A.reshape(2, -1).T, M, reg, method="sinkhorn_log", stopThr=1e-11,
                                   numItermax=20000)
    assert log["converged"] and np.isfinite(ours).all()
    np.testing.assert_allclose(ours.ravel(), theirs, atol=1e-8)
    assert ours[:, 3:6].sum() > 0.99  # the mass meets in the middle


# -- optimality conditions -------------------------------------------------------------------------

@pytest.mark.parametrize("debiased", [False, True])
def test_optimality_conditions(rng, debiased):
    """Each plan's rows are its histogram and its columns the barycenter; the
    dual condition of the barycenter, ``sum_p w_p g_p = h`` (``h = 0`` unless
    debiased), holds up to a constant (which potentials may shift by)."""
    n, k = 15, 3
    M = line_cost(n)
    if debiased:  # where the debiased iteration converges fast (see test_debiased_matches_pot)
        A, reg = gaussians(n, [(0.3, 0.1), (0.6, 0.1), (0.5, 0.2)]), 0.005
        A[0, -3:] = 0.0
        A /= A.sum(axis=1, keepdims=True)
    else:
        A, reg = histograms(rng, k, n, zeros=3), 0.02
    w = np.array([0.2, 0.5, 0.3])
    with np.errstate(divide="ignore"):
        log_a = np.log(A)
    res = barycenter_potentials(DenseStandIn(M), log_a, reg, w, debiased=debiased, tol=1e-10, max_iter=50000)
    assert res.converged and res.error <= 1e-10
    P = plans(M, res)
    np.testing.assert_allclose(P.sum(axis=2), A, atol=1e-12)
    np.testing.assert_allclose(P.sum(axis=1), np.broadcast_to(res.barycenter, (k, n)), atol=1e-9)
    assert (P[0][A[0] == 0] == 0).all() and (A[0] == 0).sum() == 3  # zero masses send nothing
    dual = (w[:, None] * res.potentials[1]).sum(axis=0)
    if debiased:
        h = res.self_potential
        self_plan = np.exp((h[:, None] + h[None, :] - M) / reg)
        np.testing.assert_allclose(self_plan.sum(axis=0), res.barycenter, atol=1e-9)
        dual = dual - h
    np.testing.assert_allclose(dual - dual.mean(), 0, atol=1e-6 * reg)


def test_rectangular_cost(rng):
    """Histograms on n points, barycenter on m != n: the marginals hold."""
    n, m, reg = 9, 14, 0.01
    M = line_cost(n, m)
    A = histograms(rng, 2, n)
    res = fs.solve_barycenter(M, A, reg, tol=1e-10, max_iter=20000)
    assert res.barycenter.shape == (m,) and res.converged
    P = plans(M, res)
    np.testing.assert_allclose(P.sum(axis=2), A, atol=1e-12)
    np.testing.assert_allclose(P.sum(axis=1), np.broadcast_to(res.barycenter, (2, m)), atol=1e-9)


def test_debiased_barycenter_of_copies_is_the_histogram(rng):
    """S_reg(a, b) = 0 only at b = a: the debiased barycenter of copies of
    ``a`` is ``a``; the plain one is blurred (so the check can fail)."""
    a = histograms(rng, 1, 30).reshape(6, 5)
    A = np.stack([a, a])
    deb = fs.solve_barycenter(fs.Grid((6, 5)), A, 0.01, debiased=True, tol=1e-10, max_iter=20000)
    plain = fs.solve_barycenter(fs.Grid((6, 5)), A, 0.01, tol=1e-10, max_iter=20000)
    np.testing.assert_allclose(deb.barycenter, a, atol=1e-9)
    assert np.abs(plain.barycenter - a).max() > 1e-4


def test_grid_and_dense_solves_agree(rng):
    shape = (5, 7)
    grid = fs.Grid(shape)
    A = histograms(rng, 3, grid.size, zeros=5)
    w = np.array([0.5, 0.25, 0.25])
    for debiased in (False, True):
        on_grid = fs.solve_barycenter(grid, A.reshape((3,) + shape), 0.01, w, debiased=debiased, tol=1e-10,
                                      max_iter=20000)
        dense = fs.solve_barycenter(grid.cost_matrix(), A, 0.01, w, debiased=debiased, tol=1e-10, max_iter=20000)
        assert on_grid.converged and dense.converged
        np.testing.assert_allclose(on_grid.barycenter.ravel(), dense.barycenter, atol=1e-9)


def test_zero_weight_ignores_its_histogram(rng):
    n = 20
    M, A = line_cost(n), histograms(rng, 3, n)
    with_zero = fs.solve_barycenter(M, A, 0.01, [0.5, 0.0, 0.5], tol=1e-11, max_iter=20000)
    without = fs.solve_barycenter(M, A[[0, 2]], 0.01, tol=1e-11, max_iter=20000)
    np.testing.assert_allclose(with_zero.barycenter, without.barycenter, atol=1e-10)


def test_methods_give_one_answer_and_log_keys(rng):
    n = 16
    M, A = line_cost(n), histograms(rng, 2, n).T
    ref = fs.bregman.barycenter(A, M, 0.01, stopThr=1e-9)
    for method in ("sinkhorn", "SINKHORN_log", "sinkhorn_stabilized"):
        np.testing.assert_array_equal(fs.barycenter(A, M, 0.01, method=method, stopThr=1e-9), ref)
    np.testing.assert_array_equal(fs.bregman.barycenter_sinkhorn(A, M, 0.01, stopThr=1e-9), ref)
    bar, log = fs.bregman.barycenter_stabilized(A, M, 0.01, tau=1e3, stopThr=1e-9, log=True)
    np.testing.assert_array_equal(bar, ref)
    assert log["logu"].shape == log["logv"].shape == (n, 2) and log["niter"] == len(log["err"]) - 1
    assert fs.barycenter(A.astype(np.float32), M, 0.01).dtype == np.float32


# -- convergence and arguments ---------------------------------------------------------------------

def test_not_converged_warns_and_says_so(rng):
    M, A = line_cost(10), histograms(rng, 2, 10)
    with pytest.warns(fs.ConvergenceWarning):
        res = fs.solve_barycenter(M, A, 0.01, tol=1e-12, max_iter=3)
    assert not res.converged and res.n_iter == 3 and res.error > 1e-12 and len(res.history) == 3
    with pytest.warns(UserWarning, match="did not converge"):
        fs.barycenter(A.T, M, 1.0, stopThr=0, numItermax=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs.barycenter(A.T, M, 1.0, stopThr=0, numItermax=1, warn=False)


def test_verbose_prints_pots_table(rng, capsys):
    M, A = line_cost(10), histograms(rng, 2, 10)
    fs.barycenter(A.T, M, 0.1, stopThr=0, numItermax=30, verbose=True, warn=False)
    out = capsys.readouterr().out
    assert out.startswith("It.  |Err") and "   20|" in out


def test_inputs_are_not_modified(rng):
    M, A = line_cost(8), histograms(rng, 2, 8) * 1.0001  # rescaled inside, not in place
    M0, A0 = M.copy(), A.copy()
    fs.solve_barycenter(M, A, 0.05)
    np.testing.assert_array_equal(M, M0)
    np.testing.assert_array_equal(A, A0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"reg": 0.0}, ValueError, "reg"),
    ({"tol": -1.0}, ValueError, "tol"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"weights": [1.0]}, ValueError, "weights"),
    ({"weights": [1.0, -0.5]}, ValueError, "weights"),
    ({"debiased": "yes"}, TypeError, "debiased"),
    ({"backend": "tpu"}, ValueError, "backend"),
])
def test_argument_errors(rng, kwargs, error, match):
    args = {"M": line_cost(6), "A": histograms(rng, 2, 6), "reg": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        fs.solve_barycenter(**args)


def test_histogram_and_cost_errors(rng):
    A = histograms(rng, 2, 6)
    with pytest.raises(ValueError, match="A must have shape"):
        fs.solve_barycenter(line_cost(5), A, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        fs.solve_barycenter(line_cost(6), A - 0.5, 0.1)
    with pytest.raises(ValueError, match="equal sums"):
        fs.solve_barycenter(line_cost(6), A * [[1.0], [2.0]], 0.1)
    with pytest.raises(ValueError, match="square"):
        fs.solve_barycenter(line_cost(6, 4), A, 0.1, debiased=True)
    with pytest.raises(TypeError, match="M must"):
        fs.solve_barycenter("cost", A, 0.1)
    with pytest.raises(ValueError, match="2-D array"):
        fs.solve_barycenter(fs.Grid((2, 4)), A.reshape(2, 3, 2), 0.1)


def test_pot_method_and_keyword_errors(rng):
    M, A = line_cost(6), histograms(rng, 2, 6).T
    with pytest.raises(ValueError, match="Unknown method"):
        fs.barycenter(A, M, 0.1, method="new_method")
    with pytest.raises(ValueError, match="Unknown method"):
        fs.bregman.barycenter_debiased(A, M, 0.1, method="sinkhorn_stabilized")
    with pytest.raises(ValueError, match="Unknown method"):
        fs.bregman.convolutional_barycenter2d(A.T.reshape(2, 2, 3), 0.1, method="new_method")
    with pytest.raises(NotImplementedError, match="unknown_option"):
        fs.barycenter(A, M, 0.1, unknown_option=1)
    with pytest.raises(ValueError, match="3-D"):
        fs.bregman.convolutional_barycenter2d(A, 0.1)


@pytest.mark.parametrize("name", ["barycenter", "barycenter_sinkhorn", "barycenter_stabilized", "barycenter_debiased",
                                  "convolutional_barycenter2d", "convolutional_barycenter2d_debiased"])
def test_drop_ins_have_pots_signatures(name):
    import inspect

    ours, theirs = inspect.signature(getattr(fs.bregman, name)), inspect.signature(getattr(ot.bregman, name))
    assert [(p.name, p.default) for p in ours.parameters.values()] == \
        [(p.name, p.default) for p in theirs.parameters.values()]
    assert fs.barycenter is fs.bregman.barycenter
