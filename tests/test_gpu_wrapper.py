"""The Python side of the GPU backend, without a GPU.

``GPUBackend`` is run with ``xp = numpy`` and each CUDA kernel replaced by a
NumPy model of what the kernel computes in its own (R, C) frame.  This checks
what the CUDA code cannot check by itself: that the wrapper only ever hands
the kernels C-contiguous matrices (an F-ordered cost reaches it transposed by
``prepare_problem``), argument order, output strides and launch grids that
cover the whole matrix.  The point-cloud entry points (``pc_*_kernel<KIND>``)
are modelled as their dense counterparts run on the cost matrix of the clouds
they are given, so the tests check which clouds (swapped or not), rows,
fields and kind the host passes.  The kernel bodies are tested on a device by
tests/test_gpu_kernels.py.
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided
from ot_testing import random_clouds

from fastsinkhorn.backends import _blocks, _gpu
from fastsinkhorn.backends._contract import COST_KINDS, CostSpec
from fastsinkhorn.backends._gpu import _BLOCK, _ROWS_PER_BLOCK, KERNEL_SOURCES, GPUBackend
from fastsinkhorn.backends._reference import ReferenceBackend, _logsumexp, cost_matrix

ref = ReferenceBackend()
REG = 0.1


def _exponent(fr, gc, A, reg):
    """Plan exponents of one problem (fr (R,), gc (C,)) or of a batch (fr (B, R), gc (B, C))."""
    with np.errstate(invalid="ignore"):
        x = (fr[..., :, None] + gc[..., None, :] - A.astype(np.float64)) / reg
    return np.where(np.isnan(x), -np.inf, x)


def _frame(out, os, shape):
    return as_strided(out, shape=shape, strides=tuple(int(st) * out.itemsize for st in os))


def _problems(x, *shape):
    """The C-contiguous array ``x`` as the batched kernels index it: a view of
    its memory with the given shape (writes go to ``x``)."""
    assert x.flags.c_contiguous and x.size == np.prod(shape), (x.shape, shape)
    view = x.view()
    view.shape = shape
    return view


def _check_rows(grid, block, A, B=1):
    assert block == (_BLOCK,) and grid[0] * _ROWS_PER_BLOCK >= A.shape[-2]
    assert A.flags.c_contiguous
    assert len(grid) == 3 and grid[1:] == (1, min(B, _gpu._MAX_GRID_Y))  # problems in z


def _check_cols(grid, block, A, R, C, chunk, B=1):
    assert block == (_BLOCK,) and grid[0] * _BLOCK >= C and grid[1] * chunk >= R
    assert (grid[1] - 1) * chunk < max(R, 1) and A.flags.c_contiguous
    assert len(grid) == 3 and grid[2] == min(B, _gpu._MAX_GRID_Y)


def _batched_args(args):
    """``(A, B, R, C, *rest)`` of a batched dense entry point, checked, with
    ``A`` viewed as (B, R, C)."""
    A, B, R, C, *rest = args
    assert isinstance(B, np.int64) and B >= 1
    return (_problems(A, int(B), int(R), int(C)), int(B), R, C, *rest)


def _lse_rows(grid, block, args):
    A, B, R, C, w, reg, out = _batched_args(args)
    _check_rows(grid, block, A, B)
    w, out = _problems(w, B, C), _problems(out, B, R)
    out[...] = _logsumexp((w[:, None, :] - A.astype(np.float64)) / reg, axis=2)


def _lse_cols_partial(grid, block, args):
    """Partials (nchunks, B * C): problem p's columns at p * C."""
    A, B, R, C, w, reg, chunk, pmax, psum = _batched_args(args)
    _check_cols(grid, block, A, R, C, chunk, B)
    assert pmax.shape == psum.shape == (grid[1], B * C)
    w, pmax, psum = _problems(w, B, R), _problems(pmax, grid[1], B, C), _problems(psum, grid[1], B, C)
    for y in range(grid[1]):
        rows = slice(y * chunk, (y + 1) * chunk)
        x = (w[:, rows, None] - A[:, rows].astype(np.float64)) / reg  # (B, rows, C)
        mx = x.max(axis=1, initial=-np.inf)
        pmax[y] = mx
        psum[y] = np.exp(x - np.where(np.isfinite(mx), mx, 0.0)[:, None, :]).sum(axis=1) * np.isfinite(mx)


