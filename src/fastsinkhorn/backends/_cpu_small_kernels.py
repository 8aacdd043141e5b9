"""The whole SNS solve of a small dense problem in one Numba function.

Below a few hundred points a Newton step is microseconds of arithmetic and
the Python driver's bookkeeping (a few dozen calls per step) costs more than
the step. :func:`small_sns` runs the same algorithm as the driver
(:mod:`fastsinkhorn.algorithms.sns`) without leaving compiled code: for each
``reg`` of the annealing schedule, Sinkhorn in the scaling domain (the
kernel rebuilt from the potentials whenever a scaling leaves ``[1e-100,
1e100]``, so any ``reg`` is safe) until the L1 marginal error is below the
switch tolerance, then damped Newton steps on the dual with the full
Hessian: the Schur complement ``diag(r) - P diag(1/c) P^T`` of the smaller
side (formed and factorised by Cholesky in plain loops: ``n <= m`` is the
caller's job), a
backtracking Armijo line search on the dual objective, and Sinkhorn again
for the rest of the budget if Newton cannot make progress.

Every quantity is float64; ``a``, ``b`` are positive (the caller removes
zero masses) and ``M`` finite. Returns the potentials (cost units, ``P =
exp((f + g - M) / reg)``), the iterations of each phase and a status code
(:data:`CONVERGED`, :data:`MAX_ITER`, :data:`STALLED`).
"""

import numpy as np
from numba import njit

from ._cpu_kernels import row_lse

CONVERGED, MAX_ITER, STALLED = 0, 1, 2
#: A scaling outside ``[1 / ABSORB, ABSORB]`` is absorbed into the potentials.
ABSORB = 1e100
#: Plan entries below ``exp(CUT)`` (1e-200) are 0: libm's exp takes a slow
#: path on underflowing arguments, and such entries carry no reachable mass.
CUT = -460.0
#: Inputs are finite (the caller's contract): reassociation may vectorise.
#: ``error_model="numpy"`` everywhere: a division by zero is inf (caught by
#: the finiteness checks), not Python's ZeroDivisionError.
_FAST = {"nsz", "arcp", "contract", "reassoc"}


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _gibbs(M, f, g, reg, out):
    """``out = exp((f_i + g_j - M_ij) / reg)`` (0 below ``exp(CUT)``); returns its sum."""
    n, m = M.shape
    inv = 1.0 / reg
    total = 0.0
    for i in range(n):
        for j in range(m):
            x = (f[i] + g[j] - M[i, j]) * inv
            e = np.exp(max(x, CUT))
            e = e if x > CUT else 0.0
            out[i, j] = e
            total += e
    return total


#: Entries below this are 0 in a rescaled plan, as below ``exp(CUT)`` in :func:`_gibbs`.
TINY = float(np.exp(CUT))
#: A trial plan is the current one rescaled by ``exp(t df_i / reg) exp(t dg_j
#: / reg)`` (``n + m`` exps instead of ``n m``) while the potentials have
#: moved less than this many ``reg`` since the last exact :func:`_gibbs`:
#: an entry cut there (below ``exp(CUT)``) stays below ``exp(CUT + DRIFT)``
#: (1e-113), and the products' rounding (a few ulps a step) stays far below
#: any tolerance; beyond it, or to confirm convergence, the plan is recomputed.
DRIFT = 200.0


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _rescaled(P, eu, ev, out):
    """``out_ij = eu_i P_ij ev_j`` (0 below ``exp(CUT)``); returns its sum."""
    n, m = P.shape
    total = 0.0
    for i in range(n):
        ei = eu[i]
        for j in range(m):
            e = ei * P[i, j] * ev[j]
            e = e if e > TINY else 0.0
            out[i, j] = e
            total += e
    return total


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _sums(P, r, c):
    n, m = P.shape
    c[:] = 0.0
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += P[i, j]
            c[j] += P[i, j]
        r[i] = s


@njit(cache=True, error_model="numpy")
def _l1(x, y):
    s = 0.0
    for i in range(x.size):
        s += abs(x[i] - y[i])
    return s


