"""CuPy + CUDA C backend: the kernel contract of
:class:`~fastsinkhorn.backends._reference.ReferenceBackend` on the GPU.

All (n, m) work runs in the CUDA C kernels of ``kernels/sinkhorn.cu``
(templated on the storage type, float or double; arithmetic and reductions in
double), compiled once per device by NVRTC through :class:`cupy.RawModule`.
Nothing of size n x m ever leaves the device; O(n) vector work is CuPy.

Cost functors: one source for dense and point-cloud costs
---------------------------------------------------------
The kernels that read a cost (row and column log-sum-exp, the SNS marginals
and per-row top-k, cost rows) are ``__device__`` bodies templated on a cost
functor (``kernels/ot_math.cuh``): ``cost(r, c)`` gives an entry as a double,
``cost.row(r)`` a functor of ``c`` that row kernels hold while walking a row.

* ``fs::DenseCost<T>`` reads a stored C-contiguous (R, C) array; its row
  functor is the row pointer, so the dense kernels compile to the PTX of
  indexing the array directly (read-only ``ld.global.nc`` loads;
  tests/test_gpu_compile.py checks the load kind).
* ``fs::CloudCost<KIND>`` computes ``cost(x_r, y_c)`` from the coordinates
  (``x`` (R, d), ``y`` (C, d), float64), in the operation order of the
  reference; the kind is a template parameter (one instantiation per code of
  ``COST_KINDS``), so the squared-Euclidean loop carries no ``sqrt``/``pow``
  and no per-entry branch.  The sources take the codes from ``COST_KINDS``
  as macros (:func:`cost_code_options`), and a code without a formula in
  ``fs::point_cost`` fails to compile.

Each body has thin ``__global__`` entry points: ``name_kernel<T>`` with the
dense signature ``(A, B, R, C, ...)`` (``(A, R, C, ...)`` for the SNS
kernels, which take no batch; see Batches) and ``pc_name_kernel<KIND>``
with ``(x, y, d, p, scale, R, C, ...)``; the arguments after ``(R, C)`` are
the same, so the host code after the cost's leading arguments ("head") is
shared.  Entry points take plain pointers and scalars (no structs cross the
CuPy ABI).
Column-wise point-cloud reductions are the row ones on the swapped clouds
(every supported cost is symmetric).  The point-cloud log-sum-exp runs a
warp per row when there are at least ``_CLOUD_ROW_WARPS`` rows, else the
column-shaped kernel on the swapped clouds (plus the finishing kernel), so a
short side still spreads over the whole device.

Batches
-------
The five dense members of the scaling and log-domain iterations
(``lse_rows``, ``lse_cols``, ``plan``, ``scaling_pass``, ``scale``) also
take a batch: a C-contiguous ``(B, n, m)`` matrix and ``(B, n)`` /
``(B, m)`` vectors (``out`` of ``plan``/``scale`` in any layout).  Each
pass is still one launch (two for ``lse_cols`` and ``scaling_pass``, as
for one problem), whatever ``B``: the entry points take the number of
problems ``B`` before ``(R, C)``, the problem is ``blockIdx.z`` (grid-strided,
so more than 65535 problems loop) and problem ``p`` starts at ``p * R * C``
in ``A`` and ``p * R`` / ``p * C`` in each vector (``p * os_p`` in ``out``).
Within a problem the launch shape is that of a single problem: row kernels
a warp per row, elementwise kernels rows in y; the column kernels aim for
``_COL_BLOCKS`` blocks over the whole batch (fewer row chunks per problem),
and the column log-sum-exp writes its partials as an ``(nchunks, B * m)``
array, problem after problem, so one finishing launch combines all of them.
A single problem is a batch of one with the launch of before (z = 1); the
unbatched inner loops compile to the same PTX (``matvec_rows_kernel``
carries launch bounds to keep its 32 registers).  A batch of problems
smaller than a warp or a block leaves the same lanes idle as one such
problem does.

Layouts
-------
Every kernel reads ``M`` / ``K`` as a C-contiguous (n, m) matrix (or
(B, n, m) batch), which :func:`~fastsinkhorn.core.validation.prepare_problem`
guarantees (an F-ordered cost is solved as the transposed problem, without a
copy; a batch is made C-contiguous); anything else is a ``ValueError``,
never a silent copy.  ``plan`` and ``scale`` write ``out`` through its own
strides, whatever its layout.  Vectors are made C-contiguous float64 and
checked against the matrix's shape (the kernels index them unchecked).

Memory traffic per call
-----------------------
* ``lse_rows``, ``lse_cols``, ``plan``, ``scale``: one read of the matrix
  (plus one write for ``plan``/``scale``).
* ``scaling_pass``: two reads of ``K`` (``K v``, then ``K^T u``).  A single
  read would need either a row (``u_i`` depends on the whole row) or an
  m-long vector of column partials held on chip per thread block; at
  m = 32768 in double that is 256 KiB, more than an SM has.  Both products
  stream at full bandwidth, the second often partly from L2.
* ``dense_pass``: one read of ``M`` for ``r``, ``c`` and the total; the
  per-row selection then re-reads each row up to 8 more times (radix passes
  that stop early; mostly L2 hits, and with no ``exp``).
* ``pc_*``: reads of ``x`` and ``y`` only (O((n + m) d), cached); the cost is
  recomputed at each read of an entry (the top-k recomputes it up to 9 times
  per entry instead of re-reading a row).
"""

