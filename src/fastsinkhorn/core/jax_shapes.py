"""What a public function returns given traced JAX arrays: shapes and dtypes before it runs.

Inside ``jax.jit``, ``jax.grad`` or ``jax.vmap`` the arrays are tracers:
the solve runs later, on the host (:mod:`.jax_gradients`), and JAX needs the
shape and dtype of each of its arrays now. :func:`output_spec` gives them
as a *template*: the function's result with a ``jax.ShapeDtypeStruct`` in
place of each array, anything else as it will be returned.

For :func:`~fastsinkhorn.solve` and :func:`~fastsinkhorn.solve_sample` the
template is an :class:`~fastsinkhorn.core.result.OTResult` whose numbers are
arrays (``plan``, ``potentials``, ``value``, ``value_linear``,
``marginals``, ``marginal_error`` of the cost's dtype; ``n_iter`` JAX's
default int; ``converged`` bool; exact OT's plan dense) and whose host-side
fields, known only after the solve, are ``None`` (``status``, ``history``,
``n_iter_phases``, ``backend``, ``method``, ``tol``); ``reg`` is the given
one. It is a JAX pytree (registered here, so only once JAX is in use): its
numbers are the leaves, so it passes out of ``jax.jit`` and through
``jax.tree_util``; its other fields ride along as static data. What has
no fixed shape before the solve (POT's logs, ``emd2``'s ``return_matrix``,
a lazy plan) raises ``NotImplementedError``: call those outside the
transformation.
"""

import dataclasses

import jax
import numpy as np

from .derivative import replace_path
from .result import OTResult

#: The :class:`OTResult` fields that are arrays (a pytree's leaves); the others are static.
_NUMBERS = ("plan", "potentials", "value", "value_linear", "marginal_error", "n_iter", "converged", "marginals")
_STATIC = tuple(f.name for f in dataclasses.fields(OTResult) if f.name not in _NUMBERS)


def _flatten(result):
    return tuple(getattr(result, f) for f in _NUMBERS), tuple(getattr(result, f) for f in _STATIC)


def _unflatten(static, numbers):
    return OTResult(**dict(zip(_NUMBERS, numbers)), **dict(zip(_STATIC, static)))


jax.tree_util.register_pytree_node(OTResult, _flatten, _unflatten)


def output_spec(function, arguments):
    """The template of ``function``'s result given ``arguments`` (name ->
    value, the JAX arrays traced): see the module."""
    spec = _SPECS.get(function.__name__)
    if spec is None:
        raise NotImplementedError(f"{function.__name__} does not take traced JAX arrays (jax.jit, jax.grad, "
                                  "jax.vmap); call it on concrete arrays, outside the transformation")
    return spec(arguments)


def array_leaves(template, path=()):
    """``(path, ShapeDtypeStruct)`` of each array of ``template``, in a fixed order
    (paths as in :mod:`.derivative`)."""
    if isinstance(template, jax.ShapeDtypeStruct):
        return [(path, template)]
    if isinstance(template, (tuple, list)):
        items = enumerate(template)
    elif isinstance(template, dict):
        items = template.items()
    elif isinstance(template, OTResult):
        items = ((f.name, getattr(template, f.name)) for f in dataclasses.fields(template))
    else:
        return []
    return [leaf for key, value in items for leaf in array_leaves(value, path + (key,))]


def replace_leaves(template, paths, arrays):
    """``template`` with the array at each of ``paths`` replaced by the one of ``arrays``."""
    for path, array in zip(paths, arrays):
        template = replace_path(template, path, array)
    return template


def real_dtype(*dtypes):
    """The floating dtype of a result computed from arrays of ``dtypes``: theirs
    if floating, else the widest float JAX allows (float32 without x64)."""
    dtype = np.result_type(*dtypes)
    return dtype if dtype.kind == "f" else jax.dtypes.canonicalize_dtype(np.float64)


def _refuse(arguments, where, *flags):
    """``NotImplementedError`` for a flag whose result has no shape before the solve."""
    for flag in flags:
        if arguments.get(flag):
            raise NotImplementedError(f"{where}({flag}=True) with traced JAX arrays (jax.jit, jax.grad, "
                                      f"jax.vmap): its contents are known only after the solve; call it "
                                      f"outside the transformation, or with {flag}=False")


