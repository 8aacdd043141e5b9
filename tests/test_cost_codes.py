"""Point-cloud cost codes: one table (``_contract.COST_KINDS``), read by every backend.

* The Numba kernels and the CUDA sources take their codes from the table
  (the CUDA sources as ``-DFS_COST_<KIND>`` macros: checked on their text
  here, compiled by tests/test_gpu_compile.py), and compute each kind's own
  formula for its code.
* A code without a formula is an error in every backend, never another
  cost: a ``ValueError`` in the reference and the CPU kernels (a kind added
  to the table alone is simulated by adding it to the table), a failed
  compile in CUDA (tests/test_gpu_compile.py).
"""

import re

import numpy as np
import pytest

from fastsinkhorn.backends import _contract, get_backend
from fastsinkhorn.backends import _cpu_cloud_kernels as cloud
from fastsinkhorn.backends._contract import COST_KINDS, CostSpec
from fastsinkhorn.backends._gpu import cost_code_options, kernel_dir
from fastsinkhorn.backends._reference import cost_matrix

#: A code no kind has, and a kind added to the table with it but with no formula anywhere.
UNKNOWN_CODE = max(COST_KINDS.values()) + 1
HALF_ADDED = "cityblock"


def _clouds(rng, n=4, m=6, d=3):
    return rng.random((n, d)), rng.random((m, d))


def _spec(kind):
    return CostSpec(kind, p=1.5 if kind == "minkowski" else 2.0, scale=1.3)


def test_codes_are_distinct_integers():
    codes = list(COST_KINDS.values())
    assert all(isinstance(c, int) and c >= 0 for c in codes) and len(set(codes)) == len(codes)
    assert {kind: CostSpec(kind).code for kind in COST_KINDS} == COST_KINDS


def test_a_cost_spec_of_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="must be one of"):
        CostSpec(HALF_ADDED)


# -- Numba ----------------------------------------------------------------------
def test_numba_kernels_read_their_codes_from_the_table():
    assert (cloud.SQEUCLIDEAN, cloud.EUCLIDEAN, cloud.MINKOWSKI) == (
        COST_KINDS["sqeuclidean"], COST_KINDS["euclidean"], COST_KINDS["minkowski"])


@pytest.mark.parametrize("kind", sorted(COST_KINDS))
def test_numba_kernel_computes_each_code_as_its_kind(rng, kind):
    """Each code of the table gives its kind's cost (the reference computes
    by the kind's name), and another kind's cost for no code."""
    x, y = _clouds(rng)
    spec = _spec(kind)
    out = np.empty((x.shape[0], y.shape[0]))
    cloud.cost_rows(x, np.ascontiguousarray(y.T), COST_KINDS[kind], spec.p, spec.scale, out)
    np.testing.assert_allclose(out, cost_matrix(x, y, spec), rtol=1e-13)
    for other in set(COST_KINDS) - {kind}:
        assert not np.allclose(out, cost_matrix(x, y, _spec(other)))


@pytest.mark.parametrize("code", [UNKNOWN_CODE, -1])
def test_numba_kernels_reject_an_unknown_code(rng, code):
    x, y = _clouds(rng)
    yT = np.ascontiguousarray(y.T)
    out, h, top = np.full((4, 6), 7.0), np.zeros(6), np.empty(4)
    with pytest.raises(ValueError, match="no formula"):
        cloud.cost_rows(x, yT, code, 2.0, 1.0, out)
    with pytest.raises(ValueError, match="no formula"):
        cloud.exponent_rows(x, yT, code, 2.0, 1.0, np.zeros(4), h, 1.0, out)
    with pytest.raises(ValueError, match="no formula"):
        cloud.shifted_exponent_rows(x, yT, code, 2.0, 1.0, h, 1.0, -460.0, out, top)
    assert np.all(out == 7.0)  # raised before computing anything


