"""What the bench and the demo measure on every returned plan, whoever returned it.

Nothing here trusts a solver's own report: the L1 marginal error and the
objective values are recomputed from the plan with one definition for all.
"""

import numpy as np

from ..core.arrays import to_numpy as _host
from ..core.marginals import marginal_error as _l1

#: Rows per block when the objective is summed (bounds the temporaries).
ROW_BLOCK = 256


def marginal_error(plan, a, b):
    """L1 marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1`` in float64.

    Parameters
    ----------
    plan : array (n, m)
        NumPy or CuPy transport plan (any float dtype).
    a, b : ndarray (n,), (m,)
        Target marginals.

    Returns
    -------
    float
        ``nan`` if the plan holds non-finite entries.
    """
    plan = _host(plan)
    return _l1(np, plan.sum(axis=1, dtype=np.float64), plan.sum(axis=0, dtype=np.float64), a, b)


def plan_values(plan, M, a, b, reg):
    """The entropic objective and the transport cost of a plan, in float64.

    Parameters
    ----------
    plan, M : arrays (n, m)
        The plan (NumPy or CuPy) and the cost it was computed for.
    a, b : ndarray (n,), (m,)
        The marginals of the problem.
    reg : float
        The entropic regularisation.

    Returns
    -------
    value : float
        ``<M, P> + reg KL(P | a b^T)``, ``KL(p | q) = sum p log(p / q)`` with
        ``0 log 0 = 0`` (POT's ``ot.solve(...).value``, without its ``1e-16``
        guard inside the log).
    value_linear : float
        ``<M, P>``. Both are ``nan`` if the plan holds non-finite entries.
    """
    plan, M = _host(plan), _host(M)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    log_b = np.log(np.where(b > 0, b, 1.0))
    linear = entropy = 0.0
    for start in range(0, plan.shape[0], ROW_BLOCK):
        P = plan[start:start + ROW_BLOCK].astype(np.float64)
        linear += float((P * M[start:start + ROW_BLOCK]).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(P) - np.log(a[start:start + ROW_BLOCK])[:, None] - log_b
            entropy += float(np.where(P > 0, P * log_ratio, 0.0).sum())
    if not np.isfinite(plan).all():
        return float("nan"), float("nan")
    return linear + reg * entropy, linear
