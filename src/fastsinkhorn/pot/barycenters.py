"""POT's fixed-support barycenters (``ot.bregman.barycenter`` ...): drop-ins.

Each takes the signature of POT's function of the same name. Every
``method`` runs one log-domain driver
(:func:`~fastsinkhorn.solve_barycenter`): exact at any ``reg``, where POT's
scaling methods underflow (a NaN or zero barycenter). Differences:

* ``stopThr`` bounds our error, ``max_p ||P_p^T 1 - b||_1`` (the largest L1
  gap between a plan's barycenter-side marginal and the barycenter),
  checked at every iteration; POT's is the sum over bins of the standard
  deviation of those marginals, checked every 10th iteration.
* ``stabThr`` and ``tau`` (POT's guards against underflow) are accepted and
  ignored: nothing underflows here.
* ``log`` has POT's keys (``err``, ``niter``; ``logu``/``logv`` for the
  stabilised method and the unbalanced ones, ``U``/``V`` for the
  convolutional ones) and also ``potentials``, ``converged`` and the
  ``result``.
* Unbalanced (``ot.unbalanced.barycenter_unbalanced`` ...): ``stopThr``
  bounds ``max_p ||P_p^T 1 - b exp(-g_p / reg_m)||_1`` (the gap to the
  marginal the optimal plan has at the potentials), where POT bounds the
  relative change of the barycenter. The iterations are POT's, in
  potentials; they take ~``2 reg_m / reg`` iterations to converge (the
  relaxed mass moves at the rate ``reg / (reg_m + reg)``), so raise
  ``numItermax`` for ``reg_m >> reg``.
"""

import warnings

import numpy as np

from ..algorithms.barycenter_problem import solve_barycenter
from ..core.arrays import array_namespace
from ..core.frameworks import has_framework_array, via_framework
from ..core.result import ConvergenceWarning
from ..geometry.grid import Grid

#: POT's method names per function (POT lower-cases ``method``).
BARYCENTER_METHODS = ("sinkhorn", "sinkhorn_stabilized", "sinkhorn_log")
DEBIASED_METHODS = ("sinkhorn", "sinkhorn_log")
#: ``ot.unbalanced.barycenter_unbalanced``'s names (POT runs its scaling
#: Sinkhorn for the last two, with a warning; here all run the driver).
UNBALANCED_METHODS = ("sinkhorn", "sinkhorn_stabilized", "sinkhorn_reg_scaling", "sinkhorn_translation_invariant")

_NOT_CONVERGED = ("Sinkhorn did not converge. You might want to increase the number "
                  "of iterations `numItermax` or the regularization parameter `reg`.")


def barycenter(A, M, reg, weights=None, method="sinkhorn", numItermax=10000, stopThr=1e-4, verbose=False,
               log=False, warn=True, **kwargs):
    """Entropic Wasserstein barycenter, a drop-in for ``ot.bregman.barycenter`` (and ``ot.barycenter``).

    Parameters
    ----------
    A : array (dim, n_hists)
        The histograms, in the columns.
    M : array (dim, dim)
        The cost (rows: the histograms' support; columns: the barycenter's).
    reg : float
    weights : array (n_hists,), optional
    method : {"sinkhorn", "sinkhorn_stabilized", "sinkhorn_log"}
        All run the log-domain driver (the same answer).
    numItermax, stopThr, verbose, log, warn
        As POT's (``stopThr``: see the module notes).
    **kwargs
        ``tau`` (``"sinkhorn_stabilized"``) is accepted and ignored.

    Returns
    -------
    a : array (dim,)
        The barycenter, in ``A``'s dtype.
    log : dict, only if ``log=True``

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> A = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> ot.barycenter(A, np.array([[0.0, 1.0], [1.0, 0.0]]), 0.1).round(6).tolist()
    [0.5, 0.5]
    """
    if has_framework_array(A, M, weights):  # torch/JAX: run on NumPy views of them
        return via_framework(barycenter, locals(), ("A", "M", "weights"))
    method = _method(method, BARYCENTER_METHODS)
    _only(kwargs, ("tau",) if method == "sinkhorn_stabilized" else ())
    return _dense(A, M, reg, weights, False, numItermax, stopThr, verbose, log, warn,
                  stabilized=method == "sinkhorn_stabilized")


