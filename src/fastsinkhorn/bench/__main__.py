"""Command line: ``python -m fastsinkhorn.bench --help``."""

import argparse
import os
import sys

from ..core.validation import DEFAULT_TOL
from ..problems import DEFAULT_FAMILIES, FAMILIES
from . import _gpu_check
from ._concurrent import concurrent_rows, run_concurrent
from ._latency import latency_rows, run_latency
from ._report import (
    add_ratios,
    format_legend,
    format_machine,
    format_rows,
    format_table,
    machine_info,
    write_json,
)
from ._runner import run_suite
from ._solvers import METHODS, PEERS, SOLVERS, get_solver

#: ``--quick`` defaults: tiny cases that finish in seconds (CI smoke run).
QUICK = {"families": ["cloud", "grid-w2"], "sizes": [64], "reg": [1e-2], "timeout": 20.0,
         "repeats": 1, "methods": ["sinkhorn", "sns"]}
FULL = {"families": list(DEFAULT_FAMILIES), "sizes": [1000, 2000, 4000], "reg": [1e-2, 1e-3],
        "timeout": 60.0, "repeats": 3, "methods": ["sinkhorn", "sns"]}
#: ``--latency`` defaults: a user's first ``solve`` (auto picks Sinkhorn at this
#: reg) and the first SNS solve (which needs more kernels), n = 1000.
LATENCY = {"families": ["cloud"], "sizes": [1000], "reg": [0.05], "timeout": 300.0,
           "repeats": 3, "methods": ["auto", "sns"]}
#: ``--concurrent`` defaults: small to medium solves at two ``reg``, as ``auto`` picks.
CONCURRENT = {"families": ["cloud"], "sizes": [64, 256, 1000], "reg": [1e-2, 1e-3], "timeout": 300.0,
              "repeats": 3, "methods": ["auto"]}


