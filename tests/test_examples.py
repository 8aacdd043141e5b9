"""The examples run as their docstrings say (``--quick``, in a subprocess, as a user would)."""

import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_sinkhorn_flow_decreases_the_divergence_and_draws(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out = tmp_path / "flow.png"
    done = subprocess.run([sys.executable, str(EXAMPLES / "sinkhorn_flow.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    values = [float(v) for v in re.findall(r"S\(x, y\) = (\S+)", done.stdout)]
    assert len(values) >= 2 and values[-1] < 0.5 * values[0], done.stdout
    assert out.exists() and out.stat().st_size > 1000


def test_image_barycenter_converges_and_draws(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("ot")
    out = tmp_path / "barycenter.png"
    done = subprocess.run([sys.executable, str(EXAMPLES / "image_barycenter.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    flags = re.findall(r"converged=(True|False)", done.stdout)
    assert len(flags) == 5 and set(flags) == {"True"}, done.stdout
    assert out.exists() and out.stat().st_size > 1000
