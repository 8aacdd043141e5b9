"""POT's empirical solvers (pot/empirical.py) under ``import fastsinkhorn as ot``:
the cases of POT's test_bregman.py empirical tests, equality with POT's own
functions, the refusals, and their gradients (torch bridge) against central
finite differences and POT's autodiff."""

import numpy as np
import pytest

import fastsinkhorn as ot

TIGHT = {"stopThr": 1e-13, "numIterMax": 100000}
H = 1e-6


def test_empirical_sinkhorn_pot_case():
    n = 10
    a, b = ot.unif(n), ot.unif(n)
    X_s = np.reshape(1.0 * np.arange(n), (n, 1))
    X_t = np.reshape(1.0 * np.arange(0, n), (n, 1))
    M = ot.dist(X_s, X_t)
    M_m = ot.dist(X_s, X_t, metric="euclidean")
    G_sqe = ot.bregman.empirical_sinkhorn(X_s, X_t, 1)
    sinkhorn_sqe = ot.sinkhorn(a, b, M, 1)
    G_log, log_es = ot.bregman.empirical_sinkhorn(X_s, X_t, 0.1, log=True)
    sinkhorn_log, log_s = ot.sinkhorn(a, b, M, 0.1, log=True)
    G_m = ot.bregman.empirical_sinkhorn(X_s, X_t, 1, metric="euclidean")
    sinkhorn_m = ot.sinkhorn(a, b, M_m, 1)
    loss_emp_sinkhorn = ot.bregman.empirical_sinkhorn2(X_s, X_t, 1)
    loss_sinkhorn = ot.sinkhorn2(a, b, M, 1)
    for ours, ref in ((G_sqe, sinkhorn_sqe), (G_log, sinkhorn_log), (G_m, sinkhorn_m)):
        np.testing.assert_allclose(ours.sum(1), ref.sum(1), atol=1e-05)
        np.testing.assert_allclose(ours.sum(0), ref.sum(0), atol=1e-05)
    np.testing.assert_allclose(loss_emp_sinkhorn, loss_sinkhorn, atol=1e-05)
    assert set(log_es) >= {"u", "v", "err"}


def test_lazy_empirical_sinkhorn_pot_case(capsys):
    n = 10
    a, b = ot.unif(n), ot.unif(n)
    numIterMax = 1000
    X_s = np.reshape(np.arange(n, dtype=np.float64), (n, 1))
    X_t = np.reshape(np.arange(0, n, dtype=np.float64), (n, 1))
    M = ot.dist(X_s, X_t)
    M_m = ot.dist(X_s, X_t, metric="euclidean")
    f, g = ot.bregman.empirical_sinkhorn(X_s, X_t, 1, numIterMax=numIterMax, isLazy=True, batchSize=(1, 3),
                                         verbose=True)
    assert capsys.readouterr().out  # verbose prints the checks
    G_sqe = np.exp(f[:, None] + g[None, :] - M / 1)
    sinkhorn_sqe = ot.sinkhorn(a, b, M, 1)
    f, g, log_es = ot.bregman.empirical_sinkhorn(X_s, X_t, 0.1, numIterMax=numIterMax, isLazy=True, batchSize=1,
                                                 log=True)
    G_log = np.exp(f[:, None] + g[None, :] - M / 0.1)
    sinkhorn_log = ot.sinkhorn(a, b, M, 0.1)
    f, g = ot.bregman.empirical_sinkhorn(X_s, X_t, 1, metric="euclidean", numIterMax=numIterMax, isLazy=True,
                                         batchSize=1)
    G_m = np.exp(f[:, None] + g[None, :] - M_m / 1)
    sinkhorn_m = ot.sinkhorn(a, b, M_m, 1)
    loss_emp_sinkhorn, log = ot.bregman.empirical_sinkhorn2(X_s, X_t, 1, numIterMax=numIterMax, isLazy=True,
                                                            batchSize=1, log=True)
    loss_sinkhorn = ot.sinkhorn2(a, b, M, 1)
    for ours, ref in ((G_sqe, sinkhorn_sqe), (G_log, sinkhorn_log), (G_m, sinkhorn_m)):
        np.testing.assert_allclose(ours.sum(1), ref.sum(1), atol=1e-05)
        np.testing.assert_allclose(ours.sum(0), ref.sum(0), atol=1e-05)
    np.testing.assert_allclose(loss_emp_sinkhorn, loss_sinkhorn, atol=1e-05)
    np.testing.assert_allclose(log_es["lazy_plan"][:], G_log, atol=1e-12)
    assert set(log_es) >= {"err", "u", "v", "niter", "lazy_plan"}