# -- a kind added to the table and to no backend ---------------------------------
@pytest.fixture
def half_added(monkeypatch):
    """``HALF_ADDED`` in the table (code ``UNKNOWN_CODE``), in no backend."""
    monkeypatch.setitem(_contract.COST_KINDS, HALF_ADDED, UNKNOWN_CODE)
    return CostSpec(HALF_ADDED)


@pytest.mark.parametrize("backend_name", ["reference", "cpu"])
def test_a_half_added_cost_is_an_error_in_the_backend(rng, half_added, backend_name):
    be = get_backend(backend_name)
    x, y = _clouds(rng)
    f, g = np.zeros(4), np.zeros(6)
    assert half_added.code == UNKNOWN_CODE
    with pytest.raises(ValueError, match="no formula"):
        be.pc_cost_rows(x, y, half_added, 0, 4)
    with pytest.raises(ValueError, match="no formula"):
        be.pc_lse_rows(x, y, half_added, g, 0.1)
    with pytest.raises(ValueError, match="no formula"):
        be.pc_dense_pass(x, y, half_added, f, g, 0.1, 2)


# -- CUDA sources (text) --------------------------------------------------------
def _cuda_text(name):
    return (kernel_dir() / name).read_text()


def _strip_comments(src):
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", src, flags=re.S)


def test_cuda_enum_takes_every_code_from_the_table():
    """``fs::CostKind`` has one enumerator per kind of the table, each set to
    its macro ``FS_COST_<KIND>`` (no literal code), and the sources refuse to
    compile without exactly those macros."""
    src = _strip_comments(_cuda_text("ot_math.cuh"))
    enums = re.findall(r"enum\s+CostKind\s*\{([^}]*)\}", src)
    assert len(enums) == 1
    members = dict(re.fullmatch(r"\s*(\w+)\s*=\s*(\w+)\s*", item).groups() for item in enums[0].split(","))
    assert members == {kind.upper(): f"FS_COST_{kind.upper()}" for kind in COST_KINDS}
    guard = re.search(r"#if\s+(!defined\(\w+\)(?:\s*\|\|\s*!defined\(\w+\))*)\s*\n#error", src)
    assert guard is not None, "ot_math.cuh must stop without the cost-code macros"
    assert set(re.findall(r"defined\((\w+)\)", guard.group(1))) == set(members.values())


def test_cuda_point_cost_has_a_formula_for_exactly_the_table():
    """``fs::point_cost<KIND>`` asserts at compile time that ``KIND`` is one
    of the enumerators (the kinds it has a formula for)."""
    src = _strip_comments(_cuda_text("ot_math.cuh"))
    body = re.search(r"FS_HD double point_cost\(.*?\{(.*?)\n\}", src, re.S).group(1)
    asserted = re.search(r"static_assert\((.*?),\s*\"", body, re.S).group(1)
    assert set(re.findall(r"KIND\s*==\s*(\w+)", asserted)) == {kind.upper() for kind in COST_KINDS}
    assert " || ".join(f"KIND == {k.upper()}" for k in COST_KINDS) in " ".join(asserted.split())


@pytest.mark.parametrize("name", ["ot_math.cuh", "sinkhorn.cu"])
def test_cuda_sources_hold_no_literal_cost_code(name):
    """Kinds are named (``fs::MINKOWSKI``, the macros), never written as numbers."""
    src = _strip_comments(_cuda_text(name))
    assert not re.search(r"KIND\s*[!=]=\s*\d", src)
    assert not re.search(r"CloudCost<\s*\d", src)
    assert not re.search(r"#define\s+FS_COST_", src), "the codes come from COST_KINDS, not the sources"
    used = set(re.findall(r"\bFS_COST_\w+", src))
    assert used <= {f"FS_COST_{kind.upper()}" for kind in COST_KINDS}


def test_cost_code_options_define_the_table():
    assert cost_code_options() == tuple(f"-DFS_COST_{k.upper()}={c}" for k, c in COST_KINDS.items())


def test_cost_code_options_follow_the_table(half_added):
    assert f"-DFS_COST_{HALF_ADDED.upper()}={UNKNOWN_CODE}" in cost_code_options()
