"""Unbalanced entropic OT with POT's ``ot.unbalanced`` interface.

``sinkhorn_unbalanced`` and ``sinkhorn_unbalanced2`` are drop-ins for POT's
functions of the same names (``import fastsinkhorn as ot`` and
``fastsinkhorn.unbalanced`` mirror POT's module paths). They solve

    min_P <M, P> + reg KL(P | c) + reg_m1 KL(P 1 | a) + reg_m2 KL(P^T 1 | b)

with ``c = a b^T`` (``reg_type="kl"``) or ``1`` (``"entropy"``), by the
library's log-stable solvers, which neither under- nor overflow at small
``reg``: every POT method name runs our best method for the problem (SNS
where :func:`~fastsinkhorn.choose_method` picks it, else the
translation-invariant Sinkhorn; ``method="sns"``: Sinkhorn-Newton-Sparse).

Differences from POT: ``stopThr`` bounds the L1 norm of the dual's gradient
(the distance of the plan's marginals to the marginals the optimal plan has
at the current potentials), where POT bounds the relative change of its
scalings; ``log["logu"]``/``["logv"]`` are the exact log-scalings (POT adds
1e-300 inside the log: the same where the scalings are representable).
"""

import warnings

import numpy as np

from ..core.arrays import array_namespace
from ..core.methods import POT_UNBALANCED
from ..core.potentials import POT_LOG_ZERO, kl_frame_shift, to_log_scalings, to_potentials
from ..core.relaxation import check_unbalanced
from ..core.result import ConvergenceWarning
from ..solvers import _solve
from .batch import histograms_as_batch, solve_problems
from .entropic import DefaultValue, _given, _options, _ProgressTable, _stop_threshold

#: POT's method names -> ours (:mod:`fastsinkhorn.core.methods`): all run our
#: best method for the problem (``"auto"``: :func:`~fastsinkhorn.choose_method`'s
#: rule, SNS at small ``reg`` and tight ``stopThr``, else our
#: translation-invariant Sinkhorn); ``"sns"`` is Sinkhorn-Newton-Sparse.
METHODS = POT_UNBALANCED
#: POT's default ``stopThr`` of the unbalanced solvers.
STOP_THR = DefaultValue(1e-6)

_NOT_CONVERGED = ("Unbalanced Sinkhorn did not converge. Try a larger entropy `reg` or a lower "
                  "mass `reg_m`, or increase `numItermax`.")
_TWO_D_B = "Reg_type not implemented yet. Use entropy."  # POT's text: a 2-D b uses the entropy


