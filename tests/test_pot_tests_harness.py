"""benchmarks/pot_tests.py, the harness that runs POT's own test files with
our drop-ins swapped in, on a small test file of ours written like POT's."""

import json
import pathlib
import subprocess
import sys

import pytest

HARNESS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "pot_tests.py"

POT_STYLE_TESTS = '''
import numpy as np
import ot
import fastsinkhorn


def test_swapped(nx):
    assert ot.sinkhorn2.__wrapped__ is fastsinkhorn.sinkhorn2
    assert ot.bregman.sinkhorn.__wrapped__ is fastsinkhorn.sinkhorn
    M = nx.from_numpy(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert abs(float(ot.sinkhorn2([0.5, 0.5], [0.5, 0.5], M, 1.0)) - 0.2689414) < 1e-6


def test_pots_own_helper_is_kept():
    assert ot.utils.dist0(4).shape == (4, 4) and not hasattr(ot.utils.dist0, "__wrapped__")


def test_swapped_helper_alone_is_not_ours():
    assert ot.utils.unif.__wrapped__ is fastsinkhorn.utils.unif and ot.unif.__wrapped__ is fastsinkhorn.unif
    assert ot.lp.emd.__wrapped__ is fastsinkhorn.lp.emd
    assert ot.bregman.greenkhorn.__wrapped__ is fastsinkhorn.bregman.greenkhorn
    assert ot.unif(4).sum() == 1


@pytest.skip_backend("numpy")
def test_skipped_for_numpy(nx):
    raise AssertionError("skip_backend('numpy') must skip")


def test_refused():
    ot.solve(np.ones((2, 2)), reg=1.0, method="mm")  # ours: NotImplementedError


def test_broken():  # passes with POT's function, fails with ours: a real failure
    ot.sinkhorn2([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1.0)
    assert ot.sinkhorn2.__wrapped__.__module__.startswith("ot.")


def test_pot_fails_too():
    ot.sinkhorn2([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]], 1.0)
    assert False
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    source = tmp_path_factory.mktemp("pot") / "test"
    source.mkdir()
    (source / "test_pot_style.py").write_text("import pytest\n" + POT_STYLE_TESTS)
    report = source.parent / "report.json"
    done = subprocess.run([sys.executable, str(HARNESS), "--pot-tests", str(source), "--files", "test_pot_style.py",
                           "--report", str(report)], capture_output=True, text=True, timeout=600, check=False)
    return done, json.loads(report.read_text())


def test_harness_swaps_our_functions_in_and_keeps_pots_helpers(run):
    _, report = run
    assert report["test_pot_style.py::test_swapped[numpy]"]["outcome"] == "passed"
    assert report["test_pot_style.py::test_pots_own_helper_is_kept"]["outcome"] == "not ours"
    # it passes (the asserts hold) but called only a helper, ours: it does not count
    assert report["test_pot_style.py::test_swapped_helper_alone_is_not_ours"]["outcome"] == "not ours"
    assert report["test_pot_style.py::test_skipped_for_numpy[numpy]"]["outcome"] == "not ours"  # skipped first


def test_harness_classifies_failures_and_fails_on_a_real_one(run):
    done, report = run
    assert report["test_pot_style.py::test_refused"]["outcome"] == "not implemented"
    assert report["test_pot_style.py::test_broken"]["outcome"] == "FAILED"
    assert report["test_pot_style.py::test_pot_fails_too"]["outcome"] == "fails with POT"
    assert done.returncode == 1 and "FAILED          test_pot_style.py::test_broken" in done.stdout
