"""``python -m fastsinkhorn``: solve an embedded default problem and report.

Solves the ``cloud`` problem of the benchmark suite (n = 1000 points in the
unit square, squared Euclidean cost, ``reg = 1e-2`` and ``1e-3``) and prints
size, method, iterations, achieved marginal error and time, with POT's time
on the same problem when POT is installed.
"""

import argparse
import time
import warnings

import numpy as np

from . import solve
from ._validation import default_tol
from .problems import FAMILIES, make_problem


def _error(P, a, b):
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def _pot_row(p, reg, tol):
    """POT's stable solver on the same problem: (time, achieved error, iterations)."""
    try:
        import ot
    except ImportError:
        return None
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # POT's scaling domain underflows at small reg, so its log domain is the
        # fair peer; capped so the demo stays short (at reg 1e-3 it needs > 10^4)
        P, log = ot.sinkhorn(p.a, p.b, p.M, reg, method="sinkhorn_log", stopThr=tol / 100,
                             numItermax=300, log=True)
    return time.perf_counter() - t0, _error(P, p.a, p.b), log["niter"] + 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastsinkhorn", description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cloud", choices=FAMILIES)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--reg", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--method", default="auto")
    parser.add_argument("--tol", type=float, default=default_tol(np.float64))
    parser.add_argument("--no-pot", action="store_true", help="skip the POT comparison")
    args = parser.parse_args(argv)

    p = make_problem(args.family, args.n, seed=0)
    print(f"fastsinkhorn demo: {p.name} ({p.M.shape[0]} x {p.M.shape[1]}, float64), tol {args.tol:g}")
    solve(p.M[:8, :8], reg=1.0, method="sinkhorn")  # JIT warm-up (cached after the first run)
    if args.method in ("auto", "sns"):
        solve(p.M[:64, :64], reg=1e-2, method="sns")
    header = f"{'reg':>7} {'solver':>24} {'iterations':>16} {'L1 error':>10} {'time [s]':>9}"
    print(header + "\n" + "-" * len(header))
    for reg in args.reg:
        t0 = time.perf_counter()
        res = solve(p.M, p.a, p.b, reg=reg, method=args.method, tol=args.tol)
        elapsed = time.perf_counter() - t0
        iters = "+".join(f"{v}" for v in res.n_iter_phases.values())
        name = f"fastsinkhorn {res.method}"
        print(f"{reg:7.0e} {name:>24} {iters:>16} {_error(res.plan, p.a, p.b):10.2e} {elapsed:9.3f}"
              + ("" if res.converged else "  (not converged)"))
        pot = None if args.no_pot else _pot_row(p, reg, args.tol)
        if pot is not None:
            pot_time, pot_err, pot_iters = pot
            verdict = (f"{pot_time / elapsed:.1f}x our time" if pot_err <= args.tol
                       else f"did not reach tol in {pot_iters} iterations")
            print(f"{reg:7.0e} {'POT sinkhorn_log':>24} {pot_iters:>16} {pot_err:10.2e} {pot_time:9.3f}  ({verdict})")
    if not args.no_pot:
        try:
            import ot  # noqa: F401
        except ImportError:
            print("(POT not installed: pip install pot for the comparison)")


if __name__ == "__main__":
    main()
