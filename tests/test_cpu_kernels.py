"""Every CPU kernel against the NumPy float64 reference, on fresh random inputs."""

import numpy as np
import pytest
from ot_testing import SHAPES, assert_close, random_problem

from fastsinkhorn.backends import get_backend

REF = get_backend("reference")
CPU = get_backend("cpu")
DTYPES = [np.float64, np.float32]


def potentials(rng, n, m, zeros):
    """Potentials of a realistic scale, with -inf where masses are zero."""
    f = rng.normal(scale=0.05, size=n)
    g = rng.normal(scale=0.05, size=m)
    if zeros:
        f[rng.choice(n, size=min(zeros, n - 1), replace=False)] = -np.inf
        g[rng.choice(m, size=min(zeros, m - 1), replace=False)] = -np.inf
    return f, g


@pytest.fixture(params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def shape(request):
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg", [1.0, 1e-3])
@pytest.mark.parametrize("zeros", [0, 2])
def test_log_domain_half_steps(rng, shape, dtype, reg, zeros):
    M, _, _ = random_problem(rng, *shape, dtype=dtype)
    f, g = potentials(rng, *shape, zeros)
    assert_close(CPU.lse_rows(M, g, reg), REF.lse_rows(M, g, reg), scale=1.0)
    assert_close(CPU.lse_cols(M, f, reg), REF.lse_cols(M, f, reg), scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros", [0, 2])
def test_plan(rng, shape, dtype, zeros):
    M, _, _ = random_problem(rng, *shape, dtype=dtype)
    f, g = potentials(rng, *shape, zeros)
    got = CPU.plan(M, f, g, 0.05, np.empty(shape, dtype))
    want = REF.plan(M, f, g, 0.05, np.empty(shape, dtype))
    assert got.dtype == dtype
    assert_close(got, want, dtype)
    assert not np.isnan(got).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros", [0, 2])
def test_scaling_pass_and_scale(rng, shape, dtype, zeros):
    M, a, b = random_problem(rng, *shape, dtype=dtype, zeros=zeros)
    K = np.exp(-M / 0.5).astype(dtype)
    K[a == 0, :] = 0.0  # zero-mass rows carry no kernel mass (f = -inf)
    v = rng.random(shape[1]) + 0.5
    u_cpu, u_ref = np.empty(shape[0]), np.empty(shape[0])
    col_cpu = CPU.scaling_pass(K, v, a, u_cpu)
    col_ref = REF.scaling_pass(K, v, a, u_ref)
    assert_close(u_cpu, u_ref)
    assert_close(col_cpu, col_ref)
    assert_close(CPU.scale(K, u_ref, v, np.empty_like(K)), REF.scale(K, u_ref, v, np.empty_like(K)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros", [0, 2])
def test_dense_pass(rng, shape, dtype, zeros):
    M, _, _ = random_problem(rng, *shape, dtype=dtype)
    f, g = potentials(rng, *shape, zeros)
    k = max(1, shape[1] // 7)
    r1, c1, t1, idx1, val1 = CPU.dense_pass(M, f, g, 0.05, k)
    r2, c2, t2, idx2, val2 = REF.dense_pass(M, f, g, 0.05, k)
    assert_close(r1, r2)
    assert_close(c1, c2)
    assert t1 == pytest.approx(t2, rel=1e-12)
    assert idx1.shape == idx2.shape == (shape[0], k)
    # same selected set per row (random data: no ties), compared as dense matrices
    dense = [np.zeros(shape) for _ in range(2)]
    for D, idx, val in ((dense[0], idx1, val1), (dense[1], idx2, val2)):
        np.put_along_axis(D, idx, val, axis=1)
    live = np.isfinite(f)
    assert_close(dense[0][live], dense[1][live])
    assert (val1[~live] == 0).all()


def test_ell_products(rng, shape):
    n, m = shape
    k = max(1, m // 5)
    idx = np.stack([rng.choice(m, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    val = rng.random((n, k))
    x, y = rng.random(m), rng.random(n)
    assert_close(CPU.ell_matvec(idx, val, x), REF.ell_matvec(idx, val, x))
    assert_close(CPU.ell_rmatvec(idx, val, y, m), REF.ell_rmatvec(idx, val, y, m))
    S = np.zeros((n, m))
    np.put_along_axis(S, idx, val, axis=1)
    assert_close(REF.ell_matvec(idx, val, x), S @ x)
    assert_close(REF.ell_rmatvec(idx, val, y, m), S.T @ y)


def test_lse_is_stable_at_tiny_reg(rng):
    """Terms like exp(-1000) underflow naively; the shifted sums must not."""
    M, _, _ = random_problem(rng, 50, 40)
    g = np.zeros(40)
    out = CPU.lse_rows(M + 5.0, g, 1e-4)
    assert np.isfinite(out).all()
    assert_close(out, REF.lse_rows(M + 5.0, g, 1e-4), scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tolerance_catches_a_perturbed_kernel(rng, dtype):
    """The comparison above is tight: a kernel off in one entry by a few ulps-scale
    relative error (1e-9 in float64, 1e-5 in float32) fails it."""
    M, a, _ = random_problem(rng, 257, 130, dtype=dtype)
    K = np.exp(-M).astype(dtype)
    v = rng.random(130) + 0.5
    u = np.empty(257)
    col = CPU.scaling_pass(K, v, a, u)
    bad = col.copy()
    bad[17] *= 1 + (1e-9 if dtype == np.float64 else 1e-5)
    assert_close(col, REF.scaling_pass(K, v, a, np.empty(257)))
    with pytest.raises(AssertionError):
        assert_close(bad, REF.scaling_pass(K, v, a, np.empty(257)))
    P = CPU.plan(M, np.zeros(257), np.zeros(130), 0.1, np.empty((257, 130), dtype))
    P[3, 4] *= 1 + (1e-9 if dtype == np.float64 else 1e-5)
    with pytest.raises(AssertionError):
        assert_close(P, REF.plan(M, np.zeros(257), np.zeros(130), 0.1, np.empty((257, 130), dtype)), dtype)


@pytest.mark.parametrize("n, m, k", [(1, 1, 1), (5, 3, 2), (37, 90, 9), (900, 400, 160)])
def test_parallel_ell_products(rng, n, m, k):
    """The threaded products (used from 2**17 stored entries) against the reference."""
    from fastsinkhorn.backends import _cpu_kernels as kern

    idx = np.stack([rng.choice(m, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    val = rng.random((n, k))
    val[rng.random((n, k)) < 0.2] = 0.0  # zero padding is legal
    x, y = rng.random(m), rng.random(n)
    assert_close(kern.ell_matvec_parallel(idx, val, x), REF.ell_matvec(idx, val, x))
    for blocks in (1, 2, 7):
        assert_close(kern.ell_rmatvec_parallel(idx, val, y, m, blocks), REF.ell_rmatvec(idx, val, y, m))
    # the backend's dispatch (parallel from 2**17 entries: the last case)
    assert_close(CPU.ell_matvec(idx, val, x), REF.ell_matvec(idx, val, x))
    assert_close(CPU.ell_rmatvec(idx, val, y, m), REF.ell_rmatvec(idx, val, y, m))


def test_kth_largest_matches_partition(rng):
    """The quickselect of ``select_rows`` against ``np.partition``, ties included."""
    from fastsinkhorn.backends._cpu_kernels import _kth_largest

    for size in (1, 2, 3, 10, 101):
        for x in (rng.random(size), rng.integers(0, 3, size).astype(np.float64),
                  np.arange(size, dtype=np.float64), np.full(size, 0.5)):
            for k in sorted({1, min(2, size), max(1, size // 2), size}):
                assert _kth_largest(x.copy(), k) == np.partition(x, size - k)[size - k]


def test_reference_computes_in_float64_whatever_the_cost_dtype(rng):
    """The oracle's contract: float32 buffers are read as float64, arithmetic
    is float64, only stores round (so it is exact where the CPU kernels are
    only float32-accurate)."""
    M, a, _ = random_problem(rng, 37, 23, dtype=np.float32)
    M64 = M.astype(np.float64)
    f, g = potentials(rng, 37, 23, 0)
    np.testing.assert_array_equal(REF.lse_rows(M, g, 1e-3), REF.lse_rows(M64, g, 1e-3))
    np.testing.assert_array_equal(REF.lse_cols(M, f, 1e-3), REF.lse_cols(M64, f, 1e-3))
    K = np.exp(-M64 / 0.1).astype(np.float32)
    v = rng.random(23) + 0.5
    u32, u64 = np.empty(37), np.empty(37)
    np.testing.assert_array_equal(REF.scaling_pass(K, v, a, u32), REF.scaling_pass(K.astype(np.float64), v, a, u64))
    np.testing.assert_array_equal(u32, u64)
    out = REF.scale(K, u64, v, np.empty((37, 23), np.float32))
    np.testing.assert_array_equal(out, (u64[:, None] * K.astype(np.float64) * v[None, :]).astype(np.float32))


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="no fork")
def test_threaded_row_blocks_work_in_a_forked_child():
    """A process forked after a threaded pass (multiprocessing's default on
    Linux, or mutmut) inherits the cached thread pool but not its threads;
    its own passes must still run, on every row, instead of waiting forever."""
    import multiprocessing

    from fastsinkhorn.backends import _blocks, _cpu, _threads

    n, m = 64, 4 * _blocks.MIN_ENTRIES_PER_THREAD // 64
    if _threads.threads(_threads.blocks(n * m, n)) < 2:
        pytest.skip("one thread: no pool")

    def rows_seen():
        def work(rows, buf, state):
            state[rows.start:rows.stop] += 1.0  # marks the rows this thread did
        return np.sum(_cpu._row_blocks(n, m, work), axis=0)[:n]

    assert np.array_equal(rows_seen(), np.ones(n))  # the parent's pool now exists

    def child():
        raise SystemExit(0 if np.array_equal(rows_seen(), np.ones(n)) else 3)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(120)  # a hang guard, not a timing: the child needs milliseconds
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    assert proc.exitcode == 0
