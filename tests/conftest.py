"""Fixtures shared by the tests."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name (reproducible, not global)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def cp():
    """CuPy, or a skip with the reason when it or a CUDA device is missing."""
    try:
        import cupy
    except ImportError:
        pytest.skip("CuPy is not installed (pip install fastsinkhorn[gpu])")
    try:
        available = cupy.cuda.is_available()
    except Exception:
        available = False
    if not available:
        pytest.skip("no CUDA device available")
    return cupy
