"""Convergence bookkeeping shared by all methods: history, callback, verbose."""

import time
from dataclasses import dataclass

from .result import Status


@dataclass(frozen=True)
class IterationState:
    """What ``callback(state)`` receives at each convergence check."""

    iteration: int
    error: float
    phase: str
    elapsed: float
    extra: dict


class Monitor:
    """Records each convergence check and decides whether to stop.

    Parameters
    ----------
    tol : float
        Stop once the checked error is ``<= tol``.
    callback : callable or None
        Called with an :class:`IterationState` at each check that does not
        meet its tolerance (never at the one that does); ``StopIteration``
        stops.
    verbose : bool
        Print one line per check.
    """

    def __init__(self, tol, callback=None, verbose=False):
        self.tol = tol
        self.callback = callback
        self.verbose = verbose
        self.start = time.perf_counter()
        self.history = {"iteration": [], "error": [], "time": [], "phase": []}
        self._printed_header = False

    def elapsed(self):
        return time.perf_counter() - self.start

    def check(self, iteration, error, phase, tol=None, **extra):
        """Record a check; return the :class:`Status` to stop with, or ``None``.

        ``tol`` overrides the solve's tolerance for this check (a phase that
        hands over early, like the SNS warm-up, stops at its own threshold).
        """
        elapsed = self.elapsed()
        h = self.history
        for key, value in (("iteration", iteration), ("error", error), ("time", elapsed), ("phase", phase)):
            h[key].append(value)
        for key, value in extra.items():
            # SNS-only columns: pad earlier (Sinkhorn) rows so all lists align
            column = h.setdefault(key, [None] * (len(h["iteration"]) - 1))
            column.append(value)
        for column in h.values():
            if len(column) < len(h["iteration"]):
                column.append(None)
        if self.verbose:
            self._print(iteration, error, phase, elapsed, extra)
        if error <= (self.tol if tol is None else tol):
            return Status.CONVERGED
        if self.callback is not None:
            try:
                self.callback(IterationState(iteration, error, phase, elapsed, dict(extra)))
            except StopIteration:
                return Status.CALLBACK
        return None

    def _print(self, iteration, error, phase, elapsed, extra):
        if not self._printed_header:
            print(f"{'iter':>7} {'phase':>9} {'error':>11} {'time[s]':>9}  details")
            self._printed_header = True
        details = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
        print(f"{iteration:7d} {phase:>9} {error:11.3e} {elapsed:9.3f}  {details}")
