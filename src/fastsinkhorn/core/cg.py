"""Preconditioned conjugate gradient written only against ``matvec``.

It runs unchanged on NumPy and CuPy vectors (``xp``), so both backends share
it; each iteration costs one ``matvec`` plus O(n) vector work.
"""


def pcg(matvec, rhs, diag, rtol, max_iter, xp, refresh_every=50):
    """Solve ``A x = rhs`` for symmetric positive (semi)definite ``A``.

    Parameters
    ----------
    matvec : callable
        ``x -> A @ x``.
    rhs : array
        Right-hand side (in the range of ``A`` when ``A`` is singular).
    diag : array or callable
        Positive diagonal of the Jacobi preconditioner, or the
        preconditioner itself, ``r -> approximately A^{-1} r`` (a fixed
        symmetric positive definite linear map).
    rtol : float
        Stop when ``||rhs - A x|| <= rtol * ||rhs||``.
    max_iter : int
        Iteration cap.
    xp : module
        ``numpy`` or ``cupy``.
    refresh_every : int
        Recompute the true residual every this many iterations, so rounding
        drift of the recursive residual cannot fake convergence.

    Returns
    -------
    x : array
    n_iter : int
    converged : bool
    """
    x = xp.zeros_like(rhs)
    r = rhs.copy()
    target = rtol * float(xp.linalg.norm(rhs))
    if target == 0.0:
        return x, 0, True
    precondition = diag if callable(diag) else (lambda residual: residual / diag)
    z = precondition(r)
    p = z.copy()
    rz = float(r @ z)
    for it in range(1, max_iter + 1):
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if not pAp > 0:  # direction of (numerically) zero curvature: stop here
            return x, it, False
        alpha = rz / pAp
        x += alpha * p
        if it % refresh_every == 0:
            r = rhs - matvec(x)
        else:
            r -= alpha * Ap
        if float(xp.linalg.norm(r)) <= target:
            return x, it, True
        z = precondition(r)
        rz_next = float(r @ z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    return x, max_iter, False
