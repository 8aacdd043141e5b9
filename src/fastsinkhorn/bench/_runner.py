"""Run solvers in child processes with a time cap and measure them.

One long-lived child per solver (``spawn``, so a crash, a runaway thread pool
or a hung solver never touches the parent): it builds each problem itself
from its seed (nothing big crosses the pipe), warms up, runs the timed solve
and sends back the time, the iterations, the curve and the L1 marginal error
that *it* computes from the returned plan. A solve (or a full warm-up run)
that exceeds the cap gets its child killed and is recorded as a miss.

Messages from the child, per case: ``("ready", problem_meta)`` once the
problem is built and the tiny warm-up done (the parent never builds the
(n, m) cost: at GPU sizes it is gigabytes), ``("warm",)`` after a full
warm-up run (only for solvers that need one), then ``("done", measurement)``
or ``("crash", why)``.
"""

import ctypes
import multiprocessing
import statistics
import sys
import time
import traceback

import numpy as np

from ..core.validation import default_tol
from ..problems import make_problem
from ._measure import marginal_error, plan_values
from ._solvers import _synchronize, get_solver

#: Seconds allowed for a child to start, build the problem and do the tiny warm-up.
SETUP_TIMEOUT = 120.0
#: Most points kept per convergence curve in the results.
CURVE_POINTS = 400


def _thin(curve, points=CURVE_POINTS):
    """Keep at most ``points`` evenly spaced entries of a curve, and its end."""
    n = len(curve["error"])
    keep = sorted(set(np.linspace(0, n - 1, points).astype(int))) if n > points else range(n)
    return {key: [_finite(values[i]) for i in keep] for key, values in curve.items()}


def _finite(x):
    x = float(x)
    return x if np.isfinite(x) else None  # JSON has no nan/inf


def _status_kib(field):
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or ``None``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Reset this process's peak resident size (Linux ``clear_refs``); ``False`` if unsupported.

    Free heap memory is handed back to the system first (glibc keeps the
    buffers of the warm-up runs otherwise, and the timed run would reuse them
    unseen).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _worker_main(conn, solver_name, options):
    """Child loop: receive cases until ``None``; reply as the module docstring says."""
    solver = get_solver(solver_name)
    problems, warmed = {}, set()  # warmed: dtypes (tiny), cases (full)
    while (case := conn.recv()) is not None:
        try:
            key = (case["family"], case["n"], case["seed"], case["dtype"])
            if key not in problems:
                problems.clear()  # one problem in memory at a time
                p = make_problem(*key)
                meta = {"problem": p.name, "n": p.shape[0], "m": p.shape[1]}
                # keep a and b but not M itself: prepare() may have copied it
                problems[key] = meta, p.a, p.b, solver.prepare(p.M, p.a, p.b, **options)
                del p
            meta, a, b, inputs = problems[key]
            if case["dtype"] not in warmed:
                solver.warm_up(case["family"], case["reg"], case["tol"], case["dtype"], **options)
                warmed.add(case["dtype"])
            conn.send(("ready", meta))
            if solver.warmup == "full" and (key, case["reg"]) not in warmed:
                solver.warm_up(case["family"], case["reg"], case["tol"], case["dtype"], inputs,
                               case["max_iter"], **options)
                warmed.add((key, case["reg"]))
                conn.send(("warm",))
            # Peak memory of the timed run beyond what the process held before
            # it (the inputs, the libraries): the peak resident size is reset
            # first, so nothing is sampled and the run is not slowed.
            tracked, base = _reset_peak_rss(), _status_kib("VmRSS")
            start = time.perf_counter()
            out = solver.run(*inputs, case["reg"], case["tol"], case["max_iter"], **options)
            _synchronize(out.plan)
            elapsed = time.perf_counter() - start
            peak = _status_kib("VmHWM")
            peak_bytes = 1024 * (peak - base) if tracked and None not in (peak, base) else None
            value, value_linear = plan_values(out.plan, inputs[0], a, b, case["reg"])
            conn.send(("done", {
                "time": elapsed,
                "n_iter": int(out.n_iter),
                "error": marginal_error(out.plan, a, b),
                "value": value,
                "value_linear": value_linear,
                "curve": _thin(out.curve),
                "info": out.info,
                "peak_memory": peak_bytes,
            }))
        except Exception:
            conn.send(("crash", traceback.format_exc(limit=4)))


class Worker:
    """Parent-side handle on one solver's child process.

    Parameters
    ----------
    solver : str
        Registry name or ``"module:attr"``.
    options : dict
        Extra keyword arguments for the adapter (e.g. ``backend``).
    """

    def __init__(self, solver, options=None):
        self.solver = solver
        self.options = dict(options or {})
        self._proc = self._conn = None

    def _start(self):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker_main, args=(child, self.solver, self.options),
                                 daemon=True, name=f"bench-{self.solver}")
        self._proc.start()
        child.close()

    def _receive(self, timeout):
        """The next message, ``("timeout",)``, or ``("crash", why)``."""
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            return ("crash", f"child exited with code {self._proc.exitcode}")
        return ("timeout",)

    def solve(self, case, timeout):
        """Run one case; return ``(status, payload, meta)``.

        ``status`` is ``"done"``, ``"timeout"`` or ``"crash"``; the payload is
        the measurement dict, or a message; ``meta`` names the problem
        (``None`` if the child failed before building it). After a timeout or
        a crash the child is killed and a fresh one starts on the next call.
        """
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send(case)
        reply, meta = self._receive(SETUP_TIMEOUT), None
        if reply[0] == "timeout":
            self.close(kill=True)
            return "crash", f"set-up and warm-up took over {SETUP_TIMEOUT:g} s", meta
        while reply[0] in ("ready", "warm"):
            meta = reply[1] if reply[0] == "ready" else meta
            reply = self._receive(timeout)
        if reply[0] == "timeout":
            self.close(kill=True)
            return "timeout", f"no result within {timeout:g} s", meta
        if reply[0] == "crash":
            self.close(kill=True)
        return reply[0], reply[1], meta

    def close(self, kill=False):
        """Stop the child (politely unless ``kill``)."""
        if self._proc is None:
            return
        if not kill and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(5)
            except OSError:
                pass
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
        self._proc = self._conn = None


