"""Solver adapters: one uniform call for fastsinkhorn and its peers.

Every adapter is ``run(M, a, b, reg, tol, max_iter, **options) -> Outcome``.
``tol`` is always the target L1 marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1``;
an adapter whose library stops on another norm converts ``tol`` to a
threshold on that norm that guarantees the L1 target, and converts its
convergence curve back to the same L1 bound, so that curves are comparable.
The bench never trusts the adapter's error: it recomputes it from ``plan``.
"""

import importlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..backends._gpu import cuda_available
from ..core.arrays import is_cupy_array
from ..core.methods import AUTO, ENTROPIC_METHODS


@dataclass
class Outcome:
    """What an adapter returns.

    Attributes
    ----------
    plan : array (n, m)
        The transport plan (NumPy or CuPy).
    n_iter : int
        Iterations as the library counts them (Newton steps for Newton methods).
    curve : dict
        ``{"time": [...], "error": [...]}``: the solver's own error estimate
        (as an upper bound on the L1 marginal error) against seconds since start.
    info : dict
        Anything else worth recording (e.g. iterations per phase).
    """

    plan: Any
    n_iter: int
    curve: dict = field(default_factory=lambda: {"time": [], "error": []})
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Solver:
    """A named solver adapter.

    Attributes
    ----------
    name : str
    run : callable
        ``run(M, a, b, reg, tol, max_iter, **options) -> Outcome``.
    peer : bool
        True for other libraries (the baseline of the ratio column).
    prepare : callable
        ``prepare(M, a, b, **options) -> (M, a, b)``: untimed input
        conversion (memory order, host-to-device copy).
    dtypes : tuple of str
        Problem dtypes the solver supports natively.
    requires : tuple of str
        Modules that must import for the solver to be available.
    warmup : {"tiny", "full", "none"}
        Untimed runs before timing, so that imports, first-call set-up and
        JIT or kernel compilation are never timed: ``"tiny"`` solves a
        16-point problem of the same family; ``"full"`` also solves the
        benchmarked problem itself once (for code whose compiled paths depend
        on the size, such as fastsinkhorn's serial/parallel kernels).
    needs_gpu : bool
        Available only with a CUDA device.
    describe : str
        How the solver is called and when it stops, for the legend under the
        table.
    """

    name: str
    run: Callable
    peer: bool = True
    prepare: Callable = lambda M, a, b, **options: (M, a, b)
    dtypes: tuple = ("float32", "float64")
    requires: tuple = ()
    warmup: str = "tiny"
    needs_gpu: bool = False
    describe: str = ""

    def warm_up(self, family, reg, tol, dtype="float64", inputs=None, max_iter=100_000,
                **options):
        """The untimed runs of :attr:`warmup`, warnings silenced.

        Parameters
        ----------
        family, reg, tol, dtype
            The case about to be timed.
        inputs : tuple, optional
            Its prepared ``(M, a, b)``; without them only the tiny run is done.
        """
        from ..problems import make_problem

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.warmup in ("tiny", "full"):
                tiny = make_problem(family, 16, seed=0, dtype=dtype)
                self.run(*self.prepare(tiny.M, tiny.a, tiny.b, **options), reg, tol, 1000,
                         **options)
            if self.warmup == "full" and inputs is not None:
                self.run(*inputs, reg, tol, max_iter, **options)

    def available(self):
        """Whether the required modules import (and a GPU exists if needed)."""
        try:
            for module in self.requires:
                importlib.import_module(module)
            return not self.needs_gpu or cuda_available()
        except Exception:  # an optional peer may fail to import in many ways
            return False


# -- fastsinkhorn ----------------------------------------------------------
def _run_fastsinkhorn(M, a, b, reg, tol, max_iter, *, method, backend="auto"):
    """fastsinkhorn.solve; its ``marginal_error`` and history are already L1."""
    import fastsinkhorn

    res = fastsinkhorn.solve(M, a, b, reg=reg, method=method, tol=tol,
                             max_iter=max_iter, backend=backend)
    h = res.history
    return Outcome(
        plan=res.plan,
        n_iter=int(res.n_iter),
        curve={"time": list(h["time"]), "error": list(h["error"])},
        info={"n_iter_phases": dict(res.n_iter_phases), "backend": res.backend,
              "method": res.method, "own_converged": bool(res.converged)},
    )


def _prepare_fastsinkhorn(M, a, b, backend="auto", **options):
    """The GPU backend takes CuPy arrays: copy them to the device untimed."""
    return _to_cupy(M, a, b) if backend == "gpu" else (M, a, b)


