"""Gradients for PyTorch callers: the gradient rules of :func:`~fastsinkhorn.core.torch_bridge.via_torch`.

The solvers run on NumPy views of the caller's tensors, so PyTorch's autograd
never sees their iterations. The gradients are given instead, at the
solution, by one ``torch.autograd.Function`` (:func:`with_gradients`):

* ``solve(..., grad="envelope")``: POT's envelope gradients of ``value``
  (``<M, P> + reg * Omega(P)``): ``P`` for ``M``, the centred potentials
  ``f - mean(f)``, ``g - mean(g)`` for ``a`` and ``b``
  (:func:`solve_gradients`); ``grad="detach"`` returns tensors without a graph.
* ``sinkhorn2``'s loss ``<M, P*>``, whose exact derivative includes how the
  optimal plan moves with ``M``, ``a`` and ``b``: implicit differentiation of
  the optimality conditions (:func:`linear_cost_gradients`).

PyTorch is imported here only when a handler runs (a tensor was given).
"""

import functools
import warnings

import numpy as np

from .result import ConvergenceWarning, OTResult
from .torch_bridge import to_torch, torch_module


@functools.cache
def _given_gradients():
    """A ``torch.autograd.Function`` returning a scalar whose gradients with
    respect to its inputs are given (computed by the solver, not traced)."""
    torch = torch_module()

    class GivenGradients(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value, gradients, *inputs):
            ctx.gradients = gradients
            return value.clone()

        @staticmethod
        def backward(ctx, grad_output):
            return (None, None, *(None if g is None else grad_output * g for g in ctx.gradients))

    return GivenGradients


def with_gradients(value, pairs):
    """The scalar tensor ``value`` with gradient ``pairs``' arrays with respect
    to their tensors: ``pairs`` is a list of ``(tensor, NumPy array)``, each
    array cast to its tensor's dtype and device."""
    torch = torch_module()
    inputs = [t for t, _ in pairs]
    gradients = tuple(torch.as_tensor(np.asarray(g), dtype=t.dtype, device=t.device) for t, g in pairs)
    return _given_gradients().apply(value, gradients, *inputs)


def _differentiable(tensors, allowed, where):
    """The tensors among ``allowed`` that require a gradient; one outside
    ``allowed`` that does raises ``NotImplementedError``."""
    for name, t in tensors.items():
        if t.requires_grad and name not in allowed:
            raise NotImplementedError(f"{where}: no gradient with respect to {name} is implemented; detach it")
    return {n: t for n, t in tensors.items() if n in allowed and t.requires_grad and t.numel() > 0}


def solve_gradients(call, tensors, like):
    """:func:`~fastsinkhorn.solve` with inputs that require a gradient.

    ``grad="detach"``: the result's tensors carry no graph. ``grad="envelope"``:
    ``value`` carries POT's envelope gradients (``P``, ``f - mean(f)``,
    ``g - mean(g)`` for ``M``, ``a``, ``b``), the other fields none. POT's
    default ``"autodiff"`` (differentiating every output through the
    iterations) is not implemented and raises ``NotImplementedError``.
    """
    mode = call.arguments.get("grad", "autodiff")
    if mode == "detach":
        return to_torch(call(), like)
    if mode != "envelope":
        raise NotImplementedError(f"solve(grad={mode!r}) with tensors that require a gradient: only "
                                  "grad='envelope' (gradients of value) and grad='detach' are implemented")
    wanted = _differentiable(tensors, ("M", "a", "b"), "solve(grad='envelope')")
    for name in ("unbalanced", "c"):
        if call.arguments.get(name) is not None:
            raise NotImplementedError(f"solve(grad='envelope') with {name}: the envelope gradients are "
                                      "implemented for balanced OT with the default reference measure")
    result = call()
    if not isinstance(result, OTResult) or result.batched or not isinstance(result.plan, np.ndarray):
        raise NotImplementedError("solve(grad='envelope'): gradients are implemented for one entropic "
                                  "problem with a dense cost (not exact OT, batches or point clouds)")
    f, g = (p.astype(np.float64) for p in result.potentials)
    gradients = {"M": result.plan, "a": f - f.mean(), "b": g - g.mean()}
    out = to_torch(result, like)
    out.value = with_gradients(out.value, [(t, gradients[n]) for n, t in wanted.items()])
    return out


