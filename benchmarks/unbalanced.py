"""Unbalanced OT: time to tolerance against POT's ``sinkhorn_unbalanced``.

    python benchmarks/unbalanced.py [--sizes 1000 4096] [--regs 1e-2 1e-3]
                                    [--rho 1.0] [--tol 1e-9] [--threads 2] [--max-iter 100000]
                                    [--pot-stopthr 0.1 1 10] [--repeats 1] [--json out.json]

Problems: the suite's ``cloud`` family (uniform points in the unit square,
squared Euclidean cost scaled to max 1) with the target carrying 1.5 times
the source's mass, KL-relaxed marginals ``rho`` (POT's ``reg_m``) and
``reg_type="kl"`` (POT's default).

Accuracy is measured the same way for everyone: the L1 distance of the
returned plan to a reference plan (our SNS at L1 dual-gradient error 1e-12,
checked against our Sinkhorn at 1e-10), relative to the plan's mass. POT's solvers
stop on the relative change of their scalings, ours on the dual's gradient,
so no threshold of POT's guarantees ours: POT runs at ``stopThr = k * tol``
for each ``k`` of ``--pot-stopthr`` (default 0.1, 1 and 10), and the speed-up is
against the fastest POT run whose plan is as accurate as ours (see
:func:`table`). POT's methods: ``"sinkhorn"`` (its default; scaling domain,
it underflows at small ``reg``), ``"sinkhorn_stabilized"`` (absorption, POT's
answer for small ``reg``) and ``"sinkhorn_translation_invariant"`` (the
translation-invariant iteration, as ours). Every solver gets the same
iteration cap (``--max-iter``) and the best of ``--repeats`` timed runs, after
untimed warm-ups (ours: the reference solves, which load every kernel; POT:
a run on a 16-point problem). Threads of every library are set by
``--threads`` (Numba, OpenBLAS, OpenMP) before anything is imported.
"""

import argparse
import json
import os
import sys
import time
import warnings


def _threads(argv):
    """Pin every library's threads before NumPy loads (read from argv)."""
    count = "2"
    if "--threads" in argv:
        count = argv[argv.index("--threads") + 1]
    for name in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = count


def problem(n, seed=0, extra_mass=1.5):
    from fastsinkhorn.problems import make_problem

    p = make_problem("cloud", n, seed=seed)
    return p.M / p.M.max(), p.a, extra_mass * p.b


def timed(fn, repeats=1):
    """``(seconds, result, warnings)``: the fastest of ``repeats`` calls."""
    best = float("inf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
    return best, out, sorted({str(w.message)[:60] for w in caught})


def objective(plan, M, a, b, reg, rho):
    """``(value, <M, P>)``: ``value = <M, P> + reg KL(P | a b^T) + rho KL(P 1 | a)
    + rho KL(P^T 1 | b)`` with the generalised ``KL(p | q) = sum p log(p / q) - p + q``,
    the objective both libraries minimise. (POT's ``total_cost`` drops the ``- p + q``
    terms, which makes it 0 at every optimum of this problem: no use for a comparison.)"""
    import numpy as np

    def kl(p, q):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.where(p > 0, p * np.log(p / q), 0.0).sum() - p.sum() + q.sum())

    linear = float((plan * M).sum())
    return linear + reg * kl(plan, a[:, None] * b[None, :]) + rho * kl(plan.sum(1), a) \
        + rho * kl(plan.sum(0), b), linear


POT_METHODS = ("sinkhorn", "sinkhorn_stabilized", "sinkhorn_translation_invariant")


def run_case(n, reg, rho, tol, max_iter, pot_factors, repeats):
    import numpy as np
    import ot

    import fastsinkhorn as fs

    M, a, b = problem(n)
    ref = fs.solve(M, a, b, reg, unbalanced=rho, method="sns", tol=1e-12)  # also compiles every kernel
    check = fs.solve(M, a, b, reg, unbalanced=rho, method="sinkhorn", tol=1e-10, max_iter=200_000)
    assert ref.converged and np.abs(check.plan - ref.plan).sum() <= 1e-8 * ref.plan.sum()
    mass = ref.plan.sum()
    rows = []

    def record(solver, seconds, plan, n_iter, notes):
        finite = bool(np.isfinite(plan).all())
        error = float(np.abs(plan - ref.plan).sum() / mass) if finite else float("nan")
        rows.append({"n": n, "reg": reg, "rho": rho, "solver": solver, "seconds": seconds,
                     "n_iter": n_iter, "plan_error": error, "finite": finite, "notes": notes,
                     "value": objective(plan, M, a, b, reg, rho) if finite else (float("nan"),) * 2})

    for method in ("sinkhorn", "sns", "auto"):
        seconds, res, notes = timed(lambda method=method: fs.solve(
            M, a, b, reg, unbalanced=rho, method=method, tol=tol, max_iter=max_iter), repeats=repeats)
        record(f"fastsinkhorn {method}", seconds, res.plan, res.n_iter, notes)
    Ms, As, Bs = problem(16)
    for method in POT_METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ot.unbalanced.sinkhorn_unbalanced(As, Bs, Ms, reg, rho, method=method)  # warm-up, untimed
        for factor in pot_factors:
            seconds, (plan, log), notes = timed(lambda method=method, factor=factor: ot.unbalanced.sinkhorn_unbalanced(
                a, b, M, reg, rho, method=method, numItermax=max_iter, stopThr=factor * tol, log=True),
                repeats=repeats)
            record(f"POT {method} (stopThr {factor * tol:g})", seconds, plan, len(log["err"]), notes)
    return rows


def table(rows):
    """Markdown; the speed-up is against the fastest POT run whose plan is as
    accurate as ours (L1 error within 10x ours, or 1e-8), if any."""
    lines = [("| n | reg | rho | solver | time [s] | iterations | plan L1 error / mass | value | <M, P> | "
              "speed-up vs accurate POT | notes |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in sorted({(r["n"], r["reg"], r["rho"]) for r in rows}, key=lambda c: (c[0], -c[1])):
        group = [r for r in rows if (r["n"], r["reg"], r["rho"]) == case]
        for r in group:
            bar = max(10 * r["plan_error"], 1e-8)
            pot = [p["seconds"] for p in group if p["solver"].startswith("POT") and p["plan_error"] <= bar]
            ratio = f"{min(pot) / r['seconds']:.1f}x" if pot and not r["solver"].startswith("POT") else \
                ("-" if r["solver"].startswith("POT") else "no POT run this accurate")
            lines.append(f"| {r['n']} | {r['reg']:g} | {r['rho']:g} | {r['solver']} | {r['seconds']:.3g} | "
                         f"{r['n_iter']} | {r['plan_error']:.1e} | {r['value'][0]:.10g} | {r['value'][1]:.10g} | "
                         f"{ratio} | {'; '.join(r['notes'])} |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    _threads(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4096])
    parser.add_argument("--regs", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--rho", type=float, default=1.0)
    parser.add_argument("--tol", type=float, default=1e-9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=100_000, help="iteration cap of every solver")
    parser.add_argument("--pot-stopthr", type=float, nargs="+", default=[0.1, 1.0, 10.0],
                        help="POT runs at stopThr = k * tol for each k")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per solver (the fastest is kept)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = []
    for n in args.sizes:
        for reg in args.regs:
            rows += run_case(n, reg, args.rho, args.tol, args.max_iter, args.pot_stopthr, args.repeats)
            print(f"n = {n}, reg = {reg:g} done", flush=True)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