import functools
from importlib import resources
from pathlib import Path

import numpy as np

from . import _blocks
from ._contract import COST_KINDS
from ._reference import SELECT_FLOOR

_INSTALL_HINT = "backend='gpu' needs CuPy (pip install fastsinkhorn[gpu]) and a CUDA device"

#: CUDA sources in ``fastsinkhorn.kernels`` and the kernels each defines.
#: ``templated`` kernels are instantiated for every type in ``_CTYPES``,
#: ``cloud`` kernels for every point-cloud cost code in ``COST_KINDS``;
#: tests/test_gpu_compile.py uses this table to instantiate them for nvcc.
#: ``batched`` names the templated kernels whose entry points take a batch,
#: ``(A, B, R, C, ...)`` for a (B, R, C) array ``A`` (the others take
#: ``(A, R, C, ...)``); the compile test checks those signatures.
_BATCHED_KERNELS = (
    "lse_rows_kernel",
    "lse_cols_partial_kernel",
    "plan_kernel",
    "scale_kernel",
    "matvec_rows_kernel",
    "matvec_cols_kernel",
)
KERNEL_SOURCES = {
    "sinkhorn.cu": {
        "templated": _BATCHED_KERNELS + ("marginals_kernel", "topk_rows_kernel"),
        "cloud": (
            "pc_cost_rows_kernel",
            "pc_lse_rows_kernel",
            "pc_lse_cols_partial_kernel",
            "pc_marginals_kernel",
            "pc_topk_rows_kernel",
        ),
        "plain": (
            "lse_cols_finish_kernel",
            "ell_matvec_kernel",
            "ell_rmatvec_kernel",
        ),
        "batched": _BATCHED_KERNELS,
    },
}
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_NVRTC_OPTIONS = ("-std=c++17",)

_BLOCK = 256  # threads per block in every kernel (8 warps)
_ROWS_PER_BLOCK = _BLOCK // 32  # row kernels: one warp per row
_COL_BLOCKS = 2048  # column kernels: aim for this many blocks in all
_MAX_GRID_Y = 65535  # also the limit of gridDim.z (problems of a batch, grid-strided)
#: Point-cloud log-sum-exp: fewer rows than this (a warp each) cannot fill a
#: large GPU (an H100 holds 132 x 64 warps), so the column-shaped kernel runs.
_CLOUD_ROW_WARPS = 8192


def cost_code_options():
    """Compile options that define the point-cloud cost codes for the CUDA
    sources, ``-DFS_COST_<KIND>=<code>`` for each kind of ``COST_KINDS`` (the
    one table of them; ``kernels/ot_math.cuh`` does not compile without them)."""
    return tuple(f"-DFS_COST_{kind.upper()}={code}" for kind, code in COST_KINDS.items())


