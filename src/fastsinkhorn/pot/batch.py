"""Batches of independent problems: POT's ``ot.batch.solve_batch`` and ragged padding.

``fastsinkhorn.solve`` takes a batch directly (``M`` of shape ``(B, n, m)``,
or a :class:`~fastsinkhorn.PointCloud` of ``(B, n, d)`` clouds); this module
adds POT's entry point (``import fastsinkhorn.batch`` for ``ot.batch``) and
:func:`pad` for problems of different sizes.
"""

import warnings

import numpy as np

from ..core.arrays import array_namespace, to_numpy
from ..core.methods import AUTO, POT_BATCH, POT_BATCH_UNIMPLEMENTED
from ..core.potentials import to_log_scalings
from ..core.result import ConvergenceWarning
from ..core.stacking import stack_results
from ..solvers import _solve, choose_method

_REG_TYPES = ("entropy", "kl")


def pad(costs, a=None, b=None):
    """Stack problems of different sizes into one batch, padding with zero mass.

    Problem ``p`` of size ``(n_p, m_p)`` is placed in the top-left corner of
    a ``(max n, max m)`` cost (padding cost 0) with masses ``a_p``, ``b_p``
    followed by zeros. Rows and columns of zero mass carry exactly zero plan,
    so the batch's plan ``p`` restricted to ``[:n_p, :m_p]`` is the plan of
    problem ``p`` and its value is that of problem ``p``.

    Parameters
    ----------
    costs : sequence of 2-D arrays
    a, b : sequences of 1-D arrays, optional
        Masses of each problem (uniform when omitted).

    Returns
    -------
    M : array (B, n, m)
    a, b : arrays (B, n), (B, m)

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> M, a, b = fastsinkhorn.batch.pad([np.zeros((2, 3)), np.zeros((1, 1))])
    >>> M.shape, a.tolist(), b.round(4).tolist()
    ((2, 2, 3), [[0.5, 0.5], [1.0, 0.0]], [[0.3333, 0.3333, 0.3333], [1.0, 0.0, 0.0]])
    """
    costs = [np.asarray(c, dtype=np.float64) for c in costs]
    if not costs or any(c.ndim != 2 or 0 in c.shape for c in costs):
        raise ValueError("costs must be a non-empty sequence of non-empty 2-D arrays")
    n, m = max(c.shape[0] for c in costs), max(c.shape[1] for c in costs)
    M, A, B = np.zeros((len(costs), n, m)), np.zeros((len(costs), n)), np.zeros((len(costs), m))
    for name, given, out, axis in (("a", a, A, 0), ("b", b, B, 1)):
        if given is not None and len(given) != len(costs):
            raise ValueError(f"{name} must give one mass vector per problem ({len(costs)}), got {len(given)}")
        for p, c in enumerate(costs):
            w = np.full(c.shape[axis], 1.0 / c.shape[axis]) if given is None else np.asarray(given[p], np.float64)
            if w.shape != (c.shape[axis],):
                raise ValueError(f"{name}[{p}] must have shape ({c.shape[axis]},), got {w.shape}")
            out[p, : w.shape[0]] = w
    for p, c in enumerate(costs):
        M[p, : c.shape[0], : c.shape[1]] = c
    return M, A, B


