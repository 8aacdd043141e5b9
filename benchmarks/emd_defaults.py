"""``emd2`` with default arguments, fastsinkhorn's against POT's, on 2-D point clouds.

    python benchmarks/emd_defaults.py [--sizes 1000 1500 2000 3000] [--seeds 0 1 2]
                                      [--clouds uniform gaussian] [--json out.json]

Clouds: ``uniform`` (both clouds uniform on the unit square) and ``gaussian``
(standard normal clouds, the second shifted by (1, 1)); ``M = ot.dist(x, y)``
(squared Euclidean), uniform weights. Both drop-ins run as a user calls them,
``emd2(a, b, M)`` with every argument at its default (POT's ``numItermax`` is
100000); the reference value is POT's network simplex run to optimality
(``numItermax=1e8``, result code 1). Per case: each solver's time, its value's
relative difference from the reference and whether it warned. One process,
both solvers compiled and warmed up first, their order alternating from one
case to the next; the load average is printed with each case.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np


def clouds(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, 2)), rng.random((n, 2))
    return rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0


def timed_emd2(fn, M):
    """``(seconds, value, warned)`` of ``fn([], [], M)`` with its defaults."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        value = float(fn([], [], M))
        seconds = time.perf_counter() - start
    return seconds, value, any("numItermax" in str(w.message) for w in caught)


def main(argv=None):
    import ot

    import fastsinkhorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1500, 2000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clouds", nargs="+", choices=["uniform", "gaussian"], default=["uniform", "gaussian"])
    parser.add_argument("--json", help="also write the raw measurements here")
    args = parser.parse_args(argv)

    solvers = {"fastsinkhorn": fastsinkhorn.emd2, "pot": ot.emd2}
    warm = ot.dist(*clouds("gaussian", 300, 99))
    for fn in solvers.values():  # imports and compilation, never timed
        fn([], [], warm)
    print("| cloud | n | seed | ours (s) | POT (s) | ours rel. diff | POT rel. diff | ours warned | POT warned "
          "| load avg |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    raw = []
    for case, (n, kind, seed) in enumerate((n, k, s) for n in args.sizes for k in args.clouds for s in args.seeds):
        M = ot.dist(*clouds(kind, n, seed))
        G, log = ot.emd([], [], M, numItermax=10**8, log=True)
        assert log["result_code"] == 1, log["warning"]
        reference = float(log["cost"])
        del G
        load = os.getloadavg()[0]
        order = list(solvers) if case % 2 == 0 else list(solvers)[::-1]
        out = {name: timed_emd2(solvers[name], M) for name in order}
        raw.append({"cloud": kind, "n": n, "seed": seed, "reference": reference, "load": load,
                    **{k: dict(zip(("time", "value", "warned"), v)) for k, v in out.items()}})
        (t_ours, v_ours, w_ours), (t_pot, v_pot, w_pot) = out["fastsinkhorn"], out["pot"]
        rel = [abs(v - reference) / reference for v in (v_ours, v_pot)]
        print(f"| {kind} | {n} | {seed} | {t_ours:.2f} | {t_pot:.2f} | {rel[0]:.1e} | {rel[1]:.1e} "
              f"| {'yes' if w_ours else 'no'} | {'yes' if w_pot else 'no'} | {load:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
