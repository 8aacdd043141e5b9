"""Convergence bookkeeping (``fastsinkhorn.core.monitor.Monitor``): stop decisions, history, callback, verbose."""

import pytest

from fastsinkhorn import Status
from fastsinkhorn.core.monitor import IterationState, Monitor


def test_stops_at_the_tolerance_inclusive_and_per_check_override():
    mon = Monitor(1e-3)
    assert mon.check(1, 2e-3, "sinkhorn") is None
    assert mon.check(2, 1e-3, "sinkhorn") is Status.CONVERGED  # error == tol converges
    assert mon.check(3, 0.5, "sinkhorn", tol=0.5) is Status.CONVERGED  # the override wins...
    assert mon.check(4, 1e-4, "sinkhorn", tol=1e-5) is None  # ...both ways
    assert mon.history["error"] == [2e-3, 1e-3, 0.5, 1e-4]
    assert mon.history["iteration"] == [1, 2, 3, 4]


def test_history_columns_stay_aligned_when_extra_columns_appear_and_vanish():
    mon = Monitor(0.0)
    mon.check(1, 0.5, "sinkhorn")
    mon.check(2, 0.4, "newton", nnz=7, step=1.0)
    mon.check(3, 0.3, "sinkhorn")
    mon.check(4, 0.2, "newton", nnz=9)
    h = mon.history
    assert h["phase"] == ["sinkhorn", "newton", "sinkhorn", "newton"]
    assert h["nnz"] == [None, 7, None, 9]
    assert h["step"] == [None, 1.0, None, None]
    assert set(h) == {"iteration", "error", "time", "phase", "nnz", "step"}
    assert all(len(col) == 4 for col in h.values())
    assert h["time"] == sorted(h["time"]) and h["time"][0] >= 0


def test_callback_receives_the_state_and_can_stop():
    seen = []

    def callback(state):
        seen.append(state)
        if state.iteration == 3:
            raise StopIteration

    mon = Monitor(1e-9, callback=callback)
    assert mon.check(1, 0.5, "sinkhorn") is None
    assert mon.check(2, 0.25, "newton", nnz=4) is None
    assert mon.check(3, 0.125, "newton") is Status.CALLBACK
    assert [(s.iteration, s.error, s.phase, s.extra) for s in seen] == [
        (1, 0.5, "sinkhorn", {}), (2, 0.25, "newton", {"nnz": 4}), (3, 0.125, "newton", {})]
    assert all(isinstance(s, IterationState) for s in seen)
    assert [s.elapsed for s in seen] == mon.history["time"]
    # a converged check ends the solve without calling back
    assert mon.check(4, 1e-10, "newton") is Status.CONVERGED and len(seen) == 3


def test_callback_other_exceptions_propagate():
    def callback(state):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        Monitor(1e-9, callback=callback).check(1, 1.0, "sinkhorn")


def test_verbose_prints_a_header_once_then_one_line_per_check(capsys):
    mon = Monitor(1e-9, verbose=True)
    mon.check(12, 0.5, "sinkhorn")
    mon.check(13, 1.25e-4, "newton", nnz=42, step=0.123456)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["iter", "phase", "error", "time[s]", "details"]
    assert lines[1].split()[:3] == ["12", "sinkhorn", "5.000e-01"]
    assert lines[2].split()[:3] == ["13", "newton", "1.250e-04"]
    assert lines[2].split()[4:] == ["nnz=42", "step=0.123"]  # floats to 3 digits
    assert lines[1].startswith("     12 ") and lines[0].startswith("   iter ")
    mon.check(14, 1e-6, "newton", solver="direct", step=None)  # only floats get the 3 digits
    assert capsys.readouterr().out.split()[4:] == ["solver=direct", "step=None"]
    Monitor(1e-9).check(1, 0.5, "sinkhorn")  # quiet by default
    assert capsys.readouterr().out == ""


def test_elapsed_is_measured_from_the_monitors_creation():
    import time

    before = time.perf_counter()
    mon = Monitor(1e-9)
    elapsed = mon.elapsed()
    assert 0 <= elapsed <= time.perf_counter() - before
    mon.check(1, 0.5, "sinkhorn")
    assert 0 <= mon.history["time"][0] <= time.perf_counter() - before
