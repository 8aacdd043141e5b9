"""The examples in the public docstrings run and print what they show."""

import doctest
import importlib

import pytest

MODULES = ["fastsinkhorn.solvers", "fastsinkhorn.pot.entropic", "fastsinkhorn.pot.sinkhorn_methods",
           "fastsinkhorn.pot.utils", "fastsinkhorn.pot.unbalanced", "fastsinkhorn.pot.batch",
           "fastsinkhorn.geometry.point_cloud", "fastsinkhorn.geometry.distances", "fastsinkhorn.geometry.lazy_plan",
           "fastsinkhorn.core.result", "fastsinkhorn.pot.barycenters", "fastsinkhorn.algorithms.barycenter_problem"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed (run with -s to see them)"
