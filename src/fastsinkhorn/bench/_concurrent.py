"""Concurrent solves: K fresh processes solving together, against one alone.

What a Dask worker, a pytest-xdist run or a shared cluster node sees: other
processes (or ours) on the same cores. For each case, each round runs

1. one fresh process alone, then
2. ``K`` fresh processes started together (and ``hogs`` processes that spin
   on one core each, from before the first solve to the end),

back to back, so that the load of the rest of the machine is about the same
for both. Each process imports fastsinkhorn, builds the problem, says it is
ready and waits; when all are ready they are released at once, and each
times its first solve (loading the kernels from Numba's cache, starting
threads) and then ``STEADY_SOLVES`` more (their median: the steady time).
The ratios are each concurrent process's times over the alone process's of
the same round; the worst over processes and rounds is what a user can
count on. One untimed process per case first fills Numba's cache, so no
timed process compiles.
"""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

import fastsinkhorn

#: Solves after the first one in each process; their median is the steady time.
STEADY_SOLVES = 5

#: Code run by each solving process: "ready" once built, then (after a line on
#: stdin) one JSON line of times.
CHILD = """
import json, sys, time
import fastsinkhorn
from fastsinkhorn.problems import make_problem
case = json.loads(sys.argv[1])
p = make_problem(case["family"], case["n"], seed=case["seed"])
args = dict(reg=case["reg"], method=case["method"], backend=case["backend"])
print("ready", flush=True)
sys.stdin.readline()
times = []
for _ in range(1 + case["steady"]):
    t0 = time.perf_counter()
    res = fastsinkhorn.solve(p.M, p.a, p.b, **args)
    times.append(time.perf_counter() - t0)
import numba
print(json.dumps({"first": times[0], "steady_times": times[1:], "method": res.method,
                  "n_iter": int(res.n_iter), "converged": bool(res.converged),
                  "threads": numba.get_num_threads()}), flush=True)
"""
#: A process that keeps one core busy, until its parent is gone.
HOG = """
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(100000):
        pass
"""


def _env():
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastsinkhorn.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))


def run_together(case, k, hogs=0, timeout=300.0):
    """Start ``k`` solving processes (and ``hogs`` spinning ones), release them
    together, and return each solver's measurement.

    Parameters
    ----------
    case : dict
        ``family``, ``n``, ``seed``, ``reg``, ``method``, ``backend``, ``steady``.
    k : int
        Solving processes.
    hogs : int
        Processes spinning on one core each while the solvers run.
    timeout : float
        Seconds for all of it; then every process is killed
        (``subprocess.TimeoutExpired``).

    Returns
    -------
    list of dict
        Per solving process: ``first`` and ``steady`` (median of the later
        solves) in seconds, ``steady_times``, ``method``, ``n_iter``,
        ``converged``, ``threads`` (Numba's count in that process).
    """
    env = _env()
    with contextlib.ExitStack() as stack:
        # stderr to files: a full pipe would block a child
        errs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(k)]
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(case)], env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
                 for err in errs]
        spinners = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
        stack.callback(_stop, procs + spinners)

        def failed(i):
            procs[i].wait(timeout)
            errs[i].seek(0)
            return RuntimeError(f"concurrent child failed:\n{errs[i].read().strip()}")

        for i, p in enumerate(procs):
            if p.stdout.readline().strip() != "ready":
                raise failed(i)
        for p in procs:  # all built: release them together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for i, p in enumerate(procs):
            out, _ = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise failed(i)
            m = json.loads(out.strip().splitlines()[-1])
            results.append({**m, "steady": statistics.median(m["steady_times"]) if m["steady_times"]
                            else None})
        return results


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for pipe in (p.stdin, p.stdout):
            if pipe is not None:
                pipe.close()


