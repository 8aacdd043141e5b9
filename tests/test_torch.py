"""PyTorch tensors in, tensors and gradients out (core/frameworks.py, core/torch_bridge.py, core/autodiff.py)."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastsinkhorn as fs

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install fastsinkhorn[torch])")

REG = 0.2
TIGHT = {"stopThr": 1e-14, "numItermax": 100000}


def problem(n=6, m=7, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    M = rng.random((n, m))
    a, b = rng.random(n) + 0.2, rng.random(m) + 0.2
    return M.astype(dtype), (a / a.sum()).astype(dtype), (b / b.sum()).astype(dtype)


def tensors(*arrays, requires_grad=False):
    return tuple(torch.tensor(x, requires_grad=requires_grad) for x in arrays)


def centred(x):
    return x - x.mean()


def test_import_does_not_load_torch():
    code = ("import sys, fastsinkhorn; fastsinkhorn.solve([[0.0, 1.0], [1.0, 0.0]], reg=1.0); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_equal_numpy_and_keep_dtype(dtype):
    M, a, b = problem(dtype=dtype)
    Mt, at, bt = tensors(M, a, b)
    res, ref = fs.solve(Mt, at, bt, reg=REG), fs.solve(M, a, b, reg=REG)
    assert isinstance(res.plan, torch.Tensor) and res.plan.dtype == Mt.dtype and res.plan.device == Mt.device
    np.testing.assert_array_equal(res.plan.numpy(), ref.plan)
    for got, want in zip(res.potentials, ref.potentials, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    assert isinstance(res.value, torch.Tensor) and res.value.dtype == Mt.dtype and float(res.value) == ref.value
    loss = fs.sinkhorn2(at, bt, Mt, REG)
    assert isinstance(loss, torch.Tensor) and loss.dtype == Mt.dtype and float(loss) == fs.sinkhorn2(a, b, M, REG)
    plan, log = fs.sinkhorn(at, bt, Mt, REG, log=True)
    np.testing.assert_array_equal(plan.numpy(), fs.sinkhorn(a, b, M, REG))
    assert isinstance(log["u"], torch.Tensor)
    np.testing.assert_array_equal(fs.emd(at, bt, Mt).numpy(), fs.emd(a, b, M))
    cost = fs.emd2(at, bt, Mt)
    assert isinstance(cost, torch.Tensor) and cost.dtype == Mt.dtype and float(cost) == pytest.approx(fs.emd2(a, b, M))
    D = fs.dist(Mt, Mt[:3])
    assert D.dtype == Mt.dtype
    np.testing.assert_array_equal(D.numpy(), fs.dist(M, M[:3]))


def test_cpu_float64_is_not_copied():
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, b)
    seen = {}
    real_solve = fs.solvers._solve

    def spy(M_, a_, b_, **kw):
        seen.update(M=M_, a=a_, b=b_, result=real_solve(M_, a_, b_, **kw))
        return seen["result"]

    fs.solvers._solve = spy
    try:
        res = fs.solve(Mt, at, bt, reg=REG)
    finally:
        fs.solvers._solve = real_solve
    for name, t in (("M", Mt), ("a", at), ("b", bt)):
        assert np.shares_memory(seen[name], t.numpy()), name
    assert np.shares_memory(res.plan.numpy(), seen["result"].plan)  # from_numpy: the solver's buffer
    D = fs.dist(Mt)
    D.numpy()[0, 0] = 123.0  # the returned tensor is the solver's array, not a copy of it
    assert D[0, 0] == 123.0


def test_mixed_arguments_raise_type_error_naming_them():
    M, a, b = problem()
    Mt, at, _ = tensors(M, a, b)
    with pytest.raises(TypeError, match=r"M, a are torch tensors, b is not"):
        fs.solve(Mt, at, b, reg=REG)
    with pytest.raises(TypeError, match="b, M are not"):
        fs.sinkhorn2(at, b, M, REG)
    with pytest.raises(TypeError, match="torch"):
        fs.emd2(list(a), b, Mt)


def test_uniform_marginals_with_tensor_cost():
    M, _, _ = problem()
    (Mt,) = tensors(M)
    assert float(fs.sinkhorn2(None, None, Mt, REG)) == fs.sinkhorn2(None, None, M, REG)


def test_tensor_on_another_device_is_refused():
    M, a, b = problem()
    Mt = torch.tensor(M, device="meta")
    with pytest.raises(NotImplementedError, match="only CPU and CUDA tensors"):
        fs.solve(Mt, reg=REG)


def test_tensors_on_different_devices_are_refused_by_name():
    M, a, b = problem()
    with pytest.raises(ValueError, match=r"M on meta, a on cpu"):
        fs.solve(torch.tensor(M, device="meta"), torch.tensor(a), reg=REG)


def _cuda_tensors(cp, *arrays):
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    return tuple(torch.tensor(x, device="cuda") for x in arrays)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_tensors_run_on_the_device_through_dlpack(cp, dtype):
    """CUDA tensors reach CuPy without a copy and come back as CUDA tensors of
    their dtype, with the CPU solve's answer."""
    M, a, b = problem(40, 30, dtype=dtype)
    Mt, at, bt = _cuda_tensors(cp, M, a, b)
    res = fs.solve(Mt, at, bt, reg=REG)
    assert res.plan.device.type == "cuda" and res.plan.dtype == Mt.dtype
    expected = fs.solve(M, a, b, reg=REG)
    np.testing.assert_allclose(res.plan.cpu().numpy(), expected.plan, rtol=1e-4, atol=1e-6)
    loss = fs.sinkhorn2(at, bt, Mt, REG)
    assert loss.device.type == "cuda"
    assert float(loss) == pytest.approx(float(fs.sinkhorn2(a, b, M, REG)), rel=1e-4)