def kernel_dir():
    """The folder of the CUDA sources, ``kernels/``.

    In a source checkout (this package under ``<root>/src/``) it is
    ``<root>/kernels``, the folder that setup.cfg ships as
    ``fastsinkhorn.kernels``: a checkout run from its ``src`` (``PYTHONPATH``)
    then compiles its own sources, even where ``fastsinkhorn.kernels`` would
    import another checkout's (that of an editable install) or nothing.
    Anywhere else (an installed package), the package data.
    """
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent.parent / "kernels"
    if package.parent.name == "src" and (checkout / "__init__.py").is_file():
        return checkout
    return resources.files("fastsinkhorn.kernels")


def read_kernel_source(filename):
    """Text of ``kernels/<filename>`` with local ``#include "x.cuh"`` inlined.

    Inlining (instead of ``-I``) makes CuPy's on-disk compile cache key on the
    headers too, and works wherever the package data is installed.
    """
    root = kernel_dir()
    lines = []
    for line in root.joinpath(filename).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith('#include "') and stripped.endswith('"'):
            header = root.joinpath(stripped[len('#include "') : -1]).read_text()
            lines.append(header.replace("#pragma once", ""))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _import_cupy():
    """:mod:`cupy`, or ``ImportError`` / ``RuntimeError`` saying what is missing.

    The one probe for CuPy and a CUDA device: :func:`cuda_available`, the
    tests and the benchmarks all ask it.
    """
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(_INSTALL_HINT) from exc
    try:
        available = cupy.cuda.is_available()
    except Exception:  # pragma: no cover - broken driver install
        available = False
    if not available:
        raise RuntimeError(_INSTALL_HINT + "; CuPy found no usable CUDA device")
    return cupy


def cuda_available():
    """Whether ``backend="gpu"`` can run here: CuPy imports and sees a CUDA device."""
    try:
        _import_cupy()
    except (ImportError, RuntimeError):
        return False
    return True


@functools.cache
def _kernels(device_id):
    """``{name or name<type>: RawKernel}`` for one device (compiled once)."""
    import cupy

    table = {}
    with cupy.cuda.Device(device_id):
        for filename, names in KERNEL_SOURCES.items():
            exprs = [f"{k}<{t}>" for k in names["templated"] for t in _CTYPES.values()]
            exprs += [f"{k}<{code}>" for k in names.get("cloud", ()) for code in COST_KINDS.values()]
            exprs += list(names["plain"])
            module = cupy.RawModule(
                code=read_kernel_source(filename), options=_NVRTC_OPTIONS + cost_code_options(),
                name_expressions=exprs,
            )
            for expr in exprs:
                table[expr] = module.get_function(expr)
    return table


