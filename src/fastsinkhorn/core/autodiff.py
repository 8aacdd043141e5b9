"""Gradient rules of the public functions, for every framework's bridge.

The solvers run on NumPy arrays, so no framework's autodiff sees their
iterations. Each differentiable public function has a rule instead
(:data:`RULES`, by the name it gives
:func:`~fastsinkhorn.core.frameworks.via_framework`): ``rule(call, wanted)``
runs the function (``call(**changes)``, on NumPy arrays; ``call.arguments``
holds its arguments) for the inputs ``wanted`` (names of the arguments that
need a gradient) and returns a :class:`~fastsinkhorn.core.derivative.Derivative`,
which the PyTorch and JAX bridges turn into their own custom gradients.

* ``solve(grad="autodiff")`` (POT's default): the exact derivatives of
  ``value``, ``value_linear``, ``plan`` and ``potentials`` at the optimum,
  by implicit differentiation (:mod:`.implicit`), for balanced and
  KL-unbalanced problems and per problem for batches; exact OT's ``value``
  by its duals. ``grad="last_step"``: POT's derivative of one Sinkhorn step
  from the solution (:mod:`.last_step`), balanced.
* ``solve(grad="envelope")``: POT's envelope gradients of ``value``: ``P``,
  ``f - mean(f)``, ``g - mean(g)`` (exact for ``M``; for the masses, POT's
  formula). ``grad="detach"``: no gradients.
* ``solve_sample``: the same outputs w.r.t. the points ``X_a``, ``X_b`` and
  the masses (:mod:`.sample_gradients`), dense or lazy (a lazy backward
  holds O((n + m) d) memory), ``debias=True`` included; envelope: the plan's
  ``2 s (diag(P 1) X_a - P X_b)`` for the squared Euclidean cost.
* POT's ``empirical_sinkhorn`` (plan, or lazy log-potentials),
  ``empirical_sinkhorn2`` (``<M, P*>``) and ``empirical_sinkhorn_divergence``:
  the same machinery, w.r.t. the samples and their weights.
* ``sinkhorn2``: its loss ``<M, P*>``; ``sinkhorn``: its plan (exact, as
  ``solve``'s); ``emd2``: POT's gradients of the exact cost.
"""

import warnings

import numpy as np

from ..geometry.lazy_plan import LazyPlan
from .derivative import Derivative
from .implicit import Relaxation, entropic_pullback
from .last_step import last_step_pullback
from .relaxation import check_unbalanced
from .result import ConvergenceWarning, OTResult
from .sample_gradients import Points, check_metric, cloud_rows, envelope_pullback, sample_pullback


def _refuse_others(wanted, allowed, where):
    """``NotImplementedError`` if an input outside ``allowed`` wants a gradient."""
    for name in wanted:
        if name not in allowed:
            raise NotImplementedError(f"{where}: no gradient with respect to {name} is implemented; detach it")


def no_gradients(result):
    """A :class:`Derivative` of ``result`` with nothing differentiable."""
    return Derivative(result, (), (), lambda cotangents: ())


def _masses(value, length, batch):
    """Masses as float64 ``(batch, length)`` (uniform where not given)."""
    if value is None or np.size(value) == 0:
        value = np.full(length, 1.0 / length)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (batch, length))


def _fit(gradient, like):
    """``gradient`` (one row per problem) summed to the shape of the input ``like``."""
    shape = np.shape(like)
    gradient = np.asarray(gradient)
    while gradient.ndim > len(shape):
        gradient = gradient.sum(axis=0)
    return gradient.reshape(shape)


