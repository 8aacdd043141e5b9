"""POT drop-ins: ``sinkhorn``, ``sinkhorn2``, ``dist`` with POT 0.9 conventions.

POT's camelCase argument names live here and nowhere else. Every POT method
name runs a numerically stable solver; deliberate differences from POT are
listed in the README ("Differences from POT").
"""

import warnings

import numpy as np

from ._arrays import array_library
from ._result import ConvergenceWarning
from ._solve import _solve

#: POT method name -> (fastsinkhorn method, warmstart given as potentials?)
#: POT's ``sinkhorn_stabilized`` takes (alpha, beta) potentials as warmstart;
#: the others take log-scalings (potentials / reg).
POT_METHODS = {
    "sinkhorn": ("sinkhorn", False),
    "sinkhorn_knopp": ("sinkhorn", False),
    "sinkhorn_log": ("sinkhorn", False),
    "sinkhorn_stabilized": ("sinkhorn", True),
    "sinkhorn_epsilon_scaling": ("sinkhorn", True),
    "greenkhorn": ("sinkhorn", False),
    "sns": ("sns", False),
}
#: POT solver-tuning keywords that have no meaning here (accepted, ignored).
_POT_ONLY_KWARGS = {"tau", "print_period", "numInnerItermax", "epsilon0", "stopThr_inner"}

_NOT_CONVERGED = ("Sinkhorn did not converge. You might want to increase the number "
                  "of iterations `numItermax` or the regularization parameter `reg`.")


def sinkhorn(a, b, M, reg, method="sinkhorn", numItermax=1000, stopThr=1e-9,
             verbose=False, log=False, warn=True, warmstart=None, **kwargs):
    r"""Entropic OT plan, a drop-in for ``ot.sinkhorn``.

    Solves

    .. math::
        \gamma = \arg\min_\gamma \langle \gamma, M\rangle_F
        + \mathrm{reg}\cdot\Omega(\gamma)
        \quad\text{s.t.}\quad \gamma 1 = a,\; \gamma^T 1 = b,\; \gamma \ge 0

    with :math:`\Omega(\gamma) = \sum_{ij} \gamma_{ij}\log\gamma_{ij}`, by a
    log-stable Sinkhorn (or Sinkhorn-Newton-Sparse with ``method="sns"``) that
    never underflows, whatever ``reg``.

    Parameters
    ----------
    a : array_like (n,)
        Source weights; empty means uniform.
    b : array_like (m,) or (m, k)
        Target weights; empty means uniform. A 2-D ``b`` solves ``k`` problems
        sharing ``a`` and ``M`` and returns their ``k`` losses ``<M, P>``.
    M : array_like (n, m)
        Cost matrix.
    reg : float
        Regularization (> 0).
    method : str
        POT's names (``"sinkhorn"``, ``"sinkhorn_log"``, ``"sinkhorn_stabilized"``,
        ``"sinkhorn_epsilon_scaling"``, ``"greenkhorn"``) all run the stable
        Sinkhorn solver; ``"sns"`` runs Sinkhorn-Newton-Sparse.
    numItermax : int
        Maximum number of iterations.
    stopThr : float
        Stop when the L2 norm of the column-marginal violation (POT's
        criterion) is below this.
    verbose : bool
        Print progress.
    log : bool
        Also return a dict with POT's keys (``err``, ``niter``, ``u``, ``v``,
        ``log_u``, ``log_v``, ``alpha``, ``beta``, ...).
    warn : bool
        Warn (``ConvergenceWarning``, a ``UserWarning``) if not converged.
    warmstart : tuple of arrays, optional
        POT's dual initialization: ``(log_u, log_v)``, or ``(alpha, beta)``
        for ``"sinkhorn_stabilized"``.
    **kwargs
        POT's solver-tuning keywords are accepted and ignored; for
        ``method="sns"``, options of :class:`~fastsinkhorn._options.SNSOptions`.

    Returns
    -------
    gamma : array (n, m), or losses (k,) if ``b`` is 2-D
    log : dict, only if ``log=True``

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.sinkhorn([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1).round(4).tolist()
    [[0.3655, 0.1345], [0.1345, 0.3655]]
    """
    return _dispatch(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn,
                     warmstart, kwargs, loss_only=False)


def sinkhorn2(a, b, M, reg, method="sinkhorn", numItermax=1000, stopThr=1e-9,
              verbose=False, log=False, warn=False, warmstart=None, **kwargs):
    r"""Entropic OT loss ``<M, P>`` (without the entropy), a drop-in for ``ot.sinkhorn2``.

    Same arguments as :func:`sinkhorn` (note ``warn=False`` by default, as in
    POT). Returns the loss (a scalar of the input's array library), or ``k``
    losses when ``b`` is 2-D; with ``log=True``, ``(loss, log)``.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> round(float(ot.sinkhorn2([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1)), 4)
    0.269
    """
    return _dispatch(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn,
                     warmstart, kwargs, loss_only=True)