@pytest.mark.gpu
def test_cuda_tensors_that_require_a_gradient_are_refused(cp):
    M, a, b = problem()
    (Mt,) = _cuda_tensors(cp, M)
    with pytest.raises(NotImplementedError, match="CUDA tensors that require a gradient"):
        fs.sinkhorn2(None, None, Mt.requires_grad_(), REG)


def test_functions_without_gradients_refuse_inputs_that_require_one():
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, b, requires_grad=True)
    with pytest.raises(NotImplementedError, match="require a gradient"):
        fs.emd(at, bt, Mt)
    with pytest.raises(NotImplementedError, match="gradients are implemented for metric"):
        fs.dist(Mt, metric="cityblock")
    with pytest.raises(NotImplementedError, match="grad='autodiff', 'envelope', 'last_step' and 'detach'"):
        fs.solve(Mt, at, bt, reg=REG, grad="sideways")
    with torch.no_grad():  # no graph wanted: fine
        fs.emd(at, bt, Mt)


def test_detach_gives_tensors_without_a_graph():
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, b, requires_grad=True)
    res = fs.solve(Mt, at, bt, reg=REG, grad="detach")
    assert not res.value.requires_grad and not res.plan.requires_grad
    assert float(res.value) == fs.solve(M, a, b, reg=REG).value


def _sinkhorn2(M, a, b, reg):
    return float(fs.sinkhorn2(a, b, M, reg, **TIGHT))