def solve_batch(M, reg=None, a=None, b=None, max_iter=1000, tol=1e-5, method="auto", inner_iter=1,
                inner_reg=0.001, reg_type="entropy", grad="envelope", solver=None):
    r"""A batch of entropic OT problems, a drop-in for POT's ``ot.batch.solve_batch``.

    Solves each problem ``p`` of the batch,
    ``min <M_p, T> + reg R(T)`` with ``T 1 = a_p``, ``T^T 1 = b_p``, by the
    best method for the batch (:func:`batch_method`): the batched log-stable
    Sinkhorn of :func:`fastsinkhorn.solve` (one pass over all problems per
    iteration), or, where :func:`~fastsinkhorn.choose_method` picks SNS
    (``reg`` at most ``5e-3`` of the cost range and ``tol <= 1e-4``), the
    batched SNS (each problem its own Newton iteration; small problems all
    in one compiled call); problems that do not reach ``tol`` within
    ``max_iter`` raise a :class:`~fastsinkhorn.ConvergenceWarning` (POT's
    does not warn).

    Parameters
    ----------
    M : array (B, n, m)
        Costs (NumPy or CuPy).
    reg : float
        Regularization (> 0). ``None``/0 (exact OT by POT's proximal method)
        is not implemented and raises ``NotImplementedError``.
    a, b : arrays (B, n), (B, m), optional
        Masses (uniform when omitted; a 1-D array is shared by all problems).
    max_iter : int
        Iterations at most.
    tol : float
        Stop when every problem's L1 marginal error is at most ``tol``
        (POT stops on the change of the dual variables instead; this bounds
        what the plan violates).
    method : {"auto", "sinkhorn", "log_sinkhorn"}
        All run our best method as above; ``"proximal"`` raises ``NotImplementedError``.
    inner_iter, inner_reg
        Parameters of POT's proximal method: only their defaults are accepted.
    reg_type : {"entropy", "kl"}
        What ``value`` adds to ``value_linear``: ``reg * sum T log T`` or
        ``reg * KL(T | a b^T)`` (POT's definitions).
    grad : {"envelope", "detach", None}
        No autodiff here: the plan is returned without gradient information,
        as POT's ``"envelope"`` and ``"detach"`` do; ``"autodiff"`` and
        ``"last_step"`` raise ``NotImplementedError``.
    solver : {"log_sinkhorn", "sinkhorn", "auto"}, optional
        The earlier name of ``method`` (POT's ``solve_batch`` before its
        proximal method, which had ``solver="log_sinkhorn"``), for code written
        against it: taken as ``method``, with the same values
        (``"proximal"`` raises ``NotImplementedError``). Give one or the other.

    Returns
    -------
    OTResult
        ``plan`` (B, n, m), ``value`` and ``value_linear`` (B,),
        ``potentials``: POT's log-scalings ``(f / reg, g / reg)`` of shapes
        (B, n), (B, m), so that ``plan = exp(f/reg + g/reg - M / reg)``;
        ``log["n_iter"]``, ``converged`` (B,) and ``marginal_error`` (B,).
    """
    if reg is None or reg == 0:
        raise NotImplementedError("reg=None or 0 (exact OT, POT's proximal method) is not implemented")
    keyword = "method"
    if solver is not None:
        if method != "auto":
            raise TypeError(f"give method (POT's name) or solver (its earlier name), not both: "
                            f"method={method!r}, solver={solver!r}")
        keyword, method = "solver", solver
    if method not in POT_BATCH:
        if method in POT_BATCH_UNIMPLEMENTED:
            raise NotImplementedError(f"{keyword}={method!r} is not implemented; use 'auto' or 'log_sinkhorn'")
        raise ValueError(f"{keyword} must be one of {tuple(POT_BATCH) + POT_BATCH_UNIMPLEMENTED}, got {method!r}")
    reg_type = reg_type.lower() if isinstance(reg_type, str) else reg_type
    if reg_type not in _REG_TYPES:
        raise ValueError(f"reg_type must be one of {_REG_TYPES}, got {reg_type!r}")
    if grad not in ("envelope", "detach", None):
        raise NotImplementedError(f"grad={grad!r}: fastsinkhorn has no autodiff (use 'envelope' or 'detach')")
    for name, value, default in (("inner_iter", inner_iter, 1), ("inner_reg", inner_reg, 0.001)):
        if value != default:
            raise NotImplementedError(f"{name} is a parameter of the proximal method, which is not "
                                      f"implemented; only the default {name}={default} is accepted")
    xp = array_namespace(M, a, b)
    if xp.ndim(xp.asarray(M)) != 3:
        raise ValueError(f"M must have shape (B, n, m), got {xp.asarray(M).shape}")
    res = solve_problems(M, a, b, reg=reg, tol=tol, max_iter=max_iter, method=POT_BATCH[method], verbose=False,
                         backend="auto", options={}, warn=False, hedge=False, reg_type=reg_type)
    if not bool(np.all(to_numpy(res.converged))):  # POT's solve_batch is silent here; we report it
        warnings.warn(f"solve_batch: {int((~to_numpy(res.converged)).sum())} of {len(res.converged)} problems "
                      f"did not reach tol={res.tol:.1e} in max_iter={max_iter} iterations; increase max_iter "
                      "or reg", ConvergenceWarning, stacklevel=2)
    res.potentials = to_log_scalings(xp, res.potentials, reg)  # POT's log-scalings, in the input's dtype
    return res