def run_suite(solvers, families, sizes, regs, dtypes, *, tol=None, timeout=60.0, repeats=1,
              max_iter=100_000, seed=0, options=None, progress=None):
    """Benchmark every solver on every case; return one record per (case, solver).

    Parameters
    ----------
    solvers : list of str
        Solver names (see :data:`~fastsinkhorn.bench._solvers.SOLVERS`).
    families, sizes, regs, dtypes : lists
        The cases: their Cartesian product, problems seeded by ``seed``.
    tol : float or dict or None
        Target L1 marginal error; ``None`` means ``DEFAULT_TOL`` of the dtype.
    timeout : float
        Cap in seconds on each timed solve; a solve over it is a miss.
    repeats : int
        Timed runs per (case, solver), alternating between solvers; the
        record holds their median.
    max_iter : int
        Iteration cap handed to every solver (the time cap is the real limit).
    options : dict of dict
        Extra adapter options per solver name.
    progress : callable or None
        Called with one line of text per finished run.

    Returns
    -------
    list of dict
    """
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    workers = {name: Worker(name, (options or {}).get(name)) for name in solvers}
    records, missed = [], {}
    try:
        for family in families:
            for n in sorted(sizes):  # small first: a timeout skips the larger ones
                for reg in regs:
                    for dtype in dtypes:
                        case = {"family": family, "n": int(n), "seed": seed, "dtype": dtype,
                                "reg": float(reg), "max_iter": int(max_iter),
                                "tol": _tolerance(tol, dtype)}
                        records += _run_case(case, workers, timeout, repeats, missed, progress)
    finally:
        for worker in workers.values():
            worker.close()
    return records


def _tolerance(tol, dtype):
    if tol is None:
        return default_tol(dtype)
    return float(tol[dtype]) if isinstance(tol, dict) else float(tol)


def _run_case(case, workers, timeout, repeats, missed, progress):
    """All repeats of one case, solvers alternating within each repeat."""
    base = {"problem": f"{case['family']}-{case['n']}", "family": case["family"], "n": case["n"],
            "m": None, "reg": case["reg"], "dtype": case["dtype"], "tol": case["tol"]}
    label = f"{base['problem']} reg={case['reg']:g}"
    runs = {name: [] for name in workers}
    failed = {}
    for name in workers:
        solver = get_solver(name)
        if case["dtype"] not in solver.dtypes:
            failed[name] = ("skipped", f"{name} does not support {case['dtype']}")
        elif (earlier := missed.get((name, case["family"], case["reg"], case["dtype"]))) is not None \
                and earlier < case["n"]:
            # a larger instance of a case that already timed out: a miss too
            failed[name] = ("timeout", f"not run: timed out at n={earlier}")
        if name in failed:
            progress(f"  {label} {name}: {failed[name][1]}")
    for _ in range(repeats):
        for name, worker in workers.items():
            if name in failed:
                continue
            status, payload, meta = worker.solve(case, timeout)
            if meta:  # the actual problem name and shape (grids round n to k * k)
                base.update(meta)
                label = f"{base['problem']} reg={case['reg']:g}"
            if status == "done":
                runs[name].append(payload)
                progress(f"  {label} {name}: {payload['time']:.3f} s, "
                         f"{payload['n_iter']} it, err {payload['error']:.2e}")
                continue
            failed[name] = (status, payload)
            if status == "timeout":
                missed[(name, case["family"], case["reg"], case["dtype"])] = case["n"]
            progress(f"  {label} {name}: {status.upper()} "
                     f"{payload.strip().splitlines()[-1]}")
    return [_record(base, name, get_solver(name).peer, runs[name], failed.get(name))
            for name in workers if failed.get(name, ("",))[0] != "skipped"]


def _record(base, name, peer, runs, failure):
    """One result row: the median time over repeats, or the miss."""
    record = {**base, "solver": name, "peer": peer, "times": [r["time"] for r in runs]}
    if failure is not None:
        return {**record, "status": failure[0], "message": failure[1], "time": None,
                "n_iter": None, "error": None, "converged": False, "curve": None, "info": {},
                "peak_memory": None, "value": None, "value_linear": None}
    last = runs[-1]
    converged = bool(last["error"] <= base["tol"])  # False for nan
    return {**record, "status": "ok" if converged else "not converged", "message": "",
            "time": statistics.median(record["times"]), "n_iter": last["n_iter"],
            "error": _finite(last["error"]), "converged": converged,
            "value": _finite(last["value"]), "value_linear": _finite(last["value_linear"]),
            "curve": last["curve"], "info": last["info"],
            # the largest over repeats: resident pages held on from an earlier run hide a peak
            "peak_memory": max((r["peak_memory"] for r in runs if r.get("peak_memory") is not None),
                               default=None)}