def solve_rule(call, wanted):
    """:func:`~fastsinkhorn.solve`'s gradients, by its ``grad`` argument (see the module)."""
    mode = call.arguments.get("grad", "autodiff")
    if mode == "detach":
        return no_gradients(call())
    if mode == "envelope":
        return _envelope(call, wanted)
    if mode not in ("autodiff", "last_step"):
        raise NotImplementedError(f"solve(grad={mode!r}) with inputs that require a gradient: grad='autodiff', "
                                  "'envelope', 'last_step' and 'detach' are implemented")
    _refuse_others(wanted, ("M", "a", "b"), "solve")
    arguments = call.arguments
    if arguments.get("c") is not None:
        raise NotImplementedError("solve: gradients with a reference measure c are not implemented")
    reg = arguments.get("reg")
    if reg is None or (not isinstance(reg, bool) and reg == 0) or arguments.get("method") == "exact":
        return _exact_solve(call, wanted)
    unbalanced_type = arguments.get("unbalanced_type", "KL")
    if mode == "last_step" and arguments.get("unbalanced") is not None:
        raise NotImplementedError("solve(grad='last_step'): implemented for balanced OT (as POT's)")
    if arguments.get("unbalanced") is not None and str(unbalanced_type).lower() != "kl":
        raise NotImplementedError(f"solve: gradients with unbalanced_type={unbalanced_type!r} are not "
                                  "implemented (KL is)")
    result = call()
    if not isinstance(result, OTResult) or not isinstance(result.plan, np.ndarray):
        raise NotImplementedError("solve: gradients are implemented for dense costs (for point clouds, "
                                  "solve_sample)")
    _warn_unconverged(result, "solve")
    rho_a, rho_b = check_unbalanced(arguments.get("unbalanced"))
    kl_frame = str(arguments.get("reg_type", "KL")).lower() == "kl"
    M = np.asarray(arguments["M"])
    batched = bool(result.batched)
    Ms = M.reshape((-1,) + M.shape[-2:])
    B = len(Ms) if batched else 1
    plans = result.plan.reshape((B,) + result.plan.shape[-2:])
    fs, gs = (np.asarray(p).reshape(B, -1) for p in result.potentials)
    n, m = plans.shape[1:]
    As, Bs = _masses(arguments.get("a"), n, B), _masses(arguments.get("b"), m, B)
    outputs = (("value",), ("value_linear",), ("plan",), ("potentials", 0), ("potentials", 1))
    keys = ("value", "value_linear", "plan", "f", "g")
    pullback_of_mode = last_step_pullback if mode == "last_step" else entropic_pullback

    def pullback(cotangents):
        per_problem = [None if x is None else np.reshape(x, (B,) + np.shape(x)[batched:]) for x in cotangents]
        grads = {"M": [], "a": [], "b": []}
        for i in range(B):
            cot = {k: None if x is None else (float(x[i]) if k.startswith("value") else x[i])
                   for k, x in zip(keys, per_problem)}
            relaxation = Relaxation(As[i], Bs[i], rho_a, rho_b, kl_frame)
            dM, da, db = pullback_of_mode(plans[i], fs[i], gs[i], Ms[i % len(Ms)], relaxation, float(reg), cot)
            for name, value in (("M", dM), ("a", da), ("b", db)):
                grads[name].append(value)
        return tuple(_fit(np.stack(grads[name]), arguments[name]) for name in wanted)

    return Derivative(result, outputs, tuple(wanted), pullback)


