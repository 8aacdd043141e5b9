"""Dask scale-out: pairwise OT matrices and many problems over a cluster."""

import contextlib
import itertools
import math
import os
import warnings

try:
    import distributed
except ImportError as exc:  # the extra is missing
    raise ImportError('fastsinkhorn.distributed needs Dask: pip install "fastsinkhorn[dask]"') from exc
import dask
import numpy as np

from ..core.checks import check_positive_int
from ..core.result import ConvergenceWarning
from ..core.validation import MASS_SUM_RTOL, check_reg
from .chunks import LOSSES, debias, fill_symmetric, solve_chunk, tile_values, tiles

__all__ = ["pairwise", "map_solve", "ProblemErrors", "local_client"]

#: Tasks per worker thread that the default chunking aims for (load balance
#: against the scheduler's overhead of about a millisecond per task).
TASKS_PER_THREAD = 4
#: At most this many problems per task by default (the size of a task's data).
MAX_CHUNK = 256


class ProblemErrors(ValueError):
    """Some problems of :func:`map_solve` failed; the others were solved.

    Attributes
    ----------
    errors : dict
        Index of each failed problem -> its exception.
    results : list
        Every problem's :class:`~fastsinkhorn.OTResult`, ``None`` where it failed.
    """

    def __init__(self, errors, results):
        self.errors, self.results = errors, results
        shown = "; ".join(f"problem {k}: {type(e).__name__}: {e}" for k, e in list(errors.items())[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} of {len(results)} problems failed: {shown}{more}")


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: Environment of :func:`local_client`'s workers. One Numba thread each; and
#: glibc's allocator keeps freed buffers of up to 32 MB for reuse (Dask's
#: nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``, which hands every buffer back
#: to the kernel, so each solve's n x m buffers were faulted in and zeroed
#: again, a measurable part of a solve: benchmarks/RESULTS.md section 10.1b).
WORKER_ENV = {"NUMBA_NUM_THREADS": "1"}
#: Dask configuration of :func:`local_client`'s workers: the allocator's
#: settings (in the environment the worker process starts with: glibc reads
#: them once), and no statistical profiler (its sampling thread takes time
#: from the solves: benchmarks/RESULTS.md section 10.1b).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 32 << 20,
                 "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 256 << 20,
                 "distributed.worker.profile.enabled": False}


#: At most about this many tasks for one ``pairwise`` by default: the
#: scheduler's time grows with the number of tasks, and tiles of 256 pairs at
#: N = 10^5 would be 2 x 10^7 tasks, hours of scheduling where 10^5 tasks
#: take minutes (the per-task cost: benchmarks/RESULTS.md section 10.3).
MAX_TASKS = 100_000


def default_tile(N, threads):
    """``pairwise``'s default tile (rows of the matrix per task) for N distributions.

    About ``TASKS_PER_THREAD`` tasks per worker thread (blocks b with
    b (b + 1) / 2 >= TASKS_PER_THREAD * threads), of at most ``MAX_CHUNK``
    pairs each, unless that makes more than ``MAX_TASKS`` tasks: then larger
    tiles, so that there are about ``MAX_TASKS``.
    """
    blocks = math.ceil(math.sqrt(2 * TASKS_PER_THREAD * threads))
    tile = min(math.isqrt(MAX_CHUNK), max(1, math.ceil(N / blocks)))
    most_blocks = (math.isqrt(8 * MAX_TASKS + 1) - 1) // 2  # b (b + 1) / 2 <= MAX_TASKS
    return max(tile, math.ceil(N / most_blocks))