@pytest.mark.parametrize("seed, shape, reg", [(0, (5, 5), 0.1), (1, (6, 8), 0.3), (2, (8, 5), 0.5)])
def test_sinkhorn2_gradients_match_finite_differences(seed, shape, reg):
    M, a, b = problem(*shape, seed=seed)
    Mt, at, bt = tensors(M, a, b, requires_grad=True)
    loss = fs.sinkhorn2(at, bt, Mt, reg, **TIGHT)
    loss.backward()
    rng, h = np.random.default_rng(seed + 10), 1e-5
    dM = rng.standard_normal(M.shape)
    fd = (_sinkhorn2(M + h * dM, a, b, reg) - _sinkhorn2(M - h * dM, a, b, reg)) / (2 * h)
    assert float((Mt.grad * torch.tensor(dM)).sum()) == pytest.approx(fd, rel=1e-6, abs=1e-9)
    # the marginals' masses are tied: directions that keep sum a = sum b
    da, db = centred(rng.standard_normal(a.shape)), centred(rng.standard_normal(b.shape))
    fd = (_sinkhorn2(M, a + h * da, b + h * db, reg) - _sinkhorn2(M, a - h * da, b - h * db, reg)) / (2 * h)
    got = float((at.grad * torch.tensor(da)).sum() + (bt.grad * torch.tensor(db)).sum())
    assert got == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_sinkhorn2_gradients_match_pot_autodiff():
    ot = pytest.importorskip("ot")
    M, a, b = problem(7, 6, seed=3)
    ours, pots = tensors(M, a, b, requires_grad=True), tensors(M, a, b, requires_grad=True)
    fs.sinkhorn2(ours[1], ours[2], ours[0], REG, **TIGHT).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ot.sinkhorn2(pots[1], pots[2], pots[0], REG, stopThr=1e-15, numItermax=100000).backward()
    np.testing.assert_allclose(ours[0].grad.numpy(), pots[0].grad.numpy(), atol=1e-10)
    for mine, theirs in zip(ours[1:], pots[1:], strict=True):  # defined up to the tied constant
        np.testing.assert_allclose(centred(mine.grad).numpy(), centred(theirs.grad).numpy(), atol=1e-10)


def test_sinkhorn2_gradient_float32_and_log():
    M, a, b = problem(dtype=np.float32)
    Mt, at, bt = tensors(M, a, b, requires_grad=True)
    loss, log = fs.sinkhorn2(at, bt, Mt, REG, log=True)
    assert loss.dtype == torch.float32 and isinstance(log["alpha"], torch.Tensor)
    loss.backward()
    assert Mt.grad.dtype == torch.float32 and torch.isfinite(Mt.grad).all()


def test_sinkhorn2_several_targets_gradient_is_refused():
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, np.stack([b, b], axis=1), requires_grad=True)
    with pytest.raises(NotImplementedError, match="2-D b"):
        fs.sinkhorn2(at, bt, Mt, REG)


@pytest.mark.parametrize("reg_type", ["KL", "entropy"])
def test_envelope_gradients_match_pot(reg_type):
    ot = pytest.importorskip("ot")
    M, a, b = problem(6, 5, seed=4)
    ours, pots = tensors(M, a, b, requires_grad=True), tensors(M, a, b, requires_grad=True)
    value = fs.solve(*ours, reg=REG, reg_type=reg_type, grad="envelope", tol=1e-13).value
    value.backward()
    theirs = ot.solve(*pots, reg=REG, reg_type=reg_type, grad="envelope", tol=1e-15, max_iter=100000).value
    theirs.backward()
    assert float(value.detach()) == pytest.approx(float(theirs.detach()), rel=1e-12)
    for mine, pot in zip(ours, pots, strict=True):
        np.testing.assert_allclose(mine.grad.numpy(), pot.grad.numpy(), atol=1e-10)


def test_envelope_gradient_of_m_matches_finite_differences():
    M, a, b = problem(5, 6, seed=5)
    (Mt,) = tensors(M, requires_grad=True)
    at, bt = tensors(a, b)
    fs.solve(Mt, at, bt, reg=REG, grad="envelope", tol=1e-13).value.backward()
    rng, h = np.random.default_rng(6), 1e-5
    dM = rng.standard_normal(M.shape)

    def value(M_):
        return fs.solve(M_, a, b, reg=REG, tol=1e-13).value

    fd = (value(M + h * dM) - value(M - h * dM)) / (2 * h)
    assert float((Mt.grad * torch.tensor(dM)).sum()) == pytest.approx(fd, rel=1e-6)


