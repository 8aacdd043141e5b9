"""POT drop-ins: ``sinkhorn``, ``sinkhorn2``, ``dist`` with POT 0.9 conventions.

POT's camelCase argument names live here and nowhere else. Every POT method
name runs a numerically stable solver; deliberate differences from POT are
listed in the README ("Differences from POT").
"""

import math
import numbers
import warnings

import numpy as np

from ..core.arguments import refuse_unless_default
from ..core.arrays import array_namespace
from ..core.checks import check_positive_int
from ..core.frameworks import has_framework_array, via_framework
from ..core.marginals import joint_l2
from ..core.methods import POT_SINKHORN, POT_SINKHORN2, POT_WARMSTART_POTENTIALS
from ..core.potentials import to_log_scalings, to_potentials
from ..core.result import ConvergenceWarning
from ..geometry.distances import dist  # noqa: F401  (POT has it next to sinkhorn)
from ..solvers import _solve
from .batch import batch_method, histograms_as_batch

#: POT method name -> (fastsinkhorn method, warmstart given as potentials?),
#: from the registry (:mod:`fastsinkhorn.core.methods`): POT's names run our
#: best method for the problem (``"auto"``: the rule of
#: :func:`~fastsinkhorn.choose_method`, SNS at small ``reg`` and tight
#: ``stopThr``). POT's ``sinkhorn_stabilized`` and ``sinkhorn_epsilon_scaling``
#: take (alpha, beta) potentials as warmstart; the others take log-scalings.
POT_METHODS = {name: (ours, name in POT_WARMSTART_POTENTIALS) for name, ours in POT_SINKHORN.items()}
#: The names POT's ``sinkhorn2`` accepts.
SINKHORN2_METHODS = POT_SINKHORN2


class DefaultValue(float):
    """A keyword's default number, told apart (by identity) from the same
    number given by the caller: a default ``stopThr`` that the dtype cannot
    reach is raised silently, a given one with a warning."""

    __slots__ = ()


#: POT's default ``stopThr`` (an L2 criterion; not the L1 ``tol`` of :func:`solve`).
POT_STOP_THR = DefaultValue(1e-9)
#: POT's ``print_period`` per method (``sinkhorn_knopp`` and ``sinkhorn_log``
#: print every 10th iteration and have no such keyword).
_PRINT_PERIOD = {"sinkhorn_stabilized": 20}
_DEFAULT_PRINT_PERIOD = 10
#: Keywords only POT's epsilon-scaling solver reads, with POT's defaults. We do
#: not epsilon-scale, so there any other value raises ``NotImplementedError``;
#: the other methods ignore them, as POT's do.
_EPSILON_SCALING_KWARGS = {"epsilon0": 1e4, "numInnerItermax": 100}

_NOT_CONVERGED = ("Sinkhorn did not converge. You might want to increase the number "
                  "of iterations `numItermax` or the regularization parameter `reg`.")


