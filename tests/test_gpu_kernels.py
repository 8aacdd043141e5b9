"""Every GPU kernel against the NumPy float64 reference (needs CuPy + a GPU):
dense costs (C and F layouts), batches of dense problems (one launch per
pass over all problems), then point-cloud costs (the same kernels with the
cost functor ``fs::CloudCost``).

Skipped with a reason when CuPy is not importable or finds no CUDA device.
"""

import numpy as np
import pytest
from ot_testing import random_clouds

from fastsinkhorn.backends._contract import CostSpec
from fastsinkhorn.backends._reference import ReferenceBackend

pytestmark = pytest.mark.gpu

SHAPES = [(1, 1), (3, 5), (5, 3), (1, 300), (300, 1), (257, 130), (130, 257), (64, 1000)]
DTYPES = [np.float32, np.float64]
# The backend takes C-contiguous matrices only (prepare_problem solves an
# F-ordered cost as its transpose; test_gpu_wrapper.py checks the refusal).
ORDERS = ["C"]
REG = 0.1
# Per-dtype tolerance of (n, m) outputs stored in the problem dtype; float64
# outputs (O(n) vectors) are compared with RTOL64 whatever the problem dtype.
RTOL = {np.float32: 2e-7, np.float64: 1e-13}
RTOL64 = 1e-11  # summation order differs from NumPy's pairwise sums


@pytest.fixture(scope="module")
def gpu(cp):
    from fastsinkhorn.backends._gpu import GPUBackend

    return GPUBackend()


ref = ReferenceBackend()


def _problem(rng, shape, dtype, order, zero_masses=True):
    n, m = shape
    M = np.asarray(rng.uniform(0.0, 1.0, size=shape), dtype=dtype, order=order)
    M = np.require(M, requirements=order)
    f = rng.normal(scale=0.1, size=n)
    g = rng.normal(scale=0.1, size=m)
    if zero_masses and n > 2:
        f[1] = -np.inf
    if zero_masses and m > 2:
        g[-1] = -np.inf
    return M, f, g


def _to(cp, M):
    return cp.asarray(M)


def _close(got, want, rtol, atol=0.0):
    got = got.get() if hasattr(got, "get") else np.asarray(got)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert not np.any(np.isnan(got))


cases = pytest.mark.parametrize(
    "shape,dtype,order", [(s, d, o) for s in SHAPES for d in DTYPES for o in ORDERS]
)


@cases
def test_lse_rows_cols(cp, gpu, shape, dtype, order):
    rng = np.random.default_rng(10)
    M, f, g = _problem(rng, shape, dtype, order)
    dM = _to(cp, M)
    assert dM.flags.f_contiguous == M.flags.f_contiguous
    r, c = gpu.lse_rows(dM, cp.asarray(g), REG), gpu.lse_cols(dM, cp.asarray(f), REG)
    assert r.dtype == np.float64 and r.shape == (shape[0],)
    assert c.dtype == np.float64 and c.shape == (shape[1],)
    _close(r, ref.lse_rows(M, g, REG), RTOL64, 1e-12)
    _close(c, ref.lse_cols(M, f, REG), RTOL64, 1e-12)


def test_lse_all_neg_inf_gives_neg_inf(cp, gpu):
    M = cp.zeros((4, 3))
    r = gpu.lse_rows(M, cp.full(3, -np.inf), REG).get()
    c = gpu.lse_cols(M, cp.full(4, -np.inf), REG).get()
    assert np.all(np.isneginf(r)) and np.all(np.isneginf(c))


@cases
@pytest.mark.parametrize("out_order", ["C", "F"])
def test_plan(cp, gpu, shape, dtype, order, out_order):
    rng = np.random.default_rng(11)
    M, f, g = _problem(rng, shape, dtype, order)
    out = cp.empty(shape, dtype, order=out_order)
    got = gpu.plan(_to(cp, M), cp.asarray(f), cp.asarray(g), REG, out)
    assert got is out and out.dtype == dtype
    want = ref.plan(M, f, g, REG, np.empty(shape, dtype))
    _close(out, want, RTOL[dtype])
    if shape[0] > 2:
        assert np.all(out.get()[1] == 0.0)  # zero mass: exact zeros


@cases
def test_scaling_pass(cp, gpu, shape, dtype, order):
    rng = np.random.default_rng(12)
    n, m = shape
    K = np.require(rng.uniform(0.1, 1.0, size=shape).astype(dtype), requirements=order)
    v = rng.uniform(0.5, 2.0, size=m)
    a = rng.uniform(0.1, 1.0, size=n)
    if n > 2:
        a[0] = 0.0
        K[0] = 0.0  # a zero-mass row of K is zero
    u_ref = np.empty(n)
    col_ref = ref.scaling_pass(K, v, a, u_ref)
    u = cp.empty(n)
    col = gpu.scaling_pass(_to(cp, K), cp.asarray(v), cp.asarray(a), u)
    assert col.dtype == np.float64 and col.shape == (m,)
    _close(u, u_ref, RTOL64)
    _close(col, col_ref, RTOL64)


