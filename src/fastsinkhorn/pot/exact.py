"""POT drop-ins for exact OT: ``emd`` and ``emd2`` with POT 0.9 conventions.

Both run :func:`~fastsinkhorn.algorithms.exact.solver.solve_exact` (SNS, a restricted LP,
column generation) instead of POT's network simplex on the dense graph, and
return what POT returns: a dense plan, POT's log keys, dual potentials
centred as POT centres them, POT's warnings and result codes.
"""

import warnings

import numpy as np
import scipy.sparse as sp

from ..algorithms.exact.solver import pivot_safety_net, solve_exact
from ..core.checks import check_positive_int
from ..core.frameworks import has_framework_array, via_framework
from ..core.result import ConvergenceWarning, Status

#: POT's result codes (``ot.lp.emd_wrap``) and the warning of each.
OPTIMAL, MAX_ITER_REACHED = 1, 3
_MAX_ITER_WARNING = "numItermax reached before optimality. Try to increase numItermax."
_STALLED_WARNING = ("exact OT stalled before optimality: entries of negative reduced cost remain that the "
                    "restricted LP already holds (rounding); the plan is feasible but may not be optimal.")
class ShapeMismatchError(ValueError, AssertionError):
    """Weights whose lengths do not match ``M``: a ``ValueError`` (ours) that
    is also the ``AssertionError`` POT's ``emd`` raises (its shape checks are
    ``assert`` statements), so code written for either catches it."""


#: POT's default ``numItermax``: this and larger values ask for an optimal
#: plan, and are raised to the safety net a problem of this size needs.
POT_NUM_ITERMAX = 100000
_INTEGER_WARNING = ("Input histogram consists of integer. The transport plan will be casted accordingly, "
                    "possibly resulting in a loss of precision. If this behaviour is unwanted, please make "
                    "sure your input histogram consists of floating point elements.")
_THREADS_WARNING = ("The 'numThreads' parameter is deprecated and will be removed in a future version. "
                    "The network simplex solver no longer uses OpenMP, so this parameter is ignored.")