# -- POT ---------------------------------------------------------------------
def _run_pot(M, a, b, reg, tol, max_iter, *, method):
    """POT ``ot.sinkhorn``.

    POT stops on ``||P^T 1 - b||_2`` checked every 10 iterations, right after
    the row update (so ``P 1 = a`` exactly); ``||.||_1 <= sqrt(m) ||.||_2``,
    hence ``stopThr = tol / sqrt(m)``. POT records no times: the curve maps
    iterations to time linearly over the measured wall time of the call.
    """
    import ot

    scale = math.sqrt(M.shape[1])
    start = time.perf_counter()
    with warnings.catch_warnings():
        # underflow at small reg is reported through the achieved error instead
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            plan, log = ot.sinkhorn(a, b, M, reg, method=method, numItermax=max_iter,
                                    stopThr=tol / scale, log=True, warn=False)
    _synchronize(plan)
    elapsed = time.perf_counter() - start
    n_iter = int(log["niter"]) + 1  # POT's niter is the last 0-based index
    errors = [float(e) * scale for e in log["err"]]
    # the k-th error is recorded after iteration 10 k + 1
    times = [elapsed * min(10 * k + 1, n_iter) / n_iter for k in range(len(errors))]
    return Outcome(plan=plan, n_iter=n_iter, curve={"time": times, "error": errors},
                   info={"curve_time": "linear in iterations"})


def _run_pot_solve(M, a, b, reg, tol, max_iter):
    """POT ``ot.solve(M, a, b, reg)``: its default entropic solver, ``sinkhorn_log``.

    Same stopping rule as ``ot.sinkhorn`` (``tol`` on ``||P^T 1 - b||_2``,
    every 10 iterations), hence ``tol / sqrt(m)``. ``ot.solve`` reports
    neither its iterations nor its errors: ``n_iter`` is ``-1`` and the curve
    is empty.
    """
    import ot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            res = ot.solve(M, a, b, reg=reg, max_iter=max_iter, tol=tol / math.sqrt(M.shape[1]))
    return Outcome(plan=res.plan, n_iter=-1, info={"runs": "sinkhorn_log"})


def _to_cupy(M, a, b, **options):
    import cupy

    return cupy.asarray(M), cupy.asarray(a), cupy.asarray(b)


# -- RegOT -------------------------------------------------------------------
def _run_regot(M, a, b, reg, tol, max_iter, *, method):
    """RegOT ``sinkhorn_ssns`` / ``sinkhorn_bcd``.

    RegOT stops on the L2 norm of the stacked marginal errors (the dual
    gradient), so ``tol / sqrt(n + m)`` bounds the L1 error; it records
    per-iteration times (milliseconds) and errors, which the curve uses.
    """
    import regot

    scale = math.sqrt(M.shape[0] + M.shape[1])
    res = getattr(regot, method)(M, a, b, reg, tol=tol / scale, max_iter=max_iter)
    return Outcome(
        plan=res.plan,
        n_iter=int(res.niter),
        curve={"time": [t / 1e3 for t in res.run_times],
               "error": [e * scale for e in res.mar_errs]},
    )


def _fortran_float64(M, a, b, **options):
    return np.asfortranarray(M, dtype=np.float64), np.asarray(a, np.float64), np.asarray(b, np.float64)


# -- MDOT-TNT ------------------------------------------------------------------
#: MDOT-TNT's L1 marginal error is at most this many times its final ``eps``.
MDOT_ERROR_BOUND = 1.5


def _run_mdot(M, a, b, reg, tol, max_iter):
    """MDOT-TNT (Kemertas, Farahmand, Jepson, ICLR 2025): temperature annealing
    with truncated-Newton projections, on CPU torch in float64.

    Its final temperature is ``1 / reg``. At temperature ``gamma`` it sets
    ``eps = H_min / gamma**p`` (``H_min`` the smaller marginal entropy), moves
    the marginals towards uniform by ``eps / 2`` (``r_hat = (1 - 0.9 eps / 2) r
    + 0.9 eps / 2 / n``, ``c_hat`` likewise with weight 0.1) and projects
    until ``||P 1 - r_hat||_1 <= eps / 2``, its columns exactly ``c_hat``. So
    the L1 error against ``(a, b)`` is at most ``eps / 2 + 0.9 eps + 0.1 eps
    = 1.5 eps`` (``||r - 1/n||_1 <= 2``): ``p`` is chosen to make the final
    ``eps = tol / 1.5``, the loosest setting that guarantees ``tol`` (its
    default ``p = 1.5`` stops near 1e-5 to 1e-6). The plan is ``exp(u + v -
    C / reg)`` *before* its rounding step (rounding makes the marginals
    exact by construction and would hide the error the bench measures).
    ``n_iter`` is its count of O(n m) operations. ``max_iter`` has no
    counterpart (the time cap bounds it). A run that gives up before the
    final temperature raises.
    """
    import torch
    from mdot_tnt.mdot import mdot

    C, r, c = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)) for x in (M, a, b))
    entropy = min(float(-(w[w > 0] * np.log(w[w > 0])).sum()) for w in (np.asarray(a), np.asarray(b)))
    gamma_f = 1.0 / reg
    final_eps = tol / MDOT_ERROR_BOUND
    p = math.log(max(entropy, 1e-12) / final_eps) / math.log(gamma_f) if gamma_f > 1 else 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u, v, gamma, k_total, logs = mdot(r, c, C, gamma_f, p=p)
    if abs(gamma - gamma_f) > 1e-5 * gamma_f:
        raise RuntimeError(f"MDOT-TNT stopped at temperature {gamma:.4g} < 1/reg = {gamma_f:.4g}")
    plan = torch.exp(u[:, None] + v[None, :] - gamma * C).numpy()
    return Outcome(plan=plan, n_iter=int(k_total), info={"p": p, "stages": len(logs["gammas"]) - 1})