def linear_cost_gradients(M, P, reg):
    r"""Gradients of ``L = <M, P*(M, a, b)>`` at the entropic optimum ``P``.

    The optimal plan is ``P = exp((f + g - M) / reg)`` with ``(f, g)`` solving
    ``P 1 = a``, ``P^T 1 = b``. Differentiating those conditions gives
    ``H (df, dg) = (da + (P * dM) 1 / reg, db + (P * dM)^T 1 / reg)`` with the
    dual Hessian ``H = [[diag(P 1), P], [P^T, diag(P^T 1)]] / reg``, so that,
    with ``z = (z_f, z_g)`` solving ``H z = ((M * P) 1, (M * P)^T 1) / reg``:

    .. math::
        \partial L / \partial M = P - M \odot P / \mathrm{reg}
        + P \odot (z_f \oplus z_g) / \mathrm{reg},\quad
        \partial L / \partial a = z_f,\quad \partial L / \partial b = z_g.

    ``H`` is singular along ``(1, -1)`` (a constant moved from ``f`` to
    ``g``), to which the right-hand side is orthogonal: the least-squares
    (minimum-norm) solution is taken, which leaves ``dL/dM`` unchanged and
    fixes the free constant of the marginals' gradients (their masses are
    tied, so only directions that keep ``sum a = sum b`` are meaningful).
    Up to :data:`DENSE_SOLVE_MAX` unknowns, one dense least-squares solve;
    beyond, :func:`_schur_cg` (O(n m) memory and work per iteration: a dense
    ``(n + m)^2`` system would take gigabytes where the plan takes megabytes).
    """
    P = np.asarray(P, dtype=np.float64)
    MP = np.where(P > 0, np.asarray(M, dtype=np.float64) * P, 0.0)  # forbidden (inf) entries carry no mass
    n, m = P.shape
    u, v = MP.sum(1), MP.sum(0)  # the right-hand side, times reg (H's 1/reg cancels it)
    if n + m <= DENSE_SOLVE_MAX:
        H = np.block([[np.diag(P.sum(1)), P], [P.T, np.diag(P.sum(0))]])
        z = np.linalg.lstsq(H, np.concatenate([u, v]), rcond=None)[0]
        z_f, z_g = z[:n], z[n:]
    else:
        z_f, z_g = _schur_cg(P, u, v)
    dM = P - MP / reg + P * (z_f[:, None] + z_g[None, :]) / reg
    return dM, z_f, z_g


#: Largest ``n + m`` whose Newton system :func:`linear_cost_gradients` solves densely.
DENSE_SOLVE_MAX = 2000


