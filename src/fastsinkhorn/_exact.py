r"""``solve_exact``: unregularised optimal transport, with an optimality certificate.

.. math::
    \min_{P \ge 0} \langle M, P\rangle \quad \text{s.t.} \quad P 1 = a,\; P^T 1 = b

1. Candidates: per row, the few entries of smallest reduced cost
   ``M_ij - f_i - g_j``, each column's best, and the north-west corner's
   basis (which keeps every restricted LP feasible). ``(f, g)`` are the
   potentials of an SNS solve at a small ``reg`` (``ranking="sns"``:
   near-optimal duals, so the optimal support lies among them) or zero
   (``ranking="cost"``, the default: cheaper, as measured, at the sizes a
   dense cost fits in memory).
2. The LP restricted to them is solved by a network simplex
   (:mod:`fastsinkhorn._network_simplex`) from the north-west corner's basis,
   or by HiGHS (:mod:`fastsinkhorn._restricted_lp`).
3. Its basis is polished (:mod:`fastsinkhorn._spanning_tree`): flows by leaf
   elimination from the marginals, duals by propagation along the basis,
   exact up to rounding.
4. Pricing: one blocked pass over every entry of ``M``
   (:mod:`fastsinkhorn._exact_kernels`). Entries of negative reduced cost
   join the candidates and 2-4 repeat, the simplex warm-started from the
   last basis (column generation); none left means the plan is optimal, and
   the duality gap certifies it.
"""

import math
import numbers
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._arrays import to_numpy
from ._exact_kernels import gather_costs, smallest_reduced_costs
from ._network_simplex import network_simplex
from ._options import parse_options
from ._restricted_lp import solve_restricted
from ._result import ConvergenceWarning, OTResult, Status
from ._spanning_tree import northwest_corner, spanning_forest, tree_duals, tree_flows
from ._validation import prepare_problem
from .backends import _threads  # its import starts Numba's threads (short spin)

#: Reduced costs down to ``-DEFAULT_TOL * max|M|`` count as non-negative:
#: a few roundings of ``M_ij - u_i - v_j`` along the basis' paths.
DEFAULT_TOL = 1e-12
#: Pricing rounds are a safety net, not a budget: 5-30 were needed up to n = 10^4.
DEFAULT_MAX_ITER = 1000