def _list(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def build_parser():
    """The argument parser of ``python -m fastsinkhorn.bench``."""
    p = argparse.ArgumentParser(
        prog="python -m fastsinkhorn.bench",
        description="Time to L1 marginal error <= tol for fastsinkhorn and its peers, "
                    "each solver in a child process under a time cap.")
    p.add_argument("--families", type=_list(str), help=f"comma list from {','.join(FAMILIES)}")
    p.add_argument("--sizes", type=_list(int), help="comma list of n (default 1000,2000,4000)")
    p.add_argument("--reg", type=_list(float), help="comma list (default 1e-2,1e-3)")
    p.add_argument("--dtype", type=_list(str), default=["float64"], help="float64 and/or float32")
    p.add_argument("--methods", type=_list(str),
                   help=f"fastsinkhorn methods, from {','.join(METHODS)} (default sinkhorn,sns; "
                        "empty: none)")
    p.add_argument("--peers", type=_list(str),
                   help=f"from {','.join(PEERS)} or module:attr (default: all available; "
                        "empty: none)")
    p.add_argument("--backend", default="auto", help="fastsinkhorn backend (auto, cpu, reference, gpu)")
    p.add_argument("--tol", type=float, help="target L1 marginal error (default "
                                             + ", ".join(f"{v:g} {k}" for k, v in DEFAULT_TOL.items()) + ")")
    p.add_argument("--timeout", type=float, help="cap per timed solve in seconds (default 60)")
    p.add_argument("--repeats", type=int, help="timed runs per solver, median reported (default 3)")
    p.add_argument("--max-iter", type=int, default=100_000, help="iteration cap for every solver")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny cases, short caps (CI smoke run)")
    p.add_argument("--latency", action="store_true",
                   help="instead of the table: import + first solve in fresh processes, Numba's "
                        "cache empty then warm (default: cloud, n 1000, reg 0.05, methods auto,sns)")
    p.add_argument("--concurrent", type=int, metavar="K",
                   help="instead of the table: K fresh processes solving together against one alone, "
                        "first and steady solves (default: cloud, n 64,256,1000, reg 1e-2,1e-3, "
                        "method auto, 3 rounds)")
    p.add_argument("--hogs", type=int, default=0, metavar="H",
                   help="with --concurrent: H more processes spinning on one core each meanwhile")
    p.add_argument("--gpu-check", action="store_true",
                   help="on its own (not with --quick, --latency, --concurrent, --peers, --backend): "
                        "run the gpu-marked tests (python -m pytest -m gpu tests, in the source checkout), "
                        "time sinkhorn, sns and auto on the GPU against the CPU (default families, "
                        "n 1000,4096, reg 1e-2,1e-3, timeout 30 s, 1 repeat; the case options override "
                        "them) and write gpu-<date>.json "
                        "(device, CUDA and CuPy versions, machine, test counts, timings and GPU/CPU "
                        "ratios) to --out (default: benchmarks/results of the source checkout, else the "
                        f"current directory); exit 0 only if every gpu test passed and every GPU run "
                        f"converged, {_gpu_check.FAILED} otherwise, {_gpu_check.NO_DEVICE} without a CUDA "
                        "device (nothing run)")
    p.add_argument("--out", help="directory for results.json and convergence.png (--gpu-check: for "
                                 "gpu-<date>.json)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    return p


def main(argv=None):
    """Run the benchmark; print the machine line and the table; return 0.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.concurrent is not None and (args.concurrent < 1 or args.hogs < 0 or args.latency):
        parser.error("--concurrent K needs K >= 1 and --hogs H >= 0, without --latency")
    if args.gpu_check and (args.quick or args.latency or args.concurrent is not None or args.hogs
                           or args.peers is not None or args.backend != "auto"):
        parser.error("--gpu-check runs on its own: not with --quick, --latency, --concurrent, --hogs, "
                     "--peers or --backend (it times the cpu and gpu backends itself)")
    defaults = (_gpu_check.DEFAULTS if args.gpu_check else CONCURRENT if args.concurrent is not None
                else LATENCY if args.latency else QUICK if args.quick else FULL)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in args.families:
        if name not in FAMILIES:
            raise SystemExit(f"unknown family {name!r}; choose from {FAMILIES}")
    for name in args.methods:
        if name not in METHODS:
            raise SystemExit(f"unknown method {name!r}; choose from {METHODS}")
    if args.gpu_check:
        return _gpu_check.run_check(args, argv)
    if args.peers is None:
        args.peers = [name for name in PEERS if SOLVERS[name].available()]
    for name in args.peers:
        if name not in SOLVERS and ":" not in name:
            raise SystemExit(f"unknown peer {name!r}; choose from {PEERS} or module:attr")
    if args.latency:
        return _latency(args, argv)
    if args.concurrent is not None:
        return _concurrent(args, argv)
    ours = [f"fastsinkhorn-{m}" for m in args.methods]
    solvers = ours + list(args.peers)

    machine = machine_info()
    print(format_machine(machine), flush=True)
    print(f"# solvers: {', '.join(solvers)}; timeout {args.timeout:g} s; "
          f"repeats {args.repeats}", file=sys.stderr, flush=True)
    records = run_suite(
        solvers, args.families, args.sizes, args.reg, args.dtype, tol=args.tol,
        timeout=args.timeout, repeats=args.repeats, max_iter=args.max_iter, seed=args.seed,
        options={name: {"backend": args.backend} for name in ours})
    add_ratios(records)
    machine["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(format_table(records, markdown=args.markdown))
    tol = ", ".join(f"{v:g} {k}" for k, v in DEFAULT_TOL.items() if k in args.dtype) if args.tol is None \
        else f"{args.tol:g}"
    print("\n" + format_legend([get_solver(name) for name in solvers], tol))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k not in ("out", "markdown")}
        config["argv"] = list(sys.argv[1:] if argv is None else argv)
        config["solvers"] = solvers
        write_json(os.path.join(args.out, "results.json"), machine, config, records)
        from ._plot import plot_convergence  # matplotlib only when a figure is asked for

        plot_convergence(records, os.path.join(args.out, "convergence.png"))
        print(f"# wrote {args.out}/results.json and convergence.png", file=sys.stderr)
    return 0


def _latency(args, argv):
    """``--latency``: the first-call table (and ``latency.json`` with ``--out``)."""
    machine = machine_info()
    print(format_machine(machine), flush=True)
    records = []
    for family in args.families:
        for n in args.sizes:
            for reg in args.reg:
                records += run_latency(args.methods, family, n, reg, repeats=args.repeats,
                                       backend=args.backend, seed=args.seed, timeout=args.timeout)
    print(format_rows(latency_rows(records), markdown=args.markdown))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        config = {k: getattr(args, k) for k in ("families", "sizes", "reg", "methods", "backend",
                                                "repeats", "seed", "timeout")}
        config["argv"] = list(sys.argv[1:] if argv is None else argv)
        write_json(os.path.join(args.out, "latency.json"), machine, config, records)
        print(f"# wrote {args.out}/latency.json", file=sys.stderr)
    return 0


def _concurrent(args, argv):
    """``--concurrent K``: the concurrency table (and ``concurrent.json`` with ``--out``)."""
    machine = machine_info()
    print(format_machine(machine), flush=True)
    records = []
    for family in args.families:
        records += run_concurrent(args.methods, family, args.sizes, args.reg, k=args.concurrent,
                                  hogs=args.hogs, repeats=args.repeats, backend=args.backend,
                                  seed=args.seed, timeout=args.timeout)
    machine["load_avg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(format_rows(concurrent_rows(records), markdown=args.markdown))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        config = {k: getattr(args, k) for k in ("families", "sizes", "reg", "methods", "backend",
                                                "repeats", "seed", "timeout", "concurrent", "hogs")}
        config["argv"] = list(sys.argv[1:] if argv is None else argv)
        write_json(os.path.join(args.out, "concurrent.json"), machine, config, records)
        print(f"# wrote {args.out}/concurrent.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
