"""Exact OT: ``fastsinkhorn.solve_exact`` against POT's ``ot.emd``, time and peak memory.

    python benchmarks/exact.py [--sizes 1000 4096 10000]
                               [--families grid-w2 grid-w1 cloud assignment]
                               [--solvers fastsinkhorn pot] [--timeout 1200] [--json out.json]

Families (``fastsinkhorn.problems``): ``grid-w2`` / ``grid-w1`` (histograms on
a k x k grid, squared / plain Euclidean cost), ``cloud`` (uniform points,
squared Euclidean cost), ``assignment`` (i.i.d. uniform random costs). One
run per solver and case (``fastsinkhorn``: ``solve_exact`` with its
defaults; ``fastsinkhorn-sns``: with ``ranking="sns"``; ``fastsinkhorn-highs``:
with ``first_lp="highs"``; ``pot``: ``ot.emd``),
each in a fresh child process that builds the
problem, warms up (JIT compilation, on a small problem of the same family),
resets its peak resident size (Linux ``clear_refs``) and solves: the peak
counts the solve, not the cost matrix nor the libraries. The solvers
rotate which runs first from one case to the next (the machine may be
shared and its load drift). The load average is printed with each case.

Reported per solver: wall time, peak memory beyond the process' resident
size before the solve, the value ``<M, P>``, and for ``solve_exact`` its
certificate (duality gap, minimal reduced cost over every entry) and the
relative difference of its value from POT's. Prints a markdown table.
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

#: solver name -> solve_exact options (``None``: POT's ot.emd)
SOLVERS = {"fastsinkhorn": {}, "fastsinkhorn-sns": {"ranking": "sns"},
           "fastsinkhorn-highs": {"first_lp": "highs"}, "pot": None}


def _run(solver, family, n, warmup_n, queue):
    """Child: build, warm up, reset the peak, solve; put the measurements."""
    import numpy as np

    from fastsinkhorn.bench._runner import _reset_peak_rss, _status_kib
    from fastsinkhorn.problems import make_problem

    if SOLVERS[solver] is None:
        import ot

        def solve(p):
            G, log = ot.emd(p.a, p.b, p.M, numItermax=10**9, log=True)
            return {"value": float(log["cost"]), "warning": log["warning"]}
    else:
        import fastsinkhorn

        def solve(p):
            res = fastsinkhorn.solve_exact(p.M, p.a, p.b, **SOLVERS[solver])
            return {"value": res.value, "gap": res.duality_gap, "min_rc": res.min_reduced_cost,
                    "marginal_error": res.marginal_error, "rounds": res.n_rounds,
                    "support": res.support_size, "pivots": res.n_pivots,
                    "converged": bool(res.converged)}

    solve(make_problem(family, warmup_n, seed=1))  # warm-up: imports and compilation
    p = make_problem(family, n, seed=0)
    tracked, base = _reset_peak_rss(), _status_kib("VmRSS")
    start = time.perf_counter()
    out = solve(p)
    out["time"] = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    out["peak_memory"] = 1024 * (peak - base) if tracked and None not in (peak, base) else None
    out["shape"] = list(p.M.shape)
    out["dtype_bytes"] = int(np.dtype(p.M.dtype).itemsize)
    queue.put(out)


def run_case(solver, family, n, timeout, warmup_n=600):
    """One measurement in a fresh process; ``{"error": ...}`` on timeout or crash."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(solver, family, n, warmup_n, queue))
    proc.start()
    try:
        return queue.get(timeout=timeout)
    except Exception:  # queue.Empty: timed out, or the child died without a result
        return {"error": "timeout" if proc.is_alive() else f"crashed (exit code {proc.exitcode})"}
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def _row(family, n, name, ours, pot, load):
    """One markdown row: a solve_exact run against the POT run of its case."""
    shape = "x".join(map(str, ours.get("shape") or pot.get("shape") or [n, n]))
    rel = speedup = cert = "-"
    if "value" in ours and "value" in pot:
        rel = f"{abs(ours['value'] - pot['value']) / max(abs(pot['value']), 1e-300):.1e}"
    if "time" in ours and "time" in pot:
        speedup = f"{pot['time'] / ours['time']:.2f}"
    if "gap" in ours:
        cert = f"{ours['gap']:.1e} / {ours['min_rc']:.1e}"
    return (f"| {family} | {shape} | {name} | {_fmt_time(ours)} | {_fmt_time(pot)} | {speedup} "
            f"| {_fmt_mib(ours.get('peak_memory'))} | {_fmt_mib(pot.get('peak_memory'))} "
            f"| {rel} | {cert} | {ours.get('rounds', '-')} | {ours.get('support', '-')} | {load[0]:.2f} |")


def _fmt_time(r):
    return r["error"] if "error" in r else f"{r['time']:.2f}"


def _fmt_mib(x):
    return "-" if x is None else f"{x / 2**20:,.0f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4096, 10000])
    parser.add_argument("--families", nargs="+", default=["grid-w2", "grid-w1", "cloud", "assignment"])
    parser.add_argument("--solvers", nargs="+", choices=list(SOLVERS), default=["fastsinkhorn", "pot"])
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per run")
    parser.add_argument("--warmup-n", type=int, default=600, help="size of the untimed warm-up problem")
    parser.add_argument("--json", help="also write the raw measurements here")
    args = parser.parse_args(argv)

    rows, raw = [], []
    ours_names = [s for s in args.solvers if SOLVERS[s] is not None]
    for case, (n, family) in enumerate((n, f) for n in args.sizes for f in args.families):
        shift = case % len(args.solvers)
        order = args.solvers[shift:] + args.solvers[:shift]
        load = os.getloadavg()
        res = {s: run_case(s, family, n, args.timeout, args.warmup_n) for s in order}
        raw.append({"family": family, "n": n, "load": load, **res})
        pot = res.get("pot", {"error": "not run"})
        for name in ours_names:
            rows.append(_row(family, n, name, res[name], pot, load))
            print(rows[-1], flush=True)
    header = ("| family | shape | solver | time (s) | ot.emd (s) | speed-up | peak MiB | peak MiB ot.emd "
              "| rel. value diff | gap / min reduced cost | rounds | support | load avg |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(header)
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)
    return raw


if __name__ == "__main__":
    sys.exit(main() and 0)