def solve_sample_rule(call, wanted):
    """:func:`~fastsinkhorn.solve_sample`'s gradients w.r.t. ``X_a``, ``X_b``, ``a``, ``b``.

    ``grad="autodiff"``: the exact derivatives of ``value``,
    ``value_linear``, ``potentials`` and (dense, ``lazy=False``) ``plan``,
    balanced and KL-unbalanced, pulled back to the points block by block
    (:mod:`.sample_gradients`; a lazy solve's backward holds O((n + m) d)
    memory). A :class:`~fastsinkhorn.LazyPlan` is not differentiable (it is
    no array: no loss can be taken of it). ``grad="envelope"``: POT's
    envelope gradients of ``value`` (balanced only). ``debias=True``: the
    three solves' pullbacks, summed (the plan and potentials are those of
    ``OT(a, b)``). Only the ``"sqeuclidean"`` and ``"euclidean"`` metrics,
    single clouds and the default reference measure are differentiable.
    """
    arguments = call.arguments
    mode = arguments.get("grad", "autodiff")
    if mode == "detach":
        return no_gradients(call())
    if mode not in ("autodiff", "envelope"):
        raise NotImplementedError(f"solve_sample(grad={mode!r}) with inputs that require a gradient: "
                                  "grad='autodiff', 'envelope' and 'detach' are implemented")
    _refuse_others(wanted, ("X_a", "X_b", "a", "b"), "solve_sample")
    check_metric(arguments.get("metric", "sqeuclidean"), "solve_sample")
    reg = arguments.get("reg")
    if reg is None or (not isinstance(reg, bool) and reg == 0) or arguments.get("method") == "exact":
        raise NotImplementedError("solve_sample: gradients of exact OT (reg=None) between samples are not "
                                  "implemented; give reg > 0")
    if arguments.get("c") is not None:
        raise NotImplementedError("solve_sample: gradients with a reference measure c are not implemented")
    if np.ndim(arguments["X_a"]) == 3:
        raise NotImplementedError("solve_sample: gradients of a batch of clouds are not implemented")
    unbalanced_type = arguments.get("unbalanced_type", "KL")
    if arguments.get("unbalanced") is not None and str(unbalanced_type).lower() != "kl":
        raise NotImplementedError(f"solve_sample: gradients with unbalanced_type={unbalanced_type!r} are "
                                  "not implemented (KL is)")
    if mode == "envelope" and arguments.get("unbalanced") is not None:
        raise NotImplementedError("solve_sample(grad='envelope') with unbalanced: the envelope gradients are "
                                  "implemented for balanced OT; use grad='autodiff'")
    result = call()
    _warn_unconverged(result, "solve_sample")
    rho_a, rho_b = check_unbalanced(arguments.get("unbalanced"))
    kl_frame = str(arguments.get("reg_type", "KL")).lower() == "kl"
    metric, scale = arguments.get("metric", "sqeuclidean"), float(arguments.get("scale", 1.0))
    X = {"X_a": arguments["X_a"], "X_b": arguments["X_b"]}
    n, m = len(X["X_a"]), len(X["X_b"])
    masses = {"a": _masses(arguments.get("a"), n, 1)[0], "b": _masses(arguments.get("b"), m, 1)[0]}
    # (result, source points, target points, source masses, target masses, weight of its value)
    problems = [(result, "X_a", "X_b", "a", "b", 1.0)]
    if result.debiased:
        problems = [(result.debiased["res_ab"], "X_a", "X_b", "a", "b", 1.0),
                    (result.debiased["res_aa"], "X_a", "X_a", "a", "a", -0.5),
                    (result.debiased["res_bb"], "X_b", "X_b", "b", "b", -0.5)]
    paths = {"value": ("value",), "value_linear": ("value_linear",), "plan": ("plan",),
             "f": ("potentials", 0), "g": ("potentials", 1)}
    # the differentiable outputs: envelope, value only; a LazyPlan is no array
    keys = ("value",) if mode == "envelope" else tuple(
        k for k in paths if not (k == "plan" and isinstance(result.plan, LazyPlan)))
    clouds = _Clouds(X, masses, metric, scale, float(reg), (rho_a, rho_b, kl_frame))

    def pullback(cotangents):
        given = dict(zip(keys, cotangents))
        cot_value, cot_linear = given.get("value"), given.get("value_linear")
        terms = []
        for i, (res, x, y, ma, mb, weight) in enumerate(problems):
            if mode == "envelope":
                cot = 0.0 if cot_value is None else weight * float(cot_value)
            else:
                cot = {"value": None if cot_value is None else weight * float(cot_value),
                       "value_linear": None if cot_linear is None else weight * float(cot_linear)}
                if i == 0:  # the plan and potentials are OT(a, b)'s
                    cot.update(plan=given.get("plan"), f=given.get("f"), g=given.get("g"))
            terms.append((res, x, y, ma, mb, cot))
        grads = clouds.pull(terms, envelope=mode == "envelope")
        return tuple(_fit(grads.get(name, 0.0), arguments[name]) for name in wanted)

    return Derivative(result, tuple(paths[k] for k in keys), tuple(wanted), pullback)


class _Clouds:
    """The point clouds and masses of a rule's solves (by argument name), and
    their cost: sums the gradients of several solves between them."""

    def __init__(self, points, masses, metric, scale, reg, relaxation):
        self.points, self.masses, self.metric, self.scale = points, masses, metric, scale
        self.reg, self.relaxation = reg, relaxation

    def pull(self, terms, envelope=False):
        """``{name: gradient}`` summed over ``terms``: ``(result, x, y, a, b, cot)``,
        the names of the solve's clouds and masses and its cotangents (a dict
        for :func:`sample_pullback`, ``value``'s float for the envelope)."""
        grads = {}
        for res, x, y, ma, mb, cot in terms:
            points = Points(self.points[x], self.points[y], self.metric, self.scale)
            rows = cloud_rows(res.plan, res.potentials, points, self.reg)
            if envelope:
                out = envelope_pullback(rows, points, cot)
            else:
                relaxation = Relaxation(self.masses[ma], self.masses[mb], *self.relaxation)
                out = sample_pullback(rows, points, relaxation, cot)
            for name, value in zip((x, y, ma, mb), out):
                grads[name] = grads.get(name, 0.0) + value
        return grads


