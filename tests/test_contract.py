"""Every member of the kernel contract, on every available backend, against the reference."""

import inspect
import warnings

import numpy as np
import pytest
from ot_testing import random_problem

from fastsinkhorn.backends import get_backend
from fastsinkhorn.backends._contract import COST_KINDS, CostSpec, KernelBackend
from fastsinkhorn.backends._cpu import CPUBackend
from fastsinkhorn.backends._gpu import GPUBackend, cuda_available
from fastsinkhorn.backends._reference import ReferenceBackend

REF = get_backend("reference")


def _available_backends():
    return ["reference", "cpu"] + (["gpu"] if cuda_available() else [])


_DEFAULT_COST = CostSpec("sqeuclidean", scale=0.7)


def _calls(xp, rng, n=37, m=23, cost=_DEFAULT_COST):
    """Arguments for each contract method (host arrays; moved to ``xp`` by the test)."""
    M, a, b = random_problem(rng, n, m)
    x, y = rng.random((n, 3)), rng.random((m, 3))
    reg = 0.05
    f, g = 0.02 * rng.standard_normal(n), 0.02 * rng.standard_normal(m)
    K = np.exp((f[:, None] + g[None, :] - M) / reg)
    k = 5
    idx = np.stack([rng.choice(m, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    val = rng.random((n, k))
    # forbidden and huge entries, a row and a column without a finite entry
    Mf = M.copy()
    Mf[2, :], Mf[:, 4], Mf[5, 7], Mf[1, 3] = np.inf, np.inf, np.inf, 1e30
    return {
        "reduction_offsets": (Mf,),
        "largest_reduced_cost": (Mf, *REF.reduction_offsets(Mf), 0.6),
        "row_spreads": (Mf, *REF.reduction_offsets(Mf), np.array([0, 2, 5, 11, n - 1]), 0.1),
        "lse_rows": (M, g, reg),
        "lse_cols": (M, f, reg),
        "plan": (M, f, g, reg, np.empty((n, m))),
        "scaling_pass": (K, rng.random(m) + 0.5, a, np.ones(n)),
        "scale": (K, rng.random(n) + 0.5, rng.random(m) + 0.5, np.empty((n, m))),
        "dense_pass": (M, f, g, reg, k),
        "pc_cost_rows": (x, y, cost, 3, n - 2),
        "pc_lse_rows": (x, y, cost, g, reg),
        "pc_dense_pass": (x, y, cost, f, g, reg, k),
        "ell_matvec": (idx, val, rng.random(m)),
        "ell_rmatvec": (idx, val, rng.random(n), m),
    }


def _members():
    return sorted(name for name, v in inspect.getmembers(KernelBackend, inspect.isfunction)
                  if not name.startswith("_"))


def test_every_contract_member_has_a_case(rng):
    assert set(_calls(np, rng)) == set(_members())


@pytest.mark.parametrize("backend_name", _available_backends())
def test_backend_satisfies_the_protocol(backend_name):
    be = get_backend(backend_name)
    assert isinstance(be, KernelBackend)
    assert be.name == backend_name and be.check_every >= 1
    assert type(be.point_clouds) is bool


def _parameters(function):
    """``(name, kind, default)`` of every parameter, ``self`` included."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("cls", [ReferenceBackend, CPUBackend, GPUBackend], ids=lambda c: c.__name__)
def test_backend_methods_have_the_contracts_signatures(cls):
    """Not just the names (all ``isinstance`` checks): each member takes the
    contract's parameters, in its order, of its kinds, with its defaults.
    Checked on the classes, so the GPU backend's too without a device."""
    for name in _members():
        member = inspect.getattr_static(cls, name)
        assert inspect.isfunction(member), f"{cls.__name__}.{name} is not a method"
        assert _parameters(member) == _parameters(getattr(KernelBackend, name)), f"{cls.__name__}.{name}"
    assert type(cls.name) is str and type(cls.check_every) is int
    # every backend here implements the point-cloud members, and says so
    assert cls.point_clouds is True


@pytest.mark.parametrize("member", _members())
@pytest.mark.parametrize("backend_name", [b for b in _available_backends() if b != "reference"])
def test_member_matches_the_reference(rng, backend_name, member):
    _check_member(rng, backend_name, member, _calls(np, rng)[member])


@pytest.mark.parametrize("kind", sorted(COST_KINDS))
@pytest.mark.parametrize("member", ["pc_cost_rows", "pc_lse_rows", "pc_dense_pass"])
@pytest.mark.parametrize("backend_name", [b for b in _available_backends() if b != "reference"])
def test_point_cloud_members_for_every_cost(rng, backend_name, member, kind):
    cost = CostSpec(kind, p=1.5 if kind == "minkowski" else 2.0, scale=1.3)
    _check_member(rng, backend_name, member, _calls(np, rng, cost=cost)[member])


def test_reference_point_cloud_costs_by_definition(rng):
    x, y = rng.random((4, 3)), rng.random((5, 3))
    d = x[:, None, :] - y[None, :, :]
    sq = (d ** 2).sum(-1)
    cases = [(CostSpec(), sq), (CostSpec("euclidean", scale=2.0), 2 * np.sqrt(sq)),
             (CostSpec("minkowski", p=1.0), np.abs(d).sum(-1)),
             (CostSpec("minkowski", p=3.0), (np.abs(d) ** 3).sum(-1) ** (1 / 3))]
    assert {cost.kind for cost, _ in cases} == set(COST_KINDS), "a kind of COST_KINDS without its definition here"
    for cost, want in cases:
        np.testing.assert_allclose(REF.pc_cost_rows(x, y, cost, 0, 4), want, rtol=1e-14)


def test_reference_lse_of_an_empty_slice_is_minus_inf_without_warnings():
    """A row (column) whose terms are all ``-inf`` gives ``-inf``, silently;
    the other entries are the plain log-sum-exp."""
    M = np.array([[0.0, 1.0], [2.0, 0.5]])
    g = np.array([-np.inf, -np.inf])
    f = np.array([0.3, -np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(REF.lse_rows(M, g, 0.5), [-np.inf, -np.inf])
        np.testing.assert_allclose(REF.lse_cols(M, f, 0.5), [(0.3 - 0.0) / 0.5, (0.3 - 1.0) / 0.5], rtol=1e-15)


def test_reference_selection_floor_is_relative_to_each_row():
    """Kept entries at or below 1e-12 of their row's maximum are zeros; a row
    of small entries keeps them (the floor is per row, not global)."""
    P = np.array([[1.0, 1e-13, 0.5], [1e-14, 1e-15, 1e-30]])
    M = -np.log(P)  # reg 1, zero potentials: the plan is P
    r, c, total, idx, val = REF.dense_pass(M, np.zeros(2), np.zeros(3), 1.0, 3)
    D = np.zeros((2, 3))
    np.put_along_axis(D, idx, val, axis=1)
    np.testing.assert_allclose(D, [[1.0, 0.0, 0.5], [1e-14, 1e-15, 0.0]], rtol=1e-12, atol=0)
    np.testing.assert_allclose(r, P.sum(axis=1), rtol=1e-12)


def test_reference_row_spreads_by_definition(rng):
    """Each sampled row's quantile of its positive finite reduced costs, by
    sorting them one row at a time; a row without one gives (inf, 0)."""
    M = rng.random((6, 9))
    M[1, :] = np.inf
    M[3, 2:] = np.inf
    u, v = REF.reduction_offsets(M)
    rows = np.array([0, 1, 3, 4])
    spreads, counts = REF.row_spreads(M, u, v, rows, 0.3)
    for k, i in enumerate(rows):
        with np.errstate(invalid="ignore"):  # the row of infs: inf - inf
            R = M[i] - u[i] - v
        kept = np.sort(R[np.isfinite(R) & (R > 0)])
        assert counts[k] == kept.size
        assert spreads[k] == (kept[int(0.3 * (kept.size - 1))] if kept.size else np.inf)
    assert counts[1] == 0


def test_reference_reduction_by_definition(rng):
    """Reduced costs are >= 0 with a zero in every row and column that has a
    finite entry; the largest one below a cutoff is the brute-force maximum."""
    M = rng.random((6, 5)) + 3 * np.arange(6)[:, None]  # row offsets
    M[0, 1], M[:, 2], M[4, :] = np.inf, np.inf, np.inf
    u, v = REF.reduction_offsets(M)
    assert u[4] == np.inf and v[2] == np.inf
    live = np.isfinite(u)[:, None] & np.isfinite(v)[None, :]
    with np.errstate(invalid="ignore"):
        R = np.where(live, M - u[:, None] - v[None, :], np.nan)
    finite = np.isfinite(R)
    assert (R[finite] >= 0).all()
    assert np.all(np.nanmin(np.where(finite, R, np.nan)[[0, 1, 2, 3, 5]], axis=1) == 0)
    assert np.all(np.nanmin(np.where(finite, R, np.nan)[:, [0, 1, 3, 4]], axis=0) == 0)
    cut = float(np.median(R[finite]))
    assert REF.largest_reduced_cost(M, u, v, cut) == R[finite & (R <= cut)].max()
    assert REF.largest_reduced_cost(M, u, v, -1.0) == 0.0


def _to_device(be, x):
    return be.xp.asarray(x) if isinstance(x, np.ndarray) else x


def _host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


def _check_member(rng, backend_name, member, args):
    be = get_backend(backend_name)
    got = getattr(be, member)(*(_to_device(be, x) for x in args))
    want = getattr(REF, member)(*(x.copy() if isinstance(x, np.ndarray) else x for x in args))
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    if member in ("dense_pass", "pc_dense_pass"):  # (r, c, total, idx, val): entries' order may differ
        for g_, w_ in zip(got[:3], want[:3]):
            np.testing.assert_allclose(_host(g_), _host(w_), rtol=1e-12, atol=1e-300)
        dense = []
        for side in (got, want):  # the kept entries as a dense matrix: order-free comparison
            D = np.zeros((37, 23))
            np.put_along_axis(D, _host(side[3]), _host(side[4]), axis=1)
            dense.append(D)
        np.testing.assert_allclose(dense[0], dense[1], rtol=1e-12, atol=1e-300)
    else:
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(_host(g_), _host(w_), rtol=1e-12, atol=1e-300)


BATCHED = ("lse_rows", "lse_cols", "plan", "scaling_pass", "scale")


@pytest.mark.parametrize("member", BATCHED)
@pytest.mark.parametrize("backend_name", _available_backends())
def test_batched_dense_members_match_per_problem_calls(rng, backend_name, member):
    """A leading batch axis on every array: problem p of the batched call is
    the unbatched call on problem p (the reference's unbatched members are
    checked against the reference above)."""
    be = get_backend(backend_name)
    B = 4
    calls = [_calls(np, rng)[member] for _ in range(B)]
    stacked = [np.stack(col) if isinstance(col[0], np.ndarray) else col[0] for col in zip(*calls)]
    on_device = [_to_device(be, x) for x in stacked]
    got = _host(getattr(be, member)(*on_device))
    for p in range(B):
        want = getattr(REF, member)(*(x.copy() if isinstance(x, np.ndarray) else x for x in calls[p]))
        np.testing.assert_allclose(got[p], want, rtol=1e-12, atol=1e-14)
    if member in ("scaling_pass",):  # the row scalings u are written in place, per problem
        for p in range(B):
            u = calls[p][3].copy()
            REF.scaling_pass(*calls[p][:3], u)
            np.testing.assert_allclose(_host(on_device[3])[p], u, rtol=1e-12)
