"""``solve``: the native entry point, the method registry and the result."""

import contextlib
import dataclasses
import inspect
import math
import warnings

import numpy as np

from .algorithms.entropic import RUNNERS, in_dtype, run_entropic, xp_all
from .backends._contract import COST_KINDS
from .core.arguments import (
    check_cloud_options,
    check_pot_arguments,
    check_pot_method,
    grid_method,
    refuse_unless_default,
    runs_on_gpu,
)
from .core.arrays import is_cupy_array, to_numpy
from .core.checks import check_positive, check_positive_int
from .core.frameworks import has_framework_array, via_framework
from .core.methods import AUTO, BATCH_METHODS, ENTROPIC_METHODS, POT_SOLVE, REGISTRY
from .core.options import parse_options
from .core.relaxation import check_unbalanced
from .core.result import ConvergenceWarning, Status
from .core.validation import check_reference_measure, effective_tol, prepare_problem, reference_cost
from .geometry.dense import DenseGeometry
from .geometry.grid import Grid
from .geometry.point_cloud import PointCloud

#: POT's ``ot.solvers`` names implemented here (``choose_method`` and ``METHODS`` are ours).
__all__ = ["solve", "solve_sample"]

#: name -> (options class, runner, default max_iter), for the registry's entropic methods
METHODS = {name: (REGISTRY[name].options, RUNNERS[name], REGISTRY[name].max_iter) for name in ENTROPIC_METHODS}

#: ``method="auto"`` picks SNS when ``reg`` is at most this fraction of the
#: cost scale (and the tolerance is tight): there Sinkhorn needs thousands of
#: iterations, SNS a few dozen. Above it, Sinkhorn converges in a few hundred
#: cheap iterations and Newton steps do not pay for themselves.
AUTO_SNS_MAX_REG = 5e-3
AUTO_SNS_MAX_TOL = 1e-4


def choose_method(reg, cost_scale, tol):
    """The documented rule behind ``method="auto"``.

    ``"sns"`` if ``reg <= AUTO_SNS_MAX_REG * cost_scale`` and ``tol <=
    AUTO_SNS_MAX_TOL``, else ``"sinkhorn"``. ``cost_scale`` is the spread of
    the costs that can carry mass: ``max(M) - min(M)`` for the usual costs,
    without the entries that forbid (``inf``, or huge finite costs), and
    insensitive to constants added to rows or columns of ``M`` (see
    :func:`fastsinkhorn.geometry.cost_scale.support_scale`); for a point cloud, a
    bound of its cost range. When ``"auto"`` picks SNS it also turns on its
    ``sinkhorn_hedge``: at the switch to Newton, the warm-up's measured rate
    decides whether Sinkhorn would finish sooner.
    """
    if cost_scale > 0 and reg <= AUTO_SNS_MAX_REG * cost_scale and tol <= AUTO_SNS_MAX_TOL:
        return "sns"
    return "sinkhorn"


