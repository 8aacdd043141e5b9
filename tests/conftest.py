"""Fixtures shared by the tests."""

import zlib

import numpy as np
import pytest

from fastsinkhorn.backends._gpu import _import_cupy


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name (reproducible, not global)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def cp():
    """CuPy, or a skip with the reason when it or a CUDA device is missing."""
    try:
        return _import_cupy()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(str(exc))
