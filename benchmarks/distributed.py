"""Pairwise OT matrix on Dask: 1 and 2 workers against a loop of POT's sinkhorn2.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/distributed.py [--n-hist 200] [--k 32] [--reg 1e-2] [--tol 1e-6]
                                         [--workers 2 1] [--pot-sample 40] [--json out.json]

``--n-hist`` histograms on a ``k x k`` grid (``n = k^2`` points): the
marginals of ``make_problem("grid-w2", k * k, seed)`` (a few Gaussian bumps
plus a floor), squared Euclidean cost normalised to max 1 (the grid cost of
that family). ``pairwise`` solves the ``N (N + 1) / 2`` pairs ``i <= j`` to
the L1 marginal error ``--tol`` at ``--reg``. Measured, in this order:

* the per-solve cost in this process: one pair at a time, and in one batched
  call (the rule that picks between them), and the iterations of cold starts
  against warm starts from a neighbouring pair's potentials;
* Dask's overhead per task (no-op tasks through the scheduler) and the
  loopback transfer rate, on a 2-worker cluster;
* ``pairwise`` on a ``LocalCluster`` of each ``--workers`` count, set up
  as ``local_client`` does (one thread per worker, ``NUMBA_NUM_THREADS=1``
  in each, its allocator and profiler settings), after an untimed
  warm-up on the same cluster;
* POT's ``ot.sinkhorn2`` (its default method) in a Python loop over the
  first ``--pot-sample`` pairs, scaled to all pairs, with our iteration cap;
  every 10 iterations it stops on the L2 norm of the column error, so it is
  given ``tol / sqrt(n)``, the loosest threshold that guarantees the L1
  error ``tol``, and the L1 error of its plans (``ot.sinkhorn`` on the same
  pairs, untimed) is reported.

``--no-cluster`` skips the clusters (and Dask): only the in-process figures
and POT's loop, its values compared with in-process solves.

Prints markdown for benchmarks/RESULTS.md; ``--json`` saves the figures.
``--batch-rule K [K ...]`` measures instead, for each ``K x K`` grid, the
per-solve time of one pair at a time against one batched call (the rule
behind ``fastsinkhorn.distributed.chunks.BATCH_MAX_ENTRIES``), and exits.
"""

import argparse
import json
import os
import sys
import time

