"""The scale of a dense cost that the solvers' decisions are relative to.

``method="auto"`` and SNS's annealing compare ``reg`` with a scale of the
cost. ``max(M) - min(M)`` is the wrong one as soon as a few entries are huge:
users forbid an entry with a large finite cost (``1e30``, because POT's
exact solver rejects ``inf``), and then the range says nothing of the costs
that carry mass. :func:`support_scale` measures the spread of the costs that
can carry mass instead:

1. Adding a constant to a row or a column of ``M`` leaves every plan
   unchanged, and the scale within a factor 2 (exactly, for rows): it looks
   at the reduced costs ``R_ij = M_ij - u_i - v_j >= 0`` with ``u_i = min_j
   M_ij`` and ``v_j = min_i (M_ij - u_i)`` (every row and column of ``R`` has
   a zero, so ``max R`` lies between half and all of the largest cycle cost
   ``M_ij + M_kl - M_il - M_kj``, which such constants do not change).
2. It ignores forbidding entries. On a sample of rows (evenly spaced, at most
   :data:`SAMPLE_ENTRIES` entries in all), each row's :data:`ROW_QUANTILE`
   quantile of its positive reduced costs measures the spread of its cheap
   entries; reduced costs above :data:`OUTLIER_FACTOR` times the median of
   those, and infinite ones, forbid. The scale is the largest of the others
   over all of ``M``.

Without such entries the scale is ``max R``,
which for the usual costs (distances between points, random costs) is about
``max M - min M``. A row may forbid up to 90% of its entries, and half of the
rows may forbid more; beyond that the spread of its cheap entries is itself
huge and the scale is the full range: the solvers then stay correct but
anneal from a needlessly large ``reg``.
"""

import numpy as np

#: Reduced costs above this multiple of the typical spread of cheap entries forbid.
OUTLIER_FACTOR = 1e4
#: Quantile of each sampled row's positive reduced costs taken as its spread.
ROW_QUANTILE = 0.1
#: Entries of the sampled rows, at most (whole rows, at least 16 of them).
SAMPLE_ENTRIES = 1 << 16


def support_scale(M, backend):
    """The spread of the costs of ``M`` (2-D, C-contiguous, no NaN or ``-inf``)
    that can carry mass, as a float (see the module docstring); 0.0 when every
    plan costs the same (e.g. a constant ``M``). Three passes over ``M`` by
    ``backend``'s kernels, and a selection on the sampled rows."""
    xp = backend.xp
    u, v = backend.reduction_offsets(M)
    n, m = M.shape
    count = min(n, max(16, SAMPLE_ENTRIES // m))
    rows = xp.asarray(np.linspace(0, n - 1, count).round().astype(np.int64))
    spreads, counts = backend.row_spreads(M, u, v, rows, ROW_QUANTILE)
    if not bool((counts > 0).any()):
        return 0.0
    cutoff = OUTLIER_FACTOR * float(xp.median(spreads[counts > 0]))
    return backend.largest_reduced_cost(M, u, v, cutoff)
