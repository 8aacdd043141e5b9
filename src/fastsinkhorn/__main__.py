"""``python -m fastsinkhorn``: an embedded problem solved by fastsinkhorn and by POT, side by side.

Solves the ``cloud`` problem of the benchmark suite (n = 1000 points in the
unit square, squared Euclidean cost of maximum 1, ``reg = 1e-2`` and
``1e-3``) to the L1 marginal error ``--tol``, then the same problem with
POT's ``ot.sinkhorn`` (its default method) and ``ot.solve`` (which runs
``sinkhorn_log``), each to the same tolerance and iteration cap, within a
time budget per run. Every plan is measured here, the same way: its L1
marginal error and its objective values. The first-call costs (imports,
loading or compiling kernels) are shown apart from the solve times. A legend
under the table explains each column.
"""

import argparse
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import solve
from .core.validation import default_tol
from .problems import FAMILIES, make_problem
from .solvers import METHODS

#: ``--peers`` name -> (label, bench adapter).
PEERS = {
    "sinkhorn": ("POT ot.sinkhorn (sinkhorn)", "pot-sinkhorn"),
    "solve": ("POT ot.solve (sinkhorn_log)", "pot-solve"),
    "sinkhorn_log": ("POT sinkhorn_log", "pot-sinkhorn_log"),
}
DEFAULT_PEERS = ("sinkhorn", "solve")
#: A run shorter than this (seconds) is repeated twice more and the median shown.
REPEAT_BELOW = 0.5
#: Iterations of the untimed probe that measures a peer's time per iteration.
PROBE_ITER = 10
#: Our iteration cap (``solve``'s default), given to every solver.
MAX_ITER = max(default for _, _, default in METHODS.values())

LEGEND = """\
iterations  as each solver counts them: a Sinkhorn iteration is one pass over the n x m
            kernel; SNS runs Sinkhorn first, then Newton steps (a sparse Newton solve and
            a line search each), so "102 Sinkhorn + 8 Newton" is 110 in all
L1 error    ||P 1 - a||_1 + ||P^T 1 - b||_1 of the returned plan, computed here for every row
status      converged: L1 error <= tol; NOT converged: stopped above tol, at the iteration cap
            that the time budget allowed ("time budget"), at the common cap ("max_iter"),
            or on its own (numerical errors: "stopped itself")
time [s]    wall-clock seconds of the solve alone, median of 3 runs when a run is under
            {repeat:g} s (else one run); imports, kernel loading and warm-up runs are excluded
            (the first-call line above shows them)
vs ours     time over fastsinkhorn's on the same reg; ">35x": stopped short of tol after
            35x our time
value       <M, P> + reg KL(P | a b^T) of the returned plan, KL(p | q) = sum p log(p / q)
            (POT's ot.solve value); <M, P>: the transport cost of the plan. Converged
            solvers agree to about tol (the marginal error moves the value that much)
peers       POT with its defaults, except stopThr = tol / sqrt(m): POT stops on the L2 norm
            of the column error, checked every 10 iterations, and that is the loosest
            threshold that guarantees L1 <= tol. Every run gets max_iter = {max_iter} and
            {budget:g} s (--time-budget): ours is stopped there by its callback, a peer's
            iteration cap is set from its time per iteration, measured by an untimed
            {probe}-iteration probe"""


@dataclass
class Row:
    """One line of the table."""

    reg: float
    solver: str
    iterations: str
    error: float
    status: str
    times: list = field(default_factory=list)
    value: float = float("nan")
    value_linear: float = float("nan")

    @property
    def time(self):
        return statistics.median(self.times)

    @property
    def converged(self):
        return self.status == "converged"


def _process_age():
    """Seconds since this process started (Linux), else ``None``."""
    try:
        with open("/proc/self/stat") as fh:
            started = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _CompiledKernels:
    """Counts fastsinkhorn's Numba functions compiled (not loaded from the cache) meanwhile."""

    def __enter__(self):
        self.names = set()
        try:
            from numba.core import event
        except ImportError:  # no Numba: nothing can compile
            self._ctx = None
            return self
        counter = self

        class Listener(event.Listener):
            def on_start(self, ev):
                func = getattr((ev.data or {}).get("dispatcher"), "py_func", None)
                if func is not None and func.__module__.startswith("fastsinkhorn"):
                    counter.names.add(func.__qualname__)

            def on_end(self, ev):
                pass

        self._ctx = event.install_listener("numba:compile", Listener())
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def _timed(run):
    """``(times, last output)``: one run, three when it is shorter than REPEAT_BELOW."""
    times, out = [], None
    while not times or (len(times) < 3 and times[0] < REPEAT_BELOW):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return times, out