def barycenter_sinkhorn(A, M, reg, weights=None, numItermax=1000, stopThr=1e-4, verbose=False, log=False,
                        warn=True):
    """Drop-in for ``ot.bregman.barycenter_sinkhorn``: :func:`barycenter` with ``method="sinkhorn"``.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> x = np.arange(3.0)
    >>> ot.bregman.barycenter_sinkhorn(np.eye(3)[:, [0, 2]], (x[:, None] - x) ** 2, 0.1).round(3).tolist()
    [0.0, 1.0, 0.0]
    """
    if has_framework_array(A, M, weights):  # torch/JAX: run on NumPy views of them
        return via_framework(barycenter_sinkhorn, locals(), ("A", "M", "weights"))
    return _dense(A, M, reg, weights, False, numItermax, stopThr, verbose, log, warn)


def barycenter_stabilized(A, M, reg, tau=1e10, weights=None, numItermax=1000, stopThr=1e-4, verbose=False,
                          log=False, warn=True):
    """Drop-in for ``ot.bregman.barycenter_stabilized`` (``tau`` is accepted and
    ignored: the log-domain driver needs no absorption). ``log`` adds POT's
    ``logu``, ``logv`` (dim, n_hists): the plans are ``exp(logu_i + logv_j - M_ij / reg)``.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> A, M = [[0.2, 0.6], [0.8, 0.4]], [[0.0, 1.0], [1.0, 0.0]]
    >>> ot.bregman.barycenter_stabilized(A, M, 0.01, weights=[1.0, 0.0]).round(6).tolist()
    [0.2, 0.8]
    """
    if has_framework_array(A, M, weights):  # torch/JAX: run on NumPy views of them
        return via_framework(barycenter_stabilized, locals(), ("A", "M", "weights"))
    return _dense(A, M, reg, weights, False, numItermax, stopThr, verbose, log, warn, stabilized=True)


def barycenter_debiased(A, M, reg, weights=None, method="sinkhorn", numItermax=10000, stopThr=1e-4,
                        verbose=False, log=False, warn=True, **kwargs):
    """Debiased barycenter (Janati et al. 2020), a drop-in for ``ot.bregman.barycenter_debiased``.

    ``method`` ``"sinkhorn"`` or ``"sinkhorn_log"``: both run the log-domain
    driver with the barycenter's self-transport potential. ``M`` must be
    square and symmetric. Arguments and returns as :func:`barycenter`.

    Examples
    --------
    Two Diracs: the debiased barycenter is sharp where the plain one is blurred.

    >>> import numpy as np, fastsinkhorn as ot
    >>> x = np.arange(3.0)
    >>> A, M = np.eye(3)[:, [0, 2]], (x[:, None] - x) ** 2
    >>> ot.bregman.barycenter_debiased(A, M, 0.5).round(2).tolist(), ot.barycenter(A, M, 0.5).round(2).tolist()
    ([0.0, 1.0, 0.0], [0.11, 0.79, 0.11])
    """
    if has_framework_array(A, M, weights):  # torch/JAX: run on NumPy views of them
        return via_framework(barycenter_debiased, locals(), ("A", "M", "weights"))
    _method(method, DEBIASED_METHODS)
    _only(kwargs, ())
    return _dense(A, M, reg, weights, True, numItermax, stopThr, verbose, log, warn)


def convolutional_barycenter2d(A, reg, weights=None, method="sinkhorn", numItermax=10000, stopThr=1e-4,
                               verbose=False, log=False, warn=True, **kwargs):
    """Barycenter of 2-D images, a drop-in for ``ot.bregman.convolutional_barycenter2d``.

    POT's kernel ``exp(-(x - y)^2 / reg)`` on ``linspace(0, 1)`` along each
    axis: :class:`~fastsinkhorn.Grid` ``(h, w)`` (its default spacing), whose
    passes are per-axis log-sum-exps, exact at any ``reg`` (POT's scaling
    method returns NaN or zeros once ``exp(-1 / reg)`` underflows).

    Parameters
    ----------
    A : array (n_hists, width, height)
    reg : float
    weights : array (n_hists,), optional
    method : {"sinkhorn", "sinkhorn_log"}
        Both run the log-domain driver.
    numItermax, stopThr, verbose, log, warn
        As POT's (``stopThr``: see the module notes).
    **kwargs
        ``stabThr`` is accepted and ignored.

    Returns
    -------
    a : array (width, height)
    log : dict, only if ``log=True``: ``err``, ``niter``, ``U``, ``V`` (the
        scalings ``exp(f / reg)``, ``exp(g / reg)``, (n_hists, width, height);
        they may overflow to ``inf`` at small ``reg``: use ``potentials``).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> A = np.zeros((2, 1, 5)); A[0, 0, 0] = A[1, 0, 4] = 1.0
    >>> ot.bregman.convolutional_barycenter2d(A, 0.004).round(3).tolist()
    [[0.0, 0.0, 1.0, 0.0, 0.0]]
    """
    _method(method, DEBIASED_METHODS)
    if has_framework_array(A, weights):
        return via_framework(convolutional_barycenter2d, locals(), ("A", "weights"))
    _only(kwargs, ("stabThr",))
    return _images(A, reg, weights, False, numItermax, stopThr, verbose, log, warn)


