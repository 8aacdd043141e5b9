"""Generated problems for the implicit gradients: every drawn problem's
gradients agree with central finite differences of the solver, scale with
the cost as the loss does, and survive float32.

Hypothesis draws sizes 1 x 1 to 6 x 6, rectangular, zero masses, cost
scales from 1e-12 to 1e300, ``reg`` from 0.05 to 3 of the cost scale (finite
differences need a smooth optimum), balanced and KL-unbalanced, and a random
loss of ``value``, ``value_linear``, the plan and the centred potentials.
Profiles as in ``test_properties.py`` (``HYPOTHESIS_PROFILE=thorough``).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsinkhorn as fs
from fastsinkhorn.core.implicit import Relaxation, entropic_pullback
from fastsinkhorn.core.relaxation import check_unbalanced

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TOL = 1e-13


@st.composite
def problems(draw):
    n, m = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = 10.0 ** draw(st.sampled_from([-12, -3, 0, 3, 100, 300]))
    rng = np.random.default_rng(seed)
    M = scale * rng.random((n, m))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    if draw(st.booleans()) and n > 1:
        a[rng.integers(n)] = 0.0
    if draw(st.booleans()) and m > 1:
        b[rng.integers(m)] = 0.0
    a, b = a / a.sum(), b / b.sum()
    reg = scale * 10.0 ** draw(st.floats(-1.3, 0.5))
    unbalanced = scale * 10.0 ** draw(st.floats(-1, 1)) if draw(st.booleans()) else None
    weights = {"value": draw(st.floats(-1, 1)), "value_linear": draw(st.floats(-1, 1)),
               "plan": rng.standard_normal((n, m)) / scale, "f": rng.standard_normal(n) / scale}
    return M, a, b, reg, unbalanced, weights, rng


def _centred(x, potential):
    live = np.isfinite(potential)
    return np.where(live, x - x[live].mean(), 0.0) if live.any() else np.zeros_like(x)


def _solve(M, a, b, reg, unbalanced):
    return fs.solve(M, a, b, reg, unbalanced=unbalanced, tol=TOL, max_iter=200000)


def _loss(res, weights):
    f = res.potentials[0]
    return (weights["value"] * float(res.value) + weights["value_linear"] * float(res.value_linear)
            + float((weights["plan"] * res.plan).sum()) + float(weights["f"] @ _centred(f, f)))


def _gradients(M, a, b, reg, unbalanced, weights, res):
    cot = {"value": weights["value"], "value_linear": weights["value_linear"], "plan": weights["plan"],
           "f": _centred(weights["f"], res.potentials[0])}
    relaxation = Relaxation(a, b, *check_unbalanced(unbalanced))
    return entropic_pullback(res.plan, *res.potentials, M, relaxation, reg, cot)


@given(problems())
def test_gradients_match_central_finite_differences(problem):
    M, a, b, reg, unbalanced, weights, rng = problem
    res = _solve(M, a, b, reg, unbalanced)
    dM, da, db = _gradients(M, a, b, reg, unbalanced, weights, res)
    scale = float(M.max()) or 1.0
    d_M = scale * rng.standard_normal(M.shape)
    d_a, d_b = rng.standard_normal(a.shape) * (a > 0), rng.standard_normal(b.shape) * (b > 0)
    if unbalanced is None:  # keep the masses tied and the zero masses zero
        d_a, d_b = d_a - d_a.sum() * (a > 0) / (a > 0).sum(), d_b - d_b.sum() * (b > 0) / (b > 0).sum()
        d_a, d_b = d_a + 0.5 * a, d_b + 0.5 * b
    h = 1e-4
    # the loss is computed from terms of the size of the potentials: rounding noise of the
    # finite differences
    loss_scale = (abs(weights["value"]) + abs(weights["value_linear"])) * 2 * (scale + reg + (unbalanced or 0)) \
        + (np.abs(weights["plan"]).max() + np.abs(weights["f"]).max() * scale) * M.size
    noise = 1e-14 * loss_scale / h
    # the pullback adds terms of size |G| P / reg that cancel (exactly, in a 1 x 1 problem):
    # rounding is relative to them, not to the derivative
    W = np.abs(weights["plan"]).max() + np.abs(weights["f"]).max()
    terms = W / reg + abs(weights["value"]) + abs(weights["value_linear"])
    rounding = (1e-12 * terms * float((res.plan * np.abs(d_M)).sum()),
                1e-12 * (terms * reg + W * scale) * float(np.abs(d_a).sum() + np.abs(d_b).sum()))
    for step, predicted, floor in (((h * d_M, 0, 0), float((dM * d_M).sum()), rounding[0]),
                                   ((0, h * d_a, h * d_b), float(da @ d_a + db @ d_b), rounding[1])):
        plus = _loss(_solve(M + step[0], a + step[1], b + step[2], reg, unbalanced), weights)
        minus = _loss(_solve(M - step[0], a - step[1], b - step[2], reg, unbalanced), weights)
        numeric = (plus - minus) / (2 * h)
        tolerance = floor + noise + 1e-6 * abs(numeric)
        assert predicted == pytest.approx(numeric, rel=1e-4, abs=tolerance), (predicted, numeric)


@given(problems())
def test_gradients_scale_with_the_cost_and_survive_float32(problem):
    """``L(M / s, reg / s, rho / s)`` is ``L / s`` when the plan's weights are divided
    by ``s`` (values and potentials scale with the cost, the plan does not): its
    gradient in ``M`` is unchanged and in the masses divided by ``s``; float32
    agrees to its precision."""
    M, a, b, reg, unbalanced, weights, _ = problem
    s = float(M.max()) or 1.0
    unit = {**weights, "plan": weights["plan"] / s}
    res = _solve(M, a, b, reg, unbalanced)
    dM, da, db = _gradients(M, a, b, reg, unbalanced, weights, res)
    base = _solve(M / s, a, b, reg / s, None if unbalanced is None else unbalanced / s)
    dM1, da1, db1 = _gradients(M / s, a, b, reg / s, None if unbalanced is None else unbalanced / s, unit, base)
    assert np.all(np.isfinite(dM)) and np.all(np.isfinite(da)) and np.all(np.isfinite(db))
    # rounding is relative to the terms of size |G| / reg that the pullback adds and cancels
    terms = (np.abs(weights["plan"]).max() + np.abs(weights["f"]).max()) / reg \
        + abs(weights["value"]) + abs(weights["value_linear"])
    np.testing.assert_allclose(dM, dM1, rtol=1e-6, atol=1e-12 * terms + 1e-9 * np.abs(dM1).max(initial=0.0))
    np.testing.assert_allclose(da / s, da1, rtol=1e-6,
                               atol=1e-12 * terms * (1 + reg / s) + 1e-9 * np.abs(da1).max(initial=0.0))
    if s < 1e30:  # float32 holds the problem (1e300 overflows it, as it should)
        res32 = fs.solve(M.astype(np.float32), a.astype(np.float32), b.astype(np.float32), reg,
                         unbalanced=unbalanced)
        dM32, _, _ = _gradients(M, a, b, reg, unbalanced, weights, res32)
        assert np.all(np.isfinite(dM32))
        np.testing.assert_allclose(dM32, dM, atol=1e-5 * terms + 2e-3 * np.abs(dM).max(initial=0.0))
