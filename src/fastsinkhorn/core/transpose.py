"""F-ordered costs: solved as the transposed problem, the answer swapped back.

Every kernel reads rows of a C-contiguous cost. An F-ordered ``(n, m)`` cost
``M`` is the C-contiguous ``(m, n)`` cost ``M^T`` as it is stored, and the
problem ``(M, a, b)`` has the solution of ``(M^T, b, a)`` transposed: plan
``P = Q^T``, potentials ``(f, g)`` of ``(M, a, b)`` = ``(g', f')`` of the
transposed problem, row and column sums swapped. So no copy of the cost is
made: the problem is solved transposed, and this module says, once, what
that means for each layout and each pair:

* :func:`readable_in_place` and :func:`solved_transposed` decide, for a
  cost array, whether it is used as stored and whether it is then the
  transposed problem (:func:`~fastsinkhorn.core.validation.prepare_problem`,
  :meth:`~fastsinkhorn.geometry.dense.DenseGeometry.from_array`);
* :func:`oriented` swaps any pair (masses, KL penalties, potentials,
  marginals, the caller's names ``a``/``b`` and sizes) between the caller's
  orientation and the solver's, both ways (the swap is its own inverse);
* :func:`caller_plan` transposes a plan back.

:class:`~fastsinkhorn.core.validation.PreparedProblem` carries the flag
(``transposed``) and offers the last two as methods, which the dispatch
(warm starts) and the result assembly of every solver use.
"""


def readable_in_place(M):
    """Whether the cost array ``M`` is used as stored: C-contiguous, or a 2-D
    F-contiguous one (then solved transposed). Others are copied C-contiguous."""
    return bool(M.flags.c_contiguous or (M.ndim == 2 and M.flags.f_contiguous))


def solved_transposed(M):
    """Whether a cost array accepted by :func:`readable_in_place` is solved as
    the transposed problem (it is not C-contiguous: its transpose is)."""
    return not M.flags.c_contiguous


def oriented(transposed, first, second):
    """``(first, second)``, swapped when the problem is solved transposed."""
    return (second, first) if transposed else (first, second)


def caller_plan(transposed, plan):
    """A plan of the solved problem in the caller's orientation (``plan.T``
    when transposed: a view of a dense plan, a CSC matrix of a CSR one)."""
    return plan.T if transposed else plan
