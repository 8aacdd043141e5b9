"""Full solves to L1 marginal error 1e-9: family x method x backend, peers alongside.

Every solver goes through the adapters of ``python -m fastsinkhorn.bench``
(same tolerance conversion for peers), and each benchmark's ``extra_info``
holds the iterations, the L1 error recomputed from the returned plan and
``converged``, so no time stands apart from its accuracy. Peers share the
group of the problem they solve.
"""

import numpy as np
import pytest

import fastsinkhorn
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
        _check_peer(solver_name, out, problem, reg, error, max_iter)
    else:
        assert error <= TOL, f"{solver_name} stopped at L1 error {error:.2e}"


def _check_peer(name, out, problem, reg, error, max_iter):
    """A peer's answer is right where it meets the tolerance: its cost
    ``<M, P>`` is the entropic optimum's (a reference solve to 1e-12; the two
    plans differ by about the L1 error, so the costs by about ``max|M|`` times
    it). Elsewhere it stopped short legitimately: at its iteration cap, or
    POT's scaling-domain Sinkhorn on its numerical errors (underflow at small
    ``reg``); the record holds its error either way."""
    P = np.asarray(out.plan, dtype=np.float64)
    assert P.shape == problem.M.shape
    if error <= TOL:
        ref = fastsinkhorn.solve(problem.M, problem.a, problem.b, reg=reg, tol=1e-12, max_iter=100_000)
        scale = float(np.abs(problem.M).max())
        assert abs(float((problem.M * P).sum()) - float(ref.value_linear)) <= 1e3 * TOL * scale, \
            f"{name} met tol but its cost is not the entropic optimum's"
    else:
        assert out.n_iter >= max_iter or name == "pot-sinkhorn", \
            f"{name} stopped at L1 error {error:.2e} after {out.n_iter} of {max_iter} iterations"


@pytest.mark.parametrize("solver_name, options", CASES)
@pytest.mark.parametrize("family", FAMILIES)
def test_solve(benchmark, family, solver_name, options, solve_size, reg):
    _bench_solve(benchmark, solver_name, options, family, solve_size, reg, MAX_ITER)


@pytest.mark.parametrize("solver_name, options", HARD_CASES)
@pytest.mark.parametrize("family", HARD_FAMILIES)
def test_solve_small_reg(benchmark, family, solver_name, options, hard_size, hard_reg):
    """Near-permutation plans and rough histograms; peers capped at 5000 iterations."""
    _bench_solve(benchmark, solver_name, options, family, hard_size, hard_reg, 5000)
