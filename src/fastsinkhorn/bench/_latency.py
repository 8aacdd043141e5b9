"""First-call latency: ``import fastsinkhorn`` plus the first solve, in fresh processes.

Each measurement is a new interpreter (``python -c``, not a ``multiprocessing``
child, which would inherit the bench's own imports) that imports
fastsinkhorn, builds the problem (untimed), solves it, then solves it again:
the second solve is the work itself, so ``first - again`` is what the first
call costs on top of it (imports of Numba and SciPy, loading or compiling
kernels, starting threads).

Numba's on-disk cache is pointed at a fresh temporary directory
(``NUMBA_CACHE_DIR``, which ``cache=True`` functions honour) for each method:
the first process finds it empty, as after ``pip install``, and compiles;
the next ones load what it wrote (warm cache). The user's own cache is
neither read nor written.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

import fastsinkhorn

#: Code run by each fresh process; prints one JSON line.
CHILD = """
import json, sys, time
start = time.perf_counter()
import fastsinkhorn
imported = time.perf_counter()
from fastsinkhorn.problems import make_problem
case = json.loads(sys.argv[1])
p = make_problem(case["family"], case["n"], seed=case["seed"])
args = dict(reg=case["reg"], method=case["method"], backend=case["backend"])
t0 = time.perf_counter()
res = fastsinkhorn.solve(p.M, p.a, p.b, **args)
t1 = time.perf_counter()
fastsinkhorn.solve(p.M, p.a, p.b, **args)
t2 = time.perf_counter()
print(json.dumps({"import": imported - start, "first": t1 - t0, "again": t2 - t1,
                  "method": res.method, "backend": res.backend, "n_iter": int(res.n_iter),
                  "converged": bool(res.converged)}))
"""


def _kernels_cached(cache_dir):
    """Numba cache index files (one per compiled function) under ``cache_dir``."""
    return sum(name.endswith(".nbi") for _, _, files in os.walk(cache_dir) for name in files)


def first_call(case, cache_dir, timeout=300.0):
    """Run one fresh process on ``case`` with Numba's cache in ``cache_dir``.

    Parameters
    ----------
    case : dict
        ``family``, ``n``, ``seed``, ``reg``, ``method``, ``backend``.
    cache_dir : str
        ``NUMBA_CACHE_DIR`` of the process.
    timeout : float
        Seconds before the process is killed (``subprocess.TimeoutExpired``).

    Returns
    -------
    dict
        ``import``, ``first`` and ``again`` (seconds), ``total`` (import +
        first), ``overhead`` (first - again), the method and backend that
        ran, and ``compiled``: the functions it added to the cache.
    """
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastsinkhorn.__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    before = _kernels_cached(cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], env=env, timeout=timeout,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"latency child failed:\n{out.stderr.strip()}")
    m = json.loads(out.stdout.strip().splitlines()[-1])
    return {**m, "total": m["import"] + m["first"], "overhead": m["first"] - m["again"],
            "compiled": _kernels_cached(cache_dir) - before}


def run_latency(methods, family="cloud", n=1000, reg=0.05, *, repeats=3, backend="auto", seed=0,
                timeout=300.0, progress=None):
    """Measure the first call of each method, cache empty then warm.

    Parameters
    ----------
    methods : list of str
        ``solve`` methods (``"auto"``, ``"sinkhorn"``, ``"sns"``).
    family, n, reg, seed
        The problem (:func:`~fastsinkhorn.problems.make_problem`) and ``reg``.
    repeats : int
        Fresh processes per method and cache state (each empty-cache run gets
        its own empty directory); the records hold their medians.
    backend : str
        ``solve``'s backend.
    timeout : float
        Cap in seconds on each process.
    progress : callable or None
        Called with one line of text per process.

    Returns
    -------
    list of dict
        One record per (method, cache state): ``cache`` (``"empty"`` or
        ``"warm"``), the medians of :func:`first_call`'s times, ``runs`` (every
        run), ``compiled`` (functions compiled and cached by each process:
        none with a warm cache).
    """
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    records = []
    for method in methods:
        case = {"family": family, "n": int(n), "seed": seed, "reg": float(reg), "method": method,
                "backend": backend}
        runs = {"empty": [], "warm": []}
        with tempfile.TemporaryDirectory(prefix="fastsinkhorn-latency-") as root:
            for i in range(repeats):
                cold_dir = os.path.join(root, f"cache{i}")
                for cache in ("empty", "warm"):  # the warm run loads what the empty one wrote
                    run = first_call(case, cold_dir, timeout)
                    runs[cache].append(run)
                    progress(f"  latency {family}-{n} reg={reg:g} {method} ({cache} cache): "
                             f"import {run['import']:.3f} s + first solve {run['first']:.3f} s "
                             f"(again: {run['again']:.3f} s)")
        for cache, rs in runs.items():
            records.append({
                **case, "cache": cache, "solved_by": rs[-1]["method"], "runs": rs,
                **{key: statistics.median(r[key] for r in rs)
                   for key in ("import", "first", "again", "total", "overhead")},
                "compiled": max(r["compiled"] for r in rs), "converged": all(r["converged"] for r in rs)})
    return records


LATENCY_COLUMNS = ("problem", "reg", "method", "cache", "import [s]", "first solve [s]",
                   "import + first [s]", "solve again [s]", "compiled")


def latency_rows(records):
    """The latency table as rows of strings (header first)."""
    return [LATENCY_COLUMNS] + [(
        f"{r['family']}-{r['n']}", f"{r['reg']:g}",
        r["method"] + (f" ({r['solved_by']})" if r["solved_by"] != r["method"] else ""),
        r["cache"], f"{r['import']:.3f}", f"{r['first']:.3f}", f"{r['total']:.3f}",
        f"{r['again']:.3f}", str(r["compiled"])) for r in records]
