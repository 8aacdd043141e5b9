"""A batch of small problems at small ``reg``: the batched SNS against loops and the batched Sinkhorn.

    python benchmarks/batch_sns.py [--batch 1000] [--n 64] [--reg 1e-3] [--tol 1e-9 1e-6]
                                   [--loop-sample 200]

``B`` problems of ``n x n`` i.i.d. uniform costs on [0, 1) (cost range ~1,
so ``reg`` is a fraction of it) with uniform masses. For each tolerance
(the L1 marginal error, both sides, on every problem), timed in one process
after an untimed warm-up of each solver on a small batch:

* ``fastsinkhorn.solve(M, reg=reg, method="sns")`` on the whole ``(B, n, n)``
  batch: each problem its own Newton iteration, all in one compiled call;
* a Python loop of ``fastsinkhorn.solve(M[p], reg=reg, method="sns")``;
* a Python loop of RegOT's ``sinkhorn_ssns`` (it stops on the L2 norm of
  both marginal errors: it is given ``tol / sqrt(2 n)``, which bounds the
  L1 error by ``tol``);
* ``fastsinkhorn.solve(M, reg=reg, method="sinkhorn")``, the batched
  log-stable Sinkhorn, with the iteration cap ``--sinkhorn-max-iter``.

The loops are timed on the first ``--loop-sample`` problems and scaled to
``B`` (the problems are drawn alike). Every solver's largest L1 marginal
error over the problems it solved is measured here from its plan. Prints
a markdown table (for benchmarks/RESULTS.md).
"""

import argparse
import math
import time
import warnings

import numpy as np

import fastsinkhorn as fs


def make_batch(B, n, seed=0):
    return np.random.default_rng(seed).random((B, n, n))


def l1_errors(P, a):
    """The L1 marginal error (both sides) of each plan of ``P`` (B, n, n), uniform masses ``a``."""
    return np.abs(P.sum(-1) - a).sum(-1) + np.abs(P.sum(-2) - a).sum(-1)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_case(M, reg, tol, sample, sinkhorn_max_iter):
    """Rows ``(solver, seconds for the batch, max L1 error, note)``."""
    import regot

    B, n, _ = M.shape
    a = np.full(n, 1.0 / n)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.ConvergenceWarning)  # reported in the table instead
        seconds, res = _timed(lambda: fs.solve(M, reg=reg, method="sns", tol=tol))
        rows.append(("fastsinkhorn batch, method='sns'", seconds, l1_errors(res.plan, a).max(),
                     f"{int(res.converged.sum())}/{B} converged, median {int(np.median(res.n_iter))} iterations"))
        seconds, singles = _timed(lambda: [fs.solve(M[p], reg=reg, method="sns", tol=tol) for p in range(sample)])
        rows.append(("loop of fastsinkhorn.solve(method='sns')", seconds * B / sample,
                     l1_errors(np.stack([r.plan for r in singles]), a).max(), f"timed on {sample}, scaled"))
        MF = [np.asfortranarray(M[p]) for p in range(sample)]
        seconds, theirs = _timed(lambda: [regot.sinkhorn_ssns(MF[p], a, a, reg, tol=tol / math.sqrt(2 * n),
                                                              max_iter=10_000) for p in range(sample)])
        rows.append(("loop of regot.sinkhorn_ssns", seconds * B / sample,
                     l1_errors(np.stack([r.plan for r in theirs]), a).max(),
                     f"timed on {sample}, scaled; median {int(np.median([r.niter for r in theirs]))} steps"))
        seconds, res = _timed(lambda: fs.solve(M, reg=reg, method="sinkhorn", tol=tol, max_iter=sinkhorn_max_iter))
        rows.append(("fastsinkhorn batch, method='sinkhorn'", seconds, l1_errors(res.plan, a).max(),
                     f"{int(res.converged.sum())}/{B} converged, max_iter {sinkhorn_max_iter}"))
    return rows


def warm_up(n, reg, tol):
    """Compile and load every solver's code (untimed)."""
    import regot

    M = make_batch(4, n, seed=1)
    a = np.full(n, 1.0 / n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.ConvergenceWarning)
        fs.solve(M, reg=reg, method="sns", tol=tol)
        fs.solve(M[0], reg=reg, method="sns", tol=tol)
        fs.solve(M, reg=reg, method="sinkhorn", tol=tol, max_iter=100)
        regot.sinkhorn_ssns(np.asfortranarray(M[0]), a, a, reg, tol=tol, max_iter=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--reg", type=float, default=1e-3)
    parser.add_argument("--tol", type=float, nargs="+", default=[1e-9, 1e-6])
    parser.add_argument("--loop-sample", type=int, default=200)
    parser.add_argument("--sinkhorn-max-iter", type=int, default=100_000)
    args = parser.parse_args(argv)
    M = make_batch(args.batch, args.n)
    sample = min(args.loop_sample, args.batch)
    warm_up(args.n, args.reg, min(args.tol))
    print(f"{args.batch} problems of {args.n} x {args.n}, uniform costs, reg {args.reg:g}\n")
    print("| tol (L1) | solver | time for the batch [s] | max L1 marginal error | note |")
    print("|---|---|---|---|---|")
    for tol in args.tol:
        for name, seconds, error, note in run_case(M, args.reg, tol, sample, args.sinkhorn_max_iter):
            print(f"| {tol:g} | {name} | {seconds:.3g} | {error:.1e} | {note} |", flush=True)


if __name__ == "__main__":
    main()
