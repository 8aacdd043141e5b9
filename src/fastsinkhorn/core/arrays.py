"""Array-library detection without importing CuPy."""

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


def to_numpy(x):
    """Host copy of ``x`` as a NumPy array (no-op for NumPy input)."""
    return x.get() if is_cupy_array(x) else np.asarray(x)