@dataclass(frozen=True)
class ExactOptions:
    """Options of :func:`solve_exact`.

    Attributes
    ----------
    ranking : {"cost", "sns"}
        How the first candidates are ranked within each row: by reduced cost
        at the potentials of an SNS solve at ``reg`` (``"sns"``), or by cost
        alone (``"cost"``, the default: measured faster on 2 cores up to
        n = 10^4, see ``benchmarks/RESULTS.md`` section 11; the pricing
        rounds find what the cost misses).
    reg : float
        SNS's regularisation, relative to the cost range ``max M - min M``.
        Smaller: fewer candidates and pricing rounds, a longer SNS solve.
    sns_tol : float
        L1 marginal error SNS stops at: its potentials only rank entries.
    sns_max_iter : int
        Cap on SNS iterations (a capped solve still ranks entries).
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
        Cap on simplex iterations over the whole solve: those HiGHS reports
        for the first LP plus the network-simplex pivots (POT's
        ``numItermax``). 0: none (each round's simplex stops after
        ``10 (n + m)`` pivots).
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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
                    or not math.isfinite(value):
                raise ValueError(f"option {name!r} must be a positive finite number, got {value!r}")
        for name, least in (("sns_max_iter", 1), ("candidates_per_row", 1), ("price_per_row", 1),
                            ("max_pivots", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"option {name!r} must be an int >= {least}, got {value!r}")
        for name, allowed in (("ranking", ("cost", "sns")), ("first_lp", ("simplex", "highs"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"option {name!r} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(repr=False)
class ExactResult(OTResult):
    """Result of :func:`solve_exact`: an :class:`OTResult` (``plan`` a
    ``scipy.sparse.csr_matrix``, ``potentials`` the LP duals ``(u, v)`` in
    cost units, ``reg = 0``, ``value == value_linear``) plus its certificate.

    Attributes
    ----------
    duality_gap : float
        ``<M, P> - (<a, u> + <b, v>)``: with ``min_reduced_cost >= 0`` (dual
        feasibility) the plan's cost exceeds the optimum by at most this much.
    min_reduced_cost : float
        ``min_ij M_ij - u_i - v_j`` over every entry (``>= -tol * max|M|``
        when converged).
    n_rounds : int
        Restricted LPs solved (column-generation rounds).
    support_size : int
        Entries in the last restricted LP.
    n_pivots : int
        Simplex iterations: HiGHS' on the first LP, then the network simplex's.
    """

    duality_gap: float = 0.0
    min_reduced_cost: float = 0.0
    n_rounds: int = 0
    support_size: int = 0
    n_pivots: int = 0


def solve_exact(M, a=None, b=None, *, max_iter=None, tol=None, verbose=False, backend="auto", **options):
    r"""Solve the exact (unregularised) optimal transport problem.

    .. math::
        \min_{P \ge 0} \langle M, P\rangle \quad \text{s.t.} \quad P 1 = a,\; P^T 1 = b

    The LP restricted to a few promising entries a row is solved exactly,
    and column generation over every entry of ``M`` proves (or restores)
    optimality; see :mod:`fastsinkhorn._exact`.

    Parameters
    ----------
    M : array_like (n, m)
        Cost matrix (any real dtype; NumPy, or CuPy for the SNS stage).
    a, b : array_like (n,), (m,), optional
        Marginals with equal sums (zeros allowed); uniform when omitted.
    max_iter : int, optional
        Cap on pricing rounds (restricted LPs solved); 1000 by default.
    tol : float, optional
        Reduced costs ``>= -tol * max|M|`` count as optimal; 1e-12 by default.
    verbose : bool
        Print one line per pricing round.
    backend : {"auto", "cpu", "gpu", "reference"}
        Backend of the SNS ranking (``ranking="sns"``); the LP and the
        pricing run on the CPU.
    **options
        :class:`ExactOptions` fields. Unknown names warn.

    Returns
    -------
    ExactResult
        ``plan`` (``scipy.sparse.csr_matrix``), ``potentials`` ``(u, v)``
        with ``u_i + v_j <= M_ij`` (up to ``tol``), ``value``,
        ``duality_gap``, ``min_reduced_cost``, ``marginal_error``...

    Warns
    -----
    ConvergenceWarning
        When ``max_iter`` rounds end with entries still of negative reduced cost.

    Examples
    --------
    >>> import numpy as np, fastsinkhorn
    >>> M = np.array([[0.0, 2.0], [1.0, 0.0]])
    >>> res = fastsinkhorn.solve_exact(M, [0.5, 0.5], [0.25, 0.75])
    >>> res.value, res.plan.toarray().tolist()
    (0.5, [[0.25, 0.25], [0.0, 0.5]])
    """
    opts = parse_options(ExactOptions, "exact", options)
    max_iter = DEFAULT_MAX_ITER if max_iter is None else max_iter
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    tol = DEFAULT_TOL if tol is None else tol
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 <= tol < math.inf):
        raise ValueError(f"tol must be a non-negative finite number, got {tol!r}")
    start = time.perf_counter()
    prob = prepare_problem(M, a, b, 1.0, backend)
    f, g, phases = _entropic_potentials(prob, opts)
    C, a, b = to_numpy(prob.geom.M), to_numpy(prob.a), to_numpy(prob.b)
    solver = _ColumnGeneration(C, a, b, float(tol) * max(abs(float(C.max())), abs(float(C.min()))),
                               opts, prob.cost_range)
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
                  f"min reduced cost {-violation:+.3e}")
        if violation <= solver.tol:
            status = Status.CONVERGED
            break
        if solver.out_of_pivots:
            break
        if not (solver.grew or solver.capped):  # violated entries already in the LP: cycling
            status = Status.STALLED
            break
    phases["pricing"] = round_
    result = solver.result(prob, status, phases, history, float(tol))
    if status is not Status.CONVERGED:
        warnings.warn(f"exact OT stopped after {round_} pricing rounds ({status.message}) with "
                      f"min reduced cost {result.min_reduced_cost:.2e}; increase max_iter",
                      ConvergenceWarning, stacklevel=2)
    return result


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
        ``<M, P> - (<a, u> + <b, v>)``.
    min_reduced_cost : float
        ``min_ij M_ij - u_i - v_j`` (one blocked pass over ``M``).
    marginal_error : float
        ``||P 1 - a||_1 + ||P^T 1 - b||_1``; ``P >= 0`` is not checked.

    ``plan`` is optimal (and ``(u, v)`` dual optimal) up to the duality gap when
    the marginal error is zero and the minimal reduced cost non-negative.
    """
    M = np.ascontiguousarray(M, dtype=np.float64)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    u, v = (np.ascontiguousarray(p, dtype=np.float64) for p in potentials)
    P = sp.coo_matrix(plan)
    value = float((P.data * M[P.row, P.col]).sum())
    r = np.bincount(P.row, P.data, M.shape[0])
    c = np.bincount(P.col, P.data, M.shape[1])
    nb = _threads.blocks(M.size, M.shape[0])
    _, rc, _, _ = _threads.run(smallest_reduced_costs, nb, M, u, v, 1, nb)
    return (value - float(a @ u + b @ v), float(rc[:, 0].min()),
            float(np.abs(r - a).sum() + np.abs(c - b).sum()))