def test_emd2_gradients_match_pot():
    ot = pytest.importorskip("ot")
    M, a, b = problem(6, 6, seed=7)
    ours, pots = tensors(M, a, b, requires_grad=True), tensors(M, a, b, requires_grad=True)
    fs.emd2(ours[1], ours[2], ours[0]).backward()
    ot.emd2(pots[1], pots[2], pots[0]).backward()
    np.testing.assert_allclose(ours[0].grad.numpy(), pots[0].grad.numpy(), atol=1e-12)
    for mine, pot in zip(ours[1:], pots[1:], strict=True):
        np.testing.assert_allclose(centred(mine.grad).numpy(), centred(pot.grad).numpy(), atol=1e-10)


def test_warnings_point_at_the_callers_line():
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, b)
    with pytest.warns(UserWarning, match="did not converge") as record:
        fs.sinkhorn(at, bt, Mt, 0.01, numItermax=3)
    assert {w.filename for w in record} == {__file__}
    with pytest.warns(fs.ConvergenceWarning) as record:
        fs.solve(Mt, at, bt, reg=0.01, max_iter=2, method="sinkhorn")
    assert {w.filename for w in record} == {__file__}


def test_solve_sample_takes_tensors_and_differentiates_the_points():
    rng = np.random.default_rng(8)
    x, y = rng.random((5, 2)), rng.random((6, 2))
    xt, yt = tensors(x, y)
    res = fs.solve_sample(xt, yt, reg=REG)
    assert isinstance(res.plan, torch.Tensor)
    np.testing.assert_array_equal(res.plan.numpy(), fs.solve_sample(x, y, reg=REG).plan)
    xg, yg = tensors(x, y, requires_grad=True)
    fs.solve_sample(xg, yg, reg=REG, grad="envelope").value.backward()
    P = res.plan.numpy()  # the envelope gradient of value: 2 (P 1 x - P y)
    np.testing.assert_allclose(xg.grad.numpy(), 2 * (P.sum(1)[:, None] * x - P @ y), rtol=1e-6, atol=1e-9)
    with pytest.raises(NotImplementedError, match="cityblock"):
        fs.solve_sample(xg, yg, reg=REG, metric="cityblock")


def test_envelope_is_refused_where_not_implemented():
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, b, requires_grad=True)
    with pytest.raises(NotImplementedError, match="unbalanced"):
        fs.solve(Mt, at, bt, reg=REG, unbalanced=1.0, grad="envelope")
    with pytest.raises(NotImplementedError, match="one entropic problem"):
        fs.solve(Mt, at, bt, reg=None, grad="envelope")
    with pytest.raises(NotImplementedError, match="one entropic problem"):
        fs.solve(torch.stack([Mt, Mt]), reg=REG, grad="envelope")


def test_sparse_tensors_are_refused_as_sparse_arrays_are():
    M = torch.rand(4, 5, dtype=torch.float64)
    a, b = torch.full((4,), 0.25, dtype=torch.float64), torch.full((5,), 0.2, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="M is a sparse torch tensor"):
        fs.emd2(a, b, M.to_sparse())
    with pytest.raises(NotImplementedError, match="M is a sparse torch tensor"):
        fs.sinkhorn2(a, b, M.to_sparse(), 0.1)


def test_sinkhorn2_gradient_of_an_unconverged_solve_warns():
    rng = np.random.default_rng(3)
    M = torch.tensor(rng.random((6, 5)), requires_grad=True)
    a, b = torch.full((6,), 1 / 6, dtype=torch.float64), torch.full((5,), 0.2, dtype=torch.float64)
    with pytest.warns(fs.ConvergenceWarning, match="did not converge: its gradient"):
        fs.sinkhorn2(a, b, M, 1e-3, numItermax=2).backward()
    assert M.grad is not None and torch.isfinite(M.grad).all()