def _measured(row, plan, p):
    """Fill ``row``'s error and values from ``plan``."""
    # imported here, not at the top: the first-call line times the package's import alone
    from .bench._measure import marginal_error, plan_values

    row.error = marginal_error(plan, p.a, p.b)
    row.value, row.value_linear = plan_values(plan, p.M, p.a, p.b, row.reg)
    return row


def _phases(phases):
    names = {"sinkhorn": "Sinkhorn", "newton": "Newton"}
    return " + ".join(f"{count} {names.get(name, name)}" for name, count in phases.items() if count) or "0"


class _TimeBudget:
    """``solve``'s callback: stops the solve once it has run ``seconds``."""

    def __init__(self, seconds):
        self.seconds, self.hit = seconds, False

    def __call__(self, state):
        if state.elapsed > self.seconds:
            self.hit = True
            raise StopIteration


def our_rows(p, regs, method, tol, max_iter, budget=float("inf")):
    """Our solve at each reg: its first call (untimed here), then the timed runs,
    each stopped after ``budget`` seconds.

    Returns
    -------
    rows : list of Row
    first : list of (reg, first-call seconds, start-up seconds, kernels compiled)
    """
    rows, first = [], []
    for reg in regs:
        stop = _TimeBudget(budget)

        def run(reg=reg, stop=stop):
            stop.hit = False
            return solve(p.M, p.a, p.b, reg=reg, method=method, tol=tol, max_iter=max_iter, callback=stop)

        with warnings.catch_warnings(), _CompiledKernels() as compiled:
            warnings.simplefilter("ignore")  # non-convergence is reported in the table
            start = time.perf_counter()
            run()
            first_time = time.perf_counter() - start
            times, res = _timed(run)
        first.append((reg, first_time, max(first_time - statistics.median(times), 0.0),
                      len(compiled.names)))
        name = f"fastsinkhorn {method}" + (f" ({res.method})" if method == "auto" else "")
        row = _measured(Row(reg, name, _phases(res.n_iter_phases), 0.0, "", times), res.plan, p)
        row.status = "converged" if row.error <= tol else \
            "NOT converged (" + ("time budget" if stop.hit else "max_iter") + ")"
        rows.append(row)
    return rows, first


def _import_pot():
    """``(ot module, import seconds)``, or ``(None, None)`` when POT is not installed."""
    start = time.perf_counter()
    try:
        import ot
    except ImportError:
        return None, None
    return ot, time.perf_counter() - start


def peer_rows(p, reg, tol, max_iter, budget, peers):
    """Each peer at ``reg``: an untimed probe sets its iteration cap from ``budget``.

    Returns
    -------
    rows : list of Row
    untimed : float
        Seconds of the untimed set-up and probe runs.
    """
    from .bench._solvers import SOLVERS

    rows, untimed = [], 0.0
    for peer in peers:
        label, adapter = PEERS[peer]
        run = SOLVERS[adapter].run
        t0 = time.perf_counter()
        run(p.M, p.a, p.b, reg, tol, 1)  # the set-up (the kernel) and one iteration
        t1 = time.perf_counter()
        run(p.M, p.a, p.b, reg, tol, 1 + PROBE_ITER)
        t2 = time.perf_counter()
        untimed += t2 - t0
        per_iteration = max((t2 - t1) - (t1 - t0), 1e-9) / PROBE_ITER
        cap = int(min(max_iter, max(1 + PROBE_ITER, (budget - (t1 - t0)) / per_iteration)))
        times, out = _timed(lambda run=run, cap=cap: run(p.M, p.a, p.b, reg, tol, cap))
        row = _measured(Row(reg, label, "", 0.0, "", times), out.plan, p)
        row.status = _peer_status(row.error, tol, out.n_iter, cap, max_iter)
        n_iter = out.n_iter if out.n_iter >= 0 else (cap if not row.converged else None)
        row.iterations = "n/a (not reported)" if n_iter is None else f"{n_iter} Sinkhorn"
        rows.append(row)
    return rows, untimed


