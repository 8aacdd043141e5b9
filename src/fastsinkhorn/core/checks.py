"""Checks of scalar arguments: what a positive int or a positive number is, said once.

Every entry point and options class checks its counts (``max_iter``,
``n_threads``, ``chunk_size``...) and its positive numbers (``reg``,
``scale``...) here, so that they accept the same values (Python and NumPy
numbers, never ``bool``) and fail with the same message, which names the
argument as the caller spelt it: ``"max_iter must be a positive int, got
0"``. Options pass their name quoted (``"option 'check_every'"``).

This module imports nothing from the package (the geometries, the
backends and :mod:`fastsinkhorn.core.validation` all use it).
"""

import math
import numbers

import numpy as np


def is_int(value):
    """Whether ``value`` is an integer (Python or NumPy), ``bool`` excluded."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def is_real(value):
    """Whether ``value`` is a finite real number (Python or NumPy), ``bool`` excluded."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


def check_positive_int(value, name, allow_none=False):
    """Return ``value`` as an ``int`` (``None`` kept if ``allow_none``).

    Raises
    ------
    ValueError
        ``"{name} must be a positive int, got {value!r}"`` (``"... positive
        int or None, ..."`` when ``None`` is allowed).
    """
    if value is None and allow_none:
        return None
    if not (is_int(value) and value >= 1):
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_non_negative_int(value, name):
    """Return ``value`` as an ``int``; ``ValueError`` ``"{name} must be a
    non-negative int, got {value!r}"`` otherwise."""
    if not (is_int(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def check_positive(value, name):
    """Return ``value`` as a ``float``; ``ValueError`` ``"{name} must be a
    positive finite number, got {value!r}"`` otherwise."""
    if not (is_real(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_non_negative(value, name):
    """Return ``value`` as a ``float``; ``ValueError`` ``"{name} must be a
    non-negative finite number, got {value!r}"`` otherwise (``0`` allowed:
    a tolerance that is never met)."""
    if not (is_real(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def check_reg(reg):
    """Return ``reg`` (the entropic regularisation) as a float, or raise
    ``ValueError`` naming it: :func:`check_positive` for ``"reg"``."""
    return check_positive(reg, "reg")