def _lse_cols_finish(grid, block, args):
    pmax, psum, nchunks, C, out = args
    assert grid[0] * _BLOCK >= C and pmax.shape == (nchunks, C) and out.shape == (C,)
    top = pmax.max(axis=0)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out[:] = np.log((psum * np.exp(pmax - shift)).sum(axis=0)) + shift


def _plan(grid, block, args):
    A, B, R, C, fr, gc, reg, out, os_p, os_r, os_c = _batched_args(args)
    assert grid[0] * _BLOCK >= C and grid[2] == min(B, _gpu._MAX_GRID_Y)
    fr, gc = _problems(fr, B, R), _problems(gc, B, C)
    _frame(out, (os_p, os_r, os_c), (B, R, C))[...] = np.exp(_exponent(fr, gc, A, reg))


def _scale(grid, block, args):
    A, B, R, C, ur, vc, out, os_p, os_r, os_c = _batched_args(args)
    assert grid[0] * _BLOCK >= C and grid[2] == min(B, _gpu._MAX_GRID_Y)
    ur, vc = _problems(ur, B, R), _problems(vc, B, C)
    _frame(out, (os_p, os_r, os_c), (B, R, C))[...] = ur[:, :, None] * A.astype(np.float64) * vc[:, None, :]


def _matvec_rows(grid, block, args):
    A, B, R, C, x, a, tau, out = _batched_args(args)
    _check_rows(grid, block, A, B)
    x, a, out = _problems(x, B, C), _problems(a, B, R), _problems(out, B, R)
    s = np.einsum("prc,pc->pr", A.astype(np.float64), x)
    with np.errstate(divide="ignore", invalid="ignore"):
        if tau == 1.0:
            out[...] = np.where(a > 0, a / s, 1.0)
        else:
            out[...] = np.where(a > -np.inf, np.exp(a - tau * np.log(s)), 1.0)


def _matvec_cols(grid, block, args):
    A, B, R, C, y, chunk, out = _batched_args(args)
    _check_cols(grid, block, A, R, C, chunk, B)
    y, out = _problems(y, B, R), _problems(out, B, C)
    out += np.einsum("prc,pr->pc", A.astype(np.float64), y)


def _marginals(grid, block, args):
    A, R, C, fr, gc, reg, chunk, rsum, csum = args
    _check_cols(grid, block, A, R, C, chunk)
    P = np.exp(_exponent(fr, gc, A, reg))
    rsum += P.sum(axis=1)
    csum += P.sum(axis=0)


def _topk(grid, block, args):
    A, R, C, fr, gc, reg, k, idx, val = args
    x = _exponent(fr, gc, A, reg)
    idx[:] = np.argpartition(-x, k - 1, axis=1)[:, :k]
    val[:] = np.exp(np.take_along_axis(x, idx, axis=1))


def _ell_matvec(grid, block, args):
    idx, val, n, k, x, out = args
    out[:] = ref.ell_matvec(idx, val, x)


def _ell_rmatvec(grid, block, args):
    idx, val, n, k, y, out = args
    assert grid[0] * _BLOCK >= n * k
    out += ref.ell_rmatvec(idx, val, y, out.size)


def _pc_cost_rows(grid, block, args):
    A, R, C, out = args
    assert grid[0] * _BLOCK >= C and grid[1] == min(R, _gpu._MAX_GRID_Y)
    assert out.shape == (R, C) and out.flags.c_contiguous and out.dtype == np.float64
    out[...] = A


