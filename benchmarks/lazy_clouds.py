"""Lazy point clouds: time, peak memory and pass throughput at n = m = 20,000.

    python benchmarks/lazy_clouds.py [--n 20000] [--dims 2 3] [--regs 1e-2 1e-3]
                                     [--tol 1e-6] [--pot-iterations 2] [--geomloss]

Each case (uniform points in the unit cube, squared Euclidean cost, ``reg``
a fraction of the cost range) is solved by ``fastsinkhorn.solve`` on a
:class:`~fastsinkhorn.PointCloud` (``method="auto"``) to the L1 marginal
error ``--tol``, in a child process whose peak resident size is reset just
before the solve (so the peak counts the solve, not the import or the
points). The error is recomputed from the returned potentials by one blocked
pass.

Peers, measured in the same run:

* POT ``ot.solve_sample(..., lazy=True)`` (log-domain Sinkhorn over row
  batches): one of its iterations takes tens of seconds here, so it is timed
  over ``--pot-iterations`` iterations (after one untimed warm-up iteration)
  and its time to tolerance is extrapolated as (time per iteration) x (the
  Sinkhorn iterations fastsinkhorn needed at reg = 1e-2 for the same points:
  POT runs the same iteration). At reg = 1e-3, where fastsinkhorn runs SNS,
  Sinkhorn needs more iterations than at 1e-2, so that extrapolation is a
  lower bound of POT's time and the ratio a lower bound of the speed-up.
* GeomLoss (``SamplesLoss("sinkhorn", backend="online")``, KeOps on the CPU)
  when installed: it runs epsilon-scaling for a fixed number of iterations
  (``scaling=0.9``) rather than to a tolerance, so its time is reported with
  the L1 error of the plan of its potentials, measured here.

Throughput: one point-cloud log-sum-exp pass (n x m cost evaluations and
exps) against NumPy's float64 ``exp`` rate on all threads, measured in the
same process. Prints a markdown table.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def points(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.random((n, d))


def _peak_rss_reset():
    from fastsinkhorn.bench._runner import _reset_peak_rss, _status_kib

    _reset_peak_rss()
    return _status_kib("VmRSS")


def child_fastsinkhorn(n, d, reg_frac, tol):
    """Solve one case; returns a dict (run in a fresh process)."""
    import fastsinkhorn as fs
    from fastsinkhorn.bench._runner import _status_kib

    x, y = points(n, d, 0)
    cloud = fs.PointCloud(x, y)
    fs.solve(fs.PointCloud(x[:200], y[:200]), reg=0.01, method="sns")  # JIT warm-up, untimed
    reg = reg_frac * cloud.cost_range_bound()
    base = _peak_rss_reset()
    t0 = time.perf_counter()
    res = fs.solve(cloud, reg=reg, tol=tol, max_iter=100_000)
    elapsed = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {"time": elapsed, "peak_mib": (peak - base) / 1024, "method": res.method,
            "phases": res.n_iter_phases, "error": res.marginal_error, "converged": bool(res.converged)}


def child_pot(n, d, reg_frac, iterations):
    """Seconds per iteration of POT's lazy solve_sample (one untimed warm-up iteration)."""
    import warnings

    import ot

    import fastsinkhorn as fs

    warnings.simplefilter("ignore")
    x, y = points(n, d, 0)
    reg = reg_frac * fs.PointCloud(x, y).cost_range_bound()
    run = (lambda k: ot.solve_sample(x, y, reg=reg, lazy=True, max_iter=k, tol=0.0))
    t0 = time.perf_counter()
    run(1)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(1 + iterations)
    return {"per_iteration": (time.perf_counter() - t0 - one) / iterations}


