"""The implicit differentiation of entropic optima, in NumPy: the dual Hessian
solve against a dense least-squares solve, and the pullback of every output
(value, value_linear, plan, potentials) against central finite differences
of the solver, balanced, rectangular, relaxed (KL, both frames), with zero
masses."""

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.core.implicit import PlanOperator, Relaxation, dual_hessian_solve, entropic_pullback

TOL = 1e-13


def _problem(rng, n, m, zeros=False):
    M = rng.random((n, m))
    a, b = rng.random(n) + 0.2, rng.random(m) + 0.2
    if zeros:
        a[0] = 0.0
        b[-1] = 0.0
    return M, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("n, m", [(5, 5), (7, 4), (3, 9)])
@pytest.mark.parametrize("zeros", [False, True])
@pytest.mark.parametrize("rho", [np.inf, 0.7])
def test_dual_hessian_solve_equals_a_dense_least_squares_solve(rng, n, m, zeros, rho):
    M, a, b = _problem(rng, n, m, zeros)
    reg = 0.2
    P = fs.solve(M, a, b, reg, tol=TOL).plan
    op = PlanOperator.dense(P, reg)
    relax = Relaxation(a, b, rho, rho)
    y_f, y_g = rng.standard_normal(n), rng.standard_normal(m)
    z_f, z_g = dual_hessian_solve(op, relax, y_f, y_g)
    k = 0.0 if np.isinf(rho) else reg / rho
    H = np.block([[np.diag(P.sum(1) * (1 + k)), P], [P.T, np.diag(P.sum(0) * (1 + k))]])
    y = np.concatenate([np.where(P.sum(1) > 0, y_f, 0), np.where(P.sum(0) > 0, y_g, 0)])
    if np.isinf(rho):  # the component along (1, -1) on the support is dropped
        v = np.concatenate([(P.sum(1) > 0) * 1.0, (P.sum(0) > 0) * -1.0])
        y = y - (y @ v) / (v @ v) * v
    expected = np.linalg.lstsq(H, y, rcond=None)[0]
    np.testing.assert_allclose(np.concatenate([z_f, z_g]), expected, atol=1e-8 * np.abs(expected).max())


def _outputs(M, a, b, reg, **kw):
    res = fs.solve(M, a, b, reg, tol=TOL, max_iter=100000, **kw)
    f, g = res.potentials
    return {"value": float(res.value), "value_linear": float(res.value_linear), "plan": res.plan,
            "f": _centred(f, f), "g": _centred(g, g)}, res


def _centred(x, potential):
    """``x`` minus its mean over the finite entries of ``potential``, 0 elsewhere."""
    live = np.isfinite(potential)
    return np.where(live, x - x[live].mean(), 0.0)


def _loss(out, weights):
    return sum(float(np.sum(np.where(np.isfinite(out[k]), out[k], 0.0) * w)) for k, w in weights.items())


CASES = [
    dict(n=5, m=5, zeros=False, kw={}),
    dict(n=6, m=4, zeros=False, kw={}),
    dict(n=4, m=6, zeros=True, kw={}),
    dict(n=5, m=4, zeros=False, kw={"reg_type": "entropy"}),
    dict(n=5, m=4, zeros=False, kw={"unbalanced": 0.5}),
    dict(n=4, m=5, zeros=False, kw={"unbalanced": 0.8, "reg_type": "entropy"}),
    dict(n=5, m=4, zeros=False, kw={"unbalanced": (np.inf, 0.6)}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['n']}x{c['m']}-{c['zeros']}-{c['kw']}")
@pytest.mark.parametrize("output", ["value", "value_linear", "plan", "potentials"])
def test_pullback_matches_finite_differences(rng, case, output):
    n, m, kw = case["n"], case["m"], case["kw"]
    M, a, b = _problem(rng, n, m, case["zeros"])
    reg = 0.25
    out, res = _outputs(M, a, b, reg, **kw)
    weights = {"value": {"value": 1.0}, "value_linear": {"value_linear": 1.0},
               "plan": {"plan": rng.standard_normal((n, m))},
               "potentials": {"f": rng.standard_normal(n), "g": rng.standard_normal(m)}}[output]
    cot = {k: (np.asarray(w, dtype=float) if k != "value" and k != "value_linear" else w) for k, w in weights.items()}
    if output == "potentials":  # the loss sees the centred potentials: their cotangents are centred
        cot = {k: _centred(w, p) for (k, w), p in zip(cot.items(), res.potentials)}
    rho = fs.core.relaxation.check_unbalanced(kw.get("unbalanced"))
    relax = Relaxation(a, b, *rho, kl_frame=kw.get("reg_type", "KL") == "KL")
    dM, da, db = entropic_pullback(res.plan, *res.potentials, M, relax, reg, cot)
    h = 1e-6
    directions = [("M", rng.standard_normal((n, m)))]
    balanced = all(np.isinf(r) for r in rho)
    da_dir, db_dir = rng.standard_normal(n), rng.standard_normal(m)
    if case["zeros"]:
        da_dir[a == 0], db_dir[b == 0] = 0.0, 0.0
    if balanced:  # keep the masses tied: sum da = sum db
        da_dir -= da_dir.mean() * (a > 0) / (a > 0).mean()
        db_dir -= db_dir.mean() * (b > 0) / (b > 0).mean()
        s = rng.random()
        da_dir, db_dir = da_dir + s * a, db_dir + s * b  # and change the total mass
    directions += [("ab", (da_dir, db_dir))]
    for kind, d in directions:
        if kind == "M":
            plus, minus = (_outputs(M + t * d, a, b, reg, **kw)[0] for t in (h, -h))
            predicted = float(np.sum(dM * d))
        else:
            plus, minus = (_outputs(M, a + t * d[0], b + t * d[1], reg, **kw)[0] for t in (h, -h))
            predicted = float(da @ d[0] + db @ d[1])
        numeric = (_loss(plus, weights) - _loss(minus, weights)) / (2 * h)
        assert predicted == pytest.approx(numeric, rel=1e-5, abs=1e-7), (kind, predicted, numeric)