if __name__ == "__main__":  # run as a script, its folder leads sys.path: this file would shadow Dask's package
    sys.path.remove(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import fastsinkhorn as fs
from fastsinkhorn.problems import make_problem


def histograms(N, k):
    """``N`` histograms on the ``k x k`` grid and the grid's cost (max 1)."""
    probs = [make_problem("grid-w2", k * k, seed=s) for s in range((N + 1) // 2)]
    H = np.array([h for p in probs for h in (p.a, p.b)])[:N]
    return H, probs[0].M


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def per_solve(H, C, args, sample):
    """Seconds per pair one at a time and batched, on the first ``sample`` pairs of row 0."""
    kw = dict(reg=args.reg, tol=args.tol, method="sinkhorn", max_iter=100_000)
    fs.solve(C, H[0], H[1], **kw)  # loads the compiled kernels: never timed
    t_loop, _ = timed(lambda: [fs.solve(C, H[0], H[j], **kw) for j in range(1, sample + 1)])
    batch = np.ascontiguousarray(np.broadcast_to(C, (sample, *C.shape)))
    fs.solve(batch[:2], H[:2], H[1:3], **kw)
    t_batch, _ = timed(lambda: fs.solve(batch, np.broadcast_to(H[0], (sample, len(C))), H[1:sample + 1], **kw))
    return t_loop / sample, t_batch / sample


def batch_rule(args):
    """Per-solve time one at a time and batched, for each grid of ``--batch-rule``."""
    print("| grid | n | cost entries | one at a time | batched | batch speed-up |")
    print("|---|---|---|---|---|---|")
    for k in args.batch_rule:
        H, C = histograms(args.solve_sample + 1, k)
        loop, batched = per_solve(H, C, args, args.solve_sample)
        print(f"| {k} x {k} | {k * k} | {(k * k) ** 2} | {loop * 1e3:.2f} ms | {batched * 1e3:.2f} ms | "
              f"{loop / batched:.2f}x |", flush=True)


def warm_start_iterations(H, C, args, rows, cols):
    """Iterations over a block of pairs ``rows x cols``, cold against warm-started from the
    neighbouring pair's potentials: the previous pair of the row (same source ``i``) or
    of the column (same target ``j``). Returns ``{neighbour: (cold, warm)}``."""
    kw = dict(reg=args.reg, tol=args.tol, method="sinkhorn", max_iter=100_000)
    block = [(i, j) for i in range(rows) for j in range(rows, rows + cols)]
    cold = {(i, j): fs.solve(C, H[i], H[j], **kw) for i, j in block}
    out = {}
    for name, step in (("previous pair in the row", (0, 1)), ("previous pair in the column", (1, 0))):
        pairs = [(i, j) for i, j in block if (i - step[0], j - step[1]) in cold]
        warm = sum(fs.solve(C, H[i], H[j], warm_start=cold[i - step[0], j - step[1]].potentials, **kw).n_iter
                   for i, j in pairs)
        out[name] = (int(sum(cold[p].n_iter for p in pairs)), int(warm))
    return out


def _noop(x):
    return x


def dask_overhead(client, tasks, payload_mb):
    """Seconds per no-op task through the scheduler, and loopback bytes/s of one gathered array."""
    client.gather(client.map(_noop, range(100), pure=False))  # warm
    t, _ = timed(lambda: client.gather(client.map(_noop, range(tasks), pure=False)))
    nbytes = int(payload_mb * 2**20)
    fut = client.submit(np.ones, nbytes // 8, pure=False)
    fut.result()  # made on a worker; now time only the transfer to this process
    t_move, _ = timed(lambda: client.gather(client.submit(_noop, fut, pure=False)))
    return t / tasks, nbytes / t_move


def pot_loop(H, C, pairs, args):
    import ot

    thr = args.tol / np.sqrt(C.shape[1])  # L1 <= sqrt(n) L2: guarantees the L1 tolerance
    ot.sinkhorn2(H[0], H[1], C, args.reg, stopThr=thr, numItermax=100_000)  # warm
    t, values = timed(lambda: [ot.sinkhorn2(H[i], H[j], C, args.reg, stopThr=thr, numItermax=100_000)
                               for i, j in pairs])
    errors = [np.abs(P.sum(1) - H[i]).sum() + np.abs(P.sum(0) - H[j]).sum()
              for (i, j) in pairs for P in [ot.sinkhorn(H[i], H[j], C, args.reg, stopThr=thr, numItermax=100_000)]]
    return t / len(pairs), np.array(values, dtype=float), max(errors)


def clusters(H, C, n_pairs, args, out):
    """``pairwise`` on a LocalCluster of each ``--workers`` count: ``(runs, first matrix)``."""
    import dask
    from distributed import Client, LocalCluster

    from fastsinkhorn.distributed.cluster import WORKER_CONFIG, WORKER_ENV, pairwise

    runs, reference = {}, None
    for w in args.workers:
        with dask.config.set(WORKER_CONFIG):  # the workers of local_client: its allocator and profiler settings
            cluster = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, env=WORKER_ENV,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        with cluster, Client(cluster) as client:
            if w == 2 or len(args.workers) == 1:
                out["task_overhead_s"], out["loopback_bytes_per_s"] = dask_overhead(client, args.overhead_tasks, 64)
                print(f"Dask: {out['task_overhead_s'] * 1e3:.2f} ms per no-op task ({w} workers), "
                      f"loopback {out['loopback_bytes_per_s'] / 2**30:.2f} GiB/s", flush=True)
            pairwise(H[:4], args.reg, cost=C, client=client, tol=args.tol)  # warm-up: kernels loaded
            load0, cpu0 = os.getloadavg(), sum(client.run(time.process_time).values())
            t, D = timed(lambda: pairwise(H, args.reg, cost=C, client=client, tol=args.tol, tile=args.tile,
                                          max_iter=100_000))
            cpu = sum(client.run(time.process_time).values()) - cpu0  # the workers' CPU seconds
            runs[w] = {"seconds": t, "solves_per_s": n_pairs / t, "load_before": load0, "load_after": os.getloadavg(),
                       "worker_cpu_s": cpu, "cores_used": cpu / t}
            if reference is None:
                reference = D
            runs[w]["max_diff_to_first_run"] = float(np.abs(D - reference).max())
            print(f"{w} worker(s): {t:.1f} s, {n_pairs / t:.1f} solves/s, workers' CPU {cpu:.0f} s "
                  f"({cpu / t:.2f} cores, {cpu / n_pairs * 1e3:.1f} ms per solve), load {load0} -> {os.getloadavg()}, "
                  f"max |D - D_first| {runs[w]['max_diff_to_first_run']:.1e}", flush=True)
    return runs, reference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-hist", type=int, default=200)
    parser.add_argument("--k", type=int, default=32, help="histograms on a k x k grid")
    parser.add_argument("--reg", type=float, default=1e-2)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--pot-sample", type=int, default=40)
    parser.add_argument("--solve-sample", type=int, default=16)
    parser.add_argument("--warm-block", type=int, nargs=2, default=[4, 12], metavar=("ROWS", "COLS"))
    parser.add_argument("--overhead-tasks", type=int, default=2000)
    parser.add_argument("--json", default=None)
    parser.add_argument("--batch-rule", type=int, nargs="+", default=None, metavar="K")
    parser.add_argument("--no-cluster", action="store_true", help="in-process figures and POT's loop only")
    args = parser.parse_args(argv)
    if args.batch_rule:
        return batch_rule(args)

    H, C = histograms(args.n_hist, args.k)
    N, n = H.shape
    n_pairs = N * (N + 1) // 2
    out = {"args": vars(args), "n_pairs": n_pairs, "load_start": os.getloadavg(),
           "numba_threads_here": os.environ.get("NUMBA_NUM_THREADS", "default")}
    print(f"{N} histograms of {args.k} x {args.k} (n = {n}), {n_pairs} pairs, reg {args.reg:g} "
          f"(cost max 1), L1 tol {args.tol:g}; load average {out['load_start']}", flush=True)

    out["s_per_solve_loop"], out["s_per_solve_batch"] = per_solve(H, C, args, args.solve_sample)
    print(f"in this process: {out['s_per_solve_loop'] * 1e3:.1f} ms per pair one at a time, "
          f"{out['s_per_solve_batch'] * 1e3:.1f} ms per pair in a batch of {args.solve_sample}", flush=True)
    out["warm_start_iterations"] = warm_start_iterations(H, C, args, *args.warm_block)
    print("iterations over a block of pairs:", out["warm_start_iterations"], flush=True)

    if args.no_cluster:
        kw = {"reg": args.reg, "tol": args.tol, "method": "sinkhorn", "max_iter": 100_000}
        runs = {}
        reference = np.array([[fs.solve(C, H[0], H[j], **kw).value_linear for j in range(args.pot_sample)]])
    else:
        runs, reference = clusters(H, C, n_pairs, args, out)
    out["runs"] = runs

    pairs = [(0, j) for j in range(args.pot_sample)]
    out["pot_s_per_solve"], pot_values, out["pot_max_l1_error"] = pot_loop(H, C, pairs, args)
    out["pot_max_rel_diff"] = float(np.max(np.abs(pot_values - reference[0, :args.pot_sample])
                                           / np.abs(reference[0, :args.pot_sample])))
    print(f"POT sinkhorn2 loop: {out['pot_s_per_solve'] * 1e3:.1f} ms per pair ({args.pot_sample} pairs), "
          f"{1 / out['pot_s_per_solve']:.1f} solves/s, max L1 error {out['pot_max_l1_error']:.1e}, "
          f"values within {out['pot_max_rel_diff']:.1e} (relative) of ours", flush=True)
    out["load_end"] = os.getloadavg()

    print("\n| workers | time | solves/s | speed-up | workers' CPU (cores busy) | vs POT loop (scaled) "
          "| load average before -> after |")
    print("|---|---|---|---|---|---|---|")
    t1 = runs.get(1, {}).get("seconds")
    for w in sorted(runs):
        r = runs[w]
        speed = f"{t1 / r['seconds']:.2f}x" if t1 else "-"
        print(f"| {w} | {r['seconds']:.1f} s | {r['solves_per_s']:.1f} | {speed} | "
              f"{r['worker_cpu_s']:.0f} s ({r['cores_used']:.2f}) | "
              f"{r['solves_per_s'] * out['pot_s_per_solve']:.2f}x | "
              f"{', '.join(f'{x:.2f}' for x in r['load_before'])} -> "
              f"{', '.join(f'{x:.2f}' for x in r['load_after'])} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