@njit(cache=True, error_model="numpy")
def _log_row_update(M, a, f, g, reg):
    """Log-domain ``f`` update (rows exact), stable at any ``reg``."""
    inv = 1.0 / reg
    for i in range(M.shape[0]):
        f[i] = reg * (np.log(a[i]) - row_lse(M, g, inv, i))


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _sinkhorn(M, a, b, reg, f, g, K, tol, iters):
    """Up to ``iters`` Sinkhorn iterations from ``(f, g)``, in place, stopping
    once the L1 error of the rows (columns exact after each iteration) is
    ``<= tol``. Returns ``(iterations, error)``."""
    n, m = M.shape
    u, v = np.ones(n), np.ones(m)
    Kv, Ktu = np.empty(n), np.empty(m)
    _log_row_update(M, a, f, g, reg)  # a finite kernel row for every row
    _gibbs(M, f, g, reg, K)
    error = np.inf
    it = 0
    fresh = True  # K v is not yet known for the current v
    while it < iters:
        it += 1
        for i in range(n):  # u = a / K v
            if fresh:
                s = 0.0
                for j in range(m):
                    s += K[i, j] * v[j]
                Kv[i] = s
            u[i] = a[i] / Kv[i]
        fresh = False
        for j in range(m):
            Ktu[j] = 0.0
        for i in range(n):
            for j in range(m):
                Ktu[j] += K[i, j] * u[i]
        for j in range(m):  # v = b / K^T u
            v[j] = b[j] / Ktu[j]
        error = 0.0  # rows of diag(u) K diag(v)
        big = False
        for i in range(n):
            s = 0.0
            for j in range(m):
                s += K[i, j] * v[j]
            Kv[i] = s
            error += abs(u[i] * s - a[i])
            if not (1.0 / ABSORB < u[i] < ABSORB):
                big = True
        for j in range(m):
            if not (1.0 / ABSORB < v[j] < ABSORB):
                big = True
        finite = np.isfinite(error)
        if big or not finite or error <= tol or it == iters:
            if finite:
                for i in range(n):
                    f[i] += reg * np.log(u[i])
                for j in range(m):
                    g[j] += reg * np.log(v[j])
            if not finite or big:  # rebuild the kernel at the absorbed (or last finite) point
                _log_row_update(M, a, f, g, reg)
                _gibbs(M, f, g, reg, K)
                u[:] = 1.0
                v[:] = 1.0
                fresh = True
                if not finite:
                    error = np.inf
                    continue
            if error <= tol:
                break
    return it, error


@njit(cache=True, error_model="numpy")
def _dual(a, b, f, g, reg, mass):
    """The dual objective ``<a, f> + <b, g> - reg sum P`` (``mass = sum P``)."""
    return np.dot(a, f) + np.dot(b, g) - reg * mass