def emd(a, b, M, numItermax=100000, log=False, center_dual=True, numThreads=1, check_marginals=True,
        potentials_init=None):
    r"""Exact OT plan, a drop-in for ``ot.emd``.

    .. math::
        \gamma = \arg\min_\gamma \langle \gamma, M\rangle_F
        \quad\text{s.t.}\quad \gamma 1 = a,\; \gamma^T 1 = b,\; \gamma \ge 0

    Parameters
    ----------
    a : array_like (n,)
        Source weights; empty or ``None`` means uniform.
    b : array_like (m,)
        Target weights; empty or ``None`` means uniform.
    M : array_like (n, m)
        Cost matrix (dense).
    numItermax : int
        Cap on the network-simplex pivots of one restricted LP (POT's counts
        those of its one LP on the full graph, which needs more). Values of
        at least POT's default (100000) are a safety net: raised to
        ``1000 (n + m)`` where that is larger, so that the cap never ends a
        solve that is making progress. Smaller values are honoured as given.
    log : bool
        Also return a dict: ``cost``, ``u``, ``v``, ``warning``, ``result_code``.
    center_dual : bool
        Shift ``(u, v)`` to ``(u + c, v - c)`` with ``<a, u> = <b, v>`` (POT's
        ``center_ot_dual``); always done when a weight is zero, as POT does.
    numThreads : int or "max"
        Ignored with POT's ``DeprecationWarning`` when not 1.
    check_marginals : bool
        Check (to 6 decimals, as POT) that ``a`` and ``b`` have equal sums.
    potentials_init : tuple of arrays (n,), (m,), optional
        Duals of a nearby problem (e.g. a capped solve's ``log["u"], log["v"]``):
        the first candidate entries are ranked by reduced cost at them
        (:func:`~fastsinkhorn.solve_exact`'s ``warm_start``); the answer is
        the same.

    Returns
    -------
    gamma : ndarray (n, m)
        Optimal plan (dense, dtype of the weights as in POT).
    log : dict
        Only if ``log`` is true.

    Raises
    ------
    ValueError
        When the masses cannot be transported within the finite entries of
        ``M`` (``+inf`` marks a forbidden entry).

    Warns
    -----
    UserWarning
        POT's text when ``numItermax`` ends the solve before optimality.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.emd([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]]).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    if has_framework_array(a, b, M):  # torch/JAX: run on NumPy views of them
        return via_framework(emd, locals(), ("a", "b", "M"))
    a, b, M, type_as = _inputs(a, b, M, numThreads, check_marginals)
    if b.ndim != 1:
        raise ValueError(f"b must be 1-D for emd (emd2 takes several target histograms), got shape {b.shape}")
    G, cost, u, v, code = _solve(a, b, M, numItermax, center_dual, potentials_init)
    G = _cast_plan(G, type_as)
    if log:
        return G, _log(cost, u, v, code, type_as)
    return G


def emd2(a, b, M, processes=1, numItermax=100000, log=False, return_matrix=False, center_dual=True,
         numThreads=1, check_marginals=True, potentials_init=None):
    r"""Exact OT cost, a drop-in for ``ot.emd2``.

    Parameters
    ----------
    a : array_like (n,)
        Source weights; empty or ``None`` means uniform.
    b : array_like (m,) or (m, nb)
        Target weights; with ``nb`` columns, one problem per column (a list
        of results, as POT).
    M : array_like (n, m)
        Cost matrix (dense).
    processes : int
        POT's number of processes for several targets, deprecated: POT 0.9
        solves them one after another whatever its value, and so do we (the
        values do not depend on it). A positive int (else ``ValueError``);
        ``> 1`` with several targets warns as POT does.
    numItermax, center_dual, numThreads, check_marginals, potentials_init
        As in :func:`emd`.
    log : bool
        Also return POT's log dict (``cost``, ``u``, ``v``, ``warning``, ``result_code``).
    return_matrix : bool
        Also return the plan, as ``log["G"]`` (implies the log).

    Returns
    -------
    W : float
        Optimal cost ``<gamma, M>`` (``[W, log]`` with ``log`` or
        ``return_matrix``; a list of those for several targets).

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.emd2([0.5, 0.5], [0.25, 0.75], [[0.0, 2.0], [1.0, 0.0]])
    0.5
    """
    if has_framework_array(a, b, M):  # torch/JAX: run on NumPy views of them
        return via_framework(emd2, locals(), ("a", "b", "M"), "emd2")
    check_positive_int(processes, "processes")
    a, b, M, type_as = _inputs(a, b, M, numThreads, check_marginals)

    def one(b):
        G, cost, u, v, code = _solve(a, b, M, numItermax, center_dual, potentials_init)
        if log or return_matrix:
            out = _log(cost, u, v, code, type_as)
            if return_matrix:
                out["G"] = _cast_plan(G, type_as)
            return [cost, out]
        return cost

    if b.ndim == 1:
        return one(b)
    if processes > 1:  # POT's deprecation warning (POT runs one process whatever the value)
        warnings.warn("The 'processes' parameter has been deprecated. "
                      "Multiprocessing should be done outside of POT.", stacklevel=2)
    return [one(b[:, i].copy()) for i in range(b.shape[1])]


def _inputs(a, b, M, numThreads, check_marginals):
    """POT's input conventions: lists, empty weights, the sum check, the rescaled ``b``."""
    if sp.issparse(M):
        raise NotImplementedError("a sparse M is not supported: pass a dense cost matrix")
    if M is None:
        raise ValueError("M must be a 2-D array, got None")
    M = np.asarray(M)
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D array, got shape {M.shape}")
    n, m = M.shape
    a = np.full(n, 1.0 / n) if a is None or len(a) == 0 else np.asarray(a)
    b = np.full(m, 1.0 / m) if b is None or len(b) == 0 else np.asarray(b)
    type_as = a
    for name, w, size in (("a", a, n), ("b", b, m)):
        if w.shape[0] != size:
            raise ShapeMismatchError(f"{name} must have length {size} to match M.shape {M.shape}, "
                                     f"got shape {w.shape}")
    if numThreads != 1:
        warnings.warn(_THREADS_WARNING, DeprecationWarning, stacklevel=3)
    a, b = a.astype(np.float64), b.astype(np.float64)
    if check_marginals:
        np.testing.assert_almost_equal(a.sum(0), b.sum(0), err_msg="a and b vector must have the same sum",
                                       decimal=6)
    return a, b * a.sum(0) / b.sum(0), M, type_as


def _solve(a, b, M, numItermax, center_dual, potentials_init):
    """``(G dense, cost, u, v, (result_code, warning))`` of one problem, POT's warning if capped."""
    cap = check_positive_int(numItermax, "numItermax")
    if cap >= POT_NUM_ITERMAX:  # POT's default or more: "solve it", whatever the size
        cap = max(cap, pivot_safety_net(*M.shape))
    with warnings.catch_warnings():  # POT's own warning instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = solve_exact(M, a, b, max_pivots=cap, warm_start=potentials_init)
    code = OPTIMAL if res.status is Status.CONVERGED else MAX_ITER_REACHED
    message = None if code == OPTIMAL else _STALLED_WARNING if res.status is Status.STALLED else _MAX_ITER_WARNING
    if message:
        warnings.warn(message, UserWarning, stacklevel=4)
    u, v = res.potentials
    if center_dual or not (a.all() and b.all()):  # POT centres whenever a weight is zero
        c = (b @ v - a @ u) / (a.sum() + b.sum())
        u, v = u + c, v - c
    return res.plan.toarray(), float(res.value), u, v, (code, message)


def _cast_plan(G, type_as):
    """The plan in the weights' dtype, as POT (with its warning for integers)."""
    if type_as.dtype.kind != "f":
        warnings.warn(_INTEGER_WARNING, UserWarning, stacklevel=4)
    return G.astype(type_as.dtype, copy=False)


def _log(cost, u, v, outcome, type_as):
    """POT's log dict (the duals in the weights' dtype, as POT casts them)."""
    code, message = outcome
    return {"cost": cost, "u": u.astype(type_as.dtype), "v": v.astype(type_as.dtype), "warning": message,
            "result_code": code}