def _scatter(at, values, size):
    """``values`` placed at positions ``at`` of a zero array of length ``size``."""
    out = np.zeros(size, dtype=values.dtype)
    out[at] = values
    return out


def _entropic_potentials(prob, opts):
    """SNS potentials at ``opts.reg`` times the cost range (zeros for
    ``ranking="cost"``, a constant cost or a forced plan), ``-inf`` of zero
    masses made finite."""
    from ._solve import solve  # the exact solver is itself reached from solve()

    xp = prob.xp
    n, m = prob.shape
    if opts.ranking == "cost" or prob.cost_range <= 0 or min(n, m) == 1:
        return np.zeros(n), np.zeros(m), {"sinkhorn": 0, "newton": 0}
    with warnings.catch_warnings():  # a capped SNS solve still ranks entries
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = solve(prob.geom.M, prob.a, prob.b, reg=opts.reg * prob.cost_range, method="sns",
                    tol=opts.sns_tol, max_iter=opts.sns_max_iter, backend=prob.backend.name)
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
    over when entries join it.
    """

    def __init__(self, C, a, b, tol, opts, cost_range):
        self.C, self.a, self.b, self.tol, self.opts = C, a, b, tol, opts
        self.n, self.m = C.shape
        self.lo, self.range = float(C.min()), cost_range if cost_range > 0 else 1.0
        self.nblocks = _threads.blocks(C.size, self.n)  # of the pricing pass (see ``_threads``)
        nw_rows, nw_cols = northwest_corner(a, b)  # keeps every restricted LP feasible
        self.rows, self.cols = nw_rows, nw_cols
        self.flow = self.in_tree = None  # the basis, once the first LP is solved
        self.u, self.v = np.zeros(self.n), np.zeros(self.m)
        self.grew, self.capped, self.pivots = True, False, 0  # pivots: simplex iterations so far

    def add_candidates(self, f, g):
        """Entries within ``slack * reg`` of their row's best at ``(f, g)``, and each column's best."""
        opts = self.opts
        idx, rc, col_arg, _ = self._reduced_costs(f, g, min(opts.candidates_per_row, self.m))
        keep = rc <= rc[:, :1] + opts.slack * opts.reg * self.range
        self._add(np.nonzero(keep)[0], idx[keep], col_arg, np.arange(self.m))

    def _reduced_costs(self, f, g, k):
        """:func:`smallest_reduced_costs` of ``C`` at ``(f, g)``, on one thread per block at most."""
        return _threads.run(smallest_reduced_costs, self.nblocks, self.C, f, g, k, self.nblocks)

    def _add(self, *pairs):
        """Join entries (pairs of row and column arrays) to the support, the
        basis carried over; ``grew`` tells whether any was new."""
        old = self.rows * self.m + self.cols  # sorted
        new = np.unique(np.concatenate([r.astype(np.int64) * self.m + c
                                        for r, c in zip(pairs[0::2], pairs[1::2])]))
        at = np.minimum(np.searchsorted(old, new), old.shape[0] - 1)
        new = new[old[at] != new]
        self.grew = new.shape[0] > 0
        keys = np.sort(np.concatenate((old, new)))  # merging: far cheaper than unique on all
        if self.flow is not None:
            at = np.searchsorted(keys, old)
            self.flow, self.in_tree = _scatter(at, self.flow, keys.shape[0]), \
                _scatter(at, self.in_tree, keys.shape[0])
        self.rows, self.cols = keys // self.m, keys % self.m

    def round(self):
        """Optimise on the support, polish, price every entry and add the
        violated ones; returns ``-min`` reduced cost (0 if none negative)."""
        n, m, rows, cols = self.n, self.m, self.rows, self.cols
        cost = _threads.run(gather_costs, _threads.blocks(rows.size, rows.size), self.C, rows, cols)
        if self.flow is None:
            if self.opts.first_lp == "highs":
                self._first_basis(cost)
            else:
                self._northwest_basis()
        cap = 10 * (n + m)  # a round that reaches it goes on in the next one
        if self.opts.max_pivots:
            cap = min(cap, max(self.opts.max_pivots - self.pivots, 0))
        made = network_simplex(n, m, rows, cols, cost, self.flow, self.in_tree, self.tol, cap)
        self.pivots += made
        self.capped = made == cap
        # polish: the basis' flows and duals, from the marginals and the costs alone
        self.t_rows, self.t_cols, self.t_cost = rows[self.in_tree], cols[self.in_tree], cost[self.in_tree]
        self.t_flow = tree_flows(n, m, self.t_rows, self.t_cols, self.a, self.b)
        self.flow[self.in_tree] = self.t_flow
        self.u, self.v = tree_duals(n, m, self.t_rows, self.t_cols, self.t_cost)
        idx, rc, col_arg, col_min = self._price()
        bad = rc < -self.tol
        bad_cols = np.nonzero(col_min < -self.tol)[0]
        self.min_rc = float(min(rc[:, 0].min(), col_min.min()))
        if bad.any() or bad_cols.size:
            self._add(np.nonzero(bad)[0], idx[bad], col_arg[bad_cols], bad_cols)
        else:
            self.grew = False
        return max(0.0, -self.min_rc)

    def _northwest_basis(self):
        """The north-west corner's basis (a spanning staircase), as the first basis."""
        keys = self.rows * self.m + self.cols
        nw_rows, nw_cols = northwest_corner(self.a, self.b)
        self.in_tree = np.zeros(keys.shape[0], np.bool_)
        self.in_tree[np.searchsorted(keys, nw_rows * self.m + nw_cols)] = True
        self.flow = np.zeros(keys.shape[0])
        self.flow[self.in_tree] = tree_flows(self.n, self.m, self.rows[self.in_tree], self.cols[self.in_tree],
                                             self.a, self.b)

    def _first_basis(self, cost):
        """A basic optimal solution of the first restricted LP, by HiGHS: its
        positive flows (acyclic), completed into a spanning tree by the
        entries of smallest reduced cost at its duals."""
        n, m, rows, cols = self.n, self.m, self.rows, self.cols
        x, u0, v0, self.pivots = solve_restricted(n, m, rows, cols, (cost - self.lo) / self.range,
                                                  self.a, self.b)
        u0, v0 = u0 * self.range + self.lo, v0 * self.range
        order = np.lexsort((np.abs(cost - u0[rows] - v0[cols]), x <= 0))
        self.in_tree = spanning_forest(n, m, rows, cols, order)
        self.flow = np.zeros(rows.shape[0])
        flows = tree_flows(n, m, rows[self.in_tree], cols[self.in_tree], self.a, self.b)
        self.flow[self.in_tree] = np.maximum(flows, 0.0)  # rounding-level negatives

    @property
    def out_of_pivots(self):
        """Whether ``max_pivots`` is spent."""
        return bool(self.opts.max_pivots) and self.pivots >= self.opts.max_pivots

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
        n, m, flow = self.n, self.m, np.maximum(self.t_flow, 0.0)  # rounding-level negatives
        # zero masses pass on only the rounding of leaf elimination: exactly 0
        flow[(self.a[self.t_rows] == 0) | (self.b[self.t_cols] == 0)] = 0.0
        value = float(flow @ self.t_cost)
        r = np.bincount(self.t_rows, flow, n)
        c = np.bincount(self.t_cols, flow, m)
        error = float(np.abs(r - self.a).sum() + np.abs(c - self.b).sum())
        gap = value - float(self.a @ self.u + self.b @ self.v)
        pos = flow > 0
        plan = sp.csr_matrix((flow[pos], (self.t_rows[pos], self.t_cols[pos])), shape=(n, m))
        u, v = self.u, self.v
        if prob.transposed:
            plan, u, v = plan.T.tocsr(), v, u
        return ExactResult(
            plan=plan, potentials=(u, v), value=value, value_linear=value, marginal_error=error,
            n_iter=sum(phases.values()), n_iter_phases=phases, converged=status is Status.CONVERGED,
            status=status, history=history, backend=prob.backend.name, method="exact", tol=tol, reg=0.0,
            duality_gap=gap, min_reduced_cost=self.min_rc, n_rounds=phases["pricing"],
            support_size=int(self.rows.shape[0]), n_pivots=self.pivots,
        )