def convolutional_barycenter2d_debiased(A, reg, weights=None, method="sinkhorn", numItermax=10000, stopThr=1e-3,
                                        verbose=False, log=False, warn=True, **kwargs):
    """Debiased barycenter of 2-D images, a drop-in for
    ``ot.bregman.convolutional_barycenter2d_debiased``: as
    :func:`convolutional_barycenter2d`, with the barycenter's self-transport
    potential (Janati et al. 2020).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> A = np.full((2, 3, 3), 1 / 9)
    >>> float(ot.bregman.convolutional_barycenter2d_debiased(A, 0.05).sum().round(2))
    1.0
    """
    _method(method, DEBIASED_METHODS)
    if has_framework_array(A, weights):
        return via_framework(convolutional_barycenter2d_debiased, locals(), ("A", "weights"))
    _only(kwargs, ("stabThr",))
    return _images(A, reg, weights, True, numItermax, stopThr, verbose, log, warn)


def barycenter_unbalanced(A, M, reg, reg_m, method="sinkhorn", weights=None, numItermax=1000, stopThr=1e-6,
                          verbose=False, log=False, warn=True, **kwargs):
    """Unbalanced entropic barycenter, a drop-in for ``ot.unbalanced.barycenter_unbalanced``.

    Minimises ``sum_p w_p UOT(a_p, b)`` over ``b``, where ``UOT`` relaxes
    both marginals of each plan by ``reg_m KL`` (POT's problem and its
    iteration, run in the log domain: exact at any ``reg``, where POT's
    scaling stops on ``Numerical errors``).

    Parameters
    ----------
    A : array (dim, n_hists)
        The histograms, in the columns; any positive masses.
    M : array (dim, dim)
    reg : float
    reg_m : float
        The marginals' KL penalty, ``> 0``.
    method : {"sinkhorn", "sinkhorn_stabilized", "sinkhorn_reg_scaling", "sinkhorn_translation_invariant"}
        All run the log-domain driver (the same answer).
    weights : array (n_hists,), optional
    numItermax, stopThr, verbose, log, warn
        As POT's (``stopThr``: see the module notes).
    **kwargs
        ``tau`` (``"sinkhorn_stabilized"``) is accepted and ignored.

    Returns
    -------
    q : array (dim,)
    log : dict, only if ``log=True``: ``err``, ``niter``, ``logu``, ``logv``
        (dim, n_hists), and ``potentials``, ``converged``, ``result``.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> A = np.array([[0.5, 1.0], [0.5, 1.0]])
    >>> ot.unbalanced.barycenter_unbalanced(A, np.zeros((2, 2)), 0.1, 1.0).round(4).tolist()
    [0.7976, 0.7976]
    """
    if has_framework_array(A, M, weights):  # torch/JAX: run on NumPy views of them
        return via_framework(barycenter_unbalanced, locals(), ("A", "M", "weights"))
    method = _method(method, UNBALANCED_METHODS)
    _only(kwargs, ("tau",) if method == "sinkhorn_stabilized" else ())
    return _dense(A, M, reg, weights, False, numItermax, stopThr, verbose, log, warn, stabilized=True,
                  reg_m=reg_m)


def barycenter_unbalanced_sinkhorn(A, M, reg, reg_m, weights=None, numItermax=1000, stopThr=1e-6, verbose=False,
                                   log=False, warn=True):
    """Drop-in for ``ot.unbalanced.barycenter_unbalanced_sinkhorn``: :func:`barycenter_unbalanced`.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> A, M = np.array([[0.5, 1.0], [0.5, 1.0]]), np.zeros((2, 2))
    >>> ot.unbalanced.barycenter_unbalanced_sinkhorn(A, M, 0.1, 1.0, weights=[0.9, 0.1]).round(4).tolist()
    [0.6103, 0.6103]
    """
    return barycenter_unbalanced(A, M, reg, reg_m, "sinkhorn", weights, numItermax, stopThr, verbose, log, warn)


