"""Marginal errors: the L1 error every solver and report uses, and POT's L2 stopping norms.

Every distance of a plan's marginals to their targets is computed here and
nowhere else.

The L1 error, ``||r - a||_1 + ||c - b||_1`` (:func:`marginal_error`), is
the accuracy measure of the library: ``tol`` bounds it, ``result.marginal_error``
and ``history["error"]`` report it, and the bench recomputes it from every
plan. For unbalanced OT the targets ``a``, ``b`` are the marginals the
optimal plan has at the current potentials
(:meth:`fastsinkhorn.core.relaxation.Side.target`), which makes it the L1
norm of the dual's gradient: the same function, other targets. A Sinkhorn
iterate has exact rows after its row half-step, so its L1 error is that of
the columns alone (:func:`side_error`).

The POT drop-ins (``ot.sinkhorn``, ``ot.sinkhorn2``: ``norm="l2"`` in
:func:`fastsinkhorn.solvers._solve`) stop where POT does, on an L2 norm,
which exists in three forms here, each for a reason:

* :func:`column_l2_error`: POT's ``err`` of ``sinkhorn_knopp``,
  ``sinkhorn_log`` and ``sinkhorn_stabilized`` for one histogram,
  ``||P^T 1 - b||_2``, measured right after the row update (rows exact).
  ``solve`` decides each returned plan's ``converged`` with it.
* :func:`joint_column_l2_error`: the same for a 2-D ``b`` (``k``
  histograms iterated jointly, one batch here), where POT takes the norm of
  the whole ``(m, k)`` violation, the Frobenius norm: one stopping
  criterion for all problems; :func:`joint_l2` combines the per-problem
  errors of a 2-D ``b`` solved problem by problem (SNS) the same way.
* :func:`marginal_l2_error`: ``sqrt(||r - a||^2 + ||c - b||^2)``, SNS's
  stopping norm under ``norm="l2"``: a Newton iterate has exact rows no
  more than exact columns, so both sides count; it is at least the column
  norm above, hence meets POT's criterion when it stops.

Other POT functions stop on other quantities, which are not reproduced:
``greenkhorn`` on the largest entry of either violation,
``sinkhorn_epsilon_scaling`` on the sum of both squared L2 violations,
``sinkhorn_stabilized`` with a 2-D ``b`` on the relative change of its
scalings; our ``sinkhorn`` drop-in runs every method name on the L2 norms
above. POT's unbalanced solvers stop on the relative change of their
scalings too; our ``sinkhorn_unbalanced`` stops on the L1 error (of the
relaxed targets), its ``stopThr`` taken as ``tol``. :func:`fastsinkhorn.solve`
keeps ``tol`` on the L1 error, although POT's ``ot.solve`` passes its
``tol`` to ``sinkhorn_log`` as the column L2 threshold: a deliberate
difference. The bench runs POT the other way round: ``stopThr = tol /
sqrt(m)`` guarantees an L1 error of at most ``tol`` (``||x||_1 <= sqrt(m)
||x||_2``; see :mod:`fastsinkhorn.bench._solvers`).
"""

import math

import numpy as np


def side_error(xp, x, target):
    """``||x - target||_1`` of one marginal, per problem (an array; a 0-d one
    for a single problem).

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy`` (the arrays' library).
    x, target : arrays (n,) or (B, n)
        Sums of a plan along one axis (float64), and their target.
    """
    return xp.abs(x - target).sum(axis=-1)


def marginal_error(xp, r, c, a, b):
    """``||r - a||_1 + ||c - b||_1`` as a Python float (for a batch, with a
    leading batch axis on every argument, an array of one error per problem).

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy`` (the arrays' library).
    r, c : arrays (n,), (m,) or (B, n), (B, m)
        Row and column sums of a plan (float64).
    a, b : arrays of the same shapes
        Target marginals.
    """
    error = side_error(xp, r, a) + side_error(xp, c, b)
    return float(error) if error.ndim == 0 else error


def column_l2_error(xp, c, b):
    """``||c - b||_2`` per problem (an array; 0-d for a single problem):
    POT's stopping error of one histogram (see the module notes)."""
    d = c - b
    return xp.sqrt((d * d).sum(axis=-1))


def joint_column_l2_error(xp, c, b):
    """``||c - b||_2`` over every entry of a batch, as a float: POT's stopping
    error of a 2-D ``b`` (the Frobenius norm of its ``(m, k)`` violation)."""
    d = c - b
    return float(xp.sqrt((d * d).sum()))


def marginal_l2_error(xp, r, c, a, b):
    """``sqrt(||r - a||_2^2 + ||c - b||_2^2)`` of one problem, as a float:
    SNS's stopping norm for POT's drop-ins (neither side of a Newton iterate
    is exact)."""
    dr, dc = r - a, c - b
    return math.sqrt(float((dr * dr).sum() + (dc * dc).sum()))


def joint_l2(errors):
    """The L2 norm of per-problem L2 errors: :func:`joint_column_l2_error`
    of problems solved one by one, from their errors (floats)."""
    return float(np.sqrt(sum(e ** 2 for e in errors)))


def sinkhorn_errors(xp, c, b, norm):
    """``(L1, stopping)`` errors of a Sinkhorn iterate's column sums ``c``
    against their targets ``b`` (its rows are exact).

    For a batch: the L1 error of its worst problem (the loop runs until all
    converge), and for ``norm="l2"`` :func:`joint_column_l2_error`, POT's
    criterion for a 2-D ``b`` (which bounds each problem's).
    """
    l1 = float(side_error(xp, c, b).max())
    return l1, (l1 if norm == "l1" else joint_column_l2_error(xp, c, b))