def _empirical(call, wanted, where):
    """The common part of the empirical solvers' rules: checks, the solve with
    its log, and the clouds. Returns ``(out, clouds, want_log)``, ``out`` what
    the call returns with ``log=True``, ``want_log`` the caller's ``log``."""
    _refuse_others(wanted, ("X_s", "X_t", "a", "b"), where)
    arguments = call.arguments
    check_metric(arguments.get("metric", "sqeuclidean"), where)
    for name in ("a", "b"):
        if np.ndim(arguments.get(name)) == 2:
            raise NotImplementedError(f"{where}: gradients with several histograms (a 2-D {name}) are not "
                                      "implemented")
    want_log = bool(arguments.get("log", False))
    out = call(log=True)  # (call's changes stay in its arguments)
    X = {"X_s": arguments["X_s"], "X_t": arguments["X_t"]}
    masses = {"a": _masses(arguments.get("a"), len(X["X_s"]), 1)[0],
              "b": _masses(arguments.get("b"), len(X["X_t"]), 1)[0]}
    return out, _Clouds(X, masses, arguments.get("metric", "sqeuclidean"), 1.0, float(arguments["reg"]),
                        (np.inf, np.inf, True)), want_log


def _unconverged(results, where):
    for res in results:
        _warn_unconverged(res, where)


def empirical_sinkhorn_rule(call, wanted):
    """:func:`~fastsinkhorn.bregman.empirical_sinkhorn`: the plan's exact
    derivative (``isLazy=False``) or the log-potentials' (``isLazy=True``,
    ``f = f_cost / reg``; a loss of them must not see the constant moved
    between ``f`` and ``g``), w.r.t. the samples and the weights."""
    out, clouds, want_log = _empirical(call, wanted, "empirical_sinkhorn")
    res = out[-1]["result"]
    _unconverged([res], "empirical_sinkhorn")
    lazy = len(out) == 3

    def pullback(cotangents):
        if lazy:  # POT's potentials are ours / reg
            cot = {k: None if c is None else c / clouds.reg for k, c in zip(("f", "g"), cotangents)}
        else:
            cot = {"plan": cotangents[0]}
        grads = clouds.pull([(res, "X_s", "X_t", "a", "b", cot)])
        return tuple(_fit(grads[name], call.arguments[name]) for name in wanted)

    if lazy:
        return Derivative(out if want_log else out[:2], ((0,), (1,)), tuple(wanted), pullback)
    return Derivative(out if want_log else out[0], ((0,),) if want_log else ((),), tuple(wanted), pullback)


def empirical_sinkhorn2_rule(call, wanted):
    """:func:`~fastsinkhorn.bregman.empirical_sinkhorn2`: the loss ``<M, P*>``
    with its exact gradients w.r.t. the samples and the weights."""
    out, clouds, want_log = _empirical(call, wanted, "empirical_sinkhorn2")
    res = out[1]["result"]
    _unconverged([res], "empirical_sinkhorn2")

    def pullback(cotangents):
        cot = {"value_linear": None if cotangents[0] is None else float(cotangents[0])}
        grads = clouds.pull([(res, "X_s", "X_t", "a", "b", cot)])
        return tuple(_fit(grads[name], call.arguments[name]) for name in wanted)

    return Derivative(out if want_log else out[0], ((0,),) if want_log else ((),), tuple(wanted), pullback)


def empirical_sinkhorn_divergence_rule(call, wanted):
    """:func:`~fastsinkhorn.bregman.empirical_sinkhorn_divergence`: POT's
    divergence, ``max(0, W_ab - (W_aa + W_bb) / 2)`` of the linear losses,
    with the three solves' exact gradients (0 where it is clipped)."""
    out, clouds, want_log = _empirical(call, wanted, "empirical_sinkhorn_divergence")
    log = out[1]
    results = [log[k]["result"] for k in ("log_sinkhorn_ab", "log_sinkhorn_a", "log_sinkhorn_b")]
    _unconverged(results, "empirical_sinkhorn_divergence")
    clipped = log["sinkhorn_loss_ab"] - (log["sinkhorn_loss_a"] + log["sinkhorn_loss_b"]) / 2 < 0

    def pullback(cotangents):
        c = 0.0 if cotangents[0] is None or clipped else float(cotangents[0])
        sides = (("X_s", "X_t", "a", "b", c), ("X_s", "X_s", "a", "a", -c / 2), ("X_t", "X_t", "b", "b", -c / 2))
        grads = clouds.pull([(res, x, y, ma, mb, {"value_linear": w})
                             for res, (x, y, ma, mb, w) in zip(results, sides)])
        return tuple(_fit(grads[name], call.arguments[name]) for name in wanted)

    return Derivative(out if want_log else out[0], ((0,),) if want_log else ((),), tuple(wanted), pullback)


