"""The direct solver of the sparsified Newton system, checked against dense NumPy."""

from fractions import Fraction

import numpy as np
import pytest

from fastsinkhorn.algorithms.sns import newton_system as ns
from fastsinkhorn.algorithms.sns.driver import anneal_schedule
from fastsinkhorn.core.options import SNSOptions


def sparsified(rng, n, m, k, power=8.0):
    """A random plan-like matrix, its top-k entries per row (ELL) and exact marginals."""
    P = rng.random((n, m)) ** power
    idx = np.argsort(-P, axis=1)[:, :k]
    val = np.take_along_axis(P, idx, axis=1)
    return P, idx, val, P.sum(axis=1), P.sum(axis=0)


def full_system(idx, val, r, c, mu):
    n, m = r.size, c.size
    S = np.zeros((n, m))
    np.put_along_axis(S, idx, val, axis=1)
    return np.block([[np.diag(r + mu), S], [S.T, np.diag(c + mu)]])


@pytest.fixture(params=["dense", "sparse"])
def kind(request, monkeypatch):
    """Run each test through the dense (LAPACK) and the sparse (SuperLU) path."""
    if request.param == "sparse":
        monkeypatch.setattr(ns, "DENSE_MAX_ORDER", 0)
        monkeypatch.setattr(ns, "SPARSE_MAX_FLOP_FRACTION", np.inf)
    return request.param


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (5, 7), (64, 64), (300, 120), (120, 300)])
def test_solution_equals_dense_solve(rng, kind, shape):
    n, m = shape
    P, idx, val, r, c = sparsified(rng, n, m, min(m, 4))
    mu = 1e-6 * float(r.mean())
    H = full_system(idx, val, r, c, mu)
    rhs = rng.standard_normal(n + m)
    system = ns.factorize_newton_system(idx, val, r, c, mu)
    assert system.kind == kind and system.order == min(n, m)
    df, dg = system.solve(rhs[:n], rhs[n:])
    x = np.linalg.solve(H, rhs)
    np.testing.assert_allclose(np.r_[df, dg], x, rtol=1e-9, atol=1e-9 * np.abs(x).max())


def test_zero_padding_is_ignored(rng, kind):
    P, idx, val, r, c = sparsified(rng, 40, 30, 6)
    val[:, 3:] = 0.0  # padding, some on columns that rows also keep
    idx[:, 3:] = np.arange(3)
    mu = 1e-8
    rhs = rng.standard_normal(70)
    df, dg = ns.factorize_newton_system(idx, val, r, c, mu).solve(rhs[:40], rhs[40:])
    x = np.linalg.solve(full_system(idx[:, :3], val[:, :3], r, c, mu), rhs)
    np.testing.assert_allclose(np.r_[df, dg], x, rtol=1e-9, atol=1e-9 * np.abs(x).max())


def test_near_permutation_system_is_solved_accurately(rng, kind):
    """Plan = permutation / n plus off-diagonal mass 1e-13 of it: condition ~1e13.

    Jacobi-PCG needs thousands of iterations here; the factorisation's residual
    against the full system stays at rounding level.
    """
    n = 50
    perm = rng.permutation(n)
    P = 1e-13 * rng.random((n, n)) / n
    P[np.arange(n), perm] = 1.0 / n
    idx = np.argsort(-P, axis=1)[:, :3]
    val = np.take_along_axis(P, idx, axis=1)
    r, c, mu = P.sum(1), P.sum(0), 1e-18
    H = full_system(idx, val, r, c, mu)
    rhs = H @ rng.standard_normal(2 * n)  # consistent right-hand side
    df, dg = ns.factorize_newton_system(idx, val, r, c, mu).solve(rhs[:n], rhs[n:])
    assert np.linalg.norm(H @ np.r_[df, dg] - rhs) <= 1e-10 * np.linalg.norm(rhs)


