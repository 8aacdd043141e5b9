"""Forbidden (``+inf``) and huge finite cost entries: right plans, or clear errors.

Users forbid a transport either with ``inf`` (a zero kernel entry, as POT
accepts) or with a large finite cost. Either way the answer must be the
plan of the problem with those entries removed (POT's value), never the
independent coupling or a value ``<M, P>`` of ``1e50`` from entries that
should carry no mass.
"""

import re
import warnings

import numpy as np
import ot
import pytest
from ot_testing import plan_error

import fastsinkhorn as fs
from fastsinkhorn.backends import get_backend
from fastsinkhorn.geometry.cost_scale import support_scale


def _cloud_cost(rng, n, m=None):
    m = n if m is None else m
    x, y = rng.random((n, 2)), rng.random((m, 2))
    return fs.dist(x, y), np.full(n, 1 / n), np.full(m, 1 / m)


def _forbid(rng, M, fraction, value):
    """``M`` with a random ``fraction`` of its off-diagonal entries set to ``value``."""
    out = M.copy()
    mask = rng.random(M.shape) < fraction
    np.fill_diagonal(mask, False)  # the identity stays feasible
    out[mask] = value
    return out


def _reference_plan(M, a, b, reg):
    """POT's log-domain Sinkhorn run long on the cost with forbidden entries at
    +inf (its kernel entries are then exact zeros)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.sinkhorn(a, b, np.where(M >= 1e6, np.inf, M), reg, method="sinkhorn_log",
                           stopThr=1e-14, numItermax=200_000)


@pytest.mark.parametrize("value", [1e6, 1e12, 1e30, 1e250, np.inf])
@pytest.mark.parametrize("method", ["auto", "sinkhorn", "sns"])
def test_forbidding_entries_give_the_plan_without_them(rng, value, method):
    M, a, b = _cloud_cost(rng, 40)
    Mf = _forbid(rng, M, 0.1, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fs.solve(Mf, a, b, reg=1e-2, method=method)
    assert res.converged and plan_error(res.plan, a, b) <= 1e-9
    forbidden = Mf >= 1e6
    assert np.all(res.plan[forbidden] == 0.0)  # no mass at all there (no 1e-200 floor either)
    P = _reference_plan(Mf, a, b, 1e-2)
    assert np.abs(res.plan - P).sum() <= 1e-6
    # the value is that of the allowed entries (a 1e-200 floor times 1e250 would be 1e50)
    assert res.value_linear == pytest.approx(float((M * P).sum()), rel=1e-6)


@pytest.mark.parametrize("value", [1e12, 1e30, np.inf])
def test_pot_drop_ins_with_forbidding_entries(rng, value):
    M, a, b = _cloud_cost(rng, 30)
    Mf = _forbid(rng, M, 0.2, value)
    P = _reference_plan(Mf, a, b, 1e-2)
    want = float((M * P).sum())
    assert fs.sinkhorn2(a, b, Mf, 1e-2) == pytest.approx(want, rel=1e-6)
    assert np.abs(fs.sinkhorn(a, b, Mf, 1e-2) - P).sum() <= 1e-6


def test_small_reg_with_a_huge_entry_is_not_the_independent_coupling(rng):
    """The reported case: one entry of 1e30 made ``auto`` anneal from reg 1e27,
    and the potentials lost the costs to rounding (converged=True, wrong plan)."""
    M, a, b = _cloud_cost(rng, 50)
    Mf = M.copy()
    Mf[3, 7] = 1e30
    for reg in (1e-2, 1e-3):
        res = fs.solve(Mf, a, b, reg=reg)
        assert res.converged
        exact = ot.emd2(a, b, M)  # the entry is never used by a cheap plan
        assert exact <= res.value_linear <= exact + reg * np.log(50) + 1e-9
        independent = float((M * np.outer(a, b)).sum())
        assert res.value_linear < 0.5 * independent
        f, g = res.potentials
        # potentials on the scale of the costs, and consistent with the plan
        assert max(np.abs(f).max(), np.abs(g).max()) < 10
        np.testing.assert_allclose(res.plan, np.exp((f[:, None] + g[None, :] - Mf) / reg), atol=1e-12)


def test_sns_under_a_mostly_forbidden_cost_converges(rng):
    """90% of the entries forbidden: the Newton system is far from the usual
    one; SNS, and auto (whose Sinkhorn would not finish in max_iter), converge."""
    M, a, b = _cloud_cost(rng, 40)
    Mf = _forbid(rng, M, 0.9, 1e30)
    for method in ("sns", "auto"):
        res = fs.solve(Mf, a, b, reg=1e-2, method=method, max_iter=20_000)
        assert res.converged and plan_error(res.plan, a, b) <= 1e-9
        assert np.all(res.plan[Mf >= 1e30] == 0.0)


def test_auto_hands_over_to_newton_when_sinkhorn_would_miss_max_iter(rng):
    """Sinkhorn alone does not reach tol in max_iter here (plain Sinkhorn warns);
    auto sees its rate, switches to Newton steps and converges."""
    M, a, b = _cloud_cost(rng, 40)
    Mf = _forbid(rng, M, 0.9, np.inf)
    with pytest.warns(fs.ConvergenceWarning):
        plain = fs.solve(Mf, a, b, reg=1e-2, method="sinkhorn", max_iter=3000)
    assert not plain.converged
    res = fs.solve(Mf, a, b, reg=1e-2, max_iter=3000)
    assert res.converged and res.method == "sns" and res.n_iter_phases["newton"] > 0
    assert res.n_iter <= 3000


def test_auto_is_plain_sinkhorn_where_sinkhorn_converges(rng):
    M, a, b = _cloud_cost(rng, 60)
    res = fs.solve(M, a, b, reg=5e-2)
    plain = fs.solve(M, a, b, reg=5e-2, method="sinkhorn")
    assert res.method == "sinkhorn" and res.n_iter_phases == plain.n_iter_phases
    np.testing.assert_array_equal(res.plan, plain.plan)


def test_batches_and_point_free_costs_with_forbidden_entries(rng):
    costs, masses = [], []
    for _ in range(4):
        M, a, b = _cloud_cost(rng, 12, 9)
        costs.append(_forbid(rng, M, 0.3, np.inf))
        masses.append((a, b))
    batch = fs.solve(np.stack(costs), reg=5e-2)
    assert np.all(batch.converged)
    for p, M in enumerate(costs):
        single = fs.solve(M, reg=5e-2, method="sinkhorn")
        np.testing.assert_allclose(batch.plan[p], single.plan, rtol=1e-10, atol=1e-15)
        assert batch.value_linear[p] == pytest.approx(single.value_linear, rel=1e-12)
        assert np.all(batch.plan[p][np.isinf(M)] == 0.0)


@pytest.mark.parametrize("order", ["C", "F"])
def test_a_row_without_a_finite_cost_is_infeasible_and_named(order):
    M = np.array([[0.0, 1.0, 2.0], [np.inf, np.inf, np.inf], [1.0, 0.0, 1.0]])
    M = M if order == "C" else np.asfortranarray(M.T)
    which = "row 1 has mass (a[1] > 0)" if order == "C" else "column 1 has mass (b[1] > 0)"
    for method in ("sinkhorn", "sns"):
        with pytest.raises(ValueError, match="^" + re.escape(f"M: {which} but no finite cost")):
            fs.solve(M, reg=0.1, method=method)


def test_finite_entries_only_to_empty_columns_are_infeasible():
    M = np.array([[0.0, np.inf], [np.inf, 0.0]])
    with pytest.raises(ValueError, match="^M: row 1 has mass"):
        fs.solve(M, [0.5, 0.5], [1.0, 0.0], reg=0.1)
    # a zero-mass row of forbidden entries is fine
    res = fs.solve(np.array([[0.0, 1.0], [np.inf, np.inf]]), [1.0, 0.0], [0.5, 0.5], reg=0.1)
    assert res.converged and np.all(res.plan[1] == 0.0)


@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
def test_unbalanced_leaves_unreachable_mass_behind(rng, method):
    """Relaxed marginals: a row with no finite cost simply sends nothing, and
    the rest is the plan of the problem without that row."""
    M, a, b = _cloud_cost(rng, 8, 6)
    M[2] = np.inf
    res = fs.solve(M, a, b, reg=0.05, unbalanced=1.0, method=method)
    assert res.converged and np.all(res.plan[2] == 0.0)
    a0 = a.copy()
    a0[2] = 0.0
    without = fs.solve(np.where(np.isinf(M), 0.0, M), a0, b, reg=0.05, unbalanced=1.0, method=method)
    np.testing.assert_allclose(res.plan, without.plan, rtol=1e-7, atol=1e-14)
    # an exact side (semi-relaxed) with such a row is infeasible
    with pytest.raises(ValueError, match="^M: row 2 has mass"):
        fs.solve(M, a, b, reg=0.05, unbalanced=(np.inf, 1.0))


def test_inputs_with_forbidden_entries_are_not_modified(rng):
    M, a, b = _cloud_cost(rng, 10)
    M[1] = np.inf
    copies = [x.copy() for x in (M, a, b)]
    fs.solve(M, a, b, reg=0.1, unbalanced=1.0)
    for x, c in zip((M, a, b), copies):
        np.testing.assert_array_equal(x, c)


# -- the cost scale behind method="auto" and annealing ------------------------

BACKENDS = ["reference", "cpu"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cost_scale_is_the_range_for_ordinary_costs(rng, backend):
    be = get_backend(backend)
    for M in (rng.random((300, 200)), fs.dist(rng.random((250, 2)), rng.random((260, 2)))):
        reduced = M - M.min(axis=1, keepdims=True)
        reduced -= reduced.min(axis=0)
        assert support_scale(M, be) == pytest.approx(reduced.max(), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cost_scale_ignores_forbidding_entries_and_offsets(rng, backend):
    be = get_backend(backend)
    M = rng.random((200, 150))
    base = support_scale(M, be)
    for value in (1e6, 1e30, 1e300, np.inf):
        for fraction in (0.001, 0.5, 0.85):
            Mf = _forbid(rng, M, fraction, value)
            assert support_scale(Mf, be) <= base * (1 + 1e-12)
            assert support_scale(Mf, be) >= 0.5 * base
    # row and column offsets leave every plan unchanged, and the scale within a factor 2
    offsets = 1e3 * rng.random(200)[:, None] + 1e2 * rng.random(150)[None, :]
    assert 0.5 * base <= support_scale(M + offsets, be) <= 2 * base
    assert support_scale(M + 1e3 * rng.random(200)[:, None], be) == pytest.approx(base, rel=1e-9)


def test_cost_scale_of_a_constant_cost_is_zero():
    assert support_scale(np.full((5, 4), 3.0), get_backend("cpu")) == 0.0
    res = fs.solve(np.full((5, 4), 3.0), reg=1e-3)
    assert res.converged and res.method == "sinkhorn"
    np.testing.assert_allclose(res.plan, 1 / 20)


@pytest.mark.parametrize("method", ["sinkhorn", "sns", "auto"])
def test_halls_condition_violated_is_infeasible_not_unconverged(rng, method):
    """Three rows reach only two columns: every row has a finite entry (the
    cheap check passes), yet no plan exists. The solve cannot converge, and
    says why instead of warning."""
    n = 12
    M = rng.random((n, n))
    M[:3, 2:] = np.inf
    with pytest.raises(ValueError, match=r"^M: the masses cannot be transported within its finite entries"):
        fs.solve(M, reg=0.05, method=method, max_iter=300)
    batch = np.stack([rng.random((n, n)), M])
    with pytest.raises(ValueError, match=r"finite entries in problem 1 "):
        fs.solve(batch, reg=0.05, max_iter=300)