def sinkhorn_unbalanced(a, b, M, reg, reg_m, method="sinkhorn", reg_type="kl", c=None, warmstart=None,
                        numItermax=1000, stopThr=STOP_THR, verbose=False, log=False, **kwargs):
    r"""Unbalanced entropic OT plan, a drop-in for ``ot.unbalanced.sinkhorn_unbalanced``.

    Parameters
    ----------
    a : array_like (n,)
        Source masses (any total); empty means uniform.
    b : array_like (m,) or (m, k)
        Target masses; empty means uniform. A 2-D ``b`` solves ``k`` problems
        sharing ``a`` and ``M`` and returns their ``k`` costs ``<M, P>``;
        as POT, these use the ``"entropy"`` regulariser, without ``c`` (and
        warn if ``reg_type="kl"`` was asked for).
    M : array_like (n, m)
        Cost matrix.
    reg : float
        Entropic regularisation (> 0).
    reg_m : float or pair of floats
        KL penalties of the marginals (``inf`` keeps one exact).
    method : str
        POT's ``"sinkhorn"``, ``"sinkhorn_stabilized"``,
        ``"sinkhorn_translation_invariant"``, ``"sinkhorn_reg_scaling"``: all
        run our best method (SNS at ``reg`` at most 5e-3 of the cost range
        with ``stopThr <= 1e-4``, else our log-stable translation-invariant
        Sinkhorn; a 2-D ``b`` then is one batch, or one SNS solve per
        histogram); ``"sns"`` runs Sinkhorn-Newton-Sparse.
    reg_type : {"kl", "entropy"}
        Reference measure ``a b^T`` or ``1`` of the entropy.
    c : array_like (n, m), optional
        Reference measure of ``reg_type="kl"`` (positive; default ``a b^T``).
    warmstart : pair of arrays, optional
        POT's log-scalings ``(logu, logv)`` (as returned in ``log``).
    numItermax : int
        Maximum number of iterations: Sinkhorn iterations plus Newton steps.
    stopThr : float
        Bound on the L1 norm of the dual's gradient (see the module notes);
        ``0`` runs ``numItermax`` iterations. The default is raised silently
        to what a float32 problem can reach; a value you give, with a warning.
    verbose : bool
        Print POT's progress table (``It.  |Err``).
    log : bool
        Also return a dict with POT's keys: ``err``, ``logu``, ``logv``,
        ``cost`` (``<M, P>``) and ``total_cost``; plus ``niter``,
        ``converged`` and the :class:`~fastsinkhorn.OTResult` as ``result``.
    **kwargs
        POT's ``tau`` (absorption threshold), ``print_period`` (rows of the
        ``verbose`` table; 1 by default) and our method options (unknown
        names warn). ``epsilon0`` and ``numInnerItermax`` are ignored, as by
        POT's unbalanced solvers.

    Returns
    -------
    gamma : array (n, m), or costs (k,) if ``b`` is 2-D
    log : dict, only if ``log=True``

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.sinkhorn_unbalanced([.5, .5], [.5, .5], [[0., 1.], [1., 0.]], 1, 1).round(6).tolist()
    [[0.322054, 0.118477], [0.118477, 0.322054]]
    """
    return _dispatch(a, b, M, reg, reg_m, method, reg_type, c, warmstart, numItermax, stopThr, verbose, log,
                     kwargs, cost_only=None)


def sinkhorn_unbalanced2(a, b, M, reg, reg_m, method="sinkhorn", reg_type="kl", c=None, warmstart=None,
                         returnCost="linear", numItermax=1000, stopThr=STOP_THR, verbose=False, log=False,
                         **kwargs):
    r"""Unbalanced entropic OT cost, a drop-in for ``ot.unbalanced.sinkhorn_unbalanced2``.

    Same arguments as :func:`sinkhorn_unbalanced`, plus ``returnCost``:
    ``"linear"`` returns ``<M, P>``, ``"total"`` the whole objective
    (POT's ``total_cost``). A 2-D ``b`` returns ``k`` linear costs.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> round(float(ot.sinkhorn_unbalanced2([.5, .5], [.5, .5], [[0., 1.], [1., 0.]], 1, 1)), 6)
    0.236954
    """
    if returnCost not in ("linear", "total"):
        raise ValueError(f"Unknown returnCost = {returnCost}")
    return _dispatch(a, b, M, reg, reg_m, method, reg_type, c, warmstart, numItermax, stopThr, verbose, log,
                     kwargs, cost_only=returnCost)


#: POT's other names of the same solver
def sinkhorn_knopp_unbalanced(a, b, M, reg, reg_m, reg_type="kl", c=None, warmstart=None, numItermax=1000,
                              stopThr=STOP_THR, verbose=False, log=False, **kwargs):
    """:func:`sinkhorn_unbalanced` with ``method="sinkhorn"`` (POT's name)."""
    return sinkhorn_unbalanced(a, b, M, reg, reg_m, "sinkhorn", reg_type, c, warmstart, numItermax, stopThr,
                               verbose, log, **kwargs)


def sinkhorn_stabilized_unbalanced(a, b, M, reg, reg_m, reg_type="kl", c=None, warmstart=None, tau=1e5,
                                   numItermax=1000, stopThr=STOP_THR, verbose=False, log=False, **kwargs):
    """:func:`sinkhorn_unbalanced` with ``method="sinkhorn_stabilized"`` (POT's name;
    ``tau`` is the absorption threshold)."""
    return sinkhorn_unbalanced(a, b, M, reg, reg_m, "sinkhorn_stabilized", reg_type, c, warmstart, numItermax,
                               stopThr, verbose, log, tau=tau, **kwargs)