class GPUBackend:
    """CuPy/CUDA implementation of the fastsinkhorn kernel contract.

    Arrays are CuPy arrays on the current device.  ``xp`` is :mod:`cupy`
    (set on construction, so importing this module never imports CuPy).

    Raises
    ------
    ImportError
        If CuPy is not installed.
    RuntimeError
        If CuPy finds no CUDA device.
    """

    name = "gpu"
    #: Iterations between host-side convergence checks (each one syncs).
    check_every = 10
    point_clouds = True  # capability: the pc_ members (see _contract)
    small_batches = True  # capability: sinkhorn_small_batch (see _contract)

    def __init__(self):
        self.xp = _import_cupy()

    # -- helpers ------------------------------------------------------------
    def _kernel(self, name, dtype=None):
        table = _kernels(self.xp.cuda.Device().id)
        if dtype is None:
            return table[name]
        try:
            return table[f"{name}<{_CTYPES[np.dtype(dtype)]}>"]
        except KeyError:
            raise TypeError(f"backend='gpu' supports float32 and float64 matrices, got {dtype}") from None

    def _vec(self, x, shape=None):
        """``x`` as a C-contiguous float64 device array (no copy if it is one),
        checked to have ``shape`` if given: the kernels index it unchecked."""
        x = self.xp.ascontiguousarray(x, dtype=self.xp.float64)
        if shape is not None and x.shape != shape:
            raise ValueError(f"expected a vector (or batch of vectors) of shape {shape}, got {x.shape}")
        return x

    @staticmethod
    def _rows(M):
        """``M`` itself, checked C-contiguous: the kernels index ``M[i, j]`` as ``i * m + j``."""
        if not M.flags.c_contiguous:
            raise ValueError("backend='gpu' kernels need a C-contiguous matrix (prepare_problem "
                             "solves an F-ordered cost as its transpose)")
        return M

    @classmethod
    def _dense(cls, M):
        """``(head, B, R, C)`` of a C-contiguous (R, C) matrix or (B, R, C) batch:
        ``head = (M, B)`` leads the arguments of the batched dense entry
        points (a single matrix is a batch of one)."""
        *batch, R, C = cls._rows(M).shape
        B = batch[0] if batch else 1
        return (M, np.int64(B)), B, R, C

    @staticmethod
    def _elem_strides(out):
        """Element strides ``(os_p, os_r, os_c)`` of an (R, C) or (B, R, C) ``out`` (os_p = 0 for one)."""
        strides = tuple(np.int64(st // out.itemsize) for st in out.strides)
        return (np.int64(0),) * (3 - len(strides)) + strides

    def _col_grid(self, R, C, problems=1):
        """Grid and row-chunk length for the column-shaped kernels: columns in
        x, row chunks in y, problems in z (fewer chunks each when there are many)."""
        R = max(R, 1)
        gx = max(1, -(-C // _BLOCK))
        nchunks = max(1, min(R, -(-_COL_BLOCKS // (gx * problems))))
        chunk = -(-R // nchunks)
        return (gx, -(-R // chunk), min(problems, _MAX_GRID_Y)), chunk

    def _cloud_head(self, x, y, cost):
        """Leading arguments ``(x, y, d, p, scale)`` of the point-cloud entry
        points (the fields of the kernels' cost functor ``fs::CloudCost``)."""
        x = self.xp.ascontiguousarray(x, dtype=self.xp.float64)
        y = self.xp.ascontiguousarray(y, dtype=self.xp.float64)
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(f"x (n, d) and y (m, d) must have the same d, got {x.shape} and {y.shape}")
        return (x, y, np.int32(x.shape[1]), np.float64(cost.p), np.float64(cost.scale))

    def _cloud_kernel(self, name, cost):
        """The entry point ``name<code>`` compiled for the kind of ``cost``."""
        return self._kernel(f"{name}<{cost.code}>")

    @staticmethod
    def _launch_rows(kernel, head, R, C, *args, problems=1):
        """A row kernel (a warp per row) over an (R, C) cost given by ``head``,
        for each of ``problems`` problems (in z)."""
        grid = (max(1, -(-R // _ROWS_PER_BLOCK)), 1, min(problems, _MAX_GRID_Y))
        kernel(grid, (_BLOCK,), head + (np.int64(R), np.int64(C)) + args)

    def _launch_lse_cols(self, partial, head, R, C, w, reg, problems=1):
        """Log-sum-exp over the rows of an (R, C) cost, for each column (of each
        of ``problems`` problems: then (B * C,), problem after problem).

        The partials are an (nchunks, B * C) array, problem p in columns
        ``p * C:(p + 1) * C``, so one finishing launch combines them all."""
        xp = self.xp
        grid, chunk = self._col_grid(R, C, problems)
        cols = problems * C
        pmax = xp.empty((grid[1], cols), xp.float64)
        psum = xp.empty((grid[1], cols), xp.float64)
        args = (np.int64(R), np.int64(C), w, np.float64(reg), np.int64(chunk), pmax, psum)
        partial(grid, (_BLOCK,), head + args)
        out = xp.empty(cols, xp.float64)
        self._kernel("lse_cols_finish_kernel")(
            (max(1, -(-cols // _BLOCK)),), (_BLOCK,), (pmax, psum, np.int64(grid[1]), np.int64(cols), out)
        )
        return out

    def _elementwise(self, name, M, out, rows, cols, *scalars):
        """Launch ``plan``/``scale``: ``rows`` indexes rows of M, ``cols`` columns
        (each with the batch axis first for a batch)."""
        if out.shape != M.shape or out.dtype != M.dtype:
            raise ValueError(f"out must have shape {M.shape} and dtype {M.dtype}")
        head, B, R, C = self._dense(M)
        rows, cols = self._vec(rows, M.shape[:-1]), self._vec(cols, M.shape[:-2] + (C,))
        grid = (max(1, -(-C // _BLOCK)), max(1, min(R, _MAX_GRID_Y)), min(B, _MAX_GRID_Y))
        args = head + (np.int64(R), np.int64(C), rows, cols) + scalars
        self._kernel(name, M.dtype)(grid, (_BLOCK,), args + (out,) + self._elem_strides(out))
        return out

    # -- log-domain half-steps ----------------------------------------------
    # The five dense members below also take a batch, (B, n, m) matrices and
    # (B, n) / (B, m) vectors: the same launches, with the problems in z.
    def lse_rows(self, M, g, reg):
        """``out_i = log sum_j exp((g_j - M_ij) / reg)``, float64 (n,) (or (B, n))."""
        head, B, R, C = self._dense(M)
        g = self._vec(g, M.shape[:-2] + (C,))
        out = self.xp.empty(M.shape[:-1], self.xp.float64)
        kernel = self._kernel("lse_rows_kernel", M.dtype)
        self._launch_rows(kernel, head, R, C, g, np.float64(reg), out, problems=B)
        return out

    def lse_cols(self, M, f, reg):
        """``out_j = log sum_i exp((f_i - M_ij) / reg)``, float64 (m,) (or (B, m))."""
        head, B, R, C = self._dense(M)
        f = self._vec(f, M.shape[:-1])
        kernel = self._kernel("lse_cols_partial_kernel", M.dtype)
        return self._launch_lse_cols(kernel, head, R, C, f, reg, problems=B).reshape(M.shape[:-2] + (C,))

    # -- absorbed scaling ---------------------------------------------------
    def plan(self, M, f, g, reg, out):
        """Write ``exp((f_i + g_j - M_ij) / reg)`` into ``out`` and return it."""
        return self._elementwise("plan_kernel", M, out, f, g, np.float64(reg))

    def scaling_pass(self, K, v, a, u, tau=1.0):
        """Set ``u = a / (K v)`` (1 where ``a == 0``; ``tau < 1``: ``a`` holds
        log-targets ``h``, ``u = exp(h - tau log(K v))``); return ``K^T u`` (float64).

        ``u`` must be a float64 device array of the shape of ``a``; it is
        written in place.  Two launches, ``K v`` (fused with the ``u``
        update) then ``K^T u``, whatever the number of problems.
        """
        xp = self.xp
        head, B, R, C = self._dense(K)
        v, a = self._vec(v, K.shape[:-2] + (C,)), self._vec(a, K.shape[:-1])
        direct = u.flags.c_contiguous and u.dtype == xp.float64 and u.shape == a.shape
        u_buf = u if direct else xp.empty(a.shape, xp.float64)
        kernel = self._kernel("matvec_rows_kernel", K.dtype)
        self._launch_rows(kernel, head, R, C, v, a, np.float64(tau), u_buf, problems=B)  # K v and the u update, fused
        grid, chunk = self._col_grid(R, C, B)
        colsum = xp.zeros(v.shape, xp.float64)
        self._kernel("matvec_cols_kernel", K.dtype)(
            grid, (_BLOCK,), head + (np.int64(R), np.int64(C), u_buf, np.int64(chunk), colsum)
        )
        if not direct:
            u[...] = u_buf
        return colsum

    def scale(self, K, u, v, out):
        """Write ``u_i * K_ij * v_j`` into ``out`` (may be ``K``) and return it."""
        return self._elementwise("scale_kernel", K, out, u, v)

    # -- a whole batch of small problems in one launch (Numba-CUDA) ----------
    def sinkhorn_small_batch(self, M, a, b, reg, tol, max_iter, g0=None):
        """Log-domain Sinkhorn on every problem of a ``(B, n, m)`` batch, one
        thread block per problem, in one launch
        (:func:`._cuda_numba.sinkhorn_small_batch`; each problem stops at its
        own L1 ``tol``).

        Returns a :class:`._cuda_numba.SmallBatchResult`, or ``None`` where the
        kernels do not take ``M`` (not a batch, ``n`` or ``m`` above
        ``_cuda_numba.MAX_SIDE``; :func:`._cuda_numba.fits`) or Numba sees no
        device: the caller then runs its own loop. This backend owns that
        choice; the driver owns whether the options allow it.
        """
        from . import _cuda_numba  # imports numba.cuda only when called

        if not (_cuda_numba.fits(M) and _cuda_numba.available()):
            return None
        return _cuda_numba.sinkhorn_small_batch(M, a, b, reg, tol, max_iter, g0)

    # -- Sinkhorn-Newton-Sparse ---------------------------------------------
    def dense_pass(self, M, f, g, reg, k):
        """Plan marginals, total mass and per-row top-k sparsification.

        Returns ``(r, c, total, idx, val)`` as the reference does, except that
        ``total`` is a 0-d float64 device array (``float(total)`` syncs);
        ``idx`` is int64 (n, k), ``val`` float64 (n, k), ``k = min(k, m)``.
        """
        A = self._rows(M)
        kernels = (self._kernel(name, A.dtype) for name in ("marginals_kernel", "topk_rows_kernel"))
        return self._dense_pass(*kernels, (A,), *M.shape, f, g, reg, k)

    def _dense_pass(self, marginals, topk, head, n, m, f, g, reg, k):
        """``dense_pass`` of the (n, m) cost given by ``head`` (a matrix or point clouds)."""
        xp = self.xp
        k = max(0, min(int(k), m))
        f, g = self._vec(f), self._vec(g)
        r = xp.zeros(n, xp.float64)
        c = xp.zeros(m, xp.float64)
        nm = (np.int64(n), np.int64(m))
        grid, chunk = self._col_grid(n, m)
        marginals(grid, (_BLOCK,), head + nm + (f, g, np.float64(reg), np.int64(chunk), r, c))
        idx = xp.empty((n, k), xp.int64)
        val = xp.empty((n, k), xp.float64)
        if k > 0 and n > 0:
            args = (f, g, np.float64(reg), np.int32(k), idx, val)
            topk((min(n, _MAX_GRID_Y),), (_BLOCK,), head + nm + args)
            # entries negligible next to their row maximum count as zeros (contract)
            val[val <= SELECT_FLOOR * val.max(axis=1, keepdims=True)] = 0.0
        return r, c, r.sum(), idx, val

    # -- point clouds: the kernels above with the cost functor CloudCost ------
    def pc_cost_rows(self, x, y, cost, start, stop):
        """Rows ``start:stop`` of the cost ``C_ij = cost(x_i, y_j)``, float64."""
        x, y, *fields = self._cloud_head(x, y, cost)
        x = x[start:stop]
        R, C = x.shape[0], y.shape[0]
        out = self.xp.empty((R, C), self.xp.float64)
        if R and C:
            grid = (-(-C // _BLOCK), min(R, _MAX_GRID_Y))
            self._cloud_kernel("pc_cost_rows_kernel", cost)(
                grid, (_BLOCK,), (x, y, *fields, np.int64(R), np.int64(C), out)
            )
        return out

    def pc_lse_rows(self, x, y, cost, g, reg):
        """``out_i = log sum_j exp((g_j - C_ij) / reg)`` with ``C_ij = cost(x_i, y_j)``,
        float64 (n,); ``pc_lse_rows(y, x, cost, f, reg)`` is the column-wise one.

        A warp per row when there are at least ``_CLOUD_ROW_WARPS`` rows; else
        the column-shaped kernel on the swapped clouds (whose columns are the
        rows of this cost), which spreads each row over many blocks.
        """
        g = self._vec(g)
        n, m = x.shape[0], y.shape[0]
        if n >= _CLOUD_ROW_WARPS:
            out = self.xp.empty(n, self.xp.float64)
            kernel = self._cloud_kernel("pc_lse_rows_kernel", cost)
            self._launch_rows(kernel, self._cloud_head(x, y, cost), n, m, g, np.float64(reg), out)
            return out
        kernel = self._cloud_kernel("pc_lse_cols_partial_kernel", cost)
        return self._launch_lse_cols(kernel, self._cloud_head(y, x, cost), m, n, g, reg)

    def pc_dense_pass(self, x, y, cost, f, g, reg, k):
        """:meth:`dense_pass` of the cost ``C_ij = cost(x_i, y_j)`` (nothing n x m stored)."""
        kernels = (self._cloud_kernel(name, cost) for name in ("pc_marginals_kernel", "pc_topk_rows_kernel"))
        head = self._cloud_head(x, y, cost)
        return self._dense_pass(*kernels, head, x.shape[0], y.shape[0], f, g, reg, k)

    def _reduced_blocks(self, M, u, v=None):
        """``(rows, R)`` for blocks of about ``_blocks.GPU_STAT_BLOCK_ENTRIES`` entries:
        ``R = M - u`` (``- v`` too if given) in float64, ``inf`` at rows or
        columns without a finite entry."""
        xp = self.xp
        M = self._rows(M)
        n, m = M.shape
        step = max(1, _blocks.GPU_STAT_BLOCK_ENTRIES // m)
        live_u = u < xp.inf
        shift_u = xp.where(live_u, u, 0.0)
        shift_v = 0.0 if v is None else xp.where(v < xp.inf, v, 0.0)[None, :]
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            R = M[rows].astype(xp.float64) - shift_u[rows, None] - shift_v
            dead = ~live_u[rows, None] if v is None else ~live_u[rows, None] | (v >= xp.inf)[None, :]
            yield rows, xp.where(dead, xp.inf, R)

    def reduction_offsets(self, M):
        """See ``ReferenceBackend.reduction_offsets``."""
        xp = self.xp
        u = self._rows(M).min(axis=1).astype(xp.float64)
        v = xp.full(M.shape[1], xp.inf)
        for _, R in self._reduced_blocks(M, u):
            v = xp.minimum(v, R.min(axis=0))
        return u, v

    def largest_reduced_cost(self, M, u, v, cutoff):
        """See ``ReferenceBackend.largest_reduced_cost``."""
        xp, top = self.xp, 0.0
        for _, R in self._reduced_blocks(M, self._vec(u), self._vec(v)):
            top = max(top, float(xp.where(R <= cutoff, R, 0.0).max()))
        return top

    def row_spreads(self, M, u, v, rows, quantile):
        """See ``ReferenceBackend.row_spreads`` (a sample of rows: no kernel of its own)."""
        from ._reference import _row_spreads

        return _row_spreads(self.xp, M, self._vec(u), self._vec(v), self.xp.asarray(rows), quantile)

    # -- row-wise sparse products -------------------------------------------
    def ell_matvec(self, idx, val, x):
        """``S @ x`` for the row-wise sparse ``S`` given as (idx, val)."""
        xp = self.xp
        idx = xp.ascontiguousarray(idx, dtype=xp.int64)
        val, x = self._vec(val), self._vec(x)
        n, k = idx.shape
        out = xp.empty(n, xp.float64)
        if n:
            self._kernel("ell_matvec_kernel")(
                (-(-n // _BLOCK),), (_BLOCK,), (idx, val, np.int64(n), np.int32(k), x, out)
            )
        return out

    def ell_rmatvec(self, idx, val, y, m):
        """``S.T @ y`` (length ``m``) for the sparse ``S`` given as (idx, val)."""
        xp = self.xp
        idx = xp.ascontiguousarray(idx, dtype=xp.int64)
        val, y = self._vec(val), self._vec(y)
        n, k = idx.shape
        out = xp.zeros(int(m), xp.float64)
        if n * k:
            self._kernel("ell_rmatvec_kernel")(
                (-(-(n * k) // _BLOCK),), (_BLOCK,), (idx, val, np.int64(n), np.int32(k), y, out)
            )
        return out
