"""Seeded test problems: the benchmark suite of ``BENCHMARKS.md``.

Every cost is scaled so that ``max(M) == 1`` and every marginal is a
probability vector, so a given ``reg`` means the same thing across families.

Examples
--------
>>> from fastsinkhorn.problems import make_problem
>>> p = make_problem("cloud", 200, seed=0)
>>> p.M.shape, float(p.M.max()), float(p.a.sum())
((200, 200), 1.0, 1.0)
"""

from dataclasses import dataclass

import numpy as np

FAMILIES = ("cloud", "assignment", "grid-w2", "grid-w1", "rect")


@dataclass(frozen=True)
class Problem:
    """An OT problem: cost ``M`` (n, m) and marginals ``a`` (n,), ``b`` (m,)."""

    name: str
    M: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @property
    def shape(self):
        return self.M.shape


def make_problem(family, n, seed=0, dtype=np.float64):
    """Build one problem of the suite.

    Parameters
    ----------
    family : {"cloud", "assignment", "grid-w2", "grid-w1", "rect"}
        ``cloud``: n and n uniform points in [0, 1]^2, squared Euclidean cost,
        uniform weights. ``assignment``: i.i.d. uniform [0, 1] costs, uniform
        weights. ``grid-w2`` / ``grid-w1``: two smooth densities (Gaussian
        bumps plus a 1e-6 floor) on a k x k grid with ``k = round(sqrt(n))``,
        cost ``|x - y|^2`` / ``|x - y|``. ``rect``: ``cloud`` with ``n // 2``
        target points and Dirichlet random weights on both sides.
    n : int
        Number of source points (for grids, rounded to a square ``k * k``).
    seed : int
        Seed of the ``numpy.random.default_rng`` that draws the problem.
    dtype : numpy dtype
        dtype of ``M``, ``a`` and ``b``.

    Returns
    -------
    Problem
    """
    rng = np.random.default_rng(seed)
    if family == "cloud":
        M, a, b = _cloud(rng, n, n)
    elif family == "assignment":
        M = rng.random((n, n))
        a, b = _uniform(n), _uniform(n)
    elif family in ("grid-w2", "grid-w1"):
        M, a, b = _grid(rng, int(round(np.sqrt(n))), power=2 if family == "grid-w2" else 1)
    elif family == "rect":
        m = max(n // 2, 1)
        M, _, _ = _cloud(rng, n, m)
        a, b = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
    else:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    M = M / M.max()
    return Problem(
        name=f"{family}-{M.shape[0]}x{M.shape[1]}",
        M=np.ascontiguousarray(M, dtype=dtype),
        a=np.asarray(a / a.sum(), dtype=dtype),
        b=np.asarray(b / b.sum(), dtype=dtype),
    )


def _uniform(n):
    return np.full(n, 1.0 / n)


def _sqdist(x, y):
    return np.maximum((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T, 0.0)


def _cloud(rng, n, m):
    x, y = rng.random((n, 2)), rng.random((m, 2))
    return _sqdist(x, y), _uniform(n), _uniform(m)


def _bumps(rng, pts, count=3):
    """A positive density on ``pts``: a few Gaussian bumps plus a 1e-6 floor."""
    dens = np.zeros(len(pts))
    for _ in range(count):
        centre, width = rng.random(2), 0.08 + 0.15 * rng.random()
        dens += rng.random() * np.exp(-((pts - centre) ** 2).sum(1) / (2 * width**2))
    dens = dens / dens.sum() + 1e-6
    return dens / dens.sum()


def _grid(rng, k, power):
    t = (np.arange(k) + 0.5) / k
    pts = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    d2 = _sqdist(pts, pts)
    M = d2 if power == 2 else np.sqrt(d2)
    return M, _bumps(rng, pts), _bumps(rng, pts)
