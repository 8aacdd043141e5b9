"""The transportation LP restricted to a sparse support, solved by HiGHS.

Only the entries ``(rows[e], cols[e])`` may carry mass: the LP has one
variable per entry and one equality per row and column, a sparse
``(n + m) x E`` constraint matrix with two ones per column. HiGHS' interior
point method (faster than its dual simplex on these LPs: benchmarks/RESULTS.md
section 11.1) with crossover returns a basic solution; :mod:`fastsinkhorn.algorithms.exact.spanning_tree` then
recomputes its flows and duals exactly from its support.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

#: HiGHS' tightest feasibility tolerances: on costs scaled to [0, 1], an
#: optimal basis of the restricted LP up to 1e-10; the exact polish and the
#: pricing of every entry do the rest.
HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


class RestrictedLPError(RuntimeError):
    """HiGHS could not solve the restricted LP (it reports why)."""


def solve_restricted(n, m, rows, cols, cost, a, b):
    """Solve ``min sum cost_e x_e`` s.t. the marginals, ``x >= 0``, on the support.

    Parameters
    ----------
    n, m : int
        Shape of the full problem.
    rows, cols : int64 arrays (E,)
        The support's entries (distinct).
    cost : float64 array (E,)
        Their costs, best scaled to about [0, 1] (HiGHS' tolerances are absolute).
    a, b : float64 arrays (n,), (m,)
        Marginals with equal sums.

    Returns
    -------
    flow : array (E,)
        A basic optimal solution (to HiGHS' tolerances).
    u, v : arrays (n,), (m,)
        Its duals: ``cost_e - u_i - v_j >= 0`` up to those tolerances.
    n_iter : int
        Iterations HiGHS reports.
    """
    E = rows.shape[0]
    A = sp.csc_matrix(
        (np.ones(2 * E), np.column_stack((rows, n + cols)).ravel(), np.arange(0, 2 * E + 1, 2)),
        shape=(n + m, E),
    )
    # the columns' equalities are one too many (equal sums): HiGHS' presolve drops it
    res = linprog(cost, A_eq=A, b_eq=np.concatenate((a, b)), bounds=(0, None), method="highs-ipm",
                  options=HIGHS_OPTIONS)
    if res.status != 0:
        raise RestrictedLPError(f"HiGHS failed on the restricted LP: {res.message}")
    duals = res.eqlin.marginals
    return res.x, duals[:n], duals[n:], int(res.nit)
