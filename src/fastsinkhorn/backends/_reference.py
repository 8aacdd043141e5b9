"""Plain NumPy float64 backend: the test oracle and the kernel contract.

Every backend (``cpu``, ``gpu``) implements the methods below with the same
signatures and semantics; the geometries (:mod:`fastsinkhorn.geometry`) call
only these, and the drivers call only the geometries (plus ``xp`` for O(n) vector work).

Conventions shared by all kernels
---------------------------------
* ``M`` is the (n, m) cost in the problem dtype (float32 or float64),
  C-contiguous (``prepare_problem`` solves an F-ordered cost as its
  transpose). ``K`` / ``out`` buffers are (n, m) arrays of the problem dtype.
* Potentials ``f`` (n,), ``g`` (m,), scalings ``u``, ``v``, masses ``a``, ``b``
  and every returned O(n) vector are float64: O(n) work is cheap, and float64
  keeps the marginal error meaningful for float32 problems.
* Arithmetic on each entry is done in float64; only stores into (n, m)
  buffers round to the problem dtype.
* ``-inf`` potentials (zero masses) are legal inputs and give exact zeros.
* Batches: the dense log-domain and scaling members (``lse_rows``,
  ``lse_cols``, ``plan``, ``scaling_pass``, ``scale``) also take a leading
  batch axis on every array, ``(B, n, m)`` matrices and ``(B, n)`` vectors,
  and then do the same for each problem.
"""

import functools

import numpy as np


def _per_problem(member):
    """Run ``member`` once per problem when its first argument is a batch
    (``ndim == 3``); every array argument then has the batch axis first."""

    @functools.wraps(member)
    def run(self, first, *args):
        if first.ndim == 2:
            return member(self, first, *args)
        outs = [member(self, first[p], *(x[p] if isinstance(x, np.ndarray) else x for x in args))
                for p in range(first.shape[0])]
        return np.stack(outs)

    return run


#: Relative threshold below which selected plan entries count as zero.
SELECT_FLOOR = 1e-12


def _row_spreads(xp, M, u, v, rows, quantile):
    """``ReferenceBackend.row_spreads`` for the arrays of ``xp`` (NumPy or CuPy)."""
    with np.errstate(invalid="ignore"):  # inf - inf at rows or columns without a finite entry
        reduced = M[rows].astype(np.float64) - u[rows, None] - v[None, :]
    usable = xp.isfinite(reduced) & (reduced > 0)
    counts = usable.sum(axis=1)
    ordered = xp.sort(xp.where(usable, reduced, np.inf), axis=1)
    position = (quantile * (xp.maximum(counts, 1) - 1)).astype(np.int64)
    return xp.take_along_axis(ordered, position[:, None], axis=1)[:, 0], counts


