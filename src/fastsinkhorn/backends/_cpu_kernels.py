"""Numba kernels of the CPU backend (see ``_reference.py`` for the contract).

Parallel shape: ``prange`` over ``nb`` blocks of rows (``nb`` = number of
threads, passed in so the kernels stay cacheable), each
with its own column accumulator, reduced after the loop; that keeps every
kernel a single streaming read of the matrix (row-major) even when it needs
column sums.

Underflow: entries below ``exp(cut)`` (``cut`` = -460, i.e. 1e-200, for
float64; -87 for float32) are clamped to ``exp(cut)`` inside the exp passes
(``_cpu.py``; NumPy's SIMD exp is fast on normal arguments only), and stored
kernels and plans (``plan``) flush them to exact zeros: products of smaller
entries with the scalings would be subnormal (far slower arithmetic), their
mass is far below any reachable tolerance, and a clamped entry at a huge or
infinite cost must carry no mass. The SNS dense pass keeps the clamped value
(1e-200 per entry in its sums).

Fastmath: only ``reassoc``/``contract`` style flags, and only in kernels whose
inputs are finite: log-domain kernels see ``-inf`` (zero masses), which
``nnan``/``ninf`` would turn into garbage.
"""

import types

import numpy as np
from numba import njit, prange

from ._reference import SELECT_FLOOR

# Vectorise reductions (reassociation) but keep inf/nan semantics.
_FAST = {"nsz", "arcp", "contract", "reassoc"}
# Log-sum-exp terms this far below the largest are skipped: they change the
# sum by < 1e-200 relative, and exp of underflowing arguments takes libm's
# slow path (several times the cost of a normal exp).
_LSE_CUT = -460.0


@njit(cache=True, inline="always")
def _blocks(n, nblocks):
    """Size of each of ``nblocks`` contiguous row blocks covering ``n`` rows."""
    return (n + nblocks - 1) // nblocks


@njit(cache=True, inline="always")
def row_lse(M, g, inv, i):
    """``log sum_j exp((g_j - M_ij) inv)`` of row ``i``, max-shifted (``-inf``
    for an empty row); serial, for the row loops of any kernel."""
    m = M.shape[1]
    top = -np.inf
    for j in range(m):
        x = (g[j] - M[i, j]) * inv
        if x > top:
            top = x
    if top == -np.inf:
        return -np.inf
    s = 0.0
    for j in range(m):
        x = (g[j] - M[i, j]) * inv - top
        if x > _LSE_CUT:  # smaller terms are below 1e-200 of the sum
            s += np.exp(x)
    return top + np.log(s)


@njit(cache=True, parallel=True)
def lse_rows(M, g, reg):
    """``out_i = log sum_j exp((g_j - M_ij) / reg)``, max-shifted per row."""
    n = M.shape[0]
    out = np.empty(n)
    inv = 1.0 / reg
    for i in prange(n):
        out[i] = row_lse(M, g, inv, i)
    return out


@njit(cache=True, parallel=True)
def lse_cols(M, f, reg, nb):
    """``out_j = log sum_i exp((f_i - M_ij) / reg)``: two row-major passes."""
    n, m = M.shape
    inv = 1.0 / reg
    nb = min(nb, n)
    size = _blocks(n, nb)
    tops = np.full((nb, m), -np.inf)
    for t in prange(nb):
        for i in range(t * size, min(n, (t + 1) * size)):
            if f[i] == -np.inf:
                continue
            for j in range(m):
                x = (f[i] - M[i, j]) * inv
                if x > tops[t, j]:
                    tops[t, j] = x
    top = np.empty(m)
    for j in range(m):
        top[j] = tops[:, j].max()
    sums = np.zeros((nb, m))
    for t in prange(nb):
        for i in range(t * size, min(n, (t + 1) * size)):
            if f[i] == -np.inf:
                continue
            for j in range(m):
                x = (f[i] - M[i, j]) * inv - top[j]
                if x > _LSE_CUT:  # also false for empty columns (top = -inf: x = nan)
                    sums[t, j] += np.exp(x)
    out = np.empty(m)
    for j in range(m):
        s = sums[:, j].sum()
        out[j] = top[j] + np.log(s) if s > 0 else -np.inf
    return out


