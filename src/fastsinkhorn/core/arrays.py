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
