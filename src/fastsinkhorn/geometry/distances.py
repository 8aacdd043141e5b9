"""Pairwise distances between two samples: ``dist``, POT's ``ot.dist``.

A cost built from coordinates, the same everywhere it is needed: the
``ot.dist``/``ot.utils.dist`` drop-ins and :func:`fastsinkhorn.solve_sample`.
"""

import numpy as np

from ..core.arrays import array_library, library_module, to_numpy
from ..core.frameworks import has_framework_array, via_framework


def dist(x1, x2=None, metric="sqeuclidean", p=2, w=None, backend="auto", nx=None, use_tensor=False):
    """Pairwise distance matrix, a drop-in for ``ot.dist``.

    Parameters
    ----------
    x1 : array_like (n1, d)
    x2 : array_like (n2, d), optional
        Defaults to ``x1``.
    metric : str or callable
        ``"sqeuclidean"`` (default) and ``"euclidean"`` are computed with the
        input's array library (CuPy stays on the GPU); other metrics, and
        these two with weights ``w``, go through
        :func:`scipy.spatial.distance.cdist` with ``p`` and ``w``.
    p : float
        Order of the Minkowski metrics; the other metrics ignore it, as POT's.
    w : array_like (d,), optional
        Weights of the coordinates, for every metric ``cdist`` weighs (POT's
        own formulas of ``"sqeuclidean"``, ``"euclidean"``, ``"cityblock"``,
        ``"cosine"`` and ``"correlation"`` drop them).
    backend : {"auto", "scipy"}
        ``"scipy"`` computes every metric with ``cdist`` on the host, as POT.
    nx : POT backend, optional
        Accepted when it names the input's array library (``nx.__name__`` is
        ``"numpy"`` or ``"cupy"``); other backends raise ``NotImplementedError``.
    use_tensor : bool
        POT's memory/speed trade-off for ``"cityblock"`` and ``"minkowski"``;
        the values do not depend on it (we never build the 3-D tensor).

    Returns
    -------
    M : array (n1, n2)

    Examples
    --------
    >>> import fastsinkhorn as ot
    >>> ot.dist([[0.0, 0.0], [1.0, 1.0]]).tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    if has_framework_array(x1, x2, w):  # torch/JAX: run on NumPy views of them
        return via_framework(dist, locals(), ("x1", "x2", "w"), "dist")
    same = x2 is None or x2 is x1  # POT: then the diagonal is exactly 0
    library = array_library(x1=x1, x2=x2)
    if backend not in ("auto", "scipy"):
        raise NotImplementedError(f"backend={backend!r}: only 'auto' and 'scipy' are supported")
    if nx is not None and getattr(nx, "__name__", None) != library:
        raise NotImplementedError(f"nx={nx!r}: only the input's own array library ({library}) is supported")
    xp = library_module(library)
    x1 = xp.asarray(x1)
    x1 = x1.astype(np.float64) if x1.dtype.kind != "f" else x1
    x2 = x1 if same else xp.asarray(x2, dtype=x1.dtype)
    if metric in ("sqeuclidean", "euclidean") and backend == "auto" and w is None:
        sq1, sq2 = (x1 * x1).sum(axis=1), (x2 * x2).sum(axis=1)
        D = xp.maximum(sq1[:, None] + sq2[None, :] - 2 * (x1 @ x2.T), 0)
        if same:
            xp.fill_diagonal(D, 0)
        return D if metric == "sqeuclidean" else xp.sqrt(D)
    from scipy.spatial.distance import cdist

    host = [to_numpy(x) for x in (x1, x2)]
    extra = {"p": p} if isinstance(metric, str) and metric.endswith("minkowski") else {}
    if w is not None:
        extra["w"] = w
    D = xp.asarray(cdist(*host, metric=metric, **extra))
    # POT computes these metrics in the input's dtype, and the others (and
    # backend="scipy") with cdist, in float64
    return D.astype(x1.dtype) if backend == "auto" and metric in _METRICS_IN_INPUT_DTYPE else D


#: ``dist`` metrics POT computes with the input's array library (so in its dtype).
_METRICS_IN_INPUT_DTYPE = ("sqeuclidean", "euclidean", "cityblock", "minkowski", "cosine", "correlation")
