r"""POT's empirical solvers: ``empirical_sinkhorn``, ``empirical_sinkhorn2``,
``empirical_sinkhorn_divergence`` (POT 0.9's ``ot.bregman`` functions), with
POT's signatures and return conventions.

``isLazy=False`` builds the cost ``dist(X_s, X_t, metric)`` and runs our
:func:`~fastsinkhorn.sinkhorn` / :func:`~fastsinkhorn.sinkhorn2` on it, as
POT does. ``isLazy=True`` solves on a :class:`~fastsinkhorn.PointCloud`
(costs recomputed by blocks, memory O((n + m) d)) and returns what POT's lazy
solver returns: the log-potentials ``(f, g)`` with ``P = exp(f + g - C /
reg)``, and ``log["lazy_plan"]``. PyTorch tensors are differentiable w.r.t.
the points and the weights (:mod:`fastsinkhorn.core.autodiff`).
"""

import numbers
import warnings

import numpy as np

from ..backends._contract import COST_KINDS
from ..core.arrays import array_namespace
from ..core.frameworks import has_framework_array, via_framework
from ..core.methods import AUTO
from ..core.potentials import to_potentials
from ..core.result import ConvergenceWarning
from ..geometry.distances import dist
from ..geometry.point_cloud import PointCloud
from ..solvers import _solve
from .entropic import _NOT_CONVERGED, DefaultValue, _given, _stop_threshold, sinkhorn, sinkhorn2

__all__ = ["empirical_sinkhorn", "empirical_sinkhorn2", "empirical_sinkhorn_divergence"]

#: POT's default ``stopThr`` of the empirical solvers.
EMPIRICAL_STOP_THR = DefaultValue(1e-9)


