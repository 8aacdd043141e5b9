"""``python -m fastsinkhorn.bench --gpu-check``: without a device it runs nothing;
with one (faked here: the device probe, the test run and the timing suite
replaced) it writes the JSON and its exit status says whether all is well."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fastsinkhorn.backends._gpu import cuda_available
from fastsinkhorn.bench import SOLVERS, _gpu_check, run_suite
from fastsinkhorn.bench.__main__ import main
from fastsinkhorn.bench._runner import _record
from fastsinkhorn.bench._solvers import METHODS, on_backend

FAKE_DEVICE = {"name": "Fake H200", "compute_capability": "9.0", "total_memory": 150 * 2**30,
               "cuda_runtime": "12.8", "cuda_driver": "12.9", "cupy": "13.6.0"}
ALL_PASS = "........\n8 passed, 1500 deselected in 3.20s\n"
ONE_FAILS = textwrap.dedent("""\
    ...F....
    =========================== short test summary info ============================
    FAILED tests/test_gpu_solve.py::test_gpu_solve_equals_cpu[cloud-1e-2] - AssertionError: plans differ
    1 failed, 7 passed, 1500 deselected in 3.20s
""")


def _tests(output, returncode):
    """What run_gpu_tests returns for this pytest output."""
    return {"command": "python -m pytest -m gpu tests", "cwd": "/repo", "returncode": returncode,
            "duration": 3.2, **_gpu_check.parse_pytest_output(output), "output_tail": output.splitlines()}


class FakeSuite:
    """run_suite's stand-in: every CPU run takes ``cpu`` s, every GPU run ``gpu`` s;
    ``failures`` maps (solver, n) to a miss ("timeout") or an error above tol ("error")."""

    def __init__(self, cpu=2.0, gpu=0.5, failures=None, gpu_backend="gpu"):
        self.cpu, self.gpu, self.failures, self.gpu_backend = cpu, gpu, failures or {}, gpu_backend
        self.calls = []

    def __call__(self, solvers, families, sizes, regs, dtypes, **kwargs):
        self.calls.append((solvers, families, sizes, regs, dtypes, kwargs))
        records = []
        for family in families:
            for n in sizes:
                for reg in regs:
                    for dtype in dtypes:
                        base = {"problem": f"{family}-{n}x{n}", "family": family, "n": n, "m": n, "reg": reg,
                                "dtype": dtype, "tol": 1e-9}
                        records += [self._record(base, name) for name in solvers]
        return records

    def _record(self, base, name):
        backend = "gpu" if "-gpu-" in name else "cpu"
        failure = self.failures.get((name, base["n"]))
        if failure == "timeout":
            return _record(base, name, False, [], ("timeout", "no result within 30 s"))
        run = {"time": self.gpu if backend == "gpu" else self.cpu, "n_iter": 10,
               "error": 1e-3 if failure == "error" else 1e-10, "value": 1.0, "value_linear": 0.9,
               "curve": {"time": [0.1], "error": [1e-10]}, "peak_memory": None,
               "info": {"backend": self.gpu_backend if backend == "gpu" else "cpu", "method": "sinkhorn"}}
        return _record(base, name, False, [run], None)


@pytest.fixture
def device(monkeypatch, tmp_path):
    """A faked device: cuda_available True, a fake name; the test run and suite are set per test."""
    monkeypatch.setattr(_gpu_check, "cuda_available", lambda: True)
    monkeypatch.setattr(_gpu_check, "device_info", lambda: dict(FAKE_DEVICE))
    monkeypatch.setattr(_gpu_check, "source_root", lambda: tmp_path / "repo")

    def check(tests, suite, *argv):
        monkeypatch.setattr(_gpu_check, "run_gpu_tests", lambda root: tests)
        monkeypatch.setattr(_gpu_check, "run_suite", suite)
        status = main(["--gpu-check", "--sizes", "1000,4096", "--reg", "0.01", "--families", "cloud", *argv])
        (path,) = (tmp_path / "repo" / "benchmarks" / "results").glob("gpu-*.json")
        return status, json.loads(path.read_text())

    return check


def _refuse(*args, **kwargs):
    raise AssertionError("nothing may run without a device")


def test_without_a_device_nothing_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_gpu_check, "cuda_available", lambda: False)
    for name in ("run_gpu_tests", "run_suite", "device_info", "machine_info"):
        monkeypatch.setattr(_gpu_check, name, _refuse)
    assert main(["--gpu-check", "--out", str(tmp_path)]) == _gpu_check.NO_DEVICE != 0
    captured = capsys.readouterr()
    assert captured.out == "" and list(tmp_path.iterdir()) == []
    (line,) = captured.err.splitlines()
    assert "no CUDA device" in line and "nothing was run" in line


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA device")
def test_command_without_a_device_exits_nonzero(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastsinkhorn.bench", "--gpu-check", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == _gpu_check.NO_DEVICE
    assert done.stdout == "" and "no CUDA device" in done.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("other", [["--quick"], ["--latency"], ["--concurrent", "2"], ["--hogs", "1"],
                                   ["--peers", "pot-sinkhorn"], ["--backend", "gpu"]])
def test_gpu_check_runs_on_its_own(other, monkeypatch, capsys):
    monkeypatch.setattr(_gpu_check, "cuda_available", _refuse)
    with pytest.raises(SystemExit) as exc:
        main(["--gpu-check", *other])
    assert exc.value.code == 2 and "--gpu-check runs on its own" in capsys.readouterr().err


def test_all_pass_writes_the_json_and_exits_0(device, capsys):
    suite = FakeSuite(cpu=2.0, gpu=0.5)
    status, data = device(_tests(ALL_PASS, 0), suite)
    assert status == 0 and data["passed"] and data["problems"] == []
    assert data["device"]["name"] == "Fake H200" and data["device"]["cuda_runtime"] == "12.8"
    assert {"cpu", "cores", "numpy", "date"} <= set(data["machine"])
    assert (data["tests"]["passed"], data["tests"]["failed"], data["tests"]["failing"]) == (8, 0, [])
    # every method on both backends, in one run_suite call (ratios from one run)
    ((solvers, families, sizes, regs, _, kwargs),) = suite.calls
    assert sorted(solvers) == sorted(on_backend(m, b) for m in METHODS for b in ("cpu", "gpu"))
    assert (families, sizes, regs, kwargs["timeout"]) == (["cloud"], [1000, 4096], [0.01], 30.0)
    rows = data["timings"]
    assert len(rows) == 2 * len(METHODS)
    for row in rows:
        assert row["cpu"]["time"] == 2.0 and row["gpu"]["time"] == 0.5 and row["gpu_over_cpu"] == 0.25
        assert row["gpu"]["backend"] == "gpu" and row["gpu"]["converged"]
    assert all("curve" not in r for r in data["runs"]) and len(data["runs"]) == 4 * len(METHODS)
    printed = capsys.readouterr().out
    assert "Fake H200" in printed and "8 passed" in printed and "0.25" in printed
    assert "gpu-check passed" in printed


def test_a_failing_gpu_test_fails_the_check(device, capsys):
    status, data = device(_tests(ONE_FAILS, 1), FakeSuite())
    assert status == _gpu_check.FAILED
    assert (data["tests"]["passed"], data["tests"]["failed"]) == (7, 1)
    assert data["tests"]["failing"] == ["tests/test_gpu_solve.py::test_gpu_solve_equals_cpu[cloud-1e-2]"]
    assert not data["passed"] and "1 gpu test(s) failed" in data["problems"][0]
    assert "FAILED tests/test_gpu_solve.py::test_gpu_solve_equals_cpu[cloud-1e-2]" in capsys.readouterr().out


@pytest.mark.parametrize("output, returncode", [("no tests ran in 0.01s\n", 5),
                                                ("ss\n2 skipped, 1500 deselected in 0.1s\n", 0)])
def test_no_gpu_test_passing_fails_the_check(device, output, returncode):
    status, data = device(_tests(output, returncode), FakeSuite())
    assert status == _gpu_check.FAILED and data["problems"]


@pytest.mark.parametrize("failure", ["timeout", "error"])
def test_a_gpu_run_that_did_not_converge_fails_the_check(device, failure):
    name = on_backend("sns", "gpu")
    status, data = device(_tests(ALL_PASS, 0), FakeSuite(failures={(name, 4096): failure}))
    assert status == _gpu_check.FAILED
    (problem,) = data["problems"]
    assert problem.startswith("GPU run did not converge: cloud-4096x4096 reg=0.01 float64 sns")
    (row,) = [r for r in data["timings"] if r["method"] == "sns" and r["n"] == 4096]
    assert not row["gpu"]["converged"] and row["gpu_over_cpu"] is None and row["cpu"]["converged"]


def test_a_cpu_miss_only_loses_its_ratio(device):
    status, data = device(_tests(ALL_PASS, 0), FakeSuite(failures={(on_backend("sinkhorn", "cpu"), 4096): "timeout"}))
    assert status == 0
    ratios = {(r["method"], r["n"]): r["gpu_over_cpu"] for r in data["timings"]}
    assert ratios.pop(("sinkhorn", 4096)) is None and set(ratios.values()) == {0.25}


def test_a_gpu_run_on_another_backend_fails_the_check(device):
    status, data = device(_tests(ALL_PASS, 0), FakeSuite(gpu_backend="cpu"))
    assert status == _gpu_check.FAILED and "solved on backend 'cpu'" in data["problems"][0]


def test_out_overrides_the_directory(device, tmp_path, monkeypatch):
    monkeypatch.setattr(_gpu_check, "run_gpu_tests", lambda root: _tests(ALL_PASS, 0))
    monkeypatch.setattr(_gpu_check, "run_suite", FakeSuite())
    out = tmp_path / "elsewhere"
    assert main(["--gpu-check", "--sizes", "64", "--methods", "sinkhorn", "--out", str(out)]) == 0
    (path,) = out.glob("gpu-*.json")
    assert json.loads(path.read_text())["config"]["sizes"] == [64]
    assert _gpu_check.default_out_dir(None) == os.getcwd()
    assert _gpu_check.default_out_dir(tmp_path) == str(tmp_path / "benchmarks" / "results")


FAKE_TESTS = textwrap.dedent("""
    import time
    import pytest

    @pytest.fixture
    def broken():
        raise RuntimeError("no device context")

    @pytest.mark.gpu
    def test_passes():
        pass

    @pytest.mark.gpu
    def test_fails():
        assert 1 == 2

    @pytest.mark.gpu
    def test_errors(broken):
        pass

    @pytest.mark.gpu
    def test_skips():
        pytest.skip("not here")

    def test_not_gpu():
        time.sleep(float(__import__("os").environ.get("FAKE_SLEEP", "0")))

    @pytest.mark.gpu
    def test_sleeps():
        time.sleep(float(__import__("os").environ.get("FAKE_SLEEP", "0")))
