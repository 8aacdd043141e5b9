"""CuPy + CUDA C backend: the kernel contract of
:class:`~fastsinkhorn.backends._reference.ReferenceBackend` on the GPU.

All (n, m) work runs in the CUDA C kernels of ``kernels/sinkhorn.cu``
(templated on the storage type, float or double; arithmetic and reductions in
double), compiled once per device by NVRTC through :class:`cupy.RawModule`.
Nothing of size n x m ever leaves the device; O(n) vector work is CuPy.

Layouts
-------
Every kernel reads ``M`` / ``K`` as a C-contiguous (n, m) matrix, which
:func:`~fastsinkhorn._validation.prepare_problem` guarantees (an F-ordered
cost is solved as the transposed problem, without a copy); anything else is a
``ValueError``, never a silent copy.  ``plan`` and ``scale`` write ``out``
through its own strides, whatever its layout.

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
"""

import functools
from importlib import resources

import numpy as np

from ._reference import SELECT_FLOOR

_INSTALL_HINT = "backend='gpu' needs CuPy (pip install fastsinkhorn[gpu]) and a CUDA device"

#: CUDA sources in ``fastsinkhorn.kernels`` and the kernels each defines.
#: ``templated`` kernels are instantiated for every type in ``_CTYPES``;
#: tests/test_gpu_compile.py uses this table to instantiate them for nvcc.
KERNEL_SOURCES = {
    "sinkhorn.cu": {
        "templated": (
            "lse_rows_kernel",
            "lse_cols_partial_kernel",
            "plan_kernel",
            "scale_kernel",
            "matvec_rows_kernel",
            "matvec_cols_kernel",
            "marginals_kernel",
            "topk_rows_kernel",
        ),
        "plain": (
            "lse_cols_finish_kernel",
            "ell_matvec_kernel",
            "ell_rmatvec_kernel",
        ),
    },
}
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_NVRTC_OPTIONS = ("-std=c++17",)

_BLOCK = 256  # threads per block in every kernel (8 warps)
_ROWS_PER_BLOCK = _BLOCK // 32  # row kernels: one warp per row
_COL_BLOCKS = 2048  # column kernels: aim for this many blocks in all
_MAX_GRID_Y = 65535


def read_kernel_source(filename):
    """Text of ``kernels/<filename>`` with local ``#include "x.cuh"`` inlined.

    Inlining (instead of ``-I``) makes CuPy's on-disk compile cache key on the
    headers too, and works wherever the package data is installed.
    """
    root = resources.files("fastsinkhorn.kernels")
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


