"""Where the compiled small-problem SNS stops paying: it against the Python driver.

    python benchmarks/small_crossover.py [--sizes 64 128 192 256 320 384] [--regs 1e-3 1e-4]

For uniform random costs and ``cloud`` problems of each size and ``reg``,
``fastsinkhorn.solve(M, a, b, reg=reg, tol=1e-9)`` with the compiled path
forced on (``SMALL_MAX_SIDE`` raised) and forced off (0), in one process,
best of 3 after one untimed call; prints a markdown table with each one's
time, its warm-up and Newton iterations, and the ratio. The threshold
``fastsinkhorn.algorithms.sns.small.SMALL_MAX_SIDE`` is read off this table
(benchmarks/RESULTS.md, section 18).
"""

import argparse
import time

import numpy as np

import fastsinkhorn as fs
from fastsinkhorn.algorithms.sns import small
from fastsinkhorn.problems import make_problem


def best_of(run, repeats=3):
    """``(seconds, result)``: the fastest of ``repeats`` timed calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def problem(family, n):
    if family == "uniform":
        rng = np.random.default_rng(n)
        return rng.random((n, n)), np.full(n, 1 / n), np.full(n, 1 / n)
    p = make_problem(family, n, seed=0)
    return p.M, p.a, p.b


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192, 256, 320, 384])
    parser.add_argument("--regs", type=float, nargs="+", default=[1e-3, 1e-4])
    parser.add_argument("--families", nargs="+", default=["uniform", "cloud"])
    args = parser.parse_args(argv)
    threshold = small.SMALL_MAX_SIDE
    print("| problem | n | reg | compiled [ms] (warm-up+Newton) | driver [ms] | driver / compiled |")
    print("|---|---|---|---|---|---|")
    try:
        for family in args.families:
            for n in args.sizes:
                for reg in args.regs:
                    M, a, b = problem(family, n)
                    timings = []
                    for side in (10**6, 0):
                        small.SMALL_MAX_SIDE = side

                        def run():
                            return fs.solve(M, a, b, reg=reg, tol=1e-9)

                        run()
                        seconds, res = best_of(run)
                        phases = res.n_iter_phases
                        timings.append((seconds, f"{phases['sinkhorn']}+{phases['newton']}"))
                    (t_small, it_small), (t_driver, it_driver) = timings
                    print(f"| {family} | {n} | {reg:g} | {t_small * 1e3:.1f} ({it_small}) | "
                          f"{t_driver * 1e3:.1f} ({it_driver}) | {t_driver / t_small:.2f} |", flush=True)
    finally:
        small.SMALL_MAX_SIDE = threshold


if __name__ == "__main__":
    main()
