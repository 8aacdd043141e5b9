"""PyTorch tensors in, PyTorch tensors out: the torch side of :mod:`fastsinkhorn.core.frameworks`.

The solvers compute on NumPy (or CuPy) arrays. A public function whose
arguments include ``torch.Tensor`` arguments is run by :func:`via_torch`:
CPU tensors are viewed as NumPy arrays without a copy (``t.detach().numpy()``
shares the tensor's memory), CUDA tensors as CuPy arrays through DLPack
(again shared; the solve runs on the device, on the caller's current torch
stream), the function runs on those, and its arrays come back as tensors
(``torch.from_numpy`` / ``torch.from_dlpack``: no copy) of the input's
dtype, on its device. CUDA tensors have no gradients yet (the pullbacks
compute on the host): one that requires a gradient raises
``NotImplementedError``. Gradients are the business of the function's gradient rule
(:data:`fastsinkhorn.core.autodiff.RULES`), whose pullback
:func:`with_pullback` wraps in one ``torch.autograd.Function``; a function
without a rule refuses inputs that require a gradient rather than return a
result without one.

PyTorch is imported only once a tensor has been seen: a tensor is
recognised by the module of its type, so ``import fastsinkhorn`` and every
NumPy call stay free of it.
"""

import functools
import os
import sys
import warnings

import numpy as np

from . import derivative as _derivative
from .arrays import framework_arguments, is_cupy_array
from .derivative import bind, get_path, map_result, replace_path


def is_torch_tensor(x):
    """True for a ``torch.Tensor`` (checked by module name: PyTorch is never imported)."""
    return type(x).__module__.split(".")[0] == "torch"


def torch_module():
    """The ``torch`` module (only called once a tensor has been seen, so it is loaded)."""
    import torch

    return torch


def check_torch_arguments(named):
    """The first tensor among ``named`` (name -> value), or ``None`` if there is none.

    Mixing tensors with NumPy arrays or lists raises ``TypeError`` naming the
    arguments of each kind (POT refuses mixed backends too); a tensor that is
    not on the CPU raises ``NotImplementedError``. ``None`` and empty lists
    (POT's uniform weights, ``ot.emd2([], [], M)``) are ignored.
    """
    tensors = framework_arguments(named, is_torch_tensor, "torch tensor", "tensors")
    if not tensors:
        return None
    torch = torch_module()
    devices = {named[name].device for name in tensors}
    if len(devices) > 1:
        raise ValueError("the tensors are on different devices: "
                         + ", ".join(f"{name} on {named[name].device}" for name in tensors))
    for name in tensors:
        device = named[name].device
        if device.type not in ("cpu", "cuda"):
            raise NotImplementedError(f"{name} is a torch tensor on {device}: only CPU and CUDA tensors are "
                                      "supported")
        if named[name].dtype == torch.bfloat16:  # NumPy has no bfloat16: no view to compute on
            raise TypeError(f"{name} is a torch.bfloat16 tensor, which NumPy (and so this solver) cannot "
                            f"read: pass {name}.float() or {name}.double()")
        if named[name].layout != torch.strided:  # as for a SciPy sparse M
            raise NotImplementedError(f"{name} is a sparse torch tensor ({named[name].layout}): a sparse "
                                      f"{name} is not supported: pass a dense one (Tensor.to_dense())")
    return named[tensors[0]]


def to_host(t):
    """A NumPy view of the CPU tensor ``t`` (no copy, no graph)."""
    return t.detach().resolve_conj().resolve_neg().numpy()


def to_solver_array(t):
    """What the solvers compute on for the tensor ``t``: a NumPy view (CPU) or
    a CuPy view through DLPack (CUDA), no copy, no graph."""
    if t.device.type == "cpu":
        return to_host(t)
    from ..backends._gpu import _import_cupy

    cupy = _import_cupy()
    return cupy.from_dlpack(t.detach().resolve_conj().resolve_neg())


def _on_device_of(like, run):
    """``run()``, on ``like``'s CUDA device and torch's current stream there
    (CuPy's kernels then queue behind the caller's torch work), or as it is
    for a CPU tensor."""
    if like.device.type != "cuda":
        return run()
    import cupy

    torch = torch_module()
    stream = torch.cuda.current_stream(like.device)
    with cupy.cuda.Device(like.device.index), cupy.cuda.ExternalStream(stream.cuda_stream):
        return run()


def needs_grad(tensors):
    """Whether autograd is on and any of ``tensors`` requires a gradient."""
    torch = torch_module()
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def to_torch(x, like):
    """``x`` with its NumPy arrays and scalars as tensors on ``like``'s device.

    Arrays keep their dtype (the solvers return the input's) and are shared,
    not copied, where NumPy's layout allows; Python floats become scalars of
    ``like``'s dtype; tuples, lists, dicts and the
    number fields of an :class:`OTResult` are converted inside; anything else
    (ints, strings, sparse matrices, lazy plans) is returned as it is.
    """
    torch = torch_module()

    def leaf(x):
        if is_cupy_array(x) and hasattr(x, "__dlpack__"):  # a CUDA result
            return torch.from_dlpack(x)
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in "fciub":
                return x
            if not x.flags.writeable or any(s < 0 for s in x.strides):
                x = np.array(x)  # torch.from_numpy needs a writable array with positive strides
            return torch.from_numpy(x).to(like.device)
        if isinstance(x, np.generic) and x.dtype.kind in "fc":
            return torch.from_numpy(np.asarray(x).copy()).to(like.device)
        if isinstance(x, float):  # a value returned as a Python float (emd2's cost): POT's, a tensor
            return torch.tensor(x, dtype=like.dtype, device=like.device)
        return x

    return map_result(x, leaf)