def _pot_unrolled(ot, M, a, b, reg, **kw):
    """POT's ``ot.solve`` with torch autodiff through every iteration, run to convergence."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ot.solve(M, a, b, reg=reg, max_iter=100000, tol=1e-15, **kw)


def _loss(res, W, units=1.0, weight=0.1):
    """A loss of every differentiable output of a solve (``units``: what turns its
    potentials into cost units; POT's balanced entropic potentials are ours divided
    by reg; its unbalanced ones are in another frame: ``weight=0`` leaves them out,
    the NumPy finite-difference tests cover them)."""
    f = res.potentials[0] * units
    return res.value + 0.3 * res.value_linear + (res.plan * W).sum() + weight * ((f - f.mean()) ** 2).sum()


def _tied(grad):
    """A mass gradient up to the constant the tied masses leave free: its centred
    part (the mean moves with the other side's, see test below)."""
    return (grad - grad.mean()).numpy()


@pytest.mark.parametrize("kw", [{}, {"reg_type": "entropy"}, {"unbalanced": 0.7}, {"unbalanced": (0.5, 2.0)}],
                         ids=["KL", "entropy", "unbalanced", "unbalanced-pair"])
def test_solve_autodiff_matches_pot_unrolled_autodiff(kw):
    """Every output of solve (value, value_linear, plan, potentials) differentiated as
    POT differentiates its iterations, to convergence."""
    ot = pytest.importorskip("ot")
    M, a, b = problem(6, 5, seed=11)
    W = torch.tensor(np.random.default_rng(12).standard_normal(M.shape))
    ours, pots = tensors(M, a, b, requires_grad=True), tensors(M, a, b, requires_grad=True)
    weight = 0.0 if "unbalanced" in kw else 0.1
    _loss(fs.solve(*ours, reg=REG, tol=1e-14, max_iter=100000, **kw), W, weight=weight).backward()
    _loss(_pot_unrolled(ot, *pots, REG, **kw), W, units=REG, weight=weight).backward()
    np.testing.assert_allclose(ours[0].grad.numpy(), pots[0].grad.numpy(), atol=1e-9)
    for mine, theirs in zip(ours[1:], pots[1:], strict=True):
        if "unbalanced" in kw:  # no tied constant: the masses are free
            np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), atol=1e-9)
        else:
            np.testing.assert_allclose(_tied(mine.grad), _tied(theirs.grad), atol=1e-9)
    if "unbalanced" not in kw:  # the free constant moves between the sides: their sum of means is fixed
        assert float(ours[1].grad.mean() + ours[2].grad.mean()) == pytest.approx(
            float(pots[1].grad.mean() + pots[2].grad.mean()), abs=1e-9)


def test_sinkhorn_plan_gradient_matches_pot_unrolled_autodiff():
    ot = pytest.importorskip("ot")
    M, a, b = problem(5, 7, seed=13)
    W = torch.tensor(np.random.default_rng(14).standard_normal(M.shape))
    ours, pots = tensors(M, a, b, requires_grad=True), tensors(M, a, b, requires_grad=True)
    (fs.sinkhorn(ours[1], ours[2], ours[0], REG, **TIGHT) * W).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (ot.sinkhorn(pots[1], pots[2], pots[0], REG, stopThr=1e-15, numItermax=100000) * W).sum().backward()
    np.testing.assert_allclose(ours[0].grad.numpy(), pots[0].grad.numpy(), atol=1e-9)
    for mine, theirs in zip(ours[1:], pots[1:], strict=True):
        np.testing.assert_allclose(_tied(mine.grad), _tied(theirs.grad), atol=1e-9)