def test_empirical_sinkhorn_divergence_pot_case():
    n = 10
    a = np.linspace(1, n, n)
    a /= a.sum()
    b = ot.unif(n)
    X_s = np.reshape(np.arange(n, dtype=np.float64), (n, 1))
    X_t = np.reshape(np.arange(0, n * 2, 2, dtype=np.float64), (n, 1))
    M, M_s, M_t = ot.dist(X_s, X_t), ot.dist(X_s, X_s), ot.dist(X_t, X_t)
    emp_sinkhorn_div = ot.bregman.empirical_sinkhorn_divergence(X_s, X_t, 1, a=a, b=b)
    sinkhorn_div = (ot.sinkhorn2(a, b, M, 1) - 1 / 2 * ot.sinkhorn2(a, a, M_s, 1)
                    - 1 / 2 * ot.sinkhorn2(b, b, M_t, 1))
    np.testing.assert_allclose(emp_sinkhorn_div, sinkhorn_div, atol=1e-05)
    div_log, log = ot.bregman.empirical_sinkhorn_divergence(X_s, X_t, 1, a=a, b=b, log=True)
    assert div_log == emp_sinkhorn_div
    assert set(log) == {"sinkhorn_loss_ab", "sinkhorn_loss_a", "sinkhorn_loss_b", "log_sinkhorn_ab",
                        "log_sinkhorn_a", "log_sinkhorn_b"}


def _reference_loss(x, y, reg):
    """``<M, P*>`` in plain float64 NumPy, uniform weights: log-domain
    Sinkhorn, then Newton's method on the dual (a dense least-squares step;
    the problem converges too slowly for Sinkhorn alone)."""
    from scipy.special import logsumexp
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    n, m = M.shape
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    f, g = np.zeros(n), np.zeros(m)
    for _ in range(1000):
        f = reg * (np.log(a) - logsumexp((g[None, :] - M) / reg, axis=1))
        g = reg * (np.log(b) - logsumexp((f[:, None] - M) / reg, axis=0))
    for _ in range(50):
        P = np.exp((f[:, None] + g[None, :] - M) / reg)
        residual = np.concatenate([P.sum(1) - a, P.sum(0) - b])
        if np.abs(residual).sum() < 1e-15:
            break
        H = np.block([[np.diag(P.sum(1)), P], [P.T, np.diag(P.sum(0))]]) / reg
        step = np.linalg.lstsq(H, residual, rcond=None)[0]
        f, g = f - step[:n], g - step[n:]
    return float((P * M).sum())


def test_pots_docstring_example_converged():
    # POT's docstring prints 1.499887176 from a run that stops short of the
    # optimum (W(a, b) converges slowly here; POT warns); the converged value
    # is 1.49996595
    X_s = np.reshape(np.arange(2, dtype=np.float64), (2, 1))
    X_t = np.reshape(np.arange(0, 4, dtype=np.float64), (4, 1))
    expected = _reference_loss(X_s, X_t, 0.1) - (_reference_loss(X_s, X_s, 0.1) + _reference_loss(X_t, X_t, 0.1)) / 2
    assert ot.bregman.empirical_sinkhorn_divergence(X_s, X_t, 0.1) == pytest.approx(expected, rel=1e-7)
    assert ot.bregman.empirical_sinkhorn_divergence(X_s, X_t, 0.1, **TIGHT) == pytest.approx(expected, rel=1e-11)


def _samples(seed, n=7, m=5):
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((m, 2)) + 0.3
    a, b = rng.random(n) + 0.3, rng.random(m) + 0.3
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("isLazy", [False, True])
def test_equal_to_pots_functions(isLazy):
    pot = pytest.importorskip("ot")
    x, y, a, b = _samples(1)
    kw = dict(a=a, b=b, reg=0.1, stopThr=1e-12, isLazy=isLazy)
    M = ot.dist(x, y)
    ours, theirs = (m.empirical_sinkhorn(x, y, **kw) for m in (ot.bregman, pot.bregman))
    if isLazy:  # the log-potentials are defined up to a constant moved between f and g
        ours, theirs = (np.exp(f[:, None] + g[None, :] - M / 0.1) for f, g in (ours, theirs))
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert ot.bregman.empirical_sinkhorn2(x, y, **kw) == pytest.approx(pot.bregman.empirical_sinkhorn2(x, y, **kw),
                                                                       rel=1e-8)
    assert ot.bregman.empirical_sinkhorn_divergence(x, y, **kw) == pytest.approx(
        pot.bregman.empirical_sinkhorn_divergence(x, y, **kw), rel=1e-7)


def test_exported_where_pot_exports_them():
    for name in ("empirical_sinkhorn", "empirical_sinkhorn2", "empirical_sinkhorn_divergence"):
        assert name in ot.bregman.__all__
        assert not hasattr(ot, name)  # as POT: ot.bregman only


def test_refusals():
    x, y, _, _ = _samples(2)
    with pytest.raises(NotImplementedError, match="method"):
        ot.bregman.empirical_sinkhorn(x, y, 0.1, isLazy=True, method="sinkhorn_log")
    with pytest.raises(NotImplementedError, match="cityblock"):
        ot.bregman.empirical_sinkhorn2(x, y, 0.1, isLazy=True, metric="cityblock")
    with pytest.raises(ValueError, match="Batch size"):
        ot.bregman.empirical_sinkhorn(x, y, 0.1, isLazy=True, batchSize=(1, 2, 3))
    with pytest.warns(ot.ConvergenceWarning):
        ot.bregman.empirical_sinkhorn(x, y, 0.01, isLazy=True, numIterMax=3, stopThr=1e-12)


