"""Full solves to L1 marginal error 1e-9: family x method x backend, peers alongside.

Every solver goes through the adapters of ``python -m fastsinkhorn.bench``
(same tolerance conversion for peers), and each benchmark's ``extra_info``
holds the iterations, the L1 error recomputed from the returned plan and
``converged``, so no time stands apart from its accuracy. Peers share the
group of the problem they solve.
"""

import numpy as np
import pytest

from fastsinkhorn.bench import SOLVERS, marginal_error
from fastsinkhorn.problems import FAMILIES, HARD_FAMILIES, make_problem

TOL = 1e-9
MAX_ITER = 100_000

CASES = [
    *(pytest.param(f"fastsinkhorn-{method}", {"backend": backend}, id=f"{method}-{backend}")
      for method in ("sinkhorn", "sns", "auto") for backend in ("reference", "cpu")),
    *(pytest.param(name, {}, id=name)
      for name in ("pot-sinkhorn", "pot-sinkhorn_log", "regot-ssns", "regot-bcd")),
]


#: The small-``reg`` suite: our SNS against the Newton-type peers.
HARD_CASES = [
    *(pytest.param(f"fastsinkhorn-{method}", {}, id=method) for method in ("sns", "auto")),
    *(pytest.param(name, {}, id=name) for name in ("regot-ssns", "mdot-tnt")),
]


def _bench_solve(benchmark, solver_name, options, family, n, reg, max_iter):
    """Time one solver on one problem; record iterations and the achieved error."""
    solver = SOLVERS[solver_name]
    problem = make_problem(family, n, seed=0)
    for module in solver.requires:
        pytest.importorskip(module)
    inputs = solver.prepare(problem.M, problem.a, problem.b, **options)
    solver.warm_up(family, reg, TOL, inputs=inputs, max_iter=max_iter, **options)  # JIT is never timed

    benchmark.group = f"solve {problem.name} reg={reg:g}"
    try:
        out = benchmark.pedantic(solver.run, args=(*inputs, reg, TOL, max_iter), kwargs=options,
                                 rounds=3, iterations=1)
    except RuntimeError as exc:  # a peer that gives up (MDOT-TNT before its final temperature)
        if not solver.peer:
            raise
        pytest.skip(f"{solver_name} gave up: {exc}")
    error = marginal_error(out.plan, problem.a, problem.b)
    benchmark.extra_info.update(n_iter=out.n_iter, error=error, converged=bool(error <= TOL),
                                **{k: v for k, v in out.info.items() if k == "n_iter_phases"})
    if solver.peer:
        # peers may legitimately stop short (POT's scaling Sinkhorn underflows at
        # small reg): the record holds their error; the plan must still be one
        assert out.n_iter > 0 and np.shape(out.plan) == problem.M.shape
    else:
        assert error <= TOL, f"{solver_name} stopped at L1 error {error:.2e}"


@pytest.mark.parametrize("solver_name, options", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_solve(benchmark, family, solver_name, options, solve_size, reg):
    _bench_solve(benchmark, solver_name, options, family, solve_size, reg, MAX_ITER)


@pytest.mark.parametrize("solver_name, options", HARD_CASES)
@pytest.mark.parametrize("family", HARD_FAMILIES)
def test_solve_small_reg(benchmark, family, solver_name, options, hard_size, hard_reg):
    """Near-permutation plans and rough histograms; peers capped at 5000 iterations."""
    _bench_solve(benchmark, solver_name, options, family, hard_size, hard_reg, 5000)