def test_dist_gradient_matches_torch_autograd():
    rng = np.random.default_rng(15)
    x, y = rng.random((6, 3)), rng.random((4, 3))
    W = torch.tensor(rng.standard_normal((6, 4)))
    for metric in ("sqeuclidean", "euclidean"):
        ours, refs = tensors(x, y, requires_grad=True), tensors(x, y, requires_grad=True)
        (fs.dist(*ours, metric=metric) * W).sum().backward()
        D = torch.cdist(*refs) ** (2 if metric == "sqeuclidean" else 1)
        (D * W).sum().backward()
        for mine, ref in zip(ours, refs, strict=True):
            np.testing.assert_allclose(mine.grad.numpy(), ref.grad.numpy(), atol=1e-12)
    (xs,) = tensors(x, requires_grad=True)  # one set on both sides: both contributions
    (xr,) = tensors(x, requires_grad=True)
    (fs.dist(xs) * W[:, :1]).sum().backward()
    (torch.cdist(xr, xr) ** 2 * W[:, :1]).sum().backward()
    np.testing.assert_allclose(xs.grad.numpy(), xr.grad.numpy(), atol=1e-12)


def test_points_gradient_through_dist_and_sinkhorn2_matches_finite_differences():
    rng = np.random.default_rng(16)
    x, y = rng.random((6, 2)), rng.random((5, 2))
    (xt,) = tensors(x, requires_grad=True)
    fs.sinkhorn2(torch.tensor([]), torch.tensor([]), fs.dist(xt, torch.tensor(y)), 0.1, **TIGHT).backward()
    d, h = rng.standard_normal(x.shape), 1e-6

    def loss(x_):
        return float(fs.sinkhorn2([], [], fs.dist(x_, y), 0.1, **TIGHT))

    fd = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    assert float((xt.grad * torch.tensor(d)).sum()) == pytest.approx(fd, rel=1e-6)


def test_batch_gradients_equal_per_problem_gradients():
    Ms, As, Bs = zip(*(problem(5, 4, seed=s) for s in (20, 21, 22)), strict=True)
    W = torch.tensor(np.random.default_rng(23).standard_normal((3, 5, 4)))
    batch = tensors(np.stack(Ms), np.stack(As), np.stack(Bs), requires_grad=True)
    res = fs.solve(*batch, reg=REG, tol=1e-13)
    (res.value.sum() + (res.plan * W).sum()).backward()
    for i in range(3):
        one = tensors(Ms[i], As[i], Bs[i], requires_grad=True)
        r = fs.solve(*one, reg=REG, tol=1e-13)
        (r.value + (r.plan * W[i]).sum()).backward()
        np.testing.assert_allclose(batch[0].grad[i].numpy(), one[0].grad.numpy(), atol=1e-10)
        for k in (1, 2):
            np.testing.assert_allclose(_tied(batch[k].grad[i]), _tied(one[k].grad), atol=1e-10)


def test_autodiff_gradients_in_float32_are_finite_and_close_to_float64():
    M, a, b = problem(dtype=np.float32)
    ours32 = tensors(M, a, b, requires_grad=True)
    ours64 = tensors(*(x.astype(np.float64) for x in (M, a, b)), requires_grad=True)
    for t in (ours32, ours64):
        fs.solve(*t, reg=REG).value.backward()
    assert ours32[0].grad.dtype == torch.float32
    np.testing.assert_allclose(ours32[0].grad.numpy(), ours64[0].grad.numpy(), atol=1e-4)


def test_exact_value_gradient_is_the_plan_and_duals():
    M, a, b = problem(5, 5, seed=24)
    Mt, at, bt = tensors(M, a, b, requires_grad=True)
    res = fs.solve(Mt, at, bt)
    res.value.backward()
    np.testing.assert_allclose(Mt.grad.numpy(), res.plan.toarray(), atol=1e-15)
    u, v = (p.detach().numpy() for p in res.potentials)
    np.testing.assert_allclose(_tied(at.grad), u - u.mean(), atol=1e-12)
    with pytest.raises(NotImplementedError, match="exact duals"):
        Mt.grad = None
        fs.solve(Mt, at, bt).potentials[0].sum().backward()


