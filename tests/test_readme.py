"""The README's Python examples run as written (the front door must not rot)."""

import pathlib
import re
import warnings

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
    for res in results:
        assert res.converged and res.marginal_error <= res.tol
    if "P" in namespace:
        ns = namespace
        assert plan_error(ns["P"], ns["a"], ns["b"]) <= 1e-7  # POT's stopThr: 1e-9 on the L2 column error
    assert results or "P" in namespace


def test_readme_has_examples():
    assert len(BLOCKS) >= 2
