"""JAX arrays in, JAX arrays and gradients out (core/jax_bridge.py, core/jax_gradients.py, core/jax_shapes.py)."""

import subprocess
import sys

import numpy as np
import pytest

import fastsinkhorn as fs

jax = pytest.importorskip("jax", reason="JAX is not installed (pip install fastsinkhorn[jax])")
jnp = jax.numpy

REG = 0.2
TIGHT = {"stopThr": 1e-14, "numItermax": 100000}
SOLVE_TIGHT = {"tol": 1e-13, "max_iter": 100000}


@pytest.fixture(autouse=True)
def float64():
    """float64 JAX arrays (a test of float32 turns x64 off inside). Set in the
    configuration, not by ``jax.enable_x64``, whose setting is the calling
    thread's: a compiled function's host callbacks run on another thread, where
    JAX would then turn their float64 results into float32."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def problem(n=6, m=7, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    M = rng.random((n, m))
    a, b = rng.random(n) + 0.2, rng.random(m) + 0.2
    return M.astype(dtype), (a / a.sum()).astype(dtype), (b / b.sum()).astype(dtype)


def arrays(*xs):
    return tuple(jnp.asarray(x) for x in xs)


def centred(x):
    return x - x.mean()


def central(f, x, direction, h=1e-5):
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


def test_import_does_not_load_jax():
    code = ("import sys, fastsinkhorn; fastsinkhorn.solve([[0.0, 1.0], [1.0, 0.0]], reg=1.0); "
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


@pytest.mark.parametrize("x64", [True, False])
def test_values_equal_numpy_and_keep_dtype(x64):
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        M, a, b = problem(dtype=dtype)
        Mj, aj, bj = arrays(M, a, b)
        assert Mj.dtype == dtype
        res, ref = fs.solve(Mj, aj, bj, reg=REG), fs.solve(M, a, b, reg=REG)
        assert isinstance(res.plan, jax.Array) and res.plan.dtype == dtype
        np.testing.assert_array_equal(np.asarray(res.plan), ref.plan)
        for got, want in zip(res.potentials, ref.potentials, strict=True):
            np.testing.assert_array_equal(np.asarray(got), want)
        assert isinstance(res.value, jax.Array) and res.value.dtype == dtype and float(res.value) == ref.value
        assert res.status == ref.status and res.n_iter == ref.n_iter  # the whole result, outside transformations
        loss = fs.sinkhorn2(aj, bj, Mj, REG)
        assert loss.dtype == dtype and float(loss) == fs.sinkhorn2(a, b, M, REG)
        plan, log = fs.sinkhorn(aj, bj, Mj, REG, log=True)
        np.testing.assert_array_equal(np.asarray(plan), fs.sinkhorn(a, b, M, REG))
        assert isinstance(log["u"], jax.Array)
        np.testing.assert_array_equal(np.asarray(fs.emd(aj, bj, Mj)), fs.emd(a, b, M))
        cost = fs.emd2(aj, bj, Mj)
        assert isinstance(cost, jax.Array) and cost.dtype == dtype
        assert float(cost) == pytest.approx(fs.emd2(a, b, M), rel=1e-6)
        D = fs.dist(Mj, Mj[:3])
        assert D.dtype == dtype
        np.testing.assert_array_equal(np.asarray(D), fs.dist(M, M[:3]))
        x, y = problem(5, 2, seed=1, dtype=dtype)[0], problem(6, 2, seed=2, dtype=dtype)[0]
        sample = fs.solve_sample(*arrays(x, y), reg=REG)
        assert sample.plan.dtype == dtype
        np.testing.assert_array_equal(np.asarray(sample.plan), fs.solve_sample(x, y, reg=REG).plan)


def test_uniform_marginals_and_unbalanced_with_jax_cost():
    M, a, b = problem()
    (Mj,) = arrays(M)
    assert float(fs.sinkhorn2(None, None, Mj, REG)) == fs.sinkhorn2(None, None, M, REG)
    got = fs.solve(*arrays(M, a, 2 * b), reg=REG, unbalanced=0.7)
    assert float(got.value) == fs.solve(M, a, 2 * b, reg=REG, unbalanced=0.7).value


def test_mixed_arguments_raise_type_error_naming_them():
    M, a, b = problem()
    Mj, aj, _ = arrays(M, a, b)
    with pytest.raises(TypeError, match=r"M, a are JAX arrays, b is not"):
        fs.solve(Mj, aj, b, reg=REG)
    with pytest.raises(TypeError, match=r"a is a JAX array, b, M are not"):
        fs.sinkhorn2(aj, b, M, REG)
    with pytest.raises(TypeError, match="JAX"):
        fs.emd2(list(a), b, Mj)


def test_torch_and_jax_in_one_call_raise_type_error_naming_both():
    torch = pytest.importorskip("torch")
    M, a, b = problem()
    with pytest.raises(TypeError, match=r"M is PyTorch; a, b are JAX"):
        fs.solve(torch.tensor(M), *arrays(a, b), reg=REG)


class _Device:
    platform = "gpu"


class _GpuArray:
    """Stands for a JAX array on a GPU (there is none here): recognised by its module."""

    __module__ = "jax._src.array"
    shape, dtype = (2, 2), np.dtype(np.float64)

    def devices(self):
        return {_Device()}


def test_non_cpu_array_is_refused():
    with pytest.raises(NotImplementedError, match="M is a JAX array on gpu: only CPU arrays"):
        fs.solve(_GpuArray(), reg=REG)


def test_traced_scalar_argument_is_refused_naming_it():
    M, a, b = problem()
    Mj, aj, bj = arrays(M, a, b)
    with pytest.raises(TypeError, match="reg is a traced JAX value"):
        jax.jit(lambda r: fs.solve(Mj, aj, bj, reg=r).value)(0.3)
    with pytest.raises(TypeError, match=r"warm_start\[0\] is a traced JAX value"):
        jax.jit(lambda f: fs.solve(Mj, aj, bj, reg=REG, warm_start=(f, f)).value)(aj)


@pytest.mark.parametrize("run", [
    lambda M, a, b: fs.sinkhorn(a, b, M, 0.01, numItermax=3),
    lambda M, a, b: fs.solve(M, a, b, reg=0.01, max_iter=2, method="sinkhorn"),
    # under jit: at the line that traced the call
    lambda M, a, b: jax.block_until_ready(jax.jit(
        lambda M_: fs.solve(M_, a, b, reg=0.01, max_iter=2, method="sinkhorn").value)(M)),
], ids=["sinkhorn", "solve", "jit"])
def test_warnings_point_at_the_callers_line(run):
    with pytest.warns(UserWarning, match="converge|max_iter") as record:  # POT's words, or ours
        run(*arrays(*problem()))
    assert {w.filename for w in record} == {__file__}


def test_gradient_of_an_unconverged_solve_warns_at_the_callers_line():
    rng = np.random.default_rng(3)
    M, a, b = arrays(rng.random((6, 5)), np.full(6, 1 / 6), np.full(5, 0.2))
    with pytest.warns(fs.ConvergenceWarning, match="did not converge: its gradient") as record:
        g = jax.grad(lambda M_: fs.sinkhorn2(a, b, M_, 1e-3, numItermax=2))(M)
    assert bool(jnp.isfinite(g).all())
    assert __file__ in {w.filename for w in record}


def _sinkhorn2(M, a, b, reg):
    return float(fs.sinkhorn2(a, b, M, reg, **TIGHT))


@pytest.mark.parametrize("seed, shape, reg", [(0, (5, 5), 0.1), (1, (6, 8), 0.3), (2, (8, 5), 0.5)])
def test_sinkhorn2_gradients_match_finite_differences(seed, shape, reg):
    M, a, b = problem(*shape, seed=seed)
    gM, ga, gb = (np.asarray(g) for g in jax.grad(lambda M_, a_, b_: fs.sinkhorn2(a_, b_, M_, reg, **TIGHT),
                                                  argnums=(0, 1, 2))(*arrays(M, a, b)))
    rng = np.random.default_rng(seed + 10)
    dM = rng.standard_normal(M.shape)
    fd = central(lambda M_: _sinkhorn2(M_, a, b, reg), M, dM)
    assert float((gM * dM).sum()) == pytest.approx(fd, rel=1e-6, abs=1e-9)
    # the marginals' masses are tied: directions that keep sum a = sum b
    da, db = centred(rng.standard_normal(a.shape)), centred(rng.standard_normal(b.shape))
    fd = (_sinkhorn2(M, a + 1e-5 * da, b + 1e-5 * db, reg) - _sinkhorn2(M, a - 1e-5 * da, b - 1e-5 * db, reg)) / 2e-5
    assert float((ga * da).sum() + (gb * db).sum()) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def _solve(M, a, b, **kw):
    return fs.solve(M, a, b, reg=REG, **SOLVE_TIGHT, **kw)


def _losses(W, wf, wg):
    """Losses of each differentiable output of solve: the value, a plan loss, the centred potentials."""
    return {
        "value": lambda res: res.value,
        "value_linear": lambda res: res.value_linear,
        "plan": lambda res: (res.plan * W).sum(),
        "potentials": lambda res: (centred(res.potentials[0]) * wf).sum() + (centred(res.potentials[1]) * wg).sum(),
    }


# POT's unbalanced value is 0 at every optimum (its KL terms of the marginals cancel the
# dual): its gradient, rightly 0, tells nothing; value_linear is the unbalanced case's value
@pytest.mark.parametrize("output, unbalanced", [("value", None), ("value_linear", None), ("plan", None),
                                                ("potentials", None), ("value_linear", 0.8), ("plan", 0.8),
                                                ("potentials", 0.8)])
def test_solve_gradients_match_finite_differences(output, unbalanced):
    M, a, b = problem(6, 5, seed=4)
    rng = np.random.default_rng(5)
    W, wf, wg = rng.standard_normal(M.shape), rng.standard_normal(6), rng.standard_normal(5)
    loss = _losses(W, wf, wg)[output]
    kw = {"unbalanced": unbalanced}
    gM, ga, gb = (np.asarray(g) for g in jax.grad(lambda *x: loss(_solve(*x, **kw)), argnums=(0, 1, 2))(
        *arrays(M, a, b)))
    dM, da, db = rng.standard_normal(M.shape), rng.standard_normal(6), rng.standard_normal(5)
    if unbalanced is None:  # balanced: the masses are tied
        da, db = centred(da), centred(db)
    fd = central(lambda t: float(loss(_solve(M + t * dM, a + t * da, b + t * db, **kw))), 0.0, 1.0)
    got = float((gM * dM).sum() + (ga * da).sum() + (gb * db).sum())
    assert got == pytest.approx(fd, rel=1e-5, abs=1e-8)
    assert abs(got) > 1e-3  # the directional derivative is not trivially 0


@pytest.mark.parametrize("output", ["value", "plan", "potentials"])
def test_solve_gradients_equal_the_torch_bridges(output):
    torch = pytest.importorskip("torch")
    M, a, b = problem(5, 7, seed=6)
    rng = np.random.default_rng(7)
    W, wf, wg = rng.standard_normal(M.shape), rng.standard_normal(5), rng.standard_normal(7)
    ours = jax.grad(lambda *x: _losses(W, wf, wg)[output](_solve(*x)), argnums=(0, 1, 2))(*arrays(M, a, b))
    tensors = [torch.tensor(x, requires_grad=True) for x in (M, a, b)]
    torch_losses = _losses(torch.tensor(W), torch.tensor(wf), torch.tensor(wg))
    torch_losses[output](_solve(*tensors)).backward()
    for mine, t in zip(ours, tensors, strict=True):
        np.testing.assert_allclose(np.asarray(mine), t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_sinkhorn2_emd2_and_dist_gradients_equal_the_torch_bridges():
    torch = pytest.importorskip("torch")
    M, a, b = problem(6, 6, seed=8)
    for f in (lambda a_, b_, M_: fs.sinkhorn2(a_, b_, M_, REG, **TIGHT), fs.emd2,
              lambda a_, b_, M_: (fs.sinkhorn(a_, b_, M_, REG, **TIGHT) * M_ ** 2).sum()):
        ours = jax.grad(f, argnums=(0, 1, 2))(*arrays(a, b, M))
        tensors = [torch.tensor(x, requires_grad=True) for x in (a, b, M)]
        f(*tensors).backward()
        for mine, t in zip(ours, tensors, strict=True):
            np.testing.assert_allclose(np.asarray(mine), t.grad.numpy(), rtol=1e-12, atol=1e-14)
    x, y = problem(4, 3, seed=9)[0], problem(5, 3, seed=10)[0]
    ours = jax.grad(lambda x_, y_: (fs.dist(x_, y_, metric="euclidean") ** 3).sum(), argnums=(0, 1))(*arrays(x, y))
    tensors = [torch.tensor(v, requires_grad=True) for v in (x, y)]
    (fs.dist(*tensors, metric="euclidean") ** 3).sum().backward()
    for mine, t in zip(ours, tensors, strict=True):
        np.testing.assert_allclose(np.asarray(mine), t.grad.numpy(), rtol=1e-12)


def test_emd2_gradients_match_finite_differences():
    M, a, b = problem(6, 6, seed=11)
    gM = np.asarray(jax.grad(lambda M_: fs.emd2(*arrays(a, b), M_))(jnp.asarray(M)))
    dM = np.random.default_rng(12).standard_normal(M.shape)
    fd = central(lambda M_: fs.emd2(a, b, M_), M, dM, h=1e-7)  # piecewise linear: a small step stays on one piece
    assert float((gM * dM).sum()) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_dist_gradients_match_finite_differences(metric):
    rng = np.random.default_rng(13)
    x, y, W = rng.random((4, 3)), rng.random((5, 3)), rng.standard_normal((4, 5))
    gx, gy = jax.grad(lambda x_, y_: (fs.dist(x_, y_, metric=metric) * W).sum(), argnums=(0, 1))(*arrays(x, y))
    dx, dy = rng.standard_normal(x.shape), rng.standard_normal(y.shape)
    fd = central(lambda t: float((fs.dist(x + t * dx, y + t * dy, metric=metric) * W).sum()), 0.0, 1.0)
    assert float((np.asarray(gx) * dx).sum() + (np.asarray(gy) * dy).sum()) == pytest.approx(fd, rel=1e-7)
    # one set of points: both sides move together
    g = jax.grad(lambda x_: fs.dist(x_, metric=metric).sum())(jnp.asarray(x))
    fd = central(lambda x_: fs.dist(x_, metric=metric).sum(), x, dx)
    assert float((np.asarray(g) * dx).sum()) == pytest.approx(fd, rel=1e-7)


def test_jit_equals_eager_values_and_gradients():
    M, a, b = problem(6, 5, seed=14)
    Mj, aj, bj = arrays(M, a, b)

    def loss(M_, a_, b_):
        res = fs.solve(M_, a_, b_, reg=REG, **SOLVE_TIGHT)
        return res.value + (res.plan ** 2).sum() + fs.sinkhorn2(a_, b_, M_, REG, **TIGHT)

    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(Mj, aj, bj)
    jit_value, jit_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(Mj, aj, bj)
    assert float(jit_value) == float(value) == pytest.approx(float(loss(M, a, b)), rel=1e-14)
    for g, h in zip(grads, jit_grads, strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(h))


def test_jit_returns_the_documented_ot_result():
    M, a, b = problem(6, 5, seed=15)
    res = jax.jit(lambda *x: fs.solve(*x, reg=REG))(*arrays(M, a, b))
    ref = fs.solve(M, a, b, reg=REG)
    for field in ("plan", "value", "value_linear", "marginal_error", "n_iter", "converged"):
        np.testing.assert_array_equal(np.asarray(getattr(res, field)), np.asarray(getattr(ref, field)), err_msg=field)
    for got, want in zip(res.potentials + res.marginals, ref.potentials + ref.marginals, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    assert res.status is None and res.history is None and res.method is None and res.reg == REG
    exact = jax.jit(lambda *x: fs.solve(*x, reg=None))(*arrays(M, a, b))  # exact OT's plan: dense
    np.testing.assert_allclose(np.asarray(exact.plan), fs.solve(M, a, b, reg=None).plan.toarray(), atol=1e-15)
    assert float(exact.value) == pytest.approx(fs.emd2(a, b, M), rel=1e-12)


def test_jit_keeps_float32():
    with jax.enable_x64(False):
        M, a, b = problem(dtype=np.float32)
        Mj, aj, bj = arrays(M, a, b)
        loss, g = jax.jit(jax.value_and_grad(lambda M_: fs.sinkhorn2(aj, bj, M_, REG)))(Mj)
        assert loss.dtype == g.dtype == jnp.float32 and bool(jnp.isfinite(g).all())
        assert float(loss) == fs.sinkhorn2(a, b, M, REG)


def test_batched_solve_under_jit_and_its_gradient():
    Ms = np.stack([problem(5, 6, seed=s)[0] for s in (16, 17, 18)])
    res = jax.jit(lambda M_: fs.solve(M_, reg=REG, **SOLVE_TIGHT))(jnp.asarray(Ms))
    ref = fs.solve(Ms, reg=REG, **SOLVE_TIGHT)
    assert res.plan.shape == (3, 5, 6) and res.value.shape == (3,)
    np.testing.assert_array_equal(np.asarray(res.value), ref.value)
    g = jax.grad(lambda M_: fs.solve(M_, reg=REG, **SOLVE_TIGHT).value.sum())(jnp.asarray(Ms))
    for i in range(3):
        one = jax.grad(lambda M_: fs.solve(M_, reg=REG, **SOLVE_TIGHT).value)(jnp.asarray(Ms[i]))
        np.testing.assert_allclose(np.asarray(g[i]), np.asarray(one), atol=1e-12)


def test_vmap_equals_a_loop_for_values_and_gradients():
    Ms = np.stack([problem(5, 6, seed=s)[0] for s in (19, 20, 21)])
    _, a, b = problem(5, 6)
    aj, bj = arrays(a, b)

    def loss(M_):
        return fs.sinkhorn2(aj, bj, M_, REG, **TIGHT)

    values = jax.vmap(loss)(jnp.asarray(Ms))
    grads = jax.jit(jax.vmap(jax.grad(loss)))(jnp.asarray(Ms))
    for i in range(3):
        assert float(values[i]) == _sinkhorn2(Ms[i], a, b, REG)
        np.testing.assert_array_equal(np.asarray(grads[i]), np.asarray(jax.grad(loss)(jnp.asarray(Ms[i]))))
    plans = jax.vmap(lambda M_: fs.solve(M_, aj, bj, reg=REG).plan)(jnp.asarray(Ms))
    np.testing.assert_array_equal(np.asarray(plans[1]), fs.solve(Ms[1], a, b, reg=REG).plan)


def test_a_reference_measure_refuses_gradients_not_values():
    M, a, b = problem()
    Mj, aj, bj = arrays(M, a, b)
    c = jnp.full(M.shape, 1.0 / M.size)  # gradients with c are not implemented: fine while c is constant
    g = jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG, c=c).value_linear)
    with pytest.raises(NotImplementedError, match="reference measure c"):
        g(Mj)  # the rule refuses every gradient with a c: say so rather than guess
    value = jax.jit(lambda M_: fs.solve(M_, aj, bj, reg=REG, c=c).value)(Mj)
    assert float(value) == fs.solve(M, a, b, reg=REG, c=np.asarray(c)).value


def test_functions_without_gradients_refuse_to_be_differentiated():
    M, a, b = problem()
    Mj, aj, bj = arrays(M, a, b)
    with pytest.raises(NotImplementedError, match="emd: M is differentiated, and emd provides no gradient"):
        jax.grad(lambda M_: fs.emd(aj, bj, M_).sum())(Mj)
    with pytest.raises(NotImplementedError, match="gradients are implemented for metric"):
        jax.grad(lambda M_: fs.dist(M_, metric="cityblock").sum())(Mj)
    with pytest.raises(NotImplementedError, match=r"marginals\[0\] has no gradient"):
        jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG).marginals[0].sum())(Mj)
    with pytest.raises(NotImplementedError, match="plan has no gradient"):
        jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG, grad="envelope").plan.sum())(Mj)
    with pytest.raises(NotImplementedError, match="grad='sideways'"):
        jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG, grad="sideways").value)(Mj)
    with pytest.raises(Exception, match="plan has no gradient"):  # under jit: JAX's runtime error, the message kept
        jax.jit(jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG, grad="envelope").plan.sum()))(Mj)
    assert jax.jit(lambda M_: fs.emd(aj, bj, M_))(Mj).shape == M.shape  # values: fine


def test_detach_gives_constants_and_envelope_gives_pots_gradient():
    M, a, b = problem()
    Mj, aj, bj = arrays(M, a, b)
    g = jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG, grad="detach").value)(Mj)
    assert not np.any(np.asarray(g))
    g = jax.grad(lambda M_: fs.solve(M_, aj, bj, reg=REG, grad="envelope", tol=1e-13).value)(Mj)
    np.testing.assert_allclose(np.asarray(g), fs.solve(M, a, b, reg=REG, tol=1e-13).plan, atol=1e-15)


def test_what_has_no_shape_before_the_solve_is_refused_under_transformations():
    M, a, b = problem()
    Mj, aj, bj = arrays(M, a, b)
    with pytest.raises(NotImplementedError, match=r"sinkhorn2\(log=True\) with traced JAX arrays"):
        jax.jit(lambda M_: fs.sinkhorn2(aj, bj, M_, REG, log=True))(Mj)
    with pytest.raises(NotImplementedError, match=r"emd2\(return_matrix=True\)"):
        jax.grad(lambda M_: fs.emd2(aj, bj, M_, return_matrix=True)[0])(Mj)
    x, y = arrays(M[:, :2], M[:4, :2])
    with pytest.raises(NotImplementedError, match=r"solve_sample\(lazy=True\)"):
        jax.jit(lambda x_: fs.solve_sample(x_, y, reg=REG, lazy=True).value)(x)


def test_gradients_match_ott_implicit_differentiation():
    """OTT-JAX's ``reg_ot_cost`` is ``<P, C> + eps KL(P | a b^T)`` at its optimum,
    our ``solve(...).value`` (``reg_type="KL"``); its gradient by implicit
    differentiation must equal ours: in ``C``, and in the masses up to their
    tied constant (centred)."""
    pytest.importorskip("ott")
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import implicit_differentiation, sinkhorn

    M, a, b = problem(7, 6, seed=22)
    Mj, aj, bj = arrays(M, a, b)
    solver = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=100000,
                               implicit_diff=implicit_differentiation.ImplicitDiff())

    def ott_cost(C, a_, b_):
        return solver(linear_problem.LinearProblem(geometry.Geometry(cost_matrix=C, epsilon=REG), a_, b_)).reg_ot_cost

    theirs = jax.grad(ott_cost, argnums=(0, 1, 2))(Mj, aj, bj)
    ours = jax.grad(lambda *x: _solve(*x).value, argnums=(0, 1, 2))(Mj, aj, bj)
    assert float(ott_cost(Mj, aj, bj)) == pytest.approx(float(_solve(Mj, aj, bj).value), rel=1e-9)
    # ott's implicit solve (its own CG-type linear solver at ~1e-6 relative) bounds the agreement
    np.testing.assert_allclose(np.asarray(ours[0]), np.asarray(theirs[0]), atol=1e-6)
    for mine, ott_grad in zip(ours[1:], theirs[1:], strict=True):
        np.testing.assert_allclose(centred(np.asarray(mine)), centred(np.asarray(ott_grad)), atol=1e-5)


def test_point_gradients_and_last_step_equal_the_torch_bridges():
    """The rules serve both frameworks: the same numbers through either bridge."""
    torch = pytest.importorskip("torch")
    M, a, b = problem(5, 4, seed=40)
    rng = np.random.default_rng(41)
    x, y = rng.random((5, 2)), rng.random((4, 2))
    gj = jax.grad(lambda x_: fs.solve_sample(x_, jnp.asarray(y), reg=REG, **SOLVE_TIGHT).value_linear)(
        jnp.asarray(x))
    gl = jax.grad(lambda M_: fs.solve(M_, *arrays(a, b), reg=REG, grad="last_step", **SOLVE_TIGHT).value)(
        jnp.asarray(M))
    xt = torch.tensor(x, requires_grad=True)
    fs.solve_sample(xt, torch.tensor(y), reg=REG, **SOLVE_TIGHT).value_linear.backward()
    Mt = torch.tensor(M, requires_grad=True)
    fs.solve(Mt, torch.tensor(a), torch.tensor(b), reg=REG, grad="last_step", **SOLVE_TIGHT).value.backward()
    np.testing.assert_allclose(np.asarray(gj), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(np.asarray(gl), Mt.grad.numpy(), atol=1e-12)