def _cloud(dense_model, kind):
    """Model of ``pc_<name>_kernel<kind>``: ``dense_model`` on the cost matrix
    of the clouds ``(x, y, d, p, scale)`` that lead its arguments (a batch of
    one for the models of batched dense entry points: the point-cloud entry
    points take no batch)."""
    def model(grid, block, args):
        x, y, d, p, scale, R, C, *rest = args
        assert isinstance(d, np.int32) and isinstance(p, np.float64) and isinstance(scale, np.float64)
        for pts in (x, y):
            assert pts.dtype == np.float64 and pts.flags.c_contiguous and pts.shape[1] == d
        assert (R, C) == (x.shape[0], y.shape[0])
        A = cost_matrix(x, y, CostSpec(kind, float(p), float(scale)))
        batch = (np.int64(1),) if dense_model in BATCHED_MODELS else ()
        dense_model(grid, block, (A, *batch, R, C, *rest))

    return model


CLOUD_MODELS = {
    "pc_cost_rows_kernel": _pc_cost_rows,
    "pc_lse_rows_kernel": _lse_rows,
    "pc_lse_cols_partial_kernel": _lse_cols_partial,
    "pc_marginals_kernel": _marginals,
    "pc_topk_rows_kernel": _topk,
}

MODELS = {
    "lse_rows_kernel": _lse_rows,
    "lse_cols_partial_kernel": _lse_cols_partial,
    "lse_cols_finish_kernel": _lse_cols_finish,
    "plan_kernel": _plan,
    "scale_kernel": _scale,
    "matvec_rows_kernel": _matvec_rows,
    "matvec_cols_kernel": _matvec_cols,
    "marginals_kernel": _marginals,
    "topk_rows_kernel": _topk,
    "ell_matvec_kernel": _ell_matvec,
    "ell_rmatvec_kernel": _ell_rmatvec,
}


BATCHED_MODELS = (_lse_rows, _lse_cols_partial, _plan, _scale, _matvec_rows, _matvec_cols)


def test_models_cover_every_kernel():
    listed = {k for names in KERNEL_SOURCES.values() for group in names.values() for k in group}
    assert listed == set(MODELS) | set(CLOUD_MODELS)
    batched = {k for names in KERNEL_SOURCES.values() for k in names["batched"]}
    assert batched == {k for k, model in MODELS.items() if model in BATCHED_MODELS}


_KINDS = {f"<{code}>": kind for kind, code in COST_KINDS.items()}


def _model_kernel(name, dtype=None):
    """``GPUBackend._kernel`` with each CUDA kernel replaced by its NumPy model."""
    if dtype is not None:
        assert np.dtype(dtype) in (np.float32, np.float64)
    if name.startswith("pc_"):  # a point-cloud entry point, name<code>
        assert dtype is None
        base, code = name[: name.index("<")], name[name.index("<") :]
        model = _cloud(CLOUD_MODELS[base], _KINDS[code])
    else:
        model = MODELS[name]

    def launch(grid, block, args):
        assert all(not isinstance(a, int) for a in args), "pass numpy scalars, not Python ints"
        model(grid, block, args)

    return launch


@pytest.fixture
def be():
    backend = object.__new__(GPUBackend)  # skip the CuPy/device check
    backend.xp = np
    backend._kernel = _model_kernel
    return backend


SHAPES = [(1, 1), (3, 5), (5, 3), (1, 300), (300, 1), (257, 130), (2, 3000)]
cases = pytest.mark.parametrize(
    "shape,dtype,order", [(s, d, "C") for s in SHAPES for d in (np.float32, np.float64)],
)


def _problem(shape, dtype, order, seed):
    rng = np.random.default_rng(seed)
    n, m = shape
    if order == "strided":
        M = rng.uniform(size=(n, 2 * m)).astype(dtype)[:, ::2]
    else:
        M = np.require(rng.uniform(size=shape).astype(dtype), requirements=order)
    f, g = rng.normal(scale=0.1, size=n), rng.normal(scale=0.1, size=m)
    if n > 2:
        f[1] = -np.inf
    if m > 2:
        g[-1] = -np.inf
    return M, f, g


