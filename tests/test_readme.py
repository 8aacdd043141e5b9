"""The README's Python examples run as written (the front door must not rot)."""

import pathlib
import re
import warnings

import numpy as np
import pytest
from ot_testing import plan_error

import fastsinkhorn

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs_without_warnings(code, capsys):
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a non-converging example is a broken example
        exec(compile(code, str(README), "exec"), namespace)
    # and what it computes is right: every result converged, every plan has the masses asked for
    results = [v for v in namespace.values() if isinstance(v, fastsinkhorn.OTResult)]
    for res in results:  # (arrays of flags and errors for a batch)
        assert np.all(res.converged) and np.all(res.marginal_error <= res.tol)
    if "P" in namespace:
        ns = namespace
        assert plan_error(ns["P"], ns["a"], ns["b"]) <= 1e-7  # POT's stopThr: 1e-9 on the L2 column error
    assert results or "P" in namespace


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


def test_docs_state_the_one_default_tolerance():
    """Prose cannot import ``DEFAULT_TOL``: check that it states its values."""
    from fastsinkhorn import solve
    from fastsinkhorn._validation import DEFAULT_TOL

    f64, f32 = (f"{DEFAULT_TOL[k]:.0e}".replace("e-0", "e-") for k in ("float64", "float32"))
    assert f"The default `tol` is {f64} for float64 and {f32} for float32" in " ".join(README.read_text().split())
    assert f"({f64} for float64, {f32} for float32)" in " ".join(solve.__doc__.split())