def solve(M, a=None, b=None, reg=None, c=None, reg_type="KL", unbalanced=None, unbalanced_type="KL",
          method=None, n_threads=None, max_iter=None, plan_init=None, potentials_init=None, tol=None,
          verbose=False, grad="autodiff", *, warm_start=None, callback=None, backend="auto", **options):
    r"""Solve an entropic optimal transport problem, balanced or unbalanced.

    A drop-in for POT's ``ot.solve`` (same positional arguments) for what it
    computes with entropic regularisation (and exact OT, ``reg=None``):

    .. math::
        \min_{P \ge 0} \langle M, P\rangle + \mathrm{reg}\, \Omega(P)
        + \rho_a \mathrm{KL}(P 1 | a) + \rho_b \mathrm{KL}(P^T 1 | b)

    with ``Omega(P) = KL(P | a b^T)`` (``reg_type="KL"``, POT's default) or
    ``sum P log P`` (``"entropy"``); balanced OT (``unbalanced=None``) holds
    the marginals exactly instead (then both give the same plan).

    Parameters
    ----------
    M : array_like (n, m) or (B, n, m), PointCloud or Grid
        Cost matrix (NumPy or CuPy; float32 or float64; C- or F-ordered), or
        a :class:`~fastsinkhorn.PointCloud`, whose costs are computed on the
        fly (the plan is then returned as a :class:`~fastsinkhorn.LazyPlan`),
        or a :class:`~fastsinkhorn.Grid` (histograms ``a``, ``b`` on a regular
        grid; log-domain Sinkhorn, separable passes, a ``LazyPlan``).
        A 3-D ``M`` (or a batch of clouds) is a batch of ``B`` independent
        problems, solved together: by Sinkhorn (one pass over all problems
        per iteration) or by SNS (each problem its own Newton iteration, as
        if solved alone; small problems all in one compiled call). Each
        problem stops at its own tolerance check, and the result's
        per-problem fields are arrays.
    a, b : array_like (n,), (m,), optional
        Marginals (with equal sums for balanced OT); uniform when omitted or
        empty. For a batch, ``(B, n)``/``(B, m)``, or 1-D ones shared by every problem.
        With a 2-D ``M``, a 2-D ``a`` and/or ``b`` (one row per problem) is a
        batch of ``B`` problems on that one cost: Sinkhorn's passes of all
        problems are matrix-matrix products over it (exact at any ``reg``),
        no copy of ``M`` is made, each problem stops on its own, and
        ``result.plan[p]`` is problem ``p``'s :class:`~fastsinkhorn.LazyPlan`.
    reg : float or None
        Entropic regularization (> 0). ``None`` or ``0`` (POT's convention):
        exact OT by :func:`~fastsinkhorn.solve_exact` (``max_iter``, ``tol``,
        ``verbose``, ``backend`` and ``**options`` go to it; it returns an
        :class:`~fastsinkhorn.ExactResult` with a sparse plan and a
        certificate).
    c : array_like (n, m), optional
        Reference measure of the KL regulariser, ``KL(P | c)`` (positive;
        default ``a b^T``), for a dense 2-D ``M``. Ignored with
        ``reg_type="entropy"`` (whose reference measure is 1), as in POT.
        POT's ``ot.solve`` ignores ``c`` for balanced OT; we do not. With
        ``reg=None`` it weighs nothing (accepted, and checked as with
        ``reg > 0``: a ``c`` with zeros raises ``ValueError``).
    reg_type : {"KL", "entropy"}
        Regulariser; it changes ``value`` and, for unbalanced OT, the plan.
        Others raise ``NotImplementedError``, except with ``reg=None``,
        where the regulariser weighs nothing and any value is accepted (as in POT).
    unbalanced : float or pair of floats, optional
        KL penalties ``(rho_a, rho_b)`` of the marginals (POT's ``reg_m``;
        ``inf`` keeps a marginal exact). ``None``: balanced OT.
    unbalanced_type : {"KL"}
        Only KL-relaxed marginals are implemented: others raise
        ``NotImplementedError`` with ``unbalanced``, and are accepted for
        balanced OT (``unbalanced=None``), where no marginal is relaxed, as in POT.
    method : {None, "auto", "sinkhorn", "sinkhorn_log", "sns", "exact"}
        ``"sinkhorn"`` (or POT's ``"sinkhorn_log"``): log-stable Sinkhorn with
        early stopping. ``"sns"``: Sinkhorn-Newton-Sparse (Tang et al. 2024).
        ``None``/``"auto"``: see :func:`choose_method` (for a batch, from the
        batch's cost range; where it picks Sinkhorn, the batched Sinkhorn
        without Newton steps). ``"exact"``: as ``reg=None``.
        POT's other methods (``"mm"``, ``"lbfgsb"``, and ``solve_sample``'s
        ``"1d"``, ``"sliced"``, ``"lowrank"``, ...: ``core.methods.POT_UNIMPLEMENTED``)
        raise ``NotImplementedError``.
    n_threads : int, optional
        Most CPU threads of this solve (default: ``NUMBA_NUM_THREADS``, all
        cores). Each pass over the cost runs on at most one thread per
        ``2**16`` entries and per core this process may use (its CPU affinity
        and cgroup quota), so small problems run on one thread whatever
        ``n_threads``; the answer is the same, bitwise, for every thread count.
        An entropic solve on the GPU raises ``NotImplementedError`` (no CPU
        threads to set); exact OT honours it on every backend (its LP and
        pricing run on the CPU).
    max_iter : int, optional
        Cap on iterations (Sinkhorn iterations plus Newton steps); 10000 by default.
    plan_init : None
        Not supported (the solvers start from potentials).
    potentials_init : tuple of arrays, optional
        Same as ``warm_start`` (potentials in our convention; see below).
    tol : float, optional
        Bound on the L1 marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1`` of
        the returned plan. Unbalanced OT measures it against the marginals the
        optimal plan has at the current potentials, ``a exp(-f_a / rho_a)``
        (``f_a`` the potential in the ``reg_type`` frame; likewise for ``b``):
        it is the L1 norm of the dual's gradient, which vanishes at the
        optimum. Default ``DEFAULT_TOL`` of the dtype (1e-9 for float64, 1e-5
        for float32); raised with a warning to what the dtype can reach.
        ``0`` runs ``max_iter`` iterations (and warns that it did not converge).
    verbose : bool
        Print one line per convergence check (all of them, the last included).
    grad : {"autodiff", "envelope", "last_step", "detach"}
        POT's gradient modes; NumPy and CuPy arrays carry no gradients, so
        they change nothing. With tensors that require a gradient:
        ``"autodiff"``: the exact derivatives of ``value``, ``value_linear``,
        ``plan`` and ``potentials`` (implicit differentiation at the
        optimum); ``"envelope"``: ``value``'s envelope gradients (POT's);
        ``"last_step"``: the derivative of one Sinkhorn step from the
        solution (POT's); ``"detach"``: no graph
        (:mod:`fastsinkhorn.core.autodiff`).
    warm_start : tuple of arrays, optional
        Potentials ``(f, g)`` from an earlier solve (``result.potentials``).
    callback : callable, optional
        ``callback(state)`` at each convergence check (every iteration on the
        CPU, every ``check_every``-th, 10 by default, on the GPU; every Newton
        step) whose error is still above the tolerance: not at the check that
        meets it, nor at one that ends an SNS warm-up or annealing stage on
        its own threshold. ``state`` is an
        :class:`~fastsinkhorn.core.monitor.IterationState`: ``iteration``,
        ``error`` (the checked L1 marginal error), ``phase`` (``"sinkhorn"``
        or ``"newton"``), ``elapsed`` (seconds) and ``extra`` (Newton checks:
        ``cg_iterations``, ``nnz``, ``step``, ``solver``, ``reg``). Raising
        ``StopIteration`` stops the solve cleanly.
    backend : {"auto", "cpu", "gpu", "reference"}
        ``"auto"`` follows the arrays (CuPy -> ``"gpu"``, else ``"cpu"``).
    **options
        Method options: :class:`~fastsinkhorn.core.options.SinkhornOptions` or
        :class:`~fastsinkhorn.core.options.SNSOptions` fields. Unknown names
        warn. A point cloud's Sinkhorn checks every iteration and keeps no
        scalings: ``check_every`` other than 1 and ``absorb_threshold``
        raise ``ValueError`` there. How every argument is honoured or
        refused: :mod:`fastsinkhorn.core.arguments`.

    Returns
    -------
    OTResult
        ``plan``, ``potentials`` (``(f, g)`` in cost units: ``P_ij = exp((f_i
        + g_j - M_ij) / reg)``, i.e. ``reg`` times POT's log-scalings for
        ``reg_type="entropy"``), ``value`` (POT's: ``<M, P> + reg
        Omega(P)`` plus ``rho KL`` terms of the marginals, each ``KL(p | q) =
        sum p log(p / q)`` as POT computes it), ``value_linear``, ``marginals``,
        ``marginal_error``, ``n_iter``, ``converged``, ``status``, ``history``...

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` runs out first (the plan is still the last iterate).

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> M = np.array([[0.0, 1.0], [1.0, 0.0]])
    >>> res = fastsinkhorn.solve(M, reg=0.1, method="sinkhorn")
    >>> bool(res.converged), res.plan.round(3).tolist()
    (True, [[0.5, 0.0], [0.0, 0.5]])
    >>> res = fastsinkhorn.solve(M, [0.5, 0.5], [0.25, 0.25], 0.1, unbalanced=1.0)
    >>> round(float(res.plan.sum()), 3)  # between the two masses
    0.673
    """
    if has_framework_array(M, a, b, c):  # torch/JAX: run on NumPy views of them
        return via_framework(solve, locals(), ("M", "a", "b", "c"), "solve")
    exact = reg is None or (not isinstance(reg, bool) and reg == 0) or method == "exact"
    if isinstance(M, Grid):  # log-domain Sinkhorn only (see grid_method)
        method = grid_method(method, exact, c)
    on_gpu = runs_on_gpu(backend, *((M.x, a, b) if isinstance(M, PointCloud) else (M, a, b)))
    check_pot_arguments(unbalanced, unbalanced_type, plan_init, grad, n_threads, on_gpu, exact, method)
    if potentials_init is not None:
        if warm_start is not None:
            raise TypeError("give potentials_init (POT's name) or warm_start, not both")
        warm_start = potentials_init
    if exact:
        with _threads(n_threads):
            return _exact(M, a, b, reg, c, reg_type, unbalanced, method, max_iter, tol, verbose, warm_start,
                          callback, backend, options)
    with _threads(n_threads):
        return _solve(M, a, b, reg=reg, method=POT_SOLVE.get(method, method), tol=tol,
                      max_iter=max_iter, warm_start=warm_start, callback=callback, verbose=verbose,
                      backend=backend, options=options, unbalanced=check_unbalanced(unbalanced),
                      reg_type=reg_type, c=c)