#: Options of the scaling iteration on stored kernels, which a shared-cost
#: batch (log-domain passes) has no use for: given, the batch is stored.
_SCALING_OPTIONS = ("absorb_threshold", "check_every")


def histograms_as_batch(xp, M, b, warmstart=None, options=()):
    """POT's ``k`` histograms sharing ``a`` and ``M`` (a 2-D ``b`` (m, k),
    a warmstart (n, k), (m, k): problems on the last axis) as our batch
    (problems on the first axis): ``b`` (k, m), warmstart (k, n), (k, m)
    (views), and ``M`` as it is, a batch of problems on one cost (the
    shared-cost batch of :mod:`fastsinkhorn.geometry.shared`: one product
    over the cost serves all ``k``), or, where ``options`` set one of the
    scaling iteration's options (POT's ``tau``), ``(k, n, m)`` copies of it,
    on which that iteration runs and honours them. A batched result's
    per-problem arrays go back to POT's layout by ``.T``."""
    if any(name in options for name in _SCALING_OPTIONS):
        M = xp.ascontiguousarray(xp.broadcast_to(M, (b.shape[1],) + M.shape))
    return M, b.T, None if warmstart is None else tuple(xp.asarray(w).T for w in warmstart)


def batch_method(method, M, reg, tol):
    """The method for problems sharing a cost range (a batch ``M``, or a 2-D
    ``b`` of POT's): ``"sinkhorn"`` where :func:`~fastsinkhorn.choose_method`
    picks it for ``M``'s range, else ``"auto"`` (SNS, each problem its own
    Newton iteration); either runs as one batch. Other methods are returned
    as they are."""
    if method != AUTO:
        return method
    from ..core.validation import _as_cost, check_reg

    cost_range = _as_cost(array_namespace(M), M)[1]
    return "sinkhorn" if choose_method(check_reg(reg), cost_range, tol) == "sinkhorn" else AUTO


def solve_problems(M, a, b, *, reg, tol, max_iter, method=AUTO, warm_start=None, progress=None,
                   **solve_options):
    """A batch ``M`` (B, n, m) solved by :func:`batch_method`'s choice as one
    batch (``"auto"``: SNS at small ``reg``, every problem its own Newton
    iteration), or, with ``progress`` and SNS, problem by problem (one
    progress table per problem, as POT prints), the results stacked into one
    batched :class:`~fastsinkhorn.OTResult`.

    ``M``: (B, n, m), or (n, m) shared by all problems (then ``a`` or ``b`` is 2-D).
    ``a``, ``b``: (B, n), (B, m), or 1-D shared by all problems (or None).
    ``warm_start``: potentials (B, n), (B, m). ``progress``: a factory of
    callbacks (one per solve) with a ``finish(result)`` method (POT's
    ``verbose`` table), or None. ``solve_options`` go to ``_solve``.
    """
    def run(M_p, a_p, b_p, ws, method):
        table = progress() if progress else None
        res = _solve(M_p, a_p, b_p, reg=reg, method=method, tol=tol, max_iter=max_iter, warm_start=ws,
                     callback=table, **solve_options)
        if table is not None:
            table.finish(res)
        return res

    xp = array_namespace(M, a, b)
    M, a, b = xp.asarray(M), *(None if w is None else xp.asarray(w) for w in (a, b))
    method = batch_method(method, M, reg, tol)
    if method == "sinkhorn" or progress is None:
        return run(M, a, b, warm_start, method)

    def problem(w, p):  # problem p's masses (a shared 1-D one, or none)
        return w[p] if w is not None and getattr(w, "ndim", 1) == 2 else w

    n_problems = max(w.shape[0] if w is not None and w.ndim == 2 else 0 for w in (a, b)) if M.ndim == 2 \
        else M.shape[0]
    return stack_results([run(M if M.ndim == 2 else M[p], problem(a, p), problem(b, p),
                              None if warm_start is None else (warm_start[0][p], warm_start[1][p]), method)
                          for p in range(n_problems)])
