"""Fixed-support barycenters: fastsinkhorn against POT, same tolerance.

    python benchmarks/barycenters.py            # both problems
    python benchmarks/barycenters.py --quick    # smaller sizes (a smoke run)

1. A barycenter of 4 images of 128 x 128 (POT's convolutional setting:
   ``linspace(0, 1)`` per axis, kernel ``exp(-(x - y)^2 / reg)``):
   ``fastsinkhorn.bregman.convolutional_barycenter2d`` (a Grid: per-axis
   log-sum-exps) against POT's ``convolutional_barycenter2d``, methods
   ``"sinkhorn"`` (scalings: its fastest) and ``"sinkhorn_log"``.
2. A barycenter of 10 histograms of n = 2000 on a dense cost (2-D points,
   squared distances scaled to [0, 1]): ``fastsinkhorn.barycenter`` (one
   shared cost, passes as matrix-matrix products) against POT's
   ``ot.bregman.barycenter``, methods ``"sinkhorn"`` and ``"sinkhorn_log"``.

Every solver gets the same ``stopThr``; the criteria differ (ours: the
largest L1 gap between a plan's barycenter-side marginal and the barycenter,
every iteration; POT's: the sum over bins of the standard deviation of those
marginals, every 10th iteration), so each row also gives the L1 distance of
its barycenter to a tight reference (POT's scaling at ``stopThr = 1e-11``:
these ``reg`` do not underflow; ``tests/test_barycenter.py`` checks that
ours agree with it at tight tolerances).
POT's ``sinkhorn_log`` is capped at ``--log-iters`` iterations (it is slow:
a dense log-sum-exp per histogram and pass); its time per iteration is given.
"""

import argparse
import time
import warnings

import numpy as np
import ot

import fastsinkhorn as fs


def images(size, k=4):
    """``k`` test images (size x size) of unit mass: a disc, a ring, a square, two blobs."""
    t = np.linspace(-1, 1, size)
    x, y = np.meshgrid(t, t, indexing="ij")
    r = np.hypot(x, y)
    shapes = [r < 0.5, (r > 0.55) & (r < 0.8), (abs(x) < 0.5) & (abs(y) < 0.3),
              (np.hypot(x - 0.4, y - 0.4) < 0.3) | (np.hypot(x + 0.4, y + 0.4) < 0.3)]
    A = np.stack([s.astype(float) + 1e-3 for s in shapes[:k]])
    return A / A.sum(axis=(1, 2), keepdims=True)


def dense_problem(n, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    M = ot.dist(x, x)
    M /= M.max()
    A = rng.random((n, k)) ** 4 + 1e-4  # peaked histograms
    return M, A / A.sum(axis=0)


def timed(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        return out, time.perf_counter() - start


def row(name, bar, log, seconds, ref):
    finite = bool(np.isfinite(bar).all())
    dist = float(np.abs(bar - ref).sum()) if finite else float("nan")
    iters = log["niter"] + 1
    conv = log.get("converged", None)
    conv = "" if conv is None else ("yes" if conv else "no")
    print(f"  {name:<44s} {seconds:9.2f} {iters:7d} {seconds / iters * 1e3:9.2f} {dist:11.2e} {conv:>5s}"
          f"{'' if finite else '  (NaN: underflow)'}")


def header(title):
    print(f"\n{title}")
    print(f"  {'solver':<44s} {'time s':>9s} {'iters':>7s} {'ms/iter':>9s} {'L1 to ref':>11s} {'conv':>5s}")


def images_benchmark(size, reg, stop, log_iters):
    A = images(size)
    header(f"4 images of {size} x {size}, reg={reg:g}, stopThr={stop:g}")
    ref, _ = timed(ot.bregman.convolutional_barycenter2d, A, reg, stopThr=1e-11, numItermax=100000)
    fs.bregman.convolutional_barycenter2d(A, reg, numItermax=3, warn=False)  # compile outside the timing
    (bar, log), s = timed(fs.bregman.convolutional_barycenter2d, A, reg, stopThr=stop, log=True)
    row("fastsinkhorn convolutional_barycenter2d", bar, log, s, ref)
    (bar, log), s = timed(ot.bregman.convolutional_barycenter2d, A, reg, stopThr=stop, log=True)
    row("POT convolutional_barycenter2d 'sinkhorn'", bar, log, s, ref)
    (bar, log), s = timed(ot.bregman.convolutional_barycenter2d, A, reg, method="sinkhorn_log", stopThr=stop,
                          numItermax=log_iters, log=True)
    row(f"POT 'sinkhorn_log' (at most {log_iters} iterations)", bar, log, s, ref)


def dense_benchmark(n, k, reg, stop, log_iters):
    M, A = dense_problem(n, k)
    header(f"{k} histograms of n = {n}, dense cost, reg={reg:g}, stopThr={stop:g}")
    ref, _ = timed(ot.bregman.barycenter, A, M, reg, stopThr=1e-11, numItermax=100000)
    fs.barycenter(A, M, reg, numItermax=3, warn=False)  # compile outside the timing
    (bar, log), s = timed(fs.barycenter, A, M, reg, stopThr=stop, log=True)
    row("fastsinkhorn barycenter", bar, log, s, ref)
    (bar, log), s = timed(ot.bregman.barycenter, A, M, reg, stopThr=stop, log=True)
    row("POT barycenter 'sinkhorn'", bar, log, s, ref)
    (bar, log), s = timed(ot.bregman.barycenter, A, M, reg, method="sinkhorn_log", stopThr=stop,
                          numItermax=log_iters, log=True)
    row(f"POT 'sinkhorn_log' (at most {log_iters} iterations)", bar, log, s, ref)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 x 64 images, n = 500")
    parser.add_argument("--stop", type=float, default=1e-5, help="stopThr of every solver (default 1e-5)")
    parser.add_argument("--log-iters", type=int, default=30, help="iteration cap of POT's sinkhorn_log")
    args = parser.parse_args(argv)
    size, n = (64, 500) if args.quick else (128, 2000)
    images_benchmark(size, 2e-3, args.stop, args.log_iters)
    dense_benchmark(n, 10, 1e-2, args.stop, args.log_iters)


if __name__ == "__main__":
    main()
