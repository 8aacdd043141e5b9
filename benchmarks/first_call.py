"""Where the first call's time goes: import + first solve in fresh processes.

    python benchmarks/first_call.py [--repeats 5] [--aot]

Each row is the median over ``--repeats`` fresh Python processes (warm
on-disk caches: every process after a first untimed one loads Numba's cache)
of one step, timed inside the child:

* ``numpy``: ``import numpy`` (the floor of any NumPy library);
* ``numba import``: ``import numba`` after NumPy (Numba imports SciPy's BLAS
  bindings at import when SciPy is installed);
* ``numba first cached call``: the first call of a one-line
  ``@njit(cache=True)`` function loaded from its cache (Numba builds its CPU
  target, typing and lowering registries on the first dispatch of a process);
* ``import fastsinkhorn``: after NumPy (Numba is imported lazily);
* ``first solve``: the first ``fastsinkhorn.solve`` after the import, for a
  small SNS problem (n = 100, reg 1e-3) and a Sinkhorn one (n = 1000,
  reg 5e-2), and the second solve of the same process for comparison;
* with ``--aot``: the same trivial function compiled ahead of time by
  ``numba.pycc`` into an extension module (built once, untimed): its import
  and first call, with no Numba at run time.

Prints a markdown table (for benchmarks/RESULTS.md).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

_TRIVIAL = textwrap.dedent("""
    from numba import njit

    @njit(cache=True)
    def plus_one(x):
        return x + 1.0
""")

_AOT_BUILD = textwrap.dedent("""
    from numba.pycc import CC

    cc = CC("aot_trivial")

    @cc.export("plus_one", "f8(f8)")
    def plus_one(x):
        return x + 1.0

    cc.compile()
""")

_CHILDREN = {
    "numba": textwrap.dedent("""
        import time
        t0 = time.perf_counter(); import numpy; t1 = time.perf_counter()
        import numba; t2 = time.perf_counter()
        import trivial; trivial.plus_one(1.0); t3 = time.perf_counter()
        print({"numpy": t1 - t0, "numba import": t2 - t1, "numba first cached call": t3 - t2})
    """),
    "solve": textwrap.dedent("""
        import time, sys
        t0 = time.perf_counter(); import numpy as np; t1 = time.perf_counter()
        import fastsinkhorn as fs; t2 = time.perf_counter()
        n, reg = int(sys.argv[1]), float(sys.argv[2])
        M = np.random.default_rng(0).random((n, n))
        t3 = time.perf_counter(); r = fs.solve(M, reg=reg, tol=1e-9); t4 = time.perf_counter()
        fs.solve(M, reg=reg, tol=1e-9); t5 = time.perf_counter()
        key = f"n={n} reg={reg:g} ({r.method})"
        print({"import fastsinkhorn": t2 - t1, f"first solve, {key}": t4 - t3,
               f"second solve, {key}": t5 - t4, f"import + first solve, {key}": t4 - t1})
    """),
    "aot": textwrap.dedent("""
        import time, sys
        import numpy
        t0 = time.perf_counter(); import aot_trivial; aot_trivial.plus_one(1.0); t1 = time.perf_counter()
        print({"AOT (numba.pycc) import + first call": t1 - t0, "numba loaded by it": float("numba" in sys.modules)})
    """),
}


def _child(code, cwd, *args):
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [cwd, os.environ.get("PYTHONPATH", "")])})
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--aot", action="store_true", help="also build and time a numba.pycc module")
    args = parser.parse_args(argv)
    runs = [("numba", ()), ("solve", (100, 1e-3)), ("solve", (1000, 5e-2))]
    with tempfile.TemporaryDirectory(prefix="fastsinkhorn-first-call-") as work:
        with open(os.path.join(work, "trivial.py"), "w") as fh:
            fh.write(_TRIVIAL)
        if args.aot:
            subprocess.run([sys.executable, "-c", _AOT_BUILD], cwd=work, check=True, capture_output=True)
            runs.append(("aot", ()))
        samples = {}
        for name, extra in runs:
            _child(_CHILDREN[name], work, *extra)  # fills the caches: not timed
            for _ in range(args.repeats):
                for key, value in _child(_CHILDREN[name], work, *extra).items():
                    samples.setdefault(key, []).append(value)
    print(f"\n| step (median of {args.repeats} fresh processes, warm caches) | seconds |")
    print("|---|---|")
    for key, values in samples.items():
        shown = f"{statistics.median(values):.3f}" if "loaded" not in key else str(bool(values[0]))
        print(f"| {key} | {shown} |")


if __name__ == "__main__":
    main()
