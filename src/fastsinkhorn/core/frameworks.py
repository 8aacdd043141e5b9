"""Arrays of other frameworks at the public functions: which bridge runs the call.

The solvers compute on NumPy (or CuPy) arrays. A public function first asks
:func:`has_framework_array` whether any argument is a PyTorch tensor or a JAX
array; if so, it hands its arguments to :func:`via_framework`, which sends
the call to the framework's bridge (:mod:`.torch_bridge`,
:mod:`.jax_bridge`): the bridge runs the function on NumPy views of the
arrays, returns the results in the caller's framework, and attaches the
gradients of the function's gradient rule (``gradients``: its name in
:data:`fastsinkhorn.core.autodiff.RULES`, whose pullback each bridge wraps
in its framework's custom gradient; a function without a rule refuses
inputs that require a gradient rather than return a result without one).

Neither framework is imported here: an array is recognised by the module of
its type, so ``import fastsinkhorn`` and every NumPy call stay free of them.
"""

#: The top-level module of each framework's array types -> its name in messages.
_FRAMEWORKS = {"torch": "PyTorch", "jax": "JAX", "jaxlib": "JAX"}


def framework_of(x):
    """``"PyTorch"``, ``"JAX"`` or ``None`` (NumPy, CuPy, lists, scalars, ...) for ``x``.

    A JAX tracer (inside ``jax.jit`` or ``jax.grad``) counts as a JAX array.
    """
    return _FRAMEWORKS.get(type(x).__module__.split(".")[0])


def has_framework_array(*arrays):
    """Whether any of ``arrays`` is a PyTorch tensor or a JAX array: the public
    functions' first check, so that calls without them run exactly as before
    (no extra frame between the caller and the function's warnings)."""
    return any(framework_of(x) is not None for x in arrays)


def via_framework(function, arguments, names, gradients=None):
    """Run the public ``function`` given arrays of a framework, through its bridge.

    ``arguments``: the function's arguments by name (its ``locals()`` at
    entry); ``names``: those that may be arrays; ``gradients``: the name of
    the function's gradient rule, or ``None`` if it has none. Arrays of two
    frameworks in one call raise ``TypeError`` naming the arguments.
    """
    found = {}
    for name in names:
        kind = framework_of(arguments.get(name))
        if kind is not None:
            found.setdefault(kind, []).append(name)
    if len(found) > 1:
        raise TypeError("cannot mix arrays of different frameworks in one call: "
                        + "; ".join(f"{', '.join(n)} {'is' if len(n) == 1 else 'are'} {k}"
                                    for k, n in found.items()))
    from .autodiff import RULES

    rule = RULES.get(gradients) if gradients else None
    if "JAX" in found:
        from .jax_bridge import via_jax

        return via_jax(function, arguments, names, rule)
    from .torch_bridge import via_torch

    return via_torch(function, arguments, names, rule)