#: Plan entries below this fraction of their column's mass are left out of the
#: Schur complement: their terms are below 1e-13 of the diagonal they join
#: (an inexact Newton step no line search notices), and near the optimum at
#: small ``reg`` they are nearly all of the plan.
DROP = 1e-13


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _schur(P, c):
    """``P diag(1/c) P^T`` (lower triangle, ``n x n``) over the entries of each
    column above ``DROP`` of its mass: ``sum_j`` of the outer products of a
    column's kept entries, which costs ``sum_j nnz_j^2``, not ``n^2 m``.
    The columns are scanned in a transposed copy: a strided scan of ``P``'s
    columns costs more than the whole complement once the plan is sparse."""
    n, m = P.shape
    PT = np.ascontiguousarray(P.T)
    S = np.zeros((n, n))
    idx = np.empty(n, dtype=np.int64)
    val = np.empty(n)
    for j in range(m):
        floor = DROP * c[j]
        inv = 1.0 / np.sqrt(c[j])
        count = 0
        column = PT[j]
        for i in range(n):
            if column[i] > floor:
                idx[count] = i
                val[count] = column[i] * inv
                count += 1
        for p in range(count):
            row, vp = idx[p], val[p]
            for q in range(p + 1):  # idx ascending: S[row, idx[q]] is in the lower triangle
                S[row, idx[q]] += vp * val[q]
    return S


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _cholesky_solve(S, rhs, shift):
    """Solve ``(S + shift I) x = rhs`` for the lower triangle ``S`` (``S`` left
    unchanged) by Cholesky; ``(x, ok)``, ``ok`` False on a non-positive pivot."""
    n = rhs.size
    L = np.zeros((n, n))
    for j in range(n):
        d = S[j, j] + shift
        for k in range(j):
            d -= L[j, k] * L[j, k]
        if not d > 0.0:
            return np.zeros(n), False
        d = np.sqrt(d)
        L[j, j] = d
        for i in range(j + 1, n):
            s = S[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / d
    y = np.empty(n)
    for i in range(n):
        s = rhs[i]
        for k in range(i):
            s -= L[i, k] * y[k]
        y[i] = s / L[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, n):
            s -= L[k, i] * x[k]
        x[i] = s / L[i, i]
    return x, True


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _newton_direction(P, r, c, a, b, reg, mu):
    """``(df, dg)``: ``reg`` times the solution of the shifted Newton system
    ``[[diag r + mu, P], [P^T, diag c + mu]] (x_f, x_g) = (a - r, b - c)``,
    through the Schur complement of the column block (``n <= m``), without
    its part along the null direction ``(1, -1)`` of the unshifted system
    (it changes neither the plan nor the dual). ``mu`` grows tenfold while
    the complement is not numerically positive definite."""
    n, m = P.shape
    S = _schur(P, c + mu)
    rhs = np.empty(n)
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += P[i, j] * ((b[j] - c[j]) / (c[j] + mu))
        rhs[i] = a[i] - r[i] - s
    for i in range(n):
        for k in range(i):
            S[i, k] = -S[i, k]
        S[i, i] = r[i] + mu - S[i, i]
    x = np.zeros(n)
    extra = 0.0
    for _ in range(8):
        x, ok = _cholesky_solve(S, rhs, extra)
        if ok and np.all(np.isfinite(x)):
            break
        extra = 10.0 * (mu + extra) + 1e-14  # lost definiteness to rounding
    dg = np.empty(m)
    for j in range(m):
        dg[j] = b[j] - c[j]
    for i in range(n):
        for j in range(m):
            dg[j] -= P[i, j] * x[i]
    for j in range(m):
        dg[j] /= c[j] + mu + extra
    df = reg * x
    dg = reg * dg
    t = (df.sum() - dg.sum()) / (n + m)
    return df - t, dg + t


@njit(cache=True, error_model="numpy")
def _newton(M, a, b, reg, f, g, P, tol, iters, armijo, max_backtracks, shift, max_step, fallback_iter):
    """Damped Newton steps from ``(f, g)`` until the L1 error of both
    marginals is ``<= tol``, as the driver takes them: the shift ``shift *
    err^2 * mean(diag H)`` (damping far from the optimum, vanishing near
    it), a trust region (no potential moves more than ``max_step * reg`` in
    one trial), a trial accepted on Armijo's condition for the dual or a
    smaller error (trial plans rescaled from the current one, see
    :data:`DRIFT`); a failed search takes ``fallback_iter`` Sinkhorn steps,
    and more than three failures without a better iterate stall. ``(f, g)``
    become the best iterate seen. Returns ``(newton_steps, sinkhorn_steps,
    error, stalled)``."""
    n, m = M.shape
    r, c = np.empty(n), np.empty(m)
    r_new, c_new = np.empty(n), np.empty(m)
    trial = np.empty((n, m))
    f_new, g_new = np.empty(n), np.empty(m)
    eu, ev = np.empty(n), np.empty(m)
    best_f, best_g = f.copy(), g.copy()
    drift = 0.0  # how far (f, g) moved since P was computed exactly, in cost units
    move = 0.0
    exact = True
    mass = _gibbs(M, f, g, reg, P)
    _sums(P, r, c)
    error = _l1(r, a) + _l1(c, b)
    best = error
    steps = sinkhorn = failures = 0
    while error > tol and steps + sinkhorn < iters:
        steps += 1
        mean_diag = (r.sum() + c.sum()) / (n + m)
        df, dg = _newton_direction(P, r, c, a, b, reg, shift * error * error * mean_diag + 1e-14)
        slope = np.dot(a - r, df) + np.dot(b - c, dg)
        largest = max(np.abs(df).max(), np.abs(dg).max())
        t = min(1.0, max_step * reg / largest) if largest > 0 else 1.0
        accepted = False
        if slope > 0.0 and np.isfinite(largest):
            current = _dual(a, b, f, g, reg, mass)
            for _ in range(max_backtracks):
                for i in range(n):
                    f_new[i] = f[i] + t * df[i]
                for j in range(m):
                    g_new[j] = g[j] + t * dg[j]
                move = t * (np.abs(df).max() + np.abs(dg).max())  # bounds the change of f_i + g_j
                if drift + move < DRIFT * reg:  # rescale the current plan (see DRIFT)
                    for i in range(n):
                        eu[i] = np.exp(t * df[i] / reg)
                    for j in range(m):
                        ev[j] = np.exp(t * dg[j] / reg)
                    trial_mass = _rescaled(P, eu, ev, trial)
                    exact = False
                else:
                    trial_mass = _gibbs(M, f_new, g_new, reg, trial)
                    exact = True
                if np.isfinite(trial_mass):
                    _sums(trial, r_new, c_new)
                    trial_error = _l1(r_new, a) + _l1(c_new, b)
                    if _dual(a, b, f_new, g_new, reg, trial_mass) >= current + armijo * t * slope \
                            or trial_error < error:
                        accepted = True
                        break
                t *= 0.5
        if accepted:
            f[:] = f_new
            g[:] = g_new
            P[:, :] = trial
            r[:] = r_new
            c[:] = c_new
            mass = trial_mass
            error = trial_error
            drift = 0.0 if exact else drift + move
            if error <= tol and not exact:  # confirm on the plan of (f, g) itself
                mass = _gibbs(M, f, g, reg, P)
                _sums(P, r, c)
                error = _l1(r, a) + _l1(c, b)
                drift = 0.0
        else:  # the solve or the search failed: a few Sinkhorn steps, then Newton again
            failures += 1
            it, _ = _sinkhorn(M, a, b, reg, f, g, trial, 0.0, min(fallback_iter, max(1, iters - steps - sinkhorn)))
            sinkhorn += it
            mass = _gibbs(M, f, g, reg, P)
            _sums(P, r, c)
            error = _l1(r, a) + _l1(c, b)
            drift = 0.0
            if failures > 3 and error >= best:
                break
        if error < best:
            best = error
            best_f[:] = f
            best_g[:] = g
    stalled = error > tol and steps + sinkhorn < iters
    if best < error:
        f[:] = best_f
        g[:] = best_g
        error = best
    return steps, sinkhorn, error, stalled


@njit(cache=True, error_model="numpy")
def small_sns(M, a, b, regs, tol, stage_tol, switch_tol, warmup_iter, max_iter, f, g, armijo, max_backtracks,
              shift, max_step, fallback_iter):
    """SNS on a small dense problem, entirely compiled (see the module).

    Parameters
    ----------
    M : float64 (n, m), C-contiguous, finite, ``n <= m``
    a, b : float64 (n,), (m,), positive, equal sums
    regs : float64 array
        The annealing schedule, ending at the target ``reg``.
    tol : float
        L1 marginal error (both sides) at which the final stage stops.
    stage_tol : float
        The error at which an intermediate stage hands over.
    switch_tol : float
        Sinkhorn hands over to Newton below this error.
    warmup_iter : int
        Most Sinkhorn iterations of a warm-up.
    max_iter : int
        Most iterations, Sinkhorn and Newton together.
    f, g : float64 (n,), (m,)
        Starting potentials, updated in place.
    armijo, max_backtracks, shift, max_step, fallback_iter
        The Newton steps' options, as SNS's (:func:`_newton`).

    Returns
    -------
    tuple
        ``(n_sinkhorn, n_newton, status)``.
    """
    n, m = M.shape
    K = np.empty((n, m))
    n_sinkhorn = n_newton = 0
    status = MAX_ITER
    for s in range(regs.size):
        reg = regs[s]
        final = s == regs.size - 1
        target = tol if final else max(tol, stage_tol)
        used = n_sinkhorn + n_newton
        it, error = _sinkhorn(M, a, b, reg, f, g, K, max(target, switch_tol), min(warmup_iter, max_iter - used))
        n_sinkhorn += it
        if error > target and n_sinkhorn + n_newton < max_iter:
            steps, fallback, error, stalled = _newton(M, a, b, reg, f, g, K, target, max_iter - n_sinkhorn - n_newton,
                                                      armijo, max_backtracks, shift, max_step, fallback_iter)
            n_newton += steps
            n_sinkhorn += fallback
            if stalled and n_sinkhorn + n_newton < max_iter:  # Sinkhorn gets the rest of the budget
                it, error = _sinkhorn(M, a, b, reg, f, g, K, target, max_iter - n_sinkhorn - n_newton)
                n_sinkhorn += it
                if error > target:
                    status = STALLED
        if error <= target:
            status = CONVERGED
        elif n_sinkhorn + n_newton >= max_iter:
            status = MAX_ITER
            break
    return n_sinkhorn, n_newton, status