def sinkhorn_unbalanced_translation_invariant(a, b, M, reg, reg_m, reg_type="kl", c=None, warmstart=None,
                                              numItermax=1000, stopThr=STOP_THR, verbose=False, log=False,
                                              **kwargs):
    """:func:`sinkhorn_unbalanced` with ``method="sinkhorn_translation_invariant"`` (POT's name)."""
    return sinkhorn_unbalanced(a, b, M, reg, reg_m, "sinkhorn_translation_invariant", reg_type, c, warmstart,
                               numItermax, stopThr, verbose, log, **kwargs)


def _dispatch(a, b, M, reg, reg_m, method, reg_type, c, warmstart, numItermax, stopThr, verbose, log, kwargs,
              cost_only):
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"Unknown method '{method}'.")
    if not isinstance(reg_type, str) or reg_type.lower() not in ("kl", "entropy"):
        raise NotImplementedError(f"reg_type={reg_type!r}: only 'kl' and 'entropy' are implemented")
    if c is not None and reg_type.lower() == "entropy":
        warnings.warn("If reg_type = entropy, then the matrix c is overwritten by the one matrix.",
                      UserWarning, stacklevel=3)
        c = None
    rho = check_unbalanced(reg_m)
    options = _options(dict(kwargs), epsilon_scaling=False)  # POT's unbalanced solvers ignore epsilon0
    print_period = options.pop("print_period", None) or 1  # POT's unbalanced solvers print every iteration
    xp = array_namespace(M=M, a=a, b=b)
    M = xp.asarray(M)
    b = xp.asarray(b) if b is not None else b
    a = xp.asarray(a) if a is not None else a
    n_hists = b.shape[1] if b is not None and b.ndim == 2 else 0
    reg_type = reg_type.lower()
    if n_hists:  # POT: the k problems use the entropy, so no reference measure (c is ignored, as by POT)
        if reg_type == "kl":  # (with reg_type="entropy", c was dropped above with POT's warning)
            warnings.warn(_TWO_D_B, UserWarning, stacklevel=3)
        c = None
        reg_type = "entropy"
        M, b, warmstart = histograms_as_batch(xp, M, b, warmstart, options)
    shift = kl_frame_shift(xp, a, b, M.shape, reg_type if c is None else "entropy")
    warm_start = None if warmstart is None else to_potentials(xp, warmstart, reg, shift)
    solve = {"reg": reg, "method": METHODS[method.lower()], "tol": _stop_threshold(stopThr),
             "max_iter": numItermax, "warm_start": warm_start, "verbose": False,
             "backend": "auto", "options": options, "warn": False, "hedge": False, "unbalanced": rho,
             "reg_type": reg_type, "c": c, "tol_given": _given(stopThr, "stopThr")}
    if n_hists:  # one batch, or one solve per histogram where SNS is the method
        res = solve_problems(M, a, b, progress=(lambda: _ProgressTable(print_period)) if verbose else None,
                             **solve)
    else:
        table = _ProgressTable(print_period) if verbose else None
        res = _solve(M, a, b, callback=table, **solve)
        if table is not None:
            table.finish(res)
    if not bool(np.all(res.converged)):
        warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=3)
    logu, logv = _log_scalings(xp, res.potentials, shift, reg)
    if n_hists:
        out = xp.asarray(res.value_linear)
        logu, logv = logu.T, logv.T
    elif cost_only == "total":
        out = xp.asarray(res.value)[()]
    elif cost_only == "linear":
        out = xp.asarray(res.value_linear)[()]
    else:
        out = res.plan
    if not log:
        return out
    return out, {"err": list(res.history["error"]), "logu": logu, "logv": logv,
                 "cost": res.value_linear, "total_cost": res.value, "niter": int(np.max(res.n_iter)) - 1,
                 "converged": bool(np.all(res.converged)), "result": res}


def _log_scalings(xp, potentials, shift, reg):
    """Our potentials as POT's ``(logu, logv)``, computed in float64 and returned in
    the input's dtype (POT's); ``log(1e-300)`` where a mass is zero (as POT)."""
    logs = to_log_scalings(xp, tuple(p.astype(np.float64) for p in potentials), reg, shift,
                           zero_mass=POT_LOG_ZERO)
    return tuple(w.astype(p.dtype) for w, p in zip(logs, potentials))
