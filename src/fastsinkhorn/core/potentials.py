"""Potentials and log-scalings: the two ways of writing the dual variables, converted here only.

The solvers return potentials in cost units, ``P_ij = exp((f_i + g_j -
M_ij) / reg)``. POT writes the same plan with scalings, ``P = diag(u) K
diag(v)``, and passes and returns their logs (``warmstart``, ``log_u`` /
``logu``). The kernel ``K`` fixes the frame:

* ``K = exp(-M / reg)`` (POT's ``sinkhorn`` and, with ``reg_type="entropy"``,
  its unbalanced solvers): ``f = reg log u``;
* ``K = a b^T exp(-M / reg)`` (POT's unbalanced solvers with
  ``reg_type="kl"``): ``f = reg (log u + log a)``, a shift ``s = log a``
  (:func:`kl_frame_shift`).

So ``f = reg (log u + s)`` and ``log u = f / reg - s``, ``s = 0`` in the
first frame. A zero mass has ``f = -inf`` (its row of the plan is empty),
hence ``log u = -inf``; POT's unbalanced solvers return ``log(u + 1e-300)``
instead, so :func:`to_log_scalings` takes the value to put there. The
absorption inside our own Sinkhorn (scalings folded into potentials on a
stored kernel) is part of that algorithm, not a conversion of the caller's
variables, and stays there.
"""

import numpy as np

#: ``log(1e-300)``: POT's unbalanced log-scaling of a zero mass (``log(u + 1e-300)`` at ``u = 0``).
POT_LOG_ZERO = float(np.log(1e-300))


def to_potentials(xp, log_scalings, reg, shift=None, name="warmstart"):
    """POT's log-scalings ``(log u, log v)`` as potentials ``(f, g) = reg (log u + s)``, float64.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``: the library of the result.
    log_scalings : pair of array_like
        ``(log u, log v)``, in any dtype (converted to float64 first).
    reg : float
        Entropic regularisation.
    shift : pair, optional
        The frame shifts ``(s_a, s_b)`` (:func:`kl_frame_shift`); ``None``: 0.
    name : str
        The caller's name of the pair, for the error.

    Raises
    ------
    ValueError
        ``log_scalings`` is not a pair.
    """
    try:
        log_u, log_v = (xp.asarray(w, dtype=np.float64) for w in log_scalings)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (logu, logv)") from None
    if shift is None:
        return reg * log_u, reg * log_v
    return reg * (log_u + shift[0]), reg * (log_v + shift[1])


def to_log_scalings(xp, potentials, reg, shift=None, zero_mass=None):
    """Potentials ``(f, g)`` as POT's log-scalings ``(f / reg - s_a, g / reg - s_b)``.

    The arithmetic is done in the potentials' own dtype (give float64 arrays
    to compute in float64, then cast as the caller needs).

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    potentials : pair of arrays
        ``(f, g)`` (``-inf`` where a mass is zero).
    reg : float
        Entropic regularisation.
    shift : pair, optional
        The frame shifts (:func:`kl_frame_shift`); ``None``: 0.
    zero_mass : float, optional
        What non-finite log-scalings (those of zero masses) become, e.g.
        :data:`POT_LOG_ZERO`; ``None`` keeps them (``-inf``).
    """
    out = []
    for i, f in enumerate(potentials):
        with np.errstate(invalid="ignore"):  # -inf - (-inf): a zero mass in the KL frame
            log_u = f / reg if shift is None else f / reg - shift[i]
        if zero_mass is not None:
            log_u = xp.where(xp.isfinite(log_u), log_u, zero_mass)
        out.append(log_u)
    return tuple(out)


def kl_frame_shift(xp, a, b, shape, reg_type="kl"):
    """``(log a, log b)``, float64, the shifts of POT's KL frame (``K = a b^T
    exp(-M / reg)``), or ``(0, 0)`` for ``reg_type="entropy"``.

    ``a``, ``b`` may be ``None`` or empty (uniform over ``shape[-2]``,
    ``shape[-1]``, as the solvers take them); a zero mass gives ``-inf``.
    """
    if reg_type != "kl":
        return 0.0, 0.0
    logs = []
    for w, size in ((a, shape[-2]), (b, shape[-1])):
        w = xp.full(size, 1.0 / size) if w is None or len(w) == 0 else xp.asarray(w, dtype=np.float64)
        with np.errstate(divide="ignore"):
            logs.append(xp.log(w))
    return tuple(logs)