def empirical_sinkhorn(X_s, X_t, reg, a=None, b=None, metric="sqeuclidean", numIterMax=10000,
                       stopThr=EMPIRICAL_STOP_THR, isLazy=False, batchSize=100, verbose=False, log=False,
                       warn=True, warmstart=None, **kwargs):
    r"""Entropic OT plan between two samples, a drop-in for ``ot.bregman.empirical_sinkhorn``.

    Solves :func:`~fastsinkhorn.sinkhorn`'s problem for the cost ``M =
    dist(X_s, X_t, metric)``.

    Parameters
    ----------
    X_s : array_like (n, d)
        Source samples.
    X_t : array_like (m, d)
        Target samples.
    reg : float
        Entropic regularisation (> 0).
    a, b : array_like (n,), (m,), optional
        Sample weights; uniform when omitted.
    metric : str
        Any metric of :func:`~fastsinkhorn.dist`; with ``isLazy=True``,
        ``"sqeuclidean"``, ``"euclidean"`` or ``"minkowski"`` (p = 2), the
        point-cloud kernels' costs (others raise ``NotImplementedError``).
    numIterMax : int
        Most iterations.
    stopThr : float
        Stopping threshold: as :func:`~fastsinkhorn.sinkhorn`'s (L2) with
        ``isLazy=False``; the L1 marginal error with ``isLazy=True`` (POT's
        lazy solver measures the L1 error of the first marginal; ours of
        both, the second being exact after a Sinkhorn step).
    isLazy : bool
        ``True``: never store the ``(n, m)`` cost (see the module).
    batchSize : int or pair of ints
        POT's block sizes of its lazy solver, a memory knob: checked as POT
        does (``ValueError`` otherwise); ours streams fixed blocks, and the
        results do not depend on it.
    verbose : bool
        Print the convergence checks.
    log : bool
        Also return a log dict.
    warn : bool
        Warn (``ConvergenceWarning``) if ``numIterMax`` runs out first.
    warmstart : tuple of arrays, optional
        POT's ``(log u, log v)`` (the lazy solver's ``(f, g)``).
    **kwargs
        Passed to :func:`~fastsinkhorn.sinkhorn` with ``isLazy=False`` (e.g.
        ``method``); with ``isLazy=True`` (where POT ignores them) they raise
        ``NotImplementedError``.

    Returns
    -------
    gamma : array (n, m)
        The plan (``isLazy=False``); with ``log=True``, ``(gamma, log)``.
    f, g : arrays (n,), (m,)
        ``isLazy=True``: the log-potentials, ``P = exp(f + g - C / reg)``;
        with ``log=True``, ``(f, g, log)``, ``log`` holding ``err``, ``u``
        (``f``), ``v`` (``g``), ``niter``, ``lazy_plan`` (a
        :class:`~fastsinkhorn.LazyPlan`, indexable as POT's ``LazyTensor``)
        and ``result`` (our :class:`~fastsinkhorn.OTResult`).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> x = np.array([[0.0], [1.0]])
    >>> ot.bregman.empirical_sinkhorn(x, x, 0.1).round(3).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    if has_framework_array(X_s, X_t, a, b):  # torch/JAX: run on NumPy views of them
        return via_framework(empirical_sinkhorn, locals(), ("X_s", "X_t", "a", "b"), "empirical_sinkhorn")
    _check_batch_size(batchSize)
    a, b = _weights(X_s, X_t, a, b)
    if isLazy:
        return _lazy(X_s, X_t, reg, a, b, metric, numIterMax, stopThr, verbose, log, warn, warmstart, kwargs)
    M = dist(X_s, X_t, metric=metric)
    return sinkhorn(a, b, M, reg, numItermax=numIterMax, stopThr=stopThr, verbose=verbose, log=log,
                    warn=warn, warmstart=warmstart, **kwargs)


def empirical_sinkhorn2(X_s, X_t, reg, a=None, b=None, metric="sqeuclidean", numIterMax=10000,
                        stopThr=EMPIRICAL_STOP_THR, isLazy=False, batchSize=100, verbose=False, log=False,
                        warn=True, warmstart=None, **kwargs):
    r"""Entropic OT loss ``<M, P>`` between two samples, a drop-in for
    ``ot.bregman.empirical_sinkhorn2``.

    Same arguments as :func:`empirical_sinkhorn`. Returns the loss
    (without the entropic term, as :func:`~fastsinkhorn.sinkhorn2`); with
    ``log=True``, ``(loss, log)`` (``isLazy=True``: the log of
    :func:`empirical_sinkhorn`).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> x = np.array([[0.0], [1.0]])
    >>> round(float(ot.bregman.empirical_sinkhorn2(x, x + 1, 0.1)), 3)
    1.0
    """
    if has_framework_array(X_s, X_t, a, b):  # torch/JAX: run on NumPy views of them
        return via_framework(empirical_sinkhorn2, locals(), ("X_s", "X_t", "a", "b"), "empirical_sinkhorn2")
    _check_batch_size(batchSize)
    a, b = _weights(X_s, X_t, a, b)
    if isLazy:
        f, g, dict_log = _lazy(X_s, X_t, reg, a, b, metric, numIterMax, stopThr, verbose, True, warn,
                               warmstart, kwargs)
        loss = np.asarray(dict_log["result"].value_linear, dtype=f.dtype)[()]
        return (loss, dict_log) if log else loss
    M = dist(X_s, X_t, metric=metric)
    return sinkhorn2(a, b, M, reg, numItermax=numIterMax, stopThr=stopThr, verbose=verbose, log=log,
                     warn=warn, warmstart=warmstart, **kwargs)


def empirical_sinkhorn_divergence(X_s, X_t, reg, a=None, b=None, metric="sqeuclidean", numIterMax=10000,
                                  stopThr=EMPIRICAL_STOP_THR, verbose=False, log=False, warn=True,
                                  warmstart=None, **kwargs):
    r"""POT's Sinkhorn divergence between two samples, a drop-in for
    ``ot.bregman.empirical_sinkhorn_divergence``.

    .. math::
        S = \max\big(0,\ W(a, b) - (W(a, a) + W(b, b)) / 2\big)

    with ``W`` the loss of :func:`empirical_sinkhorn2`, ``<M, P*>``: POT's
    definition, which leaves the entropic terms out (POT's docstring says
    so). The Sinkhorn divergence of the literature (Genevay et al. 2018;
    GeomLoss, OTT) takes the differences of the entropic objectives
    ``<M, P> + reg KL(P | a b^T)`` instead, and is not clipped at 0: that
    is :func:`~fastsinkhorn.solve_sample` with ``debias=True``.

    Parameters
    ----------
    X_s, X_t, reg, a, b, metric, numIterMax, stopThr, verbose, warn
        As in :func:`empirical_sinkhorn`.
    log : bool
        Also return POT's log: ``sinkhorn_loss_ab``, ``sinkhorn_loss_a``,
        ``sinkhorn_loss_b`` and the three solves' logs ``log_sinkhorn_ab``,
        ``log_sinkhorn_a``, ``log_sinkhorn_b``.
    warmstart : tuple of arrays, optional
        ``(u, v)``: as POT, ``(u, v)`` starts ``W(a, b)``, ``(u, u)``
        ``W(a, a)`` and ``(v, v)`` ``W(b, b)``.
    **kwargs
        Passed to :func:`empirical_sinkhorn2` (``isLazy``, ``batchSize``, ...).

    Returns
    -------
    S : float
        With ``log=True``, ``(S, log)``.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> X_s = np.arange(2.0).reshape(2, 1); X_t = np.arange(4.0).reshape(4, 1)
    >>> round(float(ot.bregman.empirical_sinkhorn_divergence(X_s, X_t, 0.1)), 6)
    1.499966
    """
    if has_framework_array(X_s, X_t, a, b):  # torch/JAX: run on NumPy views of them
        return via_framework(empirical_sinkhorn_divergence, locals(), ("X_s", "X_t", "a", "b"),
                             "empirical_sinkhorn_divergence")
    starts = (None, None, None) if warmstart is None else \
        (warmstart, (warmstart[0], warmstart[0]), (warmstart[1], warmstart[1]))
    common = dict(metric=metric, numIterMax=numIterMax, stopThr=stopThr, verbose=verbose, log=True, warn=warn,
                  **kwargs)
    (ab, log_ab), (aa, log_a), (bb, log_b) = (
        empirical_sinkhorn2(x, y, reg, p, q, warmstart=w, **common)
        for (x, y, p, q), w in zip(((X_s, X_t, a, b), (X_s, X_s, a, a), (X_t, X_t, b, b)), starts))
    divergence = np.maximum(0, ab - (aa + bb) / 2)
    if not log:
        return divergence
    return divergence, {"sinkhorn_loss_ab": ab, "sinkhorn_loss_a": aa, "sinkhorn_loss_b": bb,
                        "log_sinkhorn_ab": log_ab, "log_sinkhorn_a": log_a, "log_sinkhorn_b": log_b}


def _check_batch_size(batchSize):
    """POT's check of ``batchSize``: an int or a pair of ints."""
    ok = isinstance(batchSize, numbers.Integral) and not isinstance(batchSize, bool) or (
        isinstance(batchSize, tuple) and len(batchSize) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in batchSize))
    if not ok:
        raise ValueError("Batch size must be in integer or a tuple of two integers")