def _exact(M, a, b, reg, c, reg_type, unbalanced, method, max_iter, tol, verbose, warm_start, callback, backend,
           options):
    """``reg=None`` or ``0`` (POT's convention), or ``method="exact"``: :func:`solve_exact`.

    ``c`` and ``reg_type`` are inert here (the regulariser weighs nothing, and
    POT ignores both): accepted, ``c`` checked as where it acts (with
    ``reg_type="KL"``: a positive finite array of ``M``'s shape), so that
    ``0 * KL(P | c)`` is 0 for every plan.
    """
    from .algorithms.exact.solver import solve_exact

    if reg is not None and reg != 0:
        raise ValueError(f"method='exact' solves unregularised OT: give reg=None (or 0), got reg={reg!r}")
    if method not in (None, AUTO, "exact"):
        raise ValueError(f"method={method!r} needs reg > 0; exact OT (reg=None) has method 'exact'")
    for name, value in (("unbalanced", unbalanced), ("callback", callback)):
        if value is not None:
            raise NotImplementedError(f"{name} is not supported by exact OT (reg=None)")
    if c is not None and isinstance(reg_type, str) and reg_type.lower() == "kl":
        check_reference_measure(M, c)
    return solve_exact(M, a, b, max_iter=max_iter, tol=tol, verbose=verbose, backend=backend,
                       warm_start=warm_start, **options)