def test_scaling_pass_detects_perturbation(cp, gpu):
    """The tolerance is tight: a 1e-9 relative error in K^T u fails it."""
    rng = np.random.default_rng(13)
    K = rng.uniform(0.1, 1.0, size=(257, 130))
    v, a = rng.uniform(0.5, 2, 130), rng.uniform(0.1, 1, 257)
    col_ref = ref.scaling_pass(K, v, a, np.empty(257))
    col = gpu.scaling_pass(cp.asarray(K), cp.asarray(v), cp.asarray(a), cp.empty(257)).get()
    col[7] *= 1 + 1e-9
    with pytest.raises(AssertionError):
        _close(col, col_ref, RTOL64)


@cases
@pytest.mark.parametrize("alias", [False, True])
def test_scale(cp, gpu, shape, dtype, order, alias):
    rng = np.random.default_rng(14)
    K = np.require(rng.uniform(0.0, 1.0, size=shape).astype(dtype), requirements=order)
    u, v = rng.uniform(0.5, 2.0, shape[0]), rng.uniform(0.5, 2.0, shape[1])
    want = ref.scale(K, u, v, np.empty(shape, dtype))
    dK = _to(cp, K)
    out = dK if alias else cp.empty(shape, dtype)
    assert gpu.scale(dK, cp.asarray(u), cp.asarray(v), out) is out
    _close(out, want, RTOL[dtype] * 4)


@cases
@pytest.mark.parametrize("k", [1, 3, 1000])
def test_dense_pass(cp, gpu, shape, dtype, order, k):
    rng = np.random.default_rng(15)
    M, f, g = _problem(rng, shape, dtype, order)
    r0, c0, t0, idx0, val0 = ref.dense_pass(M, f, g, REG, k)
    r, c, total, idx, val = gpu.dense_pass(_to(cp, M), cp.asarray(f), cp.asarray(g), REG, k)
    _close(r, r0, RTOL64)
    _close(c, c0, RTOL64)
    assert abs(float(total) - t0) <= RTOL64 * abs(t0)
    kk = min(k, shape[1])
    assert idx.shape == (shape[0], kk) and val.shape == (shape[0], kk)
    assert idx.dtype == np.int64 and val.dtype == np.float64
    idx, val = idx.get(), val.get()
    # Exactly kk distinct in-range columns per row, values equal to P there,
    # and the same multiset of values as the reference (ties may differ).
    assert all(len(set(row)) == kk for row in idx) and idx.min() >= 0 and idx.max() < shape[1]
    P = ref.plan(M, f, g, REG, np.empty(shape))
    np.testing.assert_allclose(val, np.take_along_axis(P, idx, axis=1), rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.sort(val, axis=1), np.sort(val0, axis=1), rtol=1e-14, atol=0)


def test_dense_pass_ties_give_exactly_k(cp, gpu):
    M = cp.zeros((6, 40))  # every entry of a row equal
    f, g = cp.zeros(6), cp.zeros(40)
    _, _, total, idx, val = gpu.dense_pass(M, f, g, REG, 7)
    idx = idx.get()
    assert idx.shape == (6, 7) and all(len(set(row)) == 7 for row in idx)
    assert np.all(val.get() == 1.0) and float(total) == 240.0