""")


@pytest.fixture
def fake_root(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_fake.py").write_text(FAKE_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a device\n")
    return tmp_path


def test_the_test_run_counts_and_names_failures(fake_root):
    """The real subprocess on a tree of fake gpu tests: counts and failing ids."""
    tests = _gpu_check.run_gpu_tests(fake_root)
    assert tests["returncode"] == 1 and "error" not in tests
    assert {k: tests[k] for k in ("passed", "failed", "errors", "skipped", "deselected")} == \
        {"passed": 2, "failed": 1, "errors": 1, "skipped": 1, "deselected": 1}
    assert sorted(tests["failing"]) == ["tests/test_fake.py::test_errors", "tests/test_fake.py::test_fails"]
    assert any("not here" in reason for reason in tests["skipped_reasons"])
    problems = _gpu_check.verdict(tests, [])
    assert any("1 gpu test(s) failed, 1 errored" in p for p in problems)
    assert any("1 gpu test(s) skipped" in p for p in problems) and "no GPU run" in problems


def test_a_hung_test_run_is_cut_off(fake_root, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "60")
    tests = _gpu_check.run_gpu_tests(fake_root, timeout=5)
    assert tests["returncode"] is None and "did not finish within 5 s" in tests["error"]
    assert tests["duration"] < 30 and "did not finish" in _gpu_check.verdict(tests, [])[0]


def test_no_checkout_is_a_failure():
    tests = _gpu_check.run_gpu_tests(None)
    assert tests["returncode"] is None and tests["passed"] == 0
    assert "no source checkout" in _gpu_check.verdict(tests, [])[0]


def test_pinned_cpu_entry_solves_on_the_cpu():
    """The registry entries the check times: the backend is bound in the entry."""
    (record,) = run_suite([on_backend("sinkhorn", "cpu")], ["cloud"], [24], [0.1], ["float64"], timeout=60,
                          progress=lambda line: None)
    assert record["converged"] and record["info"]["backend"] == "cpu" and not record["peer"]
    gpu = SOLVERS[on_backend("sinkhorn", "gpu")]
    assert gpu.needs_gpu and "cupy" in gpu.requires and not gpu.peer
    assert gpu.available() == cuda_available()


def test_gpu_tests_run_the_numba_cuda_kernels_on_the_device(tmp_path, monkeypatch):
    """The subprocess selects the gpu tests (test_cudasim.py's are among them)
    with the CUDA simulator off, whatever the caller's environment."""
    seen = {}

    def fake_run(command, cwd, env, **kwargs):
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 0, stdout="1 passed in 0.1s\n")

    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    monkeypatch.setattr(_gpu_check.subprocess, "run", fake_run)
    (tmp_path / "src").mkdir()
    result = _gpu_check.run_gpu_tests(tmp_path)
    assert result["returncode"] == 0 and result["passed"] == 1
    assert "NUMBA_ENABLE_CUDASIM" not in seen["env"] and seen["command"][1:5] == ["-m", "pytest", "-m", "gpu"]
    assert "gpu" in {m.name for m in _cudasim_marks()}


def _cudasim_marks():
    """The marks of the Numba-CUDA kernel tests (one of them: they share the two)."""
    import importlib

    module = importlib.import_module("test_cudasim")
    return module.test_ragged_padded_batch.pytestmark
