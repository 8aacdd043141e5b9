"""POT's ``ot.utils.unif``: the uniform histogram."""

import numpy as np

from ..core.arrays import is_cupy_array


def unif(n, type_as=None):
    """Uniform histogram of length ``n`` (entries ``1/n``), a drop-in for ``ot.unif``.

    Parameters
    ----------
    n : int
        Number of bins.
    type_as : array, optional
        A NumPy or CuPy array: the histogram is made by its library, in its
        dtype (as POT's). Default: a NumPy float64 array. Arrays of other
        libraries (PyTorch, JAX...) raise ``NotImplementedError``; anything
        else (a list, a scalar) raises ``ValueError``, as POT.

    Returns
    -------
    h : array (n,)

    Examples
    --------
    >>> import numpy as np, fastsinkhorn as ot
    >>> ot.unif(4).tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> ot.unif(2, type_as=np.zeros(1, np.float32)).dtype
    dtype('float32')
    """
    if type_as is None:
        return np.ones((n,)) / n
    xp = _library(type_as)
    return xp.ones((n,), dtype=type_as.dtype) / n


def _library(type_as):
    if isinstance(type_as, np.ndarray):
        return np
    if is_cupy_array(type_as):
        import cupy

        return cupy
    if hasattr(type_as, "shape") and hasattr(type_as, "dtype") and not isinstance(type_as, np.generic):
        raise NotImplementedError(f"type_as: only NumPy and CuPy arrays are supported, got "
                                  f"{type(type_as).__module__}.{type(type_as).__name__}")
    raise ValueError(f"type_as must be an array, got {type(type_as).__name__}")