def test_last_step_gradients_match_pots():
    """POT's grad="last_step" (one Sinkhorn step from the detached solution)."""
    ot = pytest.importorskip("ot")
    M, a, b = problem(6, 5, seed=25)
    W = torch.tensor(np.random.default_rng(26).standard_normal(M.shape))
    ours, pots = tensors(M, a, b, requires_grad=True), tensors(M, a, b, requires_grad=True)
    _loss(fs.solve(*ours, reg=REG, tol=1e-14, grad="last_step"), W).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ot.solve(*pots, reg=REG, tol=1e-15, max_iter=100000, grad="last_step")
    _loss(theirs, W, units=REG).backward()
    np.testing.assert_allclose(ours[0].grad.numpy(), pots[0].grad.numpy(), atol=1e-9)
    for mine, pot in zip(ours[1:], pots[1:], strict=True):
        np.testing.assert_allclose(_tied(mine.grad), _tied(pot.grad), atol=1e-9)
    exact = tensors(M, a, b, requires_grad=True)  # not the derivative of the solution
    _loss(fs.solve(*exact, reg=REG, tol=1e-14), W).backward()
    assert np.abs(exact[0].grad.numpy() - ours[0].grad.numpy()).max() > 1e-3


def test_empty_lists_are_pots_uniform_weights_beside_tensors():
    M, a, b = problem(4, 4, seed=27)
    (Mt,) = tensors(M)
    assert float(fs.emd2([], [], Mt)) == pytest.approx(fs.emd2([], [], M), rel=1e-14)
    assert float(fs.sinkhorn2([], [], Mt, REG)) == pytest.approx(fs.sinkhorn2([], [], M, REG), rel=1e-14)
    with pytest.raises(TypeError, match="a, b are not"):
        fs.emd2([0.25] * 4, [0.25] * 4, Mt)


def test_torch_compile_runs_the_solver_as_one_opaque_node():
    """Under ``torch.compile`` (backend ``aot_eager``: no C++ toolchain
    needed) the call is a graph break around one autograd node: the same
    value and gradients as eager execution."""
    M, a, b = problem()

    def loss(M, a, b):
        return 2.0 * fs.sinkhorn2(a, b, M, REG, **TIGHT) + (M ** 2).sum()

    eager, compiled = [], []
    for fn, out in ((loss, eager), (torch.compile(loss, backend="aot_eager"), compiled)):
        Mt, at, bt = tensors(M, a, b, requires_grad=True)
        value = fn(Mt, at, bt)
        value.backward()
        out.extend([value.detach().numpy(), Mt.grad.numpy(), at.grad.numpy(), bt.grad.numpy()])
    for got, expected in zip(compiled, eager):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.abs(compiled[1]).max() > 0.1


def test_dtypes_and_layouts_each_get_a_defined_answer(rng):
    """float16 is computed in float64 (as NumPy float16 arrays are); bfloat16
    (which NumPy cannot view) raises TypeError naming the argument;
    transposed, strided and zero-stride (expanded) views give the answer of
    their contiguous copies and are left unchanged."""
    M, a, b = problem()
    Mt, at, bt = tensors(M, a, b)
    half = fs.sinkhorn2(at.half(), bt.half(), Mt.half(), REG)
    assert half.dtype == torch.float64
    assert float(half) == pytest.approx(float(fs.sinkhorn2(a.astype(np.float16), b.astype(np.float16),
                                                           M.astype(np.float16), REG)), rel=1e-8)
    with pytest.raises(TypeError, match="M is a torch.bfloat16 tensor"):
        fs.sinkhorn2(at, bt, Mt.bfloat16(), REG)
    wide = torch.tensor(rng.random((6, 14)))
    row = torch.tensor(rng.random(7))
    for view in (Mt.T.contiguous().T, wide[:, ::2], row.expand(6, 7)):
        before = view.clone()
        got = fs.sinkhorn2(at, bt, view, REG)
        # (an F-ordered view is solved transposed: other iterates, the same tolerance)
        assert float(got) == pytest.approx(float(fs.sinkhorn2(at, bt, view.contiguous(), REG)), rel=1e-8)
        assert torch.equal(view, before)
