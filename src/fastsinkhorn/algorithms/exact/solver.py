r"""``solve_exact``: unregularised optimal transport, with an optimality certificate.

.. math::
    \min_{P \ge 0} \langle M, P\rangle \quad \text{s.t.} \quad P 1 = a,\; P^T 1 = b

1. Candidates: per row, the few entries of smallest reduced cost
   ``M_ij - f_i - g_j``, and each column's best. ``(f, g)`` are the
   potentials of an SNS solve at a small ``reg`` (``ranking="sns"``:
   near-optimal duals, so the optimal support lies among them), the caller's
   (``warm_start``) or zero (``ranking="cost"``, the default: cheaper, as
   measured, at the sizes a dense cost fits in memory).
2. A first basis: the north-west corner's, unless it sends mass through a
   forbidden (``+inf``) or huge entry; then one built from a flow through
   the allowed entries (:mod:`fastsinkhorn.algorithms.exact.first_basis`), or ``ValueError``
   when the masses cannot be moved within the finite entries.
3. The LP restricted to the candidates and the basis is solved by a network
   simplex (:mod:`fastsinkhorn.algorithms.exact.network_simplex`) from that basis, or by
   HiGHS (:mod:`fastsinkhorn.algorithms.exact.restricted_lp`).
4. Its basis is polished (:mod:`fastsinkhorn.algorithms.exact.spanning_tree`): flows by leaf
   elimination from the marginals, duals by propagation along the basis
   (the simplex's own, rebuilt from scratch), exact up to rounding.
5. Pricing: one blocked pass over every entry of ``M``
   (:mod:`fastsinkhorn.algorithms.exact.pricing`). Entries of negative reduced cost
   join the candidates and 3-5 repeat, the simplex warm-started from the
   last basis (column generation); none left means the plan is optimal, and
   the duality gap certifies it.

Reduced costs count as negative below ``-tol * s``, ``s`` the largest cost
of the current basis (the scale of the duals and of their rounding): a few
huge or forbidden entries elsewhere in ``M`` do not loosen the test.
"""

import dataclasses
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...backends import _threads  # its import starts Numba's threads (short spin)
from ...core.arguments import refuse_unless_default
from ...core.arrays import to_numpy
from ...core.checks import check_non_negative, check_non_negative_int, check_positive, check_positive_int
from ...core.marginals import marginal_error
from ...core.methods import REGISTRY
from ...core.options import SNSOptions, parse_options
from ...core.result import ConvergenceWarning, OTResult, Status
from ...core.validation import DEFAULT_EXACT_TOL, effective_tol, prepare_problem
from ...geometry.point_cloud import PointCloud
from ..entropic import run_entropic
from .first_basis import flow_basis
from .network_simplex import network_simplex
from .pricing import gather_costs, smallest_reduced_costs
from .restricted_lp import solve_restricted
from .spanning_tree import northwest_corner, spanning_forest, tree_duals, tree_flows

#: Pricing rounds are a safety net, not a budget (the registry's default max_iter of "exact").
DEFAULT_MAX_ITER = REGISTRY["exact"].max_iter
#: The pivots one restricted LP may take by default, per node (``n + m``): a
#: safety net against cycling, never the normal end; the most measured was
#: 12 per node (2-D clouds, n = 3000; POT's simplex on the full graph took 22).
PIVOTS_PER_NODE = 1000
#: Reduced costs also count as non-negative down to ``-eps (2 d + 1) (max|u| +
#: max|v|)``, ``d`` the basis' depth: the roundings duals of that size gather
#: along the basis' paths (below ``DEFAULT_EXACT_TOL`` unless huge costs set the
#: duals' scale, or the basis is thousands of edges deep).
EPS = float(np.finfo(np.float64).eps)
#: Entries above ``min M + HUGE_RATIO * (s - min M)`` are *huge* for the first
#: basis (which avoids them where it can), ``s`` the largest row or column
#: minimum of ``M``: the cost any plan must pay somewhere.
HUGE_RATIO = 1e6