# -- registry ------------------------------------------------------------------
METHODS = (*ENTROPIC_METHODS, AUTO)  # fastsinkhorn's, from the registry


def on_backend(method, backend):
    """Registry name of fastsinkhorn's ``method`` pinned to ``backend`` (``"cpu"`` or ``"gpu"``)."""
    return f"fastsinkhorn-{backend}-{method}"


_POT_STOP = ("stopThr = tol / sqrt(m) on POT's ||P^T 1 - b||_2, checked every 10 iterations "
             "(the loosest threshold that guarantees L1 <= tol)")

SOLVERS = {
    **{f"fastsinkhorn-{m}": Solver(f"fastsinkhorn-{m}", partial(_run_fastsinkhorn, method=m),
                                   peer=False, prepare=_prepare_fastsinkhorn, warmup="full",
                                   describe=f"fastsinkhorn.solve(method='{m}'), tol on the L1 marginal "
                                            "error, checked every iteration on the CPU")
       for m in METHODS},
    # pinned to one backend (``--gpu-check`` times the GPU against the CPU in one run)
    **{on_backend(m, backend): Solver(
           on_backend(m, backend), partial(_run_fastsinkhorn, method=m, backend=backend), peer=False,
           prepare=partial(_prepare_fastsinkhorn, backend=backend), warmup="full",
           requires=("cupy",) if backend == "gpu" else (), needs_gpu=backend == "gpu",
           describe=f"fastsinkhorn.solve(method='{m}', backend='{backend}')"
                    + (" on CuPy arrays (copied to the device untimed)" if backend == "gpu" else ""))
       for backend in ("cpu", "gpu") for m in METHODS},
    "pot-sinkhorn": Solver("pot-sinkhorn", partial(_run_pot, method="sinkhorn"), requires=("ot",),
                           describe=f"ot.sinkhorn, POT's default method (scaling domain); {_POT_STOP}"),
    "pot-sinkhorn_log": Solver("pot-sinkhorn_log", partial(_run_pot, method="sinkhorn_log"), requires=("ot",),
                               describe=f"ot.sinkhorn(method='sinkhorn_log'), POT's log domain; {_POT_STOP}"),
    "pot-solve": Solver("pot-solve", _run_pot_solve, requires=("ot",),
                        describe="ot.solve(M, a, b, reg), which runs sinkhorn_log (POT's default "
                                 f"entropic solver); {_POT_STOP}; reports no iteration count"),
    **{f"regot-{m}": Solver(f"regot-{m}", partial(_run_regot, method=f"sinkhorn_{m}"),
                            prepare=_fortran_float64, dtypes=("float64",), requires=("regot",),
                            describe=f"regot.sinkhorn_{m} with its default options, tol / sqrt(n + m) "
                                     "on its L2 norm of both marginal errors, checked every iteration")
       for m in ("ssns", "bcd")},
    "mdot-tnt": Solver("mdot-tnt", _run_mdot, prepare=_fortran_float64, dtypes=("float64",),
                       requires=("mdot_tnt", "torch"),
                       describe="mdot_tnt.mdot to temperature 1 / reg, p set so that its final "
                                "eps = tol / 1.5 (the loosest that guarantees L1 <= tol), the plan "
                                "before its rounding step; iter: its count of O(n m) operations"),
    **{name: Solver(name, partial(_run_pot, method=m), prepare=_to_cupy,
                    requires=("ot", "cupy"), warmup="full", needs_gpu=True,
                    describe=f"ot.sinkhorn(method='{m}') on CuPy arrays; {_POT_STOP}")
       for name, m in (("pot-cupy", "sinkhorn"), ("pot-cupy_log", "sinkhorn_log"))},
}
PEERS = tuple(name for name, s in SOLVERS.items() if s.peer)


def get_solver(name):
    """Look up a solver by registry name, or import it from ``"module:attr"``.

    The ``module:attr`` form (a :class:`Solver`, or a plain ``run`` callable
    taken as a peer) lets tests and users benchmark their own adapters in the
    child processes, which only receive names.
    """
    if name in SOLVERS:
        return SOLVERS[name]
    if ":" in name:
        module, attr = name.split(":", 1)
        obj = getattr(importlib.import_module(module), attr)
        return obj if isinstance(obj, Solver) else Solver(name, obj)
    raise ValueError(f"unknown solver {name!r}; choose from {sorted(SOLVERS)} or 'module:attr'")


def _synchronize(array):
    """Wait for queued GPU work on ``array`` (a no-op for NumPy arrays)."""
    if is_cupy_array(array):
        import cupy

        cupy.cuda.get_current_stream().synchronize()