def via_torch(function, arguments, names, grad=None):
    """:func:`_via_torch`, opaque to ``torch.compile``: Dynamo does not trace
    the solver's Python (a graph break, then one autograd node), so what it
    compiles around the call never depends on the solver's code paths."""
    global _OPAQUE_VIA_TORCH
    if _OPAQUE_VIA_TORCH is None:  # (not functools.cache: Dynamo would trace into the cache)
        _OPAQUE_VIA_TORCH = torch_module().compiler.disable(_via_torch)
    return _OPAQUE_VIA_TORCH(function, arguments, names, grad)


_OPAQUE_VIA_TORCH = None


def _via_torch(function, arguments, names, grad=None):
    """Run ``function`` (a public function given tensors) on NumPy views of them.

    ``arguments``: the function's arguments by name (its ``locals()`` at
    entry); ``names``: those that may be tensors (all of them tensors, see
    :func:`check_torch_arguments`). The result is converted by
    :func:`to_torch`. If autograd is on and a tensor requires a gradient,
    the gradient rule ``grad(call, wanted)`` runs the function instead
    (``call(**changes)`` runs it on the NumPy views, with arguments changed
    as given, and ``call.arguments`` holds the arguments; ``wanted``: the
    names of the tensors that require a gradient) and its
    :class:`~fastsinkhorn.core.derivative.Derivative` becomes the result
    (:func:`with_pullback`); with no ``grad``, the call raises
    ``NotImplementedError``: never a result silently without its gradient.
    Warnings meant for the caller are re-issued at the caller's line.
    """
    arguments = dict(arguments)
    named = {name: arguments.get(name) for name in names}
    like = check_torch_arguments(named)
    tensors = {name: x for name, x in named.items() if x is not None and is_torch_tensor(x)}
    arguments.update({name: to_solver_array(t) for name, t in tensors.items()})
    call = bind(function, arguments)
    if needs_grad(tensors.values()):
        if like.device.type == "cuda":
            wanting = [n for n, t in tensors.items() if t.requires_grad]
            raise NotImplementedError(
                f"{function.__name__}: {', '.join(wanting)} are CUDA tensors that require a gradient; "
                "gradients of CUDA tensors are not implemented yet (their pullbacks run on the host): "
                "detach them, or move them to the CPU")
        if grad is None:
            wanting = [n for n, t in tensors.items() if t.requires_grad]
            raise NotImplementedError(
                f"{function.__name__}: {', '.join(wanting)} require a gradient, which "
                f"{function.__name__} does not provide yet; detach them (or use torch.no_grad())")
        wanted = tuple(n for n, t in tensors.items() if t.requires_grad and t.numel() > 0)
        return _caller_warnings(lambda: with_pullback(grad(call, wanted), tensors, like))
    return _caller_warnings(lambda: _on_device_of(like, lambda: to_torch(call(), like)))


@functools.cache
def _pullback_function():
    """The ``torch.autograd.Function`` whose outputs are a rule's differentiable
    arrays and whose backward is the rule's pullback (solver work, not traced)."""
    torch = torch_module()

    class Pullback(torch.autograd.Function):
        @staticmethod
        def forward(ctx, derivative, like, *inputs):
            ctx.derivative, ctx.inputs = derivative, inputs
            ctx.set_materialize_grads(False)  # an unused output's cotangent stays None: no work for it
            return tuple(_output_tensor(get_path(derivative.result, p), like) for p in derivative.outputs)

        @staticmethod
        def backward(ctx, *cotangents):
            cotangents = [None if c is None else to_host(c).astype(np.float64) for c in cotangents]
            gradients = ctx.derivative.pullback(cotangents)
            return (None, None, *(torch.as_tensor(np.asarray(g), dtype=t.dtype, device=t.device)
                                  for g, t in zip(gradients, ctx.inputs)))

    return Pullback


def _output_tensor(x, like):
    """A new tensor holding the output ``x`` (an autograd output must own its storage)."""
    torch = torch_module()
    t = to_torch(x, like)
    return t.clone() if isinstance(t, torch.Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)


def with_pullback(derivative, tensors, like):
    """The result of ``derivative`` as tensors, its differentiable arrays those of
    one autograd node over the input ``tensors`` that want gradients."""
    out = to_torch(derivative.result, like)
    if not derivative.outputs:
        return out
    inputs = [tensors[name] for name in derivative.inputs]
    differentiable = _pullback_function().apply(derivative, like, *inputs)
    for path, tensor in zip(derivative.outputs, differentiable):
        out = replace_path(out, path, tensor)
    return out


def _caller_warnings(run):
    """``run()``, its warnings re-issued: those that the inner call aimed at its
    caller (the frame of :func:`~.derivative.bind`'s ``call``) at the line that called
    the public function."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run()
    for w in caught:
        if w.filename == _derivative.__file__:
            caller = _first_frame_outside()
            warnings.warn_explicit(w.message, w.category, caller.f_code.co_filename, caller.f_lineno,
                                   module=caller.f_globals.get("__name__"),
                                   registry=caller.f_globals.setdefault("__warningregistry__", {}))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return out


def _first_frame_outside():
    """The innermost frame that is neither fastsinkhorn's nor torch's: the
    line that called the public function (``torch.compile`` may wrap it)."""
    inside = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
              os.path.dirname(os.path.abspath(torch_module().__file__)))
    frame = sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame = frame.f_back
    return frame
