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
        xp = self._geom.backend.xp
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
        xp = self._geom.backend.xp
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
        xp = self._geom.backend.xp
        out = xp.empty(self.shape)
        for start, stop, P in self.blocks():
            out[start:stop] = P
        return out

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a LazyPlan is not converted implicitly (it would allocate n x m): "
                        "use .to_dense(), .rows(), .apply() or .to_sparse()")

    def __repr__(self):
        return f"LazyPlan(shape={self.shape}, reg={self.reg:g})"
