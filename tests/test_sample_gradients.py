"""Gradients of solve_sample w.r.t. the points and the masses (core/sample_gradients.py,
autodiff.solve_sample_rule): against central finite differences of the NumPy
solver in float64, dense and lazy (and equal to each other), rectangular,
KL-unbalanced, debiased, both metrics and a scaled cost; the envelope mode;
torch's backward; the Sinkhorn divergence against GeomLoss."""

import inspect

import numpy as np
import pytest

import fastsinkhorn as fs
from fastsinkhorn.core.autodiff import solve_sample_rule

TIGHT = {"tol": 1e-13, "max_iter": 100000}
H = 1e-6


def _cloud(seed, n=6, m=5, d=2):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((m, d)) + 0.2
    a, b = rng.random(n) + 0.3, rng.random(m) + 0.3
    return x, y, a / a.sum(), b / b.sum()


def _rule(wanted, **arguments):
    """Run solve_sample's rule on NumPy arrays, as a framework bridge does."""
    full = {k: p.default for k, p in inspect.signature(fs.solve_sample).parameters.items()}
    full.update(kwargs={}, **TIGHT, **arguments)

    def call(**changes):
        full.update(changes)
        kw = dict(full)
        return fs.solve_sample(**kw.pop("kwargs"), **kw)

    call.arguments = full
    return solve_sample_rule(call, wanted)


def _centred(v):
    return v - v.mean()


def _loss(res, weights):
    """A loss of every differentiable output (potentials centred: a balanced
    solve fixes them up to a constant moved between f and g)."""
    f, g = (np.asarray(p, dtype=np.float64) for p in res.potentials)
    total = weights["value"] * float(res.value) + weights["value_linear"] * float(res.value_linear)
    total += float(weights["f"] @ _centred(f) + weights["g"] @ _centred(g))
    if "plan" in weights:
        total += float(np.sum(weights["plan"] * res.plan))
    return total


def _weights(rng, n, m, plan):
    w = {"value": 0.7, "value_linear": -0.4, "f": rng.standard_normal(n), "g": rng.standard_normal(m)}
    if plan:
        w["plan"] = rng.standard_normal((n, m))
    return w


def _cotangents(derivative, w):
    """The loss's cotangents in the order of the derivative's outputs."""
    by_path = {("value",): w["value"], ("value_linear",): w["value_linear"], ("plan",): w.get("plan"),
               ("potentials", 0): _centred(w["f"]), ("potentials", 1): _centred(w["g"])}
    return [by_path[p] for p in derivative.outputs]


def _directional_fd(arguments, name, direction, weights):
    def loss(t):
        changed = {**arguments, name: arguments[name] + t * direction}
        return _loss(fs.solve_sample(**changed, **TIGHT), weights)
    return (loss(H) - loss(-H)) / (2 * H)


def _directions(rng, arguments, balanced):
    out = {}
    for name in ("X_a", "X_b", "a", "b"):
        v = rng.standard_normal(np.shape(arguments[name]))
        if name in ("a", "b") and balanced:
            v -= v.mean()  # balanced: the masses are tied to equal sums
        out[name] = v
    return out


