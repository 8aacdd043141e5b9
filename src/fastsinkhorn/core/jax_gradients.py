"""Traced JAX arrays: the solve as a host callback, its gradient the rule's pullback.

Inside ``jax.jit``, ``jax.grad`` or ``jax.vmap`` a public function's JAX
arrays are tracers, which the NumPy solvers cannot read. :func:`traced_call`
runs the function as one ``jax.custom_vjp`` over those arrays:

* its value: the function on the host, through ``jax.pure_callback`` (its
  arrays' shapes and dtypes from :mod:`.jax_shapes`; under ``jax.vmap``
  one call per mapped problem, ``vmap_method="sequential"``);
* its backward pass: the function's gradient rule
  (:data:`fastsinkhorn.core.autodiff.RULES`) run on the host again, on the
  same inputs, and its pullback applied to the cotangents of the outputs
  the loss uses (JAX's symbolic zeros: an unused output costs nothing). The
  solve is deterministic, so the rule differentiates the plan the forward
  pass returned; the price is a second solve. Only the inputs JAX
  differentiates (``perturbed``) get a gradient.

Where the arrays are concrete (``jax.grad`` without ``jit`` hands
``custom_vjp`` concrete values) the host function is called directly, so
its exceptions reach the caller as they are; under ``jit`` they surface as
JAX's runtime error carrying the message.

Refused, never a silent zero gradient: differentiating a function without a
rule (``NotImplementedError`` at trace time, naming the inputs), and a loss
of an output the rule does not differentiate (``NotImplementedError`` in
the backward pass, naming the output). ``solve(..., grad="detach")`` is
the one way to ask for none: its outputs are constants.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .derivative import bind, get_path
from .jax_shapes import array_leaves, output_spec, replace_leaves


def traced_call(function, arguments, inputs, rule, reissue):
    """``function``'s result, its arrays JAX arrays of one ``custom_vjp`` over ``inputs``.

    Parameters
    ----------
    function : callable
        The public function.
    arguments : dict
        Its arguments by name; the JAX arrays (some traced) at ``inputs``.
    inputs : tuple of str
        The names of its JAX array arguments.
    rule : callable or None
        Its gradient rule ``rule(call, wanted)``, or ``None`` if it has none.
    reissue : callable
        ``reissue(run, backward)``: ``run()`` with its warnings re-issued at
        the caller's line (``backward``: only the rule's own, the forward
        pass having issued the solver's).
    """
    name = function.__name__
    template = output_spec(function, arguments)
    leaves = array_leaves(template)
    paths, specs = tuple(p for p, _ in leaves), tuple(s for _, s in leaves)
    fixed = {k: v for k, v in arguments.items() if k not in inputs}
    values = tuple(arguments[n] for n in inputs)

    def on_host(arrays):
        return bind(function, {**fixed, **dict(zip(inputs, arrays))})

    def forward_host(*arrays):
        result = reissue(on_host(arrays), False)
        return tuple(_as_spec(get_path(result, p), s, name, p) for p, s in zip(paths, specs))

    wanted = []  # set by the forward pass of a differentiation: JAX's perturbed inputs

    @jax.custom_vjp
    def solved(*arrays):
        return host_call(forward_host, specs, arrays)

    def forward(*primals):
        perturbed = tuple(n for n, p in zip(inputs, primals) if p.perturbed)
        if perturbed and rule is None:
            raise NotImplementedError(f"{name}: {', '.join(perturbed)} {'is' if len(perturbed) == 1 else 'are'} "
                                      f"differentiated, and {name} provides no gradient; wrap "
                                      f"{'it' if len(perturbed) == 1 else 'them'} in jax.lax.stop_gradient")
        wanted[:] = () if arguments.get("grad") == "detach" else perturbed
        arrays = tuple(p.value for p in primals)
        return solved(*arrays), arrays

    def backward(arrays, cotangents):
        used = [i for i, c in enumerate(cotangents) if not _is_zero(c)]
        want = tuple(wanted)
        if not want or not used:
            return (None,) * len(inputs)

        def backward_host(*args):
            derivative = reissue(lambda: rule(on_host(args[:len(inputs)]), want), True)
            given = {}
            for i, c in zip(used, args[len(inputs):]):
                c = np.asarray(c, dtype=np.float64)
                if np.any(c):  # an all-zero cotangent pulls back to zero: no work for it
                    given[paths[i]] = c
            for path in given:
                if path not in derivative.outputs:
                    raise NotImplementedError(f"{name}: {_label(path)} has no gradient here (differentiable: "
                                              f"{', '.join(_label(p) for p in derivative.outputs) or 'none'}); "
                                              f"wrap it in jax.lax.stop_gradient")
            gradients = dict(zip(derivative.inputs, derivative.pullback([given.get(p) for p in derivative.outputs])))
            return tuple(np.asarray(gradients[n], dtype=s.dtype).reshape(s.shape) for n, s in zip(want, grad_specs))

        grad_specs = tuple(jax.ShapeDtypeStruct(np.shape(a), a.dtype) for n, a in zip(inputs, arrays) if n in want)
        gradients = dict(zip(want, host_call(backward_host, grad_specs, (*arrays, *(cotangents[i] for i in used)))))
        return tuple(gradients.get(n) for n in inputs)

    solved.defvjp(forward, backward, symbolic_zeros=True)
    if arguments.get("grad") == "detach":  # no gradients asked for: the outputs are constants
        values = tuple(jax.lax.stop_gradient(v) for v in values)
    return replace_leaves(template, paths, solved(*values))


def host_call(function, specs, arrays):
    """``function(*arrays)`` on NumPy arrays, its results JAX arrays of ``specs``:
    directly for concrete ``arrays``, else through ``jax.pure_callback``."""
    def on_numpy(*xs):  # a callback may be handed JAX arrays: the solvers take NumPy's
        return function(*(np.asarray(x) for x in xs))

    if any(isinstance(x, jax.core.Tracer) for x in arrays):
        return jax.pure_callback(on_numpy, specs, *arrays, vmap_method="sequential")
    return tuple(jnp.asarray(x) for x in on_numpy(*arrays))


def _as_spec(x, spec, name, path):
    """The output ``x`` as a NumPy array of ``spec``'s dtype (a sparse plan made dense)."""
    if hasattr(x, "toarray"):
        x = x.toarray()
    x = np.asarray(x, dtype=spec.dtype)
    if x.shape != spec.shape:  # the template and the solver disagree: say where
        raise RuntimeError(f"{name}: {_label(path)} has shape {x.shape}, its JAX template {spec.shape}")
    return x


def _is_zero(cotangent):
    """Whether JAX says the cotangent is zero (symbolic, or of an integer output)."""
    return isinstance(cotangent, jax.custom_derivatives.SymbolicZero) or cotangent.dtype == jax.dtypes.float0


def _label(path):
    """``potentials[0]`` for the path ``("potentials", 0)``; ``the result`` for ``()``."""
    if not path:
        return "the result"
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")
