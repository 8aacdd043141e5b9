"""JAX arrays in, JAX arrays out: the JAX side of :mod:`fastsinkhorn.core.frameworks`.

The solvers compute on NumPy (or CuPy) arrays. A public function given JAX
arrays is run by :func:`via_jax`:

* concrete CPU arrays (no transformation): read as NumPy arrays
  (``np.asarray``, without a copy where JAX allows), the function runs on
  them, and its arrays come back as JAX arrays (``jnp.asarray``) of the
  solver's dtype, the input's; the whole result, as with NumPy arrays.
* traced arrays (inside ``jax.jit``, ``jax.grad``, ``jax.vmap``): the call
  becomes one ``jax.custom_vjp`` whose value runs the function on the host
  and whose backward pass is the function's gradient rule
  (:mod:`.jax_gradients`); the result's shapes come from
  :mod:`.jax_shapes`, which says what a traced call returns.

Arrays on another device than the CPU raise ``NotImplementedError``; JAX
arrays mixed with NumPy arrays or lists raise ``TypeError`` naming them;
a traced value in another argument (``reg``, a warm start) raises
``TypeError`` naming it. Warnings meant for the caller are re-issued at the
caller's line, under ``jit`` too (the line that traced the call).

JAX is imported only once a JAX array has been seen: an array is
recognised by the module of its type, so ``import fastsinkhorn`` and every
NumPy call stay free of it.
"""

import sys
import warnings

import numpy as np

from . import autodiff
from . import derivative as _derivative
from .arrays import framework_arguments
from .derivative import bind, map_result


def is_jax_array(x):
    """True for a JAX array or tracer (checked by module name: JAX is never imported)."""
    return type(x).__module__.split(".")[0] in ("jax", "jaxlib")


def _is_tracer(x):
    import jax

    return isinstance(x, jax.core.Tracer)


def check_jax_arguments(named):
    """The first JAX array among ``named`` (name -> value), or ``None`` if there is none.

    Mixing JAX arrays with NumPy arrays or lists raises ``TypeError`` naming
    the arguments of each kind (POT refuses mixed backends too); a concrete
    array that is not on the CPU raises ``NotImplementedError``. ``None`` is
    ignored.
    """
    arrays = framework_arguments(named, is_jax_array, "JAX array", "JAX arrays (jax.numpy.asarray)")
    if not arrays:
        return None
    for name in arrays:
        x = named[name]
        if _is_tracer(x):
            continue
        devices = {d.platform for d in x.devices()}
        if devices != {"cpu"}:
            raise NotImplementedError(f"{name} is a JAX array on {', '.join(sorted(devices))}: only CPU arrays "
                                      "are supported, there is no GPU path for JAX arrays (move it with "
                                      "jax.device_put(x, jax.devices('cpu')[0]); for the GPU, pass CuPy arrays)")
    return named[arrays[0]]


def _refuse_traced(arguments, names):
    """``TypeError`` for a traced value outside the array arguments ``names``: the
    solver needs it as a number before it runs (``reg``, ``warm_start``...)."""
    for key, value in arguments.items():
        if key in names:
            continue
        items = value.items() if isinstance(value, dict) else \
            ((f"{key}[{i}]", v) for i, v in enumerate(value)) if isinstance(value, (tuple, list)) else ((key, value),)
        for label, v in items:
            if is_jax_array(v) and _is_tracer(v):
                raise TypeError(f"{label} is a traced JAX value: only {', '.join(names)} may be traced (jax.jit, "
                                f"jax.grad, jax.vmap); give {label} as a number or a concrete array "
                                "(jax.jit's static_argnames for a scalar)")


def to_jax(x, like):
    """``x`` with its NumPy arrays and scalars as JAX arrays.

    Arrays keep their dtype where JAX allows (without ``jax_enable_x64``,
    float64 becomes float32, JAX's own rule); Python floats become scalars of
    ``like``'s floating dtype; tuples, lists, dicts and the number fields of
    an :class:`~fastsinkhorn.core.result.OTResult` are converted inside;
    anything else (ints, strings, sparse matrices, lazy plans) is returned as
    it is.
    """
    import jax.numpy as jnp

    from .jax_shapes import real_dtype

    def leaf(x):
        if isinstance(x, np.ndarray) and x.dtype.kind in "fciub":
            return jnp.asarray(x)
        if isinstance(x, np.generic) and x.dtype.kind in "fc":
            return jnp.asarray(x)
        if isinstance(x, float):  # a value returned as a Python float (emd2's cost): POT's, an array
            return jnp.asarray(x, dtype=real_dtype(like.dtype))
        return x

    return map_result(x, leaf)


def via_jax(function, arguments, names, grad=None):
    """Run ``function`` (a public function given JAX arrays) on the host.

    ``arguments``: the function's arguments by name (its ``locals()`` at
    entry); ``names``: those that may be arrays (all of them JAX arrays, see
    :func:`check_jax_arguments`); ``grad``: the function's gradient rule
    (:data:`~fastsinkhorn.core.autodiff.RULES`), or ``None`` if it has none.
    Concrete arrays: the result is converted by :func:`to_jax`. Traced
    arrays: :func:`~fastsinkhorn.core.jax_gradients.traced_call`.
    """
    caller = sys._getframe(3)  # frames: via_jax, via_framework, the public function, its caller
    where = (caller.f_code.co_filename, caller.f_lineno, caller.f_globals)
    arguments = dict(arguments)
    named = {name: arguments.get(name) for name in names}
    like = check_jax_arguments(named)
    _refuse_traced(arguments, names)
    arrays = {name: x for name, x in named.items() if x is not None}
    if any(_is_tracer(x) for x in arrays.values()):
        from .jax_gradients import traced_call

        return traced_call(function, arguments, tuple(arrays), grad,
                           lambda run, backward: _caller_warnings(run, where, backward))
    arguments.update({name: np.asarray(x) for name, x in arrays.items()})
    return _caller_warnings(lambda: to_jax(bind(function, arguments)(), like), where)


def _caller_warnings(run, where, backward=False):
    """``run()``, its warnings re-issued: those that the public function aimed at its
    caller (the frame of :func:`~.derivative.bind`'s ``call``) at ``where``, the line
    that called it (``(filename, lineno, globals)``), the others where they arose.
    ``backward``: the backward pass re-runs the solve, whose warnings the forward
    pass has issued: only the gradient rule's own are re-issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run()
    filename, lineno, module_globals = where
    for w in caught:
        if backward and w.filename != autodiff.__file__:
            continue
        if w.filename == _derivative.__file__ or backward:
            warnings.warn_explicit(w.message, w.category, filename, lineno, module=module_globals.get("__name__"),
                                   registry=module_globals.setdefault("__warningregistry__", {}))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return out
