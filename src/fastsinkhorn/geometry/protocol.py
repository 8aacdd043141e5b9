"""The geometry contract: every member the drivers call, as a type.

The drivers (:mod:`fastsinkhorn.algorithms.sinkhorn`,
:mod:`fastsinkhorn.algorithms.sns.driver`) and :mod:`fastsinkhorn.solvers`
see the cost only through a :class:`Geometry`: they make no backend call and
never ask which geometry they run on. What differs between geometries is
said by their capabilities (:attr:`Geometry.can_store_kernel`,
:meth:`Geometry.check_interval`) and done by their methods; the backends'
kernels (:class:`~fastsinkhorn.backends._contract.KernelBackend`) are called
inside the geometries only. ``xp`` is the array namespace for the drivers'
O(n) vector work.

Two geometries implement it: :class:`~fastsinkhorn.geometry.dense.DenseGeometry`
(a stored cost ``M``, float32 or float64, possibly a batch) and
:class:`~fastsinkhorn.geometry.cloud.CloudGeometry` (a point-cloud cost
recomputed from coordinates at every pass: nothing n x m is held).
``tests/test_geometry_protocol.py`` runs every member on every geometry and
backend against plain NumPy, and checks each signature against this one.

Conventions
-----------
* ``C`` is the ``(n, m)`` cost the geometry stands for; ``n, m = shape[-2:]``.
* Potentials ``f`` (n,), ``g`` (m,), scalings ``u`` (n,), ``v`` (m,), masses
  and every returned O(n) vector are float64 arrays of ``xp``; ``-inf``
  potentials (zero masses) are legal and give exact zeros in the plan.
* ``(n, m)`` buffers (a kernel ``K``, a plan ``out``) have the geometry's
  ``dtype``; every entry is computed in float64 and rounded only when stored.
* The plan at potentials ``(f, g)`` is ``P_ij = exp((f_i + g_j - C_ij) / reg)``.
* Batches (a dense ``(B, n, m)`` cost): ``lse_rows``, ``lse_cols``, ``plan``,
  ``scaling_pass``, ``scale``, ``new_buffer``, ``linear_cost`` and
  ``measure`` take and return arrays with the batch axis first, and do the
  same for each problem; :class:`BatchGeometry` adds ``subset``.
"""

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Geometry(Protocol):
    """A cost as the drivers see it.

    Attributes
    ----------
    xp : module
        The array namespace (``numpy`` or ``cupy``) of every array the
        geometry takes and returns; the drivers use it for O(n) vector work.
    shape : tuple of int
        ``(n, m)``, or ``(B, n, m)`` for a batch: the shape of the cost.
    dtype : numpy.dtype
        float32 or float64: the dtype of the cost and of ``(n, m)`` buffers
        (float64 for a point cloud).
    cost_range : float
        ``max C - min C`` over the finite entries (for a point cloud, an
        upper bound from the bounding box of the points).
    cost_scale : float
        The spread of the costs that can carry mass, which ``reg`` is compared
        with (``method="auto"``, SNS's annealing): see
        :mod:`fastsinkhorn.geometry.cost_scale`; ``cost_range`` for a batch
        or a point cloud. ``>= 0``.
    can_store_kernel : bool
        Capability: True if the drivers may hold ``(n, m)`` buffers of this
        geometry (Sinkhorn then iterates scalings on a stored kernel, and the
        plan is returned as an array); False if memory must stay
        O((n + m) d): no ``(n, m)`` buffer (:meth:`new_buffer` is ``None``),
        log-domain Sinkhorn (two passes over the cost an iteration), SNS's
        Hessian rows capped, and the plan returned as a
        :class:`~fastsinkhorn.LazyPlan`.
    """

    xp: Any
    shape: tuple
    dtype: Any
    cost_range: float
    cost_scale: float
    can_store_kernel: bool

    # -- capabilities ---------------------------------------------------------
    def check_interval(self, requested):
        """Iterations between Sinkhorn's convergence checks.

        Parameters
        ----------
        requested : int or None
            The caller's ``check_every`` (0 or ``None``: not given).

        Returns
        -------
        int
            ``>= 1``. With a stored kernel, ``requested`` or else the
            backend's ``check_every`` (a check syncs a GPU, so it checks
            every 10th iteration there); without one, 1: an iteration is two
            passes over the cost, and its check is O(n) on top.
        """
        ...

    def new_buffer(self):
        """A new uninitialised ``(n, m)`` (or ``(B, n, m)``) array of ``dtype``
        (a kernel or a plan), or ``None`` when ``can_store_kernel`` is False."""
        ...

    # -- the cost, row by row ---------------------------------------------------
    def cost_rows(self, start, stop):
        """Rows ``start:stop`` of ``C``.

        Parameters
        ----------
        start, stop : int
            ``0 <= start <= stop <= n``.

        Returns
        -------
        array, float64, shape (stop - start, m)
        """
        ...

    def row_blocks(self):
        """Row blocks covering ``C``, about ``ARRAY_BLOCK_ENTRIES`` entries each
        (:mod:`fastsinkhorn.backends._blocks`).

        Returns
        -------
        list of (int, int)
            Consecutive ``(start, stop)``, from 0 to ``n``, none empty.
        """
        ...

    def plan_rows(self, f, g, reg, start, stop):
        """Rows ``start:stop`` of the plan ``exp((f_i + g_j - C_ij) / reg)``.

        Returns
        -------
        array, float64, shape (stop - start, m)
            Zeros where an exponent is ``-inf`` or NaN (``-inf`` potential
            against an infinite cost).
        """
        ...

    # -- log-domain half-steps ------------------------------------------------
    def lse_rows(self, g, reg):
        """``out_i = log sum_j exp((g_j - C_ij) / reg)``.

        Parameters
        ----------
        g : array, float64, shape (m,)
        reg : float
            ``> 0``.

        Returns
        -------
        array, float64, shape (n,)
            Never over- or underflows (shifted by each row's maximum); a row
            whose terms are all ``-inf`` gives ``-inf``.
        """
        ...

    def lse_cols(self, f, reg):
        """``out_j = log sum_i exp((f_i - C_ij) / reg)``: float64, shape (m,)
        (as :meth:`lse_rows`, over columns)."""
        ...

    # -- the stored kernel (scaling Sinkhorn) -----------------------------------
    def plan(self, f, g, reg, out=None):
        """The plan ``exp((f_i + g_j - C_ij) / reg)`` (also the kernel that
        scalings are iterated on).

        Parameters
        ----------
        f, g : arrays, float64, shapes (n,) and (m,)
        reg : float
        out : array of shape (n, m) and dtype ``dtype``, or None
            Where to write it. ``None``: the geometry's own form, a new array
            when ``can_store_kernel``, else a :class:`~fastsinkhorn.LazyPlan`
            at ``(f, g, reg)`` (nothing n x m is allocated).

        Returns
        -------
        array or LazyPlan
            ``out`` when given. Entries below a backend's flush threshold
            (at most ``exp(-460)``, about 1e-200, in float64; ``exp(-87)`` in
            float32) may be exact zeros, so that a huge cost carries no mass;
            a forbidden (``+inf``) cost gives 0.
        """
        ...

    def scaling_pass(self, K, v, a, u, tau=1.0):
        """One Sinkhorn iteration on the kernel ``K``.

        Row half-step ``u_i = a_i / (K v)_i`` (``u_i = 1`` where ``a_i == 0``),
        written into ``u``; returns the column sums ``K^T u`` that the column
        half-step needs. Unbalanced (``tau < 1``): ``a`` holds log-targets
        ``h`` and ``u_i = exp(h_i - tau log (K v)_i)`` (1 where ``h_i = -inf``).

        Parameters
        ----------
        K : array, shape (n, m), dtype ``dtype``
            A kernel of this geometry (:meth:`plan`).
        v : array, float64, shape (m,)
        a : array, float64, shape (n,)
        u : array, float64, shape (n,)
            Output, written in place.
        tau : float
            1 for balanced rows.

        Returns
        -------
        array, float64, shape (m,)
        """
        ...

    def scale(self, K, u, v, out):
        """Write ``u_i K_ij v_j`` into ``out`` (may be ``K``; ``dtype``,
        shape (n, m)) and return it: the plan of the scalings ``(u, v)``."""
        ...

    # -- Sinkhorn-Newton-Sparse -----------------------------------------------
    def dense_pass(self, f, g, reg, k):
        """One pass over the plan ``P`` at ``(f, g)``: marginals, mass and the
        sparsified Newton Hessian.

        Parameters
        ----------
        f, g : arrays, float64, shapes (n,) and (m,)
        reg : float
        k : int
            Entries kept per row, ``1 <= k`` (at most ``m`` are).

        Returns
        -------
        r : array, float64, shape (n,)
            ``P 1``.
        c : array, float64, shape (m,)
            ``P^T 1``.
        total : float
            ``sum P``.
        idx : array, int64, shape (n, k')
            Column indices of the ``k' = min(k, m)`` largest entries of each
            row of ``P`` (order within a row unspecified).
        val : array, float64, shape (n, k')
            Their values; entries at or below ``1e-12`` times their row's
            maximum may be zeros (any index).
        """
        ...

    def ell_matvec(self, idx, val, x):
        """``S @ x`` for the row-wise sparse ``S`` (n, m) given as ``(idx, val)``
        (:meth:`dense_pass`'s): float64, shape (n,)."""
        ...

    def ell_rmatvec(self, idx, val, y):
        """``S^T @ y`` for ``y`` (n,): float64, shape (m,) (``m`` of ``shape``)."""
        ...

    # -- measures of a plan ---------------------------------------------------
    def summary(self, f, g, reg):
        """``(r, c, <C, P>)`` of the plan at ``(f, g)`` by one blocked pass
        (nothing n x m held): float64 (n,), float64 (m,) and a float, an entry
        without mass counting 0 in ``<C, P>`` even at an infinite cost."""
        ...

    def linear_cost(self, P):
        """``<C, P>`` of a stored plan ``P`` (n, m) as a float in float64 (for a
        batch, a float64 array of B values), an entry without mass counting 0."""
        ...

    def measure(self, plan, f, g, reg):
        """``(r, c, <C, P>)`` of the plan a driver returned, ``plan`` =
        :meth:`plan` ``(f, g, reg)`` or the plan of the driver's scalings.

        A stored plan is measured as stored (its rounding to ``dtype``
        included): its row and column sums in float64 and
        :meth:`linear_cost`. A :class:`~fastsinkhorn.LazyPlan` is measured by
        :meth:`summary` at ``(f, g, reg)``. Shapes as :meth:`summary` (a
        batch: the batch axis first).
        """
        ...


@runtime_checkable
class BatchGeometry(Geometry, Protocol):
    """A geometry of a batch of problems (``shape`` ``(B, n, m)``), which a
    batched Sinkhorn shrinks as its problems converge."""

    def subset(self, problems):
        """The geometry of the problems ``problems`` (an index array into the
        batch axis), their costs copied; every other member as this one's."""
        ...
