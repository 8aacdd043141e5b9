"""W2 between two images (or volumes) on a regular grid: ``solve(Grid(shape), a, b)``
against POT's dense log-domain Sinkhorn on the same cost (where the dense cost fits).

Two smooth random blobs (mixtures of Gaussians) on a ``k x k`` grid (``k^3``
with ``--dims 3``) of ``linspace(0, 1, k)`` points, the squared Euclidean
cost, ``reg = 1e-3`` of the cost range, to an L1 marginal error of ``1e-6``.
POT has no grid solver, so it solves the dense ``k^d x k^d`` cost
(``ot.sinkhorn`` with ``method="sinkhorn_log"``: plain ``"sinkhorn"``
underflows at this reg), only for ``k <= --pot-max``, with ``stopThr =
tol / sqrt(n)`` on its column L2 error (which bounds the L1 error by tol).

Usage::

    python benchmarks/grids.py --sizes 48 64 128 256 --pot-max 48
    python benchmarks/grids.py --dims 3 --sizes 32 64 --pot-max 0
"""

import argparse
import time

import numpy as np


def blobs(rng, shape, count=3):
    """A smooth random histogram on a grid of ``shape``: ``count`` Gaussian blobs."""
    axes = np.meshgrid(*(np.linspace(0, 1, k) for k in shape), indexing="ij")
    h = np.full(shape, 1e-6)
    for _ in range(count):
        centre, width = rng.uniform(0.2, 0.8, len(shape)), rng.uniform(0.05, 0.15)
        h += rng.uniform(0.5, 1.0) * np.exp(-sum((x - c) ** 2 for x, c in zip(axes, centre)) / (2 * width ** 2))
    return h / h.sum()


def ours(shape, a, b, reg, tol, max_iter):
    import fastsinkhorn as fs

    start = time.perf_counter()
    res = fs.solve(fs.Grid(shape), a, b, reg=reg, tol=tol, max_iter=max_iter)
    seconds = time.perf_counter() - start
    return seconds, res.n_iter, float(res.marginal_error), float(res.value_linear)


def pot(shape, a, b, reg, tol, max_iter):
    import ot

    import fastsinkhorn as fs

    M = fs.Grid(shape).cost_matrix()
    start = time.perf_counter()
    P, log = ot.sinkhorn(a.ravel(), b.ravel(), M, reg, method="sinkhorn_log", numItermax=max_iter,
                         stopThr=tol / np.sqrt(M.shape[1]), log=True)
    seconds = time.perf_counter() - start
    error = float(np.abs(P.sum(1) - a.ravel()).sum() + np.abs(P.sum(0) - b.ravel()).sum())
    return seconds, int(log["niter"]), error, float((P * M).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--pot-max", type=int, default=64, help="largest k for POT's dense solve")
    parser.add_argument("--relative-reg", type=float, default=1e-3)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-iter", type=int, default=100000)
    parser.add_argument("--dims", type=int, default=2, choices=(2, 3), help="images (2) or volumes (3)")
    args = parser.parse_args()
    import os

    import fastsinkhorn as fs

    fs.solve(fs.Grid((8,) * args.dims), reg=0.1)  # compile the kernels outside the timings
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}")
    print("| grid | solver | seconds | iterations | L1 error | <C, P> |")
    print("|---|---|---|---|---|---|")
    for k in args.sizes:
        shape = (k,) * args.dims
        rng = np.random.default_rng(k)
        a, b = blobs(rng, shape), blobs(rng, shape)
        reg = args.relative_reg * fs.Grid(shape).cost_range()
        runs = [("fastsinkhorn Grid", ours)] + ([("POT sinkhorn_log (dense)", pot)] if k <= args.pot_max else [])
        for name, run in runs:
            seconds, n_iter, error, linear = run(shape, a, b, reg, args.tol, args.max_iter)
            print(f"| {' x '.join(map(str, shape))} | {name} | {seconds:.2f} | {n_iter} | {error:.1e} | "
                  f"{linear:.6f} |", flush=True)


if __name__ == "__main__":
    main()