@njit(cache=True, inline="always")
def _row_scaling(s, ai, tau):
    """Row half-step ``u_i = a_i / (K v)_i``; rows of zero mass keep ``u_i = 1``.

    Unbalanced (``tau < 1``): ``ai`` is the log-target ``h_i`` and
    ``u_i = exp(h_i - tau log (K v)_i)``; ``h_i = -inf`` keeps ``u_i = 1``.
    """
    if tau == 1.0:
        return ai / s if ai > 0 else 1.0
    return np.exp(ai - tau * np.log(s)) if ai > -np.inf else 1.0


@njit(cache=True, parallel=True, fastmath=_FAST)
def scaling_pass(K, v, a, u, nb, tau):
    """Fused iteration: ``u_i = a_i / (K v)_i`` and return ``K^T u``; one read of K.

    Rows go four at a time: the four dot products share the loads of ``v``
    and the column accumulator is read and written once per four rows, which
    keeps the pass bound by the read of ``K`` rather than by the accumulator.
    """
    n, m = K.shape
    nb = min(nb, n)
    size = _blocks(n, nb)
    partial = np.zeros((nb, m))
    for t in prange(nb):
        acc = partial[t]
        start, stop = t * size, min(n, (t + 1) * size)
        i = start
        while i + 4 <= stop:
            s0 = s1 = s2 = s3 = 0.0
            for j in range(m):
                vj = v[j]
                s0 += K[i, j] * vj
                s1 += K[i + 1, j] * vj
                s2 += K[i + 2, j] * vj
                s3 += K[i + 3, j] * vj
            u0, u1 = _row_scaling(s0, a[i], tau), _row_scaling(s1, a[i + 1], tau)
            u2, u3 = _row_scaling(s2, a[i + 2], tau), _row_scaling(s3, a[i + 3], tau)
            u[i], u[i + 1], u[i + 2], u[i + 3] = u0, u1, u2, u3
            for j in range(m):
                acc[j] += K[i, j] * u0 + K[i + 1, j] * u1 + K[i + 2, j] * u2 + K[i + 3, j] * u3
            i += 4
        while i < stop:
            s = 0.0
            for j in range(m):
                s += K[i, j] * v[j]
            ui = _row_scaling(s, a[i], tau)
            u[i] = ui
            for j in range(m):
                acc[j] += K[i, j] * ui
            i += 1
    colsum = partial[0].copy()
    for t in range(1, nb):
        colsum += partial[t]
    return colsum


@njit(cache=True, parallel=True, fastmath=_FAST)
def scale(K, u, v, out):
    """``out_ij = u_i K_ij v_j`` (``out`` may be ``K``)."""
    n, m = K.shape
    for i in prange(n):
        for j in range(m):
            out[i, j] = u[i] * K[i, j] * v[j]
    return out


