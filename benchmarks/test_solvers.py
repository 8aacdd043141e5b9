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
from fastsinkhorn.problems import FAMILIES, make_problem

TOL = 1e-9
MAX_ITER = 100_000

CASES = [
    *(pytest.param(f"fastsinkhorn-{method}", {"backend": backend}, id=f"{method}-{backend}")
      for method in ("sinkhorn", "sns", "auto") for backend in ("reference", "cpu")),
    *(pytest.param(name, {}, id=name)
      for name in ("pot-sinkhorn", "pot-sinkhorn_log", "regot-ssns", "regot-bcd")),
]


@pytest.mark.parametrize("solver_name, options", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_solve(benchmark, family, solver_name, options, solve_size, reg):
    solver = SOLVERS[solver_name]
    for module in solver.requires:
        pytest.importorskip(module)
    problem = make_problem(family, solve_size, seed=0)
    inputs = solver.prepare(problem.M, problem.a, problem.b, **options)
    solver.warm_up(family, reg, TOL, inputs=inputs, **options)  # JIT compilation is never timed

    benchmark.group = f"solve {problem.name} reg={reg:g}"
    out = benchmark.pedantic(solver.run, args=(*inputs, reg, TOL, MAX_ITER), kwargs=options,
                             rounds=3, iterations=1)
    error = marginal_error(out.plan, problem.a, problem.b)
    benchmark.extra_info.update(n_iter=out.n_iter, error=error, converged=bool(error <= TOL),
                                **{k: v for k, v in out.info.items() if k == "n_iter_phases"})
    if solver.peer:
        # peers may legitimately fail (POT's scaling Sinkhorn underflows at small reg)
        assert out.n_iter > 0 and error >= 0 or np.isnan(error)
    else:
        assert error <= TOL, f"{solver_name} stopped at L1 error {error:.2e}"