def _peer_status(error, tol, n_iter, cap, max_iter):
    """Why a peer's run ended where it did.

    Meeting its own stopping rule implies L1 <= tol (that is how its threshold
    was chosen), so a run above tol either used its whole iteration cap or
    stopped on its own (numerical errors); ``n_iter < 0``: not reported.
    """
    if error <= tol:
        return "converged"
    if not np.isfinite(error):
        return "NOT converged (NaN plan)"
    if 0 <= n_iter < cap:
        return "NOT converged (stopped itself)"
    return "NOT converged (" + ("time budget" if cap < max_iter else "max_iter") + ")"


def format_table(rows):
    """The rows as aligned text, with the ratio to our time on the same reg."""
    ours = {r.reg: r.time for r in rows if r.solver.startswith("fastsinkhorn")}
    header = ("reg", "solver", "iterations", "L1 error", "status", "time [s]", "vs ours", "value", "<M, P>")
    cells = [header]
    for r in rows:
        ratio = r.time / ours[r.reg] if ours.get(r.reg) else None
        vs = "-" if r.solver.startswith("fastsinkhorn") or ratio is None else \
            (f"{ratio:.1f}x" if r.converged else f">{ratio:.0f}x")
        cells.append((f"{r.reg:.0e}", r.solver, r.iterations, f"{r.error:.1e}", r.status, f"{r.time:.3f}", vs,
                      f"{r.value:.10f}", f"{r.value_linear:.10f}"))
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = {0, 3, 5, 6, 7, 8}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def _first_call_lines(age, first, pot_import, pot_first):
    lines = []
    if age is not None:
        lines.append(f"  Python start-up + import fastsinkhorn: {age:.2f} s")
    for i, (reg, seconds, startup, compiled) in enumerate(first):
        what = (f"compiled {compiled} kernels: Numba's cache was empty (once after install)" if compiled
                else "Numba's import and kernel cache load" if i == 0 else "loading the kernels it adds")
        lines.append(f"  first solve at reg {reg:.0e}: {seconds:.2f} s, of which {startup:.2f} s "
                     f"first-call cost ({what})")
    if pot_import is not None:
        lines.append(f"  import ot: {pot_import:.2f} s (NumPy already loaded); POT's untimed set-up "
                     f"and probe runs: {pot_first:.2f} s in all")
    return ["first call (not in the table):"] + lines


def build_parser():
    """The argument parser of ``python -m fastsinkhorn``."""
    parser = argparse.ArgumentParser(prog="python -m fastsinkhorn", description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cloud", choices=FAMILIES)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--reg", type=float, nargs="+", default=[1e-2, 1e-3])
    parser.add_argument("--method", default="auto", help="our method: auto, sinkhorn or sns")
    parser.add_argument("--tol", type=float, default=default_tol(np.float64),
                        help="L1 marginal tolerance of every solver")
    parser.add_argument("--max-iter", type=int, default=MAX_ITER, help="iteration cap of every solver")
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS),
                        help=f"comma list from {','.join(PEERS)}")
    parser.add_argument("--time-budget", "--peer-time", dest="time_budget", type=float, default=2.5,
                        help="seconds each run may take, ours and each peer's (default 2.5)")
    parser.add_argument("--no-pot", action="store_true", help="skip the POT comparison")
    return parser


def main(argv=None):
    """Run the demo and print its table; return 0."""
    age = _process_age()
    args = build_parser().parse_args(argv)
    peers = [name for name in args.peers.split(",") if name]
    unknown = [name for name in peers if name not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)}")
    p = make_problem(args.family, args.n, seed=0)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"fastsinkhorn demo: {p.name} ({p.M.shape[0]} x {p.M.shape[1]}, float64, max M = {p.M.max():g}), "
          f"L1 tol {args.tol:g}, max_iter {args.max_iter}; {os.cpu_count()} cores{load}")
    rows, first = our_rows(p, args.reg, args.method, args.tol, args.max_iter, args.time_budget)
    ot, pot_import = (None, None) if args.no_pot else _import_pot()
    pot_first = 0.0
    if ot is not None:
        for reg in args.reg:
            peer, untimed = peer_rows(p, reg, args.tol, args.max_iter, args.time_budget, peers)
            rows += peer
            pot_first += untimed
    rows.sort(key=lambda r: -r.reg)  # stable: ours first within each reg
    print("\n".join(_first_call_lines(age, first, pot_import, pot_first)) + "\n")
    print(format_table(rows))
    print()
    print(LEGEND.format(repeat=REPEAT_BELOW, max_iter=args.max_iter, budget=args.time_budget, probe=PROBE_ITER))
    if not args.no_pot and ot is None:
        print("\n(POT not installed: pip install pot for the comparison)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