@cases
def test_wrapper_matches_reference(be, shape, dtype, order):
    M, f, g = _problem(shape, dtype, order, 20)
    n, m = shape
    np.testing.assert_allclose(be.lse_rows(M, g, REG), ref.lse_rows(M, g, REG), rtol=1e-12)
    np.testing.assert_allclose(be.lse_cols(M, f, REG), ref.lse_cols(M, f, REG), rtol=1e-12)
    for out_order in ("C", "F"):
        out = np.zeros(shape, dtype, order=out_order)
        assert be.plan(M, f, g, REG, out) is out
        np.testing.assert_allclose(out, ref.plan(M, f, g, REG, np.empty(shape, dtype)), rtol=1e-6)
    K = ref.plan(M, f, g, REG, np.empty(shape, dtype))
    v = np.linspace(0.5, 2, m)
    a = np.where(np.isfinite(f), np.linspace(0.1, 1, n), 0.0)  # zero rows have zero mass
    u, u0 = np.empty(n), np.empty(n)
    np.testing.assert_allclose(be.scaling_pass(K, v, a, u), ref.scaling_pass(K, v, a, u0), rtol=1e-12)
    np.testing.assert_allclose(u, u0, rtol=1e-12)
    want = ref.scale(K, a, v, np.empty(shape, dtype))
    assert be.scale(K, a, v, K) is K  # in place
    np.testing.assert_allclose(K, want, rtol=1e-6)
    for k in (1, 4, m + 3):
        r, c, total, idx, val = be.dense_pass(M, f, g, REG, k)
        r0, c0, t0, idx0, val0 = ref.dense_pass(M, f, g, REG, k)
        np.testing.assert_allclose(r, r0, rtol=1e-12)
        np.testing.assert_allclose(c, c0, rtol=1e-12)
        assert float(total) == pytest.approx(t0, rel=1e-12)
        assert idx.dtype == np.int64 and idx.shape == idx0.shape
        np.testing.assert_allclose(np.sort(val, axis=1), np.sort(val0, axis=1), rtol=1e-12)
        x, y = np.linspace(-1, 1, m), np.linspace(2, 3, n)
        np.testing.assert_allclose(be.ell_matvec(idx, val, x), ref.ell_matvec(idx, val, x))
        np.testing.assert_allclose(be.ell_rmatvec(idx, val, y, m), ref.ell_rmatvec(idx, val, y, m))


@pytest.mark.parametrize("order", ["F", "strided"])
def test_wrapper_refuses_what_validation_never_passes(be, order):
    """No layout handling of its own: a matrix that is not C-contiguous is an
    error (prepare_problem never hands one over), not a transposed view or a copy."""
    M, f, g = _problem((5, 7), np.float64, order, 21)
    assert not M.flags.c_contiguous
    a, out = np.full(5, 0.2), np.empty((5, 7))
    for call in (lambda: be.lse_rows(M, g, REG), lambda: be.lse_cols(M, f, REG),
                 lambda: be.plan(M, f, g, REG, out), lambda: be.scaling_pass(M, np.ones(7), a, np.empty(5)),
                 lambda: be.scale(M, a, np.ones(7), out), lambda: be.dense_pass(M, f, g, REG, 3)):
        with pytest.raises(ValueError, match="C-contiguous"):
            call()


@pytest.fixture
def model_gpu(monkeypatch):
    """``backend="gpu"`` resolved to a GPUBackend on NumPy with the kernel models."""
    from fastsinkhorn.backends import _gpu, get_backend

    monkeypatch.setattr(_gpu, "_import_cupy", lambda: np)
    monkeypatch.setattr(GPUBackend, "_kernel", lambda self, name, dtype=None: _model_kernel(name, dtype))
    get_backend.cache_clear()
    yield
    get_backend.cache_clear()