@njit(cache=True)
def _kth_largest(x, k):
    """The ``k``-th largest entry of ``x`` (``1 <= k <= len(x)``, no NaN) by
    Hoare's quickselect (median-of-three pivot); reorders ``x``.

    The same value as ``np.partition(x, len(x) - k)[len(x) - k]``, but
    compiling Numba's ``np.partition`` (argument checks, ``np.unique``, a
    sort) took most of the first SNS solve on an empty cache, and this
    compiles in a fraction of that time (benchmarks/RESULTS.md, section 6).
    """
    target = k - 1  # position in descending order
    lo, hi = 0, x.shape[0] - 1
    while lo < hi:
        a, b, c = x[lo], x[(lo + hi) // 2], x[hi]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi
        while i <= j:  # x[lo:i] >= pivot >= x[j + 1:hi + 1]
            while x[i] > pivot:
                i += 1
            while x[j] < pivot:
                j -= 1
            if i <= j:
                x[i], x[j] = x[j], x[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:  # j < target < i: x[target] == pivot
            break
    return x[target]


@njit(cache=True, nogil=True)
def select_rows(P, k, r, acc, idx, val):
    """SNS dense pass on a block of rows of the plan ``P`` (float64, exponentiated).

    Writes the row sums into ``r``, adds the column sums to ``acc`` and the
    per-row top-k of ``P`` into ``idx``/``val``. Selection is (expected)
    linear time and usually trivial: entries above ``SELECT_FLOOR`` times the
    row maximum are the candidates; if there are at most ``k`` (the common
    case near the optimum) they are taken as they are (zero padding on
    distinct columns, so the scatter in ``ell_rmatvec`` has no store chain),
    else :func:`_kth_largest` finds the k-th largest and one sweep gathers the
    entries above it, filling ties up to exactly ``k``. ``nogil``: blocks run
    in parallel threads.
    """
    rows, m = P.shape
    cand = np.empty(m, dtype=np.int64)
    scratch = np.empty(m)
    for i in range(rows):
        s = 0.0
        top = 0.0
        for j in range(m):
            p = P[i, j]
            s += p
            acc[j] += p
            top = max(top, p)
        r[i] = s
        floor = top * SELECT_FLOOR
        count = 0
        for j in range(m):
            if P[i, j] > floor:
                cand[count] = j
                count += 1
        if count <= k:
            for q in range(count):
                idx[i, q] = cand[q]
                val[i, q] = P[i, cand[q]]
            for q in range(count, k):
                idx[i, q] = q
                val[i, q] = 0.0
            continue
        for q in range(count):
            scratch[q] = P[i, cand[q]]
        kth = _kth_largest(scratch[:count], k)
        q = 0
        for c_ in range(count):
            j = cand[c_]
            if P[i, j] > kth:
                idx[i, q] = j
                val[i, q] = P[i, j]
                q += 1
        for c_ in range(count):
            j = cand[c_]
            if q == k:
                break
            if P[i, j] == kth:
                idx[i, q] = j
                val[i, q] = P[i, j]
                q += 1


@njit(cache=True, fastmath=_FAST)
def ell_rmatvec(idx, val, y, m):
    """``S.T @ y``: a scatter, serial (O(nnz), small next to a dense pass)."""
    n, k = idx.shape
    out = np.zeros(m)
    for i in range(n):
        yi = y[i]
        for q in range(k):
            out[idx[i, q]] += val[i, q] * yi
    return out


@njit(cache=True, parallel=True, fastmath=_FAST)
def ell_matvec_parallel(idx, val, x):
    """``S @ x`` for row-wise sparse ``S``, rows in parallel (wide rows: broad
    plans at large n). Its serial twin ``ell_matvec`` serves small ``S``: called
    once per CG iteration, a thread launch (and, on a busy machine, waiting
    for a descheduled thread) would cost more than the product."""
    n, k = idx.shape
    out = np.empty(n)
    for i in prange(n):
        s = 0.0
        for q in range(k):
            s += val[i, q] * x[idx[i, q]]
        out[i] = s
    return out


@njit(cache=True, parallel=True, fastmath=_FAST)
def ell_rmatvec_parallel(idx, val, y, m, nb):
    """``S.T @ y``: each of ``nb`` row blocks scatters into its own length-m
    partial sum (no write conflicts), then the partials are added."""
    n, k = idx.shape
    nb = max(1, min(nb, n))
    size = _blocks(n, nb)
    partial = np.zeros((nb, m))
    for t in prange(nb):
        for i in range(t * size, min(n, (t + 1) * size)):
            yi = y[i]
            for q in range(k):
                partial[t, idx[i, q]] += val[i, q] * yi
    out = np.zeros(m)
    for t in range(nb):
        for j in range(m):
            out[j] += partial[t, j]
    return out


def serial_twin(kernel, name, **flags):
    """A serial compilation of the parallel ``kernel`` (``prange`` runs as ``range``).

    Made from a copy of its Python function named ``name``: Numba's on-disk
    cache keys an entry on the function's name, line and bytecode, not on its
    flags, so a twin of the same function would share the kernel's entries,
    and whichever of the two was compiled first on a machine would run for
    both (a parallel kernel loading serial code, or the reverse).
    """
    py = kernel.py_func
    twin = types.FunctionType(py.__code__, py.__globals__, name, py.__defaults__, py.__closure__)
    twin.__qualname__, twin.__doc__, twin.__module__ = name, py.__doc__, py.__module__
    return njit(cache=True, **flags)(twin)


# Cost statistics: the caller has ruled out NaN (``prepare_problem``), so
# ``nnan`` lets min/max reductions vectorise; ``+inf`` entries stay legal.
_FAST_NO_NAN = _FAST | {"nnan"}


@njit(cache=True, parallel=True, fastmath=_FAST_NO_NAN)
def column_minima_reduced(M, u, nb):
    """``v_j = min_i (M_ij - u_i)`` over rows with a finite ``u_i`` (the second
    half of ``ReferenceBackend.reduction_offsets``): one row-major pass, the
    minima in one accumulator per row block."""
    n, m = M.shape
    nb = min(nb, n)
    size = _blocks(n, nb)
    partial = np.full((nb, m), np.inf)
    for t in prange(nb):
        acc = partial[t]
        for i in range(t * size, min(n, (t + 1) * size)):
            ui = u[i]
            if ui == np.inf:
                continue
            for j in range(m):
                x = M[i, j] - ui
                acc[j] = x if x < acc[j] else acc[j]
    v = partial[0].copy()
    for t in range(1, nb):
        for j in range(m):
            v[j] = min(v[j], partial[t, j])
    return v


@njit(cache=True, parallel=True, fastmath=_FAST_NO_NAN)
def largest_reduced_cost(M, u, v_finite, cutoff, nb):
    """Largest ``M_ij - u_i - v_j <= cutoff`` over rows with a finite ``u_i``
    (0 if none). ``v_finite``: ``v`` with ``inf`` replaced by 0, since such a
    column's entries are all ``inf`` and exceed the cutoff anyway. A running
    maximum per column and row block (no reduction chain across a row: the
    inner loop vectorises)."""
    n, m = M.shape
    nb = min(nb, n)
    size = _blocks(n, nb)
    partial = np.zeros((nb, m))
    for t in prange(nb):
        acc = partial[t]
        for i in range(t * size, min(n, (t + 1) * size)):
            ui = u[i]
            if ui == np.inf:
                continue
            for j in range(m):
                r = M[i, j] - ui - v_finite[j]
                acc[j] = r if (r > acc[j]) & (r <= cutoff) else acc[j]
    return partial.max()


# Serial twins of the per-iteration kernels: below a few 1e5 entries the
# parallel launch costs more than the work.
scaling_pass_serial = serial_twin(scaling_pass, "scaling_pass_serial", fastmath=_FAST)
ell_matvec = serial_twin(ell_matvec_parallel, "ell_matvec", fastmath=_FAST)
scale_serial = serial_twin(scale, "scale_serial", fastmath=_FAST)


@njit(cache=True)
def row_spreads(M, u, v, rows, quantile):
    """``ReferenceBackend.row_spreads``: per sampled row, its positive finite
    reduced costs gathered and the one at the quantile's position selected
    (no sort), serially (a sample of the rows)."""
    spreads = np.full(rows.size, np.inf)
    counts = np.zeros(rows.size, dtype=np.int64)
    buffer = np.empty(M.shape[1])
    for k in range(rows.size):
        i = rows[k]
        count = 0
        for j in range(M.shape[1]):
            x = (np.float64(M[i, j]) - u[i]) - v[j]
            if x > 0.0 and x < np.inf:
                buffer[count] = x
                count += 1
        counts[k] = count
        if count:
            # the entry at ascending position p is the (count - p)-th largest
            spreads[k] = _kth_largest(buffer[:count], count - int(quantile * (count - 1)))
    return spreads, counts