def run_concurrent(methods, family="cloud", sizes=(64, 256, 1000), regs=(1e-2, 1e-3), *, k=2, hogs=0,
                   repeats=3, backend="auto", seed=0, timeout=300.0, steady=STEADY_SOLVES,
                   progress=None):
    """Measure every case alone and with ``k`` processes together (plus ``hogs``).

    Parameters
    ----------
    methods : list of str
        ``solve`` methods.
    family, sizes, regs, seed
        The problems (:func:`~fastsinkhorn.problems.make_problem`) and ``reg`` values.
    k, hogs : int
        Solving and spinning processes of the concurrent runs.
    repeats : int
        Rounds of (alone, together), back to back.
    backend : str
        ``solve``'s backend.
    timeout : float
        Cap in seconds on each run of processes.
    steady : int
        Solves after the first in each process.
    progress : callable or None
        Called with one line of text per run.

    Returns
    -------
    list of dict
        One record per case: the case, ``k``, ``hogs``, ``rounds`` (each with
        ``alone`` and ``together`` measurements, ``load_avg`` before it),
        ``alone_first``/``alone_steady`` (medians over rounds),
        ``together_first``/``together_steady`` (worst over processes and
        rounds), ``median_first_ratio``, ``max_first_ratio``,
        ``median_steady_ratio``, ``max_steady_ratio`` (of each process over
        the alone process of its round) and ``converged``.
    """
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    records = []
    for method in methods:
        for n in sizes:
            for reg in regs:
                case = {"family": family, "n": int(n), "seed": seed, "reg": float(reg), "method": method,
                        "backend": backend, "steady": int(steady)}
                run_together({**case, "steady": 0}, 1, timeout=timeout)  # fills Numba's cache
                rounds = []
                for _ in range(repeats):
                    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
                    alone = run_together(case, 1, timeout=timeout)[0]
                    together = run_together(case, k, hogs, timeout=timeout)
                    rounds.append({"load_avg": load, "alone": alone, "together": together})
                    progress(f"  concurrent {family}-{n} reg={reg:g} {method}: alone "
                             f"{alone['first']:.3f}/{alone['steady']:.4f} s, {k} together "
                             + " ".join(f"{t['first']:.3f}/{t['steady']:.4f}" for t in together)
                             + (f" (+{hogs} hogs)" if hogs else "") + " (first/steady)")
                records.append(_summary(case, k, hogs, rounds))
    return records


def _summary(case, k, hogs, rounds):
    ratios = {key: [t[key] / r["alone"][key] for r in rounds for t in r["together"]]
              for key in ("first", "steady")}
    together = [t for r in rounds for t in r["together"]]
    alone = [r["alone"] for r in rounds]
    return {**case, "k": k, "hogs": hogs, "rounds": rounds, "solved_by": alone[-1]["method"],
            "alone_first": statistics.median(a["first"] for a in alone),
            "alone_steady": statistics.median(a["steady"] for a in alone),
            "together_first": max(t["first"] for t in together),
            "together_steady": max(t["steady"] for t in together),
            **{f"{stat.__name__}_{key}_ratio": stat(values) for key, values in ratios.items()
               for stat in (statistics.median, max)},
            "converged": all(x["converged"] for x in alone + together)}


CONCURRENT_COLUMNS = ("problem", "reg", "method", "processes", "alone first [s]", "alone steady [s]",
                      "together first [s]", "together steady [s]", "first ratio", "steady ratio")


def concurrent_rows(records):
    """The concurrent table as rows of strings (header first).

    Alone: median over rounds (range); together: the slowest process of all
    rounds; ratios: median over processes and rounds (the worst).
    """
    def spread(r, key):
        values = [x["alone"][key] for x in r["rounds"]]
        return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"

    return [CONCURRENT_COLUMNS] + [(
        f"{r['family']}-{r['n']}", f"{r['reg']:g}",
        r["method"] + (f" ({r['solved_by']})" if r["solved_by"] != r["method"] else ""),
        f"{r['k']}" + (f" + {r['hogs']} hog{'s' if r['hogs'] > 1 else ''}" if r["hogs"] else ""),
        spread(r, "first"), spread(r, "steady"), f"{r['together_first']:.3g}",
        f"{r['together_steady']:.3g}", f"{r['median_first_ratio']:.2f}x ({r['max_first_ratio']:.2f}x)",
        f"{r['median_steady_ratio']:.2f}x ({r['max_steady_ratio']:.2f}x)") for r in records]
