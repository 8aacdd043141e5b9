"""A large batch of small problems on one GPU: Numba-CUDA kernels vs our CuPy loop vs POT.

    python benchmarks/cuda_small_batch.py [--batch 100000] [--n 32] [--reg 1e-2] [--tol 1e-6]
    python benchmarks/cuda_small_batch.py --smoke --batch 4 --n 6 --reg 0.1   # simulator or device

Needs a CUDA device with CuPy (and Numba's CUDA support); without one it
says so and exits with status 2, running nothing. The batch is that of
``benchmarks/batches.py`` (``B`` problems of ``n x n`` points in the unit
square, squared Euclidean cost over its maximum, random positive masses),
float64, on the device. Timed after an untimed warm-up of each solver (JIT
and NVRTC compilation never count), each to the L1 marginal error ``--tol``
on every problem:

* ``numba-cuda``: ``fastsinkhorn.solve`` with its defaults, which the GPU
  backend hands to the Numba-CUDA kernels (one launch, one thread block per
  problem; checked: the result's history has the fused path's single row);
* ``cupy loop``: ``fastsinkhorn.solve(..., check_every=10)``, a non-default
  option, so the driver's loop runs (the CuPy/CUDA C kernels, one launch per
  pass over the whole batch, a host check every 10 iterations);
* ``POT solve_batch``: ``ot.batch.solve_batch`` on the CuPy arrays, given
  ``tol / sqrt(n)`` on its L2 criterion (the loosest that guarantees the L1
  error ``tol``), its L1 error measured and reported.

``--smoke`` runs only the kernels, on NumPy arrays (under
``NUMBA_ENABLE_CUDASIM=1`` they run on the CPU), against the CPU batched
solve; exit status 0 when they agree.

Prints a markdown table row (for benchmarks/RESULTS.md).
"""

import argparse
import importlib
import os
import sys
import time
import warnings

import numpy as np

#: Exit status without a device (nothing was run).
NO_DEVICE = 2
MAX_ITER = 100_000


def _batches():
    """benchmarks/batches.py (its batch and error), imported as a script or from the package."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("benchmarks.batches")


def smoke(args):
    """The kernels on NumPy arrays (the simulator's) against the CPU batched solve."""
    import fastsinkhorn as fs
    from fastsinkhorn.backends import _cuda_numba

    if not _cuda_numba.available():
        print("--smoke needs NUMBA_ENABLE_CUDASIM=1 or a CUDA device that Numba sees")
        return NO_DEVICE
    batches = _batches()
    M, a, b = batches.make_batch(args.batch, args.n)
    t, ours = batches.timed(lambda: _cuda_numba.sinkhorn_small_batch(M, a, b, args.reg, args.tol, MAX_ITER))
    cpu = fs.solve(M, a, b, reg=args.reg, tol=args.tol, method="sinkhorn", backend="cpu")
    err = batches.l1_errors(ours.plan, a, b).max()
    gap = np.abs(ours.plan - cpu.plan).max()
    print("| B x n x n | numba-cuda | max L1 error | iterations | max plan gap to CPU batch |")
    print("|---|---|---|---|---|")
    print(f"| {args.batch} x {args.n} x {args.n} | {t:.2f} s | {err:.1e} | "
          f"{ours.n_iter.min()}-{ours.n_iter.max()} | {gap:.1e} |")
    return 0 if bool(ours.converged.all()) and err <= args.tol and gap <= 10 * args.tol else 1


def on_device(args):
    """The three solvers on the device (see the module)."""
    import cupy as cp
    from ot.batch import solve_batch

    import fastsinkhorn as fs

    batches = _batches()

    def synced(fn):
        def run():
            out = fn()
            cp.cuda.Device().synchronize()
            return out
        return batches.timed(run)

    def ours(M, a, b):
        return fs.solve(M, a, b, reg=args.reg, tol=args.tol, max_iter=MAX_ITER)

    def cupy_loop(M, a, b):
        return fs.solve(M, a, b, reg=args.reg, tol=args.tol, max_iter=MAX_ITER, check_every=10)

    def pot(M, a, b):
        return solve_batch(M, reg=args.reg, a=a, b=b, tol=args.tol / np.sqrt(args.n), max_iter=MAX_ITER)

    warnings.simplefilter("ignore")
    small = [cp.asarray(x) for x in batches.make_batch(8, args.n, seed=1)]
    for solver in (ours, cupy_loop, pot):  # warm-up: compilation is never timed
        solver(*small)
    M, a, b = (cp.asarray(x) for x in batches.make_batch(args.batch, args.n))
    rows = []
    for name, solver in (("numba-cuda", ours), ("cupy loop", cupy_loop), ("POT solve_batch", pot)):
        t, res = synced(lambda solver=solver: solver(M, a, b))
        err = batches.l1_errors(cp.asnumpy(cp.asarray(res.plan)), cp.asnumpy(a), cp.asnumpy(b)).max()
        if name == "numba-cuda" and len(res.history["error"]) != 1:
            raise RuntimeError("fastsinkhorn.solve did not take the Numba-CUDA path")
        rows.append(f"{name} {t:.3f} s (L1 {err:.1e})")
    print(f"| {args.batch} x {args.n} x {args.n} | reg {args.reg:g} | " + " | ".join(rows) + " |")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--reg", type=float, default=1e-2)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--smoke", action="store_true", help="the kernels only, against the CPU batch")
    args = parser.parse_args(argv)
    if args.smoke:
        return smoke(args)
    from fastsinkhorn.backends._cuda_numba import available
    from fastsinkhorn.backends._gpu import cuda_available

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not (cuda_available() and available()):
        print("benchmarks/cuda_small_batch.py needs a CUDA device with CuPy and Numba's CUDA support "
              "(not the simulator; --smoke runs there): nothing was run")
        return NO_DEVICE
    start = time.perf_counter()
    status = on_device(args)
    print(f"(total {time.perf_counter() - start:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
