"""The benchmark command: JSON contents, misses, and errors measured from the plan."""

import json
import textwrap

import numpy as np
import pytest

from fastsinkhorn.bench import add_ratios, format_table, marginal_error, run_suite
from fastsinkhorn.bench.__main__ import main

# Adapters that misbehave on purpose. They live in a module written to disk
# because the bench runs solvers in spawned children, which import by name.
FAKE_SOLVERS = textwrap.dedent("""
    import time
    import numpy as np
    from fastsinkhorn.bench import Outcome, Solver

    def _sleep(M, a, b, reg, tol, max_iter):
        time.sleep(60)

    def _liar(M, a, b, reg, tol, max_iter):
        # P 1 = 1.5 a and P^T 1 = 1.5 b: L1 error 1.0, whatever it claims
        return Outcome(plan=1.5 * np.outer(a, b), n_iter=1,
                       curve={"time": [0.0], "error": [0.0]}, info={"own_converged": True})

    def _crash(M, a, b, reg, tol, max_iter):
        raise RuntimeError("adapter exploded")

    def _hog(M, a, b, reg, tol, max_iter):
        # 64 MiB touched during the run, freed before it returns
        scratch = np.ones(8 * 2**20)
        del scratch
        return Outcome(plan=np.outer(a, b), n_iter=1)

    hog = Solver("hog", _hog, warmup="none")
    sleepy = Solver("sleepy", _sleep, warmup="none")
    liar = Solver("liar", _liar, warmup="none")
    crash = Solver("crash", _crash, warmup="none")
""")


@pytest.fixture
def fake_solvers(tmp_path, monkeypatch):
    (tmp_path / "bench_fake_solvers.py").write_text(FAKE_SOLVERS)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned children inherit sys.path
    return "bench_fake_solvers"


def test_quick_run_writes_json_and_figure(tmp_path, capsys):
    pytest.importorskip("ot")
    out = tmp_path / "out"
    argv = ["--quick", "--families", "cloud", "--sizes", "24", "--methods", "sinkhorn",
            "--peers", "pot-sinkhorn", "--backend", "reference", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# ") and "fastsinkhorn-sinkhorn" in printed and "pot-sinkhorn" in printed

    data = json.loads((out / "results.json").read_text())
    assert {"date", "cpu", "cores", "python", "numpy", "numba", "pot", "regot"} <= set(data["machine"])
    assert data["config"]["argv"] == argv
    assert [r["solver"] for r in data["results"]] == ["fastsinkhorn-sinkhorn", "pot-sinkhorn"]
    for r in data["results"]:
        assert {"problem", "reg", "dtype", "tol", "time", "times", "n_iter", "error", "status",
                "converged", "ratio", "curve", "peer"} <= set(r)
        assert r["problem"] == "cloud-24x24" and r["tol"] == 1e-9
        assert r["status"] == "ok" and r["converged"] and r["error"] <= 1e-9
        assert r["n_iter"] > 0 and r["time"] > 0
        assert len(r["curve"]["time"]) == len(r["curve"]["error"]) > 0
    peer = data["results"][1]
    assert peer["peer"] and peer["ratio"] == 1.0
    # objective values of each plan, side by side: converged solvers agree
    ours = data["results"][0]
    assert ours["value"] == pytest.approx(peer["value"], rel=1e-7)
    assert ours["value_linear"] == pytest.approx(peer["value_linear"], rel=1e-6)
    assert "<M, P>" in printed and "pot-sinkhorn: ot.sinkhorn, POT's default method" in printed
    assert (out / "convergence.png").stat().st_size > 0


def test_timeout_is_a_miss(fake_solvers):
    records = run_suite([f"{fake_solvers}:sleepy"], ["cloud"], [8, 12], [1e-2], ["float64"],
                        timeout=1.0, progress=lambda line: None)
    assert [r["status"] for r in records] == ["timeout", "timeout"]
    assert all(r["time"] is None and r["error"] is None and not r["converged"] for r in records)
    # the larger case is not even run once the smaller one timed out
    assert "timed out at n=8" in records[1]["message"]
    add_ratios(records)
    assert "miss" in format_table(records)


def test_error_is_measured_from_the_plan(fake_solvers):
    records = run_suite([f"{fake_solvers}:liar", f"{fake_solvers}:crash"], ["rect"], [10],
                        [1e-2], ["float64"], timeout=30, progress=lambda line: None)
    liar, crash = records
    assert liar["error"] == pytest.approx(1.0)
    assert liar["status"] == "not converged" and not liar["converged"]
    assert crash["status"] == "crash" and "adapter exploded" in crash["message"]


def test_marginal_error_and_ratio_table():
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(3))
    plan = np.outer(a, b)
    assert marginal_error(plan, a, b) == pytest.approx(0.0, abs=1e-15)
    plan[0, 0] += 0.25
    assert marginal_error(plan.astype(np.float32), a, b) == pytest.approx(0.5, rel=1e-6)

    base = {"problem": "p", "reg": 0.01, "dtype": "float64", "n_iter": 3, "error": 1e-10,
            "status": "ok", "converged": True}
    records = add_ratios([{**base, "solver": "ours", "peer": False, "time": 1.0, "times": [1.0]},
                          {**base, "solver": "slow", "peer": True, "time": 4.0, "times": [3.0, 4.0, 5.0]},
                          {**base, "solver": "fast", "peer": True, "time": 2.0, "times": [2.0]}])
    assert [r["ratio"] for r in records] == [0.5, 2.0, 1.0]
    table = format_table(records, markdown=True).splitlines()
    assert table[0].startswith("| problem") and table[1].startswith("|---")
    assert "0.50x" in table[2] and "±25%" in table[3]


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_of_the_run_is_recorded(fake_solvers):
    """The peak counts memory allocated and freed inside the run, not what the
    process held before it (inputs, libraries, warm-up buffers)."""
    records = run_suite([f"{fake_solvers}:hog", "fastsinkhorn-sinkhorn"], ["cloud"], [400], [1e-2],
                        ["float64"], timeout=60, progress=lambda line: None)
    hog, ours = records
    assert 60 * 2**20 <= hog["peak_memory"] < 80 * 2**20
    # Sinkhorn's one n x m buffer (the plan it returns), little else
    assert 400 * 400 * 8 * 0.9 <= ours["peak_memory"] < 8 * 400 * 400 * 8
    assert "peak MiB" in format_table(records)


