"""Test helpers: random problems and dtype-aware comparisons (imported by name:
benchmarks/ has a conftest.py too, so ``from conftest import`` is ambiguous)."""

import numpy as np

#: Shapes every kernel is checked on: tiny, odd, rectangular both ways, larger.
SHAPES = [(1, 1), (3, 5), (5, 3), (64, 64), (257, 130), (130, 257), (600, 400)]
#: Relative tolerance of kernel outputs per dtype of the (n, m) buffers.
RTOL = {np.float64: 1e-11, np.float32: 4e-7}


def random_problem(rng, n, m, dtype=np.float64, zeros=0, cost_scale=1.0):
    """Random cost in [0, cost_scale] and random positive masses (``zeros`` of each zeroed)."""
    M = (cost_scale * rng.random((n, m))).astype(dtype)
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    if zeros:
        a[rng.choice(n, size=min(zeros, n - 1), replace=False)] = 0.0
        b[rng.choice(m, size=min(zeros, m - 1), replace=False)] = 0.0
    return M, a / a.sum(), b / b.sum()


def assert_close(actual, expected, dtype=np.float64, scale=None):
    """Entries agree to the dtype's tolerance, relative to ``scale`` (default: max |expected|)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(actual)), "non-finite entries differ"
    assert np.array_equal(actual[~finite], expected[~finite])
    if scale is None:
        scale = np.abs(expected[finite]).max(initial=0.0)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=RTOL[np.dtype(dtype).type],
                               atol=RTOL[np.dtype(dtype).type] * scale * 1e-3)


def plan_error(P, a, b):
    P = np.asarray(P, dtype=np.float64)
    return float(np.abs(P.sum(1) - a).sum() + np.abs(P.sum(0) - b).sum())


def random_clouds(rng, n, m, d):
    """Points ``x`` (n, d), ``y`` (m, d) in the unit cube with ``x[0] == y[0]``
    (a zero cost), and potentials ``f``, ``g`` with a ``-inf`` (zero mass)
    each when there are more than two points."""
    x, y = rng.random((n, d)), rng.random((m, d))
    x[0] = y[0]
    f, g = rng.normal(scale=0.1, size=n), rng.normal(scale=0.1, size=m)
    if n > 2:
        f[1] = -np.inf
    if m > 2:
        g[-1] = -np.inf
    return x, y, f, g


def log_sinkhorn_reference(M, a, b, reg, tol=1e-12, max_iter=100_000):
    """The plain float64 log-domain Sinkhorn, written for clarity: an oracle
    independent of the library (scipy's ``logsumexp``; ``+inf`` costs and
    zero masses allowed). Runs until the L1 marginal error is ``<= tol``.

    Returns ``(P, f, g, error)`` with ``P = exp((f + g - M) / reg)``; the
    caller decides what an ``error`` above ``tol`` (not converged) means.
    """
    from scipy.special import logsumexp

    M = np.asarray(M, dtype=np.float64)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore"):
        log_a, log_b = np.log(a), np.log(b)
    f, g = np.zeros(M.shape[0]), np.zeros(M.shape[1])
    error = np.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        for _ in range(max_iter):
            f = np.where(a > 0, reg * (log_a - logsumexp((g[None, :] - M) / reg, axis=1)), -np.inf)
            g = np.where(b > 0, reg * (log_b - logsumexp((f[:, None] - M) / reg, axis=0)), -np.inf)
            P = np.exp(np.nan_to_num((f[:, None] + g[None, :] - M) / reg, nan=-np.inf))
            error = plan_error(P, a, b)
            if error <= tol:
                break
    return P, f, g, error


def northwest_corner_plan(a, b):
    """The northwest-corner plan of ``(a, b)`` (``b`` rescaled to the sum of
    ``a``): a feasible plan, so keeping its support finite keeps a problem
    with forbidden entries feasible, and its cost bounds the exact value."""
    a, b = np.array(a, np.float64), np.array(b, np.float64) * (np.sum(a) / np.sum(b))
    plan = np.zeros((a.size, b.size))
    i = j = 0
    while i < a.size and j < b.size:
        moved = min(a[i], b[j])
        plan[i, j] += moved
        a[i] -= moved
        b[j] -= moved
        if a[i] <= b[j]:
            i += 1
        else:
            j += 1
    return plan