def test_schur_diagonal_has_no_cancellation(monkeypatch):
    """The assembled diagonal equals the exact rational value where the naive
    ``c_j - sum_i S_ij^2 / r_i`` loses every digit."""
    captured = {}

    def capture(C):
        captured["diag"] = np.diag(C).copy()
        return lambda y: y

    monkeypatch.setattr(ns, "_dense_cholesky", capture)
    eps = 1e-17
    P = np.array([[0.5, eps, 0.0], [eps, 0.25, 3 * eps], [0.0, 2 * eps, 0.25]])
    n = 3
    idx = np.tile(np.arange(n), (n, 1))
    r, c, mu = P.sum(1), P.sum(0), 0.0
    ns.factorize_newton_system(idx, P.copy(), r, c, mu)
    F = [[Fraction(x) for x in row] for row in P]
    rF = [sum(row) for row in F]
    exact = [sum(F[i][j] for i in range(n)) - sum(F[i][j] ** 2 / rF[i] for i in range(n)) for j in range(n)]
    np.testing.assert_allclose(captured["diag"], [float(x) for x in exact], rtol=1e-12)
    naive = c - (P**2 / r[:, None]).sum(0)
    assert not np.allclose(naive, [float(x) for x in exact], rtol=1e-3, atol=0)  # the trap it avoids


def test_sum_of_others_with_ties(rng):
    seg = rng.integers(0, 20, 300)
    s = rng.integers(1, 5, 300).astype(float)  # many ties, including for the maximum
    others = ns._sum_of_others(seg, s, 20)
    brute = np.array([s[seg == seg[t]].sum() - s[t] for t in range(300)])
    np.testing.assert_allclose(others, brute, rtol=1e-15, atol=0)


def test_prune_by_mass_drops_what_the_budget_allows_and_no_more(rng):
    n, k = 200, 12
    val = rng.random((n, k)) ** 4
    r = val.sum(1) * (1 + 1e-3 * rng.random(n))  # some mass beyond the selection
    r[0] = 2 * val[0].sum()  # row 0's selection already left out more than its share
    budget = 0.05 * float(r.sum())
    pruned = ns.prune_by_mass(val, r, budget)
    allowance = budget * r / r.sum() - (r - val.sum(1))
    dropped = (val - pruned).sum(1)
    assert allowance[0] < 0 and (pruned[0] == val[0]).all()  # nothing more to drop there
    assert ((pruned == val) | (pruned == 0)).all()
    assert (dropped <= np.maximum(allowance, 0) * (1 + 1e-12)).all()
    assert (pruned.max(1) == val.max(1)).all()  # the largest entry always stays
    # maximal: dropping the smallest kept entry too would exceed the allowance
    smallest_kept = np.where(pruned > 0, pruned, np.inf).min(1)
    several = (pruned > 0).sum(1) > 1
    assert (dropped + smallest_kept > allowance)[several].all()
    assert (val - pruned).sum() > 0  # it did drop something


def test_anneal_schedule():
    opts = SNSOptions()
    regs = anneal_schedule(1e-5, 2.0, opts, warm=False)
    assert regs[0] == pytest.approx(opts.anneal_start * 2.0) and regs[-1] == 1e-5
    ratios = np.array(regs[:-1]) / np.array(regs[1:])
    np.testing.assert_allclose(ratios[:-1], opts.anneal_factor)
    assert 1 < ratios[-1] <= opts.anneal_factor
    assert anneal_schedule(1e-5, 2.0, opts, warm=True) == [1e-5]
    assert anneal_schedule(1e-2, 1.0, opts, warm=False) == [1e-2]
    assert anneal_schedule(1e-5, 1.0, SNSOptions(anneal_factor=1.0), warm=False) == [1e-5]


def test_assembly_in_chunks_gives_the_same_solution(rng, kind, monkeypatch):
    P, idx, val, r, c = sparsified(rng, 90, 60, 7)
    rhs = rng.standard_normal(150)
    whole = ns.factorize_newton_system(idx, val, r, c, 1e-7).solve(rhs[:90], rhs[90:])
    monkeypatch.setattr(ns, "PAIRS_PER_CHUNK", 50)  # ~2 rows of 7 entries a chunk
    chunks = list(ns._schur_offdiagonal(np.repeat(np.arange(90), 7), idx.ravel(), val.ravel(), r + 1e-7))
    assert len(chunks) > 20
    chunked = ns.factorize_newton_system(idx, val, r, c, 1e-7).solve(rhs[:90], rhs[90:])
    np.testing.assert_allclose(np.r_[chunked], np.r_[whole], rtol=1e-10, atol=1e-12)
