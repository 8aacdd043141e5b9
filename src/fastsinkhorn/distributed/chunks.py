"""Many independent problems as chunks of batched solves (the work of one task).

Plain NumPy and :func:`fastsinkhorn.solve`, no Dask: these functions are what
:mod:`fastsinkhorn.distributed` ships to its workers, and they can be called
in one process to get the same numbers. A chunk's problems of one shape are
stacked into one batch, whose kernels run each problem independently (a
problem gets the iterates it gets alone); the pairs of a tile of
:func:`~fastsinkhorn.distributed.pairwise` share one cost and are solved as a
batch on it (:mod:`fastsinkhorn.geometry.shared`: matrix-matrix passes).
Every problem stops at its own tolerance check.
"""

import warnings

import numpy as np

from ..core.arrays import to_numpy
from ..core.result import ConvergenceWarning
from ..core.stacking import split_batch
from ..solvers import solve

#: Problems of at most this many cost entries are solved as batches (one
#: ``solve`` call on a ``(B, n, m)`` cost); larger ones one by one: a batch
#: pays for small problems, whose per-call overhead it shares, and loses once a
#: problem's kernel no longer stays in the caches (a batch of 16 against one at
#: a time, per size: benchmarks/RESULTS.md section 10.2).
BATCH_MAX_ENTRIES = 256 * 256
#: A batch's cost array is kept below this size (the plans take as much again).
BATCH_MAX_BYTES = 64 * 2**20

LOSSES = ("linear", "entropic", "divergence")


def batch_limit(shape, itemsize=8):
    """How many problems of cost ``shape`` one batched ``solve`` call takes (1: solve one by one)."""
    entries = int(np.prod(shape))
    if entries > BATCH_MAX_ENTRIES:
        return 1
    return max(1, BATCH_MAX_BYTES // (entries * itemsize))


def _quiet_solve(M, a, b, reg, options):
    # non-convergence is reported per problem by the caller, not as a warning on a worker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return solve(M, a, b, reg=reg, **options)


def as_problem(item):
    """``(M, a, b)`` from a triple, a pair ``(M, a)``, ``(M,)`` or a bare cost ``M``
    (``None`` for an omitted mass: uniform)."""
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            raise TypeError(f"a problem must be (M,), (M, a) or (M, a, b), got a sequence of {len(item)}")
        return tuple(item) + (None,) * (3 - len(item))
    if item is None:
        raise TypeError("a problem must be a cost M or a tuple (M, a, b), got None")
    return item, None, None


def _groups(problems, limit):
    """Runs of consecutive dense 2-D problems of one shape and dtype, at most
    ``limit(shape)`` long, from ``problems``: pairs ``(index, (M, a, b))``."""
    run, key0 = [], None
    for k, (M, _, _) in problems:
        key = (M.shape, M.dtype) if isinstance(M, np.ndarray) and M.ndim == 2 else None
        if run and (key is None or key != key0 or len(run) >= limit(key[0])):
            yield run
            run = []
        if key is None:
            yield [k]
        else:
            run, key0 = run + [k], key
    if run:
        yield run


def solve_chunk(items, reg, options):
    """Solve a list of problems; return one :class:`OTResult` or exception each, in order.

    ``items`` are ``(M, a, b)`` triples (see :func:`as_problem`); ``options``
    go to :func:`~fastsinkhorn.solve`. With ``options["method"] == "sinkhorn"``,
    consecutive small problems of one shape (:func:`batch_limit`) are solved
    as one batch; a batch that fails is solved again one by one, so that each
    failure is the failing problem's own exception and the rest are results.
    """
    out, problems = [None] * len(items), []
    for k, item in enumerate(items):
        try:
            problems.append((k, as_problem(item)))
        except TypeError as exc:
            out[k] = exc
    by_index = dict(problems)
    limit = batch_limit if options.get("method") == "sinkhorn" else (lambda shape: 1)
    for group in _groups(problems, limit):
        if len(group) > 1:
            try:
                M = np.stack([by_index[k][0] for k in group])
                a, b = (_stack_masses([by_index[k][i] for k in group], M.shape[i]) for i in (1, 2))
                for k, res in zip(group, split_batch(_quiet_solve(M, a, b, reg, options))):
                    out[k] = res
                continue
            except (ValueError, TypeError):
                pass  # find which problem it was, below
        for k in group:
            try:
                out[k] = _quiet_solve(*by_index[k], reg, options)
            except Exception as exc:  # reported by index; the other problems go on
                out[k] = exc
    return out


def _stack_masses(ws, size):
    """Stacked masses of a group (uniform where omitted), for one batched solve."""
    return np.stack([np.full(size, 1.0 / size) if w is None or len(w) == 0 else np.asarray(w)
                     for w in ws])


def tiles(N, tile):
    """The tiles ``(i0, i1, j0, j1)`` of the upper triangle (``i0 <= j0``) of an N x N matrix."""
    starts = range(0, N, tile)
    return [(i, min(i + tile, N), j, min(j + tile, N)) for i in starts for j in starts if i <= j]


def tile_pairs(i0, i1, j0, j1):
    """The pairs ``(i, j)``, ``i <= j``, of a tile, row by row (global indices)."""
    i, j = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
    keep = i <= j
    return i[keep], j[keep]


def tile_values(cost, rows, cols, tile, reg, loss, options):
    """OT values of the pairs of one tile: ``(values, converged)``, arrays in :func:`tile_pairs` order.

    ``rows``, ``cols`` are the histograms ``tile`` spans (``distributions[i0:i1]``
    and ``distributions[j0:j1]``); ``loss`` picks ``value_linear``
    (``"linear"``) or ``value`` (``"entropic"``, ``"divergence"``).
    """
    i0, _, j0, _ = tile
    i, j = tile_pairs(*tile)
    a, b = rows[i - i0], cols[j - j0]
    field = "value_linear" if loss == "linear" else "value"
    # every pair of the tile in one solve on the one cost (a shared-cost batch:
    # Sinkhorn's passes are matrix-matrix products over the cost for all pairs;
    # SNS, where chosen, solves pair by pair on it)
    res = _quiet_solve(cost, a, b, reg, options) if len(i) > 1 else _quiet_solve(cost, a[0], b[0], reg, options)
    # host copies: a GPU solve's per-problem fields may be device arrays
    values = np.asarray(to_numpy(getattr(res, field)), dtype=np.float64).reshape(len(i))
    converged = np.asarray(to_numpy(res.converged), dtype=bool).reshape(len(i))
    return values, converged


def fill_symmetric(N, tile_list, outputs, dtype=np.float64):
    """The symmetric N x N matrix of the tiles' per-pair ``outputs`` (:func:`tile_pairs` order)."""
    V = np.empty((N, N), dtype=dtype)
    for tile, values in zip(tile_list, outputs):
        i, j = tile_pairs(*tile)
        V[i, j] = values
        V[j, i] = values
    return V


def debias(V):
    """The Sinkhorn divergence ``S_ij = V_ij - (V_ii + V_jj) / 2`` of a matrix of OT values."""
    d = np.diag(V).copy()
    S = V - (d[:, None] + d[None, :]) / 2
    np.fill_diagonal(S, 0.0)
    return S
