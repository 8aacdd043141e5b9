"""Which array library holds the caller's arrays, and its module: the one place that decides.

Every entry point asks this module, and no other, whether its arrays are
NumPy or CuPy (:func:`array_library`) and which module computes on them
(:func:`array_namespace`, :func:`library_module`). PyTorch tensors never
reach it: the public functions hand them to :mod:`fastsinkhorn.core.frameworks`,
which calls them again on NumPy views; JAX would plug in there too.
CuPy itself is detected by module name and imported only when its arrays
are seen, so NumPy-only installs never import it.
"""

import numpy as np


def is_cupy_array(x):
    """True for a ``cupy.ndarray`` (checked by module name: CuPy is never imported)."""
    return type(x).__module__.split(".")[0] == "cupy"


def array_library(**arrays):
    """Return ``"cupy"`` or ``"numpy"`` for the given named arguments.

    ``None`` and empty arguments are ignored. Mixing CuPy arrays with NumPy
    arrays (or lists) raises a ``TypeError`` that names the arguments of each kind.
    """
    kinds = {}
    for name, x in arrays.items():
        if x is None:
            continue
        kinds.setdefault("cupy" if is_cupy_array(x) else "numpy", []).append(name)
    if len(kinds) > 1:
        raise TypeError(
            "cannot mix CuPy and NumPy arrays: "
            f"{', '.join(kinds['cupy'])} on the GPU (CuPy), "
            f"{', '.join(kinds['numpy'])} on the host (NumPy/list)"
        )
    return next(iter(kinds), "numpy")


def library_module(library):
    """The array module named by :func:`array_library`: ``cupy`` (imported
    here, on first use) or ``numpy``."""
    if library == "cupy":
        import cupy

        return cupy
    return np


def array_namespace(*arrays, **named):
    """The array module (``numpy`` or ``cupy``) that computes on the given arrays.

    Named arguments are named in the ``TypeError`` that mixing CuPy and
    NumPy raises (see :func:`array_library`); positional ones as ``arg0``,
    ``arg1``... ``None`` is ignored (all ``None``: NumPy).
    """
    return library_module(array_library(**{f"arg{i}": x for i, x in enumerate(arrays)}, **named))


def to_numpy(x):
    """Host copy of ``x`` as a NumPy array (no-op for NumPy input)."""
    return x.get() if is_cupy_array(x) else np.asarray(x)


def _is_are(names, what=""):
    """``"M is a JAX array"`` / ``"M, a are JAX arrays"`` (``what`` empty: ``"b is"``)."""
    if len(names) == 1:
        return f"{names[0]} is{' a ' + what if what else ''}"
    return f"{', '.join(names)} are{' ' + what + 's' if what else ''}"


def framework_arguments(named, is_array, kind, give):
    """The names of the arguments among ``named`` (name -> value) that
    ``is_array`` recognises, ``TypeError`` if other arrays or lists come with
    them (POT refuses mixed backends too); ``None`` and empty lists (POT's
    uniform weights, ``ot.emd2([], [], M)``) are ignored.

    ``kind``: one such array in words (``"JAX array"``); ``give``: what to
    pass instead (``"JAX arrays (jax.numpy.asarray)"``).
    """
    found = [name for name, x in named.items() if x is not None and is_array(x)]
    others = [name for name, x in named.items() if x is not None and not is_array(x) and not _empty(x)]
    if found and others:
        raise TypeError(f"cannot mix {kind}s and other arrays: {_is_are(found, kind)}, {_is_are(others)} not "
                        f"(NumPy arrays or lists); give all as {give}")
    return found


def _empty(x):
    """An empty list or tuple: POT's "uniform weights", no array."""
    return isinstance(x, (list, tuple)) and len(x) == 0