def barycenter_unbalanced_stabilized(A, M, reg, reg_m, weights=None, tau=1e3, numItermax=1000, stopThr=1e-6,
                                     verbose=False, log=False, warn=True):
    """Drop-in for ``ot.unbalanced.barycenter_unbalanced_stabilized`` (``tau`` is
    accepted and ignored: the log-domain driver needs no absorption).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> x = np.arange(3.0)
    >>> A, M = np.eye(3)[:, [0, 2]], (x[:, None] - x) ** 2
    >>> ot.unbalanced.barycenter_unbalanced_stabilized(A, M, 1e-3, 1.0).round(3).tolist()
    [0.255, 0.0, 0.255]
    """
    return barycenter_unbalanced(A, M, reg, reg_m, "sinkhorn_stabilized", weights, numItermax, stopThr, verbose,
                                 log, warn)


# -- shared --------------------------------------------------------------------
def _method(method, allowed):
    """POT's lower-cased method name, or ``ValueError`` (POT's ``Unknown method``)."""
    name = method.lower() if isinstance(method, str) else method
    if name not in allowed:
        raise ValueError(f"Unknown method '{method}': use one of {allowed}")
    return name


def _only(kwargs, accepted):
    """POT's tuning keywords that change nothing here pass; any other raises."""
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise NotImplementedError(f"{', '.join(unknown)}: not implemented by fastsinkhorn's barycenters")


def _dense(A, M, reg, weights, debiased, numItermax, stopThr, verbose, log, warn, stabilized=False, reg_m=None):
    """POT's ``A`` (dim, n_hists) and ``M``: solve, and return in POT's form."""
    xp = array_namespace(A, M)
    A = xp.asarray(A)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D array (dim, n_hists), got shape {A.shape}")
    res = _run(M, A.T, reg, weights, debiased, numItermax, stopThr, verbose, warn, reg_m)
    extra = {}
    if log and stabilized:
        f, g = res.potentials
        extra = {"logu": (f / res.reg).T, "logv": (g / res.reg).T}
    return _returned(res, A.dtype, log, extra)


def _images(A, reg, weights, debiased, numItermax, stopThr, verbose, log, warn):
    """POT's images ``A`` (n_hists, width, height) on a :class:`Grid`."""
    xp = array_namespace(A)
    A = xp.asarray(A)
    if A.ndim != 3:
        raise ValueError(f"A must be a 3-D array (n_hists, width, height), got shape {A.shape}")
    grid = Grid(A.shape[1:])
    res = _run(grid, A, reg, weights, debiased, numItermax, stopThr, verbose, warn)
    extra = {}
    if log:
        f, g = res.potentials
        with np.errstate(over="ignore"):
            extra = {"U": xp.exp(f / res.reg).reshape(A.shape), "V": xp.exp(g / res.reg).reshape(A.shape)}
    return _returned(res, A.dtype, log, extra)


def _run(M, A, reg, weights, debiased, numItermax, stopThr, verbose, warn, reg_m=None):
    """The native solve, with POT's ``verbose`` table and warning text."""
    def table(it, err):  # POT's table: a header every 200 iterations, then a row per check
        if it % 10 == 1 or it == 1:
            if it % 200 == 1:
                print("{:5s}|{:12s}".format("It.", "Err") + "\n" + "-" * 19)
            print(f"{it - 1:5d}|{err:8e}|")

    res = solve_barycenter(M, A, reg, weights=weights, debiased=debiased, tol=stopThr, max_iter=numItermax,
                           warn=False, callback=table if verbose else None, reg_m=reg_m)
    if warn and not res.converged:
        warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=4)
    return res


def _returned(res, dtype, log, extra):
    """The barycenter in the input's dtype (float64 for integers), and POT's log."""
    out_dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    bar = res.barycenter.astype(out_dtype, copy=False)
    if not log:
        return bar
    return bar, {"err": res.history, "niter": res.n_iter - 1, **extra, "potentials": res.potentials,
                 "converged": res.converged, "result": res}