@pytest.mark.parametrize("method", ["sinkhorn", "sns"])
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_solve_through_the_wrapper_in_every_layout(model_gpu, method, order):
    """Any caller layout reaches the kernels C-contiguous and gives the reference's plan."""
    import fastsinkhorn as fs

    M, _, _ = _problem((40, 30), np.float64, order, 22)
    rng = np.random.default_rng(23)
    a, b = rng.random(40) + 0.1, rng.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum()
    got = fs.solve(M, a, b, reg=0.05, method=method, backend="gpu", tol=1e-10)
    want = fs.solve(np.ascontiguousarray(M), a, b, reg=0.05, method=method, backend="reference", tol=1e-10)
    assert got.backend == "gpu" and got.converged
    np.testing.assert_allclose(got.plan, want.plan, rtol=1e-7, atol=1e-14)
    assert got.plan.flags.f_contiguous == (order == "F")  # an F-ordered cost gives an F-ordered plan


# -- batches: the five dense members with a leading batch axis ---------------
BATCH_SHAPES = [(1, 1, 1), (3, 1, 300), (4, 300, 1), (3, 257, 130), (5, 7, 3)]


def _batch_problem(shape, dtype, seed):
    """Costs (B, n, m) and potentials with -inf in some problems only (a
    problem-mixing bug gives -inf or finite values in the wrong problem)."""
    B, n, m = shape
    problems = [_problem((n, m), dtype, "C", seed + p) for p in range(B)]
    M, f, g = (np.stack(col) for col in zip(*problems))
    if n > 2:
        f[1:, 1] = 0.05  # the -inf row 1 of _problem in problem 0 only
    if m > 2:
        g[: B // 2, -1] = 0.02  # the -inf last column in the later problems only
    return M, f, g


def _each(member, arrays, *scalars):
    """The reference's ``member`` on each problem of the batched ``arrays``, stacked."""
    return np.stack([getattr(ref, member)(*(x[p] for x in arrays), *scalars) for p in range(len(arrays[0]))])


def _out_layouts(shape, dtype):
    """Outputs of plan/scale in three layouts: C, each problem F-ordered, problems last."""
    B, n, m = shape
    return {"C": np.zeros(shape, dtype), "F-problems": np.zeros((B, m, n), dtype).transpose(0, 2, 1),
            "problems-last": np.zeros((n, m, B), dtype).transpose(2, 0, 1)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", BATCH_SHAPES)
def test_batched_members_match_the_reference_per_problem(be, shape, dtype):
    """Each member on a (B, n, m) batch: problem p of the result is the
    reference's unbatched call on problem p (problems all differ, so a
    wrong problem stride or a problem read twice gives wrong values)."""
    B, n, m = shape
    M, f, g = _batch_problem(shape, dtype, 30)
    np.testing.assert_allclose(be.lse_rows(M, g, REG), _each("lse_rows", (M, g), REG), rtol=1e-12)
    got = be.lse_cols(M, f, REG)
    assert got.shape == (B, m)
    np.testing.assert_allclose(got, _each("lse_cols", (M, f), REG), rtol=1e-12)
    K = np.stack([ref.plan(M[p], f[p], g[p], REG, np.empty((n, m), dtype)) for p in range(B)])
    for layout, out in _out_layouts(shape, dtype).items():
        assert be.plan(M, f, g, REG, out) is out
        np.testing.assert_allclose(out, K, rtol=1e-6, err_msg=layout)
    a = np.where(np.isfinite(f), np.linspace(0.1, 1, B * n).reshape(B, n), 0.0)  # zero rows have zero mass
    v = np.linspace(0.5, 2, B * m).reshape(B, m)
    u0 = np.empty((B, n))
    want = np.stack([ref.scaling_pass(K[p], v[p], a[p], u0[p]) for p in range(B)])
    for u in (np.full((B, n), np.nan), np.full((n, B), np.nan).T):  # written in place, or through a copy
        np.testing.assert_allclose(be.scaling_pass(K, v, a, u), want, rtol=1e-12)
        np.testing.assert_allclose(u, u0, rtol=1e-12)
    want = np.stack([ref.scale(K[p], a[p], v[p], np.empty((n, m), dtype)) for p in range(B)])
    for layout, out in _out_layouts(shape, dtype).items():
        assert be.scale(K, a, v, out) is out
        np.testing.assert_allclose(out, want, rtol=1e-6, err_msg=layout)
    assert be.scale(K, a, v, K) is K  # in place
    np.testing.assert_allclose(K, want, rtol=1e-6)


def test_batched_members_launch_once_whatever_the_batch(be, monkeypatch):
    """One launch per pass over all problems (two for lse_cols: partials and
    their combination; two for scaling_pass: K v, then K^T u)."""
    launches = []
    kernel = be._kernel
    monkeypatch.setattr(be, "_kernel", lambda name, dtype=None: launches.append(name) or kernel(name, dtype))
    counts = {}
    for B in (1, 6):
        M, f, g = _batch_problem((B, 9, 11), np.float64, 31)
        K, u = np.empty_like(M), np.empty((B, 9))
        for name, call in [("lse_rows", lambda: be.lse_rows(M, g, REG)), ("lse_cols", lambda: be.lse_cols(M, f, REG)),
                           ("plan", lambda: be.plan(M, f, g, REG, K)),
                           ("scaling_pass", lambda: be.scaling_pass(K, np.ones((B, 11)), np.isfinite(f) * 1.0, u)),
                           ("scale", lambda: be.scale(K, u, np.ones((B, 11)), K))]:
            launches.clear()
            call()
            counts[name, B] = list(launches)
    assert counts["lse_rows", 6] == ["lse_rows_kernel"]
    assert counts["lse_cols", 6] == ["lse_cols_partial_kernel", "lse_cols_finish_kernel"]
    assert counts["plan", 6] == ["plan_kernel"] and counts["scale", 6] == ["scale_kernel"]
    assert counts["scaling_pass", 6] == ["matvec_rows_kernel", "matvec_cols_kernel"]
    assert all(counts[name, 1] == counts[name, 6] for name, _ in counts)


def test_batch_wider_than_the_grid(be, monkeypatch):
    """More problems than gridDim.z may hold: the grid stops at the limit (the
    kernels loop over the problems of their z index), and the column kernels
    cut each problem into fewer row chunks (several here, so the partials of
    every chunk of every problem are combined)."""
    monkeypatch.setattr(_gpu, "_MAX_GRID_Y", 2)
    monkeypatch.setattr(_gpu, "_COL_BLOCKS", 20)
    assert be._col_grid(40, 3, 5) == ((1, 4, 2), 10)  # 20 blocks over 5 problems: 4 chunks of 10 rows
    assert be._col_grid(40, 3) == ((1, 20, 1), 2)  # one problem: 20 chunks, as before batches
    M, f, g = _batch_problem((5, 40, 3), np.float64, 32)
    np.testing.assert_allclose(be.lse_cols(M, f, REG), _each("lse_cols", (M, f), REG), rtol=1e-12)
    K = np.exp(-M)
    a, v, u, u0 = np.full((5, 40), 0.025), np.linspace(1, 2, 15).reshape(5, 3), np.empty((5, 40)), np.empty((5, 40))
    want = np.stack([ref.scaling_pass(K[p], v[p], a[p], u0[p]) for p in range(5)])
    np.testing.assert_allclose(be.scaling_pass(K, v, a, u), want, rtol=1e-12)
    np.testing.assert_allclose(u, u0, rtol=1e-12)


def test_batched_members_check_the_batch_axis(be):
    """A vector without the batch axis (or of another problem count) is an
    error, not an out-of-bounds read by the kernels."""
    M, f, g = _batch_problem((3, 4, 5), np.float64, 33)
    u = np.empty((3, 4))
    for call in (lambda: be.lse_rows(M, g[0], REG), lambda: be.lse_cols(M, f[:2], REG),
                 lambda: be.plan(M, f, g[0], REG, np.empty_like(M)),
                 lambda: be.scaling_pass(M, g, f[:, :3], u), lambda: be.scale(M, f.T, g, np.empty_like(M))):
        with pytest.raises(ValueError, match="shape"):
            call()
    with pytest.raises(ValueError, match="out must have shape"):
        be.plan(M, f, g, REG, np.empty((4, 5)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_solve_through_the_wrapper(model_gpu, rng, dtype):
    """``solve`` of a (B, n, m) batch on the GPU backend (kernels modelled)
    equals the CPU backend's batch solve, problem by problem."""
    import fastsinkhorn as fs

    B, n, m = 6, 30, 20
    M = rng.random((B, n, m)).astype(dtype)
    M[2] *= 10  # a harder problem: more iterations than the others
    a, b = rng.random((B, n)) + 0.1, rng.random((B, m)) + 0.1
    a[1, 3], b[4, -1] = 0.0, 0.0  # zero masses in single problems
    a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    got = fs.solve(M, a, b, reg=0.05, backend="gpu", tol=tol)
    want = fs.solve(M, a, b, reg=0.05, backend="cpu", tol=tol)
    assert (got.backend, want.backend) == ("gpu", "cpu") and got.batched
    assert got.converged.all() and got.plan.shape == (B, n, m) and got.plan.dtype == dtype
    # both are tol-accurate solutions of the same strictly convex problems
    assert (np.abs(got.plan.astype(np.float64) - want.plan).sum((1, 2)) <= 10 * tol).all()
    assert np.all(got.plan[1, 3] == 0.0) and np.all(got.plan[4, :, -1] == 0.0)
    np.testing.assert_allclose(got.value, want.value, rtol=1e-6 if dtype == np.float64 else 1e-5)
    errors = np.abs(got.plan.sum(2) - a).sum(1) + np.abs(got.plan.sum(1) - b).sum(1)
    assert (errors <= 1.01 * tol).all()


CLOUD_SHAPES = [(1, 1), (3, 5), (5, 3), (1, 300), (300, 1), (257, 130), (2, 3000)]
COSTS = [CostSpec("sqeuclidean", scale=0.7), CostSpec("euclidean", scale=1.3), CostSpec("minkowski", p=1.5, scale=2.0)]


def _cloud_problem(shape, seed, d=3, layout="C"):
    x, y, f, g = random_clouds(np.random.default_rng(seed), *shape, d)
    if layout == "F":  # not C-contiguous: the backend must make them so
        x, y = np.asfortranarray(x), np.asfortranarray(y)
    return x, y, f, g


@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c.kind)
@pytest.mark.parametrize("shape", CLOUD_SHAPES)
@pytest.mark.parametrize("row_warps", [1, 10**9], ids=["warp-per-row", "column-shaped"])
def test_point_cloud_wrapper_matches_reference(be, monkeypatch, shape, cost, row_warps):
    """``pc_`` members against the reference; ``row_warps`` forces each of the
    two log-sum-exp launch shapes (a warp per row, or the column-shaped kernel
    on the swapped clouds)."""
    monkeypatch.setattr(_gpu, "_CLOUD_ROW_WARPS", row_warps)
    n, m = shape
    x, y, f, g = _cloud_problem(shape, 21, layout="F" if n % 2 else "C")
    for start, stop in [(0, n), (n // 2, n), (0, 0)]:
        got = be.pc_cost_rows(x, y, cost, start, stop)
        assert got.shape == (stop - start, m) and got.dtype == np.float64
        np.testing.assert_allclose(got, ref.pc_cost_rows(x, y, cost, start, stop), rtol=1e-14)
    np.testing.assert_allclose(be.pc_lse_rows(x, y, cost, g, REG), ref.pc_lse_rows(x, y, cost, g, REG), rtol=1e-12)
    np.testing.assert_allclose(be.pc_lse_rows(y, x, cost, f, REG), ref.pc_lse_rows(y, x, cost, f, REG), rtol=1e-12)
    for k in (1, 4, m + 3):
        r, c, total, idx, val = be.pc_dense_pass(x, y, cost, f, g, REG, k)
        r0, c0, t0, idx0, val0 = ref.pc_dense_pass(x, y, cost, f, g, REG, k)
        np.testing.assert_allclose(r, r0, rtol=1e-12)
        np.testing.assert_allclose(c, c0, rtol=1e-12)
        assert float(total) == pytest.approx(t0, rel=1e-12)
        assert idx.dtype == np.int64 and idx.shape == idx0.shape
        P = ref.plan(ref.pc_cost_rows(x, y, cost, 0, n), f, g, REG, np.empty(shape))
        kept = val > 0
        np.testing.assert_allclose(val[kept], np.take_along_axis(P, idx, axis=1)[kept], rtol=1e-12)
        np.testing.assert_allclose(np.sort(val, axis=1), np.sort(val0, axis=1), rtol=1e-12)


def test_point_cloud_lse_picks_the_launch_shape(be, monkeypatch):
    """Enough rows: the warp-per-row kernel on (x, y); else the column-shaped
    kernel on (y, x) and the finishing kernel."""
    calls = []
    kernel = be._kernel
    monkeypatch.setattr(be, "_kernel", lambda name, dtype=None: calls.append(name) or kernel(name, dtype))
    x, y, f, g = _cloud_problem((40, 30), 22)
    cost = CostSpec("euclidean")
    monkeypatch.setattr(_gpu, "_CLOUD_ROW_WARPS", 40)
    be.pc_lse_rows(x, y, cost, g, REG)
    assert calls == ["pc_lse_rows_kernel<1>"]
    calls.clear()
    be.pc_lse_rows(y, x, cost, f, REG)  # 30 rows < 40
    assert calls == ["pc_lse_cols_partial_kernel<1>", "lse_cols_finish_kernel"]


def test_point_cloud_mismatched_dimensions(be):
    with pytest.raises(ValueError, match="same d"):
        be.pc_lse_rows(np.zeros((3, 2)), np.zeros((4, 3)), CostSpec(), np.zeros(4), REG)


@pytest.mark.parametrize("method, reg", [("sinkhorn", 0.05), ("sns", 0.01)])
def test_point_cloud_solve_through_the_wrapper(be, monkeypatch, method, reg):
    """``solve(PointCloud, backend="gpu")`` runs on the GPU backend's ``pc_``
    members (the kernels modelled) and agrees with the CPU backend."""
    import fastsinkhorn as fs
    from fastsinkhorn.core import validation as _validation

    real = _validation.get_backend
    monkeypatch.setattr(_validation, "get_backend", lambda name: be if name == "gpu" else real(name))
    rng = np.random.default_rng(23)
    x, y = rng.random((60, 2)), rng.random((45, 2))
    a, b = rng.uniform(0.5, 1, 60), rng.uniform(0.5, 1, 45)
    a, b = a / a.sum(), b / b.sum()
    cloud = fs.PointCloud(x, y, cost="euclidean")
    got = fs.solve(cloud, a, b, reg=reg, method=method, backend="gpu", tol=1e-9)
    want = fs.solve(cloud, a, b, reg=reg, method=method, backend="cpu", tol=1e-9)
    assert (got.backend, want.backend) == ("gpu", "cpu") and got.converged
    for p, q in zip(got.potentials, want.potentials):
        np.testing.assert_allclose(p - p.mean(), q - q.mean(), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cost_statistics_match_the_reference(be, monkeypatch, dtype):
    """The blocked CuPy reductions (run here on NumPy), blocks smaller than
    the matrix, with forbidden entries, a dead row and a dead column."""
    monkeypatch.setattr(_blocks, "GPU_STAT_BLOCK_ENTRIES", 64)
    rng = np.random.default_rng(31)
    M = (rng.random((37, 23)) + np.arange(37)[:, None]).astype(dtype)
    M[3, :], M[:, 5], M[7, 9] = np.inf, np.inf, np.inf
    u, v = be.reduction_offsets(M)
    want_u, want_v = ref.reduction_offsets(M)
    np.testing.assert_array_equal(u, want_u)
    np.testing.assert_allclose(v, want_v, rtol=1e-15)
    for cutoff in (0.3, 1e9):
        assert be.largest_reduced_cost(M, u, v, cutoff) == ref.largest_reduced_cost(M, want_u, want_v, cutoff)