def _fd(fn, arrays, name, direction):
    def value(t):
        changed = {**arrays, name: arrays[name] + t * direction}
        return float(fn(**changed))
    return (value(H) - value(-H)) / (2 * H)


@pytest.mark.parametrize("isLazy", [False, True])
@pytest.mark.parametrize("function", ["empirical_sinkhorn2", "empirical_sinkhorn_divergence", "plan"])
def test_gradients_match_finite_differences(function, isLazy):
    torch = pytest.importorskip("torch")
    x, y, a, b = _samples(3)
    rng = np.random.default_rng(4)
    W = rng.standard_normal((7, 5))
    weights = (rng.standard_normal(7), rng.standard_normal(5))
    kw = dict(reg=0.3, isLazy=isLazy, **TIGHT)
    if function == "plan":  # the plan, or the lazy log-potentials (a loss blind to their constant)
        def fn(X_s, X_t, a, b):
            out = ot.bregman.empirical_sinkhorn(X_s, X_t, a=a, b=b, **kw)
            if not isLazy:
                return (out * (torch.tensor(W) if isinstance(out, torch.Tensor) else W)).sum()
            f, g = out
            lib = torch if isinstance(f, torch.Tensor) else np
            return sum((lib.asarray(w) * (p - p.mean())).sum() for w, p in zip(weights, (f, g)))
    else:
        def fn(X_s, X_t, a, b):
            return getattr(ot.bregman, function)(X_s, X_t, a=a, b=b, **kw)
    arrays = {"X_s": x, "X_t": y, "a": a, "b": b}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    fn(**tensors).backward()
    for name, v in arrays.items():
        d = rng.standard_normal(v.shape)
        if name in ("a", "b"):
            d -= d.mean()  # balanced: the weights are tied to equal sums
        expected = _fd(fn, arrays, name, d)
        got = float(np.sum(tensors[name].grad.numpy() * d))
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9), name


def test_gradients_match_pots_autodiff():
    torch = pytest.importorskip("torch")
    pot = pytest.importorskip("ot")
    x, y, a, b = _samples(5)
    grads = []
    for module in (ot.bregman, pot.bregman):
        xt, yt = (torch.tensor(v, requires_grad=True) for v in (x, y))
        module.empirical_sinkhorn_divergence(xt, yt, 0.5, a=torch.tensor(a), b=torch.tensor(b),
                                             stopThr=1e-13, numIterMax=100000).backward()
        grads.append((xt.grad.numpy(), yt.grad.numpy()))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    assert np.abs(grads[0][0]).max() > 1e-2


def test_lazy_and_dense_gradients_are_equal():
    torch = pytest.importorskip("torch")
    x, y, _, _ = _samples(6)
    grads = []
    for lazy in (False, True):
        xt = torch.tensor(x, requires_grad=True)
        ot.bregman.empirical_sinkhorn2(xt, torch.tensor(y), 0.2, isLazy=lazy, metric="euclidean",
                                       **TIGHT).backward()
        grads.append(xt.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-8, atol=1e-12)


def test_gradient_with_another_metric_is_refused():
    torch = pytest.importorskip("torch")
    x, y, _, _ = _samples(7)
    with pytest.raises(NotImplementedError, match="cityblock"):
        ot.bregman.empirical_sinkhorn2(torch.tensor(x, requires_grad=True), torch.tensor(y), 0.2,
                                       metric="cityblock")


@pytest.fixture
def jax_x64():
    """JAX with float64 for one test (the global setting: callbacks under jit read it)."""
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", before)


@pytest.mark.parametrize("isLazy", [False, True])
def test_jax_gradients_under_jit_equal_torch_gradients(isLazy, jax_x64):
    torch = pytest.importorskip("torch")
    jax = jax_x64
    x, y, a, b = _samples(8)
    losses = {
        "empirical_sinkhorn2": lambda out: out,
        "empirical_sinkhorn_divergence": lambda out: out,
        "empirical_sinkhorn": (lambda out: (out[0] ** 2).sum() + (out[1] ** 2).sum()) if isLazy else
                              (lambda out: (out ** 2).sum()),
    }
    for name, loss in losses.items():
        def value(X_s, X_t, name=name, loss=loss, lib=None):
            return loss(getattr(ot.bregman, name)(X_s, X_t, 0.3, a=lib.asarray(a), b=lib.asarray(b),
                                                   isLazy=isLazy, **TIGHT))
        jnp = jax.numpy
        jax_grads = jax.jit(jax.grad(lambda X_s, X_t: value(X_s, X_t, lib=jnp), argnums=(0, 1)))(
            jnp.asarray(x), jnp.asarray(y))
        xt, yt = (torch.tensor(v, requires_grad=True) for v in (x, y))
        value(xt, yt, lib=torch).backward()
        for got, expected in zip(jax_grads, (xt.grad, yt.grad)):
            np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=1e-12, atol=1e-15)
        assert np.abs(np.asarray(jax_grads[0])).max() > 1e-3, name