def _warn_unconverged(result, where):
    """The implicit gradient holds at the optimum: warn when the solve stopped short of it."""
    if not bool(np.all(result.converged)):
        warnings.warn(f"{where} did not converge: its gradient, the implicit one at the optimum, is evaluated "
                      "at the unconverged plan; increase max_iter or reg", ConvergenceWarning, stacklevel=2)


def _envelope(call, wanted):
    """``solve(grad="envelope")``: POT's envelope gradients of ``value``."""
    _refuse_others(wanted, ("M", "a", "b"), "solve(grad='envelope')")
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

    def pullback(cotangents):
        cot = 0.0 if cotangents[0] is None else float(cotangents[0])
        return tuple(cot * np.asarray(gradients[name], dtype=np.float64) for name in wanted)

    return Derivative(result, (("value",),), tuple(wanted), pullback)


def _exact_solve(call, wanted):
    """Exact OT: ``value`` (= ``value_linear``) by its duals, ``P``, ``u``, ``v``
    (the derivative wherever the optimal basis is unique). The plan (a sparse
    matrix, returned as it is) is piecewise constant in ``(M, a, b)``: not an
    output with a gradient. A loss of the duals is refused (they are not
    differentiated)."""
    result = call()
    if result.batched:
        raise NotImplementedError("solve: gradients of batched exact OT are not implemented")
    u, v = (np.asarray(p, dtype=np.float64) for p in result.potentials)
    plan = result.plan.toarray() if hasattr(result.plan, "toarray") else np.asarray(result.plan)
    gradients = {"M": plan.astype(np.float64), "a": u, "b": v}

    def pullback(cotangents):
        cot_value, cot_linear, cot_f, cot_g = cotangents
        for name, cot in (("potentials[0]", cot_f), ("potentials[1]", cot_g)):
            if cot is not None and np.any(cot != 0):
                raise NotImplementedError(f"solve: the exact duals ({name}) are not differentiable here")
        cot = sum(float(c) for c in (cot_value, cot_linear) if c is not None)
        return tuple(cot * gradients[name] for name in wanted)

    outputs = (("value",), ("value_linear",), ("potentials", 0), ("potentials", 1))
    return Derivative(result, outputs, tuple(wanted), pullback)


def _pot_entropic(call, wanted, where, output):
    """``sinkhorn`` (``output="plan"``) and ``sinkhorn2`` (``"value_linear"``):
    their result is one output of the entropic optimum, pulled back as ``solve``'s."""
    _refuse_others(wanted, ("M", "a", "b"), where)
    arguments = call.arguments
    for name in ("a", "b"):
        if np.ndim(arguments.get(name)) == 2:
            raise NotImplementedError(f"{where}: gradients with several targets (a 2-D {name}) are not implemented")
    want_log = bool(arguments.get("log", False))
    out, log = call(log=True)
    if not log["converged"]:  # the implicit gradient holds at the optimum only
        warnings.warn(f"{where} did not converge: its gradient, the implicit one at the optimum, is evaluated "
                      "at the unconverged plan; increase numItermax or reg", ConvergenceWarning, stacklevel=2)
    result = log["result"]
    n, m = np.shape(result.plan)
    reg = float(arguments["reg"])
    relaxation = Relaxation(_masses(arguments.get("a"), n, 1)[0], _masses(arguments.get("b"), m, 1)[0])
    f, g = result.potentials

    def pullback(cotangents):
        cot = {output: None if cotangents[0] is None else
               (float(cotangents[0]) if output != "plan" else cotangents[0])}
        dM, da, db = entropic_pullback(result.plan, f, g, arguments["M"], relaxation, reg, cot)
        grads = {"M": dM, "a": da, "b": db}
        return tuple(grads[name] for name in wanted)

    if not want_log:
        log = None
    return Derivative((out, log) if want_log else out, ((0,),) if want_log else ((),), tuple(wanted), pullback)