def _threads(n_threads):
    """Cap the CPU threads of the solve at ``n_threads`` (see ``backends._threads``)."""
    if n_threads is None:
        return contextlib.nullcontext()
    from .backends._threads import at_most  # starts Numba's threads (short spin)

    return at_most(n_threads)


def solve_sample(X_a, X_b, a=None, b=None, metric="sqeuclidean", reg=None, c=None, reg_type="KL",
                 unbalanced=None, unbalanced_type="KL", lazy=False, batch_size=None, method=None,
                 n_threads=None, max_iter=None, plan_init=None, rank=100, scaling=0.95,
                 potentials_init=None, X_init=None, tol=None, verbose=False, grad="autodiff",
                 random_state=None, debias=False, n_projections=50, projections=None, scaler=None,
                 *, p=2.0, scale=1.0, **kwargs):
    """Solve entropic OT between two samples, a drop-in for POT's ``ot.solve_sample``.

    Parameters
    ----------
    X_a : array_like (n, d)
        Source points (NumPy or CuPy).
    X_b : array_like (m, d)
        Target points.
    a, b : array_like (n,), (m,), optional
        Weights; uniform when omitted.
    metric : str or callable
        Cost between points, times ``scale``. ``"sqeuclidean"``,
        ``"euclidean"`` and ``"minkowski"`` (with ``p``) are computed by the
        point-cloud kernels (see :class:`~fastsinkhorn.PointCloud`), the only
        ones ``lazy=True`` takes (others raise ``NotImplementedError``); with
        ``lazy=False``, any metric of :func:`~fastsinkhorn.dist` (POT's
        ``cityblock``, ``cosine``, SciPy's ``cdist`` metrics...). The cost
        has the points' dtype.
    reg, c, reg_type, unbalanced, unbalanced_type, method, n_threads, max_iter
        As in :func:`solve`.
    plan_init, potentials_init, tol, verbose
        As in :func:`solve`.
    grad : {"autodiff", "detach", "envelope"}
        As in :func:`solve`; with PyTorch tensors, the gradients are also
        w.r.t. ``X_a`` and ``X_b`` (metrics ``"sqeuclidean"`` and
        ``"euclidean"``; others raise ``NotImplementedError``), and a lazy
        solve's backward holds O((n + m) d) memory. A
        :class:`~fastsinkhorn.LazyPlan` is not differentiable: it is no
        array, so no loss can be taken of it (take one of ``value``,
        ``value_linear`` or ``potentials``). See
        :func:`fastsinkhorn.core.autodiff.solve_sample_rule`.
    lazy : bool
        ``False`` (POT's default): build the dense ``(n, m)`` cost once and
        solve it. ``True``: never store it; every pass recomputes costs from
        the points (memory O((n + m) d)), and ``result.plan`` is a
        :class:`~fastsinkhorn.LazyPlan`.
    batch_size : int, optional
        POT's row-block size of its lazy solver: a memory knob of POT's
        implementation; ours streams rows in fixed blocks, and the results do
        not depend on it. Accepted and unused.
    debias : bool
        ``True``: the Sinkhorn divergence ``OT(a, b) - (OT(a, a) + OT(b, b)) / 2``
        (POT's semantics): ``value`` and ``value_linear`` are those
        differences of the three solves' ``value`` (entropic terms included:
        with ``reg_type="KL"``, GeomLoss's and OTT's debiased Sinkhorn
        divergence for balanced OT) and ``value_linear``; the plan, potentials
        and the other fields are those of ``OT(a, b)``, and ``result.log``
        holds the three results (``res_ab``, ``res_aa``, ``res_bb``). For
        unbalanced OT it is the same difference of values, as in POT (without
        GeomLoss's mass term). POT's ``debias="split"`` raises
        ``NotImplementedError``.
    rank, scaling, X_init, random_state, n_projections, projections, scaler
        Options of POT's low-rank, factored, sliced and Gaussian methods,
        which are not implemented: any value but POT's default raises
        ``NotImplementedError``.
    p : float
        Exponent of the ``"minkowski"`` metric (and of ``dist``'s other
        Minkowski metrics); another value than 2 with any other metric raises
        ``ValueError``.
    scale : float
        Positive factor applied to the cost.
    **kwargs
        Passed to :func:`solve` (``warm_start``, ``callback``, ``backend``,
        method options).

    Returns
    -------
    OTResult

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> x = np.array([[0.0], [1.0]]); y = np.array([[0.1], [0.9]])
    >>> res = fastsinkhorn.solve_sample(x, y, reg=0.01, lazy=True)
    >>> res.plan.to_dense().round(3).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    if has_framework_array(X_a, X_b, a, b, c):  # torch/JAX: run on NumPy views of them
        return via_framework(solve_sample, locals(), ("X_a", "X_b", "a", "b", "c"), "solve_sample")
    defaults = {"rank": (rank, 100), "scaling": (scaling, 0.95), "X_init": (X_init, None),
                "random_state": (random_state, None),
                "n_projections": (n_projections, 50), "projections": (projections, None),
                "scaler": (scaler, None)}
    for name, (value, default) in defaults.items():
        refuse_unless_default(name, value, default, "POT's low-rank, factored, sliced and Gaussian methods are "
                              "not implemented")
    if not (isinstance(metric, str) and metric.endswith("minkowski")):
        refuse_unless_default("p", p, 2.0, f"the exponent of the 'minkowski' metric; metric={metric!r} has none",
                              ValueError)
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    check_pot_method(method)
    if debias is not False:
        return _debiased(locals(), debias)
    if lazy:
        if not (isinstance(metric, str) and metric in COST_KINDS):
            raise NotImplementedError(f"metric={metric!r} with lazy=True: the lazy kernels compute "
                                      f"{tuple(COST_KINDS)}; give lazy=False for any metric of dist")
        M = PointCloud(X_a, X_b, cost=metric, p=p, scale=scale)
    else:
        M = _sample_cost(X_a, X_b, metric, p, scale)
    return solve(M, a, b, reg, c, reg_type, unbalanced, unbalanced_type, method, n_threads, max_iter, plan_init,
                 potentials_init, tol, verbose, grad, **kwargs)


def _debiased(arguments, debias):
    """``solve_sample(debias=True)``: the three solves and their differences (see its docstring)."""
    if debias is not True:
        raise NotImplementedError(f"debias={debias!r}: only debias=True (the Sinkhorn divergence) is "
                                  "implemented, not POT's 'split' (minibatch) debiasing")
    arguments = {k: arguments[k] for k in inspect.signature(solve_sample).parameters}
    kwargs = arguments.pop("kwargs")
    X_a, X_b, a, b = (arguments.pop(k) for k in ("X_a", "X_b", "a", "b"))
    arguments["debias"] = False
    res_ab = solve_sample(X_a, X_b, a, b, **arguments, **kwargs)
    res_aa = solve_sample(X_a, X_a, a, a, **arguments, **kwargs)
    res_bb = solve_sample(X_b, X_b, b, b, **arguments, **kwargs)
    value, value_linear = ((getattr(res_ab, k) - (getattr(res_aa, k) + getattr(res_bb, k)) / 2)
                           for k in ("value", "value_linear"))
    return dataclasses.replace(res_ab, value=value, value_linear=value_linear,
                               debiased={"res_ab": res_ab, "res_aa": res_aa, "res_bb": res_bb})


def _sample_cost(X_a, X_b, metric, p, scale):
    """The dense cost of :func:`solve_sample`, in the points' dtype (float32
    points, float32 cost, as POT's): the point-cloud kernels' costs
    (exact per pair: no cancellation, zero between equal points), and any
    other metric by :func:`~fastsinkhorn.dist`."""
    if isinstance(metric, str) and metric in COST_KINDS:
        cloud = PointCloud(X_a, X_b, cost=metric, p=p, scale=scale)
        dtype = np.result_type(*(getattr(x, "dtype", np.float64) for x in (X_a, X_b)))
        M = cloud.cost_matrix()
        return M.astype(dtype) if dtype in (np.float32, np.float64) else M
    from .geometry.distances import dist

    check_positive(scale, "scale")
    M = dist(X_a, X_b, metric=metric, p=p)
    return M if scale == 1 else M * scale


def _solve(M, a, b, *, reg, method, tol, max_iter, warm_start, callback, verbose,
           backend, options, norm="l1", warn=True, unbalanced=(math.inf, math.inf), reg_type="kl", c=None,
           tol_given="tol", hedge=True):
    """:func:`solve` with the POT-compatibility knobs (stopping norm, warn,
    reference measure ``c`` of the KL regulariser, ``tol_given``: the name of
    the argument ``tol`` came from, ``None`` for the entry point's default,
    see :func:`~fastsinkhorn.core.validation.effective_tol`; ``hedge=False``:
    ``"auto"`` without SNS's ``sinkhorn_hedge``, whose choice depends on
    measured times, so that the drop-ins' results do not, and whose wrong
    guesses can spend a small budget such as POT's ``numItermax=1000``)."""
    if not isinstance(reg_type, str) or reg_type.lower() not in ("kl", "entropy"):
        raise NotImplementedError(f"reg_type={reg_type!r}: only 'KL' and 'entropy' are implemented")
    kl_frame, M_given = reg_type.lower() == "kl", None
    if c is not None and kl_frame:  # KL(P | c): the entropy for the cost M - reg log c
        M, M_given = reference_cost(M, c, reg)
        kl_frame = False
    arrays = (M.x, a, b) if isinstance(M, PointCloud) else (M, a, b)
    host_input = not any(is_cupy_array(x) for x in arrays)
    prob = prepare_problem(M, a, b, reg, backend, unbalanced, kl_frame=kl_frame)
    batched = len(prob.shape) == 3
    tol = effective_tol(tol, prob.dtype, prob.shape[-2:], tol_given)
    if method == AUTO:
        # a batch's cost_scale is its cost range: one choice for all its problems
        method = choose_method(prob.reg, prob.cost_scale, tol)
        if method == "sns":
            if hedge:  # and keep Sinkhorn where it is measured to be faster
                options = {"sinkhorn_hedge": True, **options}
        elif not batched:  # Sinkhorn, with Newton steps if it would not reach tol in max_iter
            # (a batch: the batched Sinkhorn, one pass over all problems per iteration)
            method = "sns"
            options = {"sinkhorn_first": True, **options}
    if method not in METHODS:
        raise ValueError(f"method must be one of {(AUTO,) + tuple(METHODS)}, got {method!r}")
    if batched and not REGISTRY[method].batches:
        raise NotImplementedError(f"method={method!r} does not solve batches (a 3-D M); use one of "
                                  f"{BATCH_METHODS}")
    opts_cls, _, default_max_iter = METHODS[method]
    opts = parse_options(opts_cls, method, options)
    if not prob.geom.can_store_kernel:  # a lazy geometry (a batch of clouds is solved dense)
        check_cloud_options(opts)
    if max_iter is None:
        max_iter = default_max_iter
    check_positive_int(max_iter, "max_iter")
    result, status = run_entropic(prob, method, opts, tol, int(max_iter), warm_start, callback, verbose, norm)
    method = result.method
    if M_given is not None:  # <M, P> of the caller's cost, not of M - reg log c
        result.value_linear = in_dtype(DenseGeometry(M_given, prob.backend, 0.0).linear_cost(result.plan),
                                       prob.dtype)
    if host_input and prob.backend.name == "gpu":
        if prob.geom.can_store_kernel:  # a stored plan; a LazyPlan evaluates on the device
            result.plan = to_numpy(result.plan)
        result.potentials = tuple(to_numpy(p) for p in result.potentials)
    if prob.forbidden and prob.balanced and not bool(xp_all(result.converged)):
        _raise_if_infeasible(prob, result.converged)
    if warn and not bool(xp_all(result.converged)) and status is not Status.CALLBACK:
        which = f" on {int((~result.converged).sum())} of {len(result.converged)} problems" if batched else ""
        warnings.warn(
            f"{method} did not reach tol={tol:.1e} in {int(np.max(result.n_iter))} iterations{which} "
            f"(marginal error {float(result.marginal_error.max() if batched else result.marginal_error):.2e}); "
            "increase max_iter or reg",
            ConvergenceWarning, stacklevel=3,
        )
    return result


def _raise_if_infeasible(prob, converged):
    """A balanced solve with forbidden entries that did not converge: if no plan
    avoids them (Hall's condition fails), say so instead of a non-convergence
    warning (one max-flow over the finite entries per such problem)."""
    from .algorithms.exact.feasibility import check_transportable

    M = prob.geom.M
    if len(prob.shape) == 2:
        check_transportable(M, prob.a, prob.b)
        return
    for p in np.flatnonzero(~to_numpy(converged)):  # a batch (a shared cost: M is 2-D)
        check_transportable(M[p] if M.ndim == 3 else M, prob.a[p], prob.b[p], problem=f" in problem {p}")
