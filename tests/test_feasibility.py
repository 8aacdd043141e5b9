"""``transport_deficit``: the mass no plan can move within the finite entries of M."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from fastsinkhorn.algorithms.exact.feasibility import feasible_flow, transport_deficit


def hall_violation(M, a, b):
    """Brute force: ``max_S a(S) - b(N(S))`` over every set of rows."""
    finite = np.isfinite(M)
    best = 0.0
    for k in range(1, M.shape[0] + 1):
        for S in itertools.combinations(range(M.shape[0]), k):
            best = max(best, a[list(S)].sum() - b[finite[list(S)].any(axis=0)].sum())
    return best


def max_flow_deficit(M, a, b):
    """By HiGHS: ``sum(a)`` minus the largest mass movable through finite entries."""
    n, m = M.shape
    rows, cols = np.nonzero(np.isfinite(M))
    E = rows.shape[0]
    A = sp.vstack([sp.csr_matrix((np.ones(E), (rows, np.arange(E))), shape=(n, E)),
                   sp.csr_matrix((np.ones(E), (cols, np.arange(E))), shape=(m, E))])
    res = linprog(-np.ones(E), A_ub=A, b_ub=np.concatenate([a, b]), bounds=(0, None), method="highs")
    return float(a.sum() + res.fun)


def random_masses(rng, size):
    w = rng.random(size) ** 2 * (rng.random(size) > 0.2)  # zeros too
    w[0] += 1e-3
    return w / w.sum()


def test_matches_brute_force_on_small_problems(rng):
    for _ in range(150):
        n, m = rng.integers(1, 8, 2)
        M = np.where(rng.random((n, m)) < rng.uniform(0.2, 0.9), np.inf, rng.random((n, m)))
        M[rng.integers(n), rng.integers(m)] = 1.0  # some finite entry
        a, b = random_masses(rng, n), random_masses(rng, m)
        assert transport_deficit(M, a, b) == pytest.approx(hall_violation(M, a, b), abs=1e-13)


@pytest.mark.parametrize("density", [0.02, 0.1, 0.5])
def test_matches_max_flow_lp(rng, density):
    """Both modes (the allowed entries listed when sparse, M read when not), bands too."""
    for _ in range(25):
        n, m = rng.integers(5, 60, 2)
        M = np.where(rng.random((n, m)) < density, rng.random((n, m)), np.inf)
        M[np.arange(n), np.arange(n) * m // n] = 1.0  # a band keeps many problems feasible
        a, b = random_masses(rng, n), random_masses(rng, m)
        assert transport_deficit(M, a, b) == pytest.approx(max_flow_deficit(M, a, b), abs=1e-13)


def test_feasible_problems_give_exactly_zero(rng):
    n = 300
    M = rng.random((n, n))
    assert transport_deficit(M) == 0.0  # no forbidden entry
    perm = rng.permutation(n)
    band = np.full((n, n), np.inf)
    for k in range(2):
        band[np.arange(n), perm[(np.arange(n) + k) % n]] = 0.5
    assert transport_deficit(band) == 0.0  # a permuted band: augmenting paths needed
    rows, cols, flow, deficit = feasible_flow(band, np.full(n, 1 / n), np.full(n, 1 / n))
    assert deficit == 0.0 and np.isfinite(band[rows, cols]).all() and (flow > 0).all()
    np.testing.assert_allclose(np.bincount(rows, flow, n), 1 / n, rtol=1e-12)
    np.testing.assert_allclose(np.bincount(cols, flow, n), 1 / n, rtol=1e-12)


def test_limit_and_first_entries(rng):
    """``limit`` excludes large entries too; the given entries are filled first."""
    M = np.array([[0.0, 5.0], [5.0, 0.0]])
    a = b = np.array([0.5, 0.5])
    assert feasible_flow(M, a, b, limit=1.0)[3] == 0.0
    assert feasible_flow(M, np.array([0.9, 0.1]), b, limit=1.0)[3] == pytest.approx(0.4)
    rows, cols, flow, _ = feasible_flow(M, a, b, np.inf, np.array([0]), np.array([1]))
    assert (rows[0], cols[0], flow[0]) == (0, 1, 0.5)


def test_inputs_checked_and_not_modified(rng):
    M = np.where(rng.random((30, 20)) < 0.5, np.inf, rng.random((30, 20)))
    a, b = random_masses(rng, 30), random_masses(rng, 20)
    copies = [x.copy() for x in (M, a, b)]
    transport_deficit(M, a, b)
    for x, c in zip((M, a, b), copies):
        np.testing.assert_array_equal(x, c)
    with pytest.raises(ValueError, match="M must not contain NaN"):
        transport_deficit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="equal sums"):
        transport_deficit(np.ones((2, 2)), [0.5, 0.5], [0.2, 0.2])
    assert transport_deficit(np.asfortranarray(M), a, b) == pytest.approx(max_flow_deficit(M, a, b), abs=1e-13)
