"""The matvec-only preconditioned conjugate gradient (``fastsinkhorn.core.cg.pcg``)."""

import numpy as np
import pytest

from fastsinkhorn.core.cg import pcg


def spd_system(rng, n=40, spread=1e3):
    """A dense SPD matrix with eigenvalues in [1, spread], a bad diagonal scaling and a right-hand side."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.exp(rng.uniform(0, 1, n)) * 10.0 ** rng.uniform(-2, 2, n)  # rows on very different scales
    A = s[:, None] * (Q * np.geomspace(1, spread, n)) @ Q.T * s[None, :]
    return A, rng.standard_normal(n)


def test_solves_to_the_relative_residual_asked_and_stops_at_the_first_such_iterate(rng):
    A, rhs = spd_system(rng)
    x, iters, converged = pcg(lambda v: A @ v, rhs, np.diag(A).copy(), 1e-6, 1000, np)
    assert converged and 1 < iters < 1000
    assert np.linalg.norm(rhs - A @ x) <= 1e-6 * np.linalg.norm(rhs) * (1 + 1e-6)
    # one iteration fewer misses it: the count is that of the first iterate within the tolerance
    x_short, short, ok = pcg(lambda v: A @ v, rhs, np.diag(A).copy(), 1e-6, iters - 1, np)
    assert (short, ok) == (iters - 1, False)
    assert np.linalg.norm(rhs - A @ x_short) > 1e-6 * np.linalg.norm(rhs)
    # a tight tolerance gives the exact solution
    x_tight, _, ok = pcg(lambda v: A @ v, rhs, np.diag(A).copy(), 1e-13, 1000, np)
    assert ok
    np.testing.assert_allclose(x_tight, np.linalg.solve(A, rhs), rtol=1e-8, atol=1e-10 * np.abs(x_tight).max())


def test_jacobi_preconditioner_is_applied(rng):
    """With the diagonal of a badly scaled matrix, PCG needs far fewer
    iterations than with the identity (plain CG)."""
    A, rhs = spd_system(rng, spread=10.0)
    _, jacobi, ok = pcg(lambda v: A @ v, rhs, np.diag(A).copy(), 1e-10, 5000, np)
    _, plain, ok_plain = pcg(lambda v: A @ v, rhs, np.ones(len(rhs)), 1e-10, 5000, np)
    assert ok and jacobi < 60 and (plain > 2 * jacobi or not ok_plain)


@pytest.mark.parametrize("refresh_every", [1, 3, 7])
def test_true_residual_refresh_gives_the_same_iterates(rng, refresh_every):
    A, rhs = spd_system(rng, spread=100.0)
    d = np.diag(A).copy()
    x_ref, n_ref, _ = pcg(lambda v: A @ v, rhs, d, 1e-9, 1000, np)
    x, n, ok = pcg(lambda v: A @ v, rhs, d, 1e-9, 1000, np, refresh_every=refresh_every)
    assert ok and abs(n - n_ref) <= 0.2 * n_ref  # rounding takes a slightly different path
    assert np.linalg.norm(rhs - A @ x) <= 1e-9 * np.linalg.norm(rhs) * (1 + 1e-6)
    np.testing.assert_allclose(x, x_ref, rtol=1e-7, atol=1e-9 * np.abs(x_ref).max())


def test_zero_right_hand_side_returns_zero_without_iterating():
    calls = []
    x, iters, converged = pcg(lambda v: calls.append(v) or v, np.zeros(5), np.ones(5), 1e-8, 100, np)
    assert iters == 0 and converged and not calls
    assert np.array_equal(x, np.zeros(5))


def test_zero_curvature_stops_without_converging():
    """A null direction (``p^T A p = 0``) stops at once, reporting failure."""
    x, iters, converged = pcg(lambda v: np.zeros_like(v), np.ones(4), np.ones(4), 1e-8, 100, np)
    assert (iters, converged) == (1, False)
    assert np.array_equal(x, np.zeros(4))


def test_iteration_cap_is_reported(rng):
    A, rhs = spd_system(rng, spread=1e4)
    x, iters, converged = pcg(lambda v: A @ v, rhs, np.diag(A).copy(), 1e-14, 3, np)
    assert (iters, converged) == (3, False)
    # three CG steps still reduce the A-norm error from x = 0
    exact = np.linalg.solve(A, rhs)
    assert (exact - x) @ A @ (exact - x) < exact @ A @ exact


def test_one_step_on_a_diagonal_system_is_exact():
    """Jacobi-preconditioned CG solves a diagonal system in one step."""
    diag = np.array([1.0, 4.0, 0.5, 10.0])
    rhs = np.array([1.0, -2.0, 3.0, 0.25])
    x, iters, converged = pcg(lambda v: diag * v, rhs, diag, 1e-12, 10, np)
    assert (iters, converged) == (1, True)
    np.testing.assert_allclose(x, rhs / diag, rtol=1e-14)


def test_true_residual_is_recomputed_every_refresh_every_iterations(rng):
    """One product with ``A p`` per iteration, plus one with ``A x`` (the true
    residual) after iterations 5 and 10 for ``refresh_every=5``; the cap of 12
    iterations is run in full."""
    A, rhs = spd_system(rng, n=60, spread=1e4)
    args = []  # kept alive: identities stay unique
    x, iters, converged = pcg(lambda v: args.append(v) or A @ v, rhs, np.diag(A).copy(), 1e-14, 12, np,
                              refresh_every=5)
    assert (iters, converged) == (12, False) and len(args) == 14
    assert [i for i, v in enumerate(args) if v is x] == [5, 11]
    # by default, every 50 iterations
    args.clear()
    x, iters, converged = pcg(lambda v: args.append(v) or A @ v, rhs, np.diag(A).copy(), 1e-300, 51, np)
    assert (iters, converged) == (51, False) and [i for i, v in enumerate(args) if v is x] == [50]