class ReferenceBackend:
    """NumPy float64 implementation of the fastsinkhorn kernel contract."""

    name = "reference"
    xp = np
    #: Iterations between host-side convergence checks (a sync on a GPU).
    check_every = 1
    point_clouds = True  # capability: the pc_ members (see _contract)
    small_batches = False  # no fused batched Sinkhorn: the driver's loop runs

    # -- log-domain half-steps --------------------------------------------
    @_per_problem
    def lse_rows(self, M, g, reg):
        """``out_i = log sum_j exp((g_j - M_ij) / reg)``, float64 (n,).

        Shifted by the row maximum, so it never under- or overflows; a row
        whose terms are all ``-inf`` gives ``-inf``.
        """
        return _logsumexp((g[None, :] - np.asarray(M, np.float64)) / reg, axis=1)

    @_per_problem
    def lse_cols(self, M, f, reg):
        """``out_j = log sum_i exp((f_i - M_ij) / reg)``, float64 (m,)."""
        return _logsumexp((f[:, None] - np.asarray(M, np.float64)) / reg, axis=0)

    # -- absorbed scaling -------------------------------------------------
    @_per_problem
    def plan(self, M, f, g, reg, out):
        """Write ``exp((f_i + g_j - M_ij) / reg)`` into ``out`` and return it."""
        with np.errstate(invalid="ignore"):
            x = (f[:, None] + g[None, :] - np.asarray(M, np.float64)) / reg
        out[...] = np.exp(np.where(np.isnan(x), -np.inf, x))
        return out

    @_per_problem
    def scaling_pass(self, K, v, a, u, tau=1.0):
        """One Sinkhorn iteration over ``K`` (here two products; the CPU backend
        fuses them into a single read of ``K``).

        Row half-step ``u_i = a_i / (K v)_i`` (``u_i = 1`` where ``a_i == 0``,
        whose row of ``K`` is zero), written into ``u``; returns the column
        sums ``K^T u`` (float64, (m,)) that the column half-step needs.

        Unbalanced OT (``tau < 1``): ``a`` holds log-targets ``h`` and the
        half-step is ``u_i = exp(h_i - tau log (K v)_i)`` (``u_i = 1`` where
        ``h_i = -inf``).
        """
        K64 = np.asarray(K, np.float64)
        # an infinite scaling (a column that lost its mass) gives NaN sums: the
        # driver sees a non-finite error and restarts, so no warning here
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s = K64 @ v
            if tau == 1.0:
                u[...] = np.where(a > 0, a / s, 1.0)
            else:
                u[...] = np.where(a > -np.inf, np.exp(a - tau * np.log(s)), 1.0)
            return K64.T @ u

    @_per_problem
    def scale(self, K, u, v, out):
        """Write ``u_i * K_ij * v_j`` into ``out`` (may be ``K``) and return it."""
        out[...] = u[:, None] * np.asarray(K, np.float64) * v[None, :]
        return out

    # -- Sinkhorn-Newton-Sparse -------------------------------------------
    def dense_pass(self, M, f, g, reg, k):
        """Plan marginals, total mass and per-row top-k sparsification.

        With ``P_ij = exp((f_i + g_j - M_ij) / reg)`` returns
        ``(r, c, total, idx, val)``: ``r = P 1`` (n,), ``c = P^T 1`` (m,),
        ``total = sum P`` (float), and the ``k`` largest entries of each row of
        ``P`` as column indices ``idx`` (n, k) int64 and values ``val``
        (n, k) float64 (order within a row unspecified). Entries at or below
        ``SELECT_FLOOR`` times their row maximum may be returned as zeros
        (any index): they are negligible in the Hessian, and skipping them
        makes the selection cheap.
        """
        n, m = M.shape
        k = min(int(k), m)
        P = self.plan(M, f, g, reg, np.empty((n, m)))
        r = P.sum(axis=1)
        c = P.sum(axis=0)
        idx = np.argpartition(-P, k - 1, axis=1)[:, :k].astype(np.int64)
        val = np.take_along_axis(P, idx, axis=1)
        val[val <= SELECT_FLOOR * P.max(axis=1, keepdims=True)] = 0.0
        return r, c, float(r.sum()), idx, val

    # -- cost statistics (method="auto", annealing) -----------------------
    def reduction_offsets(self, M):
        """Row then column reduction of a dense cost (one-off, before a solve).

        Returns float64 ``(u, v)``: ``u_i = min_j M_ij`` and ``v_j = min_i
        (M_ij - u_i)`` over the rows with a finite ``u_i``, so the reduced
        costs ``M_ij - u_i - v_j`` are ``>= 0`` with a zero in every row and
        column. ``M`` may hold ``+inf`` (a row or column without a finite
        entry gets ``inf``).
        """
        M64 = np.asarray(M, np.float64)
        u = M64.min(axis=1)
        live = u < np.inf
        v = (M64[live] - u[live, None]).min(axis=0, initial=np.inf)
        return u, v

    def largest_reduced_cost(self, M, u, v, cutoff):
        """The largest reduced cost ``M_ij - u_i - v_j`` at or below ``cutoff``
        over the entries with finite ``u_i``, ``v_j`` (float; 0.0 if none)."""
        live = (u < np.inf)[:, None] & (v < np.inf)[None, :]
        with np.errstate(invalid="ignore"):
            R = np.asarray(M, np.float64) - np.where(u < np.inf, u, 0.0)[:, None] - np.where(v < np.inf, v, 0.0)
        return float(np.max(R, where=live & (R <= cutoff), initial=0.0))

    def row_spreads(self, M, u, v, rows, quantile):
        """For each row ``i`` of ``rows``, the ``quantile`` quantile (the entry
        at position ``floor(quantile * (k - 1))`` of the sorted ``k``) of its
        positive finite reduced costs ``M_ij - u_i - v_j``, and ``k``: float64
        ``(spreads, counts)`` (a row without such an entry: ``inf``, 0)."""
        return _row_spreads(np, M, u, v, rows, quantile)

    # -- point clouds -----------------------------------------------------
    def pc_cost_rows(self, x, y, cost, start, stop):
        """Rows ``start:stop`` of the cost ``C_ij = cost(x_i, y_j)``, float64.

        ``x`` (n, d), ``y`` (m, d) float64; ``cost`` a
        :class:`~fastsinkhorn.backends._contract.CostSpec`.
        """
        return cost_matrix(x[start:stop], y, cost)

    def pc_lse_rows(self, x, y, cost, g, reg):
        """:meth:`lse_rows` of the cost ``C_ij = cost(x_i, y_j)``, never stored
        (this oracle does store it). ``pc_lse_rows(y, x, cost, f, reg)`` is the
        column-wise ``lse_cols``."""
        return self.lse_rows(cost_matrix(x, y, cost), g, reg)

    def pc_dense_pass(self, x, y, cost, f, g, reg, k):
        """:meth:`dense_pass` of the cost ``C_ij = cost(x_i, y_j)``."""
        return self.dense_pass(cost_matrix(x, y, cost), f, g, reg, k)

    # -- separable grid costs ---------------------------------------------
    def ell_matvec(self, idx, val, x):
        """``S @ x`` for the row-wise sparse ``S`` given as (idx, val)."""
        return (val * x[idx]).sum(axis=1)

    def ell_rmatvec(self, idx, val, y, m):
        """``S.T @ y`` (length ``m``) for the sparse ``S`` given as (idx, val)."""
        return np.bincount(idx.ravel(), weights=(val * y[:, None]).ravel(), minlength=m)


def cost_matrix(x, y, cost):
    """Dense ``C_ij = cost(x_i, y_j)`` in float64 by direct differences (no
    ``|x|^2 + |y|^2 - 2 x.y`` expansion, whose cancellation would make the
    oracle less exact than the kernels it checks).

    Each kind of ``COST_KINDS`` is computed by its own formula; a kind without
    one is a ``ValueError`` (never another kind's cost).
    """
    diff = np.abs(np.asarray(x, np.float64)[:, None, :] - np.asarray(y, np.float64)[None, :, :])
    if cost.kind == "minkowski":
        return cost.scale * (diff ** cost.p).sum(axis=2) ** (1.0 / cost.p)
    sq = (diff * diff).sum(axis=2)
    if cost.kind == "euclidean":
        return cost.scale * np.sqrt(sq)
    if cost.kind == "sqeuclidean":
        return cost.scale * sq
    raise ValueError(f"the reference backend has no formula for the point-cloud cost {cost.kind!r}")


def _logsumexp(x, axis):
    """Max-shifted log-sum-exp that maps all ``-inf`` slices to ``-inf``."""
    top = np.max(x, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - shift), axis=axis)) + np.squeeze(shift, axis)
    return out
