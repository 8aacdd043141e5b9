"""Sinkhorn on a batch of small dense problems, in one call to the backend.

:func:`run_small_batch` hands the whole batched solve to the backend's
``sinkhorn_small_batch`` (the GPU's Numba-CUDA kernels: one launch, one
thread block per problem, the loop on the device; no Python per iteration
and no host synchronisation per check). The backend decides whether its
kernels take the batch (sizes, dtype, a device for them) and says so by
returning ``None``; :func:`applies` decides whether the solve's options
allow it: a backend declaring the ``small_batches`` capability, a stored
dense balanced batch with finite costs, the L1 stopping rule, no callback
or verbose output, and the Sinkhorn options at their defaults (the loop of
:mod:`.sinkhorn` honours them). Otherwise, or when a problem lost its mass
(a non-finite error), the loop of :func:`.sinkhorn.sinkhorn_loop` runs.

The iteration is the loop's log-domain one, with each problem's error
checked after every iteration: each problem stops at the first iterate at
or below ``tol``, rows exact, as a CPU solve (which checks every iteration)
does.
"""

import dataclasses

import numpy as np

from ..core.arrays import to_numpy
from ..core.options import SinkhornOptions
from ..core.result import Status
from ..geometry.dense import DenseGeometry


def applies(prob, opts, monitor, norm):
    """Whether :func:`run_small_batch` may solve ``prob`` (see the module)."""
    if not getattr(prob.backend, "small_batches", False) or len(prob.shape) != 3:
        return False
    if not isinstance(prob.geom, DenseGeometry) or not prob.balanced or prob.forbidden:
        return False
    if norm != "l1" or monitor.callback is not None or monitor.verbose:
        return False
    defaults = SinkhornOptions()
    return all(getattr(opts, f.name) == getattr(defaults, f.name) for f in dataclasses.fields(SinkhornOptions))


def run_small_batch(prob, opts, monitor, max_iter, f0, g0):
    """The backend's one-call solve of ``prob``: ``(plan, f, g, n_iter_phases,
    status)`` as :func:`.sinkhorn.run_sinkhorn`, or ``None`` where the
    backend did not take the batch or a problem lost its mass (non-finite
    error); the caller then runs its loop."""
    if max_iter < 1:
        return None
    g0 = prob.xp.broadcast_to(g0, prob.b.shape)
    out = prob.backend.sinkhorn_small_batch(prob.geom.M, prob.a, prob.b, prob.reg, float(monitor.tol),
                                            int(max_iter), g0)
    if out is None:
        return None
    errors, n_iter = to_numpy(out.error), to_numpy(out.n_iter)
    if not np.isfinite(errors).all():
        return None
    monitor.check(int(n_iter.max()), float(errors.max()), "sinkhorn")  # the history's one row
    status = Status.CONVERGED if bool(to_numpy(out.converged).all()) else Status.MAX_ITER
    return out.plan, out.f, out.g, {"sinkhorn": n_iter}, status
