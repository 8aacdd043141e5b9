"""``python -m fastsinkhorn``: the demo runs, explains its columns, and measures every peer itself."""

import subprocess
import sys
import types

import numpy as np
import pytest

from fastsinkhorn.__main__ import main, our_rows, peer_rows
from fastsinkhorn.bench import plan_values
from fastsinkhorn.problems import make_problem

COLUMNS = ("reg", "solver", "iterations", "L1 error", "status", "time [s]", "vs ours", "value", "<M, P>")
SMALL = ["-n", "48", "--reg", "1e-1", "1e-2", "--time-budget", "1"]


def _table(printed):
    """The table's header and its rows (the lines between the rule and the blank line)."""
    lines = printed.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    end = lines.index("", rule)
    return lines[rule - 1], lines[rule + 1:end]


def _legend_explains_every_column(printed):
    legend = printed.split("\n\n")[-1] if "POT not installed" not in printed else printed.split("\n\n")[-2]
    for column in ("iterations", "L1 error", "status", "time [s]", "vs ours", "value", "<M, P>", "peers"):
        assert any(line.startswith(column) or f"{column}:" in line for line in legend.splitlines()), column


def test_demo_without_pot_prints_our_rows_and_the_legend(capsys):
    assert main([*SMALL, "--no-pot"]) == 0
    printed = capsys.readouterr().out
    header, rows = _table(printed)
    assert all(column in header for column in COLUMNS)
    assert len(rows) == 2 and all("fastsinkhorn auto" in row and "converged" in row for row in rows)
    assert "first call (not in the table)" in printed and "first solve at reg 1e-01" in printed
    assert "POT" not in "\n".join(rows)
    _legend_explains_every_column(printed)


def test_demo_explains_the_iterations_of_each_phase(capsys):
    """SNS prints its Sinkhorn warm-up and its Newton steps by name, not "102+8"."""
    assert main(["-n", "64", "--reg", "1e-3", "--method", "sns", "--no-pot"]) == 0
    _, rows = _table(capsys.readouterr().out)
    assert len(rows) == 1 and " Sinkhorn + " in rows[0] and " Newton" in rows[0]


def test_demo_says_when_pot_is_absent(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)  # import ot raises ImportError
    assert main(SMALL) == 0
    printed = capsys.readouterr().out
    assert "POT not installed" in printed
    _, rows = _table(printed)
    assert len(rows) == 2 and not any("POT" in row for row in rows)


def _fake_pot():
    """A POT whose solvers stop at once with a plan carrying 1.5x the mass."""
    def sinkhorn(a, b, M, reg, method="sinkhorn", numItermax=1000, stopThr=1e-9, log=False, **kw):
        plan = 1.5 * np.outer(a, b)
        return (plan, {"niter": 0, "err": [0.0]}) if log else plan

    def solve(M, a, b, reg=None, max_iter=None, tol=None, **kw):
        return types.SimpleNamespace(plan=1.5 * np.outer(a, b))

    return types.SimpleNamespace(sinkhorn=sinkhorn, solve=solve, __version__="fake")


def test_demo_measures_each_peer_from_its_plan(capsys, monkeypatch):
    """A peer that claims convergence but returns a wrong plan is shown as not
    converged, with the error (1.0 here) and the values of the plan it returned."""
    monkeypatch.setitem(sys.modules, "ot", _fake_pot())
    assert main(SMALL) == 0
    _, rows = _table(capsys.readouterr().out)
    pot = [row for row in rows if "POT" in row]
    assert len(pot) == 4  # ot.sinkhorn and ot.solve at both regs
    assert all("NOT converged" in row and "1.0e+00" in row for row in pot)
    assert any("ot.solve (sinkhorn_log)" in row for row in pot)
    assert any("ot.sinkhorn (sinkhorn)" in row for row in pot)


def test_peers_run_to_our_tolerance_and_agree_with_us():
    """With POT, each peer row is measured from its plan: converged means within
    tol, and converged solvers' objective values agree with ours."""
    pytest.importorskip("ot")
    p = make_problem("cloud", 48, seed=0)
    ours, _ = our_rows(p, [1e-1], "auto", 1e-9, 10_000)
    peers, _ = peer_rows(p, 1e-1, 1e-9, 10_000, 5.0, ["sinkhorn", "solve", "sinkhorn_log"])
    assert [r.solver for r in peers] == ["POT ot.sinkhorn (sinkhorn)", "POT ot.solve (sinkhorn_log)",
                                         "POT sinkhorn_log"]
    for row in ours + peers:
        assert row.converged and row.error <= 1e-9, row
        assert row.value == pytest.approx(ours[0].value, rel=1e-7)
        assert row.value_linear == pytest.approx(ours[0].value_linear, rel=1e-6)
    assert peers[0].iterations.endswith(" Sinkhorn") and peers[1].iterations.startswith("n/a")


def test_a_peer_out_of_time_budget_is_not_converged():
    """A budget too short for tol: the cap comes from the probe, the row says why it stopped."""
    pytest.importorskip("ot")
    p = make_problem("cloud", 200, seed=0)
    (row,), _ = peer_rows(p, 1e-3, 1e-9, 10_000, 1e-3, ["solve"])
    assert not row.converged and row.status == "NOT converged (time budget)" and row.error > 1e-9
    assert row.iterations == "11 Sinkhorn"  # the floor: 1 + PROBE_ITER


def test_plan_values_are_pots_definition(rng):
    """The objective the bench and the demo print: POT's ot.solve value and <M, P>."""
    ot = pytest.importorskip("ot")
    M = rng.random((30, 20))
    a, b = rng.dirichlet(np.ones(30)), rng.dirichlet(np.ones(20))
    res = ot.solve(M, a, b, reg=0.1)
    value, linear = plan_values(np.asarray(res.plan), M, a, b, 0.1)
    assert linear == pytest.approx(float(res.value_linear), rel=1e-12)
    assert value == pytest.approx(float(res.value), rel=1e-9)
    # zero entries count 0 (0 log 0 = 0), and a non-finite plan gives nan
    P = np.asarray(res.plan).copy()
    P[0, :] = 0.0
    assert np.isfinite(plan_values(P, M, a, b, 0.1)[0])
    P[1, 1] = np.nan
    assert all(np.isnan(v) for v in plan_values(P, M, a, b, 0.1))


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "fastsinkhorn", "-n", "32", "--reg", "1e-1", "--no-pot"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "fastsinkhorn demo" in out.stdout and "<M, P>" in out.stdout


def test_peer_status_says_why_a_run_ended():
    from fastsinkhorn.__main__ import _peer_status

    assert _peer_status(1e-10, 1e-9, 50, 100, 1000) == "converged"
    assert _peer_status(float("nan"), 1e-9, 50, 100, 1000) == "NOT converged (NaN plan)"
    assert _peer_status(1e-3, 1e-9, 50, 100, 1000) == "NOT converged (stopped itself)"
    assert _peer_status(1e-3, 1e-9, 100, 100, 1000) == "NOT converged (time budget)"
    assert _peer_status(1e-3, 1e-9, -1, 1000, 1000) == "NOT converged (max_iter)"


def test_our_run_gets_the_same_time_budget():
    """Ours is held to the budget too: stopped by its callback, reported as such."""
    p = make_problem("cloud", 200, seed=0)
    (row,), _ = our_rows(p, [1e-4], "sinkhorn", 1e-9, 10_000, budget=1e-3)
    assert row.status == "NOT converged (time budget)" and row.error > 1e-9
    (row,), _ = our_rows(p, [1e-1], "sinkhorn", 1e-9, 10_000, budget=60.0)
    assert row.converged