def child_geomloss(n, d, reg_frac):
    """GeomLoss online Sinkhorn (KeOps): time and the L1 error of its plan."""
    import torch
    from geomloss import SamplesLoss

    import fastsinkhorn as fs
    from fastsinkhorn.backends import get_backend
    from fastsinkhorn.geometry.dense import CloudGeometry

    torch.set_default_dtype(torch.float64)
    x, y = points(n, d, 0)
    cloud = fs.PointCloud(x, y)
    reg = reg_frac * cloud.cost_range_bound()
    # GeomLoss's p = 2 cost is |x - y|^2 / 2 and its eps = blur^2: the same
    # problem as ours (cost |x - y|^2, reg) at eps = reg / 2
    loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(reg / 2), scaling=0.9, backend="online",
                       debias=False, potentials=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss(xt[:100], yt[:100])  # KeOps compilation, untimed
    t0 = time.perf_counter()
    F, G = loss(xt, yt)
    elapsed = time.perf_counter() - t0
    # its plan a_i b_j exp((F_i + G_j - C_ij) / eps) in our terms: f = 2F + reg log a
    w = np.log(1.0 / n)
    f, g = 2 * F.numpy().ravel() + reg * w, 2 * G.numpy().ravel() + reg * w
    r, c, _ = CloudGeometry(cloud, get_backend("cpu")).summary(f, g, reg)
    error = float(np.abs(r - 1.0 / n).sum() + np.abs(c - 1.0 / n).sum())
    return {"time": elapsed, "error": error}


def child_throughput(n, d):
    """G entries/s of one point-cloud lse pass and of NumPy's exp on all threads."""
    import numba

    import fastsinkhorn as fs
    from fastsinkhorn.backends import get_backend

    be = get_backend("cpu")
    x, y = points(n, d, 0)
    spec = fs.PointCloud(x, y).spec
    g = np.zeros(n)
    be.pc_lse_rows(x[:64], y[:64], spec, g[:64], 0.01)
    t0 = time.perf_counter()
    be.pc_lse_rows(x, y, spec, g, 0.01)
    pass_rate = n * n / (time.perf_counter() - t0) / 1e9
    threads = numba.get_num_threads()
    blocks = [-50 * np.random.default_rng(t).random(1 << 16) for t in range(threads)]

    def exps(z):
        out = np.empty_like(z)
        for _ in range(200):
            np.exp(z, out=out)

    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(exps, blocks))
    exp_rate = threads * 200 * (1 << 16) / (time.perf_counter() - t0) / 1e9
    return {"pass": pass_rate, "exp": exp_rate, "threads": threads}


def run_child(*args):
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--regs", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--pot-iterations", type=int, default=2)
    parser.add_argument("--geomloss", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = json.loads(args.child)
        print(json.dumps(globals()["child_" + kind](*rest)))
        return

    n = args.n
    print(f"n = m = {n}, uniform points, squared Euclidean, L1 tol {args.tol:g}\n")
    print("| d | reg / range | fastsinkhorn | method (iterations) | L1 error | peak MiB (n x m float64: "
          f"{n * n * 8 / 2**20:.0f}) | POT lazy (extrapolated) | speed-up | GeomLoss (L1 error) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in args.dims:
        pot = run_child("pot", n, d, args.regs[0], args.pot_iterations)
        sinkhorn_iterations = None
        for reg in sorted(args.regs, reverse=True):
            ours = run_child("fastsinkhorn", n, d, reg, args.tol)
            if ours["method"] == "sinkhorn" and sinkhorn_iterations is None:
                sinkhorn_iterations = ours["phases"]["sinkhorn"]
            iters = sinkhorn_iterations or ours["phases"].get("sinkhorn", 1)
            bound = "" if ours["method"] == "sinkhorn" else ">= "
            pot_time = pot["per_iteration"] * iters
            gl = ""
            if args.geomloss:
                g = run_child("geomloss", n, d, reg)
                gl = f"{g['time']:.1f} s ({g['error']:.1e})"
            phases = ", ".join(f"{k} {v}" for k, v in ours["phases"].items())
            print(f"| {d} | {reg:g} | {ours['time']:.1f} s | {ours['method']} ({phases}) | {ours['error']:.1e} | "
                  f"{ours['peak_mib']:.0f} | {bound}{pot_time:.0f} s ({pot['per_iteration']:.1f} s/iter x {iters}) | "
                  f"{bound}{pot_time / ours['time']:.0f}x | {gl} |", flush=True)
    t = run_child("throughput", n, args.dims[0])
    print(f"\nOne lse pass over {n} x {n} (d = {args.dims[0]}): {t['pass']:.2f} G entries/s; NumPy float64 exp "
          f"on {t['threads']} threads: {t['exp']:.2f} G/s (pass = {t['pass'] / t['exp']:.0%} of the exp rate)")


if __name__ == "__main__":
    main()