def _arrays(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def ot_result(lead, n, m, dtype, reg):
    """The :class:`OTResult` template of ``lead`` problems (``()`` one) of size ``n x m``."""
    def s(*shape, kind=dtype):
        return _arrays(lead + shape, kind)

    return OTResult(plan=s(n, m), potentials=(s(n), s(m)), value=s(), value_linear=s(), marginal_error=s(),
                    n_iter=s(kind=jax.dtypes.canonicalize_dtype(np.int64)), n_iter_phases=None,
                    converged=s(kind=np.bool_), status=None, history=None, backend=None, method=None, tol=None,
                    reg=reg, marginals=(s(n), s(m)))


def _solve(arguments):
    M = arguments["M"]
    if np.ndim(M) not in (2, 3):
        raise ValueError(f"M must be a 2-D cost or a 3-D batch of costs, got shape {np.shape(M)}")
    return ot_result(tuple(M.shape[:-2]), *M.shape[-2:], real_dtype(M.dtype), arguments.get("reg"))


def _solve_sample(arguments):
    _refuse(arguments, "solve_sample", "lazy")
    X_a, X_b = arguments["X_a"], arguments["X_b"]
    return ot_result((), np.shape(X_a)[0], np.shape(X_b)[0], real_dtype(X_a.dtype, X_b.dtype),
                     arguments.get("reg"))


def _targets(arguments):
    """The shape of POT's loss: one per column of a 2-D ``b`` (several targets)."""
    b = arguments.get("b")
    return (np.shape(b)[1],) if np.ndim(b) == 2 else ()


def _sinkhorn(arguments):
    _refuse(arguments, "sinkhorn", "log")
    if len(_targets(arguments)):
        raise NotImplementedError("sinkhorn with several targets (a 2-D b) and traced JAX arrays: call "
                                  "sinkhorn2, or sinkhorn outside the transformation")
    M = arguments["M"]
    return _arrays(M.shape, real_dtype(M.dtype))


def _sinkhorn2(arguments):
    _refuse(arguments, "sinkhorn2", "log")
    return _arrays(_targets(arguments), real_dtype(arguments["M"].dtype))


def _emd(arguments):
    _refuse(arguments, "emd", "log")
    M = arguments["M"]
    return _arrays(M.shape, real_dtype(M.dtype))


def _emd2(arguments):
    _refuse(arguments, "emd2", "log", "return_matrix")
    return _arrays(_targets(arguments), real_dtype(arguments["M"].dtype))


def _dist(arguments):
    x1, x2 = arguments["x1"], arguments.get("x2")
    x2 = x1 if x2 is None else x2
    return _arrays((np.shape(x1)[0], np.shape(x2)[0]), real_dtype(x1.dtype, x2.dtype))


def _samples(arguments, where):
    """``(n, m, dtype)`` of an empirical solver's samples ``X_s``, ``X_t``."""
    _refuse(arguments, where, "log")
    X_s, X_t = arguments["X_s"], arguments["X_t"]
    return np.shape(X_s)[0], np.shape(X_t)[0], real_dtype(X_s.dtype, X_t.dtype)


def _empirical_sinkhorn(arguments):
    n, m, dtype = _samples(arguments, "empirical_sinkhorn")
    if arguments.get("isLazy"):  # POT's log-potentials (f, g)
        return _arrays((n,), dtype), _arrays((m,), dtype)
    return _arrays((n, m), dtype)


def _empirical_loss(where):
    def spec(arguments):
        return _arrays((), _samples(arguments, where)[2])
    return spec


#: Each public function's template, by its name.
_SPECS = {"solve": _solve, "solve_sample": _solve_sample, "sinkhorn": _sinkhorn, "sinkhorn2": _sinkhorn2,
          "emd": _emd, "emd2": _emd2, "dist": _dist, "empirical_sinkhorn": _empirical_sinkhorn,
          "empirical_sinkhorn2": _empirical_loss("empirical_sinkhorn2"),
          "empirical_sinkhorn_divergence": _empirical_loss("empirical_sinkhorn_divergence")}