@contextlib.contextmanager
def local_client(n_workers=None):
    """A ``Client`` on a fresh ``LocalCluster``, both closed on exit.

    One worker process per core (``n_workers`` to override), one thread and
    one Numba thread each (workers sharing cores in Numba thread pools
    slow each other down), on the loopback interface, dashboard off; see
    :data:`WORKER_ENV` and :data:`WORKER_CONFIG` for the allocator and
    profiler settings (what they save: benchmarks/RESULTS.md section 10.1b).
    A script that uses it needs the ``if __name__ == "__main__":`` guard:
    the workers are started by ``multiprocessing``'s "spawn".

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; by default the cores this process may run on.

    Yields
    ------
    dask.distributed.Client
    """
    with dask.config.set(WORKER_CONFIG):
        cluster = distributed.LocalCluster(
            n_workers=check_positive_int(n_workers, "n_workers", allow_none=True) or _cores(),
            threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, env=WORKER_ENV,
            # its HTTP server (health, metrics) on a free port, not 8787 (taken: a warning)
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    with cluster, distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _connected(client):
    if client is None:
        with local_client() as own:
            yield own
    elif isinstance(client, distributed.Client):
        yield client
    else:
        raise TypeError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")


def _gather(client, futures, progress):
    if progress:
        bar = distributed.progress(futures)  # blocks in a console; a widget in Jupyter
        if bar is not None:
            from IPython.display import display

            display(bar)
    return client.gather(futures)


def _solve_options(options):
    for name in ("callback", "warm_start"):
        if name in options:
            raise TypeError(f"{name} cannot be given here: the solves run in other processes, "
                            "each on its own problem")
    return options


def _threads(client):
    return max(1, sum(client.nthreads().values()))


def _histograms(distributions):
    H = np.asarray(distributions)
    if H.dtype.kind not in "fiub":
        raise TypeError(f"distributions must hold real numbers, got dtype {H.dtype}")
    H = H.astype(np.float64)
    if H.ndim != 2 or 0 in H.shape:
        raise ValueError(f"distributions must have shape (N, n) with N, n >= 1, got {H.shape}")
    bad = ~np.isfinite(H).all(axis=1) | (H < 0).any(axis=1) | ~(H.sum(axis=1) > 0)
    if bad.any():
        raise ValueError(f"distributions[{int(np.argmax(bad))}] must be finite, non-negative "
                         "and of positive sum")
    s = H.sum(axis=1)
    unequal = np.abs(s - s[0]) > MASS_SUM_RTOL * np.maximum(s, s[0])  # solve()'s rule
    if unequal.any():
        i = int(np.argmax(unequal))
        raise ValueError(f"distributions must have equal sums: distributions[{i}] sums to "
                         f"{float(s[i])!r}, distributions[0] to {float(s[0])!r}")
    return H


def _symmetric_cost(cost, n):
    C = np.asarray(cost)
    if C.dtype.kind not in "fiub":
        raise TypeError(f"cost must hold real numbers, got dtype {C.dtype}")
    C = np.ascontiguousarray(C, dtype=np.float64)
    if C.shape != (n, n):
        raise ValueError(f"cost must have shape ({n}, {n}) to match distributions, got {C.shape}")
    if np.isnan(C).any() or (C == -np.inf).any():
        raise ValueError("cost must not contain NaN or -inf (+inf forbids an entry)")
    finite = np.isfinite(C)
    if not finite.any():
        raise ValueError("cost must have a finite entry")
    if not (np.array_equal(finite, finite.T)
            and np.allclose(C[finite], C.T[finite], rtol=1e-12, atol=1e-12 * float(np.abs(C[finite]).max()))):
        raise ValueError("cost must be symmetric (OT(a, b) = OT(b, a) is used to solve each pair once)")
    return C


def pairwise(distributions, reg, *, cost, loss="linear", client=None, tile=None, progress=False,
             method="sinkhorn", **options):
    r"""The N x N matrix of entropic OT values between N histograms, on a Dask cluster.

    Each of the ``N (N + 1) / 2`` pairs ``i <= j`` is solved once (the cost
    is symmetric); a task solves the pairs of one tile of the matrix
    (``tile`` rows by ``tile`` columns), in batched :func:`~fastsinkhorn.solve`
    calls.

    Parameters
    ----------
    distributions : array_like (N, n)
        Histograms on a common support of ``n`` points, with equal sums.
    reg : float
        Entropic regularization (> 0), in the units of ``cost``.
    cost : array_like (n, n)
        Symmetric ground cost between the support points (e.g.
        ``fastsinkhorn.dist(x, x)``).
    loss : {"linear", "entropic", "divergence"}
        ``"linear"``: ``<M, P>`` of the entropic plan (``value_linear``, POT's
        ``sinkhorn2``). ``"entropic"``: the entropic objective ``value``
        (POT's, ``<M, P> + reg KL(P | a b^T)``).
        ``"divergence"``: the debiased Sinkhorn divergence
        ``S(a, b) = OT(a, b) - (OT(a, a) + OT(b, b)) / 2`` with ``OT`` the
        entropic objective (Feydy et al. 2019; zero on the diagonal).
    client : dask.distributed.Client, optional
        The cluster to use; by default a ``LocalCluster`` sized to this
        machine, started and closed around the call.
    tile : int, optional
        Rows (and columns) of the matrix per task; by default
        :func:`default_tile` (about ``TASKS_PER_THREAD`` tasks per worker
        thread, of at most ``MAX_CHUNK`` pairs, and at most about
        ``MAX_TASKS`` tasks).
    progress : bool
        Show Dask's progress bar (``distributed.progress``).
    method : str
        Passed to :func:`~fastsinkhorn.solve`; only ``"sinkhorn"`` (the
        default) solves pairs in batches.
    **options
        Passed to :func:`~fastsinkhorn.solve` (``tol``, ``max_iter``, ...).

    Returns
    -------
    ndarray (N, N)
        Symmetric: entry ``(j, i)`` is the solve of ``(i, j)`` (Sinkhorn's
        two orders agree to within ``tol``). A ``ConvergenceWarning`` names
        the pairs that did not reach ``tol``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsinkhorn.distributed import local_client, pairwise
    >>> x = np.linspace(0, 1, 16)[:, None]
    >>> H = np.random.default_rng(0).random((4, 16)); H /= H.sum(1, keepdims=True)
    >>> with local_client(n_workers=1) as client:  # doctest: +SKIP
    ...     D = pairwise(H, 1e-2, cost=(x - x.T) ** 2, client=client, tol=1e-6)
    """
    reg = check_reg(reg)
    H = _histograms(distributions)
    C = _symmetric_cost(cost, H.shape[1])
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    tile = check_positive_int(tile, "tile", allow_none=True)
    options = {"method": method, **_solve_options(options)}
    N = len(H)
    with _connected(client) as client:
        if tile is None:
            tile = default_tile(N, _threads(client))
        # the cost and each block of tile rows are tasks of their own: in the graph once
        # (not once per tile), fetched by the workers that need them, recomputed if lost
        cost_future = client.submit(np.asarray, C, pure=False)
        blocks = {i0: client.submit(np.asarray, H[i0:i0 + tile], pure=False) for i0 in range(0, N, tile)}
        tile_list = tiles(N, tile)
        futures = [client.submit(tile_values, cost_future, blocks[i0], blocks[j0], (i0, i1, j0, j1),
                                 reg, loss, options, pure=False)
                   for i0, i1, j0, j1 in tile_list]
        outputs = _gather(client, futures, progress)
    V = fill_symmetric(N, tile_list, [v for v, _ in outputs])
    failed = np.triu(~fill_symmetric(N, tile_list, [c for _, c in outputs], dtype=bool))
    if failed.any():
        i, j = np.nonzero(failed)
        first = list(zip(i[:3].tolist(), j[:3].tolist()))
        warnings.warn(f"{len(i)} of {N * (N + 1) // 2} pairs did not reach tol, e.g. pairs {first}; "
                      "increase max_iter or reg", ConvergenceWarning, stacklevel=2)
    return debias(V) if loss == "divergence" else V


def map_solve(problems, *, reg, client=None, chunk_size=None, progress=False, errors="raise",
              method="sinkhorn", **options):
    """Solve independent problems on a Dask cluster; their results in order.

    Parameters
    ----------
    problems : iterable
        Each a cost ``M`` or a tuple ``(M, a, b)`` (or ``(M, a)``; omitted
        masses are uniform) as :func:`~fastsinkhorn.solve` takes them; a 3-D
        ``M`` is a batch, solved as one problem. An iterator (a stream) is
        consumed chunk by chunk, each chunk submitted as it is read.
    reg : float
        Entropic regularization (> 0), shared by every problem.
    client : dask.distributed.Client, optional
        The cluster to use; by default a ``LocalCluster`` sized to this
        machine, started and closed around the call.
    chunk_size : int, optional
        Problems per task; by default about ``TASKS_PER_THREAD`` tasks per
        worker thread (for a sequence of known length, else ``MAX_CHUNK``),
        at most ``MAX_CHUNK``.
    progress : bool
        Show Dask's progress bar (``distributed.progress``).
    errors : {"raise", "return"}
        What to do with the problems that fail (bad input): ``"raise"`` a
        :class:`ProblemErrors` naming their indices, which carries every
        other problem's result; ``"return"`` their exception in their place
        in the list. Either way every other problem is solved.
    method : str
        Passed to :func:`~fastsinkhorn.solve`. With ``"sinkhorn"`` (the
        default), consecutive small problems of one shape are solved as one
        batch; with ``"auto"`` or ``"sns"``, one by one.
    **options
        Passed to :func:`~fastsinkhorn.solve` (``tol``, ``max_iter``, ...;
        not ``callback`` nor ``warm_start``).

    Returns
    -------
    list of OTResult
        In the order of ``problems`` (a problem of a batch has the batch's
        joint ``history``). Non-convergence is a result's ``converged``
        flag, and one ``ConvergenceWarning`` listing the indices.

    Raises
    ------
    ProblemErrors
        With ``errors="raise"``, when some problems failed.
    """
    reg = check_reg(reg)
    chunk_size = check_positive_int(chunk_size, "chunk_size", allow_none=True)
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
    options = {"method": method, **_solve_options(options)}
    with _connected(client) as client:
        if chunk_size is None:
            total = len(problems) if hasattr(problems, "__len__") else None
            per_task = MAX_CHUNK if total is None else math.ceil(total / (TASKS_PER_THREAD * _threads(client)))
            chunk_size = min(MAX_CHUNK, max(1, per_task))
        futures, items = [], iter(problems)
        while chunk := list(itertools.islice(items, chunk_size)):
            futures.append(client.submit(solve_chunk, chunk, reg, options, pure=False))
        results = [res for chunk in _gather(client, futures, progress) for res in chunk]
    failed = {k: res for k, res in enumerate(results) if isinstance(res, BaseException)}
    unconverged = [k for k, res in enumerate(results) if k not in failed and not np.all(res.converged)]
    if unconverged:
        warnings.warn(f"{len(unconverged)} of {len(results)} problems did not reach tol: "
                      f"problems {unconverged[:10]}{' ...' if len(unconverged) > 10 else ''}; "
                      "increase max_iter or reg", ConvergenceWarning, stacklevel=2)
    if failed and errors == "raise":
        raise ProblemErrors(failed, [None if k in failed else res for k, res in enumerate(results)])
    return results
