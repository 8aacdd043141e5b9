"""Per-problem results of a batch, and one batched result of many problems."""

import numpy as np

from .arrays import array_namespace
from .result import OTResult, Status


def split_batch(res):
    """The per-problem :class:`OTResult` s of a batched result.

    Every field is the problem's own, except ``history``: the batch's joint
    one (its error is that of the worst problem still running).
    """
    f, g = res.potentials
    out = []
    for p in range(len(res.value)):
        converged = bool(res.converged[p])
        # a batch's status is its worst problem's; a converged problem is converged
        status = Status.CONVERGED if converged else (
            Status.MAX_ITER if res.status is Status.CONVERGED else res.status)
        out.append(OTResult(
            plan=res.plan[p], potentials=(f[p], g[p]), value=float(res.value[p]),
            value_linear=float(res.value_linear[p]), marginal_error=float(res.marginal_error[p]),
            n_iter=int(res.n_iter[p]), n_iter_phases={res.method: int(res.n_iter[p])},
            converged=converged, status=status, history=res.history, backend=res.backend,
            method=res.method, tol=res.tol, reg=res.reg,
            marginals=None if res.marginals is None else (res.marginals[0][p], res.marginals[1][p])))
    return out


def stack_results(results):
    """One batched :class:`OTResult` of the results of problems solved one by
    one (the inverse of :func:`split_batch`): per-problem fields stacked, the
    problem axis first; ``history`` is a joint one whose ``error`` at each
    check is the largest of the problems' (a finished problem counting with
    its final error), as a batch's; ``status`` is that of the first problem
    that did not converge."""
    first = results[0]
    xp = array_namespace(first.plan)
    converged = np.array([bool(r.converged) for r in results])
    phases = {name: np.array([r.n_iter_phases.get(name, 0) for r in results])
              for name in dict.fromkeys(k for r in results for k in r.n_iter_phases)}
    errors = [r.history["error"] for r in results]
    joint = [max(e[min(i, len(e) - 1)] for e in errors if e) for i in range(max(map(len, errors), default=0))]
    methods = {r.method for r in results}
    return OTResult(
        plan=xp.stack([r.plan for r in results]),
        potentials=tuple(xp.stack([r.potentials[i] for r in results]) for i in (0, 1)),
        value=xp.asarray([r.value for r in results]), value_linear=xp.asarray([r.value_linear for r in results]),
        marginal_error=np.array([float(r.marginal_error) for r in results]),
        n_iter=np.array([int(r.n_iter) for r in results]), n_iter_phases=phases, converged=converged,
        status=next((r.status for r in results if not r.converged), Status.CONVERGED),
        history={"iteration": list(range(1, len(joint) + 1)), "error": joint},
        backend=first.backend, method=methods.pop() if len(methods) == 1 else "auto", tol=first.tol,
        reg=first.reg, marginals=tuple(xp.stack([r.marginals[i] for r in results]) for i in (0, 1)))
