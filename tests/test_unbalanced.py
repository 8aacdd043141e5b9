"""Unbalanced OT (KL-relaxed marginals) in the native API, both methods, every CPU backend.

The oracle is an independent dense Newton method on the unbalanced dual
(exact Hessian, n + m <= 100 unknowns), which reaches machine accuracy in a
few dozen steps whatever the relaxation; POT's own solvers are compared
where they converge.
"""

import warnings

import numpy as np
import ot
import pytest
from ot_testing import random_problem

import fastsinkhorn as fs
from fastsinkhorn.problems import make_problem

FAMILIES = ["cloud", "grid-w1", "rect", "assignment"]
RHOS = [1e-2, 1.0, 1e3]


def assert_same_plan(P, Q, tol=1e-8):
    """Plans agree to ``tol`` of the largest entry, and to ``tol`` of the mass in L1
    (an entry-wise rtol would judge the rows of 1e-6 mass by the L1 tolerance's noise)."""
    P, Q = np.asarray(P), np.asarray(Q)
    assert P.shape == Q.shape
    assert np.abs(P - Q).max() <= tol * np.abs(Q).max(), np.abs(P - Q).max() / np.abs(Q).max()
    assert np.abs(P - Q).sum() <= tol * Q.sum(), np.abs(P - Q).sum() / Q.sum()


def unbalanced_problem(family, n=36, seed=0, extra_mass=1.3):
    """A suite problem whose target carries ``extra_mass`` times the source's mass."""
    p = make_problem(family, n, seed=seed)
    return p.M / p.M.max(), p.a, p.b * extra_mass


