"""The plan of a lazy (point-cloud) solve, evaluated only on request."""

import numpy as np


class LazyPlan:
    """The plan ``P_ij = exp((f_i + g_j - C_ij) / reg)`` of a lazy solve, never stored.

    Every method makes one blocked pass over the cost (recomputed from the
    coordinates) and holds at most one block of rows at a time, except
    :meth:`to_dense`, which is explicit. ``np.asarray(plan)`` raises rather
    than silently allocating ``n x m``.

    Attributes
    ----------
    shape : tuple
        ``(n, m)``.
    potentials : tuple of arrays
        The ``(f, g)`` that define the plan.
    reg : float
    """

    def __init__(self, geometry, f, g, reg):
        self._geom, self.potentials, self.reg = geometry, (f, g), reg
        self.shape = geometry.shape
        self.dtype = np.dtype(np.float64)

    def rows(self, start, stop):
        """Rows ``start:stop`` of the plan as a dense ``(stop - start, m)`` array."""
        n = self.shape[0]
        start, stop, _ = slice(start, stop).indices(n)
        return self._geom.plan_rows(*self.potentials, self.reg, start, max(start, stop))

    def blocks(self):
        """Iterate over ``(start, stop, rows)`` blocks covering the plan."""
        for start, stop in self._geom.row_blocks():
            yield start, stop, self.rows(start, stop)

    def blocks_with_cost(self):
        """Iterate over ``(start, stop, rows, cost_rows)``: :meth:`blocks` with the
        same rows of the cost (recomputed by the geometry), for the gradients
        in the points (:mod:`fastsinkhorn.core.sample_gradients`)."""
        for start, stop in self._geom.row_blocks():
            yield start, stop, self.rows(start, stop), self._geom.cost_rows(start, stop)

    def apply(self, v):
        """``P @ v`` for ``v`` of shape ``(m,)`` or ``(m, k)``."""
        v, out = self._operand(v, "v", self.shape[1], self.shape[0])
        for start, stop, P in self.blocks():
            out[start:stop] = P @ v
        return out

    def apply_transpose(self, u):
        """``P.T @ u`` for ``u`` of shape ``(n,)`` or ``(n, k)``."""
        u, out = self._operand(u, "u", self.shape[0], self.shape[1])
        for start, stop, P in self.blocks():
            out += P.T @ u[start:stop]
        return out

    def _operand(self, v, name, rows, out_rows):
        """``v`` as float64 with ``rows`` rows checked, and a zeroed output."""
        xp = self._geom.xp
        v = xp.asarray(v, dtype=np.float64)
        if v.shape[0] != rows:
            raise ValueError(f"{name} must have {rows} rows, got shape {v.shape}")
        return v, xp.zeros((out_rows,) + v.shape[1:])

    def marginals(self):
        """``(P 1, P^T 1)``."""
        r, c, _ = self._geom.summary(*self.potentials, self.reg)
        return r, c

    def to_sparse(self, rtol=1e-10):
        """The significant entries as a CSR matrix: in each row, the entries
        at least ``rtol`` times the row's largest (SciPy, or CuPy's sparse
        module for device arrays). With the default, what is dropped is below
        ``1e-10 * m`` of each row's largest entry in total."""
        xp = self._geom.xp
        if xp is np:
            from scipy import sparse
        else:
            from cupyx.scipy import sparse
        indptr, indices, data = [xp.zeros(1, dtype=np.int64)], [], []
        offset = 0
        for _, _, P in self.blocks():
            keep = P >= rtol * P.max(axis=1, keepdims=True)
            keep &= P > 0
            counts = keep.sum(axis=1)
            rows, cols = xp.nonzero(keep)
            indices.append(cols.astype(np.int64))
            data.append(P[rows, cols])
            indptr.append(offset + xp.cumsum(counts))
            offset += int(counts.sum())
        return sparse.csr_matrix((xp.concatenate(data), xp.concatenate(indices), xp.concatenate(indptr)),
                                 shape=self.shape)

    def to_dense(self):
        """The whole ``(n, m)`` plan (explicit: it allocates n x m float64)."""
        xp = self._geom.xp
        out = xp.empty(self.shape)
        for start, stop, P in self.blocks():
            out[start:stop] = P
        return out

    def __getitem__(self, key):
        """``plan[rows, cols]`` with NumPy's indexing (as POT's ``LazyTensor``):
        ``plan[:]`` is the whole plan, ``plan[i]`` a row, ``plan[i0:i1, j]``...

        Only the rows asked for are evaluated, by contiguous runs (an
        explicit request: ``plan[:]`` allocates n x m, like :meth:`to_dense`).
        """
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 2:
            raise IndexError(f"a LazyPlan has 2 dimensions, got {len(key)} indices")
        rows, cols = key + (slice(None),) * (2 - len(key))
        xp = self._geom.xp
        index = np.arange(self.shape[0])[rows]  # NumPy's checks and conventions for the row key
        needed = np.unique(index)
        runs = np.split(needed, np.flatnonzero(np.diff(needed) != 1) + 1)
        sub = xp.concatenate([self.rows(int(r[0]), int(r[-1]) + 1) for r in runs]) if len(needed) \
            else xp.empty((0, self.shape[1]))
        where = np.searchsorted(needed, index)  # each asked-for row's place in sub
        if isinstance(rows, slice) or np.ndim(index) == 0:  # P[s, c] is P[s][:, c]; P[i, c] is P[i][c]
            return sub[where][..., cols] if isinstance(rows, slice) else sub[int(where)][cols]
        return sub[where, cols]  # fancy rows: NumPy's pairing with fancy columns

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a LazyPlan is not converted implicitly (it would allocate n x m): "
                        "use .to_dense(), .rows(), .apply() or .to_sparse()")

    def __repr__(self):
        return f"LazyPlan(shape={self.shape}, reg={self.reg:g})"


class LazyPlanBatch(tuple):
    """The plans of a lazy batch (many problems on one cost): ``plans[p]`` is
    problem ``p``'s :class:`LazyPlan`; nothing ``B x n x m`` is held.

    ``shape`` is ``(B, n, m)`` and ``ndim`` 3, as a batch's stored plans.
    """

    ndim = 3

    @property
    def shape(self):
        return (len(self),) + tuple(self[0].shape)

    def __repr__(self):
        return f"LazyPlanBatch(shape={self.shape})"