def test_latency_measures_empty_then_warm_cache(tmp_path, capsys):
    """``--latency``: fresh processes on an empty, then a warm, Numba cache
    (a temporary NUMBA_CACHE_DIR); small n so that it takes seconds."""
    out = tmp_path / "out"
    argv = ["--latency", "--sizes", "24", "--methods", "sinkhorn", "--repeats", "1",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "import + first [s]" in printed and "cloud-24" in printed

    data = json.loads((out / "latency.json").read_text())
    assert data["config"]["argv"] == argv
    empty, warm = data["results"]
    assert (empty["cache"], warm["cache"]) == ("empty", "warm")
    for r in (empty, warm):
        assert r["method"] == r["solved_by"] == "sinkhorn" and r["converged"]
        assert 0 < r["import"] and 0 < r["again"] < r["first"]
        assert r["total"] == pytest.approx(r["import"] + r["first"])
    # the empty cache compiled (and NUMBA_CACHE_DIR was honoured: the kernels
    # landed there); the warm process loaded them and compiled nothing
    assert empty["compiled"] >= 3 and warm["compiled"] == 0
    assert empty["first"] > warm["first"]


def test_concurrent_runs_k_processes_against_one_alone(tmp_path, capsys):
    """``--concurrent K``: per round one process alone, then K together (and
    ``--hogs`` spinning ones); ratios of each to the alone one of its round."""
    out = tmp_path / "out"
    argv = ["--concurrent", "2", "--hogs", "1", "--sizes", "16", "--reg", "0.1", "--methods", "sinkhorn",
            "--repeats", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "steady ratio" in printed and "cloud-16" in printed and "2 + 1 hog" in printed

    data = json.loads((out / "concurrent.json").read_text())
    assert data["config"]["argv"] == argv and data["config"]["concurrent"] == 2
    (r,) = data["results"]
    assert (r["k"], r["hogs"], r["solved_by"], r["converged"]) == (2, 1, "sinkhorn", True)
    (round_,) = r["rounds"]
    assert len(round_["together"]) == 2
    for m in [round_["alone"], *round_["together"]]:
        assert m["first"] > 0 and len(m["steady_times"]) == 5 and m["steady"] > 0
    ratios = [t["steady"] / round_["alone"]["steady"] for t in round_["together"]]
    assert r["max_steady_ratio"] == pytest.approx(max(ratios))
    assert r["median_steady_ratio"] == pytest.approx(sum(ratios) / 2)
    assert r["together_first"] == max(t["first"] for t in round_["together"])


def test_concurrent_needs_a_positive_count():
    with pytest.raises(SystemExit):
        main(["--concurrent", "0"])
