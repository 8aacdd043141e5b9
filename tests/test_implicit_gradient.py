"""The implicit gradient's Newton system: the dense least-squares solve and
the Schur-complement CG used beyond ``DENSE_SOLVE_MAX`` unknowns agree."""

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.core import autodiff


@pytest.mark.parametrize("n, m, zeros", [(30, 20, 0), (40, 55, 3), (7, 9, 1), (1, 6, 0)])
def test_schur_cg_equals_the_dense_minimum_norm_solve(rng, monkeypatch, n, m, zeros):
    M = rng.random((n, m))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    if zeros:  # rows and columns without mass: zero rows of the system
        a[:zeros], b[m - zeros:] = 0.0, 0.0
    a, b = a / a.sum(), b / b.sum()
    P = np.asarray(fs.solve(M, a, b, reg=0.1, tol=1e-13, method="sinkhorn", max_iter=100_000).plan)
    dense = autodiff.linear_cost_gradients(M, P, 0.1)
    monkeypatch.setattr(autodiff, "DENSE_SOLVE_MAX", 0)
    iterative = autodiff.linear_cost_gradients(M, P, 0.1)
    for x, y in zip(dense, iterative):
        np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-12 * np.abs(x).max())
    # and it solves the system: H z = ((M * P) 1, (M * P)^T 1) on the rows with mass
    _, z_f, z_g = iterative
    r, c = P.sum(1), P.sum(0)
    np.testing.assert_allclose(r * z_f + P @ z_g, (M * P).sum(1), atol=1e-12)
    np.testing.assert_allclose(P.T @ z_f + c * z_g, (M * P).sum(0), atol=1e-12)