def sinkhorn2_rule(call, wanted):
    """:func:`~fastsinkhorn.sinkhorn2`: the loss ``<M, P*>`` with its exact gradients."""
    return _pot_entropic(call, wanted, "sinkhorn2", "value_linear")


def sinkhorn_rule(call, wanted):
    """:func:`~fastsinkhorn.sinkhorn`: the optimal plan with its exact derivative."""
    return _pot_entropic(call, wanted, "sinkhorn", "plan")


def emd2_rule(call, wanted):
    """:func:`~fastsinkhorn.emd2`: POT's gradients of the exact cost (the plan
    ``G`` for ``M``, the centred duals ``u - mean(u)``, ``v - mean(v)`` for
    ``a`` and ``b``: the cost's derivatives where the optimal basis is
    unique, up to the masses' tied constant). Several targets (a 2-D ``b``)
    raise ``NotImplementedError``."""
    _refuse_others(wanted, ("M", "a", "b"), "emd2")
    arguments = call.arguments
    if np.ndim(arguments.get("b")) == 2:
        raise NotImplementedError("emd2: gradients with several targets (a 2-D b) are not implemented")
    want_log, want_plan = (bool(arguments.get(k, False)) for k in ("log", "return_matrix"))
    cost, log = call(return_matrix=True)
    u, v = (np.asarray(log[k], dtype=np.float64) for k in ("u", "v"))
    gradients = {"M": np.asarray(log["G"], dtype=np.float64), "a": u - u.mean(), "b": v - v.mean()}
    if not want_plan:
        del log["G"]

    def pullback(cotangents):
        cot = 0.0 if cotangents[0] is None else float(cotangents[0])
        return tuple(cot * gradients[name] for name in wanted)

    both = want_log or want_plan
    return Derivative([cost, log] if both else cost, ((0,),) if both else ((),), tuple(wanted), pullback)


def dist_rule(call, wanted):
    """:func:`~fastsinkhorn.dist`: the squared Euclidean and Euclidean costs
    with their derivatives in the points (``G`` the cost's cotangent:
    ``2 (G 1 * x1 - G x2)`` for ``x1``; the Euclidean distance's derivative
    taken as 0 where two points coincide). Other metrics and weights ``w``
    raise ``NotImplementedError``."""
    _refuse_others(wanted, ("x1", "x2"), "dist")
    arguments = call.arguments
    metric = arguments.get("metric", "sqeuclidean")
    if metric not in ("sqeuclidean", "euclidean") or arguments.get("w") is not None \
            or arguments.get("backend", "auto") != "auto":
        raise NotImplementedError(f"dist: gradients are implemented for metric='sqeuclidean' and 'euclidean' "
                                  f"without weights, got metric={metric!r}")
    D = call()
    x1 = np.asarray(arguments["x1"], dtype=np.float64)
    x2 = x1 if arguments.get("x2") is None else np.asarray(arguments["x2"], dtype=np.float64)

    def pullback(cotangents):
        G = np.zeros(D.shape) if cotangents[0] is None else cotangents[0]
        if metric == "euclidean":
            Dd = np.asarray(D, dtype=np.float64)
            G = np.where(Dd > 0, G / (2 * np.where(Dd > 0, Dd, 1.0)), 0.0)
        grads = {"x1": 2 * (G.sum(1)[:, None] * x1 - G @ x2), "x2": 2 * (G.sum(0)[:, None] * x2 - G.T @ x1)}
        if arguments.get("x2") is None:  # one set of points on both sides
            grads["x1"] = grads["x1"] + grads["x2"]
        return tuple(grads[name] for name in wanted)

    return Derivative(D, ((),), tuple(wanted), pullback)


#: Each public function's gradient rule, by the name it gives
#: :func:`~fastsinkhorn.core.frameworks.via_framework`.
RULES = {
    "solve": solve_rule,
    "solve_sample": solve_sample_rule,
    "sinkhorn": sinkhorn_rule,
    "sinkhorn2": sinkhorn2_rule,
    "emd2": emd2_rule,
    "dist": dist_rule,
    "empirical_sinkhorn": empirical_sinkhorn_rule,
    "empirical_sinkhorn2": empirical_sinkhorn2_rule,
    "empirical_sinkhorn_divergence": empirical_sinkhorn_divergence_rule,
}