def _schur_cg(P, u, v, rtol=1e-13):
    """The minimum-norm solution of ``[[diag(r), P], [P^T, diag(c)]] z = (u, v)``
    (``r = P 1``, ``c = P^T 1``) by CG on the Schur complement of the rows,
    ``S = diag(c) - P^T diag(1 / r) P``, in the complement of its null space.

    Rows and columns without mass have zero rows in the system: their
    unknowns are 0 in the minimum-norm solution. On the others ``S`` is
    positive semi-definite with the constants as null space (the ``(1, -1)``
    direction of the full system), to which the right-hand side is
    orthogonal; CG runs on the mean-free subspace, and the constant moved
    between ``z_f`` and ``z_g`` is chosen last to minimise the norm, as the
    dense least-squares solve does.
    """
    from scipy.sparse.linalg import LinearOperator, cg

    r, c = P.sum(1), P.sum(0)
    rows, cols = r > 0, c > 0
    Q, r, c, u, v = P[np.ix_(rows, cols)], r[rows], c[cols], u[rows], v[cols]
    k = len(c)

    def centred(x):
        return x - x.mean()

    def schur(x):
        return centred(c * x - Q.T @ ((Q @ x) / r))

    rhs = centred(v - Q.T @ (u / r))
    scale = float(np.abs(rhs).max(initial=0.0))
    if scale == 0.0:
        y = np.zeros(k)
    else:
        y, info = cg(LinearOperator((k, k), matvec=schur, dtype=np.float64), rhs / scale,
                     rtol=rtol, atol=0.0, maxiter=20 * k)
        if info != 0:
            raise RuntimeError(f"the implicit gradient's CG did not converge ({info} iterations)")
        y = centred(y) * scale
    x = (u - Q @ y) / r
    shift = (y.sum() - x.sum()) / (len(x) + k)  # z + t (1, -1) of least norm
    z_f, z_g = np.zeros(P.shape[0]), np.zeros(P.shape[1])
    z_f[rows], z_g[cols] = x + shift, y - shift
    return z_f, z_g


def sinkhorn2_gradients(call, tensors, like):
    """:func:`~fastsinkhorn.sinkhorn2` with inputs that require a gradient:
    the loss ``<M, P*>`` carries its exact gradients (:func:`linear_cost_gradients`).
    Several targets (a 2-D ``b``) raise ``NotImplementedError``."""
    wanted = _differentiable(tensors, ("M", "a", "b"), "sinkhorn2")
    b = tensors.get("b")
    if b is not None and b.ndim == 2:
        raise NotImplementedError("sinkhorn2: gradients with several targets (a 2-D b) are not implemented")
    want_log = bool(call.arguments.get("log", False))
    loss, log = call(log=True)
    if not log["converged"]:  # the implicit gradient holds at the optimum only
        warnings.warn("sinkhorn2 did not converge: its gradient, the implicit one at the optimum, is evaluated "
                      "at the unconverged plan; increase numItermax or reg", ConvergenceWarning, stacklevel=2)
    reg = float(call.arguments["reg"])
    dM, da, db = linear_cost_gradients(call.arguments["M"], log["result"].plan, reg)
    gradients = {"M": dM, "a": da, "b": db}
    value = with_gradients(to_torch(loss, like), [(t, gradients[n]) for n, t in wanted.items()])
    return (value, to_torch(log, like)) if want_log else value


def emd2_gradients(call, tensors, like):
    """:func:`~fastsinkhorn.emd2` with inputs that require a gradient: POT's
    gradients of the exact cost (the plan ``G`` for ``M``, the centred duals
    ``u - mean(u)``, ``v - mean(v)`` for ``a`` and ``b``: the cost's
    derivatives where the optimal basis is unique). Several targets (a 2-D
    ``b``) raise ``NotImplementedError``."""
    wanted = _differentiable(tensors, ("M", "a", "b"), "emd2")
    b = tensors.get("b")
    if b is not None and b.ndim == 2:
        raise NotImplementedError("emd2: gradients with several targets (a 2-D b) are not implemented")
    want_log, want_plan = (bool(call.arguments.get(k, False)) for k in ("log", "return_matrix"))
    cost, log = call(return_matrix=True)
    u, v = (np.asarray(log[k], dtype=np.float64) for k in ("u", "v"))
    gradients = {"M": log["G"], "a": u - u.mean(), "b": v - v.mean()}
    value = with_gradients(to_torch(cost, like), [(t, gradients[n]) for n, t in wanted.items()])
    if not want_plan:
        del log["G"]
    return [value, to_torch(log, like)] if want_log or want_plan else value


#: Each public function's gradient rule (the name it gives
#: :func:`~fastsinkhorn.core.frameworks.via_framework`) -> its PyTorch handler.
TORCH_GRADIENTS = {
    "solve": solve_gradients,
    "solve_sample": solve_gradients,
    "sinkhorn2": sinkhorn2_gradients,
    "emd2": emd2_gradients,
}
