"""Batches of small problems: one batched call against a loop and POT's solve_batch.

    python benchmarks/batches.py [--cases 10000x32 1000x256] [--reg 1e-2] [--tol 1e-6]
                                 [--loop-sample 500]

Each case is ``B`` problems of ``n x n`` points drawn uniformly in the unit
square, squared Euclidean cost divided by its maximum (cost range ~1), and
random positive masses; ``reg`` is a fraction of that range. Timed, in one
process, after an untimed warm-up of each solver on a small batch:

* ``fastsinkhorn.solve(M, a, b, reg)`` on the whole ``(B, n, n)`` batch
  (batched log-stable Sinkhorn, one parallel pass over all problems per
  iteration), to the L1 marginal error ``--tol`` on every problem;
* a Python loop of ``fastsinkhorn.solve`` over the problems, to the same
  tolerance: timed on the first ``--loop-sample`` problems and scaled to
  ``B`` (the problems are drawn alike);
* POT's ``ot.batch.solve_batch`` with its defaults (``method="auto"``, which
  is ``log_sinkhorn`` for ``reg > 0``) and the same iteration cap. Every 10
  iterations it stops once the largest ``||P 1 - a||_2`` of the batch (its
  columns are exact) is below ``tol``: it is given ``tol / sqrt(n)``, the
  loosest threshold that guarantees the L1 error ``tol`` on every problem,
  and the L1 marginal error of its plans is measured and reported beside its
  time. Its NumPy iterations cost in proportion to the batch, so it is timed
  on the first ``--pot-sample`` problems and scaled to ``B``.

Prints a markdown table (for benchmarks/RESULTS.md).
"""

import argparse
import time
import warnings

import numpy as np

import fastsinkhorn as fs

#: Iteration cap of every solver.
MAX_ITER = 100_000


def make_batch(B, n, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.random((B, n, 2)), rng.random((B, n, 2))
    M = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)
    M /= M.max(axis=(1, 2), keepdims=True)
    a, b = rng.random((B, n)) + 0.1, rng.random((B, n)) + 0.1
    return M, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)


def l1_errors(P, a, b):
    return np.abs(P.sum(2) - a).sum(1) + np.abs(P.sum(1) - b).sum(1)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["10000x32", "1000x256"])
    parser.add_argument("--reg", type=float, default=1e-2)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--loop-sample", type=int, default=500)
    parser.add_argument("--pot-sample", type=int, default=1000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from ot.batch import solve_batch

    M, a, b = make_batch(4, 16, seed=1)  # warm-up: JIT compilation is never timed
    fs.solve(M, a, b, reg=args.reg, tol=args.tol)
    fs.solve(M[0], a[0], b[0], reg=args.reg, tol=args.tol)
    solve_batch(M, reg=args.reg, a=a, b=b, tol=1e-3)

    print(f"reg = {args.reg:g} (cost range 1), L1 tol {args.tol:g}\n")
    print("| B x n x n | fastsinkhorn batch | max L1 error | iterations per problem | loop of solve (scaled) "
          "| batch speed-up | POT solve_batch (scaled) | POT max L1 error | vs POT |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        B, n = (int(v) for v in case.split("x"))
        M, a, b = make_batch(B, n)
        t_batch, res = timed(lambda M=M, a=a, b=b: fs.solve(M, a, b, reg=args.reg, tol=args.tol,
                                                             max_iter=MAX_ITER))
        err = l1_errors(res.plan, a, b).max()
        k = min(B, args.loop_sample)
        t_loop, _ = timed(lambda M=M, a=a, b=b, k=k: [
            fs.solve(M[p], a[p], b[p], reg=args.reg, tol=args.tol, max_iter=MAX_ITER) for p in range(k)])
        t_loop *= B / k
        k = min(B, args.pot_sample)
        t_pot, pot = timed(lambda M=M, a=a, b=b, k=k, n=n: solve_batch(
            M[:k], reg=args.reg, a=a[:k], b=b[:k], tol=args.tol / np.sqrt(n), max_iter=MAX_ITER))
        t_pot *= B / k
        pot_err = l1_errors(np.asarray(pot.plan), a[:k], b[:k]).max()
        print(f"| {B} x {n} x {n} | {t_batch:.2f} s | {err:.1e} | {res.n_iter.min()}-{res.n_iter.max()} | "
              f"{t_loop:.1f} s | "
              f"{t_loop / t_batch:.0f}x | {t_pot:.2f} s | {pot_err:.1e} | {t_pot / t_batch:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