def sinkhorn(a, b, M, reg, method="sinkhorn", numItermax=1000, stopThr=POT_STOP_THR,
             verbose=False, log=False, warn=True, warmstart=None, **kwargs):
    r"""Entropic OT plan, a drop-in for ``ot.sinkhorn``.

    Solves

    .. math::
        \gamma = \arg\min_\gamma \langle \gamma, M\rangle_F
        + \mathrm{reg}\cdot\Omega(\gamma)
        \quad\text{s.t.}\quad \gamma 1 = a,\; \gamma^T 1 = b,\; \gamma \ge 0

    with :math:`\Omega(\gamma) = \sum_{ij} \gamma_{ij}\log\gamma_{ij}`, by a
    log-stable Sinkhorn or Sinkhorn-Newton-Sparse (SNS), which never
    underflow, whatever ``reg``.

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
        ``"sinkhorn_epsilon_scaling"``, ``"greenkhorn"``) all run our best
        method for the problem: SNS where :func:`~fastsinkhorn.choose_method`
        picks it (``reg`` at most 5e-3 of the cost range, ``stopThr <=
        1e-4``: there Sinkhorn would stop at ``numItermax`` far from the
        answer), else our log-stable Sinkhorn; ``"sns"`` always runs SNS.
    numItermax : int
        Maximum number of iterations: Sinkhorn iterations plus Newton steps.
    stopThr : float
        Stop when the L2 norm of the column-marginal violation (POT's
        criterion) is below this. POT's default (1e-9) is raised silently
        to what a float32 problem can reach; a value you give, with a warning.
    verbose : bool
        Print POT's progress table (``It.  |Err``): the stopping error at the
        first check of every ``print_period`` iterations, and at the last.
    log : bool
        Also return a dict with POT's keys: ``err`` (stopping error at each
        check), ``niter`` / ``n_iter`` (POT's convention: 0-based index of the
        last iteration), scalings ``u``, ``v``, their logs ``log_u``,
        ``log_v`` (also as ``logu``, ``logv``), potentials ``alpha``,
        ``beta`` and ``warmstart = (alpha, beta)``; plus ``converged``,
        ``marginal_error`` and the :class:`~fastsinkhorn.OTResult`\ (s) as ``result``.
    warn : bool
        Warn (``ConvergenceWarning``, a ``UserWarning``, POT's text) if not
        converged; once for a 2-D ``b``.
    warmstart : tuple of arrays, optional
        POT's dual initialization: ``(log_u, log_v)``, or ``(alpha, beta)``
        for ``"sinkhorn_stabilized"`` and ``"sinkhorn_epsilon_scaling"``.
    **kwargs
        POT's ``tau`` (absorb the scalings into the potentials when they
        leave ``[1/tau, tau]``; our ``absorb_threshold``) and ``print_period``
        are honoured on every method. ``epsilon0`` and ``numInnerItermax``
        (epsilon scaling, which is not implemented) raise
        ``NotImplementedError`` with ``method="sinkhorn_epsilon_scaling"``
        unless given POT's defaults; the other methods ignore them, as POT's
        do. Other names are options of
        :class:`~fastsinkhorn.core.options.SinkhornOptions` or, for
        ``method="sns"``, :class:`~fastsinkhorn.core.options.SNSOptions`
        (unknown names warn).

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
    if has_framework_array(a, b, M):  # torch/JAX: run on NumPy views of them
        return via_framework(sinkhorn, locals(), ("a", "b", "M"), "sinkhorn")
    return _dispatch(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn,
                     warmstart, kwargs, loss_only=False)


def sinkhorn2(a, b, M, reg, method="sinkhorn", numItermax=1000, stopThr=POT_STOP_THR,
              verbose=False, log=False, warn=False, warmstart=None, **kwargs):
    r"""Entropic OT loss ``<M, P>`` (without the entropy), a drop-in for ``ot.sinkhorn2``.

    Same arguments as :func:`sinkhorn` (note ``warn=False`` by default, as in
    POT). Returns the loss (a scalar of the input's array library), or ``k``
    losses when ``b`` is 2-D; with ``log=True``, ``(loss, log)``.

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> round(float(ot.sinkhorn2([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1)), 4)
    0.2689
    """
    if has_framework_array(a, b, M):  # torch/JAX: run on NumPy views of them
        return via_framework(sinkhorn2, locals(), ("a", "b", "M"), "sinkhorn2")
    return _dispatch(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn,
                     warmstart, kwargs, loss_only=True)


def _dispatch(a, b, M, reg, method, numItermax, stopThr, verbose, log, warn,
              warmstart, kwargs, loss_only):
    names = SINKHORN2_METHODS if loss_only else tuple(POT_METHODS)
    if not isinstance(method, str) or method.lower() not in names:
        raise ValueError(f"Unknown method {method!r}: method must be one of {names}")
    ours, warmstart_is_potential = POT_METHODS[method.lower()]
    options = _options(dict(kwargs), epsilon_scaling=method.lower() == "sinkhorn_epsilon_scaling")
    if method.lower() == "sinkhorn_epsilon_scaling":
        numItermax = _epsilon_scaling_budget(numItermax)
    print_period = options.pop("print_period", None) or _PRINT_PERIOD.get(method.lower(),
                                                                          _DEFAULT_PRINT_PERIOD)
    xp = array_namespace(M=M, a=a, b=b)
    b = xp.asarray(b) if b is not None else b
    M = xp.asarray(M)
    n_hists = b.shape[1] if b is not None and b.ndim == 2 else 0
    tol, tol_given = _stop_threshold(stopThr), _given(stopThr, "stopThr")

    def one(b_k, ws):
        table = _ProgressTable(print_period) if verbose else None
        res = _solve(M, a, b_k, reg=reg, method=ours, tol=tol, max_iter=numItermax,
                     warm_start=_pot_warmstart(xp, ws, reg, warmstart_is_potential),
                     callback=table, verbose=False, backend="auto", options=options,
                     norm="l2", warn=False, tol_given=tol_given, hedge=False)
        if table is not None:
            table.finish(res)
        return res

    if n_hists and batch_method(ours, M, reg, tol) == "sinkhorn":
        # the k problems as one batch, iterated jointly as POT does
        M, b, warmstart = histograms_as_batch(xp, M, b, warmstart, options)
        n_hists = 0
    if n_hists:  # where SNS is the method: k solves
        results = [one(b[:, k], None if warmstart is None else (warmstart[0][:, k], warmstart[1][:, k]))
                   for k in range(n_hists)]
    else:
        results = [one(b, warmstart)]
    if warn and not all(bool(np.all(r.converged)) for r in results):
        warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=3)
    if n_hists or results[0].batched:
        out = xp.asarray([r.value_linear for r in results]) if n_hists else results[0].value_linear
    else:
        out = xp.asarray(results[0].value_linear)[()] if loss_only else results[0].plan
    return (out, _log(results, reg)) if log else out


#: POT's epsilon scaling runs at least this many epsilon steps (its ``numItermin``).
_EPSILON_STEPS_MIN = 35


def _epsilon_scaling_budget(numItermax):
    """Sinkhorn iterations for POT's ``numItermax`` epsilon steps: POT's bound,
    ``max(numItermax, 35) * numInnerItermax`` (``numInnerItermax`` is refused
    unless POT's default, 100). We solve at ``reg`` directly, with no epsilon
    steps; passing ``numItermax`` through would stop where POT's converges."""
    if isinstance(numItermax, bool) or not isinstance(numItermax, numbers.Integral):
        raise ValueError(f"numItermax must be an int, got {numItermax!r}")
    return max(int(numItermax), _EPSILON_STEPS_MIN) * _EPSILON_SCALING_KWARGS["numInnerItermax"]


def _given(value, name):
    """``name`` if the caller gave ``value``, ``None`` for the keyword's default."""
    return None if isinstance(value, DefaultValue) else name


def _stop_threshold(stopThr):
    """POT's ``stopThr`` as our ``tol``: at or below 0 (never met), POT runs
    ``numItermax`` iterations, and so do we (``tol=0``); ``inf`` stops at the
    first check."""
    if isinstance(stopThr, bool) or not isinstance(stopThr, numbers.Real) or math.isnan(stopThr):
        raise ValueError(f"stopThr must be a number, got {stopThr!r}")
    return min(max(float(stopThr), 0.0), float(np.finfo(np.float64).max))


def _options(kwargs, epsilon_scaling=True):
    """POT's tuning keywords -> our options; unsupported values raise.

    Epsilon scaling's keywords (``epsilon0``, ``numInnerItermax``) are refused
    unless at POT's defaults where the method is epsilon scaling
    (``epsilon_scaling``), and accepted elsewhere, where POT's solvers ignore
    them too (the rule of :mod:`fastsinkhorn.core.arguments`).
    """
    for name, default in _EPSILON_SCALING_KWARGS.items():
        if name in kwargs:
            value = kwargs.pop(name)
            if epsilon_scaling:
                refuse_unless_default(name, value, default, "fastsinkhorn does not do epsilon scaling (every "
                                      "method runs the stable solver at reg directly)")
    if "tau" in kwargs:
        if "absorb_threshold" in kwargs:
            raise TypeError("give tau (POT's name) or absorb_threshold, not both")
        kwargs["absorb_threshold"] = kwargs.pop("tau")
    period = kwargs.get("print_period")
    if period is not None:
        check_positive_int(period, "print_period")
    return kwargs


class _ProgressTable:
    """``verbose=True``: POT's progress table, fed by the solver's callback.

    POT prints ``{iteration:5d}|{error:8e}|`` every ``print_period``
    iterations (0-based, as its ``niter``) and repeats the header every 20
    lines. Our checks may fall between multiples of the period (the GPU checks
    every 10th iteration), so the first check at or after each multiple is
    printed, and the last check always is.
    """

    def __init__(self, period):
        self.period, self.due, self.lines, self.last = period, 0, 0, None

    def __call__(self, state):
        self._row(state.iteration - 1, state.error)

    def _row(self, index, error):
        if index < self.due or index == self.last:
            return
        if self.lines % 20 == 0:
            print("{:5s}|{:12s}".format("It.", "Err") + "\n" + "-" * 19)
        print(f"{index:5d}|{error:8e}|")
        self.lines, self.last = self.lines + 1, index
        self.due = (index // self.period + 1) * self.period

    def finish(self, result):
        """Print the check that stopped the solve (the callback does not see it)."""
        h = result.history
        if h["iteration"]:
            self.due = 0
            self._row(h["iteration"][-1] - 1, h["error"][-1])


def _pot_warmstart(xp, warmstart, reg, is_potential):
    """POT's ``warmstart`` as our potentials: ``(alpha, beta)`` as they are,
    ``(log_u, log_v)`` times ``reg`` (:mod:`fastsinkhorn.core.potentials`)."""
    if warmstart is None:
        return None
    if is_potential:
        return tuple(xp.asarray(w, dtype=np.float64) for w in warmstart)
    return to_potentials(xp, warmstart, reg)


def _joint_errors(histories):
    """POT's ``err`` for a 2-D ``b``: the Frobenius norm of all ``k`` violations
    at each check, a finished solve counting with its final error."""
    lengths = [len(h) for h in histories]
    return [joint_l2(h[min(i, len(h) - 1)] for h in histories if h) for i in range(max(lengths, default=0))]


def _log(results, reg):
    """POT's log dict (union of the keys POT's Sinkhorn variants return).

    ``results``: one result, one batch result (a 2-D ``b`` iterated jointly)
    or one result per histogram of a 2-D ``b`` (methods without batches).
    """
    first = results[0]
    xp = array_namespace(plan=first.plan)
    if first.batched:  # potentials (k, n): POT's (n, k)
        f, g = (p.astype(np.float64).T for p in first.potentials)
        errors = list(first.history["error"])  # already the joint norm (the batch's stopping error)
    elif len(results) > 1:
        f, g = (xp.stack([r.potentials[i].astype(np.float64) for r in results], axis=1) for i in (0, 1))
        errors = _joint_errors([r.history["error"] for r in results])
    else:
        f, g = (p.astype(np.float64) for p in first.potentials)
        errors = list(first.history["error"])
    dtype = first.potentials[0].dtype  # POT's: the input's
    log_u, log_v = to_log_scalings(xp, (f, g), reg)  # in float64, then the input's dtype
    with np.errstate(over="ignore"):  # POT's scalings: may overflow at small reg (use log_u)
        u, v, log_u, log_v = (x.astype(dtype) for x in (xp.exp(log_u), xp.exp(log_v), log_u, log_v))
    f, g = f.astype(dtype), g.astype(dtype)
    niter = max(r.n_iter for r in results) - 1  # POT's niter: 0-based index of the last iteration
    stacked = first.batched or len(results) > 1
    return {
        "err": errors,
        "niter": niter, "n_iter": niter,
        "u": u, "v": v, "log_u": log_u, "log_v": log_v, "logu": log_u, "logv": log_v,
        "alpha": f, "beta": g, "warmstart": (f, g),
        "converged": all(bool(np.all(r.converged)) for r in results),
        "marginal_error": (list(first.marginal_error) if first.batched
                           else [r.marginal_error for r in results] if stacked else first.marginal_error),
        "result": results if len(results) > 1 else first,
    }
