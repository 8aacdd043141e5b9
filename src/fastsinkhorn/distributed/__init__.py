"""Many problems on a Dask cluster: pairwise OT matrices and maps of solves.

Needs the ``dask`` extra (``pip install "fastsinkhorn[dask]"``); ``import
fastsinkhorn`` alone never imports Dask.

:func:`pairwise` computes the N x N matrix of OT values between histograms
on a common support; :func:`map_solve` solves a collection (or a stream) of
independent problems. Both cut the work into tasks of many problems each,
and a task solves its problems in batched :func:`~fastsinkhorn.solve` calls
(``(B, n, m)`` costs; one by one when a problem exceeds
``fastsinkhorn.distributed.chunks.BATCH_MAX_ENTRIES`` cost entries, where batching is measured
not to pay). All the data lives in the task graph (``pairwise``: the cost
and each block of histograms once, as tasks of their own), so a worker lost
mid-run costs only the re-run of its tasks (and a stall of up to Dask's
``distributed.comm.timeouts.connect``, 30 s by default, while the other
workers give up fetching from it); results come back as NumPy arrays.
With no ``client``, a ``LocalCluster`` of one single-threaded worker process
per core is started and closed around the call; with one, whatever
cluster it points to is used.

Warm starts between neighbouring pairs are not used: measured on pairs of
histograms on a 32 x 32 grid (benchmarks/RESULTS.md section 10), starting
from the previous pair of the row saved 4 % of the iterations, from the
previous pair of the column cost 3 % more, and either would make a pair's
value depend on how the matrix is tiled.

GPU workers: ``backend="gpu"`` (passed to ``solve``) solves each task's
problems on the worker's device from host arrays, and CuPy problems given
to :func:`map_solve` run there as they are (one by one). Neither was run:
no GPU was available.
"""

from .cluster import ProblemErrors, local_client, map_solve, pairwise

__all__ = ["pairwise", "map_solve", "ProblemErrors", "local_client"]