def _weights(X_s, X_t, a, b):
    """POT's default weights: uniform, in float64 (NumPy or CuPy, as the samples)."""
    xp = array_namespace(X_s=X_s, X_t=X_t)
    n, m = len(X_s), len(X_t)
    return (xp.full(n, 1.0 / n) if a is None else a), (xp.full(m, 1.0 / m) if b is None else b)


def _lazy(X_s, X_t, reg, a, b, metric, numIterMax, stopThr, verbose, log, warn, warmstart, kwargs):
    """``isLazy=True``: the solve on a point cloud; POT's ``(f, g[, log])``."""
    if kwargs:
        raise NotImplementedError(f"isLazy=True takes no further keywords (POT ignores them), got "
                                  f"{', '.join(sorted(kwargs))}")
    if not (isinstance(metric, str) and metric in COST_KINDS):
        raise NotImplementedError(f"metric={metric!r} with isLazy=True: the lazy kernels compute "
                                  f"{tuple(COST_KINDS)}; give isLazy=False for any metric of dist")
    xp = array_namespace(X_s=X_s, X_t=X_t)
    cloud = PointCloud(X_s, X_t, cost=metric)
    warm = None if warmstart is None else to_potentials(xp, warmstart, reg)
    res = _solve(cloud, a, b, reg=reg, method=AUTO, tol=_stop_threshold(stopThr), max_iter=numIterMax,
                 warm_start=warm, callback=None, verbose=verbose, backend="auto", options={}, norm="l1",
                 warn=False, tol_given=_given(stopThr, "stopThr"), hedge=False)
    if warn and not bool(res.converged):
        warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=3)
    dtype = np.result_type(*(getattr(x, "dtype", np.float64) for x in (X_s, X_t)))
    dtype = dtype if dtype in (np.float32, np.float64) else np.float64
    f, g = (xp.asarray(p / reg, dtype=dtype) for p in res.potentials)
    if not log:
        return f, g
    return f, g, {"err": list(res.history["error"]), "u": f, "v": g, "niter": res.n_iter - 1,
                  "lazy_plan": res.plan, "result": res}
