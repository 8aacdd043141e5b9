"""Benchmark harness: time to tolerance for fastsinkhorn and its peers.

Run ``python -m fastsinkhorn.bench --help``. The protocol: every solver
runs in its own child process under a time
cap (a timeout or a crash is a miss, never a number), the L1 marginal error
``||P 1 - a||_1 + ||P^T 1 - b||_1`` is recomputed from each returned plan, and
repeats alternate between solvers so that ratios come from one run.

Examples
--------
>>> from fastsinkhorn.bench import run_suite, add_ratios    # doctest: +SKIP
>>> records = run_suite(["pot-sinkhorn", "fastsinkhorn-sns"], ["cloud"], [200],
...                     [1e-2], ["float64"], timeout=10)  # doctest: +SKIP
"""

from ._measure import marginal_error, plan_values
from ._report import add_ratios, format_table, machine_info
from ._runner import run_suite
from ._solvers import PEERS, SOLVERS, Outcome, Solver, get_solver

__all__ = [
           "PEERS",
           "SOLVERS",
           "Outcome",
           "Solver",
           "add_ratios",
           "format_table",
           "get_solver",
           "machine_info",
           "marginal_error",
           "plan_values",
           "run_suite",
]