@pytest.mark.parametrize("shape,k", [((1, 1), 1), ((3, 5), 2), ((257, 130), 7), ((500, 64), 64)])
def test_ell_products(cp, gpu, shape, k):
    rng = np.random.default_rng(16)
    n, m = shape
    idx = np.stack([rng.choice(m, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    val = rng.uniform(size=(n, k))
    x, y = rng.normal(size=m), rng.normal(size=n)
    _close(gpu.ell_matvec(cp.asarray(idx), cp.asarray(val), cp.asarray(x)), ref.ell_matvec(idx, val, x), 1e-13, 1e-14)
    got = gpu.ell_rmatvec(cp.asarray(idx), cp.asarray(val), cp.asarray(y), m)
    assert got.shape == (m,)
    _close(got, ref.ell_rmatvec(idx, val, y, m), 1e-12, 1e-13)


# -- batches: the five dense members with a leading batch axis ---------------
BATCH_SHAPES = [(1, 1, 1), (4, 3, 5), (3, 257, 130), (5, 1, 300), (4, 300, 1), (6, 64, 1000)]


def _batch(rng, shape, dtype):
    """A (B, n, m) batch of distinct problems, zero masses (-inf potentials)
    in every other problem only."""
    B, n, m = shape
    problems = [_problem(rng, (n, m), dtype, "C", zero_masses=p % 2 == 0) for p in range(B)]
    return tuple(np.stack(col) for col in zip(*problems))


def _each(member, arrays, *scalars):
    """The reference's ``member`` on each problem of the batched ``arrays``, stacked."""
    return np.stack([getattr(ref, member)(*(x[p] for x in arrays), *scalars) for p in range(len(arrays[0]))])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BATCH_SHAPES)
def test_batched_members(cp, gpu, shape, dtype):
    """Each batched member: problem p of one batched call is the reference on problem p."""
    rng = np.random.default_rng(20)
    B, n, m = shape
    M, f, g = _batch(rng, shape, dtype)
    dM, df, dg = cp.asarray(M), cp.asarray(f), cp.asarray(g)
    r, c = gpu.lse_rows(dM, dg, REG), gpu.lse_cols(dM, df, REG)
    assert r.shape == (B, n) and c.shape == (B, m) and r.dtype == c.dtype == np.float64
    _close(r, _each("lse_rows", (M, g), REG), RTOL64, 1e-12)
    _close(c, _each("lse_cols", (M, f), REG), RTOL64, 1e-12)
    P = np.stack([ref.plan(M[p], f[p], g[p], REG, np.empty((n, m), dtype)) for p in range(B)])
    for out in (cp.empty(shape, dtype), cp.empty((n, m, B), dtype).transpose(2, 0, 1)):  # C, problems last
        assert gpu.plan(dM, df, dg, REG, out) is out
        _close(out, P, RTOL[dtype])
    K = rng.uniform(0.1, 1.0, size=shape).astype(dtype)
    v, a = rng.uniform(0.5, 2.0, size=(B, m)), rng.uniform(0.1, 1.0, size=(B, n))
    if n > 2:
        a[1, 0], K[1, 0] = 0.0, 0.0  # a zero-mass row (of K too) in problem 1 only
    u_ref = np.empty((B, n))
    col_ref = np.stack([ref.scaling_pass(K[p], v[p], a[p], u_ref[p]) for p in range(B)])
    dK, u = cp.asarray(K), cp.empty((B, n))
    col = gpu.scaling_pass(dK, cp.asarray(v), cp.asarray(a), u)
    assert col.shape == (B, m) and col.dtype == np.float64
    _close(u, u_ref, RTOL64)
    _close(col, col_ref, RTOL64)
    want = np.stack([ref.scale(K[p], u_ref[p], v[p], np.empty((n, m), dtype)) for p in range(B)])
    assert gpu.scale(dK, cp.asarray(u_ref), cp.asarray(v), dK) is dK  # in place
    _close(dK, want, RTOL[dtype] * 4)


def test_batch_wider_than_the_grid(cp, gpu, monkeypatch):
    """More problems than blocks in z, several row chunks per problem: the
    kernels' loop over problems and the (chunk, problem) partials."""
    from fastsinkhorn.backends import _gpu

    monkeypatch.setattr(_gpu, "_MAX_GRID_Y", 3)
    monkeypatch.setattr(_gpu, "_COL_BLOCKS", 16)
    rng = np.random.default_rng(21)
    B, n, m = 8, 70, 300
    M, f, g = _batch(rng, (B, n, m), np.float64)
    dM = cp.asarray(M)
    _close(gpu.lse_rows(dM, cp.asarray(g), REG), _each("lse_rows", (M, g), REG), RTOL64, 1e-12)
    _close(gpu.lse_cols(dM, cp.asarray(f), REG), _each("lse_cols", (M, f), REG), RTOL64, 1e-12)
    out = cp.empty((B, n, m))
    want = np.stack([ref.plan(M[p], f[p], g[p], REG, np.empty((n, m))) for p in range(B)])
    _close(gpu.plan(dM, cp.asarray(f), cp.asarray(g), REG, out), want, RTOL[np.float64])
    K, v, a = rng.uniform(0.1, 1, (B, n, m)), rng.uniform(0.5, 2, (B, m)), rng.uniform(0.1, 1, (B, n))
    u_ref = np.empty((B, n))
    col_ref = np.stack([ref.scaling_pass(K[p], v[p], a[p], u_ref[p]) for p in range(B)])
    u = cp.empty((B, n))
    _close(gpu.scaling_pass(cp.asarray(K), cp.asarray(v), cp.asarray(a), u), col_ref, RTOL64)
    _close(u, u_ref, RTOL64)
    want = np.stack([ref.scale(K[p], a[p], v[p], np.empty((n, m))) for p in range(B)])
    dK = cp.asarray(K)
    _close(gpu.scale(dK, cp.asarray(a), cp.asarray(v), dK), want, RTOL[np.float64] * 4)


def test_missing_device_message():
    from fastsinkhorn.backends import _gpu

    assert "pip install fastsinkhorn[gpu]" in _gpu._INSTALL_HINT


# -- point clouds: the same kernels with the cost functor fs::CloudCost ------
CLOUD_SHAPES = [(1, 1), (3, 5), (5, 3), (1, 300), (300, 1), (257, 130), (64, 1000)]
COSTS = [CostSpec("sqeuclidean", scale=0.7), CostSpec("euclidean", scale=1.3),
         CostSpec("minkowski", p=1.0), CostSpec("minkowski", p=1.5, scale=2.0)]
cloud_cases = pytest.mark.parametrize(
    "shape,cost,d", [(s, c, d) for s in CLOUD_SHAPES for c in COSTS for d in (1, 3)] + [((130, 257), COSTS[0], 17)],
    ids=lambda v: v.kind + str(v.p) if isinstance(v, CostSpec) else None,
)
# Costs are summed in the same order as the reference; the device may fuse
# multiply-adds, so entries differ from NumPy by a few ulps.
RTOL_COST = 1e-13


@cloud_cases
def test_pc_cost_rows(cp, gpu, shape, cost, d):
    x, y, _, _ = random_clouds(np.random.default_rng(17), *shape, d)
    n, m = shape
    for start, stop in [(0, n), (n // 2, n)]:
        got = gpu.pc_cost_rows(cp.asarray(x), cp.asarray(y), cost, start, stop)
        assert got.shape == (stop - start, m) and got.dtype == np.float64
        _close(got, ref.pc_cost_rows(x, y, cost, start, stop), RTOL_COST)
    assert float(gpu.pc_cost_rows(cp.asarray(x), cp.asarray(y), cost, 0, 1)[0, 0]) == 0.0


@cloud_cases
@pytest.mark.parametrize("row_warps", [1, 10**9], ids=["warp-per-row", "column-shaped"])
def test_pc_lse_rows(cp, gpu, monkeypatch, shape, cost, d, row_warps):
    from fastsinkhorn.backends import _gpu

    monkeypatch.setattr(_gpu, "_CLOUD_ROW_WARPS", row_warps)  # each launch shape
    x, y, f, g = random_clouds(np.random.default_rng(18), *shape, d)
    dx, dy = cp.asarray(x), cp.asarray(y)
    r, c = gpu.pc_lse_rows(dx, dy, cost, cp.asarray(g), REG), gpu.pc_lse_rows(dy, dx, cost, cp.asarray(f), REG)
    assert r.dtype == np.float64 and r.shape == (shape[0],) and c.shape == (shape[1],)
    _close(r, ref.pc_lse_rows(x, y, cost, g, REG), RTOL64, 1e-12)
    _close(c, ref.pc_lse_rows(y, x, cost, f, REG), RTOL64, 1e-12)


@pytest.mark.parametrize("row_warps", [1, 10**9], ids=["warp-per-row", "column-shaped"])
def test_pc_lse_all_neg_inf_gives_neg_inf(cp, gpu, monkeypatch, row_warps):
    from fastsinkhorn.backends import _gpu

    monkeypatch.setattr(_gpu, "_CLOUD_ROW_WARPS", row_warps)
    x, y = cp.zeros((4, 2)), cp.ones((3, 2))
    r = gpu.pc_lse_rows(x, y, CostSpec(), cp.full(3, -np.inf), REG).get()
    assert np.all(np.isneginf(r))


@cloud_cases
@pytest.mark.parametrize("k", [1, 3, 1000])
def test_pc_dense_pass(cp, gpu, shape, cost, d, k):
    x, y, f, g = random_clouds(np.random.default_rng(19), *shape, d)
    r0, c0, t0, idx0, val0 = ref.pc_dense_pass(x, y, cost, f, g, REG, k)
    r, c, total, idx, val = gpu.pc_dense_pass(cp.asarray(x), cp.asarray(y), cost, cp.asarray(f), cp.asarray(g), REG, k)
    _close(r, r0, RTOL64)
    _close(c, c0, RTOL64)
    assert abs(float(total) - t0) <= RTOL64 * abs(t0)
    kk = min(k, shape[1])
    assert idx.shape == (shape[0], kk) and idx.dtype == np.int64 and val.dtype == np.float64
    idx, val = idx.get(), val.get()
    assert all(len(set(row)) == kk for row in idx) and idx.min() >= 0 and idx.max() < shape[1]
    P = ref.plan(ref.pc_cost_rows(x, y, cost, 0, shape[0]), f, g, REG, np.empty(shape))
    kept = val > 0  # entries below SELECT_FLOOR of their row maximum read as zeros
    np.testing.assert_allclose(val[kept], np.take_along_axis(P, idx, axis=1)[kept], rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.sort(val, axis=1), np.sort(val0, axis=1), rtol=1e-12, atol=0)
