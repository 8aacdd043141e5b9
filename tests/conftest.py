"""Fixtures shared by the tests."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name (reproducible, not global)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