def pivot_safety_net(n, m):
    """Default cap on the pivots of one restricted LP: ``PIVOTS_PER_NODE * (n + m)``."""
    return PIVOTS_PER_NODE * (n + m)


@dataclass(frozen=True)
class ExactOptions:
    """Options of :func:`solve_exact`.

    Attributes
    ----------
    ranking : {"cost", "sns"}
        How the first candidates are ranked within each row: by reduced cost
        at the potentials of an SNS solve at ``reg`` (``"sns"``), or by cost
        alone (``"cost"``, the default: measured faster up to n = 10^4, see
        ``benchmarks/RESULTS.md`` section 11.1; the pricing rounds find what
        the cost misses). A ``warm_start`` ranks by reduced
        cost at its potentials instead: then only ``"cost"`` is accepted.
    reg : float
        SNS's regularisation, relative to the cost range ``max M - min M``.
        Smaller: fewer candidates and pricing rounds, a longer SNS solve.
    sns_tol : float
        L1 marginal error SNS stops at: its potentials only rank entries.
    sns_max_iter : int
        Cap on SNS iterations (a capped solve still ranks entries). These two
        act only with ``ranking="sns"`` and no ``warm_start``; elsewhere
        another value than the default raises ``ValueError``.
    candidates_per_row : int
        At most this many candidates a row, the ones of smallest reduced cost
        (or cost) ...
    slack : float
        ... among those within ``slack * reg`` (relative to the cost range)
        of the row's smallest.
    price_per_row : int
        Entries of negative reduced cost added a row per pricing round (the
        most negative ones).
    first_lp : {"simplex", "highs"}
        Solver of the first restricted LP: the network simplex from the
        north-west corner's basis, or HiGHS (interior point and crossover;
        measured slower). Later rounds always warm-start the network simplex.
    max_pivots : int
        Cap on the network-simplex pivots of any one restricted LP (POT's
        ``numItermax`` counts the pivots of its single LP); 0 (the default):
        :func:`pivot_safety_net`, far above what a solve needs. A capped LP
        ends the solve (``Status.MAX_ITER``) unless its plan is optimal.
    """

    ranking: str = "cost"
    reg: float = 3e-3
    sns_tol: float = 1e-2
    sns_max_iter: int = 2000
    candidates_per_row: int = 8
    slack: float = 10.0
    price_per_row: int = 4
    first_lp: str = "simplex"
    max_pivots: int = 0

    def __post_init__(self):
        for name in ("reg", "sns_tol", "slack"):
            check_positive(getattr(self, name), f"option {name!r}")
        for name in ("sns_max_iter", "candidates_per_row", "price_per_row"):
            check_positive_int(getattr(self, name), f"option {name!r}")
        check_non_negative_int(self.max_pivots, "option 'max_pivots'")
        for name, allowed in (("ranking", ("cost", "sns")), ("first_lp", ("simplex", "highs"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"option {name!r} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(repr=False)
class ExactResult(OTResult):
    """Result of :func:`solve_exact`: an :class:`OTResult` (``plan`` a
    ``scipy.sparse.csr_array``: ``*`` multiplies entrywise, as with NumPy and
    POT's plans; ``potentials`` the LP duals ``(u, v)`` in cost units,
    ``reg = 0``, ``value == value_linear``) plus its certificate.

    Attributes
    ----------
    duality_gap : float
        ``<M, P> - (<a, u> + <b, v>)``: with ``min_reduced_cost >= 0`` (dual
        feasibility) the plan's cost exceeds the optimum by at most this much.
    min_reduced_cost : float
        ``min_ij M_ij - u_i - v_j`` over every entry (``>= -tol * s`` when
        converged, ``s`` the largest cost of the final basis; ``+inf``
        entries count as ``+inf``).
    n_rounds : int
        Restricted LPs solved (column-generation rounds).
    support_size : int
        Entries in the last restricted LP.
    n_pivots : int
        Simplex iterations: HiGHS' on the first LP, then the network simplex's.
    max_lp_pivots : int
        Pivots of the longest restricted LP (what ``max_pivots`` caps).
    """

    duality_gap: float = 0.0
    min_reduced_cost: float = 0.0
    n_rounds: int = 0
    support_size: int = 0
    n_pivots: int = 0
    max_lp_pivots: int = 0


def solve_exact(M, a=None, b=None, *, max_iter=None, tol=None, verbose=False, backend="auto", warm_start=None,
                **options):
    r"""Solve the exact (unregularised) optimal transport problem.

    .. math::
        \min_{P \ge 0} \langle M, P\rangle \quad \text{s.t.} \quad P 1 = a,\; P^T 1 = b

    The LP restricted to a few promising entries a row is solved exactly,
    and column generation over every entry of ``M`` proves (or restores)
    optimality; see :mod:`fastsinkhorn.algorithms.exact.solver`.

    Parameters
    ----------
    M : array_like (n, m) or PointCloud
        Cost matrix (any real dtype; NumPy, or CuPy for the SNS stage);
        ``+inf`` marks a forbidden entry (no mass goes there). A
        :class:`~fastsinkhorn.PointCloud` is solved through its dense cost
        (``8 n m`` bytes).
    a, b : array_like (n,), (m,), optional
        Marginals with equal sums (zeros allowed); uniform when omitted.
    max_iter : int, optional
        Cap on pricing rounds (restricted LPs solved); 1000 by default, a
        safety net (5-30 rounds are measured up to n = 10^4).
    tol : float, optional
        Reduced costs ``>= -tol * s`` count as optimal, ``s`` the largest
        cost of the basis; 1e-12 (``DEFAULT_EXACT_TOL``) by default.
    verbose : bool
        Print one line per pricing round.
    backend : {"auto", "cpu", "gpu", "reference"}
        Backend of the SNS ranking (``ranking="sns"``); the LP and the
        pricing run on the CPU.
    warm_start : tuple of arrays (n,), (m,), optional
        Duals ``(u, v)`` of a nearby problem (POT's ``potentials_init``): the
        first candidates are the entries of smallest reduced cost at them.
        The answer is the same; only the work to reach it changes.
    **options
        :class:`ExactOptions` fields. Unknown names warn.

    Returns
    -------
    ExactResult
        ``plan`` (``scipy.sparse.csr_array``), ``potentials`` ``(u, v)``
        with ``u_i + v_j <= M_ij`` (up to ``tol``), ``value``,
        ``duality_gap``, ``min_reduced_cost``, ``marginals``, ``marginal_error``...

    Raises
    ------
    ValueError
        Bad input, or masses that cannot be transported within the finite
        entries of ``M`` (see :func:`fastsinkhorn.algorithms.exact.feasibility.transport_deficit`).

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` rounds, or ``max_pivots`` pivots in one LP, end
        the solve with entries still of negative reduced cost.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> M = np.array([[0.0, 2.0], [1.0, 0.0]])
    >>> res = fastsinkhorn.solve_exact(M, [0.5, 0.5], [0.25, 0.75])
    >>> res.value, res.plan.toarray().tolist()
    (0.5, [[0.25, 0.25], [0.0, 0.5]])
    """
    opts = parse_options(ExactOptions, "exact", options)
    _check_ranking_options(opts, warm_start)
    max_iter = DEFAULT_MAX_ITER if max_iter is None else max_iter
    check_positive_int(max_iter, "max_iter")
    tol = DEFAULT_EXACT_TOL if tol is None else tol
    check_non_negative(tol, "tol")
    start = time.perf_counter()
    if isinstance(M, PointCloud) and not M.batched:
        M = M.cost_matrix()
    prob = prepare_problem(M, a, b, 1.0, backend)
    if len(prob.shape) != 2:
        raise ValueError(f"M must be a 2-D cost for exact OT (one problem a call), got a batch of shape {prob.shape}")
    if warm_start is not None:
        f, g, phases = (*_warm_potentials(prob, warm_start), {"sinkhorn": 0, "newton": 0})
    else:
        f, g, phases = _entropic_potentials(prob, opts)
    C, a, b = to_numpy(prob.geom.M), to_numpy(prob.a), to_numpy(prob.b)
    solver = _ColumnGeneration(C, a, b, float(tol), opts, prob.cost_range)
    solver.add_candidates(f, g)
    history = {"iteration": [], "error": [], "time": [], "phase": [], "support": []}
    status = Status.MAX_ITER
    for round_ in range(1, int(max_iter) + 1):
        violation = solver.round()
        for key, val in zip(history, (round_, violation, time.perf_counter() - start, "pricing",
                                      solver.rows.shape[0])):
            history[key].append(val)
        if verbose:
            print(f"exact round {round_:3d}: support {solver.rows.shape[0]:9d}, "
                  f"min reduced cost {-violation:+.3e}, pivots {solver.lp_pivots}")
        if violation <= solver.tol:
            status = Status.CONVERGED
            break
        if solver.cut_short:  # the LP itself needed more than max_pivots
            break
        if not solver.grew and solver.tol >= solver.lp_tol:  # violated entries already in the LP
            status = Status.STALLED
            break
    phases["pricing"] = round_
    result = solver.result(prob, status, phases, history, float(tol))
    if status is not Status.CONVERGED:
        why = (f"{solver.cap} pivots of one restricted LP (max_pivots)" if solver.cut_short
               else f"{round_} pricing rounds ({status.message})")
        warnings.warn(f"exact OT stopped after {why} with min reduced cost {result.min_reduced_cost:.2e}; "
                      f"increase {'max_pivots' if solver.cut_short else 'max_iter'}",
                      ConvergenceWarning, stacklevel=2)
    return result


def _check_ranking_options(opts, warm_start):
    """The SNS ranking's options apply only where it runs: ``ranking="sns"``
    without a ``warm_start`` (whose potentials rank instead). Elsewhere they
    raise ``ValueError`` unless at their defaults (the rule of
    :mod:`fastsinkhorn.core.arguments`); ``reg`` always applies (it also
    scales ``slack``)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ExactOptions)}
    if warm_start is not None:
        refuse_unless_default("option 'ranking'", opts.ranking, defaults["ranking"],
                              "warm_start's potentials rank the first candidates, no SNS solve runs", ValueError)
    elif opts.ranking == "sns":
        return
    for name in ("sns_tol", "sns_max_iter"):
        refuse_unless_default(f"option {name!r}", getattr(opts, name), defaults[name],
                              "an option of the SNS ranking, which runs only with ranking='sns' and no "
                              "warm_start", ValueError)


def optimality_certificate(M, a, b, plan, potentials):
    """Check a plan and duals of the exact problem, independently of the solver.

    Parameters
    ----------
    M : array_like (n, m)
        Cost.
    a, b : array_like (n,), (m,)
        Marginals.
    plan : array_like or scipy.sparse matrix (n, m)
        Candidate plan.
    potentials : tuple of arrays (n,), (m,)
        Candidate duals ``(u, v)``.

    Returns
    -------
    duality_gap : float
        ``<M, P> - (<a, u> + <b, v>)`` (``+inf`` when the plan puts mass on a
        forbidden entry).
    min_reduced_cost : float
        ``min_ij M_ij - u_i - v_j`` (one blocked pass over ``M``; ``+inf``
        entries count as ``+inf``).
    marginal_error : float
        ``||P 1 - a||_1 + ||P^T 1 - b||_1``; ``P >= 0`` is not checked.

    ``plan`` is optimal (and ``(u, v)`` dual optimal) up to the duality gap when
    the marginal error is zero and the minimal reduced cost non-negative.
    """
    M = np.ascontiguousarray(M, dtype=np.float64)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    u, v = (np.ascontiguousarray(p, dtype=np.float64) for p in potentials)
    P = sp.coo_matrix(plan)
    held = P.data != 0  # stored zeros on +inf entries cost nothing (0 * inf would be NaN)
    value = float((P.data[held] * M[P.row[held], P.col[held]]).sum())
    r = np.bincount(P.row, P.data, M.shape[0])
    c = np.bincount(P.col, P.data, M.shape[1])
    nb = _threads.blocks(M.size, M.shape[0])
    _, rc, _, _ = _threads.run(smallest_reduced_costs, nb, M, u, v, 1, nb)
    return (value - float(a @ u + b @ v), float(rc[:, 0].min()),
            marginal_error(np, r, c, a, b))


def _scatter(at, values, size):
    """``values`` placed at positions ``at`` of a zero array of length ``size``."""
    out = np.zeros(size, dtype=values.dtype)
    out[at] = values
    return out


def _warm_potentials(prob, warm_start):
    """The caller's duals ``(u, v)`` as ranking potentials (in the problem's
    orientation), checked; non-finite entries made low (they rank last)."""
    try:
        u, v = (np.asarray(to_numpy(p), dtype=np.float64) for p in warm_start)
    except (TypeError, ValueError) as exc:
        raise ValueError("warm_start must be a pair of 1-D arrays (u, v)") from exc
    n, m = prob.shape
    u, v = prob.oriented(u, v)
    if u.shape != (n,) or v.shape != (m,):
        first, second = prob.oriented((n,), (m,))  # the caller's shapes
        raise ValueError(f"warm_start must be arrays of shapes {first} and {second}, got {u.shape} and {v.shape}")
    pots = []
    for p in (u, v):
        finite = np.isfinite(p)
        low = (p[finite].min() if finite.any() else 0.0) - max(prob.cost_range, 1.0)
        pots.append(np.where(finite, p, low))
    return pots[0], pots[1]


def _entropic_potentials(prob, opts):
    """SNS potentials at ``opts.reg`` times the cost range (zeros for
    ``ranking="cost"``, a constant cost or a forced plan), ``-inf`` of zero
    masses made finite."""
    xp = prob.xp
    n, m = prob.shape
    if opts.ranking == "cost" or prob.cost_range <= 0 or min(n, m) == 1:
        return np.zeros(n), np.zeros(m), {"sinkhorn": 0, "newton": 0}
    with warnings.catch_warnings():  # a capped SNS solve still ranks entries
        warnings.simplefilter("ignore", ConvergenceWarning)
        entropic = prepare_problem(prob.geom.M, prob.a, prob.b, opts.reg * prob.cost_range, prob.backend.name)
        tol = effective_tol(opts.sns_tol, entropic.dtype, entropic.shape, "tol")
        res, _ = run_entropic(entropic, "sns", SNSOptions(), tol, opts.sns_max_iter)
    pots = []
    for p in res.potentials:
        p = to_numpy(xp.asarray(p, dtype=np.float64))
        finite = np.isfinite(p)
        # zero masses: below every other potential, so their entries rank last
        low = (p[finite].min() if finite.any() else 0.0) - prob.cost_range
        pots.append(np.where(finite, p, low))
    return pots[0], pots[1], dict(res.n_iter_phases)


class _ColumnGeneration:
    """The candidate support and its current basis, of one exact solve.

    The support is kept sorted by ``row * m + col``, so that a basis carries
    over when entries join it. ``fixed`` marks the basis' artificial
    connectors (:mod:`fastsinkhorn.algorithms.exact.network_simplex`). Costs, duals and
    limits are those of ``M - lo`` (``lo = min M``); :meth:`result` returns
    the caller's.
    """

    def __init__(self, C, a, b, tol, opts, cost_range):
        self.C, self.a, self.b, self.rel_tol, self.opts = C, a, b, tol, opts
        self.n, self.m = C.shape
        self.lo = float(C.min())  # the shift
        self.span = cost_range  # the largest finite entry of M - lo
        self.range = cost_range if cost_range > 0 else 1.0
        self.nblocks = _threads.blocks(C.size, self.n)  # of the pricing pass (see ``_threads``)
        self.cap = opts.max_pivots or pivot_safety_net(self.n, self.m)
        self.flow = self.in_tree = None  # the basis, once the first LP is solved
        self.u, self.v = np.zeros(self.n), np.zeros(self.m)
        self.grew, self.cut_short = True, False
        self.pivots = self.lp_pivots = self.max_lp_pivots = 0  # simplex iterations: all, last LP, longest LP

    def add_candidates(self, f, g):
        """Entries within ``slack * reg`` of their row's best at ``(f, g)``,
        each column's best, and the first basis."""
        opts, C = self.opts, self.C
        idx, rc, col_arg, col_min = self._reduced_costs(f, g, min(opts.candidates_per_row, self.m))
        keep = (rc <= rc[:, :1] + opts.slack * opts.reg * self.range) & (rc < np.inf)  # never a +inf entry
        rows, cols = np.nonzero(keep)[0], idx[keep]
        finite_cols = np.nonzero(col_min < np.inf)[0]
        rows, cols = np.concatenate((rows, col_arg[finite_cols])), np.concatenate((cols, finite_cols))
        if f.any() or g.any():  # the row and column minima of M itself
            _, rc, _, col_min = self._reduced_costs(np.zeros(self.n), np.zeros(self.m), 1)
        self.limit = self._huge_limit(rc[:, 0], col_min)
        self.rows, self.cols = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._add(rows, cols)
        self.fake = 0.0  # stand-in cost of the basis' connectors: the smallest
        b_rows, b_cols, fixed, b_flows = self._first_basis(rows, cols)
        self._add(b_rows, b_cols)
        keys = self.rows * self.m + self.cols
        at = np.searchsorted(keys, b_rows * self.m + b_cols)
        self.in_tree = np.zeros(keys.shape[0], np.bool_)
        self.in_tree[at] = True
        self.fixed = np.zeros(keys.shape[0], np.bool_)
        self.fixed[at] = fixed
        self.flow = np.zeros(keys.shape[0])
        self.flow[at] = self._basis_flows(b_rows, b_cols, fixed, b_flows)
        b_cost = np.where(fixed, self.fake, gather_costs(C, b_rows, b_cols, self.lo))
        self._set_tol(b_cost, *tree_duals(self.n, self.m, b_rows, b_cols, b_cost))

    def _huge_limit(self, row_min, col_min):
        """Costs above it are huge for the first basis (:data:`HUGE_RATIO`),
        from the largest finite row or column minimum of ``M``."""
        need = max(float(row_min[row_min < np.inf].max(initial=0.0)),
                   float(col_min[col_min < np.inf].max(initial=0.0)))
        return HUGE_RATIO * (need if need > 0 else self.span)

    def _first_basis(self, cand_rows, cand_cols):
        """The north-west corner's basis when its mass stays on allowed
        entries (finite, at most ``limit``), its other entries fixed; else
        :func:`~fastsinkhorn.algorithms.exact.first_basis.flow_basis`. Returns the basis'
        rows, columns, fixed connectors and leaf-elimination flows (the north-west
        corner's are computed once, for the test and for the basis)."""
        C, a, b = self.C, self.a, self.b
        rows, cols = northwest_corner(a, b)
        allowed = gather_costs(C, rows, cols, self.lo) <= self.limit  # +inf never is
        flows = tree_flows(self.n, self.m, rows, cols, a, b)
        if allowed[flows > 0].all():
            return rows, cols, ~allowed, flows
        rows, cols, fixed = flow_basis(C, a, b, self.lo + self.limit, cand_rows, cand_cols,
                                       gather_costs(C, cand_rows, cand_cols, self.lo))
        return rows, cols, fixed, None

    def _basis_flows(self, rows, cols, fixed, flows=None):
        """Leaf elimination on the basis (``flows``, when already done); fixed
        connectors and rounding-level negatives exactly 0."""
        flows = tree_flows(self.n, self.m, rows, cols, self.a, self.b) if flows is None else flows
        flows[fixed] = 0.0
        return np.maximum(flows, 0.0)

    def _set_tol(self, tree_cost, u, v, depth):
        """``rel_tol`` times the largest cost of the basis that is not huge,
        plus the rounding of reduced costs at duals ``(u, v)``: where huge
        entries must carry mass, the duals take their scale, and a tolerance
        in proportion to it would accept real violations (of the order of the
        other costs) as rounding."""
        normal = np.abs(tree_cost[tree_cost <= self.limit])
        self.tol = (self.rel_tol * float(normal.max(initial=0.0))
                    + EPS * (2 * depth + 1) * (float(np.abs(u).max(initial=0.0)) + float(np.abs(v).max(initial=0.0))))

    def _reduced_costs(self, f, g, k):
        """:func:`smallest_reduced_costs` of ``C`` at ``(f, g)``, on one thread per block at most."""
        return _threads.run(smallest_reduced_costs, self.nblocks, self.C, f, g, k, self.nblocks, self.lo)

    def _add(self, *pairs):
        """Join entries (pairs of row and column arrays) to the support, the
        basis carried over; ``grew`` tells whether any was new."""
        old = self.rows * self.m + self.cols  # sorted
        new = np.unique(np.concatenate([r.astype(np.int64) * self.m + c
                                        for r, c in zip(pairs[0::2], pairs[1::2])]))
        if old.shape[0]:
            at = np.minimum(np.searchsorted(old, new), old.shape[0] - 1)
            new = new[old[at] != new]
        self.grew = new.shape[0] > 0
        keys = np.sort(np.concatenate((old, new)))  # merging: far cheaper than unique on all
        if self.flow is not None:
            at = np.searchsorted(keys, old)
            size = keys.shape[0]
            self.flow, self.in_tree, self.fixed = (_scatter(at, x, size) for x in (self.flow, self.in_tree,
                                                                                   self.fixed))
        self.rows, self.cols = keys // self.m, keys % self.m

    def round(self):
        """Optimise on the support, polish, price every entry and add the
        violated ones; returns ``-min`` reduced cost (0 if none negative)."""
        n, m, rows, cols = self.n, self.m, self.rows, self.cols
        cost = _threads.run(gather_costs, _threads.blocks(rows.size, rows.size), self.C, rows, cols, self.lo)
        if self.opts.first_lp == "highs" and self.pivots == 0:
            self._highs_basis(cost)
        self.lp_tol = self.tol  # the tolerance this LP is solved to
        made, optimal, pi, depth = network_simplex(n, m, rows, cols, cost, self.fixed, self.fake, self.flow,
                                                   self.in_tree, self.tol, self.cap)
        self.pivots += made
        self.lp_pivots, self.max_lp_pivots = made, max(self.max_lp_pivots, made)
        self.cut_short = not optimal
        # polish: the basis' flows and duals, from the marginals and the costs alone
        tree = self.in_tree
        self.t_rows, self.t_cols, t_fixed = rows[tree], cols[tree], self.fixed[tree]
        self.t_cost = np.where(t_fixed, self.fake, cost[tree])
        self.t_flow = self._basis_flows(self.t_rows, self.t_cols, t_fixed)
        self.flow[tree] = self.t_flow
        if optimal:  # the simplex's potentials, just rebuilt: pricing sees what it saw
            self.u, self.v = pi[:n].copy(), pi[n:].copy()
        else:
            self.u, self.v, depth = tree_duals(n, m, self.t_rows, self.t_cols, self.t_cost)
        self._set_tol(self.t_cost, self.u, self.v, depth)
        idx, rc, col_arg, col_min = self._price()
        bad = rc < -self.tol
        bad_cols = np.nonzero(col_min < -self.tol)[0]
        self.min_rc = float(min(rc[:, 0].min(), col_min.min()))
        if bad.any() or bad_cols.size:
            self._add(np.nonzero(bad)[0], idx[bad], col_arg[bad_cols], bad_cols)
        else:
            self.grew = False
        return max(0.0, -self.min_rc)

    def _highs_basis(self, cost):
        """A basic optimal solution of the first restricted LP, by HiGHS, on
        the allowed entries (finite, at most ``limit``: the first basis is
        feasible on them), costs scaled to about [0, 1]; its positive flows
        (acyclic) completed into a spanning tree by the entries of smallest
        reduced cost at its duals, the others last (and fixed)."""
        n, m, rows, cols = self.n, self.m, self.rows, self.cols
        allowed = cost <= self.limit
        if (self.flow[~allowed] > 0).any():  # huge entries must carry mass: all finite ones
            allowed = cost < np.inf
        lo, span = float(cost[allowed].min()), float(np.ptp(cost[allowed])) or 1.0
        x = np.zeros(rows.shape[0])
        x[allowed], u0, v0, self.pivots = solve_restricted(n, m, rows[allowed], cols[allowed],
                                                           (cost[allowed] - lo) / span, self.a, self.b)
        u0, v0 = u0 * span + lo, v0 * span
        order = np.lexsort((np.abs(cost - u0[rows] - v0[cols]), x <= 0, ~allowed))
        self.in_tree = spanning_forest(n, m, rows, cols, order)
        self.fixed = self.in_tree & ~allowed
        self.flow = np.zeros(rows.shape[0])
        tree = self.in_tree
        self.flow[tree] = self._basis_flows(rows[tree], cols[tree], self.fixed[tree])

    def _price(self):
        """The pricing pass at ``(u, v)``; duals of zero masses are lowered
        first to make their rows and columns feasible (they carry no flow:
        the objective and complementary slackness are unchanged)."""
        k = min(self.opts.price_per_row, self.m)
        idx, rc, col_arg, col_min = self._reduced_costs(self.u, self.v, k)
        zero_rows, zero_cols = (self.a == 0) & (rc[:, 0] < 0), (self.b == 0) & (col_min < 0)
        if zero_rows.any() or zero_cols.any():
            self.u = np.where(zero_rows, self.u + rc[:, 0], self.u)
            self.v = np.where(zero_cols, self.v + col_min, self.v)
            idx, rc, col_arg, col_min = self._reduced_costs(self.u, self.v, k)
        return idx, rc, col_arg, col_min

    def result(self, prob, status, phases, history, tol):
        """Package the last basic solution as an :class:`ExactResult`."""
        n, m, flow = self.n, self.m, self.t_flow.copy()
        # zero masses pass on only the rounding of leaf elimination: exactly 0
        flow[(self.a[self.t_rows] == 0) | (self.b[self.t_cols] == 0)] = 0.0
        pos = flow > 0
        p_rows, p_cols = self.t_rows[pos], self.t_cols[pos]
        value = float(flow[pos] @ gather_costs(self.C, p_rows, p_cols))  # the caller's costs
        r = np.bincount(self.t_rows, flow, n)
        c = np.bincount(self.t_cols, flow, m)
        error = marginal_error(np, r, c, self.a, self.b)
        # the gap in the shifted frame (no cancellation against lo * sum(a))
        gap = float(flow[pos] @ self.t_cost[pos]) - float(self.a @ self.u + self.b @ self.v)
        plan = sp.csr_array((flow[pos], (p_rows, p_cols)), shape=(n, m))
        u, v = self.u + self.lo, self.v
        plan, (u, v), (r, c) = prob.caller_plan(plan).tocsr(), prob.oriented(u, v), prob.oriented(r, c)
        return ExactResult(
            plan=plan, potentials=(u, v), value=value, value_linear=value, marginal_error=error,
            n_iter=sum(phases.values()), n_iter_phases=phases, converged=status is Status.CONVERGED,
            status=status, history=history, backend=prob.backend.name, method="exact", tol=tol, reg=0.0,
            marginals=(r, c), duality_gap=gap, min_reduced_cost=self.min_rc, n_rounds=phases["pricing"],
            support_size=int(self.rows.shape[0]), n_pivots=self.pivots, max_lp_pivots=self.max_lp_pivots,
        )