def oracle(M, a, b, reg, rho, reg_type="kl"):
    """Plan of unbalanced entropic OT by Newton's method on the dense dual.

    Potentials in the frame ``P = exp((f_i + g_j - M_ij) / reg)``; the dual is
    ``sum_side rho <w, 1 - exp(-(f - reg s) / rho)> - reg sum P`` with ``s =
    log w`` for ``reg_type="kl"`` (reference ``a b^T``) and 0 for ``"entropy"``.
    """
    rho_a, rho_b = (rho, rho) if np.ndim(rho) == 0 else rho
    n, m = M.shape
    sa, sb = (np.log(a), np.log(b)) if reg_type == "kl" else (0.0, 0.0)
    x = np.zeros(n + m)

    def side(w, p, s, rho):
        """Target marginal and dual term of one side (an exact side: w and <w, p>)."""
        if np.isinf(rho):
            return w, w @ p
        target = w * np.exp(-(p - reg * s) / rho)
        return target, rho * (w - target).sum()

    def parts(x):
        f, g = x[:n], x[n:]
        P = np.exp((f[:, None] + g[None, :] - M) / reg)
        (ta, da), (tb, db) = side(a, f, sa, rho_a), side(b, g, sb, rho_b)
        return P, ta, tb, da + db - reg * P.sum()

    for _ in range(200):
        P, ta, tb, dual = parts(x)
        grad = np.r_[ta - P.sum(1), tb - P.sum(0)]
        if np.abs(grad).sum() < 1e-14:
            break
        H = np.block([[np.diag(P.sum(1) / reg + ta / rho_a), P / reg],
                      [P.T / reg, np.diag(P.sum(0) / reg + tb / rho_b)]])
        step = np.linalg.lstsq(H, grad, rcond=None)[0]  # ascent direction (H is singular when balanced)
        t = 1.0  # Armijo on the dual, or a smaller gradient (near the optimum the dual's change is rounding)
        while t > 1e-10:
            P2, ta2, tb2, dual2 = parts(x + t * step)
            if dual2 >= dual + 1e-4 * t * (grad @ step) or \
                    np.abs(np.r_[ta2 - P2.sum(1), tb2 - P2.sum(0)]).sum() < 0.5 * np.abs(grad).sum():
                break
            t /= 2
        x = x + t * step
    return parts(x)[0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rho", RHOS)
@pytest.mark.parametrize("reg_type", ["kl", "entropy"])
@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
def test_plan_equals_the_oracle(family, rho, reg_type, method):
    M, a, b = unbalanced_problem(family)
    reg = 0.05
    res = fs.solve(M, a, b, reg, unbalanced=rho, reg_type=reg_type, method=method, tol=1e-11, max_iter=20_000)
    want = oracle(M, a, b, reg, rho, reg_type)
    assert res.converged and res.marginal_error <= 1e-11
    assert_same_plan(res.plan, want)
    # the potentials give the plan, and the marginals satisfy the optimality conditions
    f, g = res.potentials
    np.testing.assert_allclose(np.exp((f[:, None] + g[None, :] - M) / 0.05), res.plan, rtol=1e-9, atol=1e-300)
    shift = np.log(a) if reg_type == "kl" else 0.0
    np.testing.assert_allclose(res.marginal_a, a * np.exp(-(f - reg * shift) / rho), rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("reg_m", [(0.3, np.inf), (np.inf, 2.0), (0.1, 10.0)])
def test_semi_relaxed_and_pairs_equal_the_oracle(rng, reg_m):
    M, a, b = random_problem(rng, 30, 25)
    b = b * (1.4 if np.isinf(reg_m[1]) else 1.0)  # an exact side fixes the mass
    a = a * (1.4 if np.isinf(reg_m[1]) else 1.0)
    res = fs.solve(M, a, b, 0.1, unbalanced=reg_m, method="sinkhorn", tol=1e-11)
    want = oracle(M, a, b, 0.1, reg_m)
    assert_same_plan(res.plan, want)
    exact = 0 if np.isinf(reg_m[0]) else 1 if np.isinf(reg_m[1]) else None
    if exact is not None:  # an exact marginal is held exactly
        np.testing.assert_allclose(res.plan.sum(axis=1 - exact), (a, b)[exact], rtol=1e-10)


@pytest.mark.parametrize("rho", [1e-2, 1.0, 10.0])
@pytest.mark.parametrize("reg_type", ["kl", "entropy"])
def test_matches_pot_where_pot_converges(rng, rho, reg_type):
    M, a, b = random_problem(rng, 40, 30)
    b = 2.0 * b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P, log = ot.unbalanced.sinkhorn_unbalanced(a, b, M, 0.1, rho, method="sinkhorn_stabilized",
                                                   reg_type=reg_type, numItermax=100_000, stopThr=1e-15, log=True)
    res = fs.solve(M, a, b, 0.1, unbalanced=rho, reg_type=reg_type, tol=1e-12)
    assert_same_plan(res.plan, P)
    assert res.value_linear == pytest.approx(float(log["cost"]), rel=1e-9)
    # POT's KL adds 1e-16 inside its logs: ~1e-10 absolute on a value that may be ~0
    assert res.value == pytest.approx(float(log["total_cost"]), rel=1e-9, abs=1e-9)


def test_small_reg_where_pot_underflows():
    """POT's scaling solver stops on numerical errors; ours and POT's
    stabilized solver (after 10^6 iterations) agree."""
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 2)), rng.random((50, 2))
    M = ot.dist(x, y)
    M /= M.max()
    a, b = rng.random(60), rng.random(50)
    a, b = a / a.sum(), 1.5 * b / b.sum()
    for method in ("sinkhorn", "sns"):
        res = fs.solve(M, a, b, 1e-2, unbalanced=100.0, method=method, tol=1e-10)
        assert res.converged
        assert_same_plan(res.plan, oracle(M, a, b, 1e-2, 100.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pot = ot.unbalanced.sinkhorn_unbalanced(a, b, M, 1e-2, 100.0, numItermax=10_000)
    assert any("Numerical errors" in str(w.message) for w in caught)
    assert np.abs(pot - res.plan).max() > 1e-3  # POT's answer is off


def test_translation_removes_the_slow_mass_mode():
    """With rho >> reg, plain unbalanced Sinkhorn contracts the mass by tau =
    rho / (rho + reg) per iteration (10^4 iterations per e-fold here); one
    exact shift of (f, g) per iteration converges in a few hundred."""
    rng = np.random.default_rng(1)
    M, a, b = random_problem(rng, 50, 40)
    res = fs.solve(M, a, 2.0 * b, 1e-2, unbalanced=100.0, method="sinkhorn", tol=1e-9)
    assert res.converged and res.n_iter < 2000


def test_approaches_the_balanced_plan_as_rho_grows(rng):
    M, a, b = random_problem(rng, 40, 30)
    balanced = fs.solve(M, a, b, 0.05, tol=1e-12).plan
    gaps = [np.abs(fs.solve(M, a, b, 0.05, unbalanced=rho, tol=1e-12).plan - balanced).sum()
            for rho in (1e-1, 1.0, 10.0, 1e2, 1e4)]
    assert all(later < 0.5 * earlier for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-3


def test_backends_agree_and_f_order_is_the_transpose(rng):
    M, a, b = random_problem(rng, 33, 21)
    b = 0.7 * b
    ref = fs.solve(M, a, b, 0.05, unbalanced=(0.5, 2.0), backend="reference", method="sinkhorn", tol=1e-12)
    cpu = fs.solve(M, a, b, 0.05, unbalanced=(0.5, 2.0), backend="cpu", method="sinkhorn", tol=1e-12)
    np.testing.assert_allclose(cpu.plan, ref.plan, rtol=1e-10, atol=1e-15)
    fortran = fs.solve(np.asfortranarray(M), a, b, 0.05, unbalanced=(0.5, 2.0), method="sinkhorn", tol=1e-12)
    np.testing.assert_allclose(fortran.plan, ref.plan, rtol=1e-9, atol=1e-15)
    sns = fs.solve(M, a, b, 0.05, unbalanced=(0.5, 2.0), method="sns", backend="reference", tol=1e-12)
    np.testing.assert_allclose(sns.plan, ref.plan, rtol=1e-8, atol=1e-14)


def test_lazy_point_cloud_equals_dense(rng):
    x, y = rng.random((50, 2)), rng.random((40, 2))
    a, b = np.full(50, 1 / 50), np.full(40, 1.5 / 40)
    for method in ("sinkhorn", "sns"):
        lazy = fs.solve(fs.PointCloud(x, y), a, b, 0.02, unbalanced=0.5, method=method, tol=1e-11)
        dense = fs.solve(fs.PointCloud(x, y).cost_matrix(), a, b, 0.02, unbalanced=0.5, method=method, tol=1e-11)
        np.testing.assert_allclose(lazy.plan.to_dense(), dense.plan, rtol=1e-8, atol=1e-14)
        assert lazy.value == pytest.approx(dense.value, rel=1e-9)


def test_batch_equals_single_solves(rng):
    M = rng.random((5, 20, 15))
    a, b = rng.random((5, 20)), rng.random((5, 15)) * 3
    res = fs.solve(M, a, b, 0.05, unbalanced=1.0, tol=1e-11)
    for p in range(5):
        one = fs.solve(M[p], a[p], b[p], 0.05, unbalanced=1.0, method="sinkhorn", tol=1e-11)
        np.testing.assert_allclose(res.plan[p], one.plan, rtol=1e-12, atol=1e-16)
        assert res.value[p] == pytest.approx(one.value, rel=1e-12)


def test_sns_at_small_reg_anneals_to_the_sinkhorn_answer():
    p = make_problem("assignment", 80, seed=3)
    M, a, b = p.M / p.M.max(), p.a, 1.2 * p.b
    sns = fs.solve(M, a, b, 1e-3, unbalanced=0.1, method="sns", tol=1e-9)
    sk = fs.solve(M, a, b, 1e-3, unbalanced=0.1, method="sinkhorn", tol=1e-9, max_iter=200_000)
    assert sns.converged and sk.converged
    assert sns.n_iter < sk.n_iter / 5
    np.testing.assert_allclose(sns.plan, sk.plan, rtol=1e-5, atol=1e-9)


def test_a_reference_measure_is_the_entropy_of_a_shifted_cost(rng):
    M, a, b = random_problem(rng, 20, 15)
    c = rng.random((20, 15)) + 0.5
    res = fs.solve(M, a, 1.5 * b, 0.1, c=c, unbalanced=1.0, tol=1e-12)
    want = fs.solve(M - 0.1 * np.log(c), a, 1.5 * b, 0.1, reg_type="entropy", unbalanced=1.0, tol=1e-12)
    np.testing.assert_allclose(res.plan, want.plan, rtol=1e-12)
    assert res.value_linear == pytest.approx((M * res.plan).sum(), rel=1e-12)  # of the caller's M
    default = fs.solve(M, a, 1.5 * b, 0.1, c=np.outer(a, 1.5 * b), unbalanced=1.0, tol=1e-12)
    np.testing.assert_allclose(default.plan, fs.solve(M, a, 1.5 * b, 0.1, unbalanced=1.0, tol=1e-12).plan,
                               rtol=1e-10)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"unbalanced": -1.0}, ValueError, "unbalanced .* must be positive"),
    ({"unbalanced": (1.0, 2.0, 3.0)}, ValueError, "unbalanced must be a number or a pair"),
    ({"unbalanced": "big"}, TypeError, "unbalanced must be a number or a pair"),
    ({"unbalanced": 1.0, "unbalanced_type": "L2"}, NotImplementedError, "unbalanced_type='L2'"),
    ({"reg_type": "L2"}, NotImplementedError, "reg_type='L2'"),
    ({"plan_init": np.ones((3, 2))}, NotImplementedError, "plan_init"),
    ({"grad": "sideways"}, NotImplementedError, "grad='sideways'"),
    ({"c": np.ones((2, 3))}, ValueError, r"c must have the shape of M \(3, 2\)"),
    ({"c": np.zeros((3, 2))}, ValueError, "c .* must be positive"),
    ({"n_threads": 0}, ValueError, "n_threads must be a positive int"),
    ({"warm_start": (np.zeros(3), np.zeros(2)), "potentials_init": (np.zeros(3), np.zeros(2))}, TypeError,
     "potentials_init"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    M = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    with pytest.raises(error, match=match):
        fs.solve(M, None, None, 0.1, **kwargs)


def test_unequal_masses_need_unbalanced():
    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"equal sums.*\(or solve unbalanced OT"):
        fs.solve(M, [0.5, 0.5], [1.0, 1.0], 0.1)
    res = fs.solve(M, [0.5, 0.5], [1.0, 1.0], 0.1, unbalanced=1.0)
    assert 1.0 < res.plan.sum() < 2.0  # between the two masses


def test_inputs_are_not_modified(rng):
    M, a, b = random_problem(rng, 12, 9)
    copies = [x.copy() for x in (M, a, b)]
    fs.solve(M, a, b, 0.1, unbalanced=0.5)
    fs.sinkhorn_unbalanced(a, b, M, 0.1, 0.5)
    for x, y in zip((M, a, b), copies):
        np.testing.assert_array_equal(x, y)
