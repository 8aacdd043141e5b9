"""What a gradient rule hands a framework bridge: a result and its pullback.

A public function given arrays that need gradients (PyTorch tensors with
``requires_grad``, JAX arrays under ``jax.grad``) is run on NumPy arrays by
its framework's bridge, which cannot trace through the solver's iterations.
The function's gradient rule (:data:`fastsinkhorn.core.autodiff.RULES`)
runs it and returns a :class:`Derivative`: the NumPy result, where in it
the differentiable arrays are (paths), and the pullback taking their
cotangents to the inputs' gradients. The bridge turns the result into the
caller's framework and the pullback into the framework's own custom
gradient (``torch.autograd.Function``, ``jax.custom_vjp``): one rule per
function serves every framework.

A *path* locates an array in a result: ``()`` is the result itself,
``("value",)`` an attribute of an :class:`~fastsinkhorn.core.result.OTResult`,
``(0,)`` an item of a tuple or list, ``("potentials", 1)`` an item of an
attribute, ``("u",)`` also a key of a dict.
"""

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .result import OTResult

#: The fields of an :class:`OTResult` that hold the caller's numbers (converted by the bridges).
RESULT_ARRAYS = ("plan", "potentials", "value", "value_linear", "marginals")


@dataclass
class Derivative:
    """A function's NumPy result with the pullback of its differentiable arrays.

    Attributes
    ----------
    result : object
        What the function returns, computed on NumPy arrays.
    outputs : tuple of paths
        Where the differentiable arrays are in ``result`` (see the module).
    inputs : tuple of str
        The names of the arguments that get gradients, in the order of
        ``pullback``'s return.
    pullback : callable
        ``pullback(cotangents) -> tuple of arrays``: ``cotangents`` has one
        entry per output (a float64 NumPy array of the output's shape, or
        ``None`` for an output the loss does not use); the return has one
        gradient per input (NumPy, the input's shape).
    """

    result: Any
    outputs: tuple
    inputs: tuple
    pullback: Callable


def get_path(result, path):
    """The array at ``path`` in ``result``."""
    for key in path:
        result = result[key] if isinstance(key, int) or isinstance(result, dict) else getattr(result, key)
    return result


def replace_path(result, path, value):
    """``result`` with the array at ``path`` replaced by ``value`` (containers are
    copied, never modified: the NumPy result may be shared with the caller)."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(result, dict):
        return {**result, key: replace_path(result[key], rest, value)}
    if isinstance(result, (tuple, list)):
        items = list(result)
        items[key] = replace_path(items[key], rest, value)
        return type(result)(items)
    return dataclasses.replace(result, **{key: replace_path(getattr(result, key), rest, value)})


def bind(function, arguments):
    """``call(**changes)``: the public ``function`` run on ``arguments``.

    ``arguments``: its arguments by name (its ``locals()`` at entry, NumPy
    arrays in place of the caller's); ``changes`` update them (a rule's
    ``call(log=True)``) and stay; ``call.arguments`` is that dictionary, the
    one a rule reads. Each parameter is passed as its kind requires
    (``**options`` spread, positional-only by position).
    """
    parameters = inspect.signature(function).parameters

    def call(**changes):
        arguments.update(changes)
        args, kwargs = [], {}
        for name, p in parameters.items():
            if p.kind is p.VAR_KEYWORD:
                kwargs.update(arguments[name])
            elif p.kind is p.POSITIONAL_ONLY:
                args.append(arguments[name])
            else:
                kwargs[name] = arguments[name]
        return function(*args, **kwargs)

    call.arguments = arguments
    return call


def map_result(x, leaf):
    """``x`` with ``leaf`` applied to what it holds: inside tuples, lists,
    dicts and the :data:`RESULT_ARRAYS` fields of an :class:`OTResult`
    (the containers are copied), to ``x`` itself otherwise."""
    if isinstance(x, tuple):
        return tuple(map_result(v, leaf) for v in x)
    if isinstance(x, list):
        return [map_result(v, leaf) for v in x]
    if isinstance(x, dict):
        return {k: map_result(v, leaf) for k, v in x.items()}
    if isinstance(x, OTResult):
        return dataclasses.replace(x, **{f: map_result(getattr(x, f), leaf) for f in RESULT_ARRAYS})
    return leaf(x)
