"""Seeded test problems: the benchmark suites of ``python -m fastsinkhorn.bench``.

``FAMILIES`` lists every family; ``HARD_FAMILIES`` the small-``reg`` suite
(near-permutation plans and rough histograms).

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

#: The default suite of ``python -m fastsinkhorn.bench`` (smooth problems).
DEFAULT_FAMILIES = ("cloud", "assignment", "grid-w2", "grid-w1", "rect")
FAMILIES = DEFAULT_FAMILIES + ("image-w2", "image-w1")
#: The small-``reg`` suite: plans close to a permutation (``assignment``) or
#: thin bands between rough histograms with sharp edges (``image-*``).
HARD_FAMILIES = ("assignment", "image-w2", "image-w1")


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
    family : {"cloud", "assignment", "grid-w2", "grid-w1", "rect", "image-w2", "image-w1"}
        ``cloud``: n and n uniform points in [0, 1]^2, squared Euclidean cost,
        uniform weights. ``assignment``: i.i.d. uniform [0, 1] costs, uniform
        weights. ``grid-w2`` / ``grid-w1``: two smooth densities (Gaussian
        bumps plus a 1e-6 floor) on a k x k grid with ``k = round(sqrt(n))``,
        cost ``|x - y|^2`` / ``|x - y|``. ``rect``: ``cloud`` with ``n // 2``
        target points and Dirichlet random weights on both sides.
        ``image-w2`` / ``image-w1``: two rough histograms on a k x k grid
        (see :func:`rough_image`), cost ``|x - y|^2`` / ``|x - y|``.
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
    elif family in ("grid-w2", "grid-w1", "image-w2", "image-w1"):
        k = max(int(round(np.sqrt(n))), 2)
        density = _bumps if family.startswith("grid") else rough_image
        M, a, b = _grid(rng, k, power=2 if family.endswith("w2") else 1, density=density)
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


def rough_image(rng, pts, floor=1e-4):
    """A rough, image-like density on the k x k grid of cell centres ``pts``.

    A log-normal Gaussian random field (white noise smoothed over ~k/16
    cells: texture at several scales) inside a few random discs and
    rectangles with sharp edges and different brightness, on a dark
    background; ``floor`` times the brightest pixel is added everywhere
    (like a camera's noise floor), so every mass is positive but many are
    tiny. Returns a probability vector.
    """
    k = int(round(np.sqrt(len(pts))))
    freq = np.fft.fftfreq(k)
    width = max(k / 16.0, 0.75)
    smoothing = np.exp(-2 * (np.pi * width) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((k, k))) * smoothing)).ravel()
    texture = np.exp(1.5 * field / max(field.std(), 1e-12))
    shapes = np.full(len(pts), 0.02)  # dark background
    for _ in range(rng.integers(2, 5)):
        centre, size, brightness = rng.random(2), 0.1 + 0.25 * rng.random(), 0.3 + rng.random()
        if rng.random() < 0.5:
            inside = ((pts - centre) ** 2).sum(1) <= size**2
        else:
            inside = (np.abs(pts - centre) <= size * (0.5 + rng.random(2))).all(1)
        shapes[inside] = np.maximum(shapes[inside], brightness)
    dens = shapes * texture
    dens = dens + floor * dens.max()
    return dens / dens.sum()


def _grid(rng, k, power, density=_bumps):
    t = (np.arange(k) + 0.5) / k
    pts = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    d2 = _sqdist(pts, pts)
    M = d2 if power == 2 else np.sqrt(d2)
    return M, density(rng, pts), density(rng, pts)