CASES = [
    dict(lazy=False),
    dict(lazy=True),
    dict(lazy=False, unbalanced=0.7),
    dict(lazy=True, unbalanced=(np.inf, 0.5), reg_type="entropy"),
    dict(lazy=False, metric="euclidean"),
    dict(lazy=True, metric="euclidean", unbalanced=1.5),
    dict(lazy=False, scale=1.7, debias=True),
    dict(lazy=True, scale=0.5, debias=True, unbalanced=0.9),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradients_match_finite_differences(case):
    x, y, a, b = _cloud(3)
    arguments = dict(X_a=x, X_b=y, a=a, b=b, reg=0.3, **case)
    rng = np.random.default_rng(0)
    weights = _weights(rng, len(x), len(y), plan=not case["lazy"])
    derivative = _rule(("X_a", "X_b", "a", "b"), **arguments)
    grads = dict(zip(derivative.inputs, derivative.pullback(_cotangents(derivative, weights))))
    balanced = case.get("unbalanced") is None
    for name, v in _directions(rng, arguments, balanced).items():
        expected = _directional_fd(arguments, name, v, weights)
        assert float(np.sum(grads[name] * v)) == pytest.approx(expected, rel=1e-6, abs=1e-8), name


def test_debiased_gradients_are_the_three_solves_and_differ_from_the_plain_ones():
    x, y, a, b = _cloud(4)
    plain = _rule(("X_a",), X_a=x, X_b=y, a=a, b=b, reg=0.3)
    debiased = _rule(("X_a",), X_a=x, X_b=y, a=a, b=b, reg=0.3, debias=True)
    (gp,), (gd,) = (d.pullback([1.0] + [None] * (len(d.outputs) - 1)) for d in (plain, debiased))
    # X_a is both clouds of OT(a, a): its gradient there is that of X_a plus that of X_b
    both = _rule(("X_a", "X_b"), X_a=x, X_b=x, a=a, b=a, reg=0.3)
    gs = sum(both.pullback([1.0] + [None] * (len(both.outputs) - 1)))
    np.testing.assert_allclose(gd, gp - gs / 2, rtol=1e-9, atol=1e-12)
    assert np.abs(gd - gp).max() > 1e-3


@pytest.mark.parametrize("case", [dict(), dict(unbalanced=0.6), dict(debias=True, metric="euclidean")])
def test_dense_and_lazy_give_the_same_gradients(case, monkeypatch):
    from fastsinkhorn.backends import _blocks

    monkeypatch.setattr(_blocks, "ARRAY_BLOCK_ENTRIES", 16)  # several row blocks in the lazy passes
    x, y, a, b = _cloud(5, n=9, m=7, d=3)
    w = _weights(np.random.default_rng(1), 9, 7, plan=False)
    out = []
    for lazy in (False, True):
        derivative = _rule(("X_a", "X_b", "a", "b"), X_a=x, X_b=y, a=a, b=b, reg=0.2, lazy=lazy, **case)
        out.append(derivative.pullback(_cotangents(derivative, w)))
    for dense, lazy in zip(*out):
        np.testing.assert_allclose(lazy, dense, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("lazy", [False, True])
def test_envelope_is_pots_formula(lazy):
    x, y, a, b = _cloud(6)
    scale = 1.3
    derivative = _rule(("X_a", "X_b", "a"), X_a=x, X_b=y, a=a, b=b, reg=0.3, lazy=lazy, grad="envelope",
                       scale=scale)
    assert derivative.outputs == (("value",),)
    gx, gy, ga = derivative.pullback([2.0])
    res = fs.solve_sample(x, y, a, b, reg=0.3, scale=scale, **TIGHT)
    P, f = res.plan, res.potentials[0]
    np.testing.assert_allclose(gx, 2 * 2 * scale * (P.sum(1)[:, None] * x - P @ y), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gy, 2 * 2 * scale * (P.sum(0)[:, None] * y - P.T @ x), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ga, 2 * (f - f.mean()), rtol=1e-10, atol=1e-14)
    # for the points, the envelope gradient of value is its exact gradient
    exact = _rule(("X_a",), X_a=x, X_b=y, a=a, b=b, reg=0.3, lazy=lazy, scale=scale)
    (ge,) = exact.pullback([2.0] + [None] * (len(exact.outputs) - 1))
    np.testing.assert_allclose(gx, ge, rtol=1e-7, atol=1e-10)


def test_a_lazy_plan_is_not_an_output():
    x, y, a, b = _cloud(7)
    derivative = _rule(("X_a",), X_a=x, X_b=y, reg=0.3, lazy=True)
    assert ("plan",) not in derivative.outputs
    assert ("plan",) in _rule(("X_a",), X_a=x, X_b=y, reg=0.3).outputs


@pytest.mark.parametrize("metric", ["cityblock", "minkowski"])
def test_other_metrics_are_refused_naming_the_metric(metric):
    x, y, _, _ = _cloud(8)
    extra = {"p": 3.0} if metric == "minkowski" else {}
    with pytest.raises(NotImplementedError, match=metric):
        _rule(("X_a",), X_a=x, X_b=y, reg=0.3, metric=metric, **extra)


def test_refusals():
    x, y, a, b = _cloud(9)
    with pytest.raises(NotImplementedError, match="reg > 0"):
        _rule(("X_a",), X_a=x, X_b=y, reg=None)
    with pytest.raises(NotImplementedError, match="unbalanced"):
        _rule(("X_a",), X_a=x, X_b=y, reg=0.3, unbalanced=1.0, grad="envelope")
    with pytest.raises(NotImplementedError, match="split"):
        fs.solve_sample(x, y, reg=0.3, debias="split")


def test_debias_value_is_pots():
    ot = pytest.importorskip("ot")
    x, y, a, b = _cloud(10)
    for kw in (dict(), dict(unbalanced=0.8), dict(reg_type="entropy")):
        ours = fs.solve_sample(x, y, a, b, reg=0.2, debias=True, **kw, **TIGHT)
        pots = ot.solve_sample(x, y, a, b, reg=0.2, debias=True, **kw, max_iter=100000, tol=1e-13)
        assert float(ours.value) == pytest.approx(float(pots.value), rel=1e-7)
        assert float(ours.value_linear) == pytest.approx(float(pots.value_linear), rel=1e-7)
        np.testing.assert_allclose(ours.plan, pots.plan, atol=1e-9)
        assert set(ours.log) >= {"res_ab", "res_aa", "res_bb"}


@pytest.mark.parametrize("lazy", [False, True])
def test_torch_backward_gives_the_rules_numbers(lazy):
    torch = pytest.importorskip("torch")
    x, y, a, b = _cloud(11)
    xt, yt, at, bt = (torch.tensor(v, requires_grad=True) for v in (x, y, a, b))
    res = fs.solve_sample(xt, yt, at, bt, reg=0.25, lazy=lazy, unbalanced=0.8, debias=True, **TIGHT)
    assert not isinstance(res.plan, torch.Tensor) if lazy else res.plan.requires_grad
    loss = 0.7 * res.value - 0.4 * res.value_linear + (res.potentials[0] * torch.arange(6.0)).sum()
    loss.backward()
    derivative = _rule(("X_a", "X_b", "a", "b"), X_a=x, X_b=y, a=a, b=b, reg=0.25, lazy=lazy,
                       unbalanced=0.8, debias=True)
    cot = {("value",): 0.7, ("value_linear",): -0.4, ("potentials", 0): np.arange(6.0)}
    expected = derivative.pullback([cot.get(p) for p in derivative.outputs])
    for t, e in zip((xt, yt, at, bt), expected):
        np.testing.assert_allclose(t.grad.numpy(), e, rtol=1e-12, atol=1e-15)


def test_torch_plan_gradient_in_the_points_matches_finite_differences():
    torch = pytest.importorskip("torch")
    x, y, _, _ = _cloud(12)
    xt = torch.tensor(x, requires_grad=True)
    G = np.random.default_rng(2).standard_normal((6, 5))
    (fs.solve_sample(xt, torch.tensor(y), reg=0.3, **TIGHT).plan * torch.tensor(G)).sum().backward()
    v = np.random.default_rng(3).standard_normal(x.shape)
    fd = (np.sum(G * fs.solve_sample(x + H * v, y, reg=0.3, **TIGHT).plan)
          - np.sum(G * fs.solve_sample(x - H * v, y, reg=0.3, **TIGHT).plan)) / (2 * H)
    assert float(np.sum(xt.grad.numpy() * v)) == pytest.approx(fd, rel=1e-6)


def test_divergence_and_its_gradient_match_geomloss():
    torch = pytest.importorskip("torch")
    geomloss = pytest.importorskip("geomloss")
    x, y, a, b = _cloud(13, n=7, m=5)
    blur = 0.3
    # GeomLoss, p=2: cost |x - y|^2 / 2, eps = blur**2, entropy KL(P | a b^T)
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, debias=True, scaling=0.9999, backend="tensorized")
    xg = torch.tensor(x, requires_grad=True)
    theirs = loss(torch.tensor(a), xg, torch.tensor(b), torch.tensor(y))
    theirs.backward()
    xt = torch.tensor(x, requires_grad=True)
    ours = fs.solve_sample(xt, torch.tensor(y), torch.tensor(a), torch.tensor(b), reg=blur ** 2, scale=0.5,
                           debias=True, **TIGHT)
    ours.value.backward()
    assert float(ours.value.detach()) == pytest.approx(float(theirs.detach()), rel=1e-6)
    np.testing.assert_allclose(xt.grad.numpy(), xg.grad.numpy(), atol=1e-5)
    assert np.abs(xt.grad.numpy()).max() > 1e-2
