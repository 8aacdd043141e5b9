"""Every member of the kernel contract, on every available backend, against the reference."""

import inspect

import numpy as np
import pytest
from ot_testing import random_problem

from fastsinkhorn.backends import get_backend
from fastsinkhorn.backends._contract import KernelBackend
from fastsinkhorn.backends._gpu import cuda_available

REF = get_backend("reference")


def _available_backends():
    return ["reference", "cpu"] + (["gpu"] if cuda_available() else [])


def _calls(xp, rng, n=37, m=23):
    """Arguments for each contract method (host arrays; moved to ``xp`` by the test)."""
    M, a, b = random_problem(rng, n, m)
    reg = 0.05
    f, g = 0.02 * rng.standard_normal(n), 0.02 * rng.standard_normal(m)
    K = np.exp((f[:, None] + g[None, :] - M) / reg)
    k = 5
    idx = np.stack([rng.choice(m, size=k, replace=False) for _ in range(n)]).astype(np.int64)
    val = rng.random((n, k))
    return {
        "lse_rows": (M, g, reg),
        "lse_cols": (M, f, reg),
        "plan": (M, f, g, reg, np.empty((n, m))),
        "scaling_pass": (K, rng.random(m) + 0.5, a, np.ones(n)),
        "scale": (K, rng.random(n) + 0.5, rng.random(m) + 0.5, np.empty((n, m))),
        "dense_pass": (M, f, g, reg, k),
        "ell_matvec": (idx, val, rng.random(m)),
        "ell_rmatvec": (idx, val, rng.random(n), m),
    }


def _members():
    return sorted(name for name, v in inspect.getmembers(KernelBackend, inspect.isfunction)
                  if not name.startswith("_"))


def test_every_contract_member_has_a_case(rng):
    assert set(_calls(np, rng)) == set(_members())


@pytest.mark.parametrize("backend_name", _available_backends())
def test_backend_satisfies_the_protocol(backend_name):
    be = get_backend(backend_name)
    assert isinstance(be, KernelBackend)
    assert be.name == backend_name and be.check_every >= 1


@pytest.mark.parametrize("member", _members())
@pytest.mark.parametrize("backend_name", [b for b in _available_backends() if b != "reference"])
def test_member_matches_the_reference(rng, backend_name, member):
    be = get_backend(backend_name)
    args = _calls(np, rng)[member]
    to_device = (lambda x: be.xp.asarray(x) if isinstance(x, np.ndarray) else x)
    got = getattr(be, member)(*(to_device(x) for x in args))
    want = getattr(REF, member)(*(x.copy() if isinstance(x, np.ndarray) else x for x in args))
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    host = (lambda x: x.get() if hasattr(x, "get") else np.asarray(x))
    if member == "dense_pass":  # (r, c, total, idx, val): the selection may order entries differently
        for g_, w_ in zip(got[:3], want[:3]):
            np.testing.assert_allclose(host(g_), host(w_), rtol=1e-12, atol=1e-300)
        dense = []
        for side in (got, want):  # the kept entries as a dense matrix: order-free comparison
            D = np.zeros((37, 23))
            np.put_along_axis(D, host(side[3]), host(side[4]), axis=1)
            dense.append(D)
        np.testing.assert_allclose(dense[0], dense[1], rtol=1e-12, atol=1e-300)
    else:
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(host(g_), host(w_), rtol=1e-12, atol=1e-300)