def _dispatch(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn,
              warmstart, kwargs, loss_only):
    if not isinstance(method, str) or method.lower() not in POT_METHODS:
        raise ValueError(f"method must be one of {tuple(POT_METHODS)}, got {method!r}")
    ours, warmstart_is_potential = POT_METHODS[method.lower()]
    options = {k: v for k, v in kwargs.items() if k not in _POT_ONLY_KWARGS}
    xp = _namespace(M=M, a=a, b=b)
    b = xp.asarray(b) if b is not None else b
    M = xp.asarray(M)
    n_hists = b.shape[1] if b is not None and b.ndim == 2 else 0

    def one(b_k, ws):
        res = _solve(M, a, b_k, reg=reg, method=ours, tol=stopThr, max_iter=numItermax,
                     warm_start=_to_potentials(ws, reg, warmstart_is_potential),
                     callback=None, verbose=verbose, backend="auto", options=options,
                     norm="l2", warn=False)
        if warn and not res.converged:
            warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=4)
        return res

    if n_hists:
        results = [one(b[:, k], None if warmstart is None else (warmstart[0][:, k], warmstart[1][:, k]))
                   for k in range(n_hists)]
        losses = xp.asarray([r.value_linear for r in results])
        return (losses, _log(results, reg, stacked=True)) if log else losses
    res = one(b, warmstart)
    out = xp.asarray(res.value_linear)[()] if loss_only else res.plan
    return (out, _log([res], reg, stacked=False)) if log else out


def _namespace(**arrays):
    if array_library(**arrays) == "cupy":
        import cupy

        return cupy
    return np


def _to_potentials(warmstart, reg, is_potential):
    if warmstart is None:
        return None
    scale = 1.0 if is_potential else reg
    return tuple(scale * (x.astype(np.float64) if hasattr(x, "astype") else np.asarray(x, np.float64))
                 for x in warmstart)


def _log(results, reg, stacked):
    """POT's log dict (union of the keys POT's Sinkhorn variants return)."""
    first = results[0]
    xp = np if isinstance(first.plan, np.ndarray) else __import__("cupy")
    join = (lambda arrs: xp.stack(arrs, axis=1)) if stacked else (lambda arrs: arrs[0])
    f = join([r.potentials[0].astype(np.float64) for r in results])
    g = join([r.potentials[1].astype(np.float64) for r in results])
    with np.errstate(over="ignore"):
        u, v = xp.exp(f / reg), xp.exp(g / reg)  # POT's scalings: may overflow at small reg
    niter = first.n_iter if not stacked else [r.n_iter for r in results]
    return {
        "err": first.history["error"] if not stacked else [r.history["error"] for r in results],
        "niter": niter, "n_iter": niter,
        "u": u, "v": v, "log_u": f / reg, "log_v": g / reg, "logu": f / reg, "logv": g / reg,
        "alpha": f, "beta": g, "warmstart": (f, g),
        "converged": all(r.converged for r in results),
        "marginal_error": first.marginal_error if not stacked else [r.marginal_error for r in results],
        "result": first if not stacked else results,
    }


def dist(x1, x2=None, metric="sqeuclidean", p=2, w=None, backend="auto", nx=None, use_tensor=False):
    """Pairwise distance matrix, a drop-in for ``ot.dist``.

    Parameters
    ----------
    x1 : array_like (n1, d)
    x2 : array_like (n2, d), optional
        Defaults to ``x1``.
    metric : str or callable
        ``"sqeuclidean"`` (default) and ``"euclidean"`` are computed with the
        input's array library (CuPy stays on the GPU); other metrics go through
        :func:`scipy.spatial.distance.cdist` with ``p`` and ``w``.
    p, w : optional
        Minkowski order and weights, passed to ``cdist``.
    backend, nx, use_tensor
        Accepted for POT compatibility; ignored.

    Returns
    -------
    M : array (n1, n2)

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.dist([[0.0, 0.0], [1.0, 1.0]]).tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    same = x2 is None
    xp = _namespace(x1=x1, x2=x2)
    x1 = xp.asarray(x1)
    x1 = x1.astype(np.float64) if x1.dtype.kind != "f" else x1
    x2 = x1 if same else xp.asarray(x2, dtype=x1.dtype)
    if metric in ("sqeuclidean", "euclidean"):
        sq1, sq2 = (x1 * x1).sum(axis=1), (x2 * x2).sum(axis=1)
        D = xp.maximum(sq1[:, None] + sq2[None, :] - 2 * (x1 @ x2.T), 0)
        if same:
            xp.fill_diagonal(D, 0)
        return D if metric == "sqeuclidean" else xp.sqrt(D)
    from scipy.spatial.distance import cdist

    host = [x.get() if hasattr(x, "get") else x for x in (x1, x2)]
    extra = {"p": p} if isinstance(metric, str) and metric.endswith("minkowski") else {}
    if w is not None:
        extra["w"] = w
    return xp.asarray(cdist(*host, metric=metric, **extra))