@functools.lru_cache(maxsize=None)
def _kernels(device_id):
    """``{name or name<type>: RawKernel}`` for one device (compiled once)."""
    import cupy

    table = {}
    with cupy.cuda.Device(device_id):
        for filename, names in KERNEL_SOURCES.items():
            exprs = [f"{k}<{t}>" for k in names["templated"] for t in _CTYPES.values()]
            exprs += list(names["plain"])
            module = cupy.RawModule(
                code=read_kernel_source(filename), options=_NVRTC_OPTIONS, name_expressions=exprs
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

    def _vec(self, x):
        """``x`` as a C-contiguous float64 device vector (no copy if it is one)."""
        return self.xp.ascontiguousarray(x, dtype=self.xp.float64)

    @staticmethod
    def _rows(M):
        """``M`` itself, checked C-contiguous: the kernels index ``M[i, j]`` as ``i * m + j``."""
        if not M.flags.c_contiguous:
            raise ValueError("backend='gpu' kernels need a C-contiguous matrix (prepare_problem "
                             "solves an F-ordered cost as its transpose)")
        return M

    @staticmethod
    def _elem_strides(out):
        return tuple(np.int64(st // out.itemsize) for st in out.strides)

    def _col_grid(self, R, C):
        """Grid and row-chunk length for the column-shaped kernels."""
        R = max(R, 1)
        gx = max(1, -(-C // _BLOCK))
        nchunks = max(1, min(R, -(-_COL_BLOCKS // gx)))
        chunk = -(-R // nchunks)
        return (gx, -(-R // chunk)), chunk

    def _run_rows(self, name, A, *args):
        R = A.shape[0]
        grid = (max(1, -(-R // _ROWS_PER_BLOCK)),)
        self._kernel(name, A.dtype)(grid, (_BLOCK,), (A, np.int64(R), np.int64(A.shape[1])) + args)

    def _lse_cols(self, A, w, reg):
        xp = self.xp
        R, C = A.shape
        grid, chunk = self._col_grid(R, C)
        pmax = xp.empty((grid[1], C), xp.float64)
        psum = xp.empty((grid[1], C), xp.float64)
        self._kernel("lse_cols_partial_kernel", A.dtype)(
            grid, (_BLOCK,), (A, np.int64(R), np.int64(C), w, np.float64(reg), np.int64(chunk), pmax, psum)
        )
        out = xp.empty(C, xp.float64)
        self._kernel("lse_cols_finish_kernel")(
            (grid[0],), (_BLOCK,), (pmax, psum, np.int64(grid[1]), np.int64(C), out)
        )
        return out

    def _matvec_cols(self, A, y):
        R, C = A.shape
        grid, chunk = self._col_grid(R, C)
        out = self.xp.zeros(C, self.xp.float64)
        self._kernel("matvec_cols_kernel", A.dtype)(
            grid, (_BLOCK,), (A, np.int64(R), np.int64(C), y, np.int64(chunk), out)
        )
        return out

    def _elementwise(self, name, M, out, row_vec, col_vec, *scalars):
        """Launch ``plan``/``scale``: row_vec indexes rows of M, col_vec columns."""
        if out.shape != M.shape or out.dtype != M.dtype:
            raise ValueError(f"out must have shape {M.shape} and dtype {M.dtype}")
        R, C = M.shape
        grid = (max(1, -(-C // _BLOCK)), max(1, min(R, _MAX_GRID_Y)))
        args = (self._rows(M), np.int64(R), np.int64(C), row_vec, col_vec) + scalars
        self._kernel(name, M.dtype)(grid, (_BLOCK,), args + (out,) + self._elem_strides(out))
        return out

    # -- log-domain half-steps ----------------------------------------------
    def lse_rows(self, M, g, reg):
        """``out_i = log sum_j exp((g_j - M_ij) / reg)``, float64 (n,)."""
        out = self.xp.empty(M.shape[0], self.xp.float64)
        self._run_rows("lse_rows_kernel", self._rows(M), self._vec(g), np.float64(reg), out)
        return out

    def lse_cols(self, M, f, reg):
        """``out_j = log sum_i exp((f_i - M_ij) / reg)``, float64 (m,)."""
        return self._lse_cols(self._rows(M), self._vec(f), reg)

    # -- absorbed scaling ---------------------------------------------------
    def plan(self, M, f, g, reg, out):
        """Write ``exp((f_i + g_j - M_ij) / reg)`` into ``out`` and return it."""
        return self._elementwise("plan_kernel", M, out, self._vec(f), self._vec(g), np.float64(reg))

    def scaling_pass(self, K, v, a, u):
        """Set ``u = a / (K v)`` (1 where ``a == 0``); return ``K^T u`` (float64).

        ``u`` must be a float64 device vector; it is written in place.
        """
        xp = self.xp
        K = self._rows(K)
        v, a = self._vec(v), self._vec(a)
        direct = u.flags.c_contiguous and u.dtype == xp.float64
        u_buf = u if direct else xp.empty(K.shape[0], xp.float64)
        self._run_rows("matvec_rows_kernel", K, v, a, u_buf)  # K v and the u update, fused
        colsum = self._matvec_cols(K, u_buf)
        if not direct:
            u[...] = u_buf
        return colsum

    def scale(self, K, u, v, out):
        """Write ``u_i * K_ij * v_j`` into ``out`` (may be ``K``) and return it."""
        return self._elementwise("scale_kernel", K, out, self._vec(u), self._vec(v))

    # -- Sinkhorn-Newton-Sparse ---------------------------------------------
    def dense_pass(self, M, f, g, reg, k):
        """Plan marginals, total mass and per-row top-k sparsification.

        Returns ``(r, c, total, idx, val)`` as the reference does, except that
        ``total`` is a 0-d float64 device array (``float(total)`` syncs);
        ``idx`` is int64 (n, k), ``val`` float64 (n, k), ``k = min(k, m)``.
        """
        xp = self.xp
        n, m = M.shape
        k = max(0, min(int(k), m))
        A = self._rows(M)
        f, g = self._vec(f), self._vec(g)
        r = xp.zeros(n, xp.float64)
        c = xp.zeros(m, xp.float64)
        grid, chunk = self._col_grid(n, m)
        self._kernel("marginals_kernel", A.dtype)(
            grid, (_BLOCK,), (A, np.int64(n), np.int64(m), f, g, np.float64(reg), np.int64(chunk), r, c)
        )
        idx = xp.empty((n, k), xp.int64)
        val = xp.empty((n, k), xp.float64)
        if k > 0 and n > 0:
            self._kernel("topk_rows_kernel", A.dtype)(
                (min(n, _MAX_GRID_Y),),
                (_BLOCK,),
                (A, np.int64(n), np.int64(m), f, g, np.float64(reg), np.int32(k), idx, val),
            )
            # entries negligible next to their row maximum count as zeros (contract)
            val[val <= SELECT_FLOOR * val.max(axis=1, keepdims=True)] = 0.0
        return r, c, r.sum(), idx, val

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
